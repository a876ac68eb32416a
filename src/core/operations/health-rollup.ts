import { sql, type SQL } from 'drizzle-orm';
import type { Core } from '../core.js';
import { rowsOf } from '../../db/client.js';
import { log, errorFields } from '../../log.js';
import { date } from './coverage.js';
import { SILENCE_MIN_PER_WINDOW, SILENCE_WINDOWS } from './health-rules.js';

/**
 * check_health's figures over the hourly aggregates, split at the **live edge**: the hour before
 * the current one. Runs count in the hour they end and deliveries in the hour they arrive, so
 * the engine writes only the current hour's bucket (and, for a transaction that straddles the
 * hour, the one before): every bucket behind the edge is final.
 *
 *   base  per account and automation, the sums over the buckets behind the edge: the window's
 *         part there, the window before, and the silence baseline (the SILENCE_WINDOWS windows
 *         before the current one). Up to 5 × H + H buckets per automation (840 for '7d').
 *   live  the buckets at or after the edge: two per automation.
 *
 * The base is computed from the buckets (baseOf), or read from the tenant's **roll-up**:
 * health_rollup_rows holds the base as of one hour for every automation of the tenant, and a
 * row of health_rollups says which hour. A fleet-wide read (scope 'all') reads one stored row
 * and two live buckets per automation instead of hundreds of buckets: it computes the roll-up
 * when it is missing or behind the clock (one grouped scan, the cost of one uncached read), and
 * every read in the same hour reuses it. A worker keeps the roll-ups that reads asked for in the
 * last day current as the hours turn (scheduleRollups), so those reads rarely pay for one.
 *
 * A write behind the edge (anything but the engine: a repair, a test, a run whose end was
 * recorded more than an hour late; an insert, an update, a delete or a truncate) marks the
 * tenant's roll-ups stale in its own transaction (triggers in drizzle/0022: as_of set to the
 * epoch), so no read uses them until they are computed again, by the next fleet-wide read or by
 * the worker within a minute: a read is never staler than a read from the buckets. The trigger
 * and a refresh order themselves on the tenant's advisory lock (refreshRollup).
 *
 * Every bound is derived from one `asOf` (the current hour, read once per call), so the window,
 * the edge and the roll-up agree even when the hour turns during a call.
 */

export const ROLLUP_KEEP_FRESH_HOURS = 24;

/** asOf − n hours, as SQL */
export const hoursBefore = (asOf: Date, n: number): SQL => sql`(${asOf.toISOString()}::timestamptz - ${n} * interval '1 hour')`;
/** the live edge: buckets at or after it may still change */
export const liveEdge = (asOf: Date): SQL => hoursBefore(asOf, 1);

/** the columns of a base row, in health_rollup_rows' order (after tenant, window, account, automation) */
export const BASE_COLUMNS = [
  'succeeded', 'failed', 'filtered', 'cancelled', 'throttled', 'previous_succeeded', 'previous_failed', 'last_success_at', 'last_failure_at',
  'received', 'accepted', 'routed', 'unrouted', 'duplicate', 'rejected', 'recorded', 'previous_received', 'baseline', 'baseline_windows',
] as const;

/**
 * The base per (account_id, automation_id) from the buckets behind the edge, for the rows `where`
 * admits (a filter on the given alias). Window H: the current window is [asOf − H, now], the one
 * before [asOf − 2H, asOf − H), baseline window k (1 … SILENCE_WINDOWS) [asOf − (k+1)H, asOf − kH).
 */
export function baseOf(where: (alias: string) => SQL, hours: number, asOf: Date): SQL {
  const w0 = hoursBefore(asOf, hours);
  const w1 = hoursBefore(asOf, 2 * hours);
  const edge = liveEdge(asOf);
  return sql`
    select coalesce(e.account_id, d.account_id) as account_id, coalesce(e.automation_id, d.automation_id) as automation_id,
      coalesce(e.succeeded, 0) as succeeded, coalesce(e.failed, 0) as failed, coalesce(e.filtered, 0) as filtered,
      coalesce(e.cancelled, 0) as cancelled, coalesce(e.throttled, 0) as throttled,
      coalesce(e.previous_succeeded, 0) as previous_succeeded, coalesce(e.previous_failed, 0) as previous_failed,
      e.last_success_at, e.last_failure_at,
      coalesce(d.received, 0) as received, coalesce(d.accepted, 0) as accepted, coalesce(d.routed, 0) as routed,
      coalesce(d.unrouted, 0) as unrouted, coalesce(d.duplicate, 0) as duplicate, coalesce(d.rejected, 0) as rejected,
      coalesce(d.recorded, 0) as recorded, coalesce(d.previous_received, 0) as previous_received,
      coalesce(d.baseline, 0)::float8 as baseline, coalesce(d.baseline_windows, 0) as baseline_windows
    from (
      select account_id, automation_id,
        coalesce(sum(succeeded) filter (where hour >= ${w0}), 0)::int as succeeded, coalesce(sum(failed) filter (where hour >= ${w0}), 0)::int as failed,
        coalesce(sum(filtered) filter (where hour >= ${w0}), 0)::int as filtered, coalesce(sum(cancelled) filter (where hour >= ${w0}), 0)::int as cancelled,
        coalesce(sum(throttled) filter (where hour >= ${w0}), 0)::int as throttled,
        coalesce(sum(succeeded) filter (where hour < ${w0}), 0)::int as previous_succeeded, coalesce(sum(failed) filter (where hour < ${w0}), 0)::int as previous_failed,
        max(last_success_at) as last_success_at, max(last_failure_at) as last_failure_at
      from execution_stats x where ${where('x')} and hour >= ${w1} and hour < ${edge}
      group by account_id, automation_id) e
    full join (
      select account_id, automation_id,
        coalesce(sum(r) filter (where k <= 0), 0)::int as received, coalesce(sum(accepted) filter (where k <= 0), 0)::int as accepted,
        coalesce(sum(routed) filter (where k <= 0), 0)::int as routed, coalesce(sum(unrouted) filter (where k <= 0), 0)::int as unrouted,
        coalesce(sum(duplicate) filter (where k <= 0), 0)::int as duplicate, coalesce(sum(rejected) filter (where k <= 0), 0)::int as rejected,
        coalesce(sum(recorded) filter (where k <= 0), 0)::int as recorded, coalesce(sum(r) filter (where k = 1), 0)::int as previous_received,
        coalesce(sum(r) filter (where k >= 1), 0)::float8 / ${SILENCE_WINDOWS} as baseline,
        count(*) filter (where k >= 1 and r >= ${SILENCE_MIN_PER_WINDOW})::int as baseline_windows
      from (
        -- k: 0 for the current window, 1 for the one before, up to SILENCE_WINDOWS
        select account_id, automation_id, ceil(extract(epoch from (${w0} - hour)) / ${hours * 3600})::int as k,
          sum(received) as r, sum(accepted) as accepted, sum(routed) as routed, sum(unrouted) as unrouted,
          sum(duplicate) as duplicate, sum(rejected) as rejected, sum(recorded) as recorded
        from delivery_stats y where ${where('y')} and hour >= ${hoursBefore(asOf, (SILENCE_WINDOWS + 1) * hours)} and hour < ${edge}
        group by 1, 2, 3) b
      group by account_id, automation_id) d
    on d.account_id = e.account_id and d.automation_id = e.automation_id`;
}

/**
 * The base for the rows `where` admits: the tenant's stored roll-up when, in this statement's own
 * snapshot, its marker says it is as of `asOf`; else computed from the buckets (baseOf). The
 * marker is checked in the statement that reads the rows, so a refresh committing between the
 * call's first look at the marker and this read cannot leave it reading no rows or the wrong
 * hour's. The branch not taken is never run (an uncorrelated EXISTS is a one-time filter).
 */
export function storedBase(where: (alias: string) => SQL, hours: number, asOf: Date, tenantId: string): SQL {
  const at = sql`${asOf.toISOString()}::timestamptz`;
  const current = sql`exists (select 1 from health_rollups m where m.tenant_id = ${tenantId} and m.window_hours = ${hours} and m.as_of = ${at})`;
  return sql`
    select account_id, automation_id, ${sql.raw(BASE_COLUMNS.join(', '))}
    from health_rollup_rows r where ${where('r')} and r.window_hours = ${hours} and r.as_of = ${at} and ${current}
    union all
    select * from (${baseOf(where, hours, asOf)}) b where not ${current}`;
}

export type Run = <R>(query: SQL) => Promise<R[]>;

/**
 * The call's clock (the current hour, by the database) and the hour the tenant's roll-up of window
 * H is as of (null: none), in one statement, read in the caller's own scope.
 */
export async function clockAndRollup(q: Run, tenantId: string, hours: number): Promise<{ asOf: Date; rollupAsOf: Date | null }> {
  const [r] = await q<{ as_of: unknown; rollup: unknown }>(sql`
    select date_trunc('hour', now()) as as_of,
      (select as_of from health_rollups where tenant_id = ${tenantId} and window_hours = ${hours}) as rollup`);
  return { asOf: date(r!.as_of)!, rollupAsOf: date(r!.rollup) };
}

/** How long a refresh waits for a write behind the edge (or another refresh) before giving up. */
export const ROLLUP_LOCK_TIMEOUT_MS = 3_000;

/**
 * Compute the tenant's roll-up of window H as of `asOf` on the service path, unless it already
 * is as of that hour or a later one (another caller or worker did it first; a caller whose clock
 * was read before the hour turned never moves it back). Refreshes of the tenant take its advisory
 * lock exclusively; a write behind the edge takes it shared in its trigger (drizzle/0022), so a
 * refresh waits for such writes to commit and never sums around an uncommitted one, and a write
 * that starts meanwhile marks the result stale when it commits. Waits at most
 * ROLLUP_LOCK_TIMEOUT_MS for either, then throws (a read sums the buckets itself instead).
 * `requested`: a read asked for it (the worker keeps it current for a day after). Returns
 * whether it computed.
 */
export async function refreshRollup(core: Core, hours: number, asOf: Date, requested: boolean): Promise<boolean> {
  return core.db.transaction(async (tx) => {
    const q: Run = async <R>(query: SQL) => rowsOf<R>(await tx.execute(query));
    await q(sql.raw(`set local lock_timeout = ${ROLLUP_LOCK_TIMEOUT_MS}`));
    await q(sql`select pg_advisory_xact_lock(hashtext('switchboard:health_rollup'), hashtext(${core.tenantId}))`);
    const [marker] = await q<{ as_of: unknown }>(sql`
      select as_of from health_rollups where tenant_id = ${core.tenantId} and window_hours = ${hours} for update`);
    if (marker && date(marker.as_of)!.getTime() >= asOf.getTime()) return false;
    await q(sql`
      insert into health_rollups (tenant_id, window_hours, as_of, computed_at, requested_at)
      values (${core.tenantId}, ${hours}, ${asOf.toISOString()}::timestamptz, now(), now())
      on conflict (tenant_id, window_hours) do update set as_of = excluded.as_of, computed_at = excluded.computed_at
        ${requested ? sql`, requested_at = excluded.requested_at` : sql``}`);
    await q(sql`delete from health_rollup_rows where tenant_id = ${core.tenantId} and window_hours = ${hours}`);
    const tenant = (alias: string) => sql`${sql.raw(alias)}.tenant_id = ${core.tenantId}`;
    await q(sql`
      insert into health_rollup_rows (tenant_id, window_hours, account_id, automation_id, as_of, ${sql.raw(BASE_COLUMNS.join(', '))})
      select ${core.tenantId}, ${hours}, account_id, automation_id, ${asOf.toISOString()}::timestamptz, ${sql.raw(BASE_COLUMNS.join(', '))}
      from (${baseOf(tenant, hours, asOf)}) b`);
    return true;
  });
}

/**
 * A fleet-wide read used the stored roll-up: it counts as asked for, so the worker keeps it
 * current for another ROLLUP_KEEP_FRESH_HOURS (written at most once an hour).
 */
export async function noteRequested(core: Core, hours: number): Promise<void> {
  // a write behind the edge may hold the marker's row until it commits: skip it rather than wait
  await core.db.execute(sql`
    update health_rollups set requested_at = now()
    where (tenant_id, window_hours) in (
      select tenant_id, window_hours from health_rollups
      where tenant_id = ${core.tenantId} and window_hours = ${hours} and requested_at < now() - interval '1 hour'
      for update skip locked)`);
}

/**
 * Bring the roll-ups that reads asked for in the last ROLLUP_KEEP_FRESH_HOURS up to the current
 * hour; the window sizes brought up.
 */
export async function refreshRequestedRollups(core: Core): Promise<number[]> {
  const due = rowsOf<{ window_hours: number; as_of: unknown }>(
    await core.db.execute(sql`
      select window_hours, date_trunc('hour', now()) as as_of from health_rollups
      where tenant_id = ${core.tenantId} and as_of < date_trunc('hour', now())
        and requested_at > now() - ${ROLLUP_KEEP_FRESH_HOURS} * interval '1 hour'
      order by window_hours`),
  );
  const done: number[] = [];
  for (const r of due) if (await refreshRollup(core, Number(r.window_hours), date(r.as_of)!, false)) done.push(Number(r.window_hours));
  return done;
}

/** Keep the requested roll-ups current, checked every `everyMs`; returns the stop function. */
export function scheduleRollups(core: Core, everyMs = 60_000): () => void {
  let running = false;
  const tick = async () => {
    if (running) return;
    running = true;
    try {
      const t0 = performance.now();
      const done = await refreshRequestedRollups(core);
      if (done.length) log.info('health: roll-ups brought up to the hour', { windows: done.join(','), ms: Math.round(performance.now() - t0) });
    } catch (err) {
      log.warn('health: roll-up refresh failed; trying again later', errorFields(err));
    } finally {
      running = false;
    }
  };
  const every = setInterval(() => void tick(), everyMs);
  every.unref();
  return () => clearInterval(every);
}
