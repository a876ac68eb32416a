/**
 * Fault scenarios (`npm run faults`): each kills a process of Switchboard with SIGKILL half way
 * through its work, runs or restarts it, and prints its counts — how much there was, how much was
 * done at the kill and after the rerun, what was done twice and what was lost — with the checks it
 * made and a pass/fail line. Issue 12, item 3: "faults, with nothing acknowledged lost".
 *
 *   rotation   `switchboard rotate-key` killed a third of the way through 2,000 connections
 *   replay     `switchboard serve` killed while its workers run a bulk replay_webhook of 40 deliveries
 *   pg-restart PostgreSQL stopped (fast) and started again under serve during webhooks and tool calls
 *              (a cluster of its own, bench/faults/private-postgres.ts; "at the kill" = acknowledged before the stop)
 *   pool       tables locked under serve while more sessions call than it has tool slots: the rest refused
 *              as busy within the bound, the slow ones finish after ("at the kill" = answered while locked)
 *
 * Each runs on a PostgreSQL database made for it and dropped after (bench/postgres.ts:
 * BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres). `npm run faults --
 * replay` runs the named ones only. The same scenarios are the tests test/rotation-crash.test.ts
 * and test/replay-crash.test.ts. A new fault is one more entry in SCENARIOS (bench/faults/*.ts:
 * a function returning its FaultCounts). The crash of serve during a webhook burst has its own
 * script: `npm run crash-test` (bench/crash-check.ts). Exits non-zero when a scenario fails.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createDatabase, dropLeftovers, probe } from './postgres.js';
import { passed, postgresTarget, type FaultContext, type FaultCounts, type Scenario } from './faults/harness.js';
import { rotationKillScenario } from './faults/rotation-kill.js';
import { loadText, recordExternal, type Figure } from './results.js';
import { replayKillScenario } from './faults/replay-kill.js';
import { pgRestartScenario } from './faults/pg-restart.js';
import { poolBusyScenario } from './faults/pool-busy.js';

export const SCENARIOS: Scenario[] = [rotationKillScenario, replayKillScenario, pgRestartScenario, poolBusyScenario];

const root = resolve(import.meta.dirname, '..');
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const unknown = wanted.filter((id) => !SCENARIOS.some((s) => s.id === id));
if (unknown.length) {
  console.error(`Unknown scenario ${unknown.join(', ')}: the scenarios are ${SCENARIOS.map((s) => s.id).join(', ')}.`);
  process.exit(2);
}
const chosen = SCENARIOS.filter((s) => !wanted.length || wanted.includes(s.id));

const server = await probe();
if (!server.ok) {
  console.error(`PostgreSQL is not answering (${server.reason}): the fault scenarios need one (BENCH_DATABASE_URL).`);
  process.exit(1);
}
await dropLeftovers();
console.log(`fault scenarios on PostgreSQL ${server.version}\n`);

let failures = 0;
const rows: Omit<Figure, 'section'>[] = [];
const startedAt = new Date().toISOString();
const loadStart = loadText();
for (const scenario of chosen) {
  console.log(`== ${scenario.name}: ${scenario.about}`);
  const database = await createDatabase(`faults_${scenario.id}`);
  const dataDir = mkdtempSync(join(tmpdir(), 'switchboard-faults-'));
  const ctx: FaultContext = {
    target: postgresTarget(database.url),
    cli: ['--import', 'tsx', join(root, 'src/cli.ts')],
    cwd: root,
    // never another database, never the repository's ./.switchboard
    env: { ...Object.fromEntries(Object.entries(process.env).filter(([k, v]) => v !== undefined && !/^(DATABASE_URL|SWITCHBOARD_|PORT$)/.test(k))), LOG_LEVEL: 'error', SWITCHBOARD_DATA_DIR: dataDir } as Record<string, string>,
    log: (line) => console.log(`   ${line}`),
  };
  const t0 = performance.now();
  try {
    const c = await scenario.run(ctx);
    print(c);
    const ok = passed(c);
    rows.push({
      figure: scenario.name,
      value: `${c.total} ${c.unit}: ${c.doneAtKill} done at the fault, ${c.doneAfterRerun} after; ${c.duplicates} duplicates, ${c.lost} lost; ${c.checks.filter((x) => x.ok).length}/${c.checks.length} checks`,
      target: '0 lost, 0 duplicates, every check',
      met: ok,
      note: `${((performance.now() - t0) / 1000).toFixed(1)} s`,
    });
    if (!ok) failures++;
    console.log(`${ok ? 'PASS' : 'FAIL'} ${scenario.name} (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
  } catch (err) {
    failures++;
    rows.push({ figure: scenario.name, value: '—', failed: (err as Error).message.slice(0, 200) });
    console.log(`FAIL ${scenario.name}: ${(err as Error).stack ?? String(err)}\n`);
  } finally {
    await database.drop().catch(() => {});
    rmSync(dataDir, { recursive: true, force: true });
  }
}
console.log(failures ? `${failures} of ${chosen.length} scenarios failed.` : `All ${chosen.length} scenarios passed.`);
// the figures join the benchmarks' table (bench/results.md), under a section of their own
recordExternal('faults', rows, { command: `npm run faults${wanted.length ? ` -- ${wanted.join(' ')}` : ''}`, date: startedAt, loadStart, postgres: `PostgreSQL ${server.version}` });
console.log('figures written to bench/results.md');
process.exit(failures ? 1 : 0);

function print(c: FaultCounts): void {
  const rows: [string, number][] = [
    [`${c.unit} in all`, c.total],
    ['done at the kill', c.doneAtKill],
    ['done after the rerun', c.doneAfterRerun],
    ['duplicates', c.duplicates],
    ['lost', c.lost],
  ];
  for (const [label, n] of rows) console.log(`   ${label.padEnd(24)} ${String(n).padStart(6)}`);
  for (const x of c.checks) console.log(`   ${x.ok ? 'ok  ' : 'FAIL'} ${x.line}`);
}
