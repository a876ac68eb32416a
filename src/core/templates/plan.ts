import { isDeepStrictEqual } from 'node:util';
import { createHash } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { rowsOf } from '../../db/client.js';
import type { Core } from '../core.js';
import type { Account } from '../accounts.js';
import { getApp, type App } from '../apps.js';
import type { ConnectionRow } from '../connections.js';
import { validateDefinition, type Definition, type VarValue } from '../automation-definition.js';
import { UserError } from '../errors.js';
import { scalarList, textList, uuidList } from '../../db/arrays.js';
import { bindDefinition, diffVersions, valuesFor, type Binding, type TemplateDefinition, type Variable } from './definition.js';
import { versionParts, type TemplateRow, type VersionRow } from './templates.js';

/**
 * A deploy's plan: per target account, what applying would do — create a copy, update it from
 * version N (which steps change), nothing (already current), or nothing because it is blocked
 * (and why). Read for all targets in a few batched queries; the hash covers every decision and
 * what it was made on, so an apply with the hash runs exactly what was approved.
 */

export const BLOCK_CODES = ['suspended', 'no_connection', 'missing_variable', 'drift', 'not_ready', 'name_taken', 'invalid', 'templates_account'] as const;
export type BlockCode = (typeof BLOCK_CODES)[number];
export type PlanAction = 'create' | 'update' | 'current' | 'blocked';

/** A per-account value, or one for all: `{by_account: {<account>: value}}` or the value itself. */
export type PerAccount<T> = T | { by_account: Record<string, T> };

export interface DeployOptions {
  values: Record<string, PerAccount<VarValue>>;
  connections: Record<string, PerAccount<string>>;
  overwriteDrift: boolean;
}

export interface Copy {
  id: string;
  accountId: string;
  name: string;
  revision: number;
  templateVersion: number | null;
  templateRevision: number | null;
  enabled: boolean;
  definition: Definition;
}

export interface TargetPlan {
  account: Account;
  action: PlanAction;
  code: BlockCode | null;
  reason: string | null;
  /** what a blocked account needs before it can take the version */
  needs: string[];
  copy: Copy | null;
  fromVersion: number | null;
  toVersion: number;
  /** update: the steps that change (added, removed or changed since the copy's version) */
  stepsChanged: string[];
  bindings: Record<string, Binding>;
  values: Record<string, VarValue>;
}

export interface DeployPlan {
  template: TemplateRow;
  version: VersionRow;
  targets: TargetPlan[];
  hash: string;
  counts: Record<PlanAction, number>;
  blockedBy: Partial<Record<BlockCode, number>>;
}

const pick = <T>(v: PerAccount<T> | undefined, account: Account, keyOf: Map<string, string>): T | undefined => {
  if (v === undefined) return undefined;
  if (v !== null && typeof v === 'object' && 'by_account' in (v as object)) {
    const by = (v as { by_account: Record<string, T> }).by_account;
    for (const [k, val] of Object.entries(by)) if (keyOf.get(k.trim().toLowerCase()) === account.id) return val;
    return undefined;
  }
  return v as T;
};

interface ConnRow {
  id: string;
  account_id: string;
  app: string;
  name: string;
  status: string;
  shared: boolean;
  auth_kind: string;
  masked: Record<string, string>;
}

/** The copies of a template in `accountIds`, with their current definitions. */
export async function copiesIn(core: Core, templateId: string, accountIds: string[]): Promise<Map<string, Copy>> {
  const rows = rowsOf<{ id: string; account_id: string; name: string; revision: number; template_version: number | null; template_revision: number | null; enabled: boolean; definition: Definition }>(
    await core.db.execute(sql`
      select a.id, a.account_id, a.name, a.revision, a.template_version, a.template_revision, a.enabled, r.definition
      from automations a join automation_revisions r on r.automation_id = a.id and r.revision = a.revision
      where a.tenant_id = ${core.tenantId}::uuid and a.template_id = ${templateId}::uuid and a.account_id = any(${uuidList(accountIds)}::uuid[])`),
  );
  return new Map(
    rows.map((r) => [
      String(r.account_id),
      {
        id: String(r.id),
        accountId: String(r.account_id),
        name: r.name,
        revision: Number(r.revision),
        templateVersion: r.template_version === null ? null : Number(r.template_version),
        templateRevision: r.template_revision === null ? null : Number(r.template_revision),
        enabled: Boolean(r.enabled),
        definition: (typeof r.definition === 'string' ? JSON.parse(r.definition) : r.definition) as Definition,
      },
    ]),
  );
}

/**
 * The connection of `app` an account's copy binds: the one named (own, else shared by its parent,
 * else by the system account), by default "Default" — or, with no name given, the one its parent
 * or the system account shares when it has none of its own.
 */
function bindingFor(app: string, named: string | undefined, account: Account, byAccount: Map<string, ConnRow[]>, systemId: string): ConnRow | null {
  const want = (named ?? 'Default').toLowerCase();
  const of = (id: string | null, sharedOnly: boolean) =>
    id ? (byAccount.get(id) ?? []).filter((c) => c.app === app && (!sharedOnly || c.shared)) : [];
  for (const [id, shared] of [[account.id, false], [account.parentAccountId, true], [systemId, true]] as const) {
    const list = of(id, shared);
    const exact = list.find((c) => c.name.toLowerCase() === want);
    if (exact) return exact;
    // a parent's (or the system's) single shared connection of the app serves, when none was named
    if (shared && named === undefined && list.length === 1) return list[0]!;
  }
  return null;
}

export async function planDeploy(core: Core, template: TemplateRow, version: VersionRow, targets: Account[], opts: DeployOptions, extraHash: unknown = null): Promise<DeployPlan> {
  const { definition: tdef, variables, apps } = versionParts(version);
  const keyOf = new Map<string, string>();
  for (const a of targets) {
    keyOf.set(a.id, a.id);
    keyOf.set(a.slug, a.id);
    keyOf.set(a.name.toLowerCase(), a.id);
  }
  // a value or connection named for an account that is not a target is a mistake, not silently ignored
  for (const [what, record] of [['values', opts.values], ['connections', opts.connections]] as const) {
    for (const [name, v] of Object.entries(record)) {
      if (v !== null && typeof v === 'object' && 'by_account' in (v as object)) {
        for (const k of Object.keys((v as { by_account: object }).by_account)) {
          if (!keyOf.has(k.trim().toLowerCase())) throw new UserError(`${what}.${name}.by_account names '${k.slice(0, 100)}', which is not one of the accounts deployed to.`);
        }
      }
    }
  }
  for (const name of Object.keys(opts.values)) {
    const v = variables.find((x) => x.name === name);
    if (!v) throw new UserError(`values names '${name.slice(0, 100)}', but the template declares no such variable${variables.length ? ` (it has ${variables.map((x) => x.name).join(', ')})` : ''}.`);
    const given = opts.values[name]!;
    const all = given !== null && typeof given === 'object' ? Object.values((given as { by_account: Record<string, unknown> }).by_account) : [given];
    for (const x of all) if (typeof x !== v.type || (v.type === 'number' && !Number.isFinite(x))) throw new UserError(`values.${name} must be a ${v.type}.`);
  }
  // apps are named case-insensitively, as in the definition
  const connections: Record<string, PerAccount<string>> = {};
  for (const [named, v] of Object.entries(opts.connections)) {
    const app = named.trim().toLowerCase();
    if (!apps.includes(app)) throw new UserError(`connections names the app '${named.slice(0, 100)}', which the template does not use${apps.length ? ` (it uses ${apps.join(', ')})` : ''}.`);
    if (Object.hasOwn(connections, app)) throw new UserError(`connections names the app '${app}' twice.`);
    connections[app] = v;
  }

  const ids = targets.map((a) => a.id);
  const copies = await copiesIn(core, template.id, ids);
  const [system] = rowsOf<{ id: string }>(await core.db.execute(sql`select id from accounts where tenant_id = ${core.tenantId}::uuid and kind = 'system'`));
  const systemId = String(system!.id);
  const owners = [...new Set([...ids, ...targets.map((a) => a.parentAccountId).filter((x): x is string => !!x), systemId])];
  const conns = apps.length
    ? rowsOf<ConnRow>(
        await core.db.execute(sql`
          select id, account_id, app, name, status, shared, auth_kind, masked from connections
          where tenant_id = ${core.tenantId}::uuid and app = any(${textList(apps)}::text[]) and account_id = any(${uuidList(owners)}::uuid[])`),
      )
    : [];
  const byAccount = new Map<string, ConnRow[]>();
  for (const c of conns) {
    const k = String(c.account_id);
    (byAccount.get(k) ?? byAccount.set(k, []).get(k)!).push({ ...c, id: String(c.id), account_id: k });
  }
  // an automation of its own with the template's name stands in the way of a new copy
  const withoutCopy = ids.filter((id) => !copies.has(id));
  const taken = new Set(
    withoutCopy.length
      ? rowsOf<{ account_id: string }>(
          await core.db.execute(sql`
            select account_id from automations where account_id = any(${uuidList(withoutCopy)}::uuid[]) and lower(name) = ${template.name.toLowerCase()}`),
        ).map((r) => String(r.account_id))
      : [],
  );
  // the versions the copies run now, for what changes and whether they are ready for a breaking one
  const fromVersions = new Map<number, ReturnType<typeof versionParts>>();
  const wanted = [...new Set([...copies.values()].map((c) => c.templateVersion).filter((v): v is number => v !== null && v !== version.version))];
  if (wanted.length) {
    const rows = rowsOf<{ version: number; definition: TemplateDefinition; variables: Variable[]; apps: string[] }>(
      await core.db.execute(sql`select version, definition, variables, apps from template_versions where template_id = ${template.id}::uuid and version = any(${scalarList(wanted)}::int[])`),
    );
    for (const r of rows) fromVersions.set(Number(r.version), { definition: r.definition, variables: r.variables, apps: r.apps });
  }
  const diffs = new Map([...fromVersions].map(([v, parts]) => [v, diffVersions(parts, { definition: tdef, variables, apps })]));
  const appCache = new Map<string, Promise<App>>();
  const appOf = (slug: string) => appCache.get(slug) ?? appCache.set(slug, getApp(core, slug)).get(slug)!;

  const out: TargetPlan[] = [];
  for (const account of targets) {
    const copy = copies.get(account.id) ?? null;
    const t: TargetPlan = {
      account,
      action: 'blocked',
      code: null,
      reason: null,
      needs: [],
      copy,
      fromVersion: copy?.templateVersion ?? null,
      toVersion: version.version,
      stepsChanged: [],
      bindings: {},
      values: {},
    };
    out.push(t);
    const block = (code: BlockCode, reason: string, needs: string[] = []) => Object.assign(t, { action: 'blocked', code, reason, needs });
    if (account.kind === 'templates') {
      block('templates_account', 'the templates account keeps templates, not copies');
      continue;
    }
    if (account.status === 'suspended') {
      block('suspended', 'the account is suspended');
      continue;
    }
    if (!copy && taken.has(account.id)) {
      block('name_taken', "it has an automation of its own with the template's name");
      continue;
    }
    if (copy && copy.templateRevision !== copy.revision && !opts.overwriteDrift) {
      block('drift', `its copy was changed by hand since its last deploy (revision ${copy.revision}, deployed ${copy.templateRevision ?? 'none'})`);
      continue;
    }
    const missingApps: string[] = [];
    for (const app of apps) {
      const named = pick(connections[app], account, keyOf);
      const c = bindingFor(app, named, account, byAccount, systemId);
      if (!c) missingApps.push(`a ${app} connection${named ? ` named '${named}'` : ''}`);
      else if (c.status !== 'active') missingApps.push(`its ${app} connection ${c.id} reconnected (it is ${c.status})`);
      else t.bindings[app] = { id: c.id, ref: `${c.app}/${c.name}` };
    }
    const explicit: Record<string, VarValue> = {};
    for (const v of variables) {
      const x = Object.hasOwn(opts.values, v.name) ? pick(opts.values[v.name], account, keyOf) : undefined;
      if (x !== undefined) explicit[v.name] = x;
    }
    const { values, missing } = valuesFor(variables, explicit, copy?.definition.vars);
    t.values = values;
    const needs = [...missingApps, ...missing.map((m) => `a value for ${m}`)];
    if (needs.length) {
      const diff = copy?.templateVersion != null ? diffs.get(copy.templateVersion) : undefined;
      if (diff?.classification === 'breaking') block('not_ready', `version ${version.version} is a breaking change it is not ready for`, needs);
      else if (missingApps.length) block('no_connection', `it has no usable connection: it needs ${missingApps.join(', ')}`, needs);
      else block('missing_variable', `required variable${missing.length > 1 ? 's' : ''} ${missing.join(', ')} ha${missing.length > 1 ? 've' : 's'} no value`, needs);
      continue;
    }
    const bound = bindDefinition(tdef, t.bindings, values);
    // compared as values: the stored copy comes back from jsonb with its keys in another order
    if (copy && copy.templateVersion === version.version && isDeepStrictEqual(copy.definition, JSON.parse(JSON.stringify(bound)))) {
      t.action = 'current';
      continue;
    }
    try {
      const byRef = new Map(Object.entries(t.bindings).map(([app, b]) => [b.ref, { app, b }]));
      await validateDefinition(core, account, bound, {
        app: appOf,
        variables: new Set(variables.map((v) => v.name)),
        resolve: async (key) => {
          const hit = byRef.get(key);
          const row = hit ? conns.find((c) => String(c.id) === hit.b.id) : undefined;
          if (!row) throw new UserError(`No connection '${key}' in account '${account.slug}'.`, 'not_found');
          const asRow = { id: String(row.id), app: row.app, name: row.name, authKind: row.auth_kind, masked: row.masked ?? {}, accountId: String(row.account_id) } as unknown as ConnectionRow;
          return { row: asRow, source: String(row.account_id) === account.id ? 'own' : String(row.account_id) === account.parentAccountId ? 'parent' : 'system' };
        },
        what: 'The copy',
      });
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      block('invalid', err.message.replace(/^The copy was not saved: /, ''));
      continue;
    }
    if (!copy) t.action = 'create';
    else {
      t.action = 'update';
      const before = copy.templateVersion !== null ? fromVersions.get(copy.templateVersion) : undefined;
      const diff = before ? diffVersions(before, { definition: tdef, variables, apps }) : null;
      t.stepsChanged = diff ? [...diff.steps.added, ...diff.steps.removed, ...diff.steps.changed.map((c) => c.id)].sort() : [];
    }
  }
  return finish(template, version, out, extraHash);
}

function finish(template: TemplateRow, version: VersionRow, targets: TargetPlan[], extraHash: unknown): DeployPlan {
  const counts: Record<PlanAction, number> = { create: 0, update: 0, current: 0, blocked: 0 };
  const blockedBy: Partial<Record<BlockCode, number>> = {};
  const h = createHash('sha256');
  h.update(JSON.stringify([template.id, version.version, extraHash]));
  for (const t of targets) {
    counts[t.action]++;
    if (t.code) blockedBy[t.code] = (blockedBy[t.code] ?? 0) + 1;
    h.update(JSON.stringify([t.account.id, t.account.status, t.action, t.code, t.copy?.id ?? null, t.copy?.revision ?? null, t.bindings, t.values]));
  }
  return { template, version, targets, hash: `dp_${h.digest('hex').slice(0, 24)}`, counts, blockedBy };
}
