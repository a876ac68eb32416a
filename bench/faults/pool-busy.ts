import postgres from 'postgres';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { initialize } from '../../src/core/tenants.js';
import { check, freePort, mcpOverHttp, startCli, stop, until, withDatabase, type FaultContext, type FaultCounts, type Scenario, type Spawned } from './harness.js';

/**
 * The database pool exhausted by slow calls (issue 12, item 3), against a spawned `serve` on
 * PostgreSQL: the tables every call reads are locked by another connection, so the calls that get
 * a slot wait inside the database holding their connections; the rest must be refused with the
 * "busy, retry" sentence within the wait bound (SWITCHBOARD_BUSY_WAIT_MS), never queue without
 * end; once the lock is released the slow calls finish, and the server serves again.
 * test/busy.test.ts checks the same in-process on both databases.
 *
 * Counts: calls made; answered while the database was held (the refusals); answered in all;
 * lost (never answered). PostgreSQL only: the lock needs a second connection.
 */

const SLOTS = 4;
const WAIT_MS = 1000;
const CALLS = 20;

export async function poolBusy(ctx: FaultContext): Promise<FaultCounts & { refusedWithinMs: number }> {
  const url = ctx.target.env.DATABASE_URL;
  if (ctx.target.kind !== 'postgres' || !url) throw new Error('the pool scenario runs on PostgreSQL: it locks tables from a second connection');
  const say = ctx.log ?? (() => {});
  const token = await withDatabase(ctx.target, async (database) => (await initialize(database.db, { adminEmail: 'faults@switchboard.test', switchMinutes: 30 })).token);
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const serve: Spawned = startCli(ctx, ['serve'], {
    DATABASE_URL: url,
    PORT: String(port),
    HOST: '127.0.0.1',
    SWITCHBOARD_DB_POOL: String(SLOTS + 2),
    SWITCHBOARD_TOOL_SLOTS: String(SLOTS),
    SWITCHBOARD_BUSY_WAIT_MS: String(WAIT_MS),
    SWITCHBOARD_WORKERS: '1',
  });
  const clients: Client[] = [];
  const locker = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await until('serve to answer /readyz', () => fetch(`${origin}/readyz`).then((r) => r.status, () => 0), (s) => s === 200, 60_000, 100);
    for (let i = 0; i < CALLS; i++) {
      clients.push(await mcpOverHttp(origin, token));
    }
    // hold the tables every tool call reads
    let free!: () => void;
    const freed = new Promise<void>((r) => (free = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const held = locker.begin(async (t) => {
      await t`lock table accounts, users, api_tokens, memberships in access exclusive mode`;
      locked();
      await freed;
    });
    await isLocked;
    say(`tables locked; ${CALLS} sessions call list_accounts at once against ${SLOTS} slots (busy wait ${WAIT_MS} ms)`);
    let released = false;
    const started = performance.now();
    const outcomes = await new Promise<{ text: string; isError: boolean; ms: number; whileHeld: boolean }[]>((resolve) => {
      const all = clients.map((c) =>
        (c.callTool({ name: 'list_accounts', arguments: {} }, undefined, { timeout: 60_000 }) as Promise<CallToolResult>).then(
          (r) => ({ text: r.content.map((x) => (x.type === 'text' ? x.text : '')).join(''), isError: Boolean(r.isError), ms: performance.now() - started, whileHeld: !released }),
          (err: unknown) => ({ text: `thrown: ${(err as Error).message}`, isError: true, ms: performance.now() - started, whileHeld: !released }),
        ),
      );
      // release the lock once every call past the slots has been answered (or after 20 s, whichever first)
      let answered = 0;
      const release = () => {
        if (released) return;
        released = true;
        say(`releasing the lock after ${Math.round(performance.now() - started)} ms`);
        free();
      };
      const cap = setTimeout(release, 20_000);
      for (const p of all) void p.then(() => ++answered >= CALLS - SLOTS && release());
      void Promise.all(all).then((r) => {
        clearTimeout(cap);
        resolve(r);
      });
    });
    await held;
    // refused at the tool call (an isError result) or at the request's token check (HTTP 503, whose body the SDK's error carries)
    const busy = outcomes.filter((o) => o.isError && /The server is busy: .* try again in a few seconds\./.test(o.text));
    const refusedWithinMs = Math.max(0, ...busy.map((o) => o.ms));
    const ok = outcomes.filter((o) => !o.isError);
    const other = outcomes.filter((o) => o.isError && !busy.includes(o));
    const after = await clients[0]!.callTool({ name: 'whoami', arguments: {} });
    return {
      unit: 'calls',
      total: CALLS,
      doneAtKill: outcomes.filter((o) => o.whileHeld).length,
      doneAfterRerun: outcomes.length,
      duplicates: 0,
      lost: CALLS - outcomes.length,
      refusedWithinMs,
      checks: [
        check(busy.length === CALLS - SLOTS && busy.every((o) => o.whileHeld), `the ${CALLS - SLOTS} calls past the ${SLOTS} slots were refused as busy while the tables were still locked (${busy.length}; the last after ${Math.round(refusedWithinMs)} ms, bound ${WAIT_MS} ms + the call's own round trip)`),
        check(ok.length === SLOTS && ok.every((o) => !o.whileHeld), `the ${SLOTS} slow calls finished once the lock was released (${ok.length})`),
        check(other.length === 0, `no other answer (${other.length}${other.length ? `: ${other[0]!.text.slice(0, 200)}` : ''})`),
        check(!after.isError, 'the server serves normally afterwards'),
      ],
    };
  } finally {
    for (const c of clients) await c.close().catch(() => {});
    await locker.end({ timeout: 0 });
    await stop(serve);
  }
}

export const poolBusyScenario: Scenario = {
  id: 'pool',
  name: 'the database pool exhausted by slow calls',
  about: `tables locked under serve (${SLOTS} tool slots, busy wait ${WAIT_MS} ms) while ${CALLS} sessions call at once; then released`,
  run: (ctx) => poolBusy(ctx),
};
