import { readFileSync } from 'node:fs';
import { sql } from 'drizzle-orm';
import { rowsOf, type Database } from '../../src/db/client.js';

/** What the soak (bench/soak.ts) reads of serve while it runs, and of the database after. */

export interface ServeLog {
  warnings: number;
  errors: number;
  samples: string[];
}

const FINAL = ['succeeded', 'failed', 'filtered', 'cancelled'];

/** serve's log lines (JSON, one a line) at level warn and error. */
export function loggedProblems(stderr: string): ServeLog {
  const out: ServeLog = { warnings: 0, errors: 0, samples: [] };
  for (const line of stderr.split('\n')) {
    const level = /"level":"(warn|error)"/.exec(line)?.[1];
    if (!level) continue;
    if (level === 'error') out.errors++;
    else out.warnings++;
    if (out.samples.length < 10) out.samples.push(line.slice(0, 400));
  }
  return out;
}

/** Resident memory of a process in MB (Linux /proc), NaN elsewhere. */
export function rssMb(pid: number): number {
  try {
    const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb ? Number(kb) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** CPU seconds a process has used (Linux /proc; clock ticks of 1/100 s), NaN elsewhere. */
export function cpuSeconds(pid: number): number {
  try {
    // the fields after the command's closing parenthesis: utime and stime are the 12th and 13th
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/** The counters the soak reads from serve's /metrics; NaN when it does not answer within 10 s (an overloaded serve). */
export async function scrape(origin: string): Promise<{ finished: number; queueDepth: number; heapMb: number }> {
  const text = await fetch(`${origin}/metrics`, { signal: AbortSignal.timeout(10_000) }).then(
    (r) => r.text(),
    () => '',
  );
  if (!text) return { finished: Number.NaN, queueDepth: Number.NaN, heapMb: Number.NaN };
  const sum = (name: string) =>
    text
      .split('\n')
      .filter((l) => l.startsWith(name + '{') || l.startsWith(name + ' '))
      .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  return { finished: sum('switchboard_executions_finished_total'), queueDepth: sum('switchboard_queue_depth'), heapMb: sum('nodejs_heap_size_used_bytes') / 1024 / 1024 };
}

/** The runs of the acknowledged deliveries, read from the database after serve stopped. */
export async function deliveryOutcomes(database: Database, ids: string[]): Promise<{ finished: number; runs: number; byStatus: Record<string, number> }> {
  const arr = `{${ids.join(',')}}`;
  const byStatus = rowsOf<{ status: string; n: number }>(
    await database.db.execute(sql`
      select e.status, count(*)::int as n from webhook_deliveries d join executions e on e.id = d.execution_id
      where d.id = any(${arr}::uuid[]) group by e.status`),
  );
  const [runs] = rowsOf<{ runs: number }>(await database.db.execute(sql`select count(*)::int as runs from executions where delivery_id = any(${arr}::uuid[])`));
  const statuses = Object.fromEntries(byStatus.map((r) => [r.status, Number(r.n)]));
  return {
    finished: FINAL.reduce((n, s) => n + (statuses[s] ?? 0), 0),
    runs: Number(runs?.runs ?? 0),
    byStatus: statuses,
  };
}
