import type { SoakReport } from '../soak.js';
import { fmt } from '../stats.js';

/** The soak's report as text: the settings, a table of the intervals, the totals and the verdicts. */

/** RSS may grow this much from the end of warm-up to the end of the run (`npm run soak`'s bound). */
export const RSS_GROWTH_BOUND = 0.2;

const num = (v: number, digits = 0) => (Number.isFinite(v) ? v.toFixed(digits) : 'n/a');

export function soakTable(r: SoakReport): string {
  const s = r.settings;
  const head = ['interval', 'calls', 'p50 ms', 'p99 ms', 'executions/s', 'RSS MB', 'errors', 'heap MB', 'serve CPU', 'client CPU'];
  const body = r.intervals.map((i, k) => [
    `${num(k ? r.intervals[k - 1]!.at : 0)}-${num(i.at)} s${k < r.settings.warmupIntervals ? ' (warm-up)' : ''}`,
    fmt(i.calls),
    num(i.p50, 1),
    num(i.p99, 1),
    num(i.executionsPerSecond, 1),
    num(i.rssMb),
    i.busy ? `${i.errors} (${i.busy} busy)` : String(i.errors),
    num(i.heapMb),
    `${num(i.serveCpu)} %`,
    `${num(i.clientCpu)} %`,
  ]);
  const widths = head.map((h, c) => Math.max(h.length, ...body.map((row) => row[c]!.length)));
  const line = (cells: string[]) => cells.map((x, c) => (c ? x.padStart(widths[c]!) : x.padEnd(widths[c]!))).join(' | ');
  return [
    `soak: ${s.seconds} s, ${s.sessions} MCP sessions (${s.users} users), ${s.rate} webhooks/s, think time ~${s.thinkMs} ms, ${s.database}, serve = ${s.serve}`,
    `serve settings: SWITCHBOARD_WORKERS=${s.workers} SWITCHBOARD_DB_POOL=${s.dbPool} SWITCHBOARD_TOOL_SLOTS=${s.toolSlots} SWITCHBOARD_BUSY_WAIT_MS=${s.busyWaitMs}`,
    '',
    line(head),
    widths.map((w) => '-'.repeat(w)).join('-|-'),
    ...body.map(line),
    '',
  ].join('\n');
}

export function soakSummary(r: SoakReport, bound = RSS_GROWTH_BOUND): { text: string; ok: boolean } {
  const c = r.calls;
  const w = r.webhooks;
  const kinds = Object.entries(c.byTool)
    .map(([tool, t]) => `${tool} ${fmt(t.calls)} (p50 ${num(t.p50, 1)} / p99 ${num(t.p99, 1)} ms${t.refused ? `, ${fmt(t.refused)} refused as expected` : ''}${t.errors ? `, ${t.errors} errors` : ''})`)
    .join('\n    ');
  const rssOk = r.rss.growth <= bound;
  const runsOk = w.finished === w.acked && w.runs === w.acked;
  const ok = r.errors === 0 && rssOk && runsOk;
  const text = [
    `tool calls: ${fmt(c.total)}, errors ${fmt(c.errors)}${c.busy ? ` (${fmt(c.busy)} refused as busy by the tool-call gate)` : ''}, expected refusals ${fmt(c.refused)}`,
    `    ${kinds}`,
    `webhooks: ${fmt(w.sent)} sent, ${fmt(w.acked)} answered 2xx, ${fmt(w.failed)} not; runs of them: ${fmt(w.runs)}, finished ${fmt(w.finished)} ` +
      `(${Object.entries(w.byStatus).map(([k, n]) => `${k} ${fmt(n)}`).join(', ')}); queue drained ${num(r.drainSeconds, 1)} s after the run`,
    `errors: ${fmt(r.errors)} (must be 0)`,
    `serve RSS: ${num(r.rss.startMb)} MB at start, ${num(r.rss.warmupMb)} MB after warm-up, ${num(r.rss.endMb)} MB at the end ` +
      `(${r.rss.growth >= 0 ? '+' : ''}${num(r.rss.growth * 100, 1)} % after warm-up; bound +${num(bound * 100)} %), peak ${num(r.rss.peakMb)} MB`,
    ...(r.errorSamples.length ? ['first errors:', ...r.errorSamples.slice(0, 10).map((e) => `    ${e}`)] : []),
    `serve logged ${fmt(r.serveLog.errors)} errors and ${fmt(r.serveLog.warnings)} warnings${r.serveLog.samples.length ? ', first:' : ''}`,
    ...r.serveLog.samples.map((l) => `    ${l}`),
    ok
      ? 'PASS'
      : `FAIL: ${[r.errors ? `${r.errors} errors` : '', rssOk ? '' : 'RSS grew beyond the bound', runsOk ? '' : 'not every acknowledged webhook has exactly one finished run'].filter(Boolean).join('; ')}`,
  ].join('\n');
  return { text, ok };
}
