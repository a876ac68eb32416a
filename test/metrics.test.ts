import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { connect, data, type Session, type World } from './helpers/world.js';
import { closedPort, engineWorld, localApp, startWorker, type LocalApp } from './helpers/apps.js';
import { startHttp, type HttpHandle } from '../src/http/server.js';
import type { Worker } from '../src/engine/worker.js';
import { awaitExecution } from '../src/core/executions.js';
import { rowsOf } from '../src/db/client.js';

/**
 * /metrics after real deliveries and executions: the delivery, execution and outbound counters
 * say what happened, the queue gauges what waits (read from the database at scrape time), the
 * worker gauges who works; each core has its own registry, and no label names an account.
 */

let w: World;
let http: HttpHandle;
let boring: Session;
let worker: Worker;
let app: LocalApp;
let base: string;
/** requests to /hold wait here until released */
const held: (() => void)[] = [];
const hooks: Record<string, string> = {};

beforeAll(async () => {
  app = await localApp((req, res) => {
    req.resume();
    req.on('end', () => {
      const answer = (status: number) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end('{}');
      };
      if (req.url === '/ok') return answer(200);
      if (req.url === '/invalid') return answer(422);
      if (req.url === '/hold') return held.push(() => answer(200));
      answer(404);
    });
  });
  base = app.base;
  ({ w, http } = await engineWorld());
  boring = await connect(w.core, w.tokens.boringAdmin);
  data(await boring.call('add_connection', { app: 'http', credentials: { auth_kind: 'bearer', base_url: base, token: 'tok_metrics_0123456789' } }));
  const flows: [string, Record<string, unknown>][] = [
    ['Ok', { steps: [{ id: 'call', kind: 'http', method: 'POST', url: `${base}/ok`, connection: 'http' }] }],
    ['Invalid', { retries: 0, steps: [{ id: 'call', kind: 'http', method: 'POST', url: `${base}/invalid`, connection: 'http' }] }],
    ['Paid only', { steps: [{ id: 'paid', kind: 'filter', condition: 'trigger.body.status = "paid"' }] }],
    ['Once', { trigger: { dedupe: { key: 'trigger.body.id' } }, steps: [{ id: 'noop', kind: 'transform', value: null }] }],
    ['Held', { steps: [{ id: 'call', kind: 'http', method: 'GET', url: `${base}/hold` }] }],
  ];
  for (const [name, flow] of flows) {
    data(await boring.call('create_automation', { name, ...flow }));
    hooks[name] = data<{ webhook: { url: string } }>(await boring.call('get_automation', { automation: name })).webhook.url;
  }
  worker = await startWorker(w);
});
afterAll(async () => {
  for (const release of held.splice(0)) release();
  await worker.stop();
  await boring.close();
  await http.close();
  await w.close();
  await app.close();
});

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a scrape, parsed from the Prometheus text format. */
async function scrape(handle = http): Promise<{ text: string; samples: Sample[] }> {
  const res = await fetch(new URL('/metrics', handle.url));
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    expect(m, line).not.toBeNull();
    const labels = Object.fromEntries([...(m![2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1]!, l[2]!]));
    samples.push({ name: m![1]!, labels, value: Number(m![3]) });
  }
  return { text, samples };
}

/** The value of one sample (0 when the series is absent: a counter never incremented). */
const value = (samples: Sample[], name: string, labels: Record<string, string> = {}): number =>
  samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v) && Object.keys(s.labels).length === Object.keys(labels).length)?.value ?? 0;

async function deliver(name: string, body: string): Promise<{ status: number; delivery_id?: string; executionId?: string }> {
  const res = await fetch(hooks[name]!, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  const answer = (await res.json()) as { delivery_id?: string };
  if (!answer.delivery_id) return { status: res.status };
  const [row] = rowsOf<{ execution_id: string | null }>(await w.core.db.execute(sql`select execution_id from webhook_deliveries where id = ${answer.delivery_id}`));
  return { status: res.status, delivery_id: answer.delivery_id, ...(row?.execution_id ? { executionId: row.execution_id } : {}) };
}

const finish = (id: string | undefined) => awaitExecution(w.core, w.accounts.boring, id!, 20_000);

describe('/metrics', () => {
  it('counts deliveries by outcome, executions by final state and outbound calls by app and status class', async () => {
    const runs = [
      await deliver('Ok', '{"n":1}'),
      await deliver('Ok', '{"n":2}'),
      await deliver('Invalid', '{}'),
      await deliver('Paid only', '{"status":"pending"}'),
      await deliver('Once', '{"id":"e-1"}'),
    ];
    expect((await deliver('Once', '{"id":"e-1"}')).status).toBe(202); // a duplicate: recorded, not run
    expect((await deliver('Ok', '{not json')).status).toBe(400);
    expect((await fetch(new URL(`/hooks/${'A'.repeat(43)}`, http.url), { method: 'POST', body: '{}' })).status).toBe(404);
    const ended = await Promise.all(runs.map((r) => finish(r.executionId)));
    expect(ended.map((r) => r.status)).toEqual(['succeeded', 'succeeded', 'failed', 'filtered', 'succeeded']);

    const { samples, text } = await scrape();
    const deliveries = (status: string) => value(samples, 'switchboard_webhook_deliveries_total', { status });
    expect([deliveries('accepted'), deliveries('duplicate'), deliveries('rejected'), deliveries('not_found'), deliveries('routed')]).toEqual([5, 1, 1, 1, 0]);
    const finished = (status: string) => value(samples, 'switchboard_executions_finished_total', { status });
    expect([finished('succeeded'), finished('failed'), finished('filtered'), finished('cancelled')]).toEqual([3, 1, 1, 0]);
    expect(value(samples, 'switchboard_outbound_requests_total', { app: 'http', status: '2xx' })).toBe(2);
    expect(value(samples, 'switchboard_outbound_requests_total', { app: 'http', status: '4xx' })).toBe(1);
    // the claim statement was timed at least once per claimed batch
    expect(value(samples, 'switchboard_claim_duration_seconds_count')).toBeGreaterThan(0);
    expect(value(samples, 'switchboard_workers_running')).toBe(1);
    // drained: nothing waits
    expect([value(samples, 'switchboard_queue_depth'), value(samples, 'switchboard_queue_oldest_due_seconds'), value(samples, 'switchboard_queue_accounts')]).toEqual([0, 0, 0]);
    expect(value(samples, 'switchboard_database_up')).toBe(1);
    // the process metrics are there; no account, slug or host is
    expect(samples.some((s) => s.name === 'process_cpu_user_seconds_total')).toBe(true);
    const labelValues = new Set(samples.flatMap((s) => Object.values(s.labels)));
    for (const a of Object.values(w.accounts)) {
      expect(text).not.toContain(a.id);
      expect(labelValues.has(a.slug)).toBe(false);
    }
    expect(text).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-/);
    expect(text).not.toContain('127.0.0.1');
  });

  it('counts an outbound call that fails by its error code', async () => {
    const port = await closedPort();
    data(await boring.call('create_automation', { name: 'Refused', retries: 0, steps: [{ id: 'call', kind: 'http', method: 'GET', url: `http://127.0.0.1:${port}/` }] }));
    const before = value((await scrape()).samples, 'switchboard_outbound_requests_total', { app: 'http', status: 'connection_refused' });
    const run = data<{ execution: { status: string } }>(await boring.call('run_automation', { automation: 'Refused', wait_seconds: 20 }));
    expect(run.execution.status).toBe('failed');
    const { samples } = await scrape();
    expect(value(samples, 'switchboard_outbound_requests_total', { app: 'http', status: 'connection_refused' })).toBe(before + 1);
  });

  it('shows the queue depth, its accounts and the age of its oldest due run, read from the database at scrape time', async () => {
    await worker.stop();
    try {
      const queued = [await deliver('Ok', '{"n":3}'), await deliver('Ok', '{"n":4}'), await deliver('Ok', '{"n":5}')];
      const age = async () =>
        Number(rowsOf<{ s: number }>(await w.core.db.execute(sql`select extract(epoch from now() - min(run_at))::float8 as s from executions where status = 'queued'`))[0]!.s);
      const before = await age();
      const { samples } = await scrape();
      const after = await age();
      expect(value(samples, 'switchboard_queue_depth')).toBe(3);
      expect(value(samples, 'switchboard_queue_accounts')).toBe(1);
      const oldest = value(samples, 'switchboard_queue_oldest_due_seconds');
      expect(oldest).toBeGreaterThanOrEqual(before);
      expect(oldest).toBeLessThanOrEqual(after);
      expect(value(samples, 'switchboard_workers_running')).toBe(0);
      worker = await startWorker(w);
      await Promise.all(queued.map((r) => finish(r.executionId)));
      expect(value((await scrape()).samples, 'switchboard_queue_depth')).toBe(0);
    } finally {
      await worker.start();
    }
  });

  it('shows the executions under a live lease and the workers holding them', async () => {
    const run = await deliver('Held', '{}');
    await expect.poll(() => held.length, { timeout: 20_000 }).toBe(1);
    const { samples } = await scrape();
    expect(value(samples, 'switchboard_executions_running')).toBe(1);
    expect(value(samples, 'switchboard_workers_leasing')).toBe(1);
    held.shift()!();
    expect((await finish(run.executionId)).status).toBe('succeeded');
    const after = (await scrape()).samples;
    expect([value(after, 'switchboard_executions_running'), value(after, 'switchboard_workers_leasing')]).toEqual([0, 0]);
  });

  it('keeps one registry per core: another core in the same process counts nothing of this one', async () => {
    const other = await startHttp({ core: { ...w.core }, database: w.database, port: 0, host: '127.0.0.1' });
    try {
      const { samples } = await scrape(other);
      expect(value(samples, 'switchboard_webhook_deliveries_total', { status: 'accepted' })).toBe(0);
      expect(value(samples, 'switchboard_workers_running')).toBe(0);
      expect(value(samples, 'switchboard_database_up')).toBe(1);
    } finally {
      await other.close();
    }
  });

  it('answers whatever the Host, like /readyz, without a token', async () => {
    const u = new URL(http.url);
    const { request } = await import('node:http');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ host: u.hostname, port: u.port, path: '/metrics', headers: { host: 'prometheus.internal', connection: 'close' }, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(200);
  });
});
