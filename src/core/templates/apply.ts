import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { auditLog, automationConnections, automationRevisions, automations } from '../../db/schema/index.js';
import type { deploymentTargets } from '../../db/schema/index.js';
import { withAccount, type Tx } from '../../db/scope.js';
import { rowsOf } from '../../db/client.js';
import type { Core } from '../core.js';
import type { Definition, VarValue } from '../automation-definition.js';
import { hashToken } from '../crypto.js';
import { webhookToken } from '../webhooks.js';
import { uuidList } from '../ids.js';
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
  try {
    return await applyTogether(core, ctx, batch);
  } catch (err) {
    if (batch.length === 1) {
      log.warn('deployment: a target failed', { deployment: ctx.deploymentId, account: batch[0]!.accountId, ...errorFields(err) });
      const reason = 'its copy could not be written (a connection or the account changed since the plan); plan again';
      await recordOutcomes(core, ctx, [{ accountId: batch[0]!.accountId, status: 'failed', reason, automationId: null, beforeRevision: null, afterRevision: null }]);
      return [{ accountId: batch[0]!.accountId, status: 'failed', reason, automationId: null, beforeRevision: null, afterRevision: null }];
    }
    const out: Outcome[] = [];
    for (const t of batch) out.push(...(await applyBatch(core, ctx, [t])));
    return out;
  }
}

async function applyTogether(core: Core, ctx: ApplyContext, batch: TargetRow[]): Promise<Outcome[]> {
  const accountIds = batch.map((t) => t.accountId);
  return withAccount(core.db, accountIds, async (tx) => {
    const status = new Map(
      rowsOf<{ id: string; status: string }>(await tx.execute(sql`select id, status from accounts where id = any(${uuidList(accountIds)}::uuid[])`)).map((r) => [String(r.id), r.status]),
    );
    const copyIds = batch.map((t) => t.automationId).filter((x): x is string => !!x);
    const locked = new Map(
      (copyIds.length
        ? rowsOf<Locked>(
            await tx.execute(sql`
              select id, account_id, revision, template_id, template_version, name from automations
              where id = any(${uuidList(copyIds)}::uuid[]) order by id for update`),
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
          join unnest(${uuidList(restores.map((t) => t.automationId!))}::uuid[], ${`{${restores.map((t) => t.restoreRevision).join(',')}}`}::int[]) as v(aid, rev)
            on r.automation_id = v.aid and r.revision = v.rev`),
      );
      for (const r of rows) restoreFrom.set(String(r.automation_id), r.definition);
    }

    const outcomes: Outcome[] = [];
    const newCopies: (typeof automations.$inferInsert)[] = [];
    const revisions: (typeof automationRevisions.$inferInsert)[] = [];
    const usage: (typeof automationConnections.$inferInsert)[] = [];
    const moved: { id: string; revision: number; version: number | null; enable: boolean | null }[] = [];
    const usageReplaced: string[] = [];
    const fail = (t: TargetRow, reason: string, copy?: Locked) =>
      outcomes.push({ accountId: t.accountId, status: 'failed', reason, automationId: t.automationId, beforeRevision: n(copy?.revision), afterRevision: null });

    for (const t of batch) {
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
        moved.push({ id: copy.id, revision: Number(copy.revision), version: n(copy.template_version), enable: false });
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
      moved.push({ id: copy.id, revision: next, version: t.toVersion, enable: null });
      usageReplaced.push(copy.id);
      for (const id of connectionIdsOf(def)) usage.push({ automationId: copy.id, connectionId: id, accountId: t.accountId });
      outcomes.push({ accountId: t.accountId, status: 'done', reason: null, automationId: copy.id, beforeRevision: Number(copy.revision), afterRevision: next });
    }

    if (newCopies.length) await tx.insert(automations).values(newCopies);
    if (revisions.length) await tx.insert(automationRevisions).values(revisions);
    if (moved.length) {
      await tx.execute(sql`
        update automations a set revision = v.rev, template_version = v.ver, template_revision = v.rev,
          enabled = coalesce(v.en, a.enabled), updated_at = now()
        from unnest(${uuidList(moved.map((m) => m.id))}::uuid[], ${`{${moved.map((m) => m.revision).join(',')}}`}::int[],
                    ${`{${moved.map((m) => m.version ?? 'NULL').join(',')}}`}::int[], ${`{${moved.map((m) => (m.enable === null ? 'NULL' : m.enable)).join(',')}}`}::boolean[]) as v(id, rev, ver, en)
        where a.id = v.id`);
    }
    if (usageReplaced.length) await tx.execute(sql`delete from automation_connections where automation_id = any(${uuidList(usageReplaced)}::uuid[])`);
    if (usage.length) await tx.insert(automationConnections).values(dedupeUsage(usage));
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
  const arr = (xs: (string | number | null)[]) => `{${xs.map((x) => (x === null ? 'NULL' : `"${String(x).replace(/["\\]/g, (c) => `\\${c}`)}"`)).join(',')}}`;
  await tx.execute(sql`
    update deployment_targets t set status = v.status, reason = v.reason, automation_id = coalesce(v.aid, t.automation_id),
      before_revision = v.before, after_revision = v.after, applied_at = now()
    from unnest(${uuidList(outcomes.map((o) => o.accountId))}::uuid[], ${arr(outcomes.map((o) => o.status))}::text[], ${arr(outcomes.map((o) => o.reason))}::text[],
                ${arr(outcomes.map((o) => o.automationId))}::uuid[], ${arr(outcomes.map((o) => o.beforeRevision))}::int[], ${arr(outcomes.map((o) => o.afterRevision))}::int[])
      as v(account_id, status, reason, aid, before, after)
    where t.deployment_id = ${ctx.deploymentId}::uuid and t.account_id = v.account_id`);
  const done = outcomes.filter((o) => o.status === 'done');
  if (done.length) {
    await tx.insert(auditLog).values(
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
    );
  }
}

/** Outcomes recorded on their own (the batch they were in was undone). */
async function recordOutcomes(core: Core, ctx: ApplyContext, outcomes: Outcome[]): Promise<void> {
  await withAccount(core.db, outcomes.map((o) => o.accountId), (tx) => writeOutcomes(tx, core, ctx, outcomes));
}
