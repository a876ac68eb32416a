/**
 * Foundation benchmarks, run by `npm run bench` (which builds dist/ first). They print figures
 * beside their targets and beside references measured in the same run; they assert nothing.
 *
 *   1. Cold start of `switchboard stdio` (dist/cli.js) to the first tools/list answer, through a
 *      real MCP client, on an existing PGlite data directory and on PostgreSQL.
 *      Reference: bare Node startup (`node -e "0"` spawn to exit).
 *   2. whoami / list_accounts latency over Streamable HTTP on loopback with 10,000 accounts, on
 *      in-memory PGlite and on PostgreSQL (server in this process, client in this process).
 *      References: `select 1` through the same database handle, GET /healthz to the same server.
 *
 * PostgreSQL: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) must be
 * allowed to create databases; each case gets a fresh one, dropped afterwards. When it does not
 * answer, the PostgreSQL cases are skipped. BENCH_RUNS (default 7) and BENCH_CALLS (default 1000)
 * change the sample counts.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setLogLevel } from '../src/log.js';
import { cliInit, nodeStartupOnce, stdioStartOnce } from './cold-start.js';
import { httpLatency, type HttpResult, type LatencyRow } from './http-latency.js';
import { adminUrl, createDatabase, dropLeftovers, probe } from './postgres.js';
import { line, max, median, ms, note, now, verdict } from './stats.js';

setLogLevel('warn');

/**
 * The SDK's StreamableHTTPClientTransport hands one AbortSignal to every fetch; Node's undici adds
 * an abort listener per fetch and removes it only when the request is garbage-collected, so a long
 * series of calls on one client trips MaxListenersExceededWarning (limit 1500, set by undici).
 * That is client-side and harmless here: count those warnings instead of printing hundreds.
 */
let abortListenerWarnings = 0;
process.removeAllListeners('warning');
process.on('warning', (w) => {
  if (w.name === 'MaxListenersExceededWarning' && /abort listeners added to \[AbortSignal\]/.test(w.message)) abortListenerWarnings++;
  else process.stderr.write(`(node) ${w.name}: ${w.message}\n`);
});

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'dist', 'cli.js');
const RUNS = positiveInt(process.env.BENCH_RUNS, 7);
const CALLS = positiveInt(process.env.BENCH_CALLS, 1000);
const WARMUP = Math.min(100, CALLS);
const ACCOUNTS = 10_000;
const TARGET = { coldPglite: 1500, coldPostgres: 500 } as const;
const LABEL = 54;

/** Things to undo even when a case fails or the run is interrupted. */
const pending = new Set<() => Promise<unknown>>();
async function cleanup(fn: () => Promise<unknown>): Promise<void> {
  pending.delete(fn);
  await fn().catch((err) => note(`cleanup failed: ${(err as Error).message}`));
}
process.once('SIGINT', () => {
  void Promise.allSettled([...pending].map((fn) => fn())).then(() => process.exit(130));
});

async function main(): Promise<void> {
  if (!existsSync(cli)) {
    line(`dist/cli.js is missing: run \`npm run build\` (npm run bench does).`);
    process.exitCode = 1;
    return;
  }
  const pg = await probe();
  const host = safeHost(adminUrl);
  line(`Switchboard foundation benchmarks — ${new Date().toISOString()}`);
  line(`node ${process.version}, ${process.platform}/${process.arch}, ${cpus().length} CPU (${cpus()[0]?.model.trim() ?? '?'}), load average ${load()}`);
  line(pg.ok ? `PostgreSQL ${pg.version} at ${host}` : `PostgreSQL at ${host} does not answer (${pg.reason}): PostgreSQL cases skipped.`);
  if (pg.ok) await dropLeftovers().catch(() => {});
  const started = now();

  // ---------------------------------------------------------------- 1. cold start
  line();
  line(`1. Cold start: spawn \`node dist/cli.js stdio\` → first tools/list answer (real MCP client), ${RUNS} runs each`);
  await nodeStartupOnce();
  const nodeRuns: number[] = [];
  for (let i = 0; i < RUNS; i++) nodeRuns.push(await nodeStartupOnce());
  const nodeRef = median(nodeRuns);
  line(`  ${'ref: node -e "0" spawn → exit'.padEnd(LABEL)}median ${ms(nodeRef, 6)}   max ${ms(max(nodeRuns), 6)}`);

  await guarded('stdio, PGlite', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchboard-bench-'));
    const rmDir = async () => rmSync(dir, { recursive: true, force: true });
    pending.add(rmDir);
    try {
      const env = { SWITCHBOARD_DATA_DIR: join(dir, 'data') };
      const first = await stdioStartOnce(cli, env, dir);
      const runs: number[] = [];
      for (let i = 0; i < RUNS; i++) runs.push((await stdioStartOnce(cli, env, dir)).ms);
      coldRow('stdio, PGlite (existing data dir)', runs, TARGET.coldPglite, nodeRef);
      line(`  ${'extra: first start, empty data dir'.padEnd(LABEL)}       ${ms(first.ms, 6)}   (creates the database, initializes, seeds the demo)`);
    } finally {
      await cleanup(rmDir);
    }
  });

  if (pg.ok) {
    await guarded('stdio, PostgreSQL', async () => {
      const db = await createDatabase('stdio');
      const drop = () => db.drop();
      pending.add(drop);
      const dir = mkdtempSync(join(tmpdir(), 'switchboard-bench-'));
      const rmDir = async () => rmSync(dir, { recursive: true, force: true });
      pending.add(rmDir);
      try {
        const t0 = now();
        const token = await cliInit(cli, { DATABASE_URL: db.url }, dir);
        const initMs = now() - t0;
        const env = { DATABASE_URL: db.url, SWITCHBOARD_TOKEN: token };
        await stdioStartOnce(cli, env, dir); // warm-up: the first start after init is not a cold start we target
        const runs: number[] = [];
        for (let i = 0; i < RUNS; i++) runs.push((await stdioStartOnce(cli, env, dir)).ms);
        coldRow('stdio, PostgreSQL', runs, TARGET.coldPostgres, nodeRef);
        line(`  ${'extra: `switchboard init` on an empty database'.padEnd(LABEL)}       ${ms(initMs, 6)}   (spawn → exit: migrations + tenant + admin)`);
      } finally {
        await cleanup(rmDir);
        await cleanup(drop);
      }
    });
  } else {
    line(`  ${'stdio, PostgreSQL'.padEnd(LABEL)}skipped: PostgreSQL does not answer`);
  }

  // ---------------------------------------------------------------- 2. HTTP latency
  line();
  line(`2. Tool latency over Streamable HTTP on loopback, ${ACCOUNTS.toLocaleString('en-US')} customer accounts, ${CALLS} sequential calls each after ${WARMUP} warm-up`);
  line(`   (server and MCP client in this process; caller: the init admin, who sees every account; timed after ANALYZE)`);

  await guarded('HTTP, PGlite', async () => {
    httpReport('PGlite (in memory)', await httpLatency({ accounts: ACCOUNTS, calls: CALLS, warmup: WARMUP }));
  });

  if (pg.ok) {
    await guarded('HTTP, PostgreSQL', async () => {
      const db = await createDatabase('http');
      const drop = () => db.drop();
      pending.add(drop);
      try {
        httpReport('PostgreSQL (fresh database, pool of 10)', await httpLatency({ url: db.url, accounts: ACCOUNTS, calls: CALLS, warmup: WARMUP }));
      } finally {
        await cleanup(drop);
      }
    });
  } else {
    line();
    line(`  PostgreSQL: skipped, PostgreSQL does not answer`);
  }

  line();
  line(`Total benchmark time ${((now() - started) / 1000).toFixed(1)} s, load average now ${load()} (other work on the machine skews the p99s).`);
  line(`Figures only: nothing here passes or fails a build.`);
  if (abortListenerWarnings) {
    note(`${abortListenerWarnings} MaxListenersExceededWarning(s) about abort listeners on the MCP HTTP client's shared AbortSignal were counted, not printed (SDK client + undici, not the server).`);
  }
}

function coldRow(label: string, runs: number[], target: number, nodeRef: number): void {
  const m = median(runs);
  const worst = max(runs);
  const v = verdict(m, target) + (m < target && worst >= target ? ' (max over)' : '');
  line(`  ${label.padEnd(LABEL)}median ${ms(m, 6)}   max ${ms(worst, 6)}   target < ${target} ms: ${v.padEnd(6)}   ref: node startup ${ms(nodeRef)}`);
}

function httpReport(title: string, r: HttpResult): void {
  line();
  line(`  ${title}`);
  line(`  ${'extra: seed 10,000 accounts'.padEnd(LABEL)}       ${ms(r.seed.ms, 6)}   (${r.seed.inserts} multi-row inserts; ${r.accountsTotal} accounts in all, ${r.seed.acme} match 'acme')`);
  for (const row of r.rows) latencyRow(row);
  for (const row of r.beforeAnalyze) latencyRow({ ...row, label: `extra: ${row.label}` }, `${row.n} calls`);
}

function latencyRow(row: LatencyRow, extra = ''): void {
  const figures = `p50 ${ms(row.p50, 8)}   p99 ${ms(row.p99, 8)}`;
  const target = row.target !== undefined ? `   target p99 < ${row.target} ms: ${verdict(row.p99, row.target)}` : '';
  line(`  ${row.label.padEnd(LABEL)}${figures}${target}${extra ? `   (${extra})` : ''}`);
}

async function guarded(name: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    process.exitCode = 1;
    line(`  ${name.padEnd(LABEL)}FAILED: ${(err as Error).message.split('\n')[0]}`);
    process.stderr.write(`${name} failed:\n${(err as Error).stack ?? err}\n`);
  }
}

const load = (): string => loadavg().map((v) => v.toFixed(2)).join(' ');

function positiveInt(v: string | undefined, fallback: number): number {
  const n = Number(v);
  return Number.isInteger(n) && n > 0 ? n : fallback;
}

function safeHost(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || 5432}`;
  } catch {
    return '(invalid BENCH_DATABASE_URL)';
  }
}

await main();
