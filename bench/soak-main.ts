/**
 * `npm run soak`: the soak under load of bench/soak.ts, printed as a table per interval (calls,
 * tool latency p50/p99, executions/s, serve's RSS, errors) and a summary. Exits 1 when there was
 * any error, when not every acknowledged webhook has exactly one finished run, or when serve's RSS
 * grew more than SOAK_RSS_BOUND (default 0.2: +20 %) from the end of warm-up to the end.
 *
 *   SOAK_SECONDS (600), SOAK_SESSIONS (200), SOAK_RATE webhooks/s (50), SOAK_THINK_MS (200)
 *   SOAK_DATABASE_URL or BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres): a
 *   PostgreSQL server where a fresh database is made for the run and dropped after (a role that may
 *   CREATE DATABASE); SOAK_DATABASE=pglite, or no PostgreSQL answering: an embedded PGlite data
 *   directory made for the run
 *   SWITCHBOARD_WORKERS, SWITCHBOARD_DB_POOL, SWITCHBOARD_TOOL_SLOTS, SWITCHBOARD_BUSY_WAIT_MS,
 *   SWITCHBOARD_ACCOUNT_CONCURRENCY: passed to serve (the report prints what it ran with)
 *   SOAK_NODE_ARGS: extra node flags for serve, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to see
 *   where serve's time goes under the load (Node refuses --cpu-prof in NODE_OPTIONS)
 *
 * serve runs from source (tsx on src/cli.ts); with CI set and dist/cli.js built, the bundle.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pgliteTarget, postgresTarget, type FaultTarget } from './faults/harness.js';
import { soak } from './soak.js';
import { loadText, recordExternal } from './results.js';
import { RSS_GROWTH_BOUND, soakSummary, soakTable } from './soak/report.js';

const numberFrom = (name: string, fallback: number) => {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(v) || v < 0) {
    console.error(`${name} must be a number, got '${process.env[name]}'.`);
    process.exit(2);
  }
  return v;
};
const seconds = numberFrom('SOAK_SECONDS', 600);
const sessions = numberFrom('SOAK_SESSIONS', 200);
const rate = numberFrom('SOAK_RATE', 50);
const thinkMs = numberFrom('SOAK_THINK_MS', 200);
const bound = numberFrom('SOAK_RSS_BOUND', RSS_GROWTH_BOUND);

// SOAK_DATABASE_URL wins over BENCH_DATABASE_URL, which bench/postgres.ts reads when it loads
if (process.env.SOAK_DATABASE_URL) process.env.BENCH_DATABASE_URL = process.env.SOAK_DATABASE_URL;
const { createDatabase, dropLeftovers, probe } = await import('./postgres.js');

// the SDK client's fetches add an abort listener each, released at GC: harmless here (see bench/run.ts)
process.removeAllListeners('warning');
process.on('warning', (w) => {
  if (!(w.name === 'MaxListenersExceededWarning' && /abort listeners added to \[AbortSignal\]/.test(w.message))) process.stderr.write(`(node) ${w.name}: ${w.message}\n`);
});

const root = resolve(import.meta.dirname, '..');
const built = join(root, 'dist/cli.js');
const nodeArgs = (process.env.SOAK_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
const cli = [...nodeArgs, ...(process.env.CI && existsSync(built) ? [built] : ['--import', 'tsx', join(root, 'src/cli.ts')])];
const env = Object.fromEntries(
  Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined && !/^(DATABASE_URL|SWITCHBOARD_|PORT$)/.test(e[0])),
);
const serveEnv: Record<string, string> = {};
for (const k of ['SWITCHBOARD_WORKERS', 'SWITCHBOARD_DB_POOL', 'SWITCHBOARD_TOOL_SLOTS', 'SWITCHBOARD_BUSY_WAIT_MS', 'SWITCHBOARD_ACCOUNT_CONCURRENCY']) {
  if (process.env[k]) serveEnv[k] = process.env[k]!;
}

const dataDir = mkdtempSync(join(tmpdir(), 'switchboard-soak-'));
let target: FaultTarget;
let drop = async () => {};
// 200 sessions is a server's load: PostgreSQL by default (BENCH_DATABASE_URL, else the local one),
// the embedded database when asked (SOAK_DATABASE=pglite) or when no PostgreSQL answers
const server = process.env.SOAK_DATABASE === 'pglite' ? null : await probe();
if (server && !server.ok && process.env.BENCH_DATABASE_URL) {
  console.error(`PostgreSQL is not answering (${server.reason}): unset SOAK_DATABASE_URL and BENCH_DATABASE_URL, or set SOAK_DATABASE=pglite, to soak on the embedded database.`);
  process.exit(1);
}
if (server && !server.ok) console.error(`  … PostgreSQL is not answering (${server.reason}): soaking on the embedded database`);
if (server?.ok) {
  await dropLeftovers();
  const database = await createDatabase('soak');
  target = postgresTarget(database.url);
  drop = () => database.drop();
} else {
  target = pgliteTarget(dataDir);
}

let ok = false;
const startedAt = new Date().toISOString();
const loadStart = loadText();
try {
  const report = await soak(
    { target, cli, cwd: root, env: { ...env, LOG_LEVEL: 'warn', SWITCHBOARD_DATA_DIR: dataDir }, log: (l) => process.stderr.write(`  … ${l}\n`) },
    { seconds, sessions, rate, thinkMs, serveEnv },
  );
  const summary = soakSummary(report, bound);
  console.log(soakTable(report));
  console.log(summary.text);
  ok = summary.ok;
  // the figures join the benchmarks' table (bench/results.md)
  const set = report.settings;
  const after = report.intervals.slice(set.warmupIntervals);
  const worst = (k: 'p50' | 'p99') => Math.max(...after.map((i) => i[k]));
  // the embedded database's soak keeps a section of its own: it does not replace PostgreSQL's figures
  recordExternal(
    set.database === 'pglite' ? 'soak, embedded database' : 'soak',
    [
      { figure: `errors: ${set.sessions} sessions, ${set.rate} webhooks/s for ${set.seconds} s (${set.database})`, value: `${report.errors} of ${report.calls.total.toLocaleString('en-US')} calls and ${report.webhooks.sent.toLocaleString('en-US')} webhooks`, target: '0', met: report.errors === 0 },
      { figure: 'serve RSS after warm-up → end', value: `${Math.round(report.rss.warmupMb)} → ${Math.round(report.rss.endMb)} MB (${(report.rss.growth * 100).toFixed(1)} %)`, target: `≤ +${Math.round(bound * 100)} %`, met: report.rss.growth <= bound, note: `${Math.round(report.rss.startMb)} MB at start` },
      { figure: 'extra: tool latency after warm-up, worst interval', value: `p50 ${worst('p50').toFixed(0)} ms · p99 ${worst('p99').toFixed(0)} ms` },
      { figure: 'extra: executions per second after warm-up', value: (after.reduce((a, i) => a + i.executionsPerSecond, 0) / Math.max(1, after.length)).toFixed(1), unit: '/s', reference: `webhooks arriving at ${set.rate}/s` },
    ],
    { command: `${set.database === 'pglite' ? 'SOAK_DATABASE=pglite ' : ''}SOAK_SECONDS=${seconds} SOAK_SESSIONS=${sessions} SOAK_RATE=${rate} npm run soak`, date: startedAt, loadStart, ...(server?.ok ? { postgres: `PostgreSQL ${server.version}` } : {}) },
  );
} finally {
  await drop().catch((err: Error) => console.error(`could not drop the soak database: ${err.message}`));
  rmSync(dataDir, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
