import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { openDatabase, type Database } from '../../src/db/client.js';

/**
 * What the fault scenarios share (`npm run faults`, and the tests that run the same scenarios:
 * test/rotation-crash.test.ts, test/replay-crash.test.ts). A scenario builds its world in an
 * empty, migrated database, starts the real CLI on it, kills it with SIGKILL half way, runs it
 * again, and returns its counts: how much there was, how much was done at the kill and after the
 * rerun, what was done twice and what was lost, and the further checks it made.
 *
 * A scenario never touches the database while a process it started runs (it closes its own
 * handle first), so the same code runs on PostgreSQL and on an embedded PGlite data directory
 * (single-process).
 */

export interface FaultCheck {
  ok: boolean;
  line: string;
}

export interface FaultCounts {
  /** what the counts count: 'connections', 'deliveries' */
  unit: string;
  total: number;
  doneAtKill: number;
  doneAfterRerun: number;
  duplicates: number;
  lost: number;
  checks: FaultCheck[];
}

/** Where a scenario runs: a database a spawned CLI can be pointed at, and opened in this process between runs. */
export interface FaultTarget {
  kind: 'postgres' | 'pglite';
  /** what points a spawned CLI at this database */
  env: Record<string, string>;
  /** the database, migrated, in this process (PGlite: only while no process the scenario started holds it) */
  open(): Promise<Database>;
}

export interface FaultContext {
  target: FaultTarget;
  /** node arguments that start the CLI: the shipped bundle, or tsx on src/cli.ts */
  cli: string[];
  cwd: string;
  /** the environment of spawned processes, without anything pointing at another database */
  env: Record<string, string>;
  /** progress lines (the script prints them; tests may ignore them) */
  log?: (line: string) => void;
}

/** One entry of `npm run faults` (bench/faults.ts lists them): a fault, and the counts after it. */
export interface Scenario {
  /** picks it on the command line: `npm run faults -- <id>` */
  id: string;
  name: string;
  about: string;
  run(ctx: FaultContext): Promise<FaultCounts>;
}

export function postgresTarget(url: string): FaultTarget {
  return {
    kind: 'postgres',
    env: { DATABASE_URL: url },
    async open() {
      const database = await openDatabase({ url, max: 4 });
      await database.migrate();
      return database;
    },
  };
}

/** `dataDir` as SWITCHBOARD_DATA_DIR: the database is `dataDir/pgdata`. */
export function pgliteTarget(dataDir: string): FaultTarget {
  return {
    kind: 'pglite',
    env: { SWITCHBOARD_DATA_DIR: dataDir },
    async open() {
      const database = await openDatabase({ dataDir });
      try {
        await database.migrate();
      } catch (err) {
        await database.close();
        throw err;
      }
      return database;
    },
  };
}

/** Open the target, run `fn`, close it (always). */
export async function withDatabase<T>(target: FaultTarget, fn: (database: Database) => Promise<T>): Promise<T> {
  const database = await target.open();
  try {
    return await fn(database);
  } finally {
    await database.close();
  }
}

/** A scenario passes when the kill landed half way and every count and check is right. */
export function passed(c: FaultCounts): boolean {
  return c.doneAtKill > 0 && c.doneAtKill < c.total && c.doneAfterRerun === c.total && c.duplicates === 0 && c.lost === 0 && c.checks.every((x) => x.ok);
}

export interface Spawned {
  child: ChildProcess;
  /** resolves when the process has exited, with its code or the signal that ended it */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout(): string;
  stderr(): string;
}

/** The CLI with `args`; `onLine` sees each line of its stderr as it comes. */
export function startCli(ctx: FaultContext, args: string[], env: Record<string, string>, onLine?: (line: string) => void): Spawned {
  const child = spawn(process.execPath, [...ctx.cli, ...args], { cwd: ctx.cwd, env: { ...ctx.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let partial = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => {
    const text = c.toString();
    err += text;
    if (!onLine) return;
    const lines = (partial + text).split('\n');
    partial = lines.pop()!;
    for (const l of lines) onLine(l);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return { child, exited, stdout: () => out, stderr: () => err };
}

/** SIGTERM, then SIGKILL if it has not exited within `ms`. */
export async function stop(p: Spawned, ms = 15_000): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const t = setTimeout(() => p.child.kill('SIGKILL'), ms);
  await p.exited;
  clearTimeout(t);
}

/** Poll `probe` until `ok`, or throw after `ms` saying what it last saw. */
export async function until<T>(what: string, probe: () => Promise<T> | T, ok: (v: T) => boolean, ms = 60_000, every = 20): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(v)}`);
    await sleep(every);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolvePort(port));
    });
  });
}

export const check = (ok: boolean, line: string): FaultCheck => ({ ok, line });

/** A real MCP client over Streamable HTTP to the server at `origin` (its /mcp), as `token`. */
export async function mcpOverHttp(origin: string, token: string): Promise<Client> {
  const client = new Client({ name: 'switchboard-faults', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL('/mcp', origin), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
  return client;
}
