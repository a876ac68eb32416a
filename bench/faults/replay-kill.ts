import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'drizzle-orm';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { rowsOf, type Database } from '../../src/db/client.js';
import { initialize } from '../../src/core/tenants.js';
import { createAccount } from '../../src/core/accounts.js';
import { createUser } from '../../src/core/users.js';
import { createAutomation } from '../../src/core/automations.js';
import { webhookPath, webhookToken } from '../../src/core/webhooks.js';
import { Keyring, newMasterKey } from '../../src/core/keyring.js';
import { startHttp } from '../../src/http/server.js';
import { Worker } from '../../src/engine/worker.js';
import type { Core } from '../../src/core/core.js';
import { check, freePort, mcpOverHttp, startCli, stop, until, withDatabase, type FaultContext, type FaultCounts, type Scenario, type Spawned } from './harness.js';

/**
 * kill -9 of `switchboard serve` half way through a bulk replay, a restart, and the client
 * applying the same plan again (as one that never saw the answer would). The world: an
 * automation whose http step calls a local app; deliveries that arrived through the real ingress
 * while the app was down, their runs failed. Once the app is back, replay_webhook plans the
 * replay of all of them (dry run, over HTTP to the spawned serve) and applies it; serve's own
 * workers run the replays against the app, which answers slowly, and serve is killed once the app
 * has answered half of them. Restarted, its workers take back the runs the killed process held
 * (when their lease lapses) and finish them. Counted: every delivery of the plan has exactly one
 * replay, which succeeded and is its latest run; the apply sent again (while runs were still
 * held, and after they finished) replays nothing; the app received each delivery's write under
 * one Idempotency-Key (the original run's), calls repeated after the crash under that same key.
 */

export interface ReplayKillOptions {
  deliveries?: number;
  /** how long the app takes to answer a call once it is back */
  appDelayMs?: number;
  /** serve's workers (SWITCHBOARD_WORKERS) */
  workers?: number;
}

/** The third-party app: down (500) while `failing`, then 200 after a moment; it counts calls and 2xx answers per Idempotency-Key. */
class LocalApp {
  failing = true;
  readonly calls = new Map<string, { calls: number; ok: number }>();
  private server: Server | null = null;
  base = '';
  constructor(private readonly delayMs: number) {}

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const key = String(req.headers['idempotency-key'] ?? '');
      const seen = this.calls.get(key) ?? { calls: 0, ok: 0 };
      seen.calls++;
      this.calls.set(key, seen);
      req.resume();
      if (this.failing) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end('{"error":"down"}');
        return;
      }
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"ok":true}', () => seen.ok++);
      }, this.delayMs);
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** keys the app answered 2xx at least once */
  applied(): number {
    return [...this.calls.values()].filter((c) => c.ok > 0).length;
  }

  close(): Promise<void> {
    return new Promise((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

interface ReplayWorld {
  core: Core;
  master: Buffer;
  token: string;
  /** the failed deliveries and their original runs */
  deliveries: { id: string; run: string }[];
}

/** Tenant, an account with an admin, the automation, and `n` deliveries through the real ingress whose runs failed (the app is down). */
async function seedReplayWorld(database: Database, app: LocalApp, n: number): Promise<ReplayWorld> {
  const master = newMasterKey();
  const init = await initialize(database.db, { adminEmail: 'faults@switchboard.test', switchMinutes: 30 });
  const core: Core = { db: database.db, tenantId: init.tenant.id, switchMinutes: 30, keys: new Keyring(master), secretArgs: true, outbound: { allow: ['127.0.0.1'] } };
  const account = await createAccount(core, { name: 'Replay Co', slug: 'replay-co' });
  const { token } = await createUser(core, { email: 'ops@replay.test', name: 'Replay Ops', account, role: 'admin', permissions: [] });
  const { row } = await createAutomation(core, account, {
    name: 'Orders',
    createdBy: null,
    definition: {
      trigger: { type: 'webhook', dedupe: null },
      routing: null,
      retries: { max: 0 },
      steps: [{ id: 'send', kind: 'http', method: 'POST', url: `${app.base}/orders`, body: { order: '{{ trigger.body.i }}' } }],
    },
  });
  const http = await startHttp({ core, database, port: 0, host: '127.0.0.1' });
  const worker = new Worker(core, { concurrency: 4, leaseMs: 5_000, pollMs: 50, listen: (c, fn) => database.listen(c, fn) });
  await worker.start();
  try {
    const hook = `${new URL(http.url).origin}${webhookPath(webhookToken(core, row))}`;
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const res = await fetch(hook, { method: 'POST', body: JSON.stringify({ i }), headers: { 'content-type': 'application/json' } });
      const body = (await res.json()) as { delivery_id?: string };
      if (res.status !== 202 || !body.delivery_id) throw new Error(`ingress answered ${res.status}`);
      ids.push(body.delivery_id);
    }
    const arr = `{${ids.join(',')}}`;
    const runs = await until(
      'the original runs to fail',
      async () => rowsOf<{ id: string; run: string; status: string }>(await database.db.execute(sql`
        select d.id, e.id as run, e.status from webhook_deliveries d join executions e on e.id = d.execution_id where d.id = any(${arr}::uuid[])`)),
      (rows) => rows.length === n && rows.every((r) => r.status === 'failed'),
    );
    return { core, master, token, deliveries: runs.map((r) => ({ id: r.id, run: r.run })) };
  } finally {
    await worker.stop();
    await http.close();
  }
}

interface Serve {
  process: Spawned;
  client: Client;
  call(name: string, args: Record<string, unknown>): Promise<CallToolResult>;
}

async function startServe(ctx: FaultContext, env: Record<string, string>, port: number, token: string): Promise<Serve> {
  const p = startCli(ctx, ['serve'], { ...env, PORT: String(port), HOST: '127.0.0.1' });
  await until(
    'serve to answer /healthz',
    async () => {
      if (p.child.exitCode !== null) throw new Error(`serve exited (${p.child.exitCode}): ${p.stderr().slice(-2000)}`);
      return fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false);
    },
    (ok) => ok,
    60_000,
    100,
  );
  const client = await mcpOverHttp(`http://127.0.0.1:${port}`, token);
  return { process: p, client, call: async (name, args) => (await client.callTool({ name, arguments: args })) as CallToolResult };
}

/** Replays of the plan's deliveries: in all, of how many deliveries, succeeded, still open, and deliveries whose latest run is a succeeded replay. */
interface ReplayCounts {
  replays: number;
  deliveries: number;
  succeeded: number;
  open: number;
  complete: number;
}

const textOf = (r: CallToolResult) => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('');

export async function replayKill(ctx: FaultContext, opts: ReplayKillOptions = {}): Promise<FaultCounts> {
  const n = opts.deliveries ?? 40;
  const log = ctx.log ?? (() => {});
  const app = new LocalApp(opts.appDelayMs ?? 100);
  await app.start();
  let serve: Serve | null = null;
  try {
    const world = await withDatabase(ctx.target, (database) => seedReplayWorld(database, app, n));
    log(`${world.deliveries.length} deliveries recorded through ingress, their runs failed (the app was down)`);
    const env = {
      ...ctx.target.env,
      SWITCHBOARD_MASTER_KEY: world.master.toString('base64'),
      SWITCHBOARD_WORKERS: String(opts.workers ?? 2),
      SWITCHBOARD_LEASE_SECONDS: '2',
      SWITCHBOARD_OUTBOUND_ALLOW: '127.0.0.1',
      SWITCHBOARD_TOOLSETS: 'all',
    };
    const port = await freePort();
    const args = { account: 'replay-co', filter: { automation: 'Orders' } };

    serve = await startServe(ctx, env, port, world.token);
    const dry = await serve.call('replay_webhook', { ...args, dry_run: true });
    const plan = (dry.structuredContent as { plan?: { hash: string; replayable: number } } | undefined)?.plan;
    if (dry.isError || !plan) throw new Error(`the dry run failed: ${textOf(dry)}`);
    app.failing = false;
    const applied = await serve.call('replay_webhook', { ...args, plan_hash: plan.hash });
    if (applied.isError) throw new Error(`the apply failed: ${textOf(applied)}`);
    const chosen = (applied.structuredContent as { executions: { delivery_id: string }[] }).executions.map((e) => e.delivery_id);
    log(`replay applied: ${chosen.length} of ${plan.replayable} deliveries queued as replays; serve's workers run them`);

    // kill -9 once the app has answered half of them
    await until('the app to answer half the replays', () => app.applied(), (k) => k >= n / 2 || serve!.process.child.exitCode !== null, 120_000, 5);
    serve.process.child.kill('SIGKILL');
    const end = await serve.process.exited;
    await serve.client.close().catch(() => {});
    serve = null;
    const appliedAtKill = app.applied();

    const arr = `{${chosen.join(',')}}`;
    const replayCounts = (database: Database): Promise<ReplayCounts> =>
      database.db.execute(sql`
        select count(*)::int as replays, count(distinct e.delivery_id)::int as deliveries,
               count(*) filter (where e.status = 'succeeded')::int as succeeded,
               count(*) filter (where e.status in ('queued', 'running'))::int as open,
               (select count(*)::int from webhook_deliveries d join executions l on l.id = d.latest_replay_id
                 where d.id = any(${arr}::uuid[]) and l.status = 'succeeded' and l.source = 'replay') as complete
        from executions e where e.source = 'replay' and e.delivery_id = any(${arr}::uuid[])`).then((r) => rowsOf<ReplayCounts>(r)[0]!);
    const atKill = await withDatabase(ctx.target, replayCounts);
    log(`killed serve (${end.signal ?? `exit ${end.code}`}) with ${atKill.succeeded} replays succeeded, ${atKill.open} queued or running; the app had answered ${appliedAtKill}`);

    // restart; the client sends its apply again, at once and once everything has run
    serve = await startServe(ctx, env, port, world.token);
    const again = await serve.call('replay_webhook', { ...args, plan_hash: plan.hash });
    log(`apply sent again after the restart: ${again.isError ? 'refused' : 'APPLIED'}: ${textOf(again)}`);
    const open = async () => {
      let k = 0;
      for (const status of ['queued', 'running']) {
        const r = await serve!.call('list_executions', { account: 'replay-co', automation: 'Orders', status, limit: 100 });
        k += (r.structuredContent as { executions: unknown[] }).executions.length;
      }
      return k;
    };
    await until('the replays to end', open, (k) => k === 0, 120_000, 200);
    const late = await serve.call('replay_webhook', { ...args, plan_hash: plan.hash });
    log(`apply sent again once they ended: ${late.isError ? 'refused' : 'APPLIED'}: ${textOf(late)}`);
    // what the late apply queued (if it did) runs too, so that a duplicate shows in the counts
    if (!late.isError) await until('the replays to end', open, (k) => k === 0, 120_000, 200);
    await serve.client.close().catch(() => {});
    await stop(serve.process);
    serve = null;

    const after = await withDatabase(ctx.target, async (database) => ({
      ...(await replayCounts(database)),
      audited: rowsOf<{ n: number }>(
        await database.db.execute(sql`
          select count(*)::int as n from audit_log where tool = 'replay_webhook' and outcome = 'ok'
            and arguments->'plan'->>'hash' = ${plan.hash} and arguments->'plan'->>'dry_run' = 'false'`),
      )[0]!.n,
    }));
    // with reuse_idempotency_keys (the default) a replay sends its original run's key
    const keys = new Set(world.deliveries.filter((d) => chosen.includes(d.id)).map((d) => `${d.run}:send`));
    const keyed = [...app.calls.entries()].filter(([k]) => keys.has(k));
    const appliedKeys = keyed.filter(([, c]) => c.ok > 0).length;
    const repeated = keyed.filter(([, c]) => c.ok > 1).length;
    const foreign = [...app.calls.keys()].filter((k) => !keys.has(k)).length;
    log(`after the restart: ${after.replays} replays of ${after.deliveries} deliveries, ${after.complete} complete; app: ${appliedKeys} keys applied, ${repeated} answered twice (same key)`);

    return {
      unit: 'deliveries',
      total: chosen.length,
      doneAtKill: Number(atKill.succeeded),
      doneAfterRerun: Number(after.complete),
      duplicates: Number(after.replays) - Number(after.deliveries),
      lost: chosen.length - Number(after.complete),
      checks: [
        check(chosen.length === n && plan.replayable === n, `deliveries in the plan: ${plan.replayable}, queued by the apply: ${chosen.length} (of ${n} failed)`),
        check(end.signal === 'SIGKILL', `serve ended by ${end.signal ?? `exit ${end.code}`} with ${atKill.succeeded} of ${chosen.length} replays succeeded, ${atKill.open} queued or running`),
        check(again.isError === true, `the apply sent again after the restart was refused: ${again.isError === true}`),
        check(late.isError === true && /already applied/.test(textOf(late)), `the apply sent again once the replays ended was refused as already applied: ${late.isError === true}`),
        check(Number(after.open) === 0, `replays still queued or running: ${after.open}`),
        check(Number(after.succeeded) === Number(after.replays), `replays succeeded: ${after.succeeded} of ${after.replays}`),
        check(Number(after.audited) === 1, `applies of the plan in the audit log: ${after.audited}`),
        check(appliedKeys === chosen.length && foreign === 0, `writes the app applied, by Idempotency-Key: ${appliedKeys} of ${chosen.length} (the original runs' keys; others: ${foreign}); ${repeated} sent again after the crash under the same key`),
      ],
    };
  } finally {
    if (serve) {
      await serve.client.close().catch(() => {});
      serve.process.child.kill('SIGKILL');
      await serve.process.exited;
    }
    await app.close();
  }
}

export const replayKillScenario: Scenario = {
  id: 'replay',
  name: 'bulk replay, serve killed half way',
  about: 'kill -9 of `switchboard serve` while its workers run a replay_webhook of 40 failed deliveries; restart; the apply sent again',
  run: (ctx) => replayKill(ctx),
};
