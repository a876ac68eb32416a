import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { eq, inArray } from 'drizzle-orm';
import { buildWorld, connect, data, type Session, type World } from './helpers/world.js';
import { startHttp, type HttpHandle } from '../src/http/server.js';
import { Worker } from '../src/engine/worker.js';
import { createAccount } from '../src/core/accounts.js';
import { connections, executions, executionSteps } from '../src/db/schema/index.js';

/**
 * One budget for a chain: 30 studios run a parent's routed automation through the connection the
 * parent shares, whose rate limit is 10 a minute. Exactly the budget's worth of calls reach the
 * app; the other studios' runs are rescheduled (rate_limited), not failed and not holding a
 * worker.
 */

let w: World;
let http: HttpHandle;
let admin: Session;
let worker: Worker;
let app: Server;
let calls = 0;

beforeAll(async () => {
  app = createServer((req, res) => {
    calls += 1;
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  const base = await new Promise<string>((r) => app.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(app.address() as AddressInfo).port}`)));
  w = await buildWorld();
  w.core.outbound = { allow: ['127.0.0.1'] };
  http = await startHttp({ core: w.core, database: w.database, port: 0, host: '127.0.0.1' });
  w.core.publicBaseUrl = new URL(http.url).origin;
  const chain = await createAccount(w.core, { name: 'Chain', slug: 'chain' });
  for (let i = 1; i <= 30; i++) await createAccount(w.core, { name: `Chain Studio ${i}`, slug: `chain-${i}`, parent: chain, routingKey: `loc-${i}` });
  admin = await connect(w.core, w.tokens.admin);
  data(await admin.call('add_connection', { account: 'chain', app: 'http', name: 'Chain API', credentials: { auth_kind: 'bearer', base_url: base, token: 'tok_chain_budget_0123456789' } }));
  data(await admin.call('share_connection', { account: 'chain', connection: 'http/Chain API', shared: true }));
  await w.core.db.update(connections).set({ ratePerMinute: 10 }).where(eq(connections.accountId, chain.id));
  data(
    await admin.call('create_automation', {
      account: 'chain',
      name: 'Check-ins',
      routing: { key: 'body.location' },
      steps: [{ id: 'tell', kind: 'http', method: 'POST', url: `${base}/checkins`, connection: 'http/Chain API', body: { at: '{{ account.routing_key }}' } }],
    }),
  );
});
afterAll(async () => {
  await worker?.stop();
  await admin.close();
  await http.close();
  await w.close();
  await new Promise((r) => app.close(r));
});

describe('a shared connection is one budget for all the studios', () => {
  it('lets exactly its budget through across 30 studios and reschedules the rest', async () => {
    const hook = data<{ webhook: { url: string } }>(await admin.call('get_automation', { account: 'chain', automation: 'Check-ins' })).webhook.url;
    const ids: string[] = [];
    for (let i = 1; i <= 30; i++) {
      const res = await fetch(hook, { method: 'POST', body: JSON.stringify({ location: `loc-${i}` }), headers: { 'content-type': 'application/json' } });
      const answer = (await res.json()) as { status: string; delivery_id: string };
      expect(answer.status).toBe('routed');
      ids.push(answer.delivery_id);
    }
    const t0 = Date.now();
    worker = new Worker(w.core, { concurrency: 8, leaseMs: 10_000, pollMs: 50 });
    await worker.start();
    for (let i = 0; i < 200 && calls < 10; i++) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 1000));
    await worker.stop();
    // the bucket holds one minute's worth (10) and refills one call every 6 s
    const refilled = Math.floor((Date.now() - t0) / 6000);
    expect(calls).toBeGreaterThanOrEqual(10);
    expect(calls).toBeLessThanOrEqual(10 + refilled);

    const runs = await w.core.db.select().from(executions).where(inArray(executions.deliveryId, ids));
    expect(runs).toHaveLength(30);
    expect(new Set(runs.map((r) => r.accountId)).size).toBe(30); // each in its own studio
    expect(runs.filter((r) => r.status === 'succeeded')).toHaveLength(calls);
    expect(runs.filter((r) => r.status === 'failed')).toEqual([]);
    const waiting = runs.filter((r) => r.status === 'queued');
    expect(waiting.length).toBe(30 - calls);
    // the waiting ones say why, and a wait does not use up a retry
    const records = await w.core.db
      .select({ code: executionSteps.errorCode, status: executionSteps.status })
      .from(executionSteps)
      .where(inArray(executionSteps.executionId, waiting.map((r) => r.id)));
    expect(records.length).toBeGreaterThan(0);
    expect(records.every((r) => r.code === 'rate_limited' && r.status === 'retrying')).toBe(true);
    expect(waiting.every((r) => r.errorCode === 'rate_limited' && r.waits > 0)).toBe(true);
    // no run holds a worker while it waits
    expect(runs.filter((r) => r.status === 'running')).toEqual([]);
  });
});
