/**
 * The results file of the benchmarks: bench/results.md, one table of every figure of the project,
 * rendered from bench/results.json, which keeps the last figures of each section.
 *
 * `npm run bench` (bench/run.ts) calls `record()` wherever its console report prints a figure,
 * with the same target and verdict as that line, and `writeResults()` at the end. A run replaces
 * the rows of the sections it recorded and keeps the others (a single-section run such as
 * `npm run bench -- surface` does not throw the rest away); every row names the run it comes from,
 * so a table that mixes runs shows it, and the header describes each run still in the table
 * (date, command, machine, PostgreSQL, load average at its start and end).
 *
 * Another command adds its figures the same way, under a section of its own:
 *
 *   import { recordExternal } from '../bench/results.js';
 *   recordExternal('fuzz', [{ figure: 'tool calls per second', value: fmt(n), unit: '/s' }],
 *                  { command: 'npm run fuzz', date: startedIso, loadStart });
 *
 * That replaces the section's previous rows in results.json and renders results.md again.
 * Nothing here measures or asserts; no secret belongs in a row (BENCH_DATABASE_URL is never shown).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Figure {
  /** '1. Cold start', '8. Templates', or another command's own ('fuzz', 'soak', 'faults') */
  section: string;
  /** the console's label; the database in the label when a section measures both */
  figure: string;
  /** formatted by the caller, e.g. '412 ms' or 'p50 1.20 ms · p99 3.40 ms' */
  value: string;
  /** appended to the value when given, e.g. '/s' */
  unit?: string;
  /** e.g. 'p99 < 20 ms'; none: the figure is an extra, shown beside the targeted ones */
  target?: string;
  /** the verdict of the console line, when it has a target */
  met?: boolean;
  /** the reference measured in the same run, e.g. 'raw insert rate 6,120 tx/s → 0.83×' */
  reference?: string;
  note?: string;
  /** the case failed (the message); the row stands in for the figures it would have given */
  failed?: string;
}

export interface RunInfo {
  /** ISO date of the start of the run; default: now */
  date?: string;
  /** e.g. 'npm run bench -- surface' */
  command: string;
  /** the sections the run covers; default: those of its rows */
  sections?: string[];
  /** e.g. 'PostgreSQL 16.4 at 127.0.0.1:5432'; no secret (never the URL) */
  postgres?: string;
  /** load average when the run started (loadText()); the end is taken when the file is written */
  loadStart?: string;
}

interface Run extends Required<Omit<RunInfo, 'postgres'>> {
  postgres: string;
  loadEnd: string;
  machine: string;
}
interface Stored {
  version: 1;
  runs: Record<string, Run>;
  rows: (Figure & { run: string })[];
}

export const RESULTS_MD = join(dirname(fileURLToPath(import.meta.url)), 'results.md');

const recorded: Figure[] = [];

/** One figure of this run, as its console line shows it. */
export function record(f: Figure): void {
  recorded.push(clean(f));
}

/** `user:password@` in a URL becomes `user:…@`: a reason or an error message may quote BENCH_DATABASE_URL. */
export const redact = (s: string): string => s.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^\s:/@]*):[^\s@/]*@/gi, '$1:…@');

function clean(f: Figure): Figure {
  const out = { ...f };
  for (const k of ['figure', 'value', 'unit', 'target', 'reference', 'note', 'failed'] as const) if (out[k] !== undefined) out[k] = redact(out[k]);
  return out;
}

export const loadText = (): string => loadavg().map((v) => v.toFixed(2)).join(' ');

/** 'raw insert rate 6,120 tx/s → 0.83×': a reference figure and this figure's ratio to it. */
export function versus(reference: string, ratio?: number | null, digits = 2): string {
  return ratio === undefined || ratio === null || !Number.isFinite(ratio) ? reference : `${reference} → ${ratio.toFixed(digits)}×`;
}

/** Merge this run's recorded figures into results.json beside `path` and render `path`. */
export function writeResults(path: string, info: RunInfo): void {
  merge(path, recorded, info);
}

/** The same for another command's figures (fuzz, soak, faults): they replace `section`'s rows. */
export function recordExternal(section: string, rows: Omit<Figure, 'section'>[], info: RunInfo, path = RESULTS_MD): void {
  merge(path, rows.map((r) => clean({ ...r, section })), { sections: [section], ...info });
}

function merge(path: string, rows: readonly Figure[], info: RunInfo): void {
  const jsonPath = path.replace(/\.md$/, '') + '.json';
  const stored = load(jsonPath);
  const date = info.date ?? new Date().toISOString();
  const sections = [...new Set(rows.map((r) => r.section))];
  stored.runs[date] = {
    date,
    command: redact(info.command),
    sections: [...(info.sections ?? sections)].sort((x, y) => compareSections(x, y)),
    postgres: redact(info.postgres ?? '—'),
    loadStart: info.loadStart ?? '—',
    loadEnd: loadText(),
    machine: machine(),
  };
  stored.rows = [...stored.rows.filter((r) => !sections.includes(r.section)), ...rows.map((r) => ({ ...r, run: date }))];
  const used = new Set(stored.rows.map((r) => r.run));
  for (const k of Object.keys(stored.runs)) if (!used.has(k) && k !== date) delete stored.runs[k];
  writeFileSync(jsonPath, JSON.stringify(stored, null, 2) + '\n');
  writeFileSync(path, render(stored));
}

function load(jsonPath: string): Stored {
  if (!existsSync(jsonPath)) return { version: 1, runs: {}, rows: [] };
  try {
    const s = JSON.parse(readFileSync(jsonPath, 'utf8')) as Stored;
    if (s.version === 1 && Array.isArray(s.rows) && s.runs && typeof s.runs === 'object') return s;
  } catch {
    // unreadable: start again rather than fail the run at its end
  }
  process.stderr.write(`  … ${jsonPath} is not a results file of this version: starting a new one\n`);
  return { version: 1, runs: {}, rows: [] };
}

function machine(): string {
  const cpu = cpus();
  return `${cpu.length} × ${cpu[0]?.model.trim() ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, node ${process.version}, ${process.platform}/${process.arch}`;
}

/** '1.' < '2.' < … < '6.' < '6a.' < '7.' < … and the other commands' sections after them, by name */
function compareSections(a: string, b: string): number {
  const key = (s: string): [number, string] => {
    const m = /^(\d+)([a-z]?)\./.exec(s);
    return m ? [Number(m[1]), m[2]!] : [Number.MAX_SAFE_INTEGER, s];
  };
  const [x, y] = [key(a), key(b)];
  return x[0] - y[0] || x[1].localeCompare(y[1]);
}

const cell = (s: string | undefined): string => (s === undefined || s === '' ? '—' : s.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' '));

function render(s: Stored): string {
  const rows = s.rows
    .map((r, i) => ({ r, i }))
    .sort((a, b) => compareSections(a.r.section, b.r.section) || a.i - b.i)
    .map(({ r }) => r);
  const runs = Object.values(s.runs).sort((a, b) => b.date.localeCompare(a.date));
  const stamp = (date: string) => date.slice(0, 19).replace('T', ' ') + 'Z';
  const out: string[] = [
    '# Benchmark results',
    '',
    'Written by `npm run bench` (bench/run.ts, bench/results.ts) from bench/results.json; do not edit.',
    'Each section keeps the figures of the last run that measured it; the last column says which run.',
    'Figures only: nothing here passes or fails a build. A figure without a target is an extra.',
    '',
    runs.length === 1 ? '## The run' : `## The runs (${runs.length}: this table mixes them)`,
    '',
  ];
  for (const run of runs) {
    out.push(
      `- **${run.date}**: \`${run.command}\`, sections ${run.sections.join(', ')}`,
      `  - machine: ${run.machine}`,
      `  - PostgreSQL: ${run.postgres}`,
      `  - load average (1, 5, 15 min): ${run.loadStart} at the start, ${run.loadEnd} at the end`,
    );
  }
  out.push('', '## Figures', '', '| section | figure | value | target | verdict | reference | measured |', '|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const figure = r.target || r.failed || /^(extra|ref):/.test(r.figure) ? r.figure : `extra: ${r.figure}`;
    const value = r.failed ? `FAILED: ${r.failed}` : `${r.value}${r.unit ? ` ${r.unit}` : ''}${r.note ? ` (${r.note})` : ''}`;
    const verdict = r.failed ? 'FAILED' : r.met === undefined ? '—' : r.met ? 'met' : 'MISSED';
    out.push(`| ${[r.section, figure, value, r.target, verdict, r.reference, stamp(r.run)].map(cell).join(' | ')} |`);
  }
  return out.join('\n') + '\n';
}
