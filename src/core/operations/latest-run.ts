import { sql, type SQL } from 'drizzle-orm';
import type { DeliveryStatus, ExecutionStatus } from '../../db/schema/index.js';

/**
 * A delivery's latest run and the status it came to: the one rule debug_webhook shows and
 * replay_webhook matches on, so that the two never disagree about a delivery.
 *
 *   latest run   its latest replay (webhook_deliveries.latest_replay_id, set by replay_webhook in
 *                the replay's transaction), else the run ingress queued for it (execution_id)
 *   status       that run's, when the caller may see it (a queued one: still `accepted`, or
 *                `routed` for a routed delivery); else the delivery's own (`unrouted`,
 *                `duplicate`, `rejected`, `recorded`; or `accepted` / `routed` when its run is
 *                in a linked account the caller may not see, or was pruned)
 *
 * Reads join the original run and the latest replay by their primary keys (a lookup each per
 * delivery, as before replays existed; not `id = coalesce(…)`, which row-level security keeps out
 * of index scans) restricted to the caller's accounts, and take the replay's when there is one.
 */

export const DERIVED_STATUSES = ['accepted', 'routed', 'running', 'succeeded', 'failed', 'filtered', 'cancelled', 'rejected', 'unrouted', 'duplicate', 'recorded'] as const;
export type DerivedStatus = (typeof DERIVED_STATUSES)[number];
/** statuses only ingress gives: the delivery was not run (and not replayed since) */
export const NOT_RUN: readonly DerivedStatus[] = ['rejected', 'unrouted', 'duplicate', 'recorded'];

/** A column of the latest run, from the original run's and the latest replay's (each joined by its primary key). */
export const latestRunColumn = (latestReplayId: SQL, original: SQL, replay: SQL): SQL =>
  sql`(case when ${latestReplayId} is null then ${original} else ${replay} end)`;

/** The derived status in SQL, of a delivery's status and its latest visible run's id and status (null: none). */
export const derivedStatus = (deliveryStatus: SQL, runId: SQL, runStatus: SQL): SQL =>
  sql`(case when ${runId} is null then ${deliveryStatus} when ${runStatus} = 'queued' then (case when ${deliveryStatus} = 'routed' then 'routed' else 'accepted' end) else ${runStatus} end)`;

/** The same in TypeScript. */
export function derive(delivery: DeliveryStatus, run: ExecutionStatus | null): DerivedStatus {
  if (run === null) return delivery;
  if (run === 'queued') return delivery === 'routed' ? 'routed' : 'accepted';
  return run;
}
