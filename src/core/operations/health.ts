import { sql } from 'drizzle-orm';
import type { Core } from '../core.js';
import type { Account } from '../accounts.js';
import type { Caller } from '../users.js';
import type { Grant } from '../access.js';
import type { OperationsScope } from './visibility.js';
import { rowsOf } from '../../db/client.js';
import { log, errorFields } from '../../log.js';
import { LOCK_NOT_AVAILABLE, sqlState } from '../errors.js';
import { coverage, date, json, num, type Coverage, type Reader } from './coverage.js';
import { uuidList } from '../../db/arrays.js';
import { baseOf, clockAndRollup, liveEdge, noteRequested, refreshRollup, storedBase } from './health-rollup.js';
import {
  FAILING_RATE,
  SILENCE_MIN_WINDOWS,
  causeOf,
  judge,
  rateOf,
  type Figures,
  type HealthStatus,
  type Reason,
} from './health-rules.js';

/**
 * check_health: per account a status with its reasons and figures (the rules and thresholds are
 * in health-rules.ts), read ONLY from the hourly aggregates (execution_stats, delivery_stats,
 * through the tenant's roll-up when it is current: health-rollup.ts), failure_groups and indexed
 * queries — seven statements (the clock, five grouped reads, the names of the failing and silent
 * automations) for the whole scope, whatever its size, plus the roll-up's upkeep on a fleet-wide
 * read; never a query per account and never a row of executions loaded.
 *
 * Windows are hour buckets (the aggregates' unit), by the database's clock. A window of H hours
 * ('1h' = 1, '24h' = 24, '7d' = 168) is the current, partial hour bucket and the H full buckets
 * before it: it covers the last H to H + 1 hours. "The window before" is the H buckets before
 * that, and the silence baseline looks at the 4 windows of H buckets before the current one.
 * The last successful run is the latest within the window and the window before.
 *
 * Queue lag is the age of the oldest due queued execution (status queued, run_at ≤ now), one
 * index probe per account on executions_queued (account_id, run_at) in a single statement.
 */

export type HealthWindow = '1h' | '24h' | '7d';
export const WINDOW_HOURS: Record<HealthWindow, number> = { '1h': 1, '24h': 24, '7d': 168 };
export const WINDOW_LABEL: Record<HealthWindow, string> = { '1h': 'the last hour', '24h': 'the last 24h', '7d': 'the last 7 days' };

export interface AccountHealth {
  account: Pick<Account, 'id' | 'slug' | 'name' | 'parentAccountId'>;
  status: HealthStatus;
  reasons: Reason[];
  figures: Figures;
  /** the first problem's cause in slugs and codes ("http http_401"), null when none */
  cause: string | null;
}

export interface HealthReport {
  window: HealthWindow;
  from: Date;
  previousFrom: Date;
  /** worst first: failing, degraded, healthy, idle; then by number of problems, then slug */
  accounts: AccountHealth[];
  counts: Record<HealthStatus, number>;
}

export const STATUS_ORDER: HealthStatus[] = ['failing', 'degraded', 'healthy', 'idle'];

export async function checkHealth(
  core: Core,
  caller: Caller,
  account: Account,
  grant: Grant | null,
  input: { scope?: OperationsScope; window?: HealthWindow } = {},
): Promise<HealthReport> {
  const window = input.window ?? '24h';
  const cov = await coverage(core, caller, account, grant, input.scope ?? 'account');
  const hours = WINDOW_HOURS[window];
  const figures = new Map<string, Figures>(cov.accounts.map((a) => [a.id, empty()]));
  const bounds = cov.accounts.length ? await cov.read((q) => readAll(core, q, cov, hours, figures)) : await clock(core, hours);

  const rows: AccountHealth[] = cov.accounts.map((a) => {
    const f = figures.get(a.id)!;
    const { status, reasons } = judge(f, WINDOW_LABEL[window]);
    return { account: { id: a.id, slug: a.slug, name: a.name, parentAccountId: a.parentAccountId }, status, reasons, figures: f, cause: causeOf(f, reasons) };
  });
  const problems = (h: AccountHealth) => h.reasons.filter((r) => r.severity !== 'info').length;
  rows.sort((x, y) => STATUS_ORDER.indexOf(x.status) - STATUS_ORDER.indexOf(y.status) || problems(y) - problems(x) || x.account.slug.localeCompare(y.account.slug));
  const counts = { failing: 0, degraded: 0, healthy: 0, idle: 0 } as Record<HealthStatus, number>;
  for (const r of rows) counts[r.status] += 1;
  return { window, from: bounds.from, previousFrom: bounds.previousFrom, accounts: rows, counts };
}

function empty(): Figures {
  return {
    runs: { succeeded: 0, failed: 0, filtered: 0, cancelled: 0, throttled: 0, failure_rate: null },
    previous: { succeeded: 0, failed: 0, failure_rate: null },
    deliveries: { received: 0, accepted: 0, routed: 0, unrouted: 0, duplicate: 0, rejected: 0, recorded: 0, previous_received: 0 },
    last_success_at: null,
    last_failure_at: null,
    failing_automations: [],
    open_failure_groups: { groups: 0, top: [] },
    connections: [],
    paused_automations: [],
    queue_lag_seconds: null,
    silent_automations: [],
  };
}

async function clock(core: Core, hours: number): Promise<{ from: Date; previousFrom: Date }> {
  const [r] = rowsOf<{ as_of: unknown }>(await core.db.execute(sql`select date_trunc('hour', now()) as as_of`));
  return bounds(date(r!.as_of)!, hours);
}

const bounds = (asOf: Date, hours: number) => ({ from: new Date(asOf.getTime() - hours * HOUR), previousFrom: new Date(asOf.getTime() - 2 * hours * HOUR) });
const HOUR = 3_600_000;

async function readAll(core: Core, q: Reader, cov: Coverage, hours: number, figures: Map<string, Figures>): Promise<{ from: Date; previousFrom: Date }> {
  const of = (id: unknown) => figures.get(String(id));

  // 0. the clock, and the hour the tenant's roll-up of this window is as of (health-rollup.ts).
  // A fleet-wide read brings the roll-up up to the hour when it is not; a smaller one uses it
  // only when it already is, and otherwise sums its own accounts' buckets.
  const { asOf, rollupAsOf } = await clockAndRollup(q, core.tenantId, hours);
  let stored = rollupAsOf !== null && rollupAsOf.getTime() >= asOf.getTime();
  if (!stored && cov.privileged) {
    try {
      await refreshRollup(core, hours, asOf, true);
      stored = true;
    } catch (err) {
      // a long write behind the edge holds the tenant's lock: this read sums the buckets itself
      if (sqlState(err) !== LOCK_NOT_AVAILABLE) throw err;
      log.warn('health: the roll-up is busy; this read sums the hourly buckets', errorFields(err));
    }
  } else if (stored && cov.privileged) {
    await noteRequested(core, hours);
  }
  // the stored base is used only when, in the reading statement itself, the marker says asOf
  const base = stored ? storedBase(cov.where, hours, asOf, core.tenantId) : baseOf(cov.where, hours, asOf);
  const edge = liveEdge(asOf);

  // 1–3. runs, deliveries and silence in one statement: per automation the base (behind the live
  // edge) plus its live buckets, then per account the window's sums, the failing automations and
  // the silent ones (none delivered in the window, SILENCE_MIN_WINDOWS earlier windows with
  // SILENCE_MIN_PER_WINDOW or more); the names of those few are read afterwards.
  const rows = await q<Record<string, unknown>>(sql`
    with u as (
      ${base}
      union all
      select account_id, automation_id, sum(succeeded), sum(failed), sum(filtered), sum(cancelled), sum(throttled), 0, 0,
        max(last_success_at), max(last_failure_at), 0, 0, 0, 0, 0, 0, 0, 0, 0::float8, 0
      from execution_stats x where ${cov.where('x')} and hour >= ${edge} group by account_id, automation_id
      union all
      select account_id, automation_id, 0, 0, 0, 0, 0, 0, 0, null::timestamptz, null::timestamptz,
        sum(received), sum(accepted), sum(routed), sum(unrouted), sum(duplicate), sum(rejected), sum(recorded), 0, 0::float8, 0
      from delivery_stats y where ${cov.where('y')} and hour >= ${edge} group by account_id, automation_id),
    m as (
      select account_id, automation_id,
        sum(succeeded) as s0, sum(failed) as f0, sum(filtered) as x0, sum(cancelled) as c0, sum(throttled) as t0,
        sum(previous_succeeded) as s1, sum(previous_failed) as f1, max(last_success_at) as ls, max(last_failure_at) as lf,
        sum(received) as r0, sum(accepted) as accepted, sum(routed) as routed, sum(unrouted) as unrouted, sum(duplicate) as duplicate,
        sum(rejected) as rejected, sum(recorded) as recorded, sum(previous_received) as r1,
        sum(baseline) as baseline, sum(baseline_windows) as windows
      from u group by account_id, automation_id)
    select account_id, sum(s0)::int as s0, sum(f0)::int as f0, sum(x0)::int as x0, sum(c0)::int as c0, sum(t0)::int as t0,
      sum(s1)::int as s1, sum(f1)::int as f1, max(ls) as ls, max(lf) as lf,
      sum(r0)::int as received, sum(accepted)::int as accepted, sum(routed)::int as routed, sum(unrouted)::int as unrouted,
      sum(duplicate)::int as duplicate, sum(rejected)::int as rejected, sum(recorded)::int as recorded, sum(r1)::int as previous_received,
      coalesce(json_agg(json_build_object('id', automation_id, 's', s0, 'f', f0, 'ls', ls, 'lf', lf))
        filter (where f0 > 0 and (ls is null or lf > ls or f0 >= ${FAILING_RATE}::float8 * (s0 + f0))), '[]') as failing,
      coalesce(json_agg(json_build_object('id', automation_id, 'baseline', baseline, 'windows', windows))
        filter (where r0 = 0 and windows >= ${SILENCE_MIN_WINDOWS}), '[]') as silent
    from m group by account_id`);
  const named: string[] = [];
  for (const r of rows) {
    const f = of(r.account_id);
    if (!f) continue;
    f.runs = { succeeded: num(r.s0), failed: num(r.f0), filtered: num(r.x0), cancelled: num(r.c0), throttled: num(r.t0), failure_rate: rateOf(num(r.s0), num(r.f0)) };
    f.previous = { succeeded: num(r.s1), failed: num(r.f1), failure_rate: rateOf(num(r.s1), num(r.f1)) };
    f.last_success_at = date(r.ls);
    f.last_failure_at = date(r.lf);
    f.deliveries = {
      received: num(r.received), accepted: num(r.accepted), routed: num(r.routed), unrouted: num(r.unrouted),
      duplicate: num(r.duplicate), rejected: num(r.rejected), recorded: num(r.recorded), previous_received: num(r.previous_received),
    };
    for (const a of json<{ id: string; s: number; f: number; ls: string | null; lf: string | null }[]>(r.failing)) {
      f.failing_automations.push({ id: a.id, name: null, succeeded: num(a.s), failed: num(a.f), last_success_at: date(a.ls), last_failure_at: date(a.lf) });
      named.push(a.id);
    }
    for (const a of json<{ id: string; baseline: number; windows: number }[]>(r.silent)) {
      f.silent_automations.push({ id: a.id, name: null, baseline: num(a.baseline), windows: num(a.windows) });
      named.push(a.id);
    }
  }
  if (named.length) {
    const names = new Map(
      (await q<{ id: string; name: string | null }>(sql`select id, name from automations where id = any(${uuidList([...new Set(named)])}::uuid[])`)).map((r) => [String(r.id), r.name]),
    );
    for (const f of figures.values()) for (const a of [...f.failing_automations, ...f.silent_automations]) a.name = names.get(a.id) ?? null;
  }

  // 4. open failure groups, per account and fingerprint, the largest first
  const groups = await q<Record<string, unknown>>(sql`
    with g as (
      select account_id, fingerprint, min(target) as target, min(error_code) as error_code, min(upstream_status) as upstream_status,
        sum(count)::int as n, min(first_seen) as first_seen
      from failure_groups f where ${cov.where('f')} and status = 'open'
      group by account_id, fingerprint)
    select account_id, count(*)::int as groups,
      json_agg(json_build_object('target', target, 'error_code', error_code, 'upstream_status', upstream_status, 'count', n, 'first_seen', first_seen) order by n desc, first_seen) as top
    from g group by account_id`);
  for (const r of groups) {
    const f = of(r.account_id);
    if (!f) continue;
    const top = json<{ target: string; error_code: string; upstream_status: number | null; count: number; first_seen: string }[]>(r.top);
    f.open_failure_groups = {
      groups: num(r.groups),
      top: top.slice(0, 5).map((t) => ({ target: t.target, error_code: t.error_code, upstream_status: t.upstream_status, count: num(t.count), first_seen: date(t.first_seen)! })),
    };
  }

  // 5. connections not active, and the automations paused by a connection (in the automation's account)
  const conns = await q<Record<string, unknown>>(sql`
    select c.account_id, c.id, c.app, c.name, c.status, c.updated_at,
      (select count(*) from automations a where a.paused_by_connection_id = c.id and a.status = 'paused')::int as pauses
    from connections c where ${cov.where('c')} and c.status <> 'active'
    order by c.updated_at`);
  for (const r of conns) {
    of(r.account_id)?.connections.push({ id: String(r.id), app: String(r.app), name: String(r.name), status: r.status as 'expired' | 'disconnected', since: date(r.updated_at)!, pauses: num(r.pauses) });
  }
  const paused = await q<Record<string, unknown>>(sql`
    select a.account_id, a.id, a.name, a.paused_by_connection_id, c.app, c.status
    from automations a left join connections c on c.id = a.paused_by_connection_id
    where ${cov.where('a')} and a.status = 'paused' and a.paused_by_connection_id is not null
    order by a.account_id, a.id`);
  for (const r of paused) {
    of(r.account_id)?.paused_automations.push({
      id: String(r.id),
      name: (r.name as string | null) ?? null,
      connection_id: (r.paused_by_connection_id as string | null) ?? null,
      app: (r.app as string | null) ?? null,
      connection_status: (r.status as string | null) ?? null,
    });
  }

  // 6. queue lag: per account one probe of executions_queued for its oldest due run; and the bounds
  const lag = await q<Record<string, unknown>>(sql`
    select id, extract(epoch from (now() - oldest))::float8 as lag from (
      select a.id, (select e.run_at from executions e where e.account_id = a.id and e.status = 'queued' and e.run_at <= now() order by e.run_at limit 1) as oldest
      from accounts a where ${cov.where('a', 'id')}) x
    where oldest is not null`);
  for (const r of lag) {
    const f = of(r.id);
    if (f) f.queue_lag_seconds = Math.max(0, num(r.lag));
  }
  return bounds(asOf, hours);
}
