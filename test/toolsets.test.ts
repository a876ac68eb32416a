import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { sql } from 'drizzle-orm';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ToolListChangedNotificationSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { buildWorld, connect, data, text, type World } from './helpers/world.js';
import { startHttp, type HttpHandle } from '../src/http/server.js';
import { newSession } from '../src/mcp/session.js';
import { allTools, createMcpServer } from '../src/mcp/server.js';
import { defineTool } from '../src/mcp/define-tool.js';
import { DEFAULT_TOOLSETS, parseToolsets, TOOLSET_NAMES } from '../src/mcp/toolsets.js';
import { authenticate } from '../src/core/users.js';
import { rowsOf } from '../src/db/client.js';
import { BoundedEventStore } from '../src/http/event-store.js';
import { runCli, cliEnv } from './helpers/spawn.js';

/**
 * Toolsets and read-only mode: what a session lists, what it may call, how the model turns a
 * toolset on (and the client hears the list changed), the HTTP and CLI settings, and that a
 * read-only session's tools run in read-only transactions. The listing of each toolset and mode is
 * kept in __snapshots__/surface.json: a change to the surface is a visible diff.
 */

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

const names = async (c: Client) => (await c.listTools()).tools.map((t) => t.name).sort();

async function httpClient(query: string, headers: Record<string, string> = {}) {
  const transport = new StreamableHTTPClientTransport(new URL(`${http.url}${query}`), { requestInit: { headers: { Authorization: `Bearer ${w.tokens.admin}`, ...headers } } });
  const client = new Client({ name: 'toolsets-test', version: '1.0.0' });
  await client.connect(transport);
  return { client, call: async (name: string, args: Record<string, unknown> = {}) => (await client.callTool({ name, arguments: args })) as CallToolResult };
}

describe('toolsets', () => {
  it('keeps the listing of every toolset and mode in one snapshot', async () => {
    const surface: Record<string, { tools: string[]; read_only: string[] }> = {};
    for (const t of ['default', ...TOOLSET_NAMES]) {
      const set = parseToolsets(t);
      const of = (readOnly: boolean) =>
        allTools.filter((x) => (x.toolset === 'discovery' || set.has(x.toolset as never)) && (!readOnly || x.readOnly)).map((x) => x.name);
      surface[t] = { tools: of(false), read_only: of(true) };
    }
    // every tool is in exactly one toolset (or discovery)
    const all = allTools.filter((x) => x.toolset !== 'discovery').map((x) => x.name);
    expect(TOOLSET_NAMES.flatMap((t) => surface[t]!.tools.filter((n) => all.includes(n))).sort()).toEqual([...all].sort());
    await expect(JSON.stringify(surface, null, 2) + '\n').toMatchFileSnapshot('./__snapshots__/surface.json');
  });

  it('lists the default toolsets and discovery; a tool of another toolset is refused with what to do', async () => {
    const s = await connect(w.core, w.tokens.admin, newSession());
    const listed = await names(s.client);
    expect(listed).toEqual(allTools.filter((t) => t.toolset === 'discovery' || DEFAULT_TOOLSETS.includes(t.toolset as never)).map((t) => t.name).sort());
    expect(listed).toContain('check_health');
    expect(listed).not.toContain('create_automation');
    const r = await s.call('list_automations', {});
    expect(r.isError).toBe(true);
    expect(text(r)).toBe("list_automations is in the toolset 'automations', which this session has not turned on: call enable_toolset with toolset 'automations' first.");
    // audited like any refused call
    const [entry] = rowsOf<{ outcome: string; message: string }>(await w.core.db.execute(sql`select outcome, message from audit_log where tool = 'list_automations' and session_id = ${s.session.id}`));
    expect(entry).toMatchObject({ outcome: 'error' });
    await s.close();
  });

  it('turns a toolset on when the model asks, and tells the client the list changed', async () => {
    const s = await connect(w.core, w.tokens.admin, newSession());
    let changed = 0;
    s.client.setNotificationHandler(ToolListChangedNotificationSchema, () => void changed++);
    const before = data<{ toolsets: { name: string; enabled: boolean; tools: string[] }[] }>(await s.call('list_toolsets'));
    expect(before.toolsets.filter((t) => t.enabled).map((t) => t.name)).toEqual([...DEFAULT_TOOLSETS]);
    expect(before.toolsets.find((t) => t.name === 'templates')!.tools).toContain('deploy_template');
    const on = data<{ added: string[]; enabled: string[] }>(await s.call('enable_toolset', { toolset: 'automations' }));
    expect(on.added).toEqual(['automations']);
    await new Promise((r) => setTimeout(r, 50));
    expect(changed).toBe(1);
    expect(await names(s.client)).toContain('create_automation');
    expect((await s.call('list_automations', { account: 'boring-co' })).isError).toBeFalsy();
    // again: nothing added, no notification
    expect(data<{ added: string[] }>(await s.call('enable_toolset', { toolset: 'automations' })).added).toEqual([]);
    expect(text(await s.call('enable_toolset', { toolset: 'everything' }))).toBe("Unknown toolset 'everything': the toolsets are accounts, directory, operations, automations, connections, templates, audit, admin (or all, default).");
    await new Promise((r) => setTimeout(r, 50));
    expect(changed).toBe(1);
    await s.close();
  });

  it('takes the toolsets and read-only from the HTTP session: query, header, and a clear 400 for an unknown toolset', async () => {
    const a = await httpClient('?toolsets=templates');
    expect(await names(a.client)).toEqual(allTools.filter((t) => t.toolset === 'discovery' || t.toolset === 'templates').map((t) => t.name).sort());
    await a.client.close();
    const b = await httpClient('', { 'x-switchboard-toolsets': 'audit,accounts', 'x-switchboard-read-only': 'true' });
    const listed = await names(b.client);
    expect(listed).toContain('audit_log');
    expect(listed).not.toContain('switch_account');
    await b.client.close();
    const bad = await fetch(`${http.url}?toolsets=nope`, {
      method: 'POST',
      headers: { authorization: `Bearer ${w.tokens.admin}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(/^Unknown toolset 'nope'/);
  });

  it('serves the conformance mode on loopback only', async () => {
    const r = await runCli(['serve', '--conformance'], cliEnv({ HOST: '0.0.0.0', PORT: '0' }));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--conformance serves only on a loopback HOST/);
  });

  it('takes no object property for a toolset', () => {
    for (const w of ['__proto__', 'constructor', 'toString']) expect(() => parseToolsets(w)).toThrow(`Unknown toolset '${w.toLowerCase()}'`);
  });

  it('in conformance mode, acts as the demo user only for a request with no Authorization header at all', async () => {
    const h = await startHttp({ core: w.core, database: w.database, port: 0, host: '127.0.0.1', anonymousToken: w.tokens.boringViewer, surface: { readOnly: true } });
    try {
      const init = (headers: Record<string, string>) =>
        fetch(h.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
          body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
        });
      expect((await init({})).status).toBe(200);
      for (const authorization of ['Basic abc', 'Bearer', 'Bearer a b', 'Bearer sbt_unknown']) expect((await init({ authorization })).status, authorization).toBe(401);
    } finally {
      await h.close();
    }
  });

  it('refuses an unknown toolset on the command line before starting', async () => {
    const r = await runCli(['stdio', '--toolsets', 'accounts,bogus'], cliEnv({ SWITCHBOARD_TOKEN: 'sbt_unused' }));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Unknown toolset 'bogus'/);
  });
});

describe('read-only mode', () => {
  it('lists only read-only tools and refuses the others with one sentence, audited as denied', async () => {
    const s = await connect(w.core, w.tokens.admin, newSession(undefined, { toolsets: new Set(TOOLSET_NAMES), readOnly: true }));
    const listed = await names(s.client);
    expect(listed).toEqual(allTools.filter((t) => t.readOnly).map((t) => t.name).sort());
    expect(listed).toContain('enable_toolset');
    // a read-only tool that keeps records of its own is not offered either
    expect(listed).not.toContain('view_connection_info');
    expect(text(await s.call('view_connection_info', { account: 'boring-co', connection: 'stripe' }))).toBe(
      'Access denied: this session is read-only, and view_connection_info records what it asks the person (a page request, password attempts).',
    );
    const r = await s.call('create_account', { name: 'Not in read-only' });
    expect(text(r)).toBe('Access denied: this session is read-only, and create_account changes things.');
    const [entry] = rowsOf<{ outcome: string }>(await w.core.db.execute(sql`select outcome from audit_log where tool = 'create_account' and session_id = ${s.session.id}`));
    expect(entry).toMatchObject({ outcome: 'denied' });
    expect(rowsOf(await w.core.db.execute(sql`select 1 from accounts where name = 'Not in read-only'`))).toEqual([]);
    // reads work, with an explicit account (switching is a change)
    expect(data<{ accounts: unknown[] }>(await s.call('list_accounts', {})).accounts.length).toBeGreaterThan(0);
    expect((await s.call('check_health', { account: 'boring-co' })).isError).toBeFalsy();
    await s.close();
  });

  it("runs a read-only session's tools in a read-only transaction: even a tool that tries to write cannot", async () => {
    // a tool that claims to read but writes: the database refuses it in a read-only session
    const liar = defineTool({
      name: 'claims_to_read',
      toolset: 'accounts',
      title: 'Claims to read',
      description: 'A test tool marked read-only that writes to the database anyway, to show the transaction refuses it.',
      input: {},
      output: { ok: z.boolean() },
      annotations: { readOnlyHint: true },
      access: { role: 'viewer' },
      async handler(ctx) {
        await ctx.core.db.execute(sql`update accounts set name = 'Written by a liar' where id = ${ctx.account.id}::uuid`);
        return { data: { ok: true }, text: 'wrote' };
      },
    });
    const serve = async (readOnly: boolean) => {
      const session = newSession(undefined, { toolsets: new Set(TOOLSET_NAMES), readOnly });
      const server = createMcpServer({ core: w.core, session, tools: [liar], authenticate: () => authenticate(w.core, w.tokens.boringAdmin) });
      const [c, s] = InMemoryTransport.createLinkedPair();
      await server.connect(s);
      const client = new Client({ name: 't', version: '1' });
      await client.connect(c);
      const r = (await client.callTool({ name: 'claims_to_read', arguments: {} })) as CallToolResult;
      await client.close();
      return r;
    };
    const refused = await serve(true);
    expect(refused.isError).toBe(true);
    expect(text(refused)).toMatch(/^Internal error in claims_to_read \(audit entry \d+\); nothing was changed/);
    expect(rowsOf(await w.core.db.execute(sql`select 1 from accounts where name = 'Written by a liar'`))).toEqual([]);
    // the same tool in a session that is not read-only does write: the refusal above was the transaction's
    expect((await serve(false)).isError).toBeFalsy();
    expect(rowsOf(await w.core.db.execute(sql`select 1 from accounts where name = 'Written by a liar'`))).toHaveLength(1);
  });
});

describe('protocol', () => {
  it('offers the logging capability: logging/setLevel is answered', async () => {
    const s = await connect(w.core, w.tokens.admin);
    expect(s.client.getServerCapabilities()).toMatchObject({ logging: {}, tools: { listChanged: true } });
    await expect(s.client.setLoggingLevel('warning')).resolves.toEqual({});
    // the instructions tell the model where the tools it does not see are
    expect(s.client.getInstructions()).toMatch(/list_toolsets shows them, enable_toolset turns one on\. In output schemas, an object without a `required` list has every field in every result \(null when it has no value\)\.$/);
    await s.close();
  });

  it('resumes an SSE stream: a client reconnecting with Last-Event-ID gets what was sent while it was away', async () => {
    const headers = { authorization: `Bearer ${w.tokens.admin}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const init = await fetch(`${http.url}?toolsets=accounts`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
    });
    const sid = init.headers.get('mcp-session-id')!;
    await init.text();
    const withSession = { ...headers, 'mcp-session-id': sid };
    const post = async (id: number, method: string, params: object) =>
      (await fetch(http.url, { method: 'POST', headers: withSession, body: JSON.stringify({ jsonrpc: '2.0', id, method, params }) })).text();
    await fetch(http.url, { method: 'POST', headers: withSession, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) });
    // the standalone stream: notifications not tied to a request (tools/list_changed) arrive on it
    const listen = async (extra: Record<string, string> = {}) => {
      const ctrl = new AbortController();
      const res = await fetch(http.url, { method: 'GET', headers: { ...withSession, accept: 'text/event-stream', ...extra }, signal: ctrl.signal });
      expect(res.status).toBe(200);
      const reader = res.body!.getReader();
      let buffer = '';
      const next = async (): Promise<{ id: string; data: string }> => {
        for (;;) {
          const end = buffer.indexOf('\n\n');
          if (end >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const id = /^id: ?(.*)$/m.exec(block)?.[1];
            const data = /^data: ?(.*)$/m.exec(block)?.[1];
            if (id && data) return { id, data };
            continue;
          }
          const { value, done } = await reader.read();
          if (done) throw new Error('the stream ended');
          buffer += new TextDecoder().decode(value);
        }
      };
      return { next, close: () => ctrl.abort() };
    };
    const first = await listen();
    await post(2, 'tools/call', { name: 'enable_toolset', arguments: { toolset: 'audit' } });
    const seen = await first.next();
    expect(JSON.parse(seen.data)).toMatchObject({ method: 'notifications/tools/list_changed' });
    first.close();
    await new Promise((r) => setTimeout(r, 100));
    // while nobody listens, the list changes again
    await post(3, 'tools/call', { name: 'enable_toolset', arguments: { toolset: 'admin' } });
    const again = await listen({ 'last-event-id': seen.id });
    const missed = await again.next();
    expect(JSON.parse(missed.data)).toMatchObject({ method: 'notifications/tools/list_changed' });
    expect(missed.id).not.toBe(seen.id);
    again.close();
  });

  it('keeps a bounded number of events per session, the oldest dropped first, each stream replayed alone', async () => {
    const store = new BoundedEventStore(3);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await store.storeEvent('s', { jsonrpc: '2.0', method: 'm', params: { i } }));
    await store.storeEvent('other', { jsonrpc: '2.0', method: 'm', params: { i: 99 } });
    expect(store.size).toBe(3);
    const got: unknown[] = [];
    expect(await store.replayEventsAfter(ids[0]!, { send: async (_id, m) => void got.push((m as { params: { i: number } }).params.i) })).toBe('s');
    expect(got).toEqual([3, 4]);
    expect(await store.getStreamIdForEventId('not-an-event-id')).toBeUndefined();
    // only streams it issued and still holds: a made-up stream or a future event is refused
    expect(await store.getStreamIdForEventId('made-up.1')).toBeUndefined();
    expect(await store.getStreamIdForEventId('s.999')).toBeUndefined();
    expect(await store.getStreamIdForEventId(ids[4]!)).toBe('s');
  });
});

