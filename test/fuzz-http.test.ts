import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { eq, inArray } from 'drizzle-orm';
import fc from 'fast-check';
import { buildWorld, connect, data, type World } from './helpers/world.js';
import { startHttp, type HttpHandle } from '../src/http/server.js';
import { connections, webhookDeliveries } from '../src/db/schema/index.js';
import { createHumanRequest } from '../src/core/human-requests.js';
import { HOSTILE_TEXT } from './fuzz/harness.js';

/**
 * Fuzzing the HTTP entry points (issue 12, item 1): the webhook endpoint with random methods,
 * paths, content types, sizes, header sets, signatures and tokens, and the MCP endpoint with
 * malformed JSON-RPC, and the credential pages with real, used, swapped and made-up links. Invariants: never a 5xx, never a secret in an answer, every 2xx webhook
 * answer names a delivery that is recorded (nothing acknowledged is lost), and the server still
 * answers. A fixed-seed slice.
 */

let w: World;
let http: HttpHandle;
const SECRET = `whsec_${randomBytes(24).toString('base64url')}`;
const hooks: string[] = [];
const MAX_BYTES = 4096;

beforeAll(async () => {
  w = await buildWorld();
  http = await startHttp({ core: w.core, database: w.database, port: 0, host: '127.0.0.1', webhookMaxBytes: MAX_BYTES });
  w.core.publicBaseUrl = new URL(http.url).origin;
  const s = await connect(w.core, w.tokens.boringAdmin);
  data(await s.call('add_connection', { app: 'webhook', name: 'Provider', credentials: { signing_secret: SECRET } }));
  data(await s.call('create_automation', { name: 'Open', steps: [{ id: 'a', kind: 'transform', value: '{{ trigger.body }}' }] }));
  data(await s.call('create_automation', { name: 'Signed', trigger: { signature: { preset: 'github', connection: 'webhook/Provider' } }, steps: [{ id: 'a', kind: 'transform', value: '{{ trigger.body }}' }] }));
  data(await s.call('create_automation', { name: 'Deduped', trigger: { dedupe: { key: 'body.id' } }, steps: [{ id: 'a', kind: 'transform', value: '{{ trigger.body }}' }] }));
  for (const name of ['Open', 'Signed', 'Deduped']) hooks.push(data<{ webhook: { url: string } }>(await s.call('get_automation', { automation: name })).webhook.url);
  await s.close();
});
afterAll(async () => {
  await http.close();
  await w.close();
});

const text = fc.oneof(fc.constantFrom(...HOSTILE_TEXT.filter((t) => !t.includes('\u0000') && t.isWellFormed())), fc.string({ maxLength: 30 }));
const body = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v) ?? 'null'),
  fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)),
  fc.constant(Buffer.alloc(MAX_BYTES + 1, 0x61)),
  fc.constant(''),
  fc.constant('{"id": '),
  fc.constant(`${'['.repeat(5000)}${']'.repeat(5000)}`),
  text,
);
const headers = fc.dictionary(
  fc.constantFrom('x-hub-signature-256', 'authorization', 'x-source', 'content-encoding', 'transfer-encoding-x', 'x-forwarded-for', 'idempotency-key', 'x-custom'),
  fc.oneof(fc.constantFrom('sha256=00', `sha256=${'f'.repeat(64)}`, `Bearer sbt_${'A'.repeat(43)}`, 'gzip', '127.0.0.1'), fc.string({ unit: 'grapheme-ascii', maxLength: 40 })),
  { maxKeys: 4 },
);
const request = fc.record({
  method: fc.constantFrom('POST', 'POST', 'POST', 'PUT', 'GET', 'DELETE', 'PATCH', 'OPTIONS'),
  target: fc.oneof(
    { weight: 5, arbitrary: fc.nat({ max: 2 }).map((i) => ({ kind: 'hook' as const, i, suffix: '' })) },
    fc.tuple(fc.nat({ max: 2 }), fc.constantFrom('/x', '?a=1&a=2', '?token=sbt_x', '/../../mcp', '%00', '?%zz')).map(([i, suffix]) => ({ kind: 'hook' as const, i, suffix })),
    fc.constantFrom('/hooks/', '/hooks/short', `/hooks/${'A'.repeat(43)}`, '/hooks/%2e%2e', '/HOOKS/x', '//hooks//x', '/mcp', '/pages/x', '/nope').map((path) => ({ kind: 'path' as const, path })),
  ),
  contentType: fc.constantFrom('application/json', 'application/json; charset=utf-16', 'text/plain', 'application/x-www-form-urlencoded', 'application/octet-stream', 'multipart/form-data; boundary=x', '', 'garbage'),
  body,
  headers,
});

describe('fuzzing the HTTP entry points (fixed seed)', () => {
  it('the webhook endpoint: never a 5xx or a secret, and every 2xx is a recorded delivery', async () => {
    const accepted: string[] = [];
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const url = r.target.kind === 'hook' ? `${hooks[r.target.i]!}${r.target.suffix}` : `${http.url.replace(/\/mcp$/, '')}${r.target.path}`;
        const init: RequestInit = { method: r.method, headers: { ...r.headers, ...(r.contentType ? { 'content-type': r.contentType } : {}) } };
        if (r.method !== 'GET' && r.method !== 'OPTIONS') init.body = r.body;
        let res: Response;
        try {
          res = await fetch(url, init);
        } catch (err) {
          // a URL fetch itself refuses to send (a malformed one) says nothing of the server
          if (err instanceof TypeError && !/fetch failed/.test(err.message)) return;
          throw err;
        }
        const answer = await res.text();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        expect(res.status, answer.slice(0, 200)).toBeLessThan(500);
        expect(answer).not.toContain(SECRET);
        for (const t of Object.values(w.tokens)) expect(answer).not.toContain(t);
        if (r.target.kind === 'hook' && r.target.suffix === '' && res.status >= 200 && res.status < 300) {
          const id = (JSON.parse(answer) as { delivery_id?: string }).delivery_id;
          expect(id, answer).toBeTruthy();
          accepted.push(id!);
        }
      }),
      { seed: Number(process.env.FUZZ_SEED ?? 20261207), numRuns: Number(process.env.FUZZ_HTTP_RUNS ?? 150), endOnFailure: true },
    );
    // nothing acknowledged is lost: every 2xx names a delivery that is recorded
    const recorded = accepted.length ? await w.core.db.select({ id: webhookDeliveries.id }).from(webhookDeliveries).where(inArray(webhookDeliveries.id, accepted)) : [];
    expect(new Set(recorded.map((d) => d.id))).toEqual(new Set(accepted));
    // the slice reached both sides: accepted deliveries and refusals
    expect(accepted.length).toBeGreaterThan(10);
    expect([...statuses.keys()].some((s) => s >= 400)).toBe(true);
    expect((await fetch(`${http.url.replace(/\/mcp$/, '')}/healthz`)).status).toBe(200);
  }, 300_000);

  it('the pages: real, used, swapped and made-up links, any method, form and body, never a 5xx or a secret', async () => {
    const connection = w.database.db;
    const [provider] = await connection.select({ id: connections.id }).from(connections).where(eq(connections.accountId, w.accounts.boring.id));
    const links: string[] = [];
    for (const kind of ['enter_credentials', 'enter_credentials', 'view_credentials', 'view_credentials'] as const) {
      const r = await createHumanRequest(w.core, {
        accountId: w.accounts.boring.id,
        userId: w.userIds.boringAdmin,
        kind,
        subject: kind === 'enter_credentials' ? { app: 'stripe', authKind: null, connectionName: 'Fuzz', connectionId: null } : { app: 'webhook', authKind: null, connectionName: 'Provider', connectionId: provider!.id },
      });
      links.push(`/${kind === 'enter_credentials' ? 'connect' : 'verify'}/${r.token}`);
    }
    const origin = http.url.replace(/\/mcp$/, '');
    const path = fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom(...links) },
      fc.constantFrom(...links).map((l) => (l.startsWith('/connect/') ? l.replace('/connect/', '/verify/') : l.replace('/verify/', '/connect/'))),
      fc.constantFrom(...links).map((l) => `${l}/extra`),
      fc.tuple(fc.constantFrom('/connect/', '/verify/'), fc.oneof(text, fc.constant('A'.repeat(43)), fc.constant('%2e%2e'), fc.constant(''))).map(([p, t]) => p + encodeURIComponent(t)),
      fc.constantFrom('/connect', '/verify', '/connect//', '/verify/../connect/x'),
    );
    const form = fc.dictionary(fc.constantFrom('secret_key', 'password', 'kind', 'f_token', 'token', 'name', 'base_url', '__proto__', 'x'), text, { maxKeys: 5 }).map((d) => new URLSearchParams(d).toString());
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(
        path,
        fc.constantFrom('GET', 'POST', 'POST', 'PUT', 'HEAD', 'DELETE'),
        fc.oneof(form, body),
        fc.constantFrom('application/x-www-form-urlencoded', 'application/json', 'text/plain', 'multipart/form-data; boundary=x', ''),
        fc.constantFrom(undefined, origin, 'https://evil.example', 'null'),
        fc.option(fc.constantFrom('kind=api_key', 'kind=%00', `kind=${'k'.repeat(300)}`, 'a=1&a=2')),
        async (p, method, b, contentType, from, query) => {
          const res = await fetch(`${origin}${p}${query ? `?${query}` : ''}`, {
            method,
            headers: { ...(contentType ? { 'content-type': contentType } : {}), ...(from ? { origin: from } : {}) },
            ...(method === 'GET' || method === 'HEAD' ? {} : { body: b }),
            redirect: 'manual',
            signal: AbortSignal.timeout(10_000),
          });
          const answer = await res.text();
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          expect(res.status, `${method} ${p}: ${answer.slice(0, 200)}`).toBeLessThan(500);
          for (const t of [...Object.values(w.tokens), SECRET]) expect(answer).not.toContain(t);
        },
      ),
      { seed: Number(process.env.FUZZ_SEED ?? 20261207), numRuns: Number(process.env.FUZZ_HTTP_RUNS ?? 120), endOnFailure: true },
    );
    // the slice reached real pages and refusals
    expect(statuses.get(200) ?? 0).toBeGreaterThan(0);
    expect([...statuses.keys()].some((st) => st >= 400)).toBe(true);
    expect((await fetch(`${origin}/healthz`)).status).toBe(200);
  }, 300_000);

  it('the MCP endpoint: malformed JSON-RPC, odd methods and tokens get a 4xx or a JSON-RPC error, never a 5xx', async () => {
    const message = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? 'null'),
      fc.record({ jsonrpc: fc.constantFrom('2.0', '1.0', 2), id: fc.oneof(fc.integer(), fc.string({ maxLength: 5 }), fc.constant(null)), method: fc.oneof(fc.constantFrom('initialize', 'tools/call', 'tools/list', 'prompts/get', 'completion/complete', '__proto__'), text), params: fc.jsonValue({ maxDepth: 3 }) }).map((m) => JSON.stringify(m)),
      fc.constantFrom('{', '[]', '[{"jsonrpc":"2.0"}]', 'null', ''),
    );
    await fc.assert(
      fc.asyncProperty(message, fc.constantFrom(`Bearer ${w.tokens.boringViewer}`, 'Bearer sbt_nope', '', 'Basic x'), fc.constantFrom('POST', 'GET', 'DELETE', 'PUT'), fc.constantFrom('application/json, text/event-stream', 'application/json', 'text/html'), async (m, auth, method, accept) => {
        const res = await fetch(http.url, {
          method,
          headers: { 'content-type': 'application/json', accept, ...(auth ? { authorization: auth } : {}) },
          ...(method === 'POST' || method === 'PUT' ? { body: m } : {}),
          signal: AbortSignal.timeout(10_000),
        }).catch((err: Error) => err);
        if (res instanceof Error) {
          // a GET that opens an event stream is answered and stays open: not a failure
          expect(res.name).toBe('TimeoutError');
          return;
        }
        const answer = method === 'GET' && res.headers.get('content-type')?.includes('event-stream') ? '' : await res.text();
        expect(res.status, answer.slice(0, 200)).toBeLessThan(500);
        expect(answer).not.toMatch(/internal error/i);
        for (const t of Object.values(w.tokens)) expect(answer).not.toContain(t);
        await res.body?.cancel().catch(() => {});
      }),
      { seed: Number(process.env.FUZZ_SEED ?? 20261207), numRuns: Number(process.env.FUZZ_HTTP_RUNS ?? 120), endOnFailure: true },
    );
    expect((await fetch(`${http.url.replace(/\/mcp$/, '')}/healthz`)).status).toBe(200);
  }, 300_000);
});
