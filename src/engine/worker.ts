import { randomUUID } from 'node:crypto';
import { and, eq, sql } from 'drizzle-orm';
import { executions, executionSteps } from '../db/schema/index.js';
import type { PgUpdateSetSource } from 'drizzle-orm/pg-core';
import { withAccount } from '../db/scope.js';
import { rowsOf } from '../db/client.js';
import type { Core } from '../core/core.js';
import { getAccountById, type Account } from '../core/accounts.js';
import type { Definition } from '../core/automation-definition.js';
import { definitionOf } from '../core/automations.js';
import { EXECUTION_CHANNEL, type ExecutionRow } from '../core/executions.js';
import { runStep, StepError, type ExpressionDoc } from './steps.js';
import type { StepServices } from './step-context.js';
import { TokenLeases } from './token-leases.js';
import { schedulePruning } from './retention.js';
import { scheduleRollups } from '../core/operations/health-rollup.js';
import { scheduleDeployments } from '../core/templates/runner.js';
import { GroupCommit } from '../core/group-commit.js';
import { TtlCache } from '../core/ttl-cache.js';
import { log, errorFields } from '../log.js';
import { storable, storableText } from '../core/storable.js';
import { metricsOf } from './metrics.js';

/**
 * The execution engine's worker. PostgreSQL is the queue: `executions` rows with status queued
 * are claimed in batches with FOR UPDATE SKIP LOCKED (so any number of workers, in any number of
 * processes, never take the same one), woken by LISTEN/NOTIFY with a polling fallback.
 *
 * A claimed execution is leased: the worker renews the lease while it runs, and every write it
 * makes is guarded by "still mine" (worker id and status running), so a worker that lost its
 * lease — stalled, or killed — changes nothing once another has taken over. Lapsed leases are put
 * back in the queue by any worker. Claiming spans accounts; everything an execution reads and
 * writes after that runs in its own account's scope (RLS).
 *
 * Each step's result is committed (step record + state + next step) before the next one starts,
 * so a run that moves to another worker resumes after the last committed step.
 */

export interface WorkerOptions {
  /** executions run at once by this worker */
  concurrency: number;
  /** lease length; renewed every third of it */
  leaseMs: number;
  /** polling interval when no notification arrives */
  pollMs: number;
  /** first retry delay; doubled per attempt, with jitter (default 1000) */
  retryBaseMs?: number;
  /** runs of one account at once, across all workers (default DEFAULT_ACCOUNT_CONCURRENCY) */
  accountConcurrency?: number;
  /** prune executions, deliveries and expired keys older than this many days (src/engine/retention.ts); none when absent */
  retentionDays?: number;
  /** LISTEN support of the database (src/db/client.ts); without it the worker polls */
  listen?: (channel: string, onNotify: () => void) => Promise<() => Promise<void>>;
}

export const DEFAULT_ACCOUNT_CONCURRENCY = 16;
/** accounts with due work one claim looks at (at least as many as it has slots) */
const ACCOUNTS_PER_CLAIM = 16;
/** accounts a claim steps over at most (at their cap, or passed) before it stops walking */
const MAX_WALK_STEPS = 256;
const NO_ACCOUNT = '00000000-0000-0000-0000-000000000000';

export const DEFAULT_WORKER: WorkerOptions = { concurrency: 4, leaseMs: 30_000, pollMs: 1_000 };
const MAX_BACKOFF_MS = 5 * 60_000;

/** Exponential backoff with full jitter, or the app's Retry-After when it gave one. */
export function backoffMs(attempt: number, retryAfterMs?: number, baseMs = 1000): number {
  if (retryAfterMs !== undefined && Number.isFinite(retryAfterMs)) return Math.min(Math.max(retryAfterMs, 0), MAX_BACKOFF_MS);
  const cap = Math.min(baseMs * 2 ** (attempt - 1), MAX_BACKOFF_MS);
  return Math.round(cap / 2 + (Math.random() * cap) / 2);
}

export class Worker {
  readonly id = `w-${randomUUID().slice(0, 8)}`;
  private running = false;
  private readonly inFlight = new Map<string, Promise<void>>();
  private wake: (() => void) | null = null;
  private unlisten: (() => Promise<void>) | null = null;
  private loop: Promise<void> | null = null;
  private lastRecovery = 0;
  private stopPruning: (() => void) | null = null;
  private stopRollups: (() => void) | null = null;
  private stopDeployments: (() => Promise<void>) | null = null;
  private readonly services: StepServices;

  constructor(
    private readonly core: Core,
    private readonly opts: WorkerOptions = DEFAULT_WORKER,
  ) {
    const leases = new TokenLeases(core);
    this.services = { budget: (t) => leases.take(t), connections: new Map() };
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    metricsOf(this.core).workers.inc();
    if (this.opts.listen) {
      try {
        this.unlisten = await this.opts.listen(EXECUTION_CHANNEL, () => this.nudge());
      } catch (err) {
        log.warn('worker: LISTEN failed, polling only', errorFields(err));
      }
    }
    if (this.opts.retentionDays) this.stopPruning = schedulePruning(this.core, this.opts.retentionDays);
    this.stopRollups = scheduleRollups(this.core);
    // template deployments are driven by the workers too (src/core/templates/runner.ts)
    this.stopDeployments = scheduleDeployments(this.core, { listen: this.opts.listen, pollMs: this.opts.pollMs, leaseMs: this.opts.leaseMs });
    this.loop = this.run();
  }

  /** Stop claiming; wait up to `deadlineMs` for what runs, then put the rest back in the queue. */
  async stop(deadlineMs = 10_000): Promise<void> {
    if (!this.running) return;
    this.running = false;
    metricsOf(this.core).workers.dec();
    this.stopPruning?.();
    this.stopRollups?.();
    this.nudge();
    await this.loop;
    await this.stopDeployments?.();
    await this.unlisten?.().catch(() => {});
    const all = Promise.allSettled([...this.inFlight.values()]);
    const timedOut = await Promise.race([all.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), deadlineMs).unref())]);
    if (timedOut) {
      // whatever still runs is released: its next guarded write finds it no longer ours
      await this.core.db
        .update(executions)
        .set({ status: 'queued', leaseUntil: null, worker: null, runAt: sql`now()` })
        .where(and(sql`${executions.worker} like ${`${this.id}:%`}`, eq(executions.status, 'running')));
    }
  }

  private nudge(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private async run(): Promise<void> {
    // whether the last wait ended on the poll timer rather than a finished run or a notification
    let polled = false;
    while (this.running) {
      // on PGlite every query resolves in microtasks: without a turn of the event loop here, a
      // worker with a backlog would keep timers and I/O (HTTP requests, other callers) waiting
      // until the backlog drained
      await new Promise<void>((resolve) => setImmediate(resolve));
      try {
        if (Date.now() - this.lastRecovery > this.opts.leaseMs / 2) await this.recoverLapsed();
        const free = this.opts.concurrency - this.inFlight.size;
        // busy, claim in batches (a quarter of the slots at least): one claim statement per run
        // finishing would cost a round trip per run; idle, or a poll interval without a claim
        // (slow runs holding most slots), claim whatever is due at once
        const batch = Math.max(1, Math.ceil(this.opts.concurrency / 4));
        const claimed = free > 0 && (this.inFlight.size === 0 || free >= batch || polled) ? await this.claim(free) : [];
        polled = false;
        for (const row of claimed) {
          // keyed by the claim: a run this worker claims again (its lease lapsed) is another claim
          const claim = row.worker!;
          const p = this.execute(row)
            .catch((err: unknown) => log.error('worker: execution failed unexpectedly', { execution: row.id, ...errorFields(err) }))
            .finally(() => {
              this.inFlight.delete(claim);
              this.nudge();
            });
          this.inFlight.set(claim, p);
        }
        // a full batch: there may be more at once; else wait for a notification, a free slot or the poll
        if (claimed.length > 0 && claimed.length === free) continue;
      } catch (err) {
        log.error('worker: claim failed', errorFields(err));
      }
      if (!this.running) break;
      polled = await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(true), this.opts.pollMs);
        t.unref();
        this.wake = () => {
          clearTimeout(t);
          resolve(false);
        };
      });
    }
  }

  private quoted(id: string): string {
    if (!/^[0-9a-f-]{36}$/.test(id)) throw new Error('worker: bad account cursor');
    return `'${id}'`;
  }

  /** where the next claim starts walking the accounts with work (rotates, so every account gets its turn) */
  private cursor = NO_ACCOUNT;

  /**
   * Up to `n` due executions, leased to this worker, fairly across accounts: the claim walks the
   * accounts that have due work and room under their cap (a skip scan of executions_queued, at
   * most ACCOUNTS_PER_CLAIM of them, starting after the account the last claim served last), takes
   * from each its oldest — no more than its cap of runs at once (accountConcurrency) minus what it
   * runs now — and orders them first by their place in their account's line, then by the walk
   * (so accounts take turns, whatever the age of their runs). So one account's
   * burst of 10,000 queued runs gets one slot per round like any other account with work, not
   * every slot. The cap is counted when claiming: two workers claiming at the same instant may
   * together pass it by what they claim in that instant.
   */
  private async claim(n: number): Promise<ExecutionRow[]> {
    const lease = this.opts.leaseMs;
    const cap = this.opts.accountConcurrency ?? DEFAULT_ACCOUNT_CONCURRENCY;
    const walk = Math.max(n, ACCOUNTS_PER_CLAIM);
    // the accounts with due work and room under their cap, in walk order: those after the cursor,
    // then (wrapping) the rest. Accounts at their cap are stepped over (up to MAX_WALK_STEPS accounts in all),
    // so they cannot crowd out an account with room.
    const next = (after: string) => sql`(select e.account_id from executions e
      where e.status = 'queued' and e.run_at <= now() and e.account_id > ${sql.raw(after)}
      order by e.account_id limit 1)`;
    const room = (id: string) => sql`${cap} - (select count(*)::int from executions r where r.account_id = ${sql.raw(id)} and r.status = 'running')`;
    const walkFrom = (name: string, start: string, until: ReturnType<typeof sql> | null) => sql`
      ${sql.raw(name)}(account_id, room, seen, steps) as (
        select n.account_id, ${room('n.account_id')}, 0, 1 from (select ${next(start)} as account_id) n
        union all
        select n.account_id, ${room('n.account_id')}, a.seen + (a.room > 0)::int, a.steps + 1
        from ${sql.raw(name)} a cross join lateral (select ${next('a.account_id')} as account_id) n
        where a.account_id is not null and a.seen + (a.room > 0)::int < ${walk} and a.steps < ${MAX_WALK_STEPS}
          ${until ? sql`and a.account_id <= ${until}` : sql``}
      )`;
    const due = sql`
      with recursive ${walkFrom('after_cursor', `${this.quoted(this.cursor)}::uuid`, null)},
      ${walkFrom('from_start', `'${NO_ACCOUNT}'::uuid`, sql`${this.cursor}::uuid`)},
      accts as (
        select account_id, room, steps as visited from after_cursor where account_id is not null and room > 0
        union all
        select account_id, room, ${MAX_WALK_STEPS} + steps from from_start where account_id is not null and room > 0 and account_id <= ${this.cursor}::uuid
      ),
      lined as (
        select x.id, a.visited, row_number() over (partition by a.account_id order by x.run_at) as place
        from accts a
        cross join lateral (
          select q.id, q.run_at from executions q
          where q.status = 'queued' and q.run_at <= now() and q.account_id = a.account_id
          order by q.run_at
          limit least(${n}, a.room)
          for update skip locked
        ) x
      )
      select id from lined order by place, visited limit ${n}`;
    const timer = metricsOf(this.core).claimSeconds.startTimer();
    const rows = await this.core.db
      .update(executions)
      .set({
        status: 'running',
        leaseUntil: sql`now() + ${lease} * interval '1 millisecond'`,
        worker: sql`${this.id} || ':' || substr(md5(random()::text), 1, 12)`,
        startedAt: sql`coalesce(${executions.startedAt}, now())`,
      })
      .where(sql`${executions.id} in (${due})`)
      .returning()
      .finally(timer);
    // the next claim starts after the last account served here (in walk order), so accounts take turns
    if (rows.length) {
      const ids = rows.map((r) => r.accountId);
      const after = ids.filter((id) => id > this.cursor);
      this.cursor = (after.length ? after : ids).reduce((max, id) => (id > max ? id : max));
    }
    return rows;
  }

  /** Executions whose worker stopped renewing go back to the queue (they resume after their last committed step). */
  private async recoverLapsed(): Promise<void> {
    this.lastRecovery = Date.now();
    const back = await this.core.db
      .update(executions)
      .set({ status: 'queued', leaseUntil: null, worker: null, runAt: sql`now()` })
      .where(and(eq(executions.status, 'running'), sql`${executions.leaseUntil} < now()`))
      .returning({ id: executions.id });
    if (back.length) log.warn('worker: took back executions whose lease lapsed', { count: back.length });
  }

  /**
   * A write of this execution, only while this claim still holds it (the claim id is unique per
   * claim, so a run this worker claimed again after its lease lapsed is not confused with the
   * first); false when it no longer does. Step records are written in the same transaction.
   */
  private async mine(row: ExecutionRow, set: PgUpdateSetSource<typeof executions>, steps: (typeof executionSteps.$inferInsert)[] = []): Promise<boolean> {
    const ok = await withAccount(this.core.db, [row.accountId], async (tx) => {
      const updated = await tx
        .update(executions)
        .set(set)
        .where(and(eq(executions.id, row.id), eq(executions.worker, row.worker!), eq(executions.status, 'running')))
        .returning({ id: executions.id });
      if (!updated.length) return false;
      if (steps.length) await tx.insert(executionSteps).values(steps);
      return true;
    });
    // counted once committed: a final state this claim wrote
    if (ok && typeof set.status === 'string' && set.status !== 'queued' && set.status !== 'running') metricsOf(this.core).executions.inc({ status: set.status });
    return ok;
  }

  /**
   * Progress commits (a step done, or the run succeeded) of runs of the same account are written
   * together: what arrives while one is in flight goes into the next (src/core/group-commit.ts).
   * Each is one statement — the executions updated from a VALUES list, guarded by their claim,
   * and the step records inserted for those the update still held — in the account's scope.
   */
  private readonly progress = new GroupCommit<Progress, boolean>((accountId, items) => this.writeProgress(accountId, items));

  private async writeProgress(accountId: string, items: Progress[]): Promise<boolean[]> {
    const runs = sql.join(
      items.map((it) => sql`(${it.row.id}::uuid, ${it.row.worker}::text, ${it.state}::jsonb, ${it.nextStep}::int, ${it.last}::boolean)`),
      sql`, `,
    );
    const steps = items.flatMap((it) => it.steps);
    const json = (v: unknown) => (v === null || v === undefined ? null : JSON.stringify(v));
    const stepRows = sql.join(
      steps.map(
        (r) =>
          sql`(${r.executionId}::uuid, ${r.stepIndex}::int, ${r.attempt}::int, ${r.tenantId}::uuid, ${r.accountId}::uuid, ${r.stepId}::text, ${r.kind}::text, ${r.status}::text,
               ${json(r.input)}::jsonb, ${json(r.output)}::jsonb, ${r.errorCode ?? null}::text, ${r.errorMessage ?? null}::text, ${r.startedAt.toISOString()}::timestamptz, ${r.durationMs}::int)`,
      ),
      sql`, `,
    );
    const result = await withAccount(this.core.db, [accountId], (tx) =>
      tx.execute(sql`
        with v(id, worker, state, next_step, last) as (values ${runs}),
        u as (
          update executions e
          set state = v.state, next_step = v.next_step, attempt = 0, waits = 0,
              status = case when v.last then 'succeeded' else e.status end,
              finished_at = case when v.last then now() else e.finished_at end,
              lease_until = case when v.last then null else e.lease_until end
          from v
          where e.id = v.id and e.worker = v.worker and e.status = 'running'
          returning e.id
        )${
          steps.length
            ? sql`,
        s as (
          insert into execution_steps (execution_id, step_index, attempt, tenant_id, account_id, step_id, kind, status, input, output, error_code, error_message, started_at, duration_ms)
          select x.* from (values ${stepRows}) x(execution_id, step_index, attempt, tenant_id, account_id, step_id, kind, status, input, output, error_code, error_message, started_at, duration_ms)
          where x.execution_id in (select id from u)
          on conflict do nothing
        )`
            : sql``
        }
        select id from u`),
    );
    const held = new Set(rowsOf<{ id: string }>(result).map((r) => r.id));
    const succeeded = items.filter((it) => it.last && held.has(it.row.id)).length;
    if (succeeded) metricsOf(this.core).executions.inc({ status: 'succeeded' }, succeeded);
    return items.map((it) => held.has(it.row.id));
  }

  /** Accounts read in the last second (a suspension reaches the worker within a second). */
  private readonly accounts = new TtlCache<Account | null>(1000);

  private async account(id: string): Promise<Account | null> {
    const hit = this.accounts.get(id);
    if (hit !== undefined) return hit;
    const account = await getAccountById(this.core, id);
    this.accounts.set(id, account);
    return account;
  }

  private async execute(row: ExecutionRow): Promise<void> {
    // a routed run reads its account fresh: the link to the parent is checked as it is now
    const account = row.automationAccountId ? await getAccountById(this.core, row.accountId) : await this.account(row.accountId);
    if (!account) return;
    // a parent's automation routed here runs only while this account is still that parent's child
    const owner = row.automationAccountId ? await this.account(row.automationAccountId) : account;
    if (row.automationAccountId && (!owner || account.parentAccountId !== row.automationAccountId)) {
      await this.mine(row, {
        status: 'cancelled',
        finishedAt: sql`now()`,
        leaseUntil: null,
        errorCode: 'unrouted',
        errorMessage: `Not run: '${account.slug}' is no longer a linked account of the automation's account, which routed this event to it.`,
      });
      return;
    }
    if (account.status === 'suspended' || owner?.status === 'suspended') {
      // nothing runs in a suspended account: it waits, and runs once the suspension is lifted
      await this.mine(row, { status: 'queued', leaseUntil: null, worker: null, runAt: sql`now() + interval '30 seconds'` });
      return;
    }
    const heartbeat = setInterval(() => {
      this.core.db
        .update(executions)
        .set({ leaseUntil: sql`now() + ${this.opts.leaseMs} * interval '1 millisecond'` })
        .where(and(eq(executions.id, row.id), eq(executions.worker, row.worker!), eq(executions.status, 'running')))
        .catch((err: unknown) => log.warn('worker: lease renewal failed', { execution: row.id, ...errorFields(err) }));
    }, Math.max(50, Math.floor(this.opts.leaseMs / 3)));
    heartbeat.unref();
    try {
      await this.steps(row, account, await definitionOf(this.core, row.automationAccountId ?? row.accountId, row.automationId, row.revision));
    } finally {
      clearInterval(heartbeat);
    }
  }

  /**
   * Run the steps from `next_step`. Steps without side effects (transform, filter) are not
   * committed one by one: their records wait for the next commit, which follows every step with
   * side effects (http, store) and the end of the run — rerunning a pure step after a crash
   * repeats nothing outside, so only what touched the world must be committed before moving on.
   */
  private async steps(row: ExecutionRow, account: Account, def: Definition): Promise<void> {
    const state: Record<string, unknown> = { ...(row.state ?? {}) };
    const doc: ExpressionDoc = {
      trigger: row.trigger,
      steps: Object.fromEntries(Object.entries(state).map(([k, v]) => [k, { output: v }])),
      account: { id: account.id, slug: account.slug, routing_key: account.routingKey },
      vars: def.vars ?? {},
    };
    let attempt = row.attempt;
    let waited = row.waits;
    let pending: (typeof executionSteps.$inferInsert)[] = [];
    for (let i = row.nextStep; i < def.steps.length; i++) {
      const step = def.steps[i]!;
      attempt += 1;
      const startedAt = new Date();
      const t0 = performance.now();
      const record = (status: 'succeeded' | 'failed' | 'filtered' | 'retrying', extra: Partial<typeof executionSteps.$inferInsert>) => ({
        executionId: row.id,
        stepIndex: i,
        attempt,
        tenantId: row.tenantId,
        accountId: row.accountId,
        stepId: step.id,
        kind: step.kind,
        status,
        startedAt,
        durationMs: Math.round(performance.now() - t0),
        ...extra,
        input: storable(extra.input ?? null),
        output: storable(extra.output ?? null),
        errorMessage: extra.errorMessage ? storableText(extra.errorMessage) : null,
      });
      try {
        const result = await runStep({ core: this.core, account, doc, executionId: row.id, idempotencyId: row.idempotencyOf ?? row.id, automationAccountId: row.automationAccountId ?? row.accountId, services: this.services }, step);
        if (result.stop) {
          await this.mine(row, { status: 'filtered', finishedAt: sql`now()`, leaseUntil: null, state, nextStep: i + 1, attempt: 0 }, [...pending, record('filtered', { input: result.input, output: result.output })]);
          return;
        }
        const output = storable(result.output);
        state[step.id] = output;
        doc.steps[step.id] = { output };
        pending.push(record('succeeded', { input: result.input, output: clipped(result.record ?? output) }));
        const last = i === def.steps.length - 1;
        // committed: after a store step (its write is done and must not be done twice), after an
        // http step that another step with side effects follows (a crash must not repeat it), and
        // at the end. An http step followed only by pure steps commits with the end of the run: a
        // crash in between repeats that one call, with the same Idempotency-Key.
        const effectsAhead = def.steps.slice(i + 1).some((s) => s.kind === 'http' || s.kind === 'store');
        if (last || step.kind === 'store' || (step.kind === 'http' && effectsAhead)) {
          const ok = await this.progress.submit(row.accountId, { row, state: JSON.stringify(state), nextStep: i + 1, last, steps: pending });
          if (!ok) return; // no longer ours: another worker carries on
          pending = [];
        }
        attempt = 0;
        waited = 0;
      } catch (err) {
        const e = err instanceof StepError ? err : new StepError('internal_error', `Step '${step.id}' failed inside the engine; the server log has the details.`, true);
        if (!(err instanceof StepError)) log.error('worker: step failed unexpectedly', { execution: row.id, step: step.id, ...errorFields(err) });
        const seen = { input: e.record?.input ?? null, output: e.record?.output ?? null, errorCode: e.code, errorMessage: e.message };
        const message = storableText(e.message);
        // a rate-limit wait is rescheduled (the worker moves on) without using up a retry
        const waits = waited + (e.countsAsAttempt ? 0 : 1);
        const tries = attempt - waits;
        const done = [...pending, record(e.retryable && (!e.countsAsAttempt || tries <= def.retries.max) ? 'retrying' : 'failed', seen)];
        // the steps committed with this write are done: a retry resumes at the failing one
        const at = { state, nextStep: i };
        try {
          if (done[done.length - 1]!.status === 'retrying') {
            const wait = e.countsAsAttempt ? backoffMs(tries, e.retryAfterMs, this.opts.retryBaseMs) : Math.max(e.retryAfterMs ?? 1000, 50);
            await this.mine(row, { ...at, status: 'queued', attempt, waits, leaseUntil: null, worker: null, runAt: sql`now() + ${wait} * interval '1 millisecond'`, errorCode: e.code, errorMessage: message }, done);
          } else {
            await this.mine(row, { ...at, status: 'failed', attempt, finishedAt: sql`now()`, leaseUntil: null, errorCode: e.code, errorMessage: message, failedStep: step.id, ...failureOf(step, e) }, done);
          }
        } catch (writeErr) {
          // the record could not be stored: end the run rather than send its request again and again
          log.error('worker: could not record a step failure; failing the run', { execution: row.id, step: step.id, ...errorFields(writeErr) });
          await this.mine(row, { status: 'failed', finishedAt: sql`now()`, leaseUntil: null, errorCode: 'internal_error', errorMessage: `Step '${step.id}' failed and its record could not be stored.`, failedStep: step.id });
        }
        return;
      }
    }
    if (def.steps.length === 0 || row.nextStep >= def.steps.length) {
      await this.mine(row, { status: 'succeeded', finishedAt: sql`now()`, leaseUntil: null });
    }
  }
}

/** A progress commit: the run's state after its step `nextStep - 1`, the step records since the last commit, and whether the run is done. */
interface Progress {
  row: ExecutionRow;
  /** the state, as JSON text (taken when submitted: the run goes on changing its object) */
  state: string;
  nextStep: number;
  last: boolean;
  steps: (typeof executionSteps.$inferInsert)[];
}

/** What a failure is grouped by besides its step and code (failure_groups): what the step called, and the upstream status. */
function failureOf(step: Definition['steps'][number], e: StepError): { errorTarget: string; errorStatus: number | null } {
  const status = (e.record?.output as { status?: unknown } | undefined)?.status;
  return { errorTarget: e.target ?? step.kind, errorStatus: typeof status === 'number' && Number.isInteger(status) ? status : null };
}

const RECORD_CHARS = 8 * 1024;
/** What a step record keeps of a large value: its start and size (the whole value lives in the run's state). */
function clipped(value: unknown): unknown {
  const json = JSON.stringify(value);
  if (json === undefined || json.length <= RECORD_CHARS) return value;
  return { truncated: true, chars: json.length, start: json.slice(0, RECORD_CHARS) };
}
