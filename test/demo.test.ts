import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { and, count, eq, inArray } from 'drizzle-orm';
import { connect, data, testKeyring, type Session } from './helpers/world.js';
import { testDatabase, type TestDatabase } from './helpers/db.js';
import { initialize } from '../src/core/tenants.js';
import type { Core } from '../src/core/core.js';
import { DEMO_AUTOMATIONS, REVOKED_STUDIOS, STUDIO_COUNT, demoAppsOf, seedDemo } from '../src/core/demo.js';
import { demoHistoryMissing, httpDeliverer, coreDeliverer, playDemoHistory, NEW_PAYMENTS, OLD_PAYMENTS, SANDBOX_PER_PHASE, type DemoHistory } from '../src/core/demo-history.js';
import { webhookToken } from '../src/core/webhooks.js';
import { startDemo, type DemoMode } from '../src/app.js';
import { addressRefusal } from '../src/engine/outbound.js';
import { startHttp, type HttpHandle } from '../src/http/server.js';
import { Worker } from '../src/engine/worker.js';
import { accounts, automations, executions, failureGroups, webhookDeliveries } from '../src/db/schema/index.js';

/**
 * The demo world as `npm start` makes it: the demo seed, the demo apps on loopback, the demo's
 * deliveries sent to the automations' real /hooks/ URLs and run by a worker against them. What
 * the tests read is what the platform recorded (tools and account tables), never rows inserted
 * by hand. The outbound guard calls the demo apps only in demo mode.
 */

let database: TestDatabase;
let core: Core;
let admin: Session;
let http: HttpHandle;
let worker: Worker | null = null;
let demo: DemoMode | null = null;
let history: DemoHistory | null;

const newWorker = async (c: Core) => {
  const w = new Worker(c, { concurrency: 4, leaseMs: 5_000, pollMs: 50, listen: (ch, fn) => database.listen(ch, fn) });
  await w.start();
  return w;
};
type Exec = { id: string; status: string; source: string; failed_step: string | null; error: { code: string; message: string } | null };
const executionsOf = async (account: string, status?: string): Promise<Exec[]> => {
  const out: Exec[] = [];
  let cursor: string | undefined;
  do {
    const page = data<{ executions: Exec[]; next_cursor: string | null }>(await admin.call('list_executions', { account, limit: 100, ...(status ? { status } : {}), ...(cursor ? { cursor } : {}) }));
    out.push(...page.executions);
    cursor = page.next_cursor ?? undefined;
  } while (cursor);
  return out;
};
const accountId = async (slug: string) => (await core.db.select({ id: accounts.id }).from(accounts).where(eq(accounts.slug, slug)))[0]!.id;

beforeAll(async () => {
  database = await testDatabase();
  const init = await initialize(database.db, { adminEmail: 'admin@switchboard.test', switchMinutes: 30 });
  // outbound as configured by default: no loopback allowed (SWITCHBOARD_OUTBOUND_ALLOW unset)
  core = { db: database.db, tenantId: init.tenant.id, switchMinutes: 30, keys: testKeyring(), secretArgs: true, outbound: { allow: [] } };
  await seedDemo(core);
  http = await startHttp({ core, database, port: 0, host: '127.0.0.1' });
  core.publicBaseUrl = new URL(http.url).origin;
  admin = await connect(core, init.token);
});
afterAll(async () => {
  await demo?.stopHistory();
  await worker?.stop();
  await demo?.close();
  await admin.close();
  await http.close();
  await database.close();
});

describe('the demo world', () => {
  it('the outbound guard refuses the demo apps while demo mode is off', async () => {
    expect(core.outbound!.allow).not.toContain('127.0.0.1');
    expect(core.outbound!.allowEndpoints ?? []).toEqual([]);
    worker = await newWorker(core);
    const r = data<{ execution: Exec }>(
      await admin.call('run_automation', { account: 'sandbox', automation: DEMO_AUTOMATIONS.sandbox.name, input: { body: { order_id: 'ord_guard', total_cents: 100 } }, wait_seconds: 30 }),
    );
    expect(r.execution.status).toBe('failed');
    expect(r.execution.error?.code).toBe('blocked_address');
    await worker.stop();
    worker = null;
  });

  it('demo mode starts the demo apps on loopback and allows exactly their address; the history plays through the real ingress', async () => {
    demo = await startDemo({ database, core });
    expect(demo).not.toBeNull();
    expect(demo!.origin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    // the demo apps' port only: the rest of loopback stays refused
    expect(core.outbound!.allow).toEqual([]);
    expect(core.outbound!.allowEndpoints).toEqual([new URL(demo!.origin).host]);
    expect(addressRefusal('127.0.0.1', core.outbound!, undefined, Number(new URL(demo!.origin).port))).toBeNull();
    expect(addressRefusal('127.0.0.1', core.outbound!, undefined, Number(new URL(demo!.origin).port) + 1)).not.toBeNull();
    const bases = await demoAppsOf(core);
    for (const base of bases!.values()) expect(base.startsWith(demo!.origin)).toBe(true);
    worker = await newWorker(core);
    expect(await demoHistoryMissing(core)).toBe(true);
    history = await playDemoHistory(core, httpDeliverer(new URL(http.url).origin), { drainMs: 120_000 });
    expect(history).not.toBeNull();
    expect(await demoHistoryMissing(core)).toBe(false);
    // nothing left to run: every execution reached its end
    expect(history!.executions.queued ?? 0).toBe(0);
    expect(history!.executions.running ?? 0).toBe(0);
    expect(history!.deliveries.unrouted).toBeGreaterThan(0);
    expect(history!.deliveries.duplicate).toBeGreaterThanOrEqual(2); // Stripe's two retries (and any a lost answer caused)
  }, 180_000);

  it('demo mode lets no http step reach another port on loopback', async () => {
    const other = Number(new URL(demo!.origin).port) === 5432 ? 6379 : 5432;
    data(await admin.call('create_automation', { account: 'sandbox', name: 'Loopback probe', retries: 0, steps: [{ id: 'probe', kind: 'http', method: 'GET', url: `http://127.0.0.1:${other}/` }] }));
    const r = data<{ execution: Exec }>(await admin.call('run_automation', { account: 'sandbox', automation: 'Loopback probe', input: { body: {} }, wait_seconds: 30 }));
    expect(r.execution.status).toBe('failed');
    expect(r.execution.error?.code).toBe('blocked_address');
    const plan = data<{ confirm_token: string }>(await admin.call('delete_automation', { account: 'sandbox', automation: 'Loopback probe' }));
    expect(data<{ applied: boolean }>(await admin.call('delete_automation', { account: 'sandbox', automation: 'Loopback probe', confirm: plan.confirm_token })).applied).toBe(true);
  });

  it('studios 04 and 11 fail on their revoked Mindbody key: 401, then connection_expired', async () => {
    for (const n of REVOKED_STUDIOS) {
      const failed = await executionsOf(`acme-studio-${n}`, 'failed');
      expect(failed.length).toBeGreaterThan(3);
      expect(new Set(failed.map((e) => e.error?.code))).toEqual(new Set(['http_401', 'connection_expired']));
      expect(failed.every((e) => e.failed_step === 'client')).toBe(true);
      expect(await executionsOf(`acme-studio-${n}`, 'succeeded')).toHaveLength(0);
      const first401 = failed.find((e) => e.error?.code === 'http_401')!;
      const run = data<{ steps: { id: string; output: { status?: number; body?: string } | null }[] }>(await admin.call('get_execution', { account: `acme-studio-${n}`, execution: first401.id }));
      const step = run.steps.find((s) => s.id === 'client')!;
      expect(step.output?.status).toBe(401);
      expect(step.output?.body).toContain('revoked');
      // the studio's own connection expired, but the chain's automation using it is not paused (the other studios run on)
      const expiring = failed.filter((e) => /now marked expired/.test(e.error?.message ?? ''));
      expect(expiring).toHaveLength(1);
      expect(expiring[0]!.error!.message).toMatch(/marked expired and calls through it fail until it is reconnected \(reconnect_connection\)\.$/);
    }
    // their own connection expired; the chain's shared one did not (the other studios kept working)
    const conns = data<{ own: { app: string; status: string }[]; shared_by_parent: { app: string; status: string }[] }>(
      await admin.call('list_connections', { account: 'acme-studio-04', include_shared: true }),
    );
    expect(JSON.stringify(conns)).toContain('expired');
  });

  it('every other studio ran its bookings against the shared Mindbody demo connection', async () => {
    const studios = await core.db.select({ id: accounts.id, slug: accounts.slug }).from(accounts).where(eq(accounts.parentAccountId, await accountId('acme-fitness')));
    expect(studios).toHaveLength(STUDIO_COUNT);
    const healthy = studios.filter((s) => !REVOKED_STUDIOS.some((n) => s.slug === `acme-studio-${n}`));
    const byStatus = await core.db
      .select({ account: executions.accountId, status: executions.status, n: count() })
      .from(executions)
      .where(inArray(executions.accountId, healthy.map((s) => s.id)))
      .groupBy(executions.accountId, executions.status);
    expect(byStatus.filter((r) => r.status === 'failed')).toEqual([]);
    for (const s of healthy) expect(byStatus.find((r) => r.account === s.id && r.status === 'succeeded')?.n ?? 0).toBeGreaterThan(0);
    // cancellations are filtered, not failed
    expect(byStatus.some((r) => r.status === 'filtered')).toBe(true);
    const one = (await executionsOf('acme-studio-01', 'succeeded'))[0]!;
    const run = data<{ steps: { id: string; output: { status?: number; body?: string } | null }[] }>(await admin.call('get_execution', { account: 'acme-studio-01', execution: one.id }));
    const client = run.steps.find((s) => s.id === 'client')!.output!;
    expect(client.status).toBe(200);
    expect(JSON.parse(client.body!)).toMatchObject({ Clients: [expect.objectContaining({ Id: expect.any(String) })] });
  });

  it("Boring Co's payments fail on the changed payload: the ledger answers 422 'amount is required'", async () => {
    const failed = await executionsOf('boring-co', 'failed');
    expect(failed).toHaveLength(NEW_PAYMENTS);
    expect(failed.every((e) => e.error?.code === 'http_4xx' && e.failed_step === 'book')).toBe(true);
    const run = data<{ steps: { id: string; input: { body?: unknown } | null; output: { status?: number; body?: string } | null }[] }>(
      await admin.call('get_execution', { account: 'boring-co', execution: failed[0]!.id }),
    );
    const book = run.steps.find((s) => s.id === 'book')!;
    expect(book.output?.status).toBe(422);
    expect(JSON.parse(book.output!.body!)).toEqual({ error: 'amount is required', field: 'amount' });
    expect(book.input?.body).toMatchObject({ amount: null });
    // before the sender changed its payload, the same automation booked them
    expect(await executionsOf('boring-co', 'succeeded')).toHaveLength(OLD_PAYMENTS);
    const [group] = await core.db.select().from(failureGroups).where(eq(failureGroups.accountId, await accountId('boring-co')));
    expect(group).toMatchObject({ status: 'open', errorCode: 'http_4xx', upstreamStatus: 422, stepId: 'book', count: NEW_PAYMENTS });
  });

  it("the sandbox's webhook runs succeed, and a booking for studio-99 is recorded as unrouted", async () => {
    const runs = (await executionsOf('sandbox')).filter((e) => e.source === 'webhook');
    expect(runs.length).toBeGreaterThan(0);
    expect(runs.every((e) => e.status === 'succeeded')).toBe(true);
    const unrouted = await core.db
      .select({ reason: webhookDeliveries.reason, value: webhookDeliveries.routingValue })
      .from(webhookDeliveries)
      .where(and(eq(webhookDeliveries.accountId, await accountId('acme-fitness')), eq(webhookDeliveries.status, 'unrouted')));
    expect(unrouted.length).toBeGreaterThan(0);
    expect(unrouted.every((d) => d.value === 'studio-99' && d.reason === 'no linked account has routing key studio-99')).toBe(true);
  });

  it('a restart whose demo port is taken moves the demo apps and automations to a new port, and they keep working', async () => {
    const before = demo!.origin;
    // a restart: the worker and the demo apps stop (a new process starts both afresh)
    await demo!.stopHistory();
    await worker!.stop();
    await demo!.close();
    // the same port again when it is free: nothing changes
    demo = await startDemo({ database, core });
    expect(demo!.origin).toBe(before);
    await demo!.close();
    const squatter: Server = createServer();
    await new Promise<void>((r) => squatter.listen(Number(new URL(before).port), '127.0.0.1', () => r()));
    try {
      demo = await startDemo({ database, core });
      expect(demo!.origin).not.toBe(before);
      const [sandboxRow] = await core.db.select().from(automations).where(and(eq(automations.accountId, await accountId('sandbox')), eq(automations.name, DEMO_AUTOMATIONS.sandbox.name)));
      expect(sandboxRow!.revision).toBe(2);
      expect(core.outbound!.allowEndpoints).toEqual([new URL(demo!.origin).host]); // the new port replaces the old one
      worker = await newWorker(core);
      const status = await coreDeliverer(core)(webhookToken(core, sandboxRow!), { order_id: 'ord_after_move', total_cents: 1200 }, {});
      expect(status).toBe('accepted');
      const sandboxId = await accountId('sandbox');
      const webhookRuns = () =>
        core.db
          .select({ status: executions.status, n: count() })
          .from(executions)
          .where(and(eq(executions.accountId, sandboxId), eq(executions.source, 'webhook')))
          .groupBy(executions.status);
      await expect.poll(async () => (await webhookRuns()).filter((r) => r.status === 'queued' || r.status === 'running'), { timeout: 30_000 }).toEqual([]);
      expect(await webhookRuns()).toEqual([{ status: 'succeeded', n: 2 * SANDBOX_PER_PHASE + 1 }]);
    } finally {
      await new Promise((r) => squatter.close(r));
    }
  });
});
