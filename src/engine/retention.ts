import { sql } from 'drizzle-orm';
import type { Core } from '../core/core.js';
import { sweepExpired } from '../core/account-data.js';
import { rowsOf } from '../db/client.js';
import { log, errorFields } from '../log.js';

/**
 * Retention: executions (their step records go with them), webhook deliveries older than
 * SWITCHBOARD_EXECUTION_RETENTION_DAYS (default 30) are deleted, and so are expired
 * de-duplication keys and account data entries — in batches, each its own short statement, so
 * pruning never holds locks long or competes with the engine for more than a moment. Runs that
 * are still queued or running, and the deliveries that started them, are kept whatever their age. Any number of workers may prune at
 * once: each batch skips the rows another is deleting.
 *
 * The hourly aggregates (execution_stats, delivery_stats) are kept at least AGGREGATE_DAYS, longer
 * than the runs they count: check_health compares a 7-day window with the four before it (silence
 * baselines). Resolved failure groups go with the runs, after the retention; open ones stay.
 */

export const DEFAULT_RETENTION_DAYS = 30;
export const RETENTION_BATCH = 1000;
/** hourly aggregates are kept at least this long: a 7-day window (and its partial hour) and the four before it */
export const AGGREGATE_DAYS = 36;

export interface Pruned {
  executions: number;
  deliveries: number;
  dedupeKeys: number;
  accountData: number;
  aggregates: number;
}

const count = (result: unknown): number => rowsOf(result).length;

/** Delete one batch of each kind; returns how many of each went. */
export async function pruneOnce(core: Core, days: number, batch = RETENTION_BATCH): Promise<Pruned> {
  const before = sql`now() - ${days} * interval '1 day'`;
  const executions = count(
    await core.db.execute(sql`
      delete from executions where id in (
        select id from executions
        where tenant_id = ${core.tenantId} and created_at < ${before} and status not in ('queued', 'running')
        order by created_at limit ${batch} for update skip locked)
      returning 1`),
  );
  const deliveries = count(
    await core.db.execute(sql`
      delete from webhook_deliveries where id in (
        select d.id from webhook_deliveries d
        where d.tenant_id = ${core.tenantId} and d.received_at < ${before}
          -- kept while its run has not ended (a run waiting in a long-suspended account)
          and not exists (select 1 from executions e where e.id = d.execution_id and e.status in ('queued', 'running'))
        order by d.received_at limit ${batch} for update of d skip locked)
      returning 1`),
  );
  const dedupeKeys = count(
    await core.db.execute(sql`
      delete from webhook_dedupe_keys where (automation_id, key) in (
        select automation_id, key from webhook_dedupe_keys
        where tenant_id = ${core.tenantId} and expires_at <= now()
        limit ${batch} for update skip locked)
      returning 1`),
  );
  const accountData = await sweepExpired(core, batch);
  const statsBefore = sql`now() - ${Math.max(days, AGGREGATE_DAYS)} * interval '1 day'`;
  let aggregates = 0;
  for (const table of ['execution_stats', 'delivery_stats'] as const) {
    aggregates += count(
      await core.db.execute(sql`
        delete from ${sql.raw(table)} where (account_id, hour, automation_id) in (
          select account_id, hour, automation_id from ${sql.raw(table)}
          where tenant_id = ${core.tenantId} and hour < ${statsBefore}
          limit ${batch} for update skip locked)
        returning 1`),
    );
  }
  aggregates += count(
    await core.db.execute(sql`
      delete from failure_groups where (fingerprint, account_id, automation_id) in (
        select fingerprint, account_id, automation_id from failure_groups
        where tenant_id = ${core.tenantId} and status = 'resolved' and last_seen < ${before}
        limit ${batch} for update skip locked)
      returning 1`),
  );
  return { executions, deliveries, dedupeKeys, accountData, aggregates };
}

/** Prune until nothing older is left (or `maxBatches` ran); the totals. */
export async function prune(core: Core, days: number, batch = RETENTION_BATCH, maxBatches = 1000): Promise<Pruned> {
  const total: Pruned = { executions: 0, deliveries: 0, dedupeKeys: 0, accountData: 0, aggregates: 0 };
  for (let i = 0; i < maxBatches; i++) {
    const once = await pruneOnce(core, days, batch);
    for (const k of Object.keys(total) as (keyof Pruned)[]) total[k] += once[k];
    if (Object.values(once).every((n) => n < batch)) break;
    // let the engine have the database between batches
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return total;
}

/** Prune every `everyMs` (first after a minute); returns the stop function. */
export function schedulePruning(core: Core, days: number, everyMs = 10 * 60_000): () => void {
  let running = false;
  const tick = async () => {
    if (running) return;
    running = true;
    try {
      const pruned = await prune(core, days);
      if (Object.values(pruned).some((n) => n > 0)) log.info('retention: pruned', { days, ...pruned });
    } catch (err) {
      log.warn('retention: pruning failed; trying again later', errorFields(err));
    } finally {
      running = false;
    }
  };
  const first = setTimeout(() => void tick(), Math.min(60_000, everyMs));
  const every = setInterval(() => void tick(), everyMs);
  first.unref();
  every.unref();
  return () => {
    clearTimeout(first);
    clearInterval(every);
  };
}
