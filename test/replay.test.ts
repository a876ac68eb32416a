import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { and, eq, inArray, sql } from 'drizzle-orm';
import { connect, data, text, type Session, type World } from './helpers/world.js';
import { engineWorld, localApp, startWorker, type LocalApp } from './helpers/apps.js';
import type { HttpHandle } from '../src/http/server.js';
import type { Worker } from '../src/engine/worker.js';
import { awaitExecution } from '../src/core/executions.js';
import { auditLog, executions, failureGroups, webhookDeliveries } from '../src/db/schema/index.js';
import type { Account } from '../src/core/accounts.js';

/**
 * replay_webhook through a real MCP client: real deliveries through ingress, a real worker, and a
 * local app that records the Idempotency-Key of every request. One delivery replays at once and
 * links to the original; a filter is planned (which side effects repeat, where, with which
 * revision, hashed) and applied only with the hash of a plan that is still true.
 */

let w: World;
let http: HttpHandle;
let worker: Worker;
let app: LocalApp;
let base: string;
let boring: Session;
let acme: Session;
let ordersHook: string;
let bookingsHook: string;
/** while true, the app answers /charge with 500 */
let failing = true;
const calls: { path: string; key: string | undefined }[] = [];

interface Planned {
  plan: {
    hash: string;
    dry_run: boolean;
    revision: string;
    reuse_idempotency_keys: boolean;
    deliveries: number;
    replayable: number;
    accounts: { account: { slug: string }; deliveries: number }[];
    revisions: { automation: { name: string }; revision: number; deliveries: number; side_effects: { step: string; kind: string; method: string | null; host: string | null; action: string | null; done_before: number; repeated: boolean }[] }[];
    not_replayable: { delivery_id: string; code: string; reason: string }[];
    not_replayable_by_code: Record<string, number>;
  };
  executions: { id: string; delivery_id: string; account_id: string; revision: number; idempotency_of: string | null }[];
}

beforeAll(async () => {
  app = await localApp((req, res) => {
    calls.push({ path: req.url!, key: req.headers['idempotency-key'] as string | undefined });
    req.resume();
    req.on('end', () => {
      const down = failing && req.url === '/charge';
      res.writeHead(down ? 500 : 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: !down }));
    });
  });
  base = app.base;
  ({ w, http } = await engineWorld());
  boring = await connect(w.core, w.tokens.boringAdmin);
  acme = await connect(w.core, w.tokens.acmeAdmin);
  // an order: tell the shop (an external call), count it (account data), charge it (fails while the app is down)
  data(
    await boring.call('create_automation', {
      name: 'Orders',
      retries: 0,
      steps: [
        { id: 'notify', kind: 'http', method: 'POST', url: `${base}/notify`, body: { id: '{{ trigger.body.id }}' } },
        { id: 'count', kind: 'store', action: 'increment', key: 'orders' },
        { id: 'charge', kind: 'http', method: 'POST', url: `${base}/charge`, body: { id: '{{ trigger.body.id }}' } },
      ],
    }),
  );
  ordersHook = data<{ webhook: { url: string } }>(await boring.call('get_automation', { automation: 'Orders' })).webhook.url;
  data(
    await acme.call('create_automation', {
      account: 'acme-fitness',
      name: 'Bookings',
      retries: 0,
      routing: { key: 'body.location_id' },
      steps: [{ id: 'book', kind: 'http', method: 'POST', url: `${base}/bookings/{{ account.routing_key }}` }],
    }),
  );
  bookingsHook = data<{ webhook: { url: string } }>(await acme.call('get_automation', { account: 'acme-fitness', automation: 'Bookings' })).webhook.url;
  worker = await startWorker(w);
});
afterAll(async () => {
  await worker.stop();
  await Promise.all([boring.close(), acme.close()]);
  await http.close();
  await w.close();
  await app.close();
});

/** A delivery through ingress, and its original run once it ended (null when it was not run). */
async function deliver(hook: string, body: unknown, runIn: Account | null) {
  const res = await fetch(hook, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  const answer = (await res.json()) as { delivery_id: string; status: string };
  const [d] = await w.core.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, answer.delivery_id));
  const run = d!.executionId && runIn ? await awaitExecution(w.core, runIn, d!.executionId, 10_000) : null;
  return { id: answer.delivery_id, status: answer.status, run };
}

const replays = (deliveryIds: string[]) =>
  w.core.db.select().from(executions).where(and(eq(executions.source, 'replay'), inArray(executions.deliveryId, deliveryIds)));

const keysFor = (path: string) => calls.filter((c) => c.path === path).map((c) => c.key);

describe('replaying one delivery', () => {
  it('replays a failed delivery after the app recovered: a new execution linked to the original, with the same Idempotency-Keys', async () => {
    failing = true;
    const d = await deliver(ordersHook, { id: 'o-1' }, w.accounts.boring);
    expect(d.run).toMatchObject({ status: 'failed', failedStep: 'charge', errorCode: 'http_5xx' });
    failing = false;
    const r = await boring.call('replay_webhook', { delivery: d.id });
    const out = data<Planned>(r);
    expect(out.executions).toHaveLength(1);
    const [e] = out.executions;
    expect(e).toMatchObject({ delivery_id: d.id, account_id: w.accounts.boring.id, revision: 1, idempotency_of: d.run!.id });
    // what it repeats: the call and the write the original had done, not the charge that failed
    const effects = out.plan.revisions[0]!.side_effects.map((s) => [s.step, s.kind, s.done_before, s.repeated]);
    expect(effects).toEqual([['notify', 'http', 1, true], ['count', 'store', 1, true], ['charge', 'http', 0, false]]);
    expect(text(r)).toBe(`The delivery ${d.id} replays as execution ${e!.id} (revision 1, idempotency keys reused), repeating 2 side effects the earlier runs had already done.`);
    const run = await awaitExecution(w.core, w.accounts.boring, e!.id, 10_000);
    expect(run).toMatchObject({ status: 'succeeded', source: 'replay', deliveryId: d.id, idempotencyOf: d.run!.id, trigger: { body: { id: 'o-1' } } });
    // the app saw the original run's keys again
    expect(keysFor('/charge')).toEqual([`${d.run!.id}:charge`, `${d.run!.id}:charge`]);
    expect(keysFor('/notify')).toEqual([`${d.run!.id}:notify`, `${d.run!.id}:notify`]);

    // without reuse, the replay's own keys
    const fresh = data<Planned>(await boring.call('replay_webhook', { delivery: d.id, reuse_idempotency_keys: false })).executions[0]!;
    expect(fresh.idempotency_of).toBeNull();
    expect((await awaitExecution(w.core, w.accounts.boring, fresh.id, 10_000)).status).toBe('succeeded');
    expect(keysFor('/charge').at(-1)).toBe(`${fresh.id}:charge`);
    expect(fresh.id).not.toBe(d.run!.id);
  });

  it('debug_webhook follows the latest run: a failed delivery whose replay succeeded is succeeded, and one whose replay failed again is listed once', async () => {
    type Item = { id: string; status: string; replays: number; execution: { id: string; status: string } | null; diagnosis: { code: string } | null };
    const page = async (args: Record<string, unknown>) => data<{ deliveries: Item[] }>(await boring.call('debug_webhook', { automation: 'Orders', limit: 100, ...args })).deliveries;
    failing = true;
    const fixed = await deliver(ordersHook, { id: 'o-fixed' }, w.accounts.boring);
    const still = await deliver(ordersHook, { id: 'o-still' }, w.accounts.boring);
    expect([fixed.run!.status, still.run!.status]).toEqual(['failed', 'failed']);
    // the one replay fails again (the app is still down); the other succeeds after it recovered
    const again = data<Planned>(await boring.call('replay_webhook', { delivery: still.id })).executions[0]!;
    expect((await awaitExecution(w.core, w.accounts.boring, again.id, 10_000)).status).toBe('failed');
    failing = false;
    const ok = data<Planned>(await boring.call('replay_webhook', { delivery: fixed.id })).executions[0]!;
    expect((await awaitExecution(w.core, w.accounts.boring, ok.id, 10_000)).status).toBe('succeeded');

    const all = await page({});
    expect(all.find((i) => i.id === fixed.id)).toMatchObject({ status: 'succeeded', replays: 1, execution: { id: ok.id, status: 'succeeded' }, diagnosis: null });
    expect(all.find((i) => i.id === still.id)).toMatchObject({ status: 'failed', replays: 1, execution: { id: again.id, status: 'failed' }, diagnosis: { code: 'http_5xx' } });
    // status: failed lists what is failing now: the delivery whose latest run failed, once, and not the fixed one
    const failed = await page({ status: 'failed' });
    expect(failed.filter((i) => i.id === still.id)).toHaveLength(1);
    expect(failed.find((i) => i.id === fixed.id)).toBeUndefined();
    expect((await page({ status: 'succeeded' })).find((i) => i.id === fixed.id)).toBeDefined();
    // a page of one walks the failed ones without repeating or skipping any
    const walked: string[] = [];
    let cursor: string | null | undefined;
    do {
      const r = data<{ deliveries: Item[]; next_cursor: string | null }>(await boring.call('debug_webhook', { automation: 'Orders', status: 'failed', limit: 1, ...(cursor ? { cursor } : {}) }));
      walked.push(...r.deliveries.map((i) => i.id));
      cursor = r.next_cursor;
    } while (cursor);
    expect(walked).toEqual(failed.map((i) => i.id));
    // replay_webhook agrees: a filter on failed deliveries plans the one still failing, not the fixed one
    const plan = data<{ plan: { deliveries: number } }>(await boring.call('replay_webhook', { filter: { automation: 'Orders', status: 'failed' }, dry_run: true }));
    expect(plan.plan.deliveries).toBe(failed.length);
    // fixed in turn: nothing of this automation is failing for the tests after this one
    const last = data<Planned>(await boring.call('replay_webhook', { delivery: still.id })).executions[0]!;
    expect((await awaitExecution(w.core, w.accounts.boring, last.id, 10_000)).status).toBe('succeeded');
    expect(await page({ status: 'failed' })).toEqual([]);
  });

  it('refuses a delivery that was rejected, saying why, and replays nothing', async () => {
    const res = await fetch(ordersHook, { method: 'POST', body: '{"id": ', headers: { 'content-type': 'application/json' } });
    const { delivery_id } = (await res.json()) as { delivery_id: string };
    const r = await boring.call('replay_webhook', { delivery: delivery_id });
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(new RegExp(`^The delivery ${delivery_id} cannot be replayed \\(malformed_body\\)`));
    expect(await replays([delivery_id])).toEqual([]);
  });
});

describe('planned bulk replay', () => {
  it('plans the side effects, counts and hash; refuses a stale hash; applies a current one', async () => {
    failing = true;
    const a = await deliver(ordersHook, { id: 'o-2' }, w.accounts.boring);
    const b = await deliver(ordersHook, { id: 'o-3' }, w.accounts.boring);
    expect([a.run!.status, b.run!.status]).toEqual(['failed', 'failed']);
    const filter = { automation: 'Orders', status: 'failed' };
    const dry = await boring.call('replay_webhook', { filter, dry_run: true });
    const plan = data<Planned>(dry).plan;
    // o-1 was replayed and succeeded: no longer failed
    expect(plan).toMatchObject({ dry_run: true, revision: 'current', reuse_idempotency_keys: true, deliveries: 2, replayable: 2 });
    expect(plan.accounts.map((x) => [x.account.slug, x.deliveries])).toEqual([['boring-co', 2]]);
    const host = new URL(base).host;
    expect(plan.revisions.map((r) => [r.automation.name, r.revision, r.deliveries])).toEqual([['Orders', 1, 2]]);
    expect(plan.revisions[0]!.side_effects).toEqual([
      { step: 'notify', kind: 'http', method: 'POST', app: null, host, action: null, scope: null, done_before: 2, repeated: true },
      { step: 'count', kind: 'store', method: null, app: null, host: null, action: 'increment', scope: 'account', done_before: 2, repeated: true },
      { step: 'charge', kind: 'http', method: 'POST', app: null, host, action: null, scope: null, done_before: 0, repeated: false },
    ]);
    expect(plan.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(text(dry)).toBe('Plan: 2 deliveries of 2 would replay in 1 account (revision 1, idempotency keys reused), repeating 2 side effects the earlier runs had already done; apply it with plan_hash.');
    expect(await replays([a.id, b.id])).toEqual([]);
    // the same plan hashes the same
    expect(data<Planned>(await boring.call('replay_webhook', { filter, dry_run: true })).plan.hash).toBe(plan.hash);

    // a new failure arrives: the old hash no longer describes what would run
    const c = await deliver(ordersHook, { id: 'o-4' }, w.accounts.boring);
    const stale = await boring.call('replay_webhook', { filter, plan_hash: plan.hash });
    expect(stale.isError).toBe(true);
    expect(text(stale)).toBe('The plan changed since dry_run: 3 deliveries now instead of 2; nothing was replayed, run dry_run again.');
    expect(await replays([a.id, b.id, c.id])).toEqual([]);
    // a filter is never applied without a hash
    expect(text(await boring.call('replay_webhook', { filter }))).toMatch(/^A filter replays in two calls/);

    // the same deliveries by their error code, and by their failure group
    const [group] = await w.core.db.select().from(failureGroups).where(and(eq(failureGroups.accountId, w.accounts.boring.id), eq(failureGroups.stepId, 'charge')));
    const byGroup = data<Planned>(await boring.call('replay_webhook', { filter: { group: group!.fingerprint }, dry_run: true })).plan;
    const byError = data<Planned>(await boring.call('replay_webhook', { filter: { error: 'http_5xx', automation: 'Orders' }, dry_run: true })).plan;
    expect([byGroup.deliveries, byError.deliveries]).toEqual([3, 3]);

    failing = false;
    const again = data<Planned>(await boring.call('replay_webhook', { filter, dry_run: true })).plan;
    expect(again.deliveries).toBe(3);
    const applied = await boring.call('replay_webhook', { filter, plan_hash: again.hash });
    const out = data<Planned>(applied);
    expect(out.executions.map((e) => e.delivery_id).sort()).toEqual([a.id, b.id, c.id].sort());
    expect(out.executions.map((e) => e.idempotency_of).sort()).toEqual([a.run!.id, b.run!.id, c.run!.id].sort());
    expect(text(applied)).toBe('3 deliveries of 3 replay as new executions in 1 account (revision 1, idempotency keys reused), repeating 2 side effects the earlier runs had already done.');
    const done = await Promise.all(out.executions.map((e) => awaitExecution(w.core, w.accounts.boring, e.id, 10_000)));
    expect(done.map((r) => r.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    // nothing failed is left to replay
    expect(data<Planned>(await boring.call('replay_webhook', { filter, dry_run: true })).plan.deliveries).toBe(0);

    // the replay is audited with its plan
    const [entry] = await w.core.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.tool, 'replay_webhook'), eq(auditLog.outcome, 'ok'), sql`${auditLog.arguments}->'plan'->>'hash' = ${again.hash}`, sql`${auditLog.arguments}->'plan'->>'dry_run' = 'false'`));
    expect(entry).toMatchObject({ accountId: w.accounts.boring.id, arguments: { filter, plan_hash: again.hash, plan: { deliveries: 3, replayable: 3, accounts: [{ id: w.accounts.boring.id, deliveries: 3 }], revision: 'current' } } });
  });

  it('refuses an empty filter, and more deliveries than one call replays', async () => {
    const empty = await boring.call('replay_webhook', { filter: {}, dry_run: true });
    expect(empty.isError).toBe(true);
    expect(text(empty)).toMatch(/^An empty filter would replay every delivery/);
    expect(text(await boring.call('replay_webhook', { dry_run: true }))).toMatch(/^Give the delivery to replay, or a filter/);
    const all = (await w.core.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.accountId, w.accounts.boring.id))).length;
    w.core.replayMax = 2;
    try {
      const over = await boring.call('replay_webhook', { filter: { automation: 'Orders' }, dry_run: true });
      expect(over.isError).toBe(true);
      expect(text(over)).toBe(`${all} deliveries match this filter, more than the 2 one call replays: narrow it (automation, status, error, since, until, group).`);
    } finally {
      w.core.replayMax = undefined;
    }
  });

  it("runs the original run's revision or the current one", async () => {
    failing = false;
    const d = await deliver(ordersHook, { id: 'o-5' }, w.accounts.boring);
    expect(d.run!.revision).toBe(1);
    data(await boring.call('update_automation', { automation: 'Orders', steps: [{ id: 'v2', kind: 'http', method: 'POST', url: `${base}/v2` }] }));
    const original = data<Planned>(await boring.call('replay_webhook', { delivery: d.id, revision: 'original' }));
    expect(original.plan.revision).toBe('original');
    expect(original.executions[0]!.revision).toBe(1);
    const first = await awaitExecution(w.core, w.accounts.boring, original.executions[0]!.id, 10_000);
    expect(first).toMatchObject({ status: 'succeeded', revision: 1 });
    expect(Object.keys(first.state).sort()).toEqual(['charge', 'count', 'notify']);
    const current = data<Planned>(await boring.call('replay_webhook', { delivery: d.id }));
    expect(current.executions[0]!.revision).toBe(2);
    expect(current.plan.revisions[0]!.side_effects.map((s) => [s.step, s.done_before])).toEqual([['v2', 0]]);
    const second = await awaitExecution(w.core, w.accounts.boring, current.executions[0]!.id, 10_000);
    expect(second).toMatchObject({ status: 'succeeded', revision: 2 });
    expect(keysFor('/v2')).toEqual([`${d.run!.id}:v2`]);
  });
});

describe('routed deliveries', () => {
  it('replays a routed delivery in the linked account it was routed to, and routes an unrouted one again', async () => {
    const d = await deliver(bookingsHook, { location_id: 'studio-01' }, w.accounts.studio1);
    expect(d.status).toBe('routed');
    const out = data<Planned>(await acme.call('replay_webhook', { account: 'acme-fitness', delivery: d.id }));
    expect(out.plan.accounts.map((a) => a.account.slug)).toEqual(['acme-studio-01']);
    const run = await awaitExecution(w.core, w.accounts.studio1, out.executions[0]!.id, 10_000);
    expect(run).toMatchObject({ status: 'succeeded', accountId: w.accounts.studio1.id, automationAccountId: w.accounts.acme.id, deliveryId: d.id, idempotencyOf: d.run!.id });
    expect(keysFor('/bookings/studio-01')).toEqual([`${d.run!.id}:book`, `${d.run!.id}:book`]);

    // a member of the parent who may not act in the studio: not replayable there, and said so per delivery
    const member = await connect(w.core, w.tokens.acmeMember);
    const denied = data<Planned>(await member.call('replay_webhook', { account: 'acme-fitness', delivery: d.id, dry_run: true }));
    expect(denied.plan).toMatchObject({ replayable: 0, not_replayable_by_code: { routed_account_denied: 1 } });
    expect(text(await member.call('replay_webhook', { account: 'acme-fitness', delivery: d.id }))).toMatch(/cannot be replayed \(routed_account_denied\)/);
    await member.close();

    // no studio had the key; once one has it, the replay goes there
    const lost = await deliver(bookingsHook, { location_id: 'studio-09' }, null);
    expect(lost.status).toBe('unrouted');
    const nowhere = await acme.call('replay_webhook', { account: 'acme-fitness', delivery: lost.id });
    expect(text(nowhere)).toBe(`The delivery ${lost.id} cannot be replayed (unrouted): no linked account has its routing key now.`);
    const admin = await connect(w.core, w.tokens.admin);
    data(await admin.call('create_account', { name: 'Acme Studio 09', slug: 'acme-studio-09', parent: 'acme-fitness', routing_key: 'studio-09' }));
    await admin.close();
    const found = data<Planned>(await acme.call('replay_webhook', { account: 'acme-fitness', filter: { status: 'unrouted' }, dry_run: true }));
    expect(found.plan.accounts.map((a) => [a.account.slug, a.deliveries])).toEqual([['acme-studio-09', 1]]);
    const applied = data<Planned>(await acme.call('replay_webhook', { account: 'acme-fitness', filter: { status: 'unrouted' }, plan_hash: found.plan.hash }));
    const [studio9] = await w.core.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, lost.id));
    expect(studio9!.status).toBe('unrouted');
    const e = applied.executions[0]!;
    expect(e.idempotency_of).toBeNull(); // it never ran: no keys to reuse
    const { getAccountById } = await import('../src/core/accounts.js');
    const nine = (await getAccountById(w.core, e.account_id))!;
    expect(nine.slug).toBe('acme-studio-09');
    expect(await awaitExecution(w.core, nine, e.id, 10_000)).toMatchObject({ status: 'succeeded', automationAccountId: w.accounts.acme.id });
    expect(keysFor('/bookings/studio-09')).toEqual([`${e.id}:book`]);
  });
});

describe('isolation', () => {
  it("does not let Boring's admin replay Acme's deliveries, by id or by filter, and returns nothing of them", async () => {
    const d = await deliver(bookingsHook, { location_id: 'studio-02' }, w.accounts.studio2);
    const byAccount = await boring.call('replay_webhook', { account: 'acme-fitness', delivery: d.id });
    expect(byAccount.isError).toBe(true);
    expect(byAccount.structuredContent).toBeUndefined();
    expect(text(byAccount)).toMatch(/^Access denied/);
    expect(text(byAccount)).not.toContain(d.id);
    const byFilter = await boring.call('replay_webhook', { account: 'acme-fitness', filter: { status: 'succeeded' }, dry_run: true });
    expect(byFilter.isError).toBe(true);
    expect(byFilter.structuredContent).toBeUndefined();
    // in its own account the id is simply not there
    const mine = await boring.call('replay_webhook', { delivery: d.id });
    expect(text(mine)).toBe(`No delivery ${d.id} in this account: debug_webhook lists its deliveries.`);
    expect(await replays([d.id])).toEqual([]);
    // the denial is audited in the caller's own account, naming the target for tenant admins only
    const denied = await w.core.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.tool, 'replay_webhook'), eq(auditLog.outcome, 'denied'), eq(auditLog.actorUserId, w.userIds.boringAdmin)));
    expect(denied.map((e) => [e.accountId, e.targetAccountId])).toEqual([
      [w.accounts.boring.id, w.accounts.acme.id],
      [w.accounts.boring.id, w.accounts.acme.id],
    ]);
    // a boring viewer may not replay at all
    const viewer = await connect(w.core, w.tokens.boringViewer);
    expect(text(await viewer.call('replay_webhook', { filter: { status: 'failed' }, dry_run: true }))).toMatch(/needs the member role/);
    await viewer.close();
  });
});

describe('debug_webhook and replay_webhook agree on a delivery', () => {
  type Item = { id: string; status: string; replays: number; execution: { id: string; status: string; account: { slug: string } } | null; execution_visible: boolean };
  const listed = async (s: Session, args: Record<string, unknown>) => data<{ deliveries: Item[]; next_cursor: string | null }>(await s.call('debug_webhook', { limit: 100, ...args }));
  const planned = async (s: Session, args: Record<string, unknown>) => data<Planned>(await s.call('replay_webhook', { ...args, dry_run: true })).plan;

  it('a duplicate that was replayed takes its replay run as status, in both tools', async () => {
    data(await boring.call('create_automation', { name: 'Dup', retries: 0, trigger: { dedupe: { key: 'trigger.body.id' } }, steps: [{ id: 'charge', kind: 'http', method: 'POST', url: `${base}/charge` }] }));
    const hook = data<{ webhook: { url: string } }>(await boring.call('get_automation', { automation: 'Dup' })).webhook.url;
    failing = false;
    await deliver(hook, { id: 'x1' }, w.accounts.boring);
    const dup = await deliver(hook, { id: 'x1' }, null);
    expect(dup.status).toBe('duplicate');
    expect((await listed(boring, { automation: 'Dup', status: 'duplicate' })).deliveries.map((i) => i.id)).toEqual([dup.id]);
    expect((await planned(boring, { filter: { automation: 'Dup', status: 'duplicate' } })).deliveries).toBe(1);
    // replayed while the app fails: failed in both, no longer a duplicate in either
    failing = true;
    const e = data<Planned>(await boring.call('replay_webhook', { delivery: dup.id })).executions[0]!;
    expect((await awaitExecution(w.core, w.accounts.boring, e.id, 10_000)).status).toBe('failed');
    expect((await listed(boring, { automation: 'Dup', status: 'failed' })).deliveries).toMatchObject([{ id: dup.id, status: 'failed', replays: 1, execution: { id: e.id } }]);
    expect((await listed(boring, { automation: 'Dup', status: 'duplicate' })).deliveries).toEqual([]);
    expect((await planned(boring, { filter: { automation: 'Dup', status: 'failed' } })).deliveries).toBe(1);
    expect((await planned(boring, { filter: { automation: 'Dup', status: 'duplicate' } })).deliveries).toBe(0);
    // fixed: succeeded in both
    failing = false;
    const ok = data<Planned>(await boring.call('replay_webhook', { delivery: dup.id })).executions[0]!;
    expect((await awaitExecution(w.core, w.accounts.boring, ok.id, 10_000)).status).toBe('succeeded');
    expect((await listed(boring, { automation: 'Dup', status: 'succeeded' })).deliveries.map((i) => i.id)).toContain(dup.id);
    expect((await planned(boring, { filter: { automation: 'Dup', status: 'succeeded' } })).deliveries).toBe(2);
    expect((await listed(boring, { automation: 'Dup', status: 'failed' })).deliveries).toEqual([]);
    // every status, both tools: the same deliveries
    const all = (await listed(boring, { automation: 'Dup' })).deliveries;
    for (const status of ['accepted', 'routed', 'running', 'succeeded', 'failed', 'filtered', 'cancelled', 'rejected', 'unrouted', 'duplicate', 'recorded']) {
      const ids = (await listed(boring, { automation: 'Dup', status })).deliveries.map((i) => i.id);
      expect(ids, status).toEqual(all.filter((i) => i.status === status).map((i) => i.id));
      expect((await planned(boring, { filter: { automation: 'Dup', status } })).deliveries, status).toBe(ids.length);
    }
  });

  it("'since' is the delivery's arrival in both walks and in replay_webhook", async () => {
    // Dup calls /charge (Orders no longer does, since its revision 2)
    const dupHook = data<{ webhook: { url: string } }>(await boring.call('get_automation', { automation: 'Dup' })).webhook.url;
    failing = true;
    const d = await deliver(dupHook, { id: 'x-since' }, w.accounts.boring);
    expect(d.run!.status).toBe('failed');
    await new Promise((r) => setTimeout(r, 20));
    const since = new Date().toISOString();
    const again = data<Planned>(await boring.call('replay_webhook', { delivery: d.id })).executions[0]!;
    expect((await awaitExecution(w.core, w.accounts.boring, again.id, 10_000)).status).toBe('failed');
    // received before `since`, failed again after it: none of the three counts it
    expect((await listed(boring, { automation: 'Dup', status: 'failed', since })).deliveries).toEqual([]);
    expect((await listed(boring, { automation: 'Dup', since })).deliveries).toEqual([]);
    expect((await planned(boring, { filter: { automation: 'Dup', status: 'failed', since } })).deliveries).toBe(0);
    expect((await listed(boring, { automation: 'Dup', status: 'failed' })).deliveries.map((i) => i.id)).toContain(d.id);
    failing = false;
    const last = data<Planned>(await boring.call('replay_webhook', { delivery: d.id })).executions[0]!;
    expect((await awaitExecution(w.core, w.accounts.boring, last.id, 10_000)).status).toBe('succeeded');
  });

  it('refuses a cursor of the other walk, or with a time PostgreSQL would not take, in one sentence', async () => {
    for (let i = 0; i < 2; i++) await deliver(ordersHook, { id: `o-page-${i}` }, w.accounts.boring);
    const page = await listed(boring, { automation: 'Orders', limit: 1 });
    expect(page.next_cursor).not.toBeNull();
    const wrong = await boring.call('debug_webhook', { automation: 'Orders', status: 'failed', limit: 1, cursor: page.next_cursor });
    expect(wrong.isError).toBe(true);
    expect(text(wrong)).toBe('The cursor is not valid: pass the next_cursor of a previous page of the same query, or omit it.');
    for (const at of ['2026-02-30T00:00:00Z', '0000-01-01T00:00:00Z', '2026-13-01T00:00:00Z']) {
      const cursor = Buffer.from(JSON.stringify(['d', at, '00000000-0000-4000-8000-000000000000'])).toString('base64url');
      const r = await boring.call('debug_webhook', { automation: 'Orders', cursor });
      expect(r.isError, at).toBe(true);
      expect(text(r)).toMatch(/^The cursor is not valid/);
    }
  });

  it('does not replay again a delivery whose latest run is a replay the caller may not see, and shows none of it', async () => {
    // a delivery of acme's own automation fails in acme; it gains routing; the parent's admin replays it into studio-01
    data(await acme.call('create_automation', { account: 'acme-fitness', name: 'Plain', retries: 0, steps: [{ id: 'charge', kind: 'http', method: 'POST', url: `${base}/charge` }] }));
    const hook = data<{ webhook: { url: string } }>(await acme.call('get_automation', { account: 'acme-fitness', automation: 'Plain' })).webhook.url;
    failing = true;
    const d = await deliver(hook, { location_id: 'studio-01' }, w.accounts.acme);
    expect(d.run!.status).toBe('failed');
    failing = false;
    data(await acme.call('update_automation', { account: 'acme-fitness', automation: 'Plain', routing: { key: 'body.location_id' } }));
    const e = data<Planned>(await acme.call('replay_webhook', { account: 'acme-fitness', delivery: d.id })).executions[0]!;
    expect(e.account_id).toBe(w.accounts.studio1.id);
    expect((await awaitExecution(w.core, w.accounts.studio1, e.id, 10_000)).status).toBe('succeeded');
    // the admin sees the replay; a member of the parent alone does not, and may not replay it again
    expect((await listed(acme, { account: 'acme-fitness', automation: 'Plain' })).deliveries[0]).toMatchObject({ status: 'succeeded', replays: 1, execution: { id: e.id, account: { slug: 'acme-studio-01' } } });
    const member = await connect(w.core, w.tokens.acmeMember);
    try {
      const seen = (await listed(member, { account: 'acme-fitness', automation: 'Plain' })).deliveries[0]!;
      expect(seen).toMatchObject({ id: d.id, status: 'accepted', replays: 0, execution: null, execution_visible: false });
      expect((await listed(member, { account: 'acme-fitness', automation: 'Plain', status: 'accepted' })).deliveries.map((i) => i.id)).toEqual([d.id]);
      expect((await listed(member, { account: 'acme-fitness', automation: 'Plain', status: 'failed' })).deliveries).toEqual([]);
      const plan = await planned(member, { account: 'acme-fitness', delivery: d.id });
      expect(plan).toMatchObject({ replayable: 0, not_replayable_by_code: { replayed_elsewhere: 1 } });
      expect((await planned(member, { account: 'acme-fitness', filter: { automation: 'Plain', status: 'failed' } })).deliveries).toBe(0);
    } finally {
      await member.close();
    }
  });
});
