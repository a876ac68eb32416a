import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { buildWorld, connect, data, type Session, type World } from './helpers/world.js';
import { createAccount, type Account } from '../src/core/accounts.js';
import { createAutomation } from '../src/core/automations.js';
import { rowsOf } from '../src/db/client.js';
import { withAccount } from '../src/db/scope.js';
import postgres from 'postgres';
import { baseOf, refreshRequestedRollups, refreshRollup, storedBase } from '../src/core/operations/health-rollup.js';

/**
 * check_health's roll-up (src/core/operations/health-rollup.ts): a fleet-wide read stores the
 * sums of the buckets behind the live edge per automation and reuses them; every figure it gives
 * must equal the figure summed from the buckets, a write behind the edge must make it stale, and
 * the worker's refresh brings a requested roll-up up to the hour. History cannot happen in real
 * time, so the buckets are written directly, at hours relative to the database's clock.
 */

interface Figures {
  runs: Record<string, unknown>;
  previous: Record<string, unknown>;
  deliveries: Record<string, unknown>;
  silent_automations: { id: string; baseline: number; windows: number }[];
  failing_automations: { id: string }[];
}
interface Health {
  accounts: { account: { id: string; slug: string }; status: string; figures: Figures }[];
}

let w: World;
let admin: Session;
const acc: Record<string, Account> = {};
const flow: Record<string, string> = {};

const health = async (s: Session, args: Record<string, unknown>) => data<Health>(await s.call('check_health', args));
const figuresOf = (h: Health, slug: string) => h.accounts.find((a) => a.account.slug === slug)!.figures;
const markers = async () =>
  rowsOf<{ window_hours: number; as_of: string; current: boolean; requested_at: string }>(
    await w.core.db.execute(sql`select window_hours, as_of::text, as_of = date_trunc('hour', now()) as current, requested_at::text from health_rollups order by window_hours`),
  );
const stale = () => w.core.db.execute(sql`update health_rollups set as_of = 'epoch'`);

/** add to the buckets of `hoursAgo` hours before the current one (0: the current hour) */
async function runs(slug: string, hoursAgo: number, succeeded: number, failed: number): Promise<void> {
  const hour = sql`date_trunc('hour', now()) - ${hoursAgo} * interval '1 hour'`;
  await w.core.db.execute(sql`
    insert into execution_stats (tenant_id, account_id, automation_id, hour, succeeded, failed, last_success_at, last_failure_at)
    values (${w.core.tenantId}, ${acc[slug]!.id}, ${flow[slug]!}, ${hour}, ${succeeded}, ${failed},
            case when ${succeeded} > 0 then ${hour} + interval '10 minutes' end, case when ${failed} > 0 then ${hour} + interval '20 minutes' end)
    on conflict (account_id, hour, automation_id) do update set succeeded = execution_stats.succeeded + excluded.succeeded,
      failed = execution_stats.failed + excluded.failed`);
}
async function deliveries(slug: string, hoursAgo: number, received: number): Promise<void> {
  await w.core.db.execute(sql`
    insert into delivery_stats (tenant_id, account_id, automation_id, hour, received, accepted)
    values (${w.core.tenantId}, ${acc[slug]!.id}, ${flow[slug]!}, date_trunc('hour', now()) - ${hoursAgo} * interval '1 hour', ${received}, ${received})
    on conflict (account_id, hour, automation_id) do update set received = delivery_stats.received + excluded.received`);
}

beforeAll(async () => {
  w = await buildWorld();
  admin = await connect(w.core, w.tokens.admin);
  for (const slug of ['rollup-busy', 'rollup-quiet', 'rollup-live']) {
    acc[slug] = await createAccount(w.core, { name: `Name of ${slug}`, slug });
    const { row } = await createAutomation(w.core, acc[slug]!, {
      name: 'Flow',
      createdBy: null,
      definition: { trigger: { type: 'webhook', dedupe: null }, routing: null, retries: { max: 0 }, steps: [{ id: 'shape', kind: 'transform', value: '{{ trigger.body }}' }] },
    });
    flow[slug] = row.id;
  }
  // busy: runs in every part of the windows (live, behind the edge, the window before, the baselines)
  for (const [h, s, f] of [[0, 5, 1], [1, 4, 0], [2, 6, 2], [23, 3, 0], [24, 7, 1], [30, 2, 2], [47, 1, 0], [48, 9, 9], [100, 5, 5], [200, 1, 1], [400, 3, 3]] as const) await runs('rollup-busy', h, s, f);
  for (const [h, n] of [[0, 3], [1, 2], [5, 6], [24, 8], [30, 6], [60, 7], [90, 5], [120, 9], [170, 6], [300, 6], [500, 6], [700, 6], [839, 6]] as const) await deliveries('rollup-busy', h, n);
  // quiet: silent in the last 24 h against four windows of 6 deliveries; and in the last 7 days
  for (const h of [30, 50, 80, 110, 200, 400, 600, 800]) await deliveries('rollup-quiet', h, 6);
  await runs('rollup-quiet', 30, 6, 0);
  // live: only the current hour and the one before (the live edge)
  await runs('rollup-live', 0, 2, 2);
  await runs('rollup-live', 1, 1, 0);
  await deliveries('rollup-live', 0, 4);
});
afterAll(async () => {
  await admin.close();
  await w.close();
});

describe("check_health's roll-up", () => {
  for (const window of ['1h', '24h', '7d'] as const) {
    it(`gives the figures summed from the buckets (${window})`, async () => {
      const fleet = await health(admin, { scope: 'all', window, limit: 1000 });
      const hours = { '1h': 1, '24h': 24, '7d': 168 }[window];
      expect((await markers()).find((m) => m.window_hours === hours)).toMatchObject({ current: true });
      for (const slug of Object.keys(acc)) {
        // with the roll-up current, a read of one account uses it too; stale, it sums the buckets
        const stored = figuresOf(await health(admin, { account: slug, window }), slug);
        await stale();
        const summed = figuresOf(await health(admin, { account: slug, window }), slug);
        expect(stored).toEqual(summed);
        expect(figuresOf(fleet, slug)).toEqual(summed);
        await health(admin, { scope: 'all', window, limit: 1 });
      }
    });
  }

  it('counts what the windows hold', async () => {
    const h = await health(admin, { scope: 'all', window: '24h', limit: 1000 });
    const busy = figuresOf(h, 'rollup-busy');
    // window: hours 0–24 (the current hour and the 24 before); the window before: 25–48
    expect(busy.runs).toMatchObject({ succeeded: 5 + 4 + 6 + 3 + 7, failed: 1 + 0 + 2 + 0 + 1 });
    expect(busy.previous).toMatchObject({ succeeded: 2 + 1 + 9, failed: 2 + 0 + 9 });
    expect(busy.deliveries).toMatchObject({ received: 3 + 2 + 6 + 8, previous_received: 6 });
    const quiet = figuresOf(h, 'rollup-quiet');
    expect(quiet.deliveries).toMatchObject({ received: 0 });
    expect(quiet.silent_automations).toEqual([{ id: flow['rollup-quiet'], name: 'Flow', baseline: 6, windows: 4 }]);
    expect(figuresOf(h, 'rollup-live').runs).toMatchObject({ succeeded: 3, failed: 2 });
  });

  it('goes stale when a bucket behind the live edge is written, and not for the live buckets', async () => {
    await health(admin, { scope: 'all', window: '24h', limit: 1 });
    const before = figuresOf(await health(admin, { scope: 'all', window: '24h', limit: 1000 }), 'rollup-live');
    // the live buckets: the roll-up stays current and the read sees the new runs at once
    await runs('rollup-live', 0, 1, 0);
    await runs('rollup-live', 1, 1, 0);
    expect((await markers()).find((m) => m.window_hours === 24)).toMatchObject({ current: true });
    expect(figuresOf(await health(admin, { scope: 'all', window: '24h', limit: 1000 }), 'rollup-live').runs).toMatchObject({ succeeded: Number(before.runs.succeeded) + 2 });
    // behind the edge: every window of the tenant is marked stale in the writing transaction
    await runs('rollup-live', 5, 0, 4);
    expect((await markers()).every((m) => m.as_of.startsWith('1970-01-01'))).toBe(true);
    const after = figuresOf(await health(admin, { scope: 'all', window: '24h', limit: 1000 }), 'rollup-live');
    expect(after.runs).toMatchObject({ failed: Number(before.runs.failed) + 4 });
    expect((await markers()).find((m) => m.window_hours === 24)).toMatchObject({ current: true });
  });

  it('goes stale when a bucket behind the edge is deleted or moved, and is never moved back an hour', async () => {
    const current = async () => (await markers()).find((m) => m.window_hours === 24)!.current;
    const failedNow = async () => Number(figuresOf(await health(admin, { scope: 'all', window: '24h', limit: 1000 }), 'rollup-live').runs.failed);
    await runs('rollup-live', 6, 0, 3);
    const before = await failedNow();
    expect(await current()).toBe(true);
    // deleted
    await w.core.db.execute(sql`delete from execution_stats where automation_id = ${flow['rollup-live']!} and hour = date_trunc('hour', now()) - interval '6 hours'`);
    expect(await current()).toBe(false);
    expect(await failedNow()).toBe(before - 3);
    // moved from behind the edge into the live hour: counted once, in the window now
    const quiet = async () => figuresOf(await health(admin, { scope: 'all', window: '24h', limit: 1000 }), 'rollup-quiet');
    expect(await quiet()).toMatchObject({ runs: { succeeded: 0 }, previous: { succeeded: 6 } });
    await w.core.db.execute(sql`update execution_stats set hour = date_trunc('hour', now()) where automation_id = ${flow['rollup-quiet']!} and hour = date_trunc('hour', now()) - interval '30 hours'`);
    expect(await current()).toBe(false);
    expect(await quiet()).toMatchObject({ runs: { succeeded: 6 }, previous: { succeeded: 0 } });
    // a refresh for an hour already past leaves the current roll-up as it is
    const [{ previous }] = rowsOf<{ previous: unknown }>(await w.core.db.execute(sql`select date_trunc('hour', now()) - interval '1 hour' as previous`)) as [{ previous: unknown }];
    const hourBefore = new Date(previous instanceof Date ? previous : String(previous));
    expect(await refreshRollup(w.core, 24, hourBefore, false)).toBe(false);
    expect(await current()).toBe(true);
  });

  it('reads its stored rows only when the marker says so in the same statement, else sums the buckets', async () => {
    await health(admin, { scope: 'all', window: '24h', limit: 1 });
    const [{ as_of }] = rowsOf<{ as_of: unknown }>(await w.core.db.execute(sql`select date_trunc('hour', now()) as as_of`)) as [{ as_of: unknown }];
    const asOf = new Date(as_of instanceof Date ? as_of : String(as_of));
    const where = (alias: string) => sql`${sql.raw(alias)}.tenant_id = ${w.core.tenantId}`;
    const sorted = (rows: Record<string, unknown>[]) => rows.map((r) => JSON.stringify({ ...r, baseline: Number(r.baseline) })).sort();
    const summed = sorted(rowsOf(await w.core.db.execute(baseOf(where, 24, asOf))));
    expect(summed.length).toBeGreaterThan(0);
    expect(sorted(rowsOf(await w.core.db.execute(storedBase(where, 24, asOf, w.core.tenantId))))).toEqual(summed);
    // the rows are of another hour than the marker says (a refresh between the call's look at the marker and its read): the buckets
    await w.core.db.execute(sql`update health_rollup_rows set succeeded = succeeded + 1000`);
    expect(sorted(rowsOf(await w.core.db.execute(storedBase(where, 24, asOf, w.core.tenantId))))).not.toEqual(summed);
    await stale();
    expect(sorted(rowsOf(await w.core.db.execute(storedBase(where, 24, asOf, w.core.tenantId))))).toEqual(summed);
  });

  it('is brought up to the hour by the worker while reads keep asking for it', async () => {
    await health(admin, { scope: 'all', window: '24h', limit: 1 });
    await health(admin, { scope: 'all', window: '7d', limit: 1 });
    // the hour turned since they were computed
    await w.core.db.execute(sql`update health_rollups set as_of = as_of - interval '1 hour'`);
    expect((await markers()).some((m) => m.current)).toBe(false);
    expect(await refreshRequestedRollups(w.core)).toEqual([1, 24, 168]);
    expect((await markers()).every((m) => m.current)).toBe(true);
    expect(await refreshRequestedRollups(w.core)).toEqual([]);
    // asked for more than a day ago: left to the next read
    await w.core.db.execute(sql`update health_rollups set as_of = as_of - interval '1 hour', requested_at = now() - interval '25 hours' where window_hours = 168`);
    await w.core.db.execute(sql`update health_rollups set as_of = as_of - interval '1 hour' where window_hours = 24`);
    expect(await refreshRequestedRollups(w.core)).toEqual([24]);
    // a read that uses a current roll-up counts as asking for it (written at most once an hour)
    await w.core.db.execute(sql`update health_rollups set requested_at = now() - interval '2 hours' where window_hours = 24`);
    await health(admin, { scope: 'all', window: '24h', limit: 1 });
    const [m] = rowsOf<{ fresh: boolean }>(await w.core.db.execute(sql`select requested_at > now() - interval '1 minute' as fresh from health_rollups where window_hours = 24`));
    expect(m!.fresh).toBe(true);
  });

  it("is read under row-level security: a customer's read of it holds only its own rows", async () => {
    await health(admin, { scope: 'all', window: '24h', limit: 1 });
    const rows = await withAccount(w.core.db, [acc['rollup-busy']!.id], async (tx) =>
      rowsOf<{ account_id: string }>(await tx.execute(sql`select distinct account_id from health_rollup_rows`)),
    );
    expect(rows.map((r) => String(r.account_id))).toEqual([acc['rollup-busy']!.id]);
    const boring = await connect(w.core, w.tokens.boringAdmin);
    try {
      expect((await health(boring, { scope: 'all', window: '24h' })).accounts.map((a) => a.account.slug)).toEqual(['boring-co']);
    } finally {
      await boring.close();
    }
    // the scoped role may read the markers but not change them (only the trigger does, as its owner)
    await expect(withAccount(w.core.db, [acc['rollup-busy']!.id], (tx) => tx.execute(sql`update health_rollups set as_of = date_trunc('hour', now())`))).rejects.toMatchObject({
      cause: { message: expect.stringMatching(/permission denied/) },
    });
    // and its own write behind the edge marks the roll-up stale through that trigger
    await withAccount(w.core.db, [acc['rollup-busy']!.id], (tx) =>
      tx.execute(sql`update execution_stats set failed = failed + 1 where account_id = ${acc['rollup-busy']!.id} and hour = date_trunc('hour', now()) - interval '30 hours'`),
    );
    expect((await markers()).every((m) => m.as_of.startsWith('1970-01-01'))).toBe(true);
  });

  it('goes stale when a stats table is truncated', async () => {
    await health(admin, { scope: 'all', window: '24h', limit: 1 });
    await w.core.db.execute(sql`truncate delivery_stats`);
    expect((await markers()).every((m) => m.as_of.startsWith('1970-01-01'))).toBe(true);
  });
});

describe.skipIf(!process.env.TEST_DATABASE_URL || process.env.SB_TEST_DB !== 'postgres')("check_health's roll-up beside an open write behind the edge (PostgreSQL: two connections)", () => {
  let other: postgres.ReservedSql;
  let client: postgres.Sql;
  const failedOf = async () => Number(figuresOf(await health(admin, { scope: 'all', window: '24h', limit: 1000 }), 'rollup-quiet').runs.failed);
  const behindEdge = (n: number) =>
    other.unsafe(`insert into execution_stats (tenant_id, account_id, automation_id, hour, failed) values ($1, $2, $3, date_trunc('hour', now()) - interval '7 hours', $4)
      on conflict (account_id, hour, automation_id) do update set failed = execution_stats.failed + excluded.failed`, [w.core.tenantId, acc['rollup-quiet']!.id, flow['rollup-quiet']!, n]);

  beforeAll(async () => {
    client = postgres(w.database.url!, { max: 1, onnotice: () => {} });
    other = await client.reserve();
  });
  afterAll(async () => {
    other.release();
    await client.end();
  });

  it('neither waits for it nor sums around it: a refresh waits for its commit at most a few seconds, then the read sums the buckets', async () => {
    const start = await failedOf();
    // (so that the next read notes that it used the roll-up: a write to the marker the open write holds)
    await w.core.db.execute(sql`update health_rollups set requested_at = now() - interval '2 hours'`);
    // open while the roll-up is current: reads use it (the write is not committed) and do not wait for its lock on the marker
    await other.unsafe('begin');
    await behindEdge(50);
    expect(await failedOf()).toBe(start);
    await other.unsafe('commit');
    expect(await failedOf()).toBe(start + 50);
    // open while the roll-up is already stale: the refresh cannot sum around it and mark the result current
    await behindEdge(0); // marks it stale
    await other.unsafe('begin');
    await behindEdge(7);
    const t0 = performance.now();
    expect(await failedOf()).toBe(start + 50);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(2_500); // it waited for the lock, then gave up
    await other.unsafe('commit');
    expect(await failedOf()).toBe(start + 57);
    expect((await markers()).find((m) => m.window_hours === 24)).toMatchObject({ current: true });
  });
});
