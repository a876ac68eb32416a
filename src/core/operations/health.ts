import { sql, type SQL } from 'drizzle-orm';
import type { Core } from '../core.js';
import type { Account } from '../accounts.js';
import type { Caller } from '../users.js';
import type { Grant } from '../access.js';
import type { OperationsScope } from './visibility.js';
import { rowsOf } from '../../db/client.js';
import { coverage, date, json, num, uuidArray, type Coverage, type Reader } from './coverage.js';
import {
  FAILING_RATE,
  SILENCE_MIN_PER_WINDOW,
  SILENCE_MIN_WINDOWS,
  SILENCE_WINDOWS,
  causeOf,
  judge,
  rateOf,
  type Figures,
  type HealthStatus,
  type Reason,
} from './health-rules.js';

/**
 * check_health: per account a status with its reasons and figures (the rules and thresholds are
 * in health-rules.ts), read ONLY from the hourly aggregates (execution_stats, delivery_stats),
 * failure_groups and indexed queries — at most eight statements (six grouped reads, the silent automations' names and the clock) for the whole scope, whatever its
 * size, never a query per account and never a row of executions loaded.
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
  const bounds = cov.accounts.length ? await cov.read((q) => readAll(q, cov, hours, figures)) : await clock(core, hours);

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

/** the window's first bucket (w0) and the previous window's (w1), from the database's clock */
const w0 = (hours: number): SQL => sql`(date_trunc('hour', now()) - ${hours} * interval '1 hour')`;
const wk = (hours: number, k: number): SQL => sql`(date_trunc('hour', now()) - ${hours * (k + 1)} * interval '1 hour')`;

async function clock(core: Core, hours: number): Promise<{ from: Date; previousFrom: Date }> {
  const [r] = rowsOf<{ from: unknown; previous: unknown }>(await core.db.execute(sql`select ${w0(hours)} as from, ${wk(hours, 1)} as previous`));
  return { from: date(r!.from)!, previousFrom: date(r!.previous)! };
}

async function readAll(q: Reader, cov: Coverage, hours: number, figures: Map<string, Figures>): Promise<{ from: Date; previousFrom: Date }> {
  const of = (id: unknown) => figures.get(String(id));
  const W0 = w0(hours);
  const W1 = wk(hours, 1);

  // 1. finished runs: the window and the one before, per account; failing automations as a list
  const runs = await q<Record<string, unknown>>(sql`
    with a as (
      select account_id, automation_id,
        coalesce(sum(succeeded) filter (where hour >= ${W0}), 0) as s0, coalesce(sum(failed) filter (where hour >= ${W0}), 0) as f0,
        coalesce(sum(filtered) filter (where hour >= ${W0}), 0) as x0, coalesce(sum(cancelled) filter (where hour >= ${W0}), 0) as c0,
        coalesce(sum(throttled) filter (where hour >= ${W0}), 0) as t0,
        coalesce(sum(succeeded) filter (where hour < ${W0}), 0) as s1, coalesce(sum(failed) filter (where hour < ${W0}), 0) as f1,
        max(last_success_at) as ls, max(last_failure_at) as lf
      from execution_stats e where ${cov.where('e')} and hour >= ${W1}
      group by account_id, automation_id)
    select a.account_id, sum(s0)::int as s0, sum(f0)::int as f0, sum(x0)::int as x0, sum(c0)::int as c0, sum(t0)::int as t0,
      sum(s1)::int as s1, sum(f1)::int as f1, max(ls) as ls, max(lf) as lf,
      coalesce(json_agg(json_build_object('id', a.automation_id, 'name', au.name, 's', s0, 'f', f0, 'ls', ls, 'lf', lf))
        filter (where f0 > 0 and (ls is null or lf > ls or f0 >= ${FAILING_RATE}::float8 * (s0 + f0))), '[]') as failing
    from a left join automations au on au.id = a.automation_id
    group by a.account_id`);
  for (const r of runs) {
    const f = of(r.account_id);
    if (!f) continue;
    f.runs = { succeeded: num(r.s0), failed: num(r.f0), filtered: num(r.x0), cancelled: num(r.c0), throttled: num(r.t0), failure_rate: rateOf(num(r.s0), num(r.f0)) };
    f.previous = { succeeded: num(r.s1), failed: num(r.f1), failure_rate: rateOf(num(r.s1), num(r.f1)) };
    f.last_success_at = date(r.ls);
    f.last_failure_at = date(r.lf);
    f.failing_automations = json<{ id: string; name: string | null; s: number; f: number; ls: string | null; lf: string | null }[]>(r.failing).map((a) => ({
      id: a.id,
      name: a.name,
      succeeded: num(a.s),
      failed: num(a.f),
      last_success_at: date(a.ls),
      last_failure_at: date(a.lf),
    }));
  }

  // 2 and 3. deliveries and silence in one grouped scan of delivery_stats over the window and the
  // SILENCE_WINDOWS before it: k = 0 (or below, a bucket ahead of the clock) for the current
  // window, 1 for the window before, up to SILENCE_WINDOWS. Per account the window's sums and the
  // silent automations (none delivered now, at least SILENCE_MIN_WINDOWS earlier windows with
  // SILENCE_MIN_PER_WINDOW or more); their names are read afterwards for those few only.
  const deliveries = await q<Record<string, unknown>>(sql`
    with b as (
      select d.account_id, d.automation_id, ceil(extract(epoch from (${W0} - d.hour)) / ${hours * 3600})::int as k,
        sum(d.received)::int as r, sum(d.accepted)::int as accepted, sum(d.routed)::int as routed, sum(d.unrouted)::int as unrouted,
        sum(d.duplicate)::int as duplicate, sum(d.rejected)::int as rejected, sum(d.recorded)::int as recorded
      from delivery_stats d
      where ${cov.where('d')} and d.hour >= ${wk(hours, SILENCE_WINDOWS)}
      group by 1, 2, 3),
    s as (
      select account_id, automation_id,
        coalesce(sum(r) filter (where k <= 0), 0) as r0, coalesce(sum(accepted) filter (where k <= 0), 0) as accepted,
        coalesce(sum(routed) filter (where k <= 0), 0) as routed, coalesce(sum(unrouted) filter (where k <= 0), 0) as unrouted,
        coalesce(sum(duplicate) filter (where k <= 0), 0) as duplicate, coalesce(sum(rejected) filter (where k <= 0), 0) as rejected,
        coalesce(sum(recorded) filter (where k <= 0), 0) as recorded, coalesce(sum(r) filter (where k = 1), 0) as r1,
        coalesce(sum(r) filter (where k >= 1), 0)::float8 / ${SILENCE_WINDOWS} as baseline,
        count(*) filter (where k >= 1 and r >= ${SILENCE_MIN_PER_WINDOW})::int as windows
      from b group by account_id, automation_id)
    select account_id,
      sum(r0)::int as received, sum(accepted)::int as accepted, sum(routed)::int as routed, sum(unrouted)::int as unrouted,
      sum(duplicate)::int as duplicate, sum(rejected)::int as rejected, sum(recorded)::int as recorded, sum(r1)::int as previous_received,
      coalesce(json_agg(json_build_object('id', automation_id, 'baseline', baseline, 'windows', windows))
        filter (where r0 = 0 and windows >= ${SILENCE_MIN_WINDOWS}), '[]') as silent
    from s group by account_id`);
  const silentIds: string[] = [];
  for (const r of deliveries) {
    const f = of(r.account_id);
    if (!f) continue;
    f.deliveries = {
      received: num(r.received), accepted: num(r.accepted), routed: num(r.routed), unrouted: num(r.unrouted),
      duplicate: num(r.duplicate), rejected: num(r.rejected), recorded: num(r.recorded), previous_received: num(r.previous_received),
    };
    for (const a of json<{ id: string; baseline: number; windows: number }[]>(r.silent)) {
      f.silent_automations.push({ id: a.id, name: null, baseline: num(a.baseline), windows: num(a.windows) });
      silentIds.push(a.id);
    }
  }
  if (silentIds.length) {
    const names = new Map(
      (await q<{ id: string; name: string | null }>(sql`select id, name from automations where id = any(${uuidArray(silentIds)}::uuid[])`)).map((r) => [String(r.id), r.name]),
    );
    for (const f of figures.values()) for (const a of f.silent_automations) a.name = names.get(a.id) ?? null;
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
  const [b] = await q<Record<string, unknown>>(sql`select ${W0} as from, ${W1} as previous`);
  return { from: date(b!.from)!, previousFrom: date(b!.previous)! };
}
