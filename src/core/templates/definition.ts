import { isDeepStrictEqual } from 'node:util';
import type { Core } from '../core.js';
import type { Account } from '../accounts.js';
import { getApp, type App } from '../apps.js';
import type { ConnectionRow } from '../connections.js';
import { validateDefinition, type Definition, type Step, type VarValue } from '../automation-definition.js';
import { UserError } from '../errors.js';

/**
 * A template's definition: an automation definition whose connections are named by app ("slack",
 * not an id or app/name) and whose expressions may read declared variables as vars.<name>. A
 * deployed copy binds each app to a connection of its account and each variable to a value
 * (bindDefinition); everything else is the template's, unchanged.
 */

export const VAR_TYPES = ['string', 'number', 'boolean'] as const;
export type VarType = (typeof VAR_TYPES)[number];

export interface Variable {
  name: string;
  type: VarType;
  required: boolean;
  default?: VarValue | undefined;
  description?: string | undefined;
}

export type TemplateDefinition = Omit<Definition, 'vars'>;

/** How a copy binds an app: the connection's id and how it is named (app/name). */
export interface Binding {
  id: string;
  ref: string;
}

/** Does `value` fit a variable of `type`? */
export const fitsType = (value: unknown, type: VarType): value is VarValue =>
  type === 'number' ? typeof value === 'number' && Number.isFinite(value) : typeof value === type;

/** The apps a definition needs a connection of, sorted: its http steps' and its signature's. */
export function appsOf(def: TemplateDefinition): string[] {
  const apps = new Set<string>();
  for (const s of def.steps) if (s.kind === 'http' && s.connection) apps.add(s.connection.trim().toLowerCase());
  if (def.trigger.signature) apps.add(def.trigger.signature.connection.trim().toLowerCase());
  return [...apps].sort();
}

/** The values a copy gets: explicit, else what it already has, else the default; and the required ones still missing. */
export function valuesFor(
  variables: Variable[],
  explicit: Record<string, VarValue>,
  current: Record<string, VarValue> | null | undefined,
): { values: Record<string, VarValue>; missing: string[] } {
  const values: Record<string, VarValue> = {};
  const missing: string[] = [];
  for (const v of variables) {
    // own properties only: a variable named toString or constructor is not found on every object
    const own = (o: Record<string, VarValue> | null | undefined) => (o && Object.hasOwn(o, v.name) ? o[v.name] : undefined);
    const chosen = own(explicit) ?? (fitsType(own(current), v.type) ? own(current) : undefined) ?? v.default;
    if (chosen !== undefined) values[v.name] = chosen;
    else if (v.required) missing.push(v.name);
  }
  return { values, missing };
}

/** The copy's definition: the template's, with each app bound to the account's connection and the variables' values. */
export function bindDefinition(def: TemplateDefinition, bindings: Record<string, Binding>, values: Record<string, VarValue>): Definition {
  const bind = (app: string) => bindings[app.trim().toLowerCase()];
  const steps = def.steps.map((s): Step => {
    if (s.kind !== 'http' || !s.connection) return s;
    const b = bind(s.connection);
    return b ? { ...s, connection: b.ref, connection_id: b.id } : s;
  });
  const sig = def.trigger.signature;
  const b = sig ? bind(sig.connection) : undefined;
  const trigger = sig && b ? { ...def.trigger, signature: { ...sig, connection: b.ref, connection_id: b.id } } : def.trigger;
  return { ...def, trigger, steps, vars: values };
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]{0,39}$/;

/**
 * Check a template definition and its variables as a whole: every problem in one answer. The
 * definition is validated like an automation's in the templates account, with each connection
 * standing for its app.
 */
export async function validateTemplate(core: Core, templatesAccount: Account, def: TemplateDefinition, variables: Variable[]): Promise<{ definition: TemplateDefinition; apps: string[] }> {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const v of variables) {
    if (!NAME.test(v.name)) problems.push(`Variable '${v.name.slice(0, 60)}': a name is letters, digits and _ (not starting with a digit), at most 40.`);
    if (seen.has(v.name)) problems.push(`Two variables are named '${v.name}'.`);
    seen.add(v.name);
    if (v.default !== undefined && !fitsType(v.default, v.type)) problems.push(`Variable '${v.name}': its default is not a ${v.type}.`);
  }
  const apps = new Map<string, App>();
  const app = async (slug: string): Promise<App> => {
    const key = slug.trim().toLowerCase();
    const known = apps.get(key) ?? (await getApp(core, key));
    apps.set(key, known);
    return known;
  };
  // a template names apps: each stands for the connection every account binds when it is deployed
  const resolve = async (key: string) => {
    if (key.includes('/')) {
      throw new UserError(`in a template a connection is named by its app ('${key.split('/')[0]!.trim()}'): each account's own connection is bound when it is deployed.`);
    }
    const a = await app(key);
    const row = { id: `app:${a.slug}`, app: a.slug, name: a.slug, authKind: a.auth[0]!.kind, masked: {}, accountId: templatesAccount.id } as unknown as ConnectionRow;
    return { row, source: 'own' as const };
  };
  let checked: Definition | null = null;
  try {
    checked = (await validateDefinition(core, { ...templatesAccount, parentAccountId: null }, { ...def, vars: null }, {
      resolve,
      app,
      variables: seen,
      what: 'The template',
    })).definition;
  } catch (err) {
    if (!(err instanceof UserError) || problems.length === 0) throw err;
    problems.push(err.message.replace(/^The template was not saved: /, ''));
  }
  if (problems.length) throw new UserError(`The template was not saved: ${problems.map((p, n) => `(${n + 1}) ${p}`).join(' ')}`);
  // a template stores what was typed: the connection ids the check filled in stand for apps only
  const steps = checked!.steps.map((s) => {
    if (s.kind !== 'http') return s;
    const { connection_id: _placeholder, ...rest } = s;
    return rest.connection ? { ...rest, connection: rest.connection.trim().toLowerCase() } : rest;
  });
  const sig = checked!.trigger.signature;
  const trigger = sig ? { ...checked!.trigger, signature: { ...sig, connection: sig.connection.trim().toLowerCase(), connection_id: null } } : checked!.trigger;
  const { vars: _none, ...rest } = checked!;
  const definition: TemplateDefinition = { ...rest, trigger, steps };
  return { definition, apps: appsOf(definition) };
}

export interface VersionDiff {
  classification: 'compatible' | 'breaking';
  reasons: string[];
  steps: { added: string[]; removed: string[]; changed: { id: string; fields: string[] }[] };
  variables: { added: string[]; removed: string[]; changed: string[] };
  apps: { added: string[]; removed: string[] };
  trigger_changed: boolean;
  routing_changed: boolean;
  retries_changed: boolean;
}

const same = (a: unknown, b: unknown) => isDeepStrictEqual(JSON.parse(JSON.stringify(a ?? null)), JSON.parse(JSON.stringify(b ?? null)));

/**
 * What changed from version `a` to version `b`, and whether a copy can take it as it is
 * (compatible) or needs something first (breaking: a new app to connect, a new required
 * variable, a changed trigger or routing — the senders or the routing keys must change too).
 */
export function diffVersions(
  a: { definition: TemplateDefinition; variables: Variable[]; apps: string[] },
  b: { definition: TemplateDefinition; variables: Variable[]; apps: string[] },
): VersionDiff {
  const aSteps = new Map(a.definition.steps.map((s) => [s.id, s]));
  const bSteps = new Map(b.definition.steps.map((s) => [s.id, s]));
  const changed: { id: string; fields: string[] }[] = [];
  for (const [id, s] of bSteps) {
    const before = aSteps.get(id);
    if (!before || same(before, s)) continue;
    const keys = new Set([...Object.keys(before), ...Object.keys(s)]);
    changed.push({ id, fields: [...keys].filter((k) => !same((before as unknown as Record<string, unknown>)[k], (s as unknown as Record<string, unknown>)[k])).sort() });
  }
  const aVars = new Map(a.variables.map((v) => [v.name, v]));
  const bVars = new Map(b.variables.map((v) => [v.name, v]));
  const reasons: string[] = [];
  const appsAdded = b.apps.filter((x) => !a.apps.includes(x));
  for (const app of appsAdded) reasons.push(`it needs a connection of a new app: ${app}`);
  for (const v of b.variables) {
    const before = aVars.get(v.name);
    const needsValue = (x: Variable | undefined) => !!x && x.required && x.default === undefined;
    if (needsValue(v) && !needsValue(before)) reasons.push(`it needs a value for the ${before ? 'now required' : 'new required'} variable ${v.name}`);
    else if (before && before.type !== v.type) reasons.push(`variable ${v.name} is a ${v.type} now, not a ${before.type}`);
  }
  const triggerChanged = !same(a.definition.trigger, b.definition.trigger);
  const routingChanged = !same(a.definition.routing, b.definition.routing);
  if (triggerChanged) reasons.push('its trigger changed (de-duplication or signature)');
  if (routingChanged) reasons.push('its routing changed');
  return {
    classification: reasons.length ? 'breaking' : 'compatible',
    reasons,
    steps: {
      added: [...bSteps.keys()].filter((id) => !aSteps.has(id)),
      removed: [...aSteps.keys()].filter((id) => !bSteps.has(id)),
      changed,
    },
    variables: {
      added: [...bVars.keys()].filter((n) => !aVars.has(n)),
      removed: [...aVars.keys()].filter((n) => !bVars.has(n)),
      changed: [...bVars.keys()].filter((n) => aVars.has(n) && !same(aVars.get(n), bVars.get(n))),
    },
    apps: { added: appsAdded, removed: a.apps.filter((x) => !b.apps.includes(x)) },
    trigger_changed: triggerChanged,
    routing_changed: routingChanged,
    retries_changed: !same(a.definition.retries, b.definition.retries),
  };
}
