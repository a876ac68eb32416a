import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { and, eq, sql } from 'drizzle-orm';
import { buildWorld, connect, data, type Session, type World } from './helpers/world.js';
import { startHttp, type HttpHandle } from '../src/http/server.js';
import { Worker } from '../src/engine/worker.js';
import { deliveryStats, executions, executionStats, failureGroups } from '../src/db/schema/index.js';
import { prune } from '../src/engine/retention.js';

/**
 * The aggregates operations read, kept by triggers in the transaction of the write they count
 * (drizzle/0018): finished runs per hour by status, failures grouped by fingerprint (opened,
 * counted, resolved by the next success, reopened), throttled attempts, deliveries per hour by
 * status; and retention keeps them longer than the runs but not for ever.
 */

let w: World;
let http: HttpHandle;
let app: Server;
let appUrl: string;
let answer = 503;
let boring: Session;
let worker: Worker;

const hookOf = async (name: string) => data<{ webhook: { path: string } }>(await boring.call('get_automation', { automation: name })).webhook.path;
const send = (path: string, body: unknown, type = 'application/json') =>
  fetch(new URL(path, http.url), { method: 'POST', headers: { 'content-type': type }, body: typeof body === 'string' ? body : JSON.stringify(body) });

async function settled(automationId: string, n: number): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const [row] = await w.core.db
      .select({ n: sql<number>`count(*)::int` })
      .from(executions)
      .where(and(eq(executions.automationId, automationId), sql`${executions.status} in ('succeeded', 'failed', 'filtered', 'cancelled')`));
    if ((row?.n ?? 0) >= n) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`runs of ${automationId} did not finish`);
}

beforeAll(async () => {
  w = await buildWorld();
  w.core.outbound = { allow: ['127.0.0.1'] };
  app = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(answer, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: answer < 400 }));
    });
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  appUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
  http = await startHttp({ core: w.core, database: w.database, port: 0, host: '127.0.0.1' });
  w.core.publicBaseUrl = new URL(http.url).origin;
  boring = await connect(w.core, w.tokens.boringAdmin);
  worker = new Worker(w.core, { concurrency: 4, leaseMs: 5_000, pollMs: 50, retryBaseMs: 5, listen: (c, fn) => w.database.listen(c, fn) });
  await worker.start();
});
afterAll(async () => {
  await worker.stop();
  await boring.close();
  await http.close();
  await new Promise((r) => app.close(r));
  await w.close();
});

describe('aggregates kept by triggers', () => {
  let automationId: string;

  it('counts finished runs per hour and groups failures by fingerprint until the next success resolves them', async () => {
    const made = data<{ automation: { id: string } }>(
      await boring.call('create_automation', {
        name: 'Ledger sync',
        retries: 0,
        steps: [
          { id: 'only_paid', kind: 'filter', condition: 'trigger.body.paid' },
          { id: 'post', kind: 'http', method: 'POST', url: `${appUrl}/entries`, body: { id: '{{ trigger.body.id }}' } },
        ],
      }),
    );
    automationId = made.automation.id;
    const path = await hookOf('Ledger sync');
    answer = 503;
    for (let i = 0; i < 3; i++) expect((await send(path, { id: i, paid: true })).status).toBe(202);
    expect((await send(path, { id: 9, paid: false })).status).toBe(202);
    await settled(automationId, 4);

    const [stats] = await w.core.db.select().from(executionStats).where(eq(executionStats.automationId, automationId));
    expect(stats).toMatchObject({ accountId: w.accounts.boring.id, succeeded: 0, failed: 3, filtered: 1, cancelled: 0 });
    expect(stats!.lastFailureAt).not.toBeNull();
    expect(stats!.lastSuccessAt).toBeNull();
    expect(stats!.hour.getUTCMinutes()).toBe(0);

    const [run] = await w.core.db.select().from(executions).where(and(eq(executions.automationId, automationId), eq(executions.status, 'failed'))).limit(1);
    expect(run).toMatchObject({ errorCode: 'http_5xx', errorStatus: 503, errorTarget: `host:${new URL(appUrl).host}`, failedStep: 'post' });

    const groups = await w.core.db.select().from(failureGroups).where(eq(failureGroups.automationId, automationId));
    expect(groups).toHaveLength(1);
    expect(groups[0]).toMatchObject({ status: 'open', count: 3, total: 3, errorCode: 'http_5xx', upstreamStatus: 503, stepId: 'post', target: `host:${new URL(appUrl).host}` });

    // the app recovers: the next success resolves the group
    answer = 200;
    await send(path, { id: 10, paid: true });
    await settled(automationId, 5);
    const [resolved] = await w.core.db.select().from(failureGroups).where(eq(failureGroups.automationId, automationId));
    expect(resolved).toMatchObject({ status: 'resolved', count: 3, total: 3 });
    expect(resolved!.resolvedAt).not.toBeNull();
    const [after] = await w.core.db.select().from(executionStats).where(eq(executionStats.automationId, automationId));
    expect(after).toMatchObject({ succeeded: 1, failed: 3, filtered: 1 });

    // failing again opens it again: the episode counts from one, the total goes on
    answer = 503;
    await send(path, { id: 11, paid: true });
    await settled(automationId, 6);
    const [reopened] = await w.core.db.select().from(failureGroups).where(eq(failureGroups.automationId, automationId));
    expect(reopened).toMatchObject({ status: 'open', count: 1, total: 4, resolvedAt: null });
    expect(reopened!.firstSeen.getTime()).toBeGreaterThan(resolved!.resolvedAt!.getTime() - 1);
  });

  it('counts deliveries per hour by status, including those that did not run', async () => {
    const path = await hookOf('Ledger sync');
    expect((await send(path, '{not json')).status).toBe(400);
    const [row] = await w.core.db.select().from(deliveryStats).where(eq(deliveryStats.automationId, automationId));
    expect(row).toMatchObject({ received: 7, accepted: 6, rejected: 1, routed: 0, unrouted: 0, duplicate: 0, recorded: 0 });
  });

  it('counts step attempts held back by a rate limit as throttling', async () => {
    answer = 200;
    const conn = data<{ connection: { id: string } }>(
      await boring.call('add_connection', { app: 'http', credentials: { auth_kind: 'bearer', base_url: appUrl, token: 'test-token-aggregates' } }),
    ).connection;
    await boring.call('set_connection_rate_limit', { connection: conn.id, per_minute: 1 });
    const made = data<{ automation: { id: string } }>(
      await boring.call('create_automation', { name: 'Throttled', retries: 0, steps: [{ id: 'call', kind: 'http', method: 'GET', url: `${appUrl}/x`, connection: conn.id }] }),
    );
    const path = await hookOf('Throttled');
    await send(path, { n: 1 });
    await send(path, { n: 2 });
    for (let i = 0; i < 200; i++) {
      const [s] = await w.core.db.select().from(executionStats).where(eq(executionStats.automationId, made.automation.id));
      if ((s?.throttled ?? 0) > 0) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    const [s] = await w.core.db.select().from(executionStats).where(eq(executionStats.automationId, made.automation.id));
    expect(s!.throttled).toBeGreaterThan(0);
  });

  it('keeps the aggregates row-level secured like every account table', async () => {
    const seen = await w.core.db.transaction(async (tx) => {
      await tx.execute(sql`select set_config('app.account_ids', ${`{${w.accounts.acme.id}}`}, true), set_config('role', 'switchboard_app', true)`);
      const a = await tx.select().from(executionStats);
      const b = await tx.select().from(failureGroups);
      const c = await tx.select().from(deliveryStats);
      return a.length + b.length + c.length;
    });
    expect(seen).toBe(0);
  });

  it('prunes hourly aggregates past their retention and resolved failure groups past the runs', async () => {
    const old = new Date(Date.now() - 60 * 86_400_000);
    old.setUTCMinutes(0, 0, 0);
    const base = { tenantId: w.core.tenantId, accountId: w.accounts.boring.id, automationId, hour: old };
    await w.core.db.insert(executionStats).values({ ...base, succeeded: 5 });
    await w.core.db.insert(deliveryStats).values({ ...base, received: 5 });
    await w.core.db.insert(failureGroups).values({
      fingerprint: 'old', accountId: w.accounts.boring.id, automationId, tenantId: w.core.tenantId, target: 'x', stepId: 'post', errorCode: 'http_5xx', status: 'resolved', count: 1, total: 1, firstSeen: old, lastSeen: old,
    });
    const pruned = await prune(w.core, 30);
    expect(pruned.aggregates).toBe(3);
    const left = await w.core.db.select().from(executionStats).where(eq(executionStats.automationId, automationId));
    expect(left.every((r) => r.hour.getTime() > old.getTime())).toBe(true);
    expect(left.length).toBeGreaterThan(0);
    const groups = await w.core.db.select().from(failureGroups).where(eq(failureGroups.automationId, automationId));
    expect(groups.map((g) => g.fingerprint)).not.toContain('old');
    expect(groups).toHaveLength(1);
  });
});
