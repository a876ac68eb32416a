/**
 * Operations benchmarks (issue 9), section 7 of `npm run bench`. Run it alone with
 * `npm run bench -- operations` (or BENCH_SECTION=operations npm run bench). On PostgreSQL
 * (BENCH_DATABASE_URL, a fresh database per case, dropped afterwards) and on PGlite:
 *
 *   7a. check_health on an account with BENCH_OPS_EXECUTIONS (default 1,000,000) finished webhook
 *       runs over 30 days (10 automations, their deliveries, ~3 % failures with their step records,
 *       two live outages) and the aggregates those rows imply: p50/p95/p99 over BENCH_OPS_CALLS
 *       (default 200) calls, window 24h and 7d; target p95 < 100 ms.
 *   7b. check_health {scope: 'all'} over BENCH_OPS_ACCOUNTS (default 10,000) accounts with 2
 *       automations and 8 days of hourly stats each (Switch Account caller), windows 24h and 7d:
 *       p50/p95 over 20 calls; target < 1 s. And the first read of an hour, which computes the
 *       tenant's roll-up (src/core/operations/health-rollup.ts): 3 calls, each after marking it stale.
 *   7c. debug_webhook on the same account, latest 20 deliveries with diagnoses, all and status
 *       'failed': p95 < 100 ms.
 *       Reference for 7a–c: whoami on the same MCP client (in-memory transport, in this process).
 *       All rows are seeded with set-based SQL (bench/operations-seed.ts); the seeding time is printed.
 *   7d. The cost of keeping the aggregates: webhooks POSTed through ingress by 8 senders in a process
 *       of their own (bench/ingest-sender.mjs, no worker running: deliveries/s), then drained by
 *       one worker (32 at once) against a local app on 127.0.0.1 (transform → http POST → transform,
 *       1 in 20 answered 503: executions/s), with the three aggregate triggers enabled and disabled
 *       in turn on the same database (a warm-up round, then on, off, off, on: a linear drift cancels); target: < 10 %
 *       fewer executions/s with them. Reference: PostgreSQL's raw single-row insert rate
 *       (../shared/bench/pg-insert-rate.sh 8 5) from the same run.
 *
 * A tool not in the working tree yet is printed as "not measured: tool missing".
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { openDatabase, rowsOf, type Database } from '../src/db/client.js';
import { initialize } from '../src/core/tenants.js';
import { createAccount } from '../src/core/accounts.js';
import { addConnection } from '../src/core/connections.js';
import { createAutomation } from '../src/core/automations.js';
import { authenticate } from '../src/core/users.js';
import { webhookPath, webhookToken } from '../src/core/webhooks.js';
import { Keyring, newMasterKey } from '../src/core/keyring.js';
import type { Core } from '../src/core/core.js';
import { createMcpServer } from '../src/mcp/server.js';
import { newSession } from '../src/mcp/session.js';
import { startHttp } from '../src/http/server.js';
import { Worker } from '../src/engine/worker.js';
import { seedFleet, seedHistory, setAggregateTriggers, type FleetSeed, type HistorySeed } from './operations-seed.js';
import { line, median, ms, note, percentile, timeEach, verdictWord } from './stats.js';
import { record, versus } from './results.js';

const int = (v: string | undefined, fallback: number) => (Number.isInteger(Number(v)) && Number(v) > 0 ? Number(v) : fallback);
export const OPS = {
  executions: int(process.env.BENCH_OPS_EXECUTIONS, 1_000_000),
  accounts: int(process.env.BENCH_OPS_ACCOUNTS, 10_000),
  calls: int(process.env.BENCH_OPS_CALLS, 200),
  allCalls: 20,
  /** fleet-wide reads that compute the roll-up, per window */
  coldCalls: 3,
  perAccount: 2,
  ingestSeconds: 5,
  senders: 8,
  /** rounds of 7d, in this order, after one warm-up round with the triggers on (not counted): a linear drift cancels */
  rounds: [true, false, false, true, false, true, true, false] as const,
};

/** An app on loopback: answers 200, and 503 to every 20th request. */
function localApp(): Promise<{ server: Server; url: string }> {
  let n = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const fail = ++n % 20 === 0;
      res.writeHead(fail ? 503 : 200, { 'content-type': 'application/json' });
      res.end(fail ? '{"error":"unavailable"}' : '{"ok":true}');
    });
  });
  server.keepAliveTimeout = 1000;
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })));
}

async function bareCore(database: Database): Promise<{ core: Core; token: string }> {
  await database.migrate();
  const init = await initialize(database.db, { adminEmail: 'ops-bench@switchboard.test', switchMinutes: 30 });
  return { core: { db: database.db, tenantId: init.tenant.id, switchMinutes: 30, keys: new Keyring(newMasterKey()), secretArgs: true, outbound: { allow: ['127.0.0.1'] } }, token: init.token };
}

/** A real MCP client over an in-memory transport to a server for `token` (as test/helpers/world.ts connect). */
async function mcpClient(core: Core, token: string) {
  const server = createMcpServer({ core, session: newSession(), authenticate: () => authenticate(core, token) });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  const client = new Client({ name: 'switchboard-bench', version: '1.0.0' });
  await client.connect(clientSide);
  const tools = new Set((await client.listTools()).tools.map((t) => t.name));
  return {
    tools,
    call: async (name: string, args: Record<string, unknown>) => (await client.callTool({ name, arguments: args })) as CallToolResult,
    close: async () => {
      await client.close();
      await server.close();
    },
  };
}

export interface LatencyCase {
  label: string;
  target?: number;
  /** missing: the tool is not in the working tree; error: its first call failed (the text) */
  missing?: boolean;
  error?: string;
  n: number;
  p50: number;
  p95: number;
  p99: number;
  /** a figure of the answer, e.g. "20 deliveries" */
  answer?: string;
}

export interface LatencyResult {
  history: HistorySeed;
  fleet: FleetSeed;
  seedMs: number;
  analyzeMs: number;
  cases: LatencyCase[];
  reference: LatencyCase;
}

const textOf = (r: CallToolResult) => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('');

/** 7a–c on one database (url: PostgreSQL; else PGlite in a temporary data directory). */
export async function operationsLatency(opts: { url?: string; executions: number; accounts: number; calls: number }): Promise<LatencyResult> {
  const dir = opts.url ? null : mkdtempSync(join(tmpdir(), 'switchboard-ops-'));
  const database = await openDatabase({ url: opts.url, dataDir: dir ?? undefined, max: 10 });
  const app = await localApp();
  try {
    const { core, token } = await bareCore(database);
    const t0 = performance.now();
    const account = await createAccount(core, { name: 'Million Runs Co', slug: 'million-runs' });
    note(`seeding ${opts.executions.toLocaleString('en-US')} executions (${database.kind})`);
    const history = await seedHistory(database, core, account, opts.executions, app.url);
    note(`seeding ${opts.accounts.toLocaleString('en-US')} accounts`);
    const fleet = await seedFleet(database, core, opts.accounts, OPS.perAccount);
    const seedMs = performance.now() - t0;
    const a0 = performance.now();
    // what autovacuum would have done to tables this size (visibility map, statistics)
    await database.db.execute(sql`vacuum analyze`);
    const analyzeMs = performance.now() - a0;

    const mcp = await mcpClient(core, token);
    try {
      const timeCalls = async (label: string, tool: string, args: Record<string, unknown>, n: number, target: number | undefined, answer: (r: CallToolResult) => string): Promise<LatencyCase> => {
        const base = { label, n: 0, p50: NaN, p95: NaN, p99: NaN, ...(target !== undefined ? { target } : {}) };
        if (!mcp.tools.has(tool)) return { ...base, missing: true };
        const first = await mcp.call(tool, args);
        if (first.isError) return { ...base, error: textOf(first).slice(0, 160) };
        for (let i = 0; i < Math.min(20, n); i++) await mcp.call(tool, args);
        const xs = await timeEach(n, () => mcp.call(tool, args));
        return { ...base, n, p50: percentile(xs, 50), p95: percentile(xs, 95), p99: percentile(xs, 99), answer: answer(first) };
      };
      const sc = (r: CallToolResult) => (r.structuredContent ?? {}) as Record<string, unknown>;
      const health = (r: CallToolResult) => {
        const s = sc(r);
        const acc = (Array.isArray(s.accounts) ? s.accounts[0] : s) as Record<string, unknown> | undefined;
        const reasons = Array.isArray(acc?.reasons) ? acc.reasons.length : '?';
        return `${String(acc?.status ?? s.status ?? '?')}, ${reasons} reasons`;
      };
      const fleetAnswer = (r: CallToolResult) => {
        const s = sc(r);
        const c = (s.counts ?? {}) as Record<string, number>;
        const covered = Object.values(c).reduce((a, b) => a + Number(b), 0);
        return `${covered} accounts covered: ${Object.entries(c).map(([k, v]) => `${v} ${k}`).join(', ')}; ${Array.isArray(s.accounts) ? s.accounts.length : '?'} listed`;
      };
      const deliveries = (r: CallToolResult) => {
        const s = sc(r);
        const d = Array.isArray(s.deliveries) ? s.deliveries : [];
        return `${d.length} deliveries, ${d.filter((x) => (x as Record<string, unknown>).diagnosis).length} with a diagnosis`;
      };
      const coldCalls = async (label: string, args: Record<string, unknown>): Promise<LatencyCase> => {
        const xs = await timeEach(OPS.coldCalls, async () => {
          await database.db.execute(sql`update health_rollups set as_of = 'epoch'`);
          const r = await mcp.call('check_health', args);
          if (r.isError) throw new Error(textOf(r));
        });
        return { label, n: xs.length, p50: percentile(xs, 50), p95: percentile(xs, 95), p99: percentile(xs, 99), answer: 'the roll-up marked stale before each call' };
      };
      const reference = await timeCalls('ref: whoami (same client)', 'whoami', {}, opts.calls, undefined, () => '');
      const cases = [
        await timeCalls("check_health {account, window: '24h'}", 'check_health', { account: account.id, window: '24h' }, opts.calls, 100, health),
        await timeCalls("check_health {account, window: '7d'}", 'check_health', { account: account.id, window: '7d' }, opts.calls, 100, health),
        await timeCalls("check_health {scope: 'all'}", 'check_health', { scope: 'all' }, OPS.allCalls, 1000, fleetAnswer),
        await timeCalls("check_health {scope: 'all', window: '7d'}", 'check_health', { scope: 'all', window: '7d' }, OPS.allCalls, 1000, fleetAnswer),
        // the first fleet-wide read of an hour computes the tenant's roll-up (health-rollup.ts); the
        // worker keeps a requested one current, so a read pays this once a day at most
        await coldCalls("extra: first read of the hour (computes the roll-up)", { scope: 'all' }),
        await coldCalls("extra: the same, window '7d'", { scope: 'all', window: '7d' }),
        await timeCalls('debug_webhook {account, limit: 20}', 'debug_webhook', { account: account.id, limit: 20 }, opts.calls, 100, deliveries),
        await timeCalls("debug_webhook {account, limit: 20, status: 'failed'}", 'debug_webhook', { account: account.id, limit: 20, status: 'failed' }, opts.calls, 100, deliveries),
      ];
      return { history, fleet, seedMs, analyzeMs, cases, reference };
    } finally {
      await mcp.close();
    }
  } finally {
    await new Promise((r) => app.server.close(r));
    await database.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

export interface CostRound {
  triggers: boolean;
  deliveriesPerSecond: number;
  executions: number;
  executionsPerSecond: number;
  failed: number;
}

/** The aggregate trigger functions' own time in the rounds with them on (pg_stat_user_functions). */
export interface TriggerTime {
  fn: string;
  calls: number;
  /** ms, the function and what it called */
  totalMs: number;
}

export interface CostResult {
  rounds: CostRound[];
  /** null: the database keeps no function statistics (PGlite) */
  triggers: TriggerTime[] | null;
  /** executions and deliveries in the rounds with the triggers on */
  executionsOn: number;
}

const TRIGGER_FUNCTIONS = ['switchboard_execution_finished', 'switchboard_deliveries_recorded', 'switchboard_step_throttled', 'switchboard_stats_behind_edge'];

/** Cumulative calls and time of the aggregate trigger functions; null where none are kept. */
async function triggerTimes(database: Database): Promise<TriggerTime[] | null> {
  if (database.kind !== 'postgres') return null;
  // each backend reports its counts when idle, at most once a second
  await new Promise((r) => setTimeout(r, 1500));
  const rows = rowsOf<{ fn: string; calls: number; total: number }>(
    await database.db.execute(sql`
      select funcname as fn, calls::int as calls, total_time::float8 as total from pg_stat_user_functions
      where funcname = any(${`{${TRIGGER_FUNCTIONS.join(',')}}`}::text[])`),
  );
  return TRIGGER_FUNCTIONS.map((fn) => {
    const r = rows.find((x) => x.fn === fn);
    return { fn, calls: Number(r?.calls ?? 0), totalMs: Number(r?.total ?? 0) };
  });
}

/** 7d: the aggregate triggers on and off in turn, same database, same workload. */
export async function aggregatesCost(opts: { url?: string; senders: number; seconds: number }): Promise<CostResult> {
  // PostgreSQL counts the time of PL/pgSQL functions per connection when asked to (superuser setting)
  const url = opts.url ? `${opts.url}${opts.url.includes('?') ? '&' : '?'}track_functions=pl` : undefined;
  const database = await openDatabase({ url, max: 32 + opts.senders + 4 });
  const app = await localApp();
  const { core } = await bareCore(database);
  const http = await startHttp({ core, database, port: 0, host: '127.0.0.1' });
  try {
    const account = await createAccount(core, { name: 'Cost Co', slug: 'cost-co' });
    const conn = await addConnection(core, account, { app: 'http', credentials: { auth_kind: 'bearer', base_url: app.url, token: 'bench-token-0123456789' }, createdBy: null });
    await database.db.execute(sql`update connections set rate_per_minute = 100000000 where id = ${conn.row.id}`);
    const { row } = await createAutomation(core, account, {
      name: 'Orders',
      createdBy: null,
      definition: {
        trigger: { type: 'webhook', dedupe: null },
        routing: null,
        retries: { max: 0 },
        steps: [
          { id: 'shape', kind: 'transform', value: { order: '{{ trigger.body.data.order }}', total: '{{ trigger.body.data.total * 2 }}' } },
          { id: 'send', kind: 'http', method: 'POST', url: `${app.url}/orders`, body: '{{ steps.shape.output }}', connection: conn.row.id },
          { id: 'done', kind: 'transform', value: '{{ steps.send.output.status }}' },
        ],
      },
    });
    const hook = `${new URL(http.url).origin}${webhookPath(webhookToken(core, row))}`;
    const count = async (where: ReturnType<typeof sql>) => Number(rowsOf<{ n: number }>(await database.db.execute(sql`select count(*)::int as n from executions where ${where}`))[0]!.n);
    const rounds: CostRound[] = [];
    const spent = new Map<string, TriggerTime>();
    for (const [i, triggers] of [true, ...OPS.rounds].entries()) {
      const before = triggers && i > 0 ? await triggerTimes(database) : null;
      await setAggregateTriggers(database, triggers);
      note(`aggregates cost (${database.kind}): ${i === 0 ? 'warm-up round' : `round ${i} of ${OPS.rounds.length}`}, triggers ${triggers ? 'on' : 'off'}`);
      const out = await new Promise<string>((resolve, reject) => {
        execFile(process.execPath, [join(import.meta.dirname, 'ingest-sender.mjs'), hook, String(opts.senders), String(opts.seconds)], { timeout: (opts.seconds + 60) * 1000 }, (err, stdout) =>
          err ? reject(err) : resolve(stdout),
        );
      });
      const sent = JSON.parse(out.trim().split('\n').pop()!) as { accepted: number; wall: number };
      const queued = await count(sql`status = 'queued'`);
      const failedBefore = await count(sql`status = 'failed'`);
      const worker = new Worker(core, { concurrency: 32, accountConcurrency: 32, leaseMs: 30_000, pollMs: 20, listen: (c, fn) => database.listen(c, fn) });
      const t0 = performance.now();
      await worker.start();
      while ((await count(sql`status in ('queued', 'running')`)) > 0) await new Promise((r) => setTimeout(r, 20));
      const wall = performance.now() - t0;
      await worker.stop();
      if (i === 0) continue;
      const after = before ? await triggerTimes(database) : null;
      for (const t of after ?? []) {
        const b = before!.find((x) => x.fn === t.fn)!;
        const sum = spent.get(t.fn) ?? { fn: t.fn, calls: 0, totalMs: 0 };
        spent.set(t.fn, { fn: t.fn, calls: sum.calls + t.calls - b.calls, totalMs: sum.totalMs + t.totalMs - b.totalMs });
      }
      rounds.push({
        triggers,
        deliveriesPerSecond: (sent.accepted / sent.wall) * 1000,
        executions: queued,
        executionsPerSecond: (queued / wall) * 1000,
        failed: (await count(sql`status = 'failed'`)) - failedBefore,
      });
    }
    const executionsOn = rounds.filter((r) => r.triggers).reduce((n, r) => n + r.executions, 0);
    return { rounds, triggers: database.kind === 'postgres' ? [...spent.values()] : null, executionsOn };
  } finally {
    await setAggregateTriggers(database, true).catch(() => {});
    await http.close();
    await new Promise((r) => app.server.close(r));
    await database.close();
  }
}

// ------------------------------------------------------------------ report

const LABEL = 58;
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
export const OPERATIONS_SECTION = '7. Operations';

export function latencyReport(db: string, title: string, r: LatencyResult, fullSize: { executions: number; accounts: number }): void {
  const section = OPERATIONS_SECTION;
  line();
  line(`  ${title}`);
  const h = r.history;
  const size = (n: number, full: number) => `${fmt(n)}${n < full ? ` (reduced from ${fmt(full)})` : ''}`;
  const seed = `${(r.seedMs / 1000).toFixed(1)} s   then VACUUM ANALYZE ${(r.analyzeMs / 1000).toFixed(1)} s`;
  const account = `${size(h.executions, fullSize.executions)} executions (${fmt(h.failed)} failed), ${fmt(h.deliveries)} deliveries, ${fmt(h.steps)} step records, ${h.groups} failure groups`;
  const phases = Object.entries(h.phases).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`).join(', ');
  const fleet = `${size(r.fleet.accounts, fullSize.accounts)} accounts, ${fmt(r.fleet.automations)} automations, ${fmt(r.fleet.statsRows)} stats rows, ${r.fleet.openGroups} open groups`;
  line(`  ${'extra: seed (SQL, generate_series)'.padEnd(LABEL)}${seed}`);
  line(`  ${''.padEnd(LABEL)}account: ${account}`);
  line(`  ${''.padEnd(LABEL)}phases: ${phases}`);
  line(`  ${''.padEnd(LABEL)}fleet: ${fleet}, ${(r.fleet.ms / 1000).toFixed(1)} s`);
  record({ section, figure: `extra: seed the account (SQL, generate_series) · ${db}`, value: seed.replace(/\s+/g, ' '), note: `${account}; ${phases}` });
  record({ section, figure: `extra: seed the fleet · ${db}`, value: `${(r.fleet.ms / 1000).toFixed(1)} s`, note: fleet });
  const ref = r.reference;
  line(`  ${ref.label.padEnd(LABEL)}p50 ${ms(ref.p50, 7)}   p95 ${ms(ref.p95, 7)}   p99 ${ms(ref.p99, 7)}   (${ref.n} calls)`);
  record({ section, figure: `${ref.label} · ${db}`, value: `p50 ${ms(ref.p50)} · p95 ${ms(ref.p95)} · p99 ${ms(ref.p99)}`, note: `${ref.n} calls` });
  for (const c of r.cases) {
    const figure = `${c.label} · ${db}`;
    const target = c.target !== undefined ? `p95 < ${fmt(c.target)} ms` : undefined;
    if (c.missing) {
      line(`  ${c.label.padEnd(LABEL)}not measured: tool missing`);
      record({ section, figure, value: 'not measured: tool missing', ...(target ? { target } : {}) });
      continue;
    }
    if (c.error) {
      line(`  ${c.label.padEnd(LABEL)}not measured: the call failed: ${c.error}`);
      record({ section, figure, value: `not measured: the call failed: ${c.error}`, ...(target ? { target } : {}) });
      continue;
    }
    const met = c.target !== undefined ? c.p95 < c.target : undefined;
    const ratio = c.p50 / ref.p50;
    line(`  ${c.label.padEnd(LABEL)}p50 ${ms(c.p50, 7)}   p95 ${ms(c.p95, 7)}   p99 ${ms(c.p99, 7)}${target ? `   target ${target}: ${verdictWord(met!)}` : ''}   ${ratio.toFixed(0)}× whoami at p50   (${c.n} calls; ${c.answer})`);
    record({
      section, figure, value: `p50 ${ms(c.p50)} · p95 ${ms(c.p95)} · p99 ${ms(c.p99)}`, note: `${c.n} calls; ${c.answer}`,
      ...(target ? { target, met: met! } : {}), reference: versus(`whoami p50 ${ms(ref.p50)}`, ratio, 0),
    });
  }
}

export function costReport(db: string, title: string, result: CostResult, insertRate: number | null): void {
  const section = OPERATIONS_SECTION;
  const { rounds } = result;
  line();
  line(`  ${title}`);
  for (const [i, r] of rounds.entries()) {
    line(
      `  ${`extra: round ${i + 1}, triggers ${r.triggers ? 'on ' : 'off'}`.padEnd(LABEL)}ingest ${fmt(r.deliveriesPerSecond).padStart(6)} deliveries/s   ` +
        `drain ${fmt(r.executionsPerSecond).padStart(6)} executions/s   (${fmt(r.executions)} runs, ${fmt(r.failed)} failed: the app's 503s)`,
    );
    record({
      section, figure: `extra: aggregates cost, round ${i + 1}, triggers ${r.triggers ? 'on' : 'off'} · ${db}`,
      value: `ingest ${fmt(r.deliveriesPerSecond)} deliveries/s · drain ${fmt(r.executionsPerSecond)} executions/s`, note: `${fmt(r.executions)} runs, ${fmt(r.failed)} failed: the app's 503s`,
    });
  }
  // the mean of each side: the rounds' order (OPS.rounds) is balanced, so a linear drift over the
  // run (the tables grow round by round) cancels in the means
  const mid = (on: boolean, k: 'deliveriesPerSecond' | 'executionsPerSecond') => {
    const xs = rounds.filter((r) => r.triggers === on).map((r) => r[k]);
    return xs.reduce((a, b) => a + b, 0) / xs.length;
  };
  for (const [label, k] of [['executions per second (drain, end to end)', 'executionsPerSecond'], ['deliveries recorded per second (ingest)', 'deliveriesPerSecond']] as const) {
    const on = mid(true, k);
    const off = mid(false, k);
    const lower = (1 - on / off) * 100;
    const ratio = insertRate ? on / insertRate : null;
    const met = k === 'executionsPerSecond' ? lower < 10 : undefined;
    const change = `${lower >= 0 ? `${lower.toFixed(1)} % lower` : `${(-lower).toFixed(1)} % higher`} with the triggers`;
    line(`  ${label.padEnd(LABEL)}with ${fmt(on).padStart(6)} /s   without ${fmt(off).padStart(6)} /s   ${change}${met !== undefined ? `   target < 10 % lower with them: ${verdictWord(met)}` : ''}${ratio !== null ? `   ${ratio.toFixed(2)}× raw insert rate` : ''}`);
    record({
      section, figure: `${label} · ${db}`, value: `with ${fmt(on)} /s · without ${fmt(off)} /s · ${change}`,
      ...(met !== undefined ? { target: '< 10 % lower with the triggers', met } : {}),
      ...(ratio !== null ? { reference: versus(`raw insert rate ${fmt(insertRate!)} tx/s`, ratio) } : {}),
    });
  }
  const spread = (on: boolean) => rounds.filter((r) => r.triggers === on).map((r) => fmt(r.executionsPerSecond)).join(' / ');
  line(`  ${'extra: executions/s per round'.padEnd(LABEL)}with ${spread(true)}   without ${spread(false)}   (means compared: the spread is the noise between rounds)`);
  record({ section, figure: `extra: executions/s per round · ${db}`, value: `with ${spread(true)} · without ${spread(false)}`, note: 'means compared: the spread is the noise between rounds' });
  if (!result.triggers) {
    line(`  ${'extra: the trigger functions\' own time'.padEnd(LABEL)}n/a: PGlite keeps no function statistics`);
    record({ section, figure: `extra: the trigger functions' own time · ${db}`, value: 'n/a: PGlite keeps no function statistics' });
    return;
  }
  // where the time goes: the functions' own database time, per execution of the rounds with them on
  const per = (t: TriggerTime) => (result.executionsOn ? (t.totalMs * 1000) / result.executionsOn : NaN);
  const total = result.triggers.reduce((n, t) => n + t.totalMs, 0);
  const wallPerRun = 1e6 / mid(true, 'executionsPerSecond');
  const perExecution = per({ fn: '', calls: 0, totalMs: total }).toFixed(0);
  line(
    `  ${'extra: the trigger functions\' own database time'.padEnd(LABEL)}${fmt(total)} ms for ${fmt(result.executionsOn)} executions: ${perExecution} µs per execution ` +
      `(the drain spends ${wallPerRun.toFixed(0)} µs of wall time per execution, 32 at once)`,
  );
  record({
    section, figure: `extra: the trigger functions' own database time · ${db}`, value: `${perExecution} µs per execution`,
    note: `${fmt(total)} ms for ${fmt(result.executionsOn)} executions; the drain spends ${wallPerRun.toFixed(0)} µs of wall time per execution, 32 at once`,
  });
  for (const t of result.triggers) {
    const perCall = t.calls ? ((t.totalMs * 1000) / t.calls).toFixed(1) : '0';
    line(`  ${`  ${t.fn}`.padEnd(LABEL)}${fmt(t.calls).padStart(7)} calls   ${perCall} µs per call   ${per(t).toFixed(1)} µs per execution`);
    record({ section, figure: `extra: trigger ${t.fn} · ${db}`, value: `${perCall} µs per call · ${per(t).toFixed(1)} µs per execution`, note: `${fmt(t.calls)} calls` });
  }
}
