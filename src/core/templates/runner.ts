import { randomUUID } from 'node:crypto';
import { and, eq, sql } from 'drizzle-orm';
import { deployments, deploymentTargets, templates, templateVersions, users } from '../../db/schema/index.js';
import { rowsOf } from '../../db/client.js';
import { onTx, type Core } from '../core.js';
import { log, errorFields } from '../../log.js';
import { applyBatch, phase, type ApplyContext, type TargetRow } from './apply.js';
import { createDeployment, DEPLOYMENT_CHANNEL, type DeploymentOptions, type DeploymentRow, type GateReport, type NewTarget, type WaveReport } from './deployments.js';
import type { TemplateDefinition } from './definition.js';

/**
 * The workers' side of deployments. A deployment is claimed with a lease (FOR UPDATE SKIP LOCKED,
 * like executions), driven a batch of targets at a time — each batch one transaction with the
 * targets' outcomes (apply.ts) — and let go when it bakes; any worker takes over a deployment
 * whose lease lapsed (a killed process), and picks up at its first pending target: none applied
 * twice, none half-applied. After a wave, and its bake, the gate compares the updated copies'
 * runs with their runs before the update; a regression halts the rollout and, with
 * auto_rollback, starts the rollback of that wave as a deployment of its own.
 */

export interface RunnerOptions {
  pollMs?: number;
  leaseMs?: number;
  /** targets per transaction */
  batch?: number;
  /** when given, milliseconds per phase of the apply are added here (the benchmark's profile) */
  phases?: Record<string, number>;
  listen?: (channel: string, onNotify: () => void) => Promise<() => Promise<void>>;
}

export function scheduleDeployments(core: Core, opts: RunnerOptions = {}): () => Promise<void> {
  const me = `d-${randomUUID().slice(0, 8)}`;
  const pollMs = opts.pollMs ?? 1000;
  const leaseMs = opts.leaseMs ?? 30_000;
  let stopped = false;
  let wake: (() => void) | null = null;
  let unlisten: (() => Promise<void>) | null = null;
  const nudge = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  const loop = (async () => {
    if (opts.listen) unlisten = await opts.listen(DEPLOYMENT_CHANNEL, nudge).catch(() => null);
    while (!stopped) {
      try {
        for (;;) {
          if (stopped) break;
          const d = await claim(core, me, leaseMs);
          if (!d) break;
          try {
            await drive(core, d, me, leaseMs, opts.batch ?? 500, () => stopped, opts.phases);
          } catch (err) {
            // a database error (a deadlock, a lost connection): its targets stay pending; let the
            // lease go so this or another worker takes it up again at once, not when it lapses
            log.error('deployment: driving failed; trying again', { deployment: d.id, ...errorFields(err) });
            await core.db.update(deployments).set({ worker: null, leaseUntil: null }).where(mine(d, me)).catch(() => {});
            break;
          }
        }
      } catch (err) {
        log.error('deployment: claiming failed; trying again', errorFields(err));
      }
      if (stopped) break;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, pollMs);
        t.unref();
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  })();
  return async () => {
    stopped = true;
    nudge();
    await loop;
    await unlisten?.().catch(() => {});
  };
}

/** One deployment due for work (running, or baking past its bake) whose lease is free or lapsed. */
async function claim(core: Core, me: string, leaseMs: number): Promise<DeploymentRow | null> {
  const rows = rowsOf<{ id: string }>(
    await core.db.execute(sql`
      update deployments set worker = ${me}, lease_until = now() + ${`${leaseMs} milliseconds`}::interval
      where id = (
        select id from deployments
        where tenant_id = ${core.tenantId}::uuid and status in ('running', 'baking') and (lease_until is null or lease_until < now())
          and (status = 'running' or bake_until <= now() or cancel_requested)
        order by created_at limit 1 for update skip locked)
      returning id`),
  );
  if (!rows[0]) return null;
  const [d] = await core.db.select().from(deployments).where(eq(deployments.id, String(rows[0].id)));
  return d ?? null;
}

/**
 * The waves' done / failed counts from the targets themselves: the counts saved with the
 * deployment lag a batch committed just before a worker was killed, and the worker taking over
 * starts from what was committed.
 */
async function recount(core: Core, deploymentId: string, waves: WaveReport[]): Promise<void> {
  const rows = await core.db
    .select({ wave: deploymentTargets.wave, status: deploymentTargets.status, n: sql<number>`count(*)::int` })
    .from(deploymentTargets)
    .where(and(eq(deploymentTargets.deploymentId, deploymentId), sql`${deploymentTargets.status} in ('done', 'failed')`))
    .groupBy(deploymentTargets.wave, deploymentTargets.status);
  for (const w of waves) {
    w.done = 0;
    w.failed = 0;
  }
  for (const r of rows) {
    const w = waves[r.wave];
    if (w) w[r.status as 'done' | 'failed'] = Number(r.n);
  }
}

const mine = (d: { id: string }, me: string) => and(eq(deployments.id, d.id), eq(deployments.worker, me));

async function drive(core: Core, claimed: DeploymentRow, me: string, leaseMs: number, batchSize: number, stopped: () => boolean, phases?: Record<string, number>): Promise<void> {
  let d = claimed;
  const ctx = { ...(await applyContext(core, d)), phases };
  const opts = d.options as DeploymentOptions;
  const waves = d.waves as WaveReport[];
  await recount(core, d.id, waves);
  const save = async (set: Partial<typeof deployments.$inferInsert>): Promise<boolean> => {
    const [row] = await core.db
      .update(deployments)
      .set({ ...set, waves, updatedAt: sql`now()`, leaseUntil: set.leaseUntil !== undefined ? set.leaseUntil : sql`now() + ${`${leaseMs} milliseconds`}::interval` })
      .where(mine(d, me))
      .returning();
    if (!row) return false;
    d = row;
    return true;
  };
  ctx.renew = () => save({});
  const finish = (status: DeploymentRow['status'], message: string | null) => save({ status, message, finishedAt: sql`now()` as unknown as Date, worker: null, leaseUntil: null });

  while (!stopped()) {
    if (d.cancelRequested) {
      await core.db.update(deploymentTargets).set({ status: 'cancelled' }).where(and(eq(deploymentTargets.deploymentId, d.id), eq(deploymentTargets.status, 'pending')));
      for (const w of waves) if (w.decision === 'pending' || w.decision === 'applying' || w.decision === 'baking') w.decision = 'cancelled';
      await finish('cancelled', 'stopped on request between accounts');
      return;
    }
    const wave = waves[d.currentWave]!;
    if (d.status === 'baking') {
      const verdict = await gate(core, d, opts, wave);
      if (verdict === 'wait') {
        await save({ bakeUntil: new Date(Date.now() + Math.min(Math.max(opts.bakeMs / 4, 1000), 60_000)), worker: null, leaseUntil: null });
        return;
      }
      if (verdict === 'regressed') {
        wave.decision = 'regressed';
        // the later waves never start
        await core.db.update(deploymentTargets).set({ status: 'cancelled', reason: 'the rollout stopped: an earlier wave regressed' }).where(and(eq(deploymentTargets.deploymentId, d.id), eq(deploymentTargets.status, 'pending')));
        for (const w of waves) if (w.decision === 'pending') w.decision = 'cancelled';
        if (opts.autoRollback) {
          // the rollback starts and this deployment ends in one transaction (a kill leaves both or neither)
          await rollbackWave(core, d, me, wave.wave, waves, (id) => `wave ${wave.wave + 1} regressed (${wave.gate!.reasons.join('; ')}); its ${wave.done} account(s) are being rolled back by deployment ${id}`);
        } else {
          await finish('halted', `wave ${wave.wave + 1} regressed (${wave.gate!.reasons.join('; ')}); the rollout stopped, nothing was rolled back (rollback_template undoes it)`);
        }
        return;
      }
      wave.decision = 'passed';
      if (d.currentWave + 1 >= waves.length) {
        await finish('completed', null);
        return;
      }
      if (!(await save({ status: 'running', currentWave: d.currentWave + 1, bakeUntil: null }))) return;
      continue;
    }
    const pending = await phase(phases, 'runner: next pending batch', () =>
      core.db
        .select()
        .from(deploymentTargets)
        .where(and(eq(deploymentTargets.deploymentId, d.id), eq(deploymentTargets.wave, d.currentWave), eq(deploymentTargets.status, 'pending')))
        .orderBy(deploymentTargets.seq)
        .limit(batchSize),
    );
    if (pending.length) {
      wave.started_at ??= new Date().toISOString();
      wave.decision = 'applying';
      await phase(phases, 'batch transaction (total)', () => applyBatch(core, ctx, pending as TargetRow[]));
      // counted from the targets, not from this batch's outcomes: a worker whose lease lapsed may
      // have committed some of them, and the gate's decision rests on the wave's count
      await phase(phases, 'runner: recount', () => recount(core, d.id, waves));
      // the lease is renewed with every batch; a worker that lost it stops here
      if (!(await phase(phases, 'runner: save progress', () => save({})))) return;
      // the batch is committed: a cancel requested meanwhile is seen before the next one
      const [fresh] = await phase(phases, 'runner: cancel check', () => core.db.select({ cancel: deployments.cancelRequested }).from(deployments).where(eq(deployments.id, d.id)));
      d = { ...d, cancelRequested: Boolean(fresh?.cancel) };
      continue;
    }
    // the wave is applied
    wave.applied_at ??= new Date().toISOString();
    if (opts.bakeMs > 0 && wave.done > 0) {
      wave.decision = 'baking';
      wave.bake_started_at = new Date().toISOString();
      wave.bake_until = new Date(Date.now() + opts.bakeMs).toISOString();
      await save({ status: 'baking', bakeUntil: new Date(Date.now() + opts.bakeMs), worker: null, leaseUntil: null });
      return;
    }
    wave.decision = 'no_gate';
    if (d.currentWave + 1 >= waves.length) {
      const failed = waves.reduce((s, w) => s + w.failed, 0);
      await finish('completed', failed ? `${failed} account(s) failed; see their reasons` : null);
      return;
    }
    if (!(await save({ currentWave: d.currentWave + 1 }))) return;
  }
  // stopping: let the lease go so another worker takes over at once
  await core.db.update(deployments).set({ worker: null, leaseUntil: null }).where(mine(d, me));
}

async function applyContext(core: Core, d: DeploymentRow): Promise<ApplyContext> {
  const [t] = await core.db.select({ name: templates.name }).from(templates).where(eq(templates.id, d.templateId));
  let definition: TemplateDefinition | null = null;
  if (d.version !== null) {
    const [v] = await core.db
      .select({ definition: templateVersions.definition })
      .from(templateVersions)
      .where(and(eq(templateVersions.templateId, d.templateId), eq(templateVersions.version, d.version)));
    definition = (v?.definition as TemplateDefinition) ?? null;
  }
  const [actor] = d.createdBy
    ? await core.db.select({ id: users.id, email: users.email, permissions: users.permissions, status: users.status }).from(users).where(eq(users.id, d.createdBy))
    : [];
  return {
    // a rollout can run for days: who started it must still be allowed at each batch (a rollback,
    // which puts back what was there, is not held back by it)
    deployer:
      d.kind === 'deploy' && d.createdBy
        ? { id: d.createdBy, active: actor?.status === 'active' && (actor.permissions ?? []).includes('deploy_automations'), permissions: actor?.permissions ?? [] }
        : null,
    deploymentId: d.id,
    templateId: d.templateId,
    templateName: t?.name ?? 'template',
    definition,
    actor: { id: actor?.id ?? null, email: actor?.email ?? null },
    note: d.kind === 'rollback' ? `rollback (deployment ${d.id})` : `template version ${d.version} (deployment ${d.id})`,
  };
}

/**
 * The wave's gate: the updated copies' finished runs since the update (of the new revision)
 * against the same copies' runs in as long a window before it (at least an hour, at most a day).
 * It waits (up to four bakes) while copies that had traffic before have fewer than
 * min_executions runs since.
 */
async function gate(core: Core, d: DeploymentRow, opts: DeploymentOptions, wave: WaveReport): Promise<'wait' | 'passed' | 'regressed'> {
  const windowMs = Math.min(Math.max(opts.bakeMs, 3_600_000), 86_400_000);
  const rows = rowsOf<{ automation_id: string; after_total: number; after_failed: number; before_total: number; before_failed: number }>(
    await core.db.execute(sql`
      select t.automation_id,
        count(e.id) filter (where e.revision = t.after_revision and e.created_at >= t.applied_at and e.status in ('succeeded', 'failed', 'filtered'))::int as after_total,
        count(e.id) filter (where e.revision = t.after_revision and e.created_at >= t.applied_at and e.status = 'failed')::int as after_failed,
        count(e.id) filter (where e.created_at < t.applied_at and e.status in ('succeeded', 'failed', 'filtered'))::int as before_total,
        count(e.id) filter (where e.created_at < t.applied_at and e.status = 'failed')::int as before_failed
      from deployment_targets t
      left join executions e on e.automation_id = t.automation_id and e.created_at >= t.applied_at - ${`${windowMs} milliseconds`}::interval
      where t.deployment_id = ${d.id}::uuid and t.wave = ${wave.wave} and t.status = 'done' and t.action in ('create', 'update', 'restore')
      group by t.automation_id`),
  );
  const codes = rowsOf<{ side: string; code: string; n: number }>(
    await core.db.execute(sql`
      select case when e.created_at >= t.applied_at and e.revision = t.after_revision then 'after' else 'before' end as side, coalesce(e.error_code, 'unknown') as code, count(*)::int as n
      from deployment_targets t
      join executions e on e.automation_id = t.automation_id and e.created_at >= t.applied_at - ${`${windowMs} milliseconds`}::interval and e.status = 'failed'
      where t.deployment_id = ${d.id}::uuid and t.wave = ${wave.wave} and t.status = 'done'
      group by 1, 2`),
  );
  const need = Math.max(opts.minExecutions, 1);
  const sum = (k: 'after_total' | 'after_failed' | 'before_total' | 'before_failed') => rows.reduce((s, r) => s + Number(r[k]), 0);
  const withTraffic = rows.filter((r) => Number(r.before_total) >= need);
  const short = withTraffic.filter((r) => Number(r.after_total) < need);
  const startedBake = wave.bake_started_at ? Date.parse(wave.bake_started_at) : Date.now();
  const maxWait = startedBake + 4 * opts.bakeMs;
  const waited = short.length > 0;
  if (waited && Date.now() < maxWait) return 'wait';
  const codeMap = (side: string) => Object.fromEntries(codes.filter((c) => c.side === side).map((c) => [c.code, Number(c.n)]));
  const before = { executions: sum('before_total'), failed: sum('before_failed'), failure_rate: 0, error_codes: codeMap('before') };
  const after = { executions: sum('after_total'), failed: sum('after_failed'), failure_rate: 0, error_codes: codeMap('after') };
  before.failure_rate = before.executions ? round(before.failed / before.executions) : 0;
  after.failure_rate = after.executions ? round(after.failed / after.executions) : 0;
  const silent = withTraffic.filter((r) => Number(r.after_total) === 0).length;
  const reasons: string[] = [];
  if (after.executions >= need && after.failure_rate - before.failure_rate > opts.maxFailureRateIncrease) {
    reasons.push(`failure rate ${pct(after.failure_rate)} after against ${pct(before.failure_rate)} before (allowed increase ${pct(opts.maxFailureRateIncrease)})`);
  }
  if (withTraffic.length > 0 && silent * 2 > withTraffic.length) reasons.push(`${silent} of ${withTraffic.length} copies that ran before ran no more since the update`);
  const report: GateReport = {
    copies: rows.length,
    copies_with_traffic: withTraffic.length,
    before,
    after,
    new_error_codes: Object.keys(after.error_codes).filter((c) => !(c in before.error_codes)).sort(),
    silent_copies: silent,
    waited_for_traffic: waited,
    reasons,
  };
  wave.gate = report;
  return reasons.length ? 'regressed' : 'passed';
}

const round = (x: number) => Math.round(x * 10_000) / 10_000;
const pct = (x: number) => `${Math.round(x * 1000) / 10}%`;

/**
 * Roll back what a deployment did in some of its waves (all of them by default): each account
 * done goes back to exactly the revision it had before (a copy the deployment created is
 * disabled), as a deployment of kind rollback. Its targets are planned now, on the copies as they
 * are: one changed since (by hand, or by a later deployment) is not rolled back by this.
 */
export async function rollbackTargets(core: Core, d: DeploymentRow, wave?: number): Promise<NewTarget[]> {
  const rows = rowsOf<{ account_id: string; automation_id: string | null; before_revision: number | null; after_revision: number | null; from_version: number | null; action: string }>(
    await core.db.execute(sql`
      select account_id, automation_id, before_revision, after_revision, from_version, action from deployment_targets
      where deployment_id = ${d.id}::uuid and status = 'done'${wave === undefined ? sql`` : sql` and wave = ${wave}`}
      order by seq`),
  );
  return rows
    .filter((r) => r.automation_id && r.action !== 'disable')
    .map((r) => ({
      accountId: String(r.account_id),
      action: r.before_revision === null ? 'disable' : 'restore',
      automationId: String(r.automation_id),
      expectedRevision: Number(r.after_revision),
      fromVersion: null,
      toVersion: r.from_version === null ? null : Number(r.from_version),
      restoreRevision: r.before_revision === null ? null : Number(r.before_revision),
      bindings: {},
      values: {},
    }));
}

/**
 * The automatic rollback of a regressed wave, in one transaction: the deployment leaves its
 * active state (only while this worker holds it), the rollback deployment is written, the wave's
 * targets are handed to it (rolled_back: its own targets tell each outcome), and the deployment
 * ends as rolled_back with its message.
 */
async function rollbackWave(core: Core, d: DeploymentRow, me: string, wave: number, waves: WaveReport[], message: (rollbackId: string) => string): Promise<void> {
  const targets = await rollbackTargets(core, d, wave);
  await core.db.transaction(async (tx) => {
    const c = onTx(core, tx);
    // out of the active states first: one deployment of a template is active at a time
    const held = await tx.update(deployments).set({ status: 'halted' }).where(mine(d, me)).returning({ id: deployments.id });
    if (!held.length) throw new Error('the lease was lost before the rollback started');
    const [t] = await tx.select({ name: templates.name }).from(templates).where(eq(templates.id, d.templateId));
    const row = await createDeployment(c, {
      accountId: d.accountId,
      templateId: d.templateId,
      templateName: t?.name ?? 'template',
      kind: 'rollback',
      version: null,
      rollbackOf: d.id,
      planHash: `auto:${d.id}:${wave}`,
      options: { waveEnds: [targets.length], bakeMs: 0, minExecutions: 0, maxFailureRateIncrease: 1, autoRollback: false },
      targets,
      createdBy: d.createdBy,
    });
    await tx.execute(sql`update deployment_targets set status = 'rolled_back' where deployment_id = ${d.id}::uuid and wave = ${wave} and status = 'done'`);
    await tx
      .update(deployments)
      .set({ status: 'rolled_back', message: message(row.id), waves, finishedAt: sql`now()`, updatedAt: sql`now()`, worker: null, leaseUntil: null })
      .where(eq(deployments.id, d.id));
  });
}
