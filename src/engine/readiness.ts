import { sql, type SQL } from 'drizzle-orm';
import type { Db, Database } from '../db/client.js';
import { rowsOf } from '../db/client.js';

/**
 * `/readyz`: ready when the database answers and the queue drains.
 *
 * The queue is stalled when work has been due for longer than the stall time
 * (SWITCHBOARD_READY_STALL_SECONDS) while no worker, in any process, is working it:
 *
 *   - queued: some account's oldest queued run has been due for longer than the stall time, and
 *     no running execution holds a live lease. A live lease is one a worker claimed or renewed
 *     within its lease length (renewals come every third of it), so it is a worker at work
 *     right now, wherever it runs. An account at its concurrency cap while others drain is
 *     therefore not stalled (its own runs hold live leases), nor is a fleet whose every slot is
 *     busy (that is lag: switchboard_queue_oldest_due_seconds on /metrics shows it);
 *   - abandoned: a running execution's lease lapsed longer than the stall time ago. Any live
 *     worker takes lapsed runs back within half a lease, so one that stays lapsed means no
 *     worker is there to do it.
 *
 * One statement, on indexes only (src/db/schema/executions.ts): the live lease and the oldest
 * lapsed one are first entries of executions_leased (lease_until where running); the oldest due
 * run is a skip scan of executions_queued (account_id, run_at where queued) — one index probe per
 * account with queued work, each giving that account's oldest — that runs only when no lease is
 * live and stops at the first account over the stall time. Accounts are never named in the answer.
 */
export interface Readiness {
  ready: boolean;
  /** the check that failed: database, queue or abandoned (absent when ready) */
  failed?: 'database' | 'queue' | 'abandoned';
  message?: string;
}

export const DEFAULT_READY_STALL_MS = 120_000;
/** how long /readyz waits for the database to answer before it says it does not */
const PING_TIMEOUT_MS = 2_000;
/** accounts with queued work one walk visits at most (beyond them, the walk does not look) */
const WALK_CAP = 10_000;

/**
 * The skip scan of executions_queued: one row per account with queued work (up to WALK_CAP),
 * with that account's oldest run_at. `until`, when given, stops the walk after the first row
 * it is false for (readiness stops at the first account over the stall time); `anchor` is an
 * extra condition on the first probe (readiness: only when no lease is live).
 */
export function queueWalk(opts: { anchor?: SQL; until?: SQL } = {}): SQL {
  return sql`walk(account_id, run_at, n) as (
    (select e.account_id, e.run_at, 1 from executions e
      where e.status = 'queued' ${opts.anchor ? sql`and ${opts.anchor}` : sql``}
      order by e.account_id, e.run_at limit 1)
    union all
    select x.account_id, x.run_at, w.n + 1 from walk w
    cross join lateral (
      select e.account_id, e.run_at from executions e
      where e.status = 'queued' and e.account_id > w.account_id
      order by e.account_id, e.run_at limit 1
    ) x
    where w.n < ${WALK_CAP} ${opts.until ? sql`and ${opts.until}` : sql``}
  )`;
}

/** The queue as /metrics shows it, from one statement (see queueWalk and checkReadiness for the indexes). */
export interface QueueState {
  /** queued executions, counted up to countCap */
  depth: number;
  /** accounts with queued executions (up to WALK_CAP) */
  accounts: number;
  /** how long the oldest due queued execution has waited (0: none is due) */
  oldestDueSeconds: number;
  /** executions under a live lease, and the distinct workers holding them */
  running: number;
  leaseholders: number;
}

export async function queueState(db: Db, opts: { countCap: number }): Promise<QueueState> {
  const result = await db.execute(sql`
    with recursive ${queueWalk()}
    select
      (select count(*)::int from (select 1 from executions where status = 'queued' limit ${opts.countCap}) q) as depth,
      (select count(*)::int from walk) as accounts,
      (select greatest(0, extract(epoch from now() - min(run_at)))::float8 from walk) as oldest,
      l.running, l.leaseholders
    from (
      select count(*)::int as running, count(distinct split_part(worker, ':', 1))::int as leaseholders
      from executions where status = 'running' and lease_until > now()
    ) l`);
  const r = rowsOf<{ depth: number; accounts: number; oldest: number | null; running: number; leaseholders: number }>(result)[0]!;
  return { depth: Number(r.depth), accounts: Number(r.accounts), oldestDueSeconds: Number(r.oldest ?? 0), running: Number(r.running), leaseholders: Number(r.leaseholders) };
}

export async function checkReadiness(database: Database, stallMs: number): Promise<Readiness> {
  const down: Readiness = { ready: false, failed: 'database', message: 'The database does not answer.' };
  // a probe answers in a bounded time: while the database restarts, a ping may wait on the driver's
  // reconnect, and an orchestrator's probe would time out rather than read "not ready"
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      database.ping(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('ping timed out')), PING_TIMEOUT_MS);
      }),
    ]);
  } catch {
    return down;
  } finally {
    clearTimeout(timer);
  }
  const cutoff = sql`now() - ${stallMs} * interval '1 millisecond'`;
  const live = sql`exists (select 1 from executions where status = 'running' and lease_until > now())`;
  let row: { stalled: boolean | null; abandoned: boolean | null };
  try {
    const result = await database.db.execute(sql`
      with recursive ${queueWalk({ anchor: sql`not (select ${live})`, until: sql`w.run_at >= ${cutoff}` })}
      select
        (select min(run_at) < ${cutoff} from walk) as stalled,
        (select min(lease_until) < ${cutoff} from executions where status = 'running') as abandoned`);
    row = rowsOf<typeof row>(result)[0]!;
  } catch {
    return down;
  }
  const seconds = Math.round(stallMs / 100) / 10;
  if (row.stalled) {
    return { ready: false, failed: 'queue', message: `The queue is stalled: executions have been due for over ${seconds} s and no worker holds a live lease.` };
  }
  if (row.abandoned) {
    return { ready: false, failed: 'abandoned', message: `The queue is stalled: running executions lost their worker over ${seconds} s ago and no worker has taken them back.` };
  }
  return { ready: true };
}
