import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { buildWorld, data, type World } from './helpers/world.js';
import { startHttp, type HttpHandle } from '../src/http/server.js';
import { CLI, cliEnv, repoRoot, runCli, spawnStdio, tempDataDir } from './helpers/spawn.js';
import { testDbKind } from './helpers/db.js';
import { revokeToken } from '../src/core/users.js';
import { createUser } from '../src/core/users.js';

let w: World;
let http: HttpHandle;
beforeAll(async () => {
  w = await buildWorld();
  http = await startHttp({ core: w.core, database: w.database, port: 0, host: '127.0.0.1' });
});
afterAll(async () => {
  await http.close();
  await w.close();
});

async function httpClient(token: string): Promise<{ client: Client; transport: StreamableHTTPClientTransport; call: (n: string, a?: object) => Promise<CallToolResult> }> {
  const transport = new StreamableHTTPClientTransport(new URL(http.url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
  const client = new Client({ name: 'switchboard-test', version: '1.0.0' });
  await client.connect(transport);
  return { client, transport, call: async (name, args = {}) => (await client.callTool({ name, arguments: args as Record<string, unknown> })) as CallToolResult };
}

const initialize = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};
const post = (body: unknown, headers: Record<string, string> = {}) =>
  fetch(http.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: JSON.stringify(body),
  });

describe('Streamable HTTP', () => {
  it('serves /healthz and /readyz', async () => {
    const base = http.url.replace(/\/mcp$/, '');
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready' });
  });

  it('answers 401 with WWW-Authenticate without a valid bearer token', async () => {
    for (const headers of [{}, { authorization: 'Bearer sbt_not-a-real-token' }, { authorization: 'Basic abc' }]) {
      const r = await post(initialize, headers);
      expect(r.status).toBe(401);
      expect(r.headers.get('www-authenticate')).toMatch(/^Bearer realm="switchboard"/);
      const body = await r.text();
      expect(body).not.toContain('sbt_not-a-real-token');
    }
  });

  it('serves several clients at once, each session with its own switch state', async () => {
    const a = await httpClient(w.tokens.switcher);
    const b = await httpClient(w.tokens.switcher);
    const c = await httpClient(w.tokens.boringAdmin);
    data(await a.call('switch_account', { account: 'acme-fitness', reason: 'http test' }));
    const [wa, wb, wc] = await Promise.all([a.call('whoami'), b.call('whoami'), c.call('whoami')]);
    expect(data<{ acting_account: { slug: string } }>(wa).acting_account.slug).toBe('acme-fitness');
    expect(data<{ acting_account: { slug: string } }>(wb).acting_account.slug).toBe('sandbox');
    expect(data<{ acting_account: { slug: string } }>(wc).acting_account.slug).toBe('boring-co');
    expect(http.sessionCount()).toBeGreaterThanOrEqual(3);
    for (const x of [a, b, c]) await x.client.close();
  });

  it('binds a session to the user who opened it', async () => {
    const a = await httpClient(w.tokens.switcher);
    const sessionId = a.transport.sessionId!;
    const r = await post({ jsonrpc: '2.0', id: 2, method: 'tools/list' }, { authorization: `Bearer ${w.tokens.boringViewer}`, 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' });
    expect(r.status).toBe(403);
    const unknown = await post({ jsonrpc: '2.0', id: 2, method: 'tools/list' }, { authorization: `Bearer ${w.tokens.switcher}`, 'mcp-session-id': 'nope' });
    expect(unknown.status).toBe(404);
    await a.client.close();
  });

  it('caps the sessions one user holds open, closing the least recently used', async () => {
    const u = await createUser(w.core, { email: 'many-sessions@switchboard.test', name: 'M', account: w.accounts.boring, role: 'member' });
    const first = await httpClient(u.token);
    const firstId = first.transport.sessionId!;
    const others = [];
    for (let i = 0; i < 32; i++) others.push(await httpClient(u.token));
    const r = await post({ jsonrpc: '2.0', id: 9, method: 'tools/list' }, { authorization: `Bearer ${u.token}`, 'mcp-session-id': firstId, 'mcp-protocol-version': '2025-06-18' });
    expect(r.status).toBe(404);
    data(await others[31]!.call('whoami'));
    for (const o of others) await o.client.close();
  });

  it('refuses the next request after the token is revoked', async () => {
    const u = await createUser(w.core, { email: 'http-revoke@switchboard.test', name: 'H', account: w.accounts.boring, role: 'member' });
    const a = await httpClient(u.token);
    data(await a.call('whoami'));
    await revokeToken(w.core, u.tokenId);
    await expect(a.call('whoami')).rejects.toThrow();
    const r = await post(initialize, { authorization: `Bearer ${u.token}` });
    expect(r.status).toBe(401);
  });

  it('refuses a Host other than localhost on a loopback address (DNS rebinding)', async () => {
    const { port } = new URL(http.url);
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/mcp', method: 'POST', headers: { host: `evil.example:${port}`, authorization: `Bearer ${w.tokens.admin}`, 'content-type': 'application/json' } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      req.end(JSON.stringify(initialize));
    });
    expect(status).toBe(403);
  });

  it('refuses bodies over 1 MiB', async () => {
    const r = await fetch(http.url, { method: 'POST', headers: { authorization: `Bearer ${w.tokens.admin}`, 'content-type': 'application/json' }, body: 'x'.repeat(1024 * 1024 + 10) });
    expect(r.status).toBe(413);
    data(await (await httpClient(w.tokens.admin)).call('whoami'));
  });

  it('rejects malformed bodies with a clear error and keeps serving', async () => {
    const r = await fetch(http.url, { method: 'POST', headers: { authorization: `Bearer ${w.tokens.admin}`, 'content-type': 'application/json' }, body: '{not json' });
    expect(r.status).toBe(400);
    const ok = await httpClient(w.tokens.admin);
    data(await ok.call('whoami'));
    await ok.client.close();
  });
});

describe('switchboard serve', () => {
  it('starts (initializing a fresh embedded database), serves MCP over HTTP, and stops cleanly on SIGTERM', async () => {
    const dataDir = tempDataDir();
    const env =
      testDbKind() === 'postgres'
        ? cliEnv({ DATABASE_URL: w.database.url, PORT: '0', LOG_LEVEL: 'info' })
        : cliEnv({ SWITCHBOARD_DATA_DIR: dataDir, PORT: '0', LOG_LEVEL: 'info' });
    const child = spawn(process.execPath, [...CLI, 'serve'], { env, cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    const url = await new Promise<string>((resolve, reject) => {
      child.stderr.on('data', (c: Buffer) => {
        stderr += c.toString();
        const m = /Switchboard MCP endpoint: (\S+)/.exec(stderr);
        if (m) resolve(m[1]!);
      });
      child.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
    });
    const token = testDbKind() === 'postgres' ? w.tokens.boringAdmin : readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
    const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
    const client = new Client({ name: 'switchboard-test', version: '1.0.0' });
    await client.connect(transport);
    const who = data<{ user: { email: string } }>((await client.callTool({ name: 'whoami', arguments: {} })) as CallToolResult);
    expect(who.user.email).toBe(testDbKind() === 'postgres' ? 'boringadmin@switchboard.test' : 'admin@switchboard.local');
    if (testDbKind() === 'pglite') {
      // the first start seeded the demo world
      const acme = data<{ account: { children_total: number } }>((await client.callTool({ name: 'get_account', arguments: { account: 'acme-fitness' } })) as CallToolResult);
      expect(acme.account.children_total).toBe(30);
    }
    await client.close();
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr).not.toContain(token);
    if (testDbKind() === 'pglite') expect(existsSync(join(dataDir, 'switchboard.lock'))).toBe(false);
  });
});

describe('stdio', () => {
  it('serves the user of SWITCHBOARD_TOKEN, keeping stdout for the protocol', async () => {
    let env: Record<string, string>;
    let expectedEmail: string;
    if (testDbKind() === 'postgres') {
      env = cliEnv({ DATABASE_URL: w.database.url, SWITCHBOARD_TOKEN: w.tokens.boringAdmin, LOG_LEVEL: 'info' });
      expectedEmail = 'boringadmin@switchboard.test';
    } else {
      // a fresh embedded database initializes itself on first start; its admin token is in a 0600 file
      env = cliEnv({ SWITCHBOARD_DATA_DIR: tempDataDir(), SWITCHBOARD_ADMIN_EMAIL: 'first@switchboard.test', LOG_LEVEL: 'info' });
      expectedEmail = 'first@switchboard.test';
    }
    const s = await spawnStdio(env);
    const tools = await s.client.listTools();
    expect(tools.tools.map((t) => t.name)).toContain('switch_account');
    const who = (await s.client.callTool({ name: 'whoami', arguments: {} })) as CallToolResult;
    expect(data<{ user: { email: string } }>(who).user.email).toBe(expectedEmail);
    await s.close();
    // logs went to stderr as JSON lines, and none of them carries the token
    expect(s.stderr()).toMatch(/"msg":"switchboard stdio ready"/);
    if (testDbKind() === 'pglite') {
      const file = join(env.SWITCHBOARD_DATA_DIR!, 'admin-token');
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(s.stderr()).not.toContain(readFileSync(file, 'utf8').trim());
    } else {
      expect(s.stderr()).not.toContain(w.tokens.boringAdmin);
    }
  });

  it('refuses to start with an invalid token, saying so', async () => {
    const env =
      testDbKind() === 'postgres'
        ? cliEnv({ DATABASE_URL: w.database.url, SWITCHBOARD_TOKEN: 'sbt_wrong' })
        : cliEnv({ SWITCHBOARD_DATA_DIR: tempDataDir(), SWITCHBOARD_TOKEN: 'sbt_wrong' });
    const r = await runCli(['stdio'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/SWITCHBOARD_TOKEN is not a valid API token/);
    expect(r.stdout).toBe('');
  });
});
