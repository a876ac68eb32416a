import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { connect, data, type Session, type World } from './helpers/world.js';
import { engineWorld, localApp, type LocalApp } from './helpers/apps.js';
import { testDatabase } from './helpers/db.js';
import { startHttp, type HttpHandle } from '../src/http/server.js';
import { Worker } from '../src/engine/worker.js';
import { awaitExecution } from '../src/core/executions.js';
import { rowsOf } from '../src/db/client.js';

/**
 * /readyz: 503 when the database does not answer, and when the queue does not drain — work due
 * for longer than the stall time with no worker, in any process, holding a live lease (served
 * here without a worker, like SWITCHBOARD_WORKERS=0) — and ready again once a worker drains it.
 * An account at its concurrency cap, its own runs in flight, is busy, not stalled.
 */

const STALL_MS = 300;
let w: World;
let http: HttpHandle;
let boring: Session;
let app: LocalApp;
let base: string;
/** requests to the app wait here until released */
const held: (() => void)[] = [];
const hooks: Record<string, string> = {};

beforeAll(async () => {
  app = await localApp((req, res) => {
    req.resume();
    held.push(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  base = app.base;
  ({ w, http } = await engineWorld({ readyStallMs: STALL_MS }));
  boring = await connect(w.core, w.tokens.boringAdmin);
  for (const [name, steps] of [
    ['Quick', [{ id: 'noop', kind: 'transform', value: null }]],
    ['Held', [{ id: 'call', kind: 'http', method: 'GET', url: `${base}/hold` }]],
  ] as const) {
    data(await boring.call('create_automation', { name, steps }));
    hooks[name] = data<{ webhook: { url: string } }>(await boring.call('get_automation', { automation: name })).webhook.url;
  }
});
afterAll(async () => {
  for (const release of held.splice(0)) release();
  await boring.close();
  await http.close();
  await w.close();
  await app.close();
});

async function readyz(handle = http): Promise<{ status: number; body: { status: string; check?: string; message?: string } }> {
  const res = await fetch(new URL('/readyz', handle.url));
  return { status: res.status, body: (await res.json()) as { status: string; check?: string; message?: string } };
}

/** A delivery to the automation's webhook, and the run it queued. */
async function deliver(name: string): Promise<string> {
  const res = await fetch(hooks[name]!, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
  expect(res.status).toBe(202);
  const { delivery_id } = (await res.json()) as { delivery_id: string };
  return rowsOf<{ execution_id: string }>(await w.core.db.execute(sql`select execution_id from webhook_deliveries where id = ${delivery_id}`))[0]!.execution_id;
}

/** Whether the queued run has been due for longer than the stall time, by the database's clock. */
const overdue = async (id: string): Promise<boolean> =>
  rowsOf<{ over: boolean }>(await w.core.db.execute(sql`select run_at < now() - ${STALL_MS} * interval '1 millisecond' as over from executions where id = ${id} and status = 'queued'`))[0]?.over ?? false;

const worker = (accountConcurrency?: number) =>
  new Worker(w.core, { concurrency: 4, leaseMs: 5_000, pollMs: 50, ...(accountConcurrency ? { accountConcurrency } : {}), listen: (c, fn) => w.database.listen(c, fn) });

describe('/readyz', () => {
  it('is ready with an empty queue', async () => {
    expect(await readyz()).toEqual({ status: 200, body: { status: 'ready' } });
  });

  it('fails on a queue nobody drains, naming the stalled queue, and is ready again once a worker drains it', async () => {
    const id = await deliver('Quick');
    await expect.poll(() => overdue(id), { timeout: 10_000 }).toBe(true);
    const stalled = await readyz();
    expect(stalled.status).toBe(503);
    expect(stalled.body).toEqual({ status: 'unavailable', check: 'queue', message: 'The queue is stalled: executions have been due for over 0.3 s and no worker holds a live lease.' });
    const drainer = worker();
    await drainer.start();
    try {
      expect((await awaitExecution(w.core, w.accounts.boring, id, 20_000)).status).toBe('succeeded');
      expect(await readyz()).toEqual({ status: 200, body: { status: 'ready' } });
    } finally {
      await drainer.stop();
    }
  });

  it('does not call an account at its concurrency cap stalled while its own run is in flight', async () => {
    const busy = worker(1);
    await busy.start();
    try {
      const first = await deliver('Held');
      await expect.poll(() => held.length, { timeout: 20_000 }).toBe(1);
      const second = await deliver('Held');
      // the second waits for the account's one slot, longer than the stall time
      await expect.poll(() => overdue(second), { timeout: 10_000 }).toBe(true);
      expect(await readyz()).toEqual({ status: 200, body: { status: 'ready' } });
      held.shift()!();
      await expect.poll(() => held.length, { timeout: 20_000 }).toBe(1);
      held.shift()!();
      for (const id of [first, second]) expect((await awaitExecution(w.core, w.accounts.boring, id, 20_000)).status).toBe('succeeded');
    } finally {
      await busy.stop();
    }
  });

  it('fails when runs left by a worker that died stay untaken past the stall time', async () => {
    const id = await deliver('Quick');
    // what a killed worker leaves behind: a running run whose lease nobody renews
    await w.core.db.execute(sql`update executions set status = 'running', worker = 'w-gone:0', lease_until = now() - interval '1 second', started_at = now() where id = ${id}`);
    await expect
      .poll(async () => rowsOf<{ over: boolean }>(await w.core.db.execute(sql`select lease_until < now() - ${STALL_MS} * interval '1 millisecond' as over from executions where id = ${id}`))[0]!.over, { timeout: 10_000 })
      .toBe(true);
    const stalled = await readyz();
    expect(stalled.status).toBe(503);
    expect(stalled.body).toMatchObject({ status: 'unavailable', check: 'abandoned' });
    // a worker takes it back and runs it
    const rescuer = worker();
    await rescuer.start();
    try {
      expect((await awaitExecution(w.core, w.accounts.boring, id, 20_000)).status).toBe('succeeded');
      expect(await readyz()).toEqual({ status: 200, body: { status: 'ready' } });
    } finally {
      await rescuer.stop();
    }
  });

  it('fails when the database does not answer', async () => {
    const gone = await testDatabase();
    await gone.close();
    const down = await startHttp({ core: { ...w.core, db: gone.db }, database: gone, port: 0, host: '127.0.0.1', readyStallMs: STALL_MS });
    try {
      expect(await readyz(down)).toEqual({ status: 503, body: { status: 'unavailable', check: 'database', message: 'The database does not answer.' } });
      // /metrics still answers: the counters, and the queue figures as unknown
      const text = await (await fetch(new URL('/metrics', down.url))).text();
      expect(text).toMatch(/^switchboard_database_up 0$/m);
      expect(text).toMatch(/^switchboard_queue_depth NaN$/im);
    } finally {
      await down.close();
    }
  });
});
