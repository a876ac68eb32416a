import { sql, type SQL } from 'drizzle-orm';
import type { Tx } from '../../db/scope.js';
import { rowsOf } from '../../db/client.js';
import type { DeliveryStatus } from '../../db/schema/index.js';
import { derivedStatus, latestRunColumn, NOT_RUN, type DerivedStatus } from './latest-run.js';

/**
 * Which recorded deliveries a replay_webhook call covers: one by id, or those of the acting
 * account matching a filter, each with its latest run and the status it came to (latest-run.ts:
 * the rule debug_webhook shows). Runs in the caller's scope (the acting account and the linked
 * children it may act in): a run in any other account is not seen, and a delivery whose latest
 * replay is such a run is not replayed again by this caller (`replayHidden`).
 */

export { DERIVED_STATUSES, type DerivedStatus } from './latest-run.js';

export interface ReplayFilter {
  automationId?: string | undefined;
  status?: DerivedStatus | undefined;
  error?: string | undefined;
  since?: Date | undefined;
  until?: Date | undefined;
  /** a failure_groups fingerprint: the delivery's latest run failed with it */
  group?: string | undefined;
}

export interface Matched {
  id: string;
  automationId: string;
  automationName: string;
  status: DeliveryStatus;
  code: string | null;
  routedAccountId: string | null;
  /** the run ingress queued for it (null: it was not run) */
  executionId: string | null;
  /** its latest replay (null: never replayed): what a plan replays from, and what its apply swaps */
  latestReplayId: string | null;
  /** that run's revision, when it is visible in the caller's scope */
  originalRevision: number | null;
  /** the automation's revision when the delivery arrived */
  revisionAtReceipt: number | null;
  currentRevision: number;
  enabled: boolean;
  automationStatus: string;
  latestStatus: string | null;
  derived: DerivedStatus;
  /** its latest run is a replay in an account the caller may not act in */
  replayHidden: boolean;
}

/** A failed run's fingerprint, computed as drizzle/0018 computes failure_groups.fingerprint. */
const fingerprint = (e: string) =>
  sql.raw(`md5(concat_ws(chr(31), coalesce(${e}.error_target, ''), coalesce(${e}.failed_step, ''), coalesce(${e}.error_code, ''), coalesce(${e}.error_status::text, '')))`);

const derived = derivedStatus(sql.raw('d.status'), sql.raw('l.id'), sql.raw('l.status'));

/**
 * The account's failed webhook runs (executions_failed_deliveries: by the automation's account,
 * routed runs included), narrowed further by `extra`: the deliveries a failure filter starts from.
 */
const failedRuns = (accountId: string, extra: SQL[]) =>
  sql`d.id in (select f.delivery_id from executions f where f.automation_owner_id = ${accountId}::uuid and f.status = 'failed' and f.delivery_id is not null${sql.join(
    extra.map((e) => sql` and ${e}`),
  )})`;

function conditions(tenantId: string, accountId: string, by: { delivery: string } | { filter: ReplayFilter }): SQL {
  const c: SQL[] = [sql`d.tenant_id = ${tenantId}::uuid`, sql`d.account_id = ${accountId}::uuid`];
  if ('delivery' in by) {
    c.push(sql`d.id = ${by.delivery}::uuid`);
    return sql.join(c, sql` and `);
  }
  const f = by.filter;
  if (f.automationId) c.push(sql`d.automation_id = ${f.automationId}::uuid`);
  if (f.since) c.push(sql`d.received_at >= ${f.since.toISOString()}::timestamptz`);
  if (f.until) c.push(sql`d.received_at < ${f.until.toISOString()}::timestamptz`);
  // a run is created no earlier than its delivery arrived: `since` narrows the runs as well
  const runsSince = f.since ? [sql`f.created_at >= ${f.since.toISOString()}::timestamptz`] : [];
  if (f.status) {
    c.push(sql`${derived} = ${f.status}`);
    if (f.status === 'failed' && !f.group) c.push(failedRuns(accountId, runsSince));
    // the deliveries that did not run are few and indexed (webhook_deliveries_not_run)
    if (NOT_RUN.includes(f.status)) c.push(sql`d.status = ${f.status}`);
  }
  if (f.group) {
    c.push(failedRuns(accountId, [...runsSince, sql`${fingerprint('f')} = ${f.group}`]));
    c.push(sql`l.status = 'failed' and ${fingerprint('l')} = ${f.group}`);
  }
  if (f.error) {
    // a failed run's error code, or why ingress did not run the delivery
    c.push(sql`(case when l.id is null then d.code when l.status in ('failed', 'cancelled') then l.error_code end) = ${f.error}`);
    c.push(sql`(${failedRuns(accountId, [...runsSince, sql`f.error_code = ${f.error}`])} or d.status not in ('accepted', 'routed'))`);
  }
  return sql.join(c, sql` and `);
}

// l: the latest run (latest-run.ts), from the original (o) and the latest replay (r), each joined
// by its primary key (a coalesce in the join would keep row-level security from using the index)
const pickRun = (col: string) => sql`${latestRunColumn(sql.raw('d.latest_replay_id'), sql.raw(`o.${col}`), sql.raw(`r.${col}`))} as ${sql.raw(col)}`;
const FROM = sql`
  from webhook_deliveries d
  join automations a on a.id = d.automation_id
  left join executions o on o.id = d.execution_id
  left join executions r on r.id = d.latest_replay_id
  cross join lateral (select ${sql.join(['id', 'status', 'error_code', 'error_target', 'failed_step', 'error_status'].map(pickRun), sql`, `)}) l`;

/** Up to `limit` matching deliveries, newest first, and whether there are more. */
export async function matchDeliveries(
  tx: Tx,
  tenantId: string,
  accountId: string,
  by: { delivery: string } | { filter: ReplayFilter },
  limit: number,
): Promise<{ rows: Matched[]; more: boolean }> {
  const where = conditions(tenantId, accountId, by);
  const raw = rowsOf<Record<string, unknown>>(
    await tx.execute(sql`
      select d.id, d.automation_id, a.name as automation_name, d.status, d.code, d.routed_account_id, d.execution_id, d.latest_replay_id,
             o.revision as original_revision,
             (select max(r.revision) from automation_revisions r where r.automation_id = d.automation_id and r.created_at <= d.received_at) as revision_at_receipt,
             a.revision as current_revision, a.enabled, a.status as automation_status, l.status as latest_status, ${derived} as derived,
             (d.latest_replay_id is not null and l.id is null) as replay_hidden
      ${FROM}
      where ${where}
      order by d.received_at desc, d.id desc
      limit ${limit + 1}`),
  );
  const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  const rows = raw.slice(0, limit).map(
    (r): Matched => ({
      id: r.id as string,
      automationId: r.automation_id as string,
      automationName: r.automation_name as string,
      status: r.status as DeliveryStatus,
      code: (r.code as string | null) ?? null,
      routedAccountId: (r.routed_account_id as string | null) ?? null,
      executionId: (r.execution_id as string | null) ?? null,
      latestReplayId: (r.latest_replay_id as string | null) ?? null,
      originalRevision: num(r.original_revision),
      revisionAtReceipt: num(r.revision_at_receipt),
      currentRevision: Number(r.current_revision),
      enabled: r.enabled === true || r.enabled === 't',
      automationStatus: r.automation_status as string,
      latestStatus: (r.latest_status as string | null) ?? null,
      derived: r.derived as DerivedStatus,
      replayHidden: r.replay_hidden === true || r.replay_hidden === 't',
    }),
  );
  return { rows, more: raw.length > limit };
}

/** How many deliveries match (asked only when more than a call may replay do). */
export async function countDeliveries(tx: Tx, tenantId: string, accountId: string, filter: ReplayFilter): Promise<number> {
  const [row] = rowsOf<{ n: unknown }>(await tx.execute(sql`select count(*)::int as n ${FROM} where ${conditions(tenantId, accountId, { filter })}`));
  return Number(row?.n ?? 0);
}

/** The events of deliveries as their runs see them under `trigger` (for routing them again). */
export async function deliveryEvents(tx: Tx, ids: string[]): Promise<Map<string, { body: unknown; headers: Record<string, string>; query: Record<string, string>; method: string }>> {
  if (!ids.length) return new Map();
  const rows = rowsOf<{ id: string; body: unknown; headers: Record<string, string>; query: Record<string, string>; method: string }>(
    await tx.execute(sql`select id, body, headers, query, method from webhook_deliveries where id = any(${`{${ids.join(',')}}`}::uuid[])`),
  );
  return new Map(rows.map((r) => [r.id, { body: r.body, headers: r.headers, query: r.query, method: r.method }]));
}

/** What a replay's audit entry records of its plan (counts, accounts, revisions, hash): never payload text. */
export interface PlanSummary {
  hash: string;
  dry_run: boolean;
  revision: 'original' | 'current';
  reuse_idempotency_keys: boolean;
  deliveries: number;
  replayable: number;
  not_replayable: Record<string, number>;
  accounts: { id: string; deliveries: number }[];
  revisions: { automation_id: string; revision: number; deliveries: number }[];
}

/**
 * The plan this account's newest successful replay_webhook call with `hash` recorded in its audit
 * entry in the last day — a dry run's, or an apply's (`dry_run: false`) — and when; or null. Said
 * when an apply's hash no longer matches: what changed since the dry run, or that it was applied.
 */
export async function recordedPlan(tx: Tx, accountId: string, hash: string): Promise<{ plan: PlanSummary; at: Date } | null> {
  const [row] = rowsOf<{ plan: PlanSummary; at: Date | string }>(
    await tx.execute(sql`
      select arguments->'plan' as plan, at from audit_log
      where account_id = ${accountId}::uuid and tool = 'replay_webhook' and outcome = 'ok' and at > now() - interval '1 day'
        and arguments->'plan'->>'hash' = ${hash}
      order by id desc limit 1`),
  );
  return row ? { plan: row.plan, at: new Date(row.at) } : null;
}
