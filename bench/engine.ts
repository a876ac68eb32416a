import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'drizzle-orm';
import { openDatabase, rowsOf } from '../src/db/client.js';
import { initialize } from '../src/core/tenants.js';
import { createAccount } from '../src/core/accounts.js';
import { addConnection } from '../src/core/connections.js';
import { createAutomation } from '../src/core/automations.js';
import { enqueueExecution } from '../src/core/executions.js';
import { Keyring, newMasterKey } from '../src/core/keyring.js';
import type { Core } from '../src/core/core.js';
import { executions } from '../src/db/schema/index.js';
import { Worker } from '../src/engine/worker.js';
import { percentile } from './stats.js';

/**
 * The engine end to end, without webhook ingress (not built yet): queued executions of
 * transform → http POST to a local server → transform, run by one in-process worker, until all
 * are final. Where the time goes is read back from the records: time inside steps by kind, and
 * the rest (claiming, committing each step, the queue).
 */

export interface EngineResult {
  executions: number;
  concurrency: number;
  wallMs: number;
  perSecond: number;
  stepMs: Record<string, { mean: number; p99: number }>;
  /** wall time per execution (claim → final) minus its steps: the engine's own cost */
  overheadMeanMs: number;
  /** enqueued → started at `rate`/s: the queue's latency with the worker idle between arrivals */
  startLatency: { rate: number; n: number; p50: number; p99: number };
  failed: number;
  /** account B's single run queued behind account A's backlog: how long until it started, and how many of A's started first */
  fairness: { backlog: number; startMs: number; backlogStartedBefore: number } | null;
}

function upstream(): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
  server.keepAliveTimeout = 1000;
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })));
}


/** the other account's backlog in the fairness case */
const FAIR_BACKLOG = 10_000;

export async function engineThroughput(opts: { url?: string; executions: number; concurrency: number; rate: number; seconds: number }): Promise<EngineResult> {
  const database = await openDatabase({ url: opts.url, max: opts.concurrency + 4 });
  const { server, url } = await upstream();
  const worker: { w: Worker | null } = { w: null };
  try {
    await database.migrate();
    const init = await initialize(database.db, { adminEmail: 'bench@switchboard.test', switchMinutes: 30 });
    const core: Core = { db: database.db, tenantId: init.tenant.id, switchMinutes: 30, keys: new Keyring(newMasterKey()), secretArgs: true, outbound: { allow: ['127.0.0.1'] } };
    const account = await createAccount(core, { name: 'Bench Co', slug: 'bench-co' });
    const conn = await addConnection(core, account, { app: 'http', credentials: { auth_kind: 'bearer', base_url: url, token: 'bench-token-0123456789' }, createdBy: null });
    await database.db.execute(sql`update connections set rate_per_minute = 100000000 where id = ${conn.row.id}`);
    const { row: automation } = await createAutomation(core, account, {
      name: 'Bench flow',
      createdBy: null,
      definition: {
        trigger: { type: 'webhook', dedupe: null },
        routing: null,
        retries: { max: 3 },
        steps: [
          { id: 'shape', kind: 'transform', value: { order: '{{ trigger.body.i }}', total: '{{ trigger.body.i * 2 }}' } },
          { id: 'send', kind: 'http', method: 'POST', url: `${url}/orders`, body: '{{ steps.shape.output }}', connection: conn.row.id },
          { id: 'done', kind: 'transform', value: '{{ steps.send.output.status }}' },
        ],
      },
    });
    const trigger = (i: number) => ({ body: { i }, headers: {}, query: {}, method: 'POST' });

    // 1. throughput: a backlog of N, drained by one worker
    for (let i = 0; i < opts.executions; i += 1000) {
      const batch = Array.from({ length: Math.min(1000, opts.executions - i) }, (_, k) => ({
        tenantId: core.tenantId, accountId: account.id, automationId: automation.id, revision: automation.revision, source: 'test' as const, trigger: trigger(i + k),
      }));
      await database.db.insert(executions).values(batch);
    }
    const t0 = performance.now();
    // one account has the whole worker here: its cap is the worker's concurrency
    worker.w = new Worker(core, { concurrency: opts.concurrency, accountConcurrency: opts.concurrency, leaseMs: 30_000, pollMs: 20, listen: (c, fn) => database.listen(c, fn) });
    await worker.w.start();
    for (;;) {
      const [r] = rowsOf<{ n: number }>(await database.db.execute(sql`select count(*)::int as n from executions where status in ('queued', 'running')`));
      if (Number(r!.n) === 0) break;
      await new Promise((res) => setTimeout(res, 20));
    }
    const wallMs = performance.now() - t0;
    const [failed] = rowsOf<{ n: number }>(await database.db.execute(sql`select count(*)::int as n from executions where status <> 'succeeded'`));
    const steps = rowsOf<{ kind: string; ms: number }>(await database.db.execute(sql`select kind, duration_ms as ms from execution_steps`));
    const stepMs: EngineResult['stepMs'] = {};
    for (const kind of new Set(steps.map((s) => s.kind))) {
      const xs = steps.filter((s) => s.kind === kind).map((s) => Number(s.ms));
      stepMs[kind] = { mean: xs.reduce((a, b) => a + b, 0) / xs.length, p99: percentile(xs, 99) };
    }
    const [per] = rowsOf<{ wall: number; inside: number }>(
      await database.db.execute(sql`
        select avg(extract(epoch from (e.finished_at - e.started_at)) * 1000)::float8 as wall,
               avg(s.total)::float8 as inside
        from executions e join (select execution_id, sum(duration_ms) as total from execution_steps group by execution_id) s on s.execution_id = e.id`),
    );

    // 2. start latency at a steady rate
    const ids: string[] = [];
    const n = Math.round(opts.rate * opts.seconds);
    const interval = 1000 / opts.rate;
    const begin = performance.now();
    for (let i = 0; i < n; i++) {
      const due = begin + i * interval;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((res) => setTimeout(res, wait));
      ids.push((await enqueueExecution(core, account, automation, trigger(i), 'test', null)).id);
    }
    for (;;) {
      const [r] = rowsOf<{ n: number }>(await database.db.execute(sql`select count(*)::int as n from executions where status in ('queued', 'running')`));
      if (Number(r!.n) === 0) break;
      await new Promise((res) => setTimeout(res, 20));
    }
    const lat = rowsOf<{ ms: number }>(
      await database.db.execute(sql`select extract(epoch from (started_at - created_at)) * 1000 as ms from executions where id in ${ids}`),
    ).map((r) => Number(r.ms));

    // 3. fairness: account A has a backlog of FAIR_BACKLOG queued (committed at once), then account B queues one
    const other = await createAccount(core, { name: 'Bench Other', slug: 'bench-other' });
    const { row: single } = await createAutomation(core, other, {
      name: 'Single',
      createdBy: null,
      definition: { trigger: { type: 'webhook', dedupe: null }, routing: null, retries: { max: 0 }, steps: [{ id: 'a', kind: 'transform', value: '{{ trigger.body.i }}' }] },
    });
    const [{ at: fairFrom }] = rowsOf<{ at: string }>(await database.db.execute(sql`select now()::text as at`)) as [{ at: string }];
    await database.db.transaction(async (tx) => {
      for (let i = 0; i < FAIR_BACKLOG; i += 1000) {
        await tx.insert(executions).values(
          Array.from({ length: Math.min(1000, FAIR_BACKLOG - i) }, (_, k) => ({
            tenantId: core.tenantId, accountId: account.id, automationId: automation.id, revision: automation.revision, source: 'test' as const, trigger: trigger(i + k),
          })),
        );
      }
    });
    const b = await enqueueExecution(core, other, single, trigger(0), 'test', null);
    let bRow: { ms: number; before: number } | undefined;
    for (let i = 0; i < 3000 && !bRow; i++) {
      [bRow] = rowsOf<{ ms: number; before: number }>(
        await database.db.execute(sql`
          select extract(epoch from (b.started_at - b.created_at)) * 1000 as ms,
                 (select count(*)::int from executions a where a.account_id = ${account.id} and a.started_at <= b.started_at and a.created_at >= ${fairFrom}::timestamptz) as before
          from executions b where b.id = ${b.id} and b.started_at is not null`),
      );
      if (!bRow) await new Promise((res) => setTimeout(res, 10));
    }
    return {
      executions: opts.executions,
      concurrency: opts.concurrency,
      wallMs,
      perSecond: (opts.executions / wallMs) * 1000,
      stepMs,
      overheadMeanMs: Number(per!.wall) - Number(per!.inside),
      startLatency: { rate: opts.rate, n: lat.length, p50: percentile(lat, 50), p99: percentile(lat, 99) },
      fairness: bRow ? { backlog: FAIR_BACKLOG, startMs: Number(bRow.ms), backlogStartedBefore: Number(bRow.before) } : null,
      failed: Number(failed!.n),
    };
  } finally {
    await worker.w?.stop();
    await new Promise((r) => server.close(r));
    await database.close();
  }
}
