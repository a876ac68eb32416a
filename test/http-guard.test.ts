import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { buildWorld, type World } from './helpers/world.js';
import { startHttp, type HttpHandle } from '../src/http/server.js';
import { RequestGuard } from '../src/http/request-guard.js';

/**
 * What `switchboard serve` answers before any tool runs: every request gets an answer (odd page
 * paths used to hold their socket open forever), and browsers are held to the server's own
 * origin and host names (the transport's DNS-rebinding rules).
 */

let w: World;
let http: HttpHandle;
let listed: HttpHandle;
beforeAll(async () => {
  w = await buildWorld();
  http = await startHttp({ core: w.core, database: w.database, port: 0, host: '127.0.0.1' });
  listed = await startHttp({
    core: w.core,
    database: w.database,
    port: 0,
    host: '127.0.0.1',
    allowedHosts: ['switchboard.example.test'],
    allowedOrigins: ['https://console.example.test'],
  });
});
afterAll(async () => {
  await http?.close();
  await listed?.close();
  await w?.close();
});

interface Answer {
  status: number;
  body: string;
}

/** One raw request on its own socket, which must be answered within `ms`. */
function raw(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: string, ms = 5000): Promise<Answer> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method, path, headers: { connection: 'close', ...headers }, agent: false }, (res: IncomingMessage) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.setTimeout(ms, () => req.destroy(new Error(`no answer to ${method} ${path} within ${ms} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

const initialize = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
});
const mcpHeaders = (token: string, extra: Record<string, string> = {}) => ({
  authorization: `Bearer ${token}`,
  'content-type': 'application/json',
  accept: 'application/json, text/event-stream',
  ...extra,
});

describe('every request gets an answer', () => {
  const prefixes = ['/connect', '/verify', '/mcp', '/healthz', '/readyz', ''];
  const tails = ['', '/', '/abc', '/abc/', '/a/b', '//', '/%00', '/..%2f..%2fetc', `/${'x'.repeat(2000)}`, '/abc?x=1', '/abc#frag'];
  const methods = ['GET', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'];

  it('odd paths under every prefix the server routes, with every method', async () => {
    const base = http.url;
    const cases = prefixes.flatMap((p) => tails.map((t) => p + t)).filter((p) => p.startsWith('/'));
    let answered = 0;
    for (const path of cases) {
      for (const method of methods) {
        const a = await raw(base, method, path, {}, method === 'GET' || method === 'OPTIONS' ? undefined : 'x=1');
        expect(a.status, `${method} ${path}`).toBeGreaterThanOrEqual(200);
        answered++;
      }
    }
    expect(answered).toBe(cases.length * methods.length);
  });

  it('300 unanswerable-looking page requests leave no socket behind, and MCP still serves', async () => {
    const paths = ['/connect/', '/connect/abc/', '/verify/a/b', '/connect', '/verify/'];
    await Promise.all(Array.from({ length: 300 }, (_, i) => raw(http.url, 'GET', paths[i % paths.length]!)));
    const open = await new Promise<number>((resolve, reject) => http.server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
    expect(open).toBe(0);
    const init = await raw(http.url, 'POST', '/mcp', mcpHeaders(w.tokens.admin), initialize);
    expect(init.status).toBe(200);
  });

  it('a page path that is not a link reads like an unknown link', async () => {
    for (const path of ['/connect/', '/connect/abc/', '/verify/a/b', '/verify']) {
      const a = await raw(http.url, 'GET', path);
      expect(a.status, path).toBe(404);
      expect(a.body).toMatch(/This link is no longer valid/);
    }
  });
});

describe('Origin and Host', () => {
  it('refuses a browser origin that is not the server’s own, with 403, before authentication', async () => {
    const own = new URL(http.url).origin;
    for (const origin of ['http://evil.example.com', 'null', 'http://localhost.evil.test', own.replace(/:\d+$/, ':1'), 'file://', 'not a url']) {
      const a = await raw(http.url, 'POST', '/mcp', mcpHeaders(w.tokens.admin, { origin }), initialize);
      expect(a.status, origin).toBe(403);
      expect(JSON.parse(a.body)).toMatchObject({ error: 'forbidden_origin' });
      // the pages too
      expect((await raw(http.url, 'POST', '/connect/abc', { origin, 'content-type': 'application/x-www-form-urlencoded' }, 'a=1')).status, origin).toBe(403);
    }
  });

  it('serves requests without Origin (non-browser clients) and from the server’s own origin', async () => {
    expect((await raw(http.url, 'POST', '/mcp', mcpHeaders(w.tokens.admin), initialize)).status).toBe(200);
    const own = new URL(http.url).origin; // http://127.0.0.1:<port>
    expect((await raw(http.url, 'POST', '/mcp', mcpHeaders(w.tokens.admin, { origin: own }), initialize)).status).toBe(200);
    const port = new URL(http.url).port;
    expect((await raw(http.url, 'POST', '/mcp', mcpHeaders(w.tokens.admin, { origin: `http://localhost:${port}`, host: `localhost:${port}` }), initialize)).status).toBe(200);
    // a page posting back to where it was loaded from
    expect((await raw(http.url, 'POST', '/connect/abc', { origin: own, 'content-type': 'application/x-www-form-urlencoded' }, 'a=1')).status).toBe(404);
  });

  it('refuses a Host that is not a loopback name on a loopback address (DNS rebinding)', async () => {
    const a = await raw(http.url, 'POST', '/mcp', mcpHeaders(w.tokens.admin, { host: 'evil.example.com' }), initialize);
    expect(a.status).toBe(403);
    expect(JSON.parse(a.body)).toMatchObject({ error: 'forbidden_host' });
    // the rebinding page's origin matches its Host: still refused, by the Host check
    const rebound = await raw(http.url, 'POST', '/mcp', mcpHeaders(w.tokens.admin, { host: 'evil.example.com:80', origin: 'http://evil.example.com' }), initialize);
    expect(rebound.status).toBe(403);
    // health checks answer whatever the Host
    expect((await raw(http.url, 'GET', '/healthz', { host: 'lb.internal' })).status).toBe(200);
  });

  it('SWITCHBOARD_ALLOWED_HOSTS and SWITCHBOARD_ALLOWED_ORIGINS replace and extend the defaults', async () => {
    // only the listed host names are answered, loopback names included
    expect((await raw(listed.url, 'POST', '/mcp', mcpHeaders(w.tokens.admin), initialize)).status).toBe(403);
    const host = { host: 'switchboard.example.test' };
    expect((await raw(listed.url, 'POST', '/mcp', mcpHeaders(w.tokens.admin, host), initialize)).status).toBe(200);
    expect((await raw(listed.url, 'POST', '/mcp', mcpHeaders(w.tokens.admin, { ...host, origin: 'https://console.example.test' }), initialize)).status).toBe(200);
    expect((await raw(listed.url, 'POST', '/mcp', mcpHeaders(w.tokens.admin, { ...host, origin: 'https://other.example.test' }), initialize)).status).toBe(403);
  });

  it('decides by the rules for non-loopback addresses and public URLs', () => {
    const req = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;
    const open = new RequestGuard({ listenHost: '0.0.0.0' });
    expect(open.checksHost).toBe(false);
    expect(open.check(req({ host: 'anything.test' }))).toBeNull();
    expect(open.check(req({ host: 'mcp.example.test', origin: 'https://mcp.example.test' }))).toBeNull();
    expect(open.check(req({ host: 'mcp.example.test', origin: 'https://evil.test' }))).toMatchObject({ error: 'forbidden_origin' });

    const pub = new RequestGuard({ listenHost: '0.0.0.0', publicUrl: 'https://mcp.example.test/', allowedHosts: ['mcp.example.test'] });
    expect(pub.check(req({ host: 'mcp.example.test' }))).toBeNull();
    expect(pub.check(req({ host: '10.1.2.3:3000' }))).toMatchObject({ error: 'forbidden_host' });
    // behind a proxy that keeps the public Host, the public origin is the server's own
    expect(pub.check(req({ host: 'mcp.example.test', origin: 'https://mcp.example.test' }))).toBeNull();
    expect(pub.check(req({ host: 'mcp.example.test', origin: 'https://mcp.example.test:444' }))).toMatchObject({ error: 'forbidden_origin' });

    const loop = new RequestGuard({ listenHost: '127.0.0.1', publicUrl: 'https://mcp.example.test' });
    expect(loop.check(req({ host: 'mcp.example.test' }))).toBeNull();
    expect(loop.check(req({ host: '127.0.0.2:3000' }))).toBeNull();
    expect(loop.check(req({ host: 'other.example.test' }))).toMatchObject({ error: 'forbidden_host' });
  });
});

describe('bad JSON-RPC over HTTP keeps the server answering', () => {
  it('arguments nested 100,000 levels deep get a clear isError, and the session keeps working', async () => {
    const init = await fetch(http.url, { method: 'POST', headers: mcpHeaders(w.tokens.admin), body: initialize });
    const sid = init.headers.get('mcp-session-id')!;
    await init.text();
    const headers = mcpHeaders(w.tokens.admin, { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' });
    await (await fetch(http.url, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) })).text();
    const deep = '{"a":'.repeat(100_000) + '1' + '}'.repeat(100_000);
    const body = `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{"x":${deep}}}}`;
    const r = await fetch(http.url, { method: 'POST', headers, body });
    const text = await r.text();
    expect(r.status).toBe(200);
    expect(text).toMatch(/nested more than 32 levels deep/);
    expect(text).toMatch(/"isError":true/);
    const who = await fetch(http.url, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'whoami', arguments: {} } }) });
    expect(await who.text()).toMatch(/admin@switchboard\.test/);
  });
});
