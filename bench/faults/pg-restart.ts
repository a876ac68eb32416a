import { sql } from 'drizzle-orm';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { openDatabase, rowsOf } from '../../src/db/client.js';
import { uuidList } from '../../src/db/arrays.js';
import { initialize } from '../../src/core/tenants.js';
import { createAccount } from '../../src/core/accounts.js';
import { createAutomation } from '../../src/core/automations.js';
import { webhookPath, webhookToken } from '../../src/core/webhooks.js';
import { Keyring, newMasterKey } from '../../src/core/keyring.js';
import type { Core } from '../../src/core/core.js';
import { check, freePort, mcpOverHttp, sleep, startCli, stop, until, type FaultContext, type FaultCounts, type Scenario, type Spawned } from './harness.js';
import { privatePostgres } from './private-postgres.js';

/**
 * PostgreSQL restarted under load (issue 12, item 3). `switchboard serve` runs on a PostgreSQL
 * cluster of its own (bench/faults/private-postgres.ts) with webhooks arriving from several
 * senders and MCP sessions calling tools over HTTP; the cluster is stopped (`pg_ctl stop -m fast`:
 * every session terminated, as in a restart or failover), kept down a while, and started again.
 *
 * Counted: deliveries answered 2xx before the stop and in all, and how many of those are in the
 * database afterwards, each with exactly one run, all finished (the worker picked up again by
 * itself); what webhook senders and tool calls got meanwhile. Checked:
 *   - /readyz said 503 (database) while the cluster was down, and 200 again after, without a restart of serve;
 *   - every tool call answered: a result, or one sentence that says to try again (an isError
 *     result, or the HTTP 503 whose body says so), never "Internal error", never a hang (each call
 *     has a client-side timeout far above the server's bounds, and none reached it);
 *   - webhooks refused meanwhile were refused with 503 and Retry-After (a sender retries), never a 500;
 *   - after the restart every session's calls succeed again.
 */

export interface PgRestartOptions {
  /** how long load runs before the stop, while the cluster is down, and after it is back (ms) */
  before?: number;
  down?: number;
  after?: number;
  senders?: number;
  sessions?: number;
  /** the client-side timeout of each tool call: a call that reaches it counts as hung */
  callTimeoutMs?: number;
}

export interface PgRestartCounts extends FaultCounts {
  calls: { ok: number; retryable: number; other: string[]; hung: number };
  webhookRefusals: Record<string, number>;
  readyDuringOutage: number[];
}

const CALL_TIMEOUT_MS = 30_000;

export async function pgRestart(ctx: FaultContext, opts: PgRestartOptions = {}): Promise<PgRestartCounts> {
  const { before = 1500, down = 2500, after = 1500, senders = 6, sessions = 4 } = opts;
  const callTimeout = opts.callTimeoutMs ?? CALL_TIMEOUT_MS;
  const say = ctx.log ?? (() => {});
  const cluster = await privatePostgres();
  let serve: Spawned | null = null;
  const clients: Client[] = [];
  try {
    // the world, before serve starts: a tenant, a customer, an automation run by webhook
    const master = newMasterKey();
    const setup = await openDatabase({ url: cluster.url, max: 2 });
    let token: string;
    let hookPath: string;
    try {
      await setup.migrate();
      const init = await initialize(setup.db, { adminEmail: 'faults@switchboard.test', switchMinutes: 30 });
      const core: Core = { db: setup.db, tenantId: init.tenant.id, switchMinutes: 30, keys: new Keyring(master), secretArgs: true };
      const account = await createAccount(core, { name: 'Restart Co', slug: 'restart-co' });
      const { row } = await createAutomation(core, account, {
        name: 'Orders',
        createdBy: null,
        definition: { trigger: { type: 'webhook', dedupe: null }, routing: null, retries: { max: 5 }, steps: [{ id: 'shape', kind: 'transform', value: { order: '{{ trigger.body.i }}' } }] },
      });
      token = init.token;
      hookPath = webhookPath(webhookToken(core, row));
    } finally {
      await setup.close();
    }

    const port = await freePort();
    const origin = `http://127.0.0.1:${port}`;
    serve = startCli(ctx, ['serve'], {
      DATABASE_URL: cluster.url,
      SWITCHBOARD_MASTER_KEY: master.toString('base64'),
      PORT: String(port),
      HOST: '127.0.0.1',
      SWITCHBOARD_WORKERS: '2',
      // runs in flight at the stop could not record their end: they are taken back once their lease
      // lapses (30 s by default), here after 3 s so the drain afterwards is short
      SWITCHBOARD_LEASE_SECONDS: '3',
      LOG_LEVEL: 'error',
    });
    await until('serve to answer /readyz', () => fetch(`${origin}/readyz`).then((r) => r.status, () => 0), (s) => s === 200, 60_000, 100);
    say(`serve is ready on ${origin} over a private PostgreSQL (${new URL(cluster.url).port})`);

    for (let i = 0; i < sessions; i++) {
      clients.push(await mcpOverHttp(origin, token));
    }

    // the load: senders retry a delivery until it is answered 2xx, as providers do; sessions call tools
    let running = true;
    let phase: 'before' | 'down' | 'after' = 'before';
    const acked: { id: string; phase: string }[] = [];
    const webhookRefusals: Record<string, number> = {};
    const calls = { ok: 0, retryable: 0, other: [] as string[], hung: 0 };
    let next = 0;
    const sender = async () => {
      while (running) {
        const i = next++;
        for (;;) {
          try {
            const res = await fetch(origin + hookPath, { method: 'POST', body: JSON.stringify({ i }), headers: { 'content-type': 'application/json' } });
            const body = (await res.json().catch(() => ({}))) as { delivery_id?: string };
            if (res.ok && body.delivery_id) {
              acked.push({ id: body.delivery_id, phase });
              break;
            }
            const key = `${res.status}${res.headers.get('retry-after') ? ' retry-after' : ''}`;
            webhookRefusals[key] = (webhookRefusals[key] ?? 0) + 1;
          } catch {
            webhookRefusals['no answer'] = (webhookRefusals['no answer'] ?? 0) + 1;
          }
          if (!running) return;
          await sleep(100);
        }
      }
    };
    const caller = async (client: Client, n: number) => {
      const tools = ['whoami', 'list_accounts', 'get_account'];
      for (let k = 0; running; k++) {
        const name = tools[(n + k) % tools.length]!;
        try {
          const r = (await client.callTool({ name, arguments: name === 'get_account' ? { account: 'restart-co' } : {} }, undefined, { timeout: callTimeout })) as CallToolResult;
          const text = r.content.map((c) => (c.type === 'text' ? c.text : '')).join('');
          if (!r.isError) calls.ok += 1;
          else if (/try again in a few seconds/.test(text) && !/internal error/i.test(text)) calls.retryable += 1;
          else calls.other.push(`${name}: ${text}`);
        } catch (err) {
          const message = (err as Error).message;
          if (/timed out/i.test(message)) calls.hung += 1;
          // the SDK's error for an HTTP answer that is not 2xx carries its body: serve's 503 says to retry
          else if (/"error":"unavailable"/.test(message) && /retry in a few seconds/.test(message)) calls.retryable += 1;
          else calls.other.push(`${name}: ${message}`);
          await sleep(100);
        }
      }
    };
    const load = Promise.all([...Array.from({ length: senders }, sender), ...clients.map(caller)]);

    await sleep(before);
    const ackedBefore = acked.length;
    say(`stopping PostgreSQL after ${ackedBefore} acknowledged deliveries`);
    phase = 'down';
    await cluster.stop();
    // while it is down: /readyz must say so (it is polled the whole time)
    const readyDuringOutage: number[] = [];
    const downUntil = Date.now() + down;
    while (Date.now() < downUntil) {
      readyDuringOutage.push(await fetch(`${origin}/readyz`).then((r) => r.status, () => 0));
      await sleep(200);
    }
    say(`starting PostgreSQL again; /readyz answered ${[...new Set(readyDuringOutage)].join(', ')} meanwhile`);
    await cluster.start();
    phase = 'after';
    const readyAgain = await until('/readyz to say ready again', () => fetch(`${origin}/readyz`).then((r) => r.status, () => 0), (s) => s === 200, 60_000, 100)
      .then(() => true, () => false);
    const okBeforeAfter = calls.ok;
    await sleep(after);
    running = false;
    await load;
    const okAfter = calls.ok - okBeforeAfter;
    const serveAlive = serve.child.exitCode === null && serve.child.signalCode === null;
    const serveExit = `code ${serve.child.exitCode}, signal ${serve.child.signalCode}`;
    say(`load stopped: ${acked.length} deliveries acknowledged, ${calls.ok} tool calls answered, ${calls.retryable} refused as retryable`);

    // afterwards, in the database: every acknowledged delivery, each with one finished run
    const database = await openDatabase({ url: cluster.url, max: 2 });
    let found: Map<string, { runs: number; finished: number }>;
    try {
      const ids = acked.map((a) => a.id);
      const counts = async () => {
        const rows = rowsOf<{ id: string; runs: number; finished: number }>(
          await database.db.execute(sql`
            select d.id::text, count(e.id)::int as runs, count(e.id) filter (where e.status in ('succeeded', 'failed'))::int as finished
            from webhook_deliveries d left join executions e on e.delivery_id = d.id and e.source = 'webhook'
            where d.id = any(${uuidList(ids)}::uuid[]) group by d.id`),
        );
        return new Map(rows.map((r) => [r.id, { runs: Number(r.runs), finished: Number(r.finished) }]));
      };
      found = await until('every acknowledged delivery to be run', counts, (m) => [...m.values()].every((v) => v.finished >= 1), 60_000, 250).catch(() => counts());
    } finally {
      await database.close();
    }
    const recorded = acked.filter((a) => found.has(a.id)).length;
    const duplicates = [...found.values()].filter((v) => v.runs > 1).length;
    const unfinished = [...found.values()].filter((v) => v.finished < 1).length;
    const refusals = Object.entries(webhookRefusals);

    return {
      unit: 'deliveries',
      total: acked.length,
      doneAtKill: ackedBefore,
      doneAfterRerun: recorded,
      duplicates,
      lost: acked.length - recorded,
      calls,
      webhookRefusals,
      readyDuringOutage,
      checks: [
        check(serveAlive, `serve kept running through the outage${serveAlive ? '' : ` (it exited: ${serveExit}; its last stderr: ${serve.stderr().slice(-1500)})`}`),
        check(readyDuringOutage.length > 0 && readyDuringOutage.every((s) => s === 503), `/readyz answered 503 throughout the outage (${readyDuringOutage.length} probes: ${[...new Set(readyDuringOutage)].join(', ')})`),
        check(readyAgain, '/readyz answered 200 again after PostgreSQL came back, with serve never restarted'),
        check(acked.some((a) => a.phase === 'after'), `deliveries were acknowledged again after the restart (${acked.filter((a) => a.phase === 'after').length})`),
        check(unfinished === 0, `every acknowledged delivery's run finished (${unfinished} not)`),
        check(okAfter > 0, `tool calls succeeded again after the restart on the same sessions (${okAfter})`),
        check(calls.hung === 0, `no tool call hung (${calls.hung} reached the ${callTimeout / 1000} s client timeout)`),
        check(calls.other.length === 0, `every failed tool call said to try again (${calls.other.length} did not${calls.other.length ? `: ${calls.other.slice(0, 3).join(' | ')}` : ''})`),
        check(refusals.every(([k]) => k === '503 retry-after' || k === 'no answer'), `webhooks refused meanwhile got 503 with Retry-After (${refusals.map(([k, n]) => `${k}: ${n}`).join(', ') || 'none refused'})`),
      ],
    };
  } finally {
    for (const c of clients) await c.close().catch(() => {});
    if (serve) await stop(serve);
    await cluster.destroy();
  }
}

export const pgRestartScenario: Scenario = {
  id: 'pg-restart',
  name: 'PostgreSQL restarted under load',
  about: 'pg_ctl stop -m fast of the database under serve during webhooks and tool calls, 2.5 s down, started again (a cluster of its own, not BENCH_DATABASE_URL)',
  run: (ctx) => pgRestart(ctx),
};
