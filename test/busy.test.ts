import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildWorld, connect, data, text, type Session, type World } from './helpers/world.js';
import { holdDatabase } from './helpers/hold-database.js';
import { ToolGate } from '../src/mcp/tool-gate.js';
import { startHttp, type HttpHandle } from '../src/http/server.js';
import { loadConfig } from '../src/config.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

/**
 * The database pool exhausted by many slow calls (issue 12, item 3): calls past the gate's slots
 * get one clear "busy, retry" sentence while the slow ones are still stuck, never an unbounded
 * wait; the slow calls finish once the database frees up, and the server serves normally after.
 *
 * The slow calls are real: the tables every call reads are locked by another transaction (on
 * PostgreSQL, an ACCESS EXCLUSIVE lock from a connection of its own; on the embedded database, an
 * open transaction, which every other query waits behind), so the admitted calls hold their
 * database connections inside the database, as calls stuck behind a migration or a long report do.
 */

const SLOTS = 2;
const WAIT_MS = 300;
let w: World;
let sessions: Session[];
let http: HttpHandle;

beforeAll(async () => {
  w = await buildWorld();
  w.core.toolGate = new ToolGate(SLOTS, WAIT_MS);
  sessions = await Promise.all([w.tokens.admin, w.tokens.boringAdmin, w.tokens.acmeAdmin, w.tokens.boringViewer].map((t) => connect(w.core, t)));
  http = await startHttp({ core: w.core, database: w.database, port: 0, host: '127.0.0.1' });
});

afterAll(async () => {
  await http?.close();
  for (const s of sessions ?? []) await s.close();
  await w?.close();
});

describe('the pool exhausted by slow calls', () => {
  it('refuses calls past the slots with one retryable sentence while the slow ones are still stuck, then finishes them', async () => {
    const hold = await holdDatabase(w.database);
    let released = false;
    const slow = sessions.slice(0, SLOTS).map((s) => s.call('list_accounts').then((r) => ({ r, whileHeld: !released })));
    // let the slow calls take their slots (they are now waiting inside the database)
    await expect.poll(() => w.core.toolGate!.load.running).toBe(SLOTS);
    const refused = await Promise.all(sessions.slice(SLOTS).map((s) => s.call('whoami').then((r) => ({ r, whileHeld: !released }))));
    for (const { r, whileHeld } of refused) {
      // answered while the database was still held: a bounded wait, not a queue behind the slow calls
      expect(whileHeld).toBe(true);
      expect(r.isError).toBe(true);
      expect(text(r)).toMatch(/^The server is busy: all 2 of its tool-call slots stayed taken for 0\.3 s, so whoami was not started and nothing was done; try again in a few seconds\.$/);
    }
    expect(w.core.toolGate!.refused).toBe(2);
    // over HTTP the request's token check passes the same gate: refused with 503, Retry-After and the sentence
    const res = await fetch(http.url, {
      method: 'POST',
      headers: { authorization: `Bearer ${w.tokens.boringViewer}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
    });
    expect(released).toBe(false);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('2');
    expect(await res.json()).toEqual({ error: 'busy', message: 'The server is busy: all 2 of its tool-call slots stayed taken for 0.3 s, so this request was not started and nothing was done; try again in a few seconds.' });

    released = true;
    await hold.release();
    for (const { r } of await Promise.all(slow)) {
      expect(r.isError).toBeFalsy();
      expect((data<{ accounts: unknown[] }>(r).accounts ?? []).length).toBeGreaterThan(0);
    }
    // the refusals are counted on /metrics (the database is free again: the scrape reads the queue)
    const metrics = await (await fetch(new URL('/metrics', http.url))).text();
    expect(metrics).toMatch(/^switchboard_tool_calls_busy_total 3$/m);
    expect(metrics).toMatch(/^switchboard_tool_calls_running 0$/m);
    // the slots are free again: every session is served
    for (const s of sessions) expect((await s.call('whoami')).isError).toBeFalsy();
    expect(w.core.toolGate!.load).toEqual({ running: 0, waiting: 0 });
  });

  it('lets a waiting call in as soon as a slot frees up, first come first served', async () => {
    // a wait far longer than the slow calls take once the database is free: the waiter must get in, not time out
    const gate = (w.core.toolGate = new ToolGate(SLOTS, 60_000));
    const hold = await holdDatabase(w.database);
    const first = sessions[0]!.call('list_accounts');
    const second = sessions[1]!.call('list_accounts');
    await expect.poll(() => gate.load.running).toBe(SLOTS);
    const waiting = sessions[2]!.call('whoami');
    await expect.poll(() => gate.load.waiting).toBe(1);
    await hold.release();
    const results = await Promise.all([first, second, waiting]);
    for (const r of results) expect(r.isError).toBeFalsy();
  });
});

describe('whose share of the slots a call takes (src/mcp/tool-gate.ts shares them out)', () => {
  it('counts a call over HTTP against its customer (a linked child’s against its parent), its token check against the client address, and an in-memory call against its session', async () => {
    const keys: string[] = [];
    class Recording extends ToolGate {
      override enter(signal?: AbortSignal, key = '') {
        keys.push(key);
        return super.enter(signal, key);
      }
    }
    w.core.toolGate = new Recording(SLOTS, 60_000);
    const callOverHttp = async (token: string) => {
      const client = new Client({ name: 'busy-test', version: '1' });
      await client.connect(new StreamableHTTPClientTransport(new URL(http.url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
      expect((await client.callTool({ name: 'whoami', arguments: {} })).isError).toBeFalsy();
      await client.close();
    };
    // boringViewer is at home in boring; studioMember in acme's linked child studio1, so it counts as acme
    await callOverHttp(w.tokens.boringViewer);
    await callOverHttp(w.tokens.studioMember);
    expect(keys.filter((k) => k.startsWith('account:'))).toEqual([`account:${w.accounts.boring.id}`, `account:${w.accounts.acme.id}`]);
    expect(keys).toContain('address:127.0.0.1');
    expect(keys.every((k) => k === 'address:127.0.0.1' || k.startsWith('account:'))).toBe(true);

    expect((await sessions[0]!.call('whoami')).isError).toBeFalsy();
    // (a client's listening stream may still be checking its token: only the in-memory call's key is looked at)
    expect(keys.filter((k) => k.startsWith('session:'))).toHaveLength(1);
    expect(keys.find((k) => k.startsWith('session:'))).toMatch(/^session:[0-9a-f-]{36}$/);
    await expect.poll(() => w.core.toolGate!.load).toEqual({ running: 0, waiting: 0 });
  });
});

describe('the configuration', () => {
  it('sizes the slots below the pool, leaving connections to ingest, the workers and /readyz', () => {
    expect(loadConfig({})).toMatchObject({ dbPool: 10, toolSlots: 8, busyWaitMs: 5000 });
    expect(loadConfig({ SWITCHBOARD_DB_POOL: '4' })).toMatchObject({ dbPool: 4, toolSlots: 2 });
    expect(loadConfig({ SWITCHBOARD_DB_POOL: '2' })).toMatchObject({ toolSlots: 1 });
    expect(loadConfig({ SWITCHBOARD_TOOL_SLOTS: '30', SWITCHBOARD_BUSY_WAIT_MS: '250' })).toMatchObject({ toolSlots: 30, busyWaitMs: 250 });
    expect(() => loadConfig({ SWITCHBOARD_TOOL_SLOTS: '0' })).toThrow(/SWITCHBOARD_TOOL_SLOTS/);
  });
});
