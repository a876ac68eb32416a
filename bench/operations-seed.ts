import { sql } from 'drizzle-orm';
import { rowsOf, type Database } from '../src/db/client.js';
import { createAutomation } from '../src/core/automations.js';
import { addConnection } from '../src/core/connections.js';
import type { Account } from '../src/core/accounts.js';
import type { Core } from '../src/core/core.js';
import { seedAccounts } from './seed.js';

/**
 * The history the operations benchmarks read (bench/operations.ts), written with set-based SQL
 * (generate_series) so a million runs take seconds, not hours. This is a benchmark's database,
 * not a result: the aggregates are computed from the seeded rows with INSERT … SELECT … GROUP BY,
 * exactly as the triggers would have kept them one write at a time (the triggers' own cost is
 * measured end to end by the aggregates-cost case). The triggers are disabled while seeding and
 * enabled again afterwards.
 */

export const AUTOMATIONS = 10;
const DAYS = 30;
const TRIGGERS = [
  ['executions', 'executions_finished'],
  ['execution_steps', 'execution_steps_throttled'],
  ['webhook_deliveries', 'webhook_deliveries_recorded'],
  // the roll-up's (drizzle/0022): seeded history is written behind the live edge
  ['execution_stats', 'execution_stats_inserted_behind_edge'],
  ['delivery_stats', 'delivery_stats_inserted_behind_edge'],
] as const;

/**
 * ENABLE or DISABLE the aggregate triggers (as the service connection: the table owner). Enabling
 * them marks any check_health roll-up stale, as the disabled triggers would have.
 */
export async function setAggregateTriggers(database: Database, on: boolean): Promise<void> {
  for (const [table, trigger] of TRIGGERS) await database.db.execute(sql.raw(`alter table ${table} ${on ? 'enable' : 'disable'} trigger ${trigger}`));
  if (on) await database.db.execute(sql`update health_rollups set as_of = 'epoch'`);
}

const uuidArray = (ids: string[]) => sql`${`{${ids.join(',')}}`}::uuid[]`;

export interface HistorySeed {
  executions: number;
  failed: number;
  deliveries: number;
  steps: number;
  groups: number;
  /** per phase, ms */
  phases: Record<string, number>;
}

/**
 * `total` finished webhook runs of `account` over the last 30 days (newest first by i), spread
 * over its AUTOMATIONS automations, each with the delivery that started it:
 *   - about 3 % fail at random (503 from a partner host, timeout, 429, a 422 validation answer,
 *     an expression error), 1 % are filtered, 0.1 % cancelled;
 *   - automation 2 fails every run of the last 3 hours (Stripe 401) and automation 7 every run of
 *     the last 40 minutes (Mindbody 503): two open failure groups, the rest resolved;
 *   - a failed run has its step records (the step before it succeeded, a retried attempt, the failing one);
 *   - 0.5 % more deliveries were not run (rejected signature, duplicate, recorded while disabled);
 *   - five runs are queued (the oldest a minute ago): the queue lag check has something to find.
 */
export async function seedHistory(database: Database, core: Core, account: Account, total: number, upstream: string): Promise<HistorySeed & { automations: string[] }> {
  const phases: Record<string, number> = {};
  const timed = async (name: string, fn: () => Promise<unknown>) => {
    const t0 = performance.now();
    await fn();
    phases[name] = performance.now() - t0;
  };
  const db = database.db;
  const automations: string[] = [];
  await timed('automations', async () => {
    const stripe = await addConnection(core, account, { app: 'http', name: 'Stripe', credentials: { auth_kind: 'bearer', base_url: upstream, token: 'bench-token-0123456789' }, createdBy: null });
    for (let a = 1; a <= AUTOMATIONS; a++) {
      const { row } = await createAutomation(core, account, {
        name: `Bench flow ${a}`,
        createdBy: null,
        definition: {
          trigger: { type: 'webhook', dedupe: null },
          routing: null,
          retries: { max: 2 },
          steps: [
            { id: 'shape', kind: 'transform', value: { order: '{{ trigger.body.i }}' } },
            { id: 'send', kind: 'http', method: 'POST', url: `${upstream}/orders`, body: '{{ steps.shape.output }}', connection: stripe.row.id },
            { id: 'done', kind: 'transform', value: '{{ steps.send.output.status }}' },
          ],
        },
      });
      automations.push(row.id);
    }
  });
  await setAggregateTriggers(database, false);
  const ids = uuidArray(automations);
  const acc = account.id;
  const tenant = core.tenantId;
  try {
    await timed('executions', () =>
      db.execute(sql`
        insert into executions (id, tenant_id, account_id, automation_id, revision, source, delivery_id, status, trigger, next_step, attempt,
                                error_code, error_message, failed_step, error_target, error_status, run_at, created_at, started_at, finished_at)
        select md5('e' || i)::uuid, ${tenant}, ${acc}, (${ids})[a], 1, 'webhook', md5('d' || i)::uuid, st,
               jsonb_build_object('method', 'POST', 'headers', '{}'::jsonb, 'query', '{}'::jsonb, 'body', jsonb_build_object('event', 'order.created', 'i', i)),
               case when st = 'succeeded' then 3 else 1 end, case when st = 'failed' then 2 else 0 end,
               code, case when code is not null then 'Upstream answered ' || coalesce(http::text, code) end,
               case when code = 'expression_error' then 'done' when code is not null then 'send' end,
               case when code = 'expression_error' then 'transform' when a = 2 and code is not null then 'stripe' when code is not null then 'api.partner.test' end,
               http, at, at, at + interval '5 ms', at + interval '40 ms'
        from (
          select i, a, at, st,
                 case when st <> 'failed' then null when outage = 2 then 'http_401' when outage = 7 then 'http_503'
                      else (array['http_503', 'timeout', 'http_429', 'http_422', 'expression_error'])[1 + r % 5] end as code,
                 case when st <> 'failed' then null when outage = 2 then 401 when outage = 7 then 503
                      else (array[503, null, 429, 422, null]::int[])[1 + r % 5] end as http
          from (
            select i, a, at, r, outage,
                   case when outage > 0 or r < 30 then 'failed' when r < 40 then 'filtered' when r = 40 then 'cancelled' else 'succeeded' end as st
            from (
              select i, a, at, r,
                     case when a = 2 and at > now() - interval '3 hours' then 2 when a = 7 and at > now() - interval '40 minutes' then 7 else 0 end as outage
              from (
                select i, 1 + i % ${AUTOMATIONS} as a, ((hashtext(i::text)::bigint % 1000) + 1000) % 1000 as r,
                       now() - interval '1 minute' - (i::float8 / ${total}) * interval '${sql.raw(String(DAYS))} days' as at
                from generate_series(1, ${total}) i
              ) g
            ) o
          ) s
        ) x`),
    );
    await timed('deliveries', async () => {
      await db.execute(sql`
        insert into webhook_deliveries (id, tenant_id, account_id, automation_id, status, method, headers, query, content_type, body, size, source_ip, execution_id, received_at)
        select delivery_id, tenant_id, account_id, automation_id, 'accepted', 'POST', '{"content-type":"application/json"}'::jsonb, '{}'::jsonb,
               'application/json', trigger -> 'body', 40, '127.0.0.1', id, created_at
        from executions where account_id = ${acc} and delivery_id is not null`);
      // not run: a rejected signature, a duplicate, one recorded while the automation was disabled
      await db.execute(sql`
        insert into webhook_deliveries (tenant_id, account_id, automation_id, status, code, reason, method, headers, query, content_type, body, size, source_ip, received_at)
        select ${tenant}, ${acc}, (${ids})[1 + j % ${AUTOMATIONS}], (array['rejected', 'duplicate', 'recorded'])[1 + j % 3],
               (array['signature_invalid', 'duplicate', 'automation_disabled'])[1 + j % 3], 'Not run (seeded).', 'POST',
               '{"content-type":"application/json"}'::jsonb, '{}'::jsonb, 'application/json', jsonb_build_object('event', 'order.created', 'j', j), 40, '127.0.0.1',
               now() - (j::float8 / ${Math.ceil(total / 200)}) * interval '${sql.raw(String(DAYS))} days'
        from generate_series(1, ${Math.ceil(total / 200)}) j`);
    });
    await timed('steps', () =>
      db.execute(sql`
        insert into execution_steps (execution_id, step_index, attempt, tenant_id, account_id, step_id, kind, status, input, output, error_code, error_message, started_at, duration_ms)
        select e.id, s.idx, s.attempt, e.tenant_id, e.account_id, s.step_id, s.kind, s.status,
               case when s.kind = 'http' then '{"method":"POST","url":"/orders"}'::jsonb end,
               case when s.status <> 'succeeded' and e.error_status is not null then jsonb_build_object('status', e.error_status, 'body', '{"error":"seeded"}') end,
               case when s.status <> 'succeeded' then e.error_code end, case when s.status <> 'succeeded' then e.error_message end,
               e.started_at + s.idx * interval '5 ms', 5
        from executions e
        cross join lateral (values
          (0, 1, 'shape', 'transform', 'succeeded'),
          (1, 1, 'send', 'http', case when e.failed_step = 'send' then 'retrying' else 'succeeded' end),
          (case when e.failed_step = 'send' then 1 else 2 end, case when e.failed_step = 'send' then 2 else 1 end, coalesce(e.failed_step, 'send'), case when e.failed_step = 'send' then 'http' else 'transform' end, 'failed')
        ) s(idx, attempt, step_id, kind, status)
        where e.account_id = ${acc} and e.status = 'failed'`),
    );
    // statistics first: the aggregates' GROUP BYs and the failure groups' index probes are planned on them
    await timed('analyze', () => db.execute(sql`analyze executions, webhook_deliveries, execution_steps`));
    await timed('aggregates', () => aggregatesOf(database, tenant, acc));
    await timed('queued', () =>
      db.execute(sql`
        insert into executions (tenant_id, account_id, automation_id, revision, source, status, trigger, run_at, created_at)
        select ${tenant}, ${acc}, (${ids})[k], 1, 'test', 'queued', '{"body":{}}'::jsonb, now() - k * interval '12 seconds', now() - k * interval '12 seconds'
        from generate_series(1, 5) k`),
    );
  } finally {
    await setAggregateTriggers(database, true);
  }
  const [c] = rowsOf<{ e: number; f: number; d: number; s: number; g: number }>(
    await db.execute(sql`
      select (select count(*) from executions where account_id = ${acc})::int as e,
             (select count(*) from executions where account_id = ${acc} and status = 'failed')::int as f,
             (select count(*) from webhook_deliveries where account_id = ${acc})::int as d,
             (select count(*) from execution_steps where account_id = ${acc})::int as s,
             (select count(*) from failure_groups where account_id = ${acc})::int as g`),
  );
  return { executions: Number(c!.e), failed: Number(c!.f), deliveries: Number(c!.d), steps: Number(c!.s), groups: Number(c!.g), phases, automations };
}

/** execution_stats, delivery_stats and failure_groups of one account, from its rows (what the triggers keep). */
async function aggregatesOf(database: Database, tenant: string, acc: string): Promise<void> {
  const db = database.db;
  await db.execute(sql`
    insert into execution_stats (tenant_id, account_id, automation_id, hour, succeeded, failed, filtered, cancelled, last_success_at, last_failure_at)
    select ${tenant}, account_id, automation_id, date_trunc('hour', finished_at),
           count(*) filter (where status = 'succeeded'), count(*) filter (where status = 'failed'),
           count(*) filter (where status = 'filtered'), count(*) filter (where status = 'cancelled'),
           max(finished_at) filter (where status = 'succeeded'), max(finished_at) filter (where status = 'failed')
    from executions where account_id = ${acc} and finished_at is not null group by 2, 3, 4`);
  await db.execute(sql`
    insert into execution_stats as s (tenant_id, account_id, automation_id, hour, throttled)
    select ${tenant}, st.account_id, e.automation_id, date_trunc('hour', st.started_at), count(*)
    from execution_steps st join executions e on e.id = st.execution_id
    where st.account_id = ${acc} and st.error_code in ('rate_limited', 'http_429') group by 2, 3, 4
    on conflict (account_id, hour, automation_id) do update set throttled = s.throttled + excluded.throttled`);
  await db.execute(sql`
    insert into delivery_stats (tenant_id, account_id, automation_id, hour, received, accepted, routed, unrouted, duplicate, rejected, recorded)
    select ${tenant}, account_id, automation_id, date_trunc('hour', received_at), count(*),
           count(*) filter (where status = 'accepted'), count(*) filter (where status = 'routed'), count(*) filter (where status = 'unrouted'),
           count(*) filter (where status = 'duplicate'), count(*) filter (where status = 'rejected'), count(*) filter (where status = 'recorded')
    from webhook_deliveries where account_id = ${acc} group by 2, 3, 4`);
  // one group per fingerprint: totals first, then the current streak (failures since the automation's
  // last success before the group's last failure) and whether a success came after it (resolved)
  await db.execute(sql`
    insert into failure_groups (fingerprint, account_id, automation_id, tenant_id, target, step_id, error_code, upstream_status, status, count, total, first_seen, last_seen, last_execution_id, last_message)
    select fp, ${acc}, automation_id, ${tenant}, target, step, code, http, 'open', 0, count(*), min(finished_at), max(finished_at),
           (array_agg(id order by finished_at desc))[1], left((array_agg(error_message order by finished_at desc))[1], 500)
    from (
      select md5(concat_ws(chr(31), coalesce(error_target, ''), coalesce(failed_step, ''), coalesce(error_code, ''), coalesce(error_status::text, ''))) as fp,
             automation_id, coalesce(error_target, '') as target, coalesce(failed_step, '') as step, coalesce(error_code, 'internal_error') as code,
             error_status as http, finished_at, id, error_message
      from executions where account_id = ${acc} and status = 'failed'
    ) f group by fp, automation_id, target, step, code, http`);
  await db.execute(sql`
    update failure_groups g set
      status = case when nxt.at is null then 'open' else 'resolved' end, resolved_at = nxt.at,
      count = streak.n, first_seen = coalesce(streak.first, g.first_seen)
    from failure_groups g2
    cross join lateral (select max(created_at) as at from executions e where e.automation_id = g2.automation_id and e.status = 'succeeded' and e.created_at < g2.last_seen) prev
    cross join lateral (select min(created_at) as at from executions e where e.automation_id = g2.automation_id and e.status = 'succeeded' and e.created_at > g2.last_seen) nxt
    cross join lateral (
      select count(*)::int as n, min(e.finished_at) as first from executions e
      where e.automation_id = g2.automation_id and e.status = 'failed' and e.created_at > coalesce(prev.at, '-infinity'::timestamptz) and e.created_at <= g2.last_seen
        and md5(concat_ws(chr(31), coalesce(e.error_target, ''), coalesce(e.failed_step, ''), coalesce(e.error_code, ''), coalesce(e.error_status::text, ''))) = g2.fingerprint
    ) streak
    where g.account_id = ${acc} and g2.account_id = g.account_id and g2.fingerprint = g.fingerprint and g2.automation_id = g.automation_id`);
}

export interface FleetSeed {
  accounts: number;
  automations: number;
  statsRows: number;
  openGroups: number;
  ms: number;
}

/**
 * The fleet for check_health {scope: 'all'}: `total` customer accounts (bench/seed.ts: parents with
 * linked studios, standalone businesses), `perAccount` automations each, and their hourly
 * execution and delivery stats every 4th hour of the last 8 days. One account in 20 has an open
 * failure group (an upstream 503 in its last hour); one in 50 fell silent for the last day.
 */
export async function seedFleet(database: Database, core: Core, total: number, perAccount: number): Promise<FleetSeed> {
  const t0 = performance.now();
  const db = database.db;
  const tenant = core.tenantId;
  await seedAccounts(db, tenant, total);
  await setAggregateTriggers(database, false);
  try {
    return await seedFleetRows(database, core, perAccount, t0);
  } finally {
    await setAggregateTriggers(database, true);
  }
}

async function seedFleetRows(database: Database, core: Core, perAccount: number, t0: number): Promise<FleetSeed> {
  const db = database.db;
  const tenant = core.tenantId;
  const definition = JSON.stringify({ trigger: { type: 'webhook', dedupe: null }, routing: null, retries: { max: 3 }, steps: [{ id: 'shape', kind: 'transform', value: '{{ trigger.body }}' }] });
  // one transaction: the temporary tables live on its connection
  const c = await db.transaction(async (tx) => {
    await tx.execute(sql`
      create temporary table fleet on commit drop as
      select md5(a.id::text || k)::uuid as id, a.id as account_id, k, row_number() over (order by a.id) as n
      from accounts a cross join generate_series(1, ${perAccount}) k
      where a.tenant_id = ${tenant} and a.kind = 'customer' and not exists (select 1 from automations x where x.account_id = a.id)`);
    await tx.execute(sql`insert into automations (id, tenant_id, account_id, name, revision) select id, ${tenant}, account_id, 'Flow ' || k, 1 from fleet`);
    await tx.execute(sql`
      insert into automation_revisions (automation_id, revision, tenant_id, account_id, name, definition)
      select id, 1, ${tenant}, account_id, 'Flow ' || k, ${definition}::jsonb from fleet`);
    // hours h = 0 (this hour) … 191, every 4th, phase-shifted per automation; silent accounts skip the last 24 h
    await tx.execute(sql`
      create temporary table fleet_hours on commit drop as
      select f.id, f.account_id, f.n, date_trunc('hour', now()) - h * interval '1 hour' as hour, 10 + (f.n + h) % 20 as runs
      from fleet f cross join generate_series(0, 191) h
      where (h + f.n) % 4 = 0 and not (f.n % 50 = 0 and h < 24)`);
    await tx.execute(sql`
      insert into execution_stats (tenant_id, account_id, automation_id, hour, succeeded, failed, last_success_at, last_failure_at)
      select ${tenant}, account_id, id, hour, runs - case when n % 20 = 0 then 2 else 0 end, case when n % 20 = 0 then 2 else 0 end,
             hour + interval '30 minutes', case when n % 20 = 0 then hour + interval '31 minutes' end
      from fleet_hours`);
    await tx.execute(sql`
      insert into delivery_stats (tenant_id, account_id, automation_id, hour, received, accepted)
      select ${tenant}, account_id, id, hour, runs, runs from fleet_hours`);
    await tx.execute(sql`
      insert into failure_groups (fingerprint, account_id, automation_id, tenant_id, target, step_id, error_code, upstream_status, status, count, total, first_seen, last_seen, last_message)
      select md5('mindbody' || chr(31) || 'send' || chr(31) || 'http_503' || chr(31) || '503'), account_id, id, ${tenant}, 'mindbody', 'send', 'http_503', 503, 'open',
             4, 4, now() - interval '50 minutes', now() - interval '5 minutes', 'Upstream answered 503'
      from fleet where n % 20 = 0`);
    const [c] = rowsOf<{ a: number; f: number; s: number; g: number }>(
      await tx.execute(sql`select (select count(distinct account_id) from fleet)::int as a, (select count(*) from fleet)::int as f,
                                  (select count(*) from fleet_hours)::int as s, (select count(*) from fleet where n % 20 = 0)::int as g`),
    );
    return c;
  });
  return { accounts: Number(c!.a), automations: Number(c!.f), statsRows: Number(c!.s) * 2, openGroups: Number(c!.g), ms: performance.now() - t0 };
}
