import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { accounts, auditLog, automationConnections, automationRevisions, automations, type Permission } from '../../db/schema/index.js';
import { inArray } from 'drizzle-orm';
import { atLeast } from '../access.js';
import { rolesIn } from './targets.js';
import { transientDbError } from '../errors.js';
import type { deploymentTargets } from '../../db/schema/index.js';
import { withAccount, type Tx } from '../../db/scope.js';
import { rowsOf } from '../../db/client.js';
import type { Core } from '../core.js';
import type { Definition, VarValue } from '../automation-definition.js';
import { hashToken } from '../crypto.js';
import { webhookToken } from '../webhooks.js';
import { scalarList, textList, uuidList } from '../../db/arrays.js';
import { log, errorFields } from '../../log.js';
import { bindDefinition, type Binding, type TemplateDefinition } from './definition.js';

/**
 * Applying a batch of a deployment's targets: every write of every target in the batch — the
 * copy, its new revision, its connections, the target's outcome, the account's audit entry — in
 * one transaction in the batch's accounts' scope. Each target is checked against what its plan
 * saw (the copy's revision, the account's status); one that changed since is recorded as failed
 * with the reason, and the rest go on. A batch that fails as a whole (a connection deleted
 * meanwhile) is applied again one target at a time, so one account's problem undoes nothing
 * elsewhere. The target's row is written in the same transaction as its copy: a target is done
 * exactly once, whatever crashes.
 */

export type TargetRow = typeof deploymentTargets.$inferSelect;

export interface ApplyContext {
  deploymentId: string;
  templateId: string;
  templateName: string;
  /** the template version's definition deployed (create / update) */
  definition: TemplateDefinition | null;
  actor: { id: string | null; email: string | null };
  /** rolling back: restore / disable targets are the undoing of this deployment */
  note: string;
  /**
   * Who started a deploy, checked again at every batch (null: not checked — a rollback, or a
   * deployment started by the system): still active with deploy_automations, and still holding the
   * member role in each target account.
   */
  deployer?: { id: string; active: boolean; permissions: Permission[] } | null;
  /** renews the worker's lease while a batch is applied one target at a time; false: lost */
  renew?: () => Promise<boolean>;
  /** when given, milliseconds spent per phase are added here (the benchmark's profile) */
  phases?: Record<string, number> | undefined;
}

/** Time `fn` into `phases[name]` when profiling. */
export async function phase<T>(phases: Record<string, number> | undefined, name: string, fn: () => Promise<T>): Promise<T> {
  if (!phases) return fn();
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    phases[name] = (phases[name] ?? 0) + performance.now() - t0;
  }
}

export interface Outcome {
  accountId: string;
  status: 'done' | 'failed';
  reason: string | null;
  automationId: string | null;
  beforeRevision: number | null;
  afterRevision: number | null;
}

interface Locked {
  id: string;
  account_id: string;
  revision: number;
  template_id: string | null;
  template_version: number | null;
  name: string;
}

const n = (x: unknown): number | null => (x === null || x === undefined ? null : Number(x));

export async function applyBatch(core: Core, ctx: ApplyContext, batch: TargetRow[]): Promise<Outcome[]> {
  const refused = await phase(ctx.phases, 'deployer still allowed', () => deployerRefused(core, ctx, batch));
  try {
    return await applyTogether(core, ctx, batch, refused);
  } catch (err) {
    // a deadlock or a lost connection is no outcome of a target: the runner takes the batch up again
    if (transientDbError(err)) throw err;
    if (batch.length === 1) {
      log.warn('deployment: a target failed', { deployment: ctx.deploymentId, account: batch[0]!.accountId, ...errorFields(err) });
      const reason = 'its copy could not be written (a connection or the account changed since the plan); plan again';
      return recordOutcomes(core, ctx, [{ accountId: batch[0]!.accountId, status: 'failed', reason, automationId: null, beforeRevision: null, afterRevision: null }]);
    }
    const out: Outcome[] = [];
    for (const [i, t] of batch.entries()) {
      if (i % 25 === 24 && ctx.renew && !(await ctx.renew())) break; // another worker has it now
      out.push(...(await applyBatch(core, ctx, [t])));
    }
    return out;
  }
}

/** The batch's accounts the deployer may no longer deploy to (read before the batch's transaction). */
async function deployerRefused(core: Core, ctx: ApplyContext, batch: TargetRow[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const who = ctx.deployer;
  if (!who) return out;
  if (!who.active) {
    for (const t of batch) out.set(t.accountId, 'the person who started the deployment is disabled or no longer has deploy_automations');
    return out;
  }
  const list = await core.db.select({ id: accounts.id, parentAccountId: accounts.parentAccountId }).from(accounts).where(inArray(accounts.id, batch.map((t) => t.accountId)));
  const roles = await rolesIn(core, { user: { id: who.id, permissions: who.permissions } }, list);
  for (const t of batch) {
    const role = roles.get(t.accountId);
    if (!role || !atLeast(role, 'member')) out.set(t.accountId, 'the person who started the deployment may no longer act in this account');
  }
  return out;
}

async function applyTogether(core: Core, ctx: ApplyContext, all: TargetRow[], refused: Map<string, string>): Promise<Outcome[]> {
  return withAccount(core.db, all.map((t) => t.accountId), async (tx) => {
    // Only targets still pending, locked: a worker that took over a lapsed lease while this batch
    // was in flight waits here for its commit and then skips what it did, so no target is applied twice.
    const P = ctx.phases;
    const pending = await phase(P, 'lock pending targets', () => lockPending(tx, ctx.deploymentId, all.map((t) => t.accountId)));
    const batch = all.filter((t) => pending.has(t.accountId));
    if (!batch.length) return [];
    const accountIds = batch.map((t) => t.accountId);
    const status = new Map(
      rowsOf<{ id: string; status: string }>(await phase(P, 'read account status', () => tx.execute(sql`select id, status from accounts where id = any(${uuidList(accountIds)}::uuid[])`))).map((r) => [String(r.id), r.status]),
    );
    const copyIds = batch.map((t) => t.automationId).filter((x): x is string => !!x);
    // no key update, not update: runs enqueued meanwhile reference the copy (a key share lock) and
    // must not wait for the batch
    const locked = new Map(
      (copyIds.length
        ? rowsOf<Locked>(
            await phase(P, 'lock copies', () => tx.execute(sql`
              select id, account_id, revision, template_id, template_version, name from automations
              where id = any(${uuidList(copyIds)}::uuid[]) order by id for no key update`)),
          )
        : []
      ).map((r) => [String(r.id), r]),
    );
    const restoreFrom = new Map<string, Definition>();
    const restores = batch.filter((t) => t.action === 'restore' && t.automationId && t.restoreRevision !== null);
    if (restores.length) {
      const rows = rowsOf<{ automation_id: string; definition: Definition }>(
        await tx.execute(sql`
          select r.automation_id, r.definition from automation_revisions r
          join unnest(${uuidList(restores.map((t) => t.automationId!))}::uuid[], ${scalarList(restores.map((t) => t.restoreRevision))}::int[]) as v(aid, rev)
            on r.automation_id = v.aid and r.revision = v.rev`),
      );
      for (const r of rows) restoreFrom.set(String(r.automation_id), r.definition);
    }

    const built = performance.now();
    const outcomes: Outcome[] = [];
    const newCopies: (typeof automations.$inferInsert)[] = [];
    const revisions: (typeof automationRevisions.$inferInsert)[] = [];
    const usage: (typeof automationConnections.$inferInsert)[] = [];
    const moved: { id: string; revision: number; version: number | null; enable: boolean | null }[] = [];
    const usageReplaced: string[] = [];
    const fail = (t: TargetRow, reason: string, copy?: Locked) =>
      outcomes.push({ accountId: t.accountId, status: 'failed', reason, automationId: t.automationId, beforeRevision: n(copy?.revision), afterRevision: null });

    for (const t of batch) {
      const denied = refused.get(t.accountId);
      if (denied) {
        fail(t, denied);
        continue;
      }
      if (status.get(t.accountId) !== 'active') {
        fail(t, 'the account is suspended');
        continue;
      }
      const bindings = t.bindings as Record<string, Binding>;
      const values = t.values as Record<string, VarValue>;
      if (t.action === 'create') {
        if (!ctx.definition) throw new Error('create without a definition');
        const id = randomUUID();
        const def = bindDefinition(ctx.definition, bindings, values);
        newCopies.push({
          id,
          tenantId: core.tenantId,
          accountId: t.accountId,
          name: ctx.templateName,
          revision: 1,
          webhookTokenHash: hashToken(webhookToken(core, { id, webhookGeneration: 1 })),
          templateId: ctx.templateId,
          templateVersion: t.toVersion,
          templateRevision: 1,
          createdBy: ctx.actor.id,
        });
        revisions.push({ automationId: id, revision: 1, tenantId: core.tenantId, accountId: t.accountId, name: ctx.templateName, definition: def, note: ctx.note, createdBy: ctx.actor.id });
        for (const b of Object.values(bindings)) usage.push({ automationId: id, connectionId: b.id, accountId: t.accountId });
        outcomes.push({ accountId: t.accountId, status: 'done', reason: null, automationId: id, beforeRevision: null, afterRevision: 1 });
        continue;
      }
      const copy = t.automationId ? locked.get(t.automationId) : undefined;
      if (!copy || copy.template_id !== ctx.templateId) {
        fail(t, 'its copy was deleted or unlinked since the plan');
        continue;
      }
      if (Number(copy.revision) !== t.expectedRevision) {
        fail(t, `its copy changed since the plan (revision ${copy.revision}, planned on ${t.expectedRevision})`, copy);
        continue;
      }
      const next = Number(copy.revision) + 1;
      if (t.action === 'disable') {
        // undoing its creation: off, and at no version (not running the template; a later deploy turns it on again)
        moved.push({ id: copy.id, revision: Number(copy.revision), version: null, enable: false });
        outcomes.push({ accountId: t.accountId, status: 'done', reason: null, automationId: copy.id, beforeRevision: Number(copy.revision), afterRevision: Number(copy.revision) });
        continue;
      }
      let def: Definition;
      if (t.action === 'restore') {
        const from = restoreFrom.get(copy.id);
        if (!from) {
          fail(t, `revision ${t.restoreRevision} of its copy is gone`, copy);
          continue;
        }
        def = from;
      } else {
        if (!ctx.definition) throw new Error('update without a definition');
        def = bindDefinition(ctx.definition, bindings, values);
      }
      revisions.push({ automationId: copy.id, revision: next, tenantId: core.tenantId, accountId: t.accountId, name: copy.name, definition: def, note: ctx.note, createdBy: ctx.actor.id });
      moved.push({ id: copy.id, revision: next, version: t.toVersion, enable: t.action === 'update' && copy.template_version === null ? true : null });
      usageReplaced.push(copy.id);
      for (const id of connectionIdsOf(def)) usage.push({ automationId: copy.id, connectionId: id, accountId: t.accountId });
      outcomes.push({ accountId: t.accountId, status: 'done', reason: null, automationId: copy.id, beforeRevision: Number(copy.revision), afterRevision: next });
    }

    if (P) P['bind definitions (CPU)'] = (P['bind definitions (CPU)'] ?? 0) + performance.now() - built;
    if (newCopies.length) await phase(P, 'insert copies', () => tx.insert(automations).values(newCopies));
    if (revisions.length) await phase(P, 'insert revisions', () => tx.insert(automationRevisions).values(revisions));
    if (moved.length) {
      await phase(P, 'update copies', () => tx.execute(sql`
        update automations a set revision = v.rev, template_version = v.ver, template_revision = v.rev,
          enabled = coalesce(v.en, a.enabled), updated_at = now()
        from unnest(${uuidList(moved.map((m) => m.id))}::uuid[], ${scalarList(moved.map((m) => m.revision))}::int[],
                    ${scalarList(moved.map((m) => m.version))}::int[], ${scalarList(moved.map((m) => m.enable))}::boolean[]) as v(id, rev, ver, en)
        where a.id = v.id`));
    }
    await phase(P, 'connection usage', async () => {
      if (usageReplaced.length) await tx.execute(sql`delete from automation_connections where automation_id = any(${uuidList(usageReplaced)}::uuid[])`);
      if (usage.length) await tx.insert(automationConnections).values(dedupeUsage(usage));
    });
    await writeOutcomes(tx, core, ctx, outcomes);
    return outcomes;
  });
}

const connectionIdsOf = (def: Definition): string[] => {
  const ids = new Set<string>();
  for (const s of def.steps) if (s.kind === 'http' && s.connection_id) ids.add(s.connection_id);
  if (def.trigger.signature?.connection_id) ids.add(def.trigger.signature.connection_id);
  return [...ids];
};

const dedupeUsage = (rows: (typeof automationConnections.$inferInsert)[]) => {
  const seen = new Set<string>();
  return rows.filter((r) => {
    const k = `${r.automationId}:${r.connectionId}`;
    return seen.has(k) ? false : (seen.add(k), true);
  });
};

/** Each target's outcome on its row, and an entry in each changed account's own audit log. */
async function writeOutcomes(tx: Tx, core: Core, ctx: ApplyContext, outcomes: Outcome[]): Promise<void> {
  if (!outcomes.length) return;
  await phase(ctx.phases, 'target outcomes', () => tx.execute(sql`
    update deployment_targets t set status = v.status, reason = v.reason, automation_id = coalesce(v.aid, t.automation_id),
      before_revision = v.before, after_revision = v.after, applied_at = now()
    from unnest(${uuidList(outcomes.map((o) => o.accountId))}::uuid[], ${textList(outcomes.map((o) => o.status))}::text[], ${textList(outcomes.map((o) => o.reason))}::text[],
                ${textList(outcomes.map((o) => o.automationId))}::uuid[], ${scalarList(outcomes.map((o) => o.beforeRevision))}::int[], ${scalarList(outcomes.map((o) => o.afterRevision))}::int[])
      as v(account_id, status, reason, aid, before, after)
    where t.deployment_id = ${ctx.deploymentId}::uuid and t.account_id = v.account_id and t.status = 'pending'`));
  const done = outcomes.filter((o) => o.status === 'done');
  if (done.length) {
    await phase(ctx.phases, 'audit entries', () => tx.insert(auditLog).values(
      done.map((o) => ({
        tenantId: core.tenantId,
        actorUserId: ctx.actor.id,
        actorEmail: ctx.actor.email,
        accountId: o.accountId,
        sessionId: `deployment:${ctx.deploymentId}`,
        tool: 'deploy_template',
        arguments: { deployment: ctx.deploymentId, template: ctx.templateId, automation: o.automationId, revision: o.afterRevision, note: ctx.note },
        outcome: 'ok' as const,
        message: null,
        durationMs: 0,
      })),
    ));
  }
}

/** Outcomes recorded on their own (the batch they were in was undone): those of targets still pending. */
async function recordOutcomes(core: Core, ctx: ApplyContext, outcomes: Outcome[]): Promise<Outcome[]> {
  return withAccount(core.db, outcomes.map((o) => o.accountId), async (tx) => {
    const pending = await lockPending(tx, ctx.deploymentId, outcomes.map((o) => o.accountId));
    const mine = outcomes.filter((o) => pending.has(o.accountId));
    await writeOutcomes(tx, core, ctx, mine);
    return mine;
  });
}

/** The targets among these still pending, locked until the transaction ends. */
async function lockPending(tx: Tx, deploymentId: string, accountIds: string[]): Promise<Set<string>> {
  const rows = rowsOf<{ account_id: string }>(
    await tx.execute(sql`
      select account_id from deployment_targets
      where deployment_id = ${deploymentId}::uuid and account_id = any(${uuidList(accountIds)}::uuid[]) and status = 'pending'
      order by account_id for update`),
  );
  return new Set(rows.map((r) => String(r.account_id)));
}
