import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { and, eq, sql } from 'drizzle-orm';
import { buildWorld, type World } from './helpers/world.js';
import { Worker } from '../src/engine/worker.js';
import { createAutomation } from '../src/core/automations.js';
import { addConnection } from '../src/core/connections.js';
import { awaitExecution, enqueueExecution } from '../src/core/executions.js';
import { executions } from '../src/db/schema/index.js';
import { createAccount, type Account } from '../src/core/accounts.js';

/**
 * Fairness between accounts: one account's burst does not hold back another account's single
 * run (the claim takes each account's oldest in turn), and no account runs more than its cap at
 * once, however many workers are free.
 */

let w: World;
let app: Server;
let base: string;
let inFlight = 0;
let maxInFlight = 0;

beforeAll(async () => {
  app = createServer((req, res) => {
    inFlight += 1;
    maxInFlight = Math.max(maxInFlight, inFlight);
    req.resume();
    setTimeout(() => {
      inFlight -= 1;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    }, 150);
  });
  base = await new Promise<string>((r) => app.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(app.address() as AddressInfo).port}`)));
  w = await buildWorld();
  w.core.outbound = { allow: ['127.0.0.1'] };
});
afterAll(async () => {
  await w.close();
  await new Promise((r) => app.close(r));
});

const trigger = (i: number) => ({ body: { i }, headers: {}, query: {}, method: 'POST' });

async function transformAutomation(account: Account, name: string) {
  const { row } = await createAutomation(w.core, account, {
    name,
    createdBy: null,
    definition: { trigger: { type: 'webhook', dedupe: null }, routing: null, retries: { max: 0 }, steps: [{ id: 'a', kind: 'transform', value: '{{ trigger.body.i }}' }] },
  });
  return row;
}

describe('fairness between accounts', () => {
  it("starts another account's single run while the first account's burst is still queued", async () => {
    const burst = await transformAutomation(w.accounts.acme, 'Burst');
    const BURST = 2000;
    for (let i = 0; i < BURST; i += 500) {
      await w.core.db.insert(executions).values(
        Array.from({ length: 500 }, (_, k) => ({
          tenantId: w.core.tenantId, accountId: w.accounts.acme.id, automationId: burst.id, revision: 1, source: 'test' as const, trigger: trigger(i + k),
          // queued earlier than the other account's run: a plain oldest-first queue would run them all first
          runAt: new Date(Date.now() - 60_000),
        })),
      );
    }
    const single = await transformAutomation(w.accounts.boring, 'Single');
    const run = await enqueueExecution(w.core, w.accounts.boring, single, trigger(1), 'test', null);
    const worker = new Worker(w.core, { concurrency: 2, leaseMs: 10_000, pollMs: 20 });
    await worker.start();
    let done;
    try {
      done = await awaitExecution(w.core, w.accounts.boring, run.id, 30_000);
    } finally {
      await worker.stop();
    }
    expect(done.status).toBe('succeeded');
    // when it started, nearly all of the older burst was still queued: it did not wait its turn behind them
    const [before] = await w.core.db
      .select({ n: sql<number>`count(*)::int` })
      .from(executions)
      .where(and(eq(executions.accountId, w.accounts.acme.id), sql`${executions.startedAt} <= ${done.startedAt!.toISOString()}::timestamptz`));
    expect(Number(before!.n)).toBeLessThanOrEqual(2);
    // and the burst itself is served too
    const [started] = await w.core.db.select({ n: sql<number>`count(*)::int` }).from(executions).where(and(eq(executions.accountId, w.accounts.acme.id), sql`${executions.startedAt} is not null`));
    expect(Number(started!.n)).toBeGreaterThan(0);
    // what is left of the burst is not run by the next test's workers
    await w.core.db.delete(executions).where(eq(executions.accountId, w.accounts.acme.id));
  });

  it('runs no more than the account cap at once, however many slots are free, and runs the rest after', async () => {
    const { row: conn } = await addConnection(w.core, w.accounts.boring, { app: 'http', name: 'Slow', credentials: { auth_kind: 'bearer', base_url: base, token: 'tok_fair_0123456789' }, createdBy: null });
    await w.core.db.execute(sql`update connections set rate_per_minute = 100000 where id = ${conn.id}`);
    const { row } = await createAutomation(w.core, w.accounts.boring, {
      name: 'Capped',
      createdBy: null,
      definition: { trigger: { type: 'webhook', dedupe: null }, routing: null, retries: { max: 0 }, steps: [{ id: 'call', kind: 'http', method: 'POST', url: `${base}/slow`, connection: conn.id }] },
    });
    const runs = [];
    for (let i = 0; i < 9; i++) runs.push(await enqueueExecution(w.core, w.accounts.boring, row, trigger(i), 'test', null));
    maxInFlight = 0;
    const worker = new Worker(w.core, { concurrency: 8, leaseMs: 10_000, pollMs: 20, accountConcurrency: 3 });
    await worker.start();
    try {
      for (const r of runs) expect((await awaitExecution(w.core, w.accounts.boring, r.id, 20_000)).status).toBe('succeeded');
    } finally {
      await worker.stop();
    }
    expect(maxInFlight).toBe(3);
  });

  it('steps over accounts at their cap: they cannot crowd out an account with room', async () => {
    await w.core.db.delete(executions);
    const capped: Account[] = [];
    for (let i = 0; i < 20; i++) capped.push(await createAccount(w.core, { name: `Capped ${i}`, slug: `capped-${i}` }));
    const crowd = await transformAutomation(w.accounts.boring, 'Crowd');
    // each capped account runs one (held by another worker) and has one more queued
    for (const a of capped) {
      const auto = await transformAutomation(a, `Flow ${a.slug}`);
      const base = { tenantId: w.core.tenantId, accountId: a.id, automationId: auto.id, revision: 1, source: 'test' as const, trigger: trigger(0) };
      await w.core.db.insert(executions).values([
        { ...base, status: 'running' as const, worker: 'elsewhere:1', leaseUntil: new Date(Date.now() + 600_000), startedAt: new Date() },
        { ...base, runAt: new Date(Date.now() - 60_000) },
      ]);
    }
    const run = await enqueueExecution(w.core, w.accounts.boring, crowd, trigger(1), 'test', null);
    const worker = new Worker(w.core, { concurrency: 2, leaseMs: 10_000, pollMs: 20, accountConcurrency: 1 });
    await worker.start();
    try {
      expect((await awaitExecution(w.core, w.accounts.boring, run.id, 10_000)).status).toBe('succeeded');
    } finally {
      await worker.stop();
    }
    // the capped accounts' queued runs stayed queued: none passed its cap
    const [still] = await w.core.db.select({ n: sql<number>`count(*)::int` }).from(executions).where(eq(executions.status, 'queued'));
    expect(Number(still!.n)).toBe(capped.length);
  });
});
