import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { eq } from 'drizzle-orm';
import { buildWorld, type World } from './helpers/world.js';
import { testDbKind } from './helpers/db.js';
import { CLI, cliEnv, repoRoot } from './helpers/spawn.js';
import { Worker } from '../src/engine/worker.js';
import { createAutomation } from '../src/core/automations.js';
import { awaitExecution, enqueueExecution } from '../src/core/executions.js';
import { executions, executionSteps } from '../src/db/schema/index.js';

/**
 * Lease recovery across processes: a spawned `switchboard worker` is killed with SIGKILL in the
 * middle of a run (its http step waiting on the app); once its lease lapses another worker takes
 * the run back, resumes it after its last committed step, and the repeated call carries the same
 * Idempotency-Key. PostgreSQL only: a second process cannot share the embedded in-memory
 * database the PGlite run of the suite uses.
 */

const postgres = testDbKind() === 'postgres';
let w: World;
let app: Server;
let base: string;
const keys: string[] = [];
let firstCall: () => void;
const called = new Promise<void>((r) => (firstCall = r));
let child: ChildProcess | null = null;

beforeAll(async () => {
  if (!postgres) return;
  app = createServer((req, res) => {
    keys.push(String(req.headers['idempotency-key']));
    firstCall();
    req.resume();
    // slow enough that the worker is still waiting when it is killed
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    }, 1500);
  });
  base = await new Promise<string>((r) => app.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(app.address() as AddressInfo).port}`)));
  w = await buildWorld();
  w.core.outbound = { allow: ['127.0.0.1'] };
});
afterAll(async () => {
  if (!postgres) return;
  child?.kill('SIGKILL');
  await w.close();
  await new Promise((r) => app.close(r));
});

describe.skipIf(!postgres)('a worker process killed mid-run (PostgreSQL only: a spawned process needs a shared database)', () => {
  it('is taken over after its lease: the run resumes and ends once, the call repeated with the same Idempotency-Key', async () => {
    const { row } = await createAutomation(w.core, w.accounts.boring, {
      name: 'Survives a crash',
      createdBy: null,
      definition: {
        trigger: { type: 'webhook', dedupe: null },
        routing: null,
        retries: { max: 3 },
        steps: [
          { id: 'shape', kind: 'transform', value: { order: '{{ trigger.body.id }}' } },
          { id: 'send', kind: 'http', method: 'POST', url: `${base}/orders`, body: '{{ steps.shape.output }}' },
          { id: 'done', kind: 'transform', value: '{{ steps.send.output.status }}' },
        ],
      },
    });
    const run = await enqueueExecution(w.core, w.accounts.boring, row, { body: { id: 'o-1' }, headers: {}, query: {}, method: 'POST' }, 'test', null);
    child = spawn(process.execPath, [...CLI, 'worker'], {
      cwd: repoRoot,
      env: cliEnv({ DATABASE_URL: w.database.url, SWITCHBOARD_OUTBOUND_ALLOW: '127.0.0.1', SWITCHBOARD_LEASE_SECONDS: '2', SWITCHBOARD_WORKERS: '2' }),
      stdio: 'ignore',
    });
    await called; // the spawned worker is inside the http step
    const [held] = await w.core.db.select().from(executions).where(eq(executions.id, run.id));
    expect(held).toMatchObject({ status: 'running' });
    expect(held!.worker).toMatch(/^w-/);
    child.kill('SIGKILL');
    await new Promise((r) => child!.once('exit', r));
    child = null;

    const rescuer = new Worker(w.core, { concurrency: 2, leaseMs: 2_000, pollMs: 50 });
    await rescuer.start();
    try {
      const done = await awaitExecution(w.core, w.accounts.boring, run.id, 20_000);
      expect(done).toMatchObject({ status: 'succeeded', state: { shape: { order: 'o-1' }, send: { status: 200 }, done: 200 } });
      expect(done.worker).not.toBe(held!.worker);
    } finally {
      await rescuer.stop();
    }
    // the call was made again after the crash, with the same key: an app that honours it applies it once
    expect(keys.length).toBeGreaterThanOrEqual(2);
    expect(new Set(keys)).toEqual(new Set([`${run.id}:send`]));
    // one record per step of the run that finished: nothing of the killed attempt was committed twice
    const steps = await w.core.db.select().from(executionSteps).where(eq(executionSteps.executionId, run.id));
    expect(steps.filter((s) => s.status === 'succeeded').map((s) => s.stepId).sort()).toEqual(['done', 'send', 'shape']);
  });
});
