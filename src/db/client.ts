import { chmodSync, mkdirSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as turn } from 'node:timers/promises';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import * as schema from './schema/index.js';
import { migrationsFolder } from '../paths.js';
import { serveControlSocket } from './control-socket.js';
import { log, errorFields } from '../log.js';

export type Schema = typeof schema;
/** Both drivers give the same Drizzle surface: one code path over PGlite and PostgreSQL. */
export type Db = PgDatabase<PgQueryResultHKT, Schema>;

/** The rows of a raw `db.execute(sql…)`: postgres.js answers an array, PGlite an object with `rows`. */
export const rowsOf = <T>(result: unknown): T[] => (Array.isArray(result) ? result : ((result as { rows?: T[] }).rows ?? [])) as T[];

export interface Database {
  db: Db;
  kind: 'pglite' | 'postgres';
  /** Apply committed migrations (idempotent). */
  migrate(): Promise<void>;
  ping(): Promise<void>;
  /** LISTEN on a channel (both drivers have it); resolves to the function that stops listening. */
  listen(channel: string, onNotify: () => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
  /** PGlite only: the data directory as a tarball (test fixtures start from it). */
  dump?(): Promise<Blob>;
  /** PGlite only: a consistent snapshot of the data directory, a gzipped tar taken between transactions (`switchboard backup`). */
  backup?(): Promise<Blob>;
}

export interface OpenOptions {
  /** postgres://… → postgres.js; absent → embedded PGlite. */
  url?: string | undefined;
  /** PGlite data directory; absent → in memory. */
  dataDir?: string | undefined;
  /** PGlite: start from a dumped data directory (tests). */
  loadDataDir?: Blob | File | undefined;
  /** postgres.js pool size. */
  max?: number;
}

/**
 * True when the newest committed migration is already applied: one query instead of the
 * migrator's schema checks and empty transaction on every start.
 */
async function upToDate(query: (text: string) => Promise<{ created_at: unknown }[]>): Promise<boolean> {
  const journal = JSON.parse(readFileSync(join(migrationsFolder, 'meta', '_journal.json'), 'utf8')) as { entries: { when: number }[] };
  const newest = Math.max(...journal.entries.map((e) => e.when));
  try {
    const rows = await query('select created_at from drizzle.__drizzle_migrations order by created_at desc limit 1');
    return rows.length > 0 && Number(rows[0]!.created_at) >= newest;
  } catch {
    return false; // no migrations table yet
  }
}

export async function openDatabase(opts: OpenOptions): Promise<Database> {
  return opts.url ? openPostgres(opts.url, opts.max ?? 10) : openPglite(opts);
}

async function openPostgres(url: string, max: number): Promise<Database> {
  const { default: postgres } = await import('postgres');
  const { drizzle } = await import('drizzle-orm/postgres-js');
  const client = postgres(url, {
    max,
    // a database that does not answer fails a call in 10 s (the driver's default is 30)
    connect_timeout: 10,
    // reconnect attempts back off to 2 s at most (the driver's default grows to 20 s): after a restart
    // or a failover the server is serving again within about 2 s of the database, not 20
    backoff: (attempts: number) => (0.5 + Math.random() / 2) * Math.min(0.1 * 2 ** attempts, 2),
    onnotice: () => {},
    connection: { application_name: 'switchboard' },
  });
  const db = drizzle(client, { schema }) as unknown as Db;
  return {
    db,
    kind: 'postgres',
    async migrate() {
      if (await upToDate((q) => client.unsafe(q) as Promise<{ created_at: unknown }[]>)) return;
      const { migrate } = await import('drizzle-orm/postgres-js/migrator');
      await migrate(drizzle(client, { schema }), { migrationsFolder });
    },
    async ping() {
      await client`select 1`;
    },
    async listen(channel, onNotify) {
      const { unlisten } = await client.listen(channel, () => onNotify());
      return unlisten;
    },
    async close() {
      await client.end({ timeout: 5 });
    },
  };
}

async function openPglite(opts: OpenOptions): Promise<Database> {
  const { PGlite } = await import('@electric-sql/pglite');
  const { drizzle } = await import('drizzle-orm/pglite');
  let release = () => {};
  if (opts.dataDir) {
    ownDataDir(opts.dataDir);
    release = lockDataDir(opts.dataDir);
  }
  let client;
  try {
    client = new PGlite({
      ...(opts.dataDir ? { dataDir: join(opts.dataDir, 'pgdata') } : {}),
      ...(opts.loadDataDir ? { loadDataDir: opts.loadDataDir } : {}),
    });
    await client.waitReady;
  } catch (err) {
    release();
    throw err;
  }
  const pg = client;
  yieldBetweenQueries(pg);
  const db = drizzle(pg, { schema }) as unknown as Db;
  // PGlite's dump runs under its query lock (no statement runs meanwhile); under the transaction
  // lock too, it also falls between transactions. The checkpoint first leaves a restore nothing to replay.
  const backup = async () => {
    await pg.exec('checkpoint');
    return pg._runExclusiveTransaction(() => pg.dumpDataDir('gzip'));
  };
  // the lock holder answers `switchboard backup` on the data directory's control socket
  const control = opts.dataDir ? await serveControlSocket(opts.dataDir, backup) : null;
  return {
    db,
    kind: 'pglite',
    async migrate() {
      if (await upToDate(async (q) => (await pg.query<{ created_at: unknown }>(q)).rows)) return;
      const { migrate } = await import('drizzle-orm/pglite/migrator');
      await migrate(drizzle(pg, { schema }), { migrationsFolder });
    },
    async ping() {
      await pg.query('select 1');
    },
    async listen(channel, onNotify) {
      return pg.listen(channel, () => onNotify());
    },
    async close() {
      await control?.close();
      await pg.close();
      release();
    },
    dump: () => pg.dumpDataDir('none'),
    backup,
  };
}

/**
 * PGlite runs each query synchronously on this thread (WebAssembly, with synchronous file I/O), and
 * hands its lock from one query to the next in promise callbacks. Under load the next query is
 * always ready, so the event loop never got back to its I/O phase: measured with 200 sessions, new
 * connections were accepted about 3 per second (the listen queue overflowed, requests waited up to
 * 60 s before the server read them), and timers (the busy bound) fired late. Every query now waits
 * one turn of the event loop before it takes the lock, so between two queries the loop accepts,
 * reads and answers what arrived, as it does between two round trips to PostgreSQL.
 */
function yieldBetweenQueries(pg: { _runExclusiveQuery<T>(fn: () => Promise<T>): Promise<T> }): void {
  const run = pg._runExclusiveQuery.bind(pg);
  pg._runExclusiveQuery = async <T>(fn: () => Promise<T>): Promise<T> => {
    await turn();
    return run(fn);
  };
}

/**
 * Create the data directory `dir` for this user alone (0700), and tighten an existing one: PGlite
 * writes the database's files readable and writable by everyone (0666), so the directory is what
 * keeps other local users from reading or altering the database (and from bypassing the control
 * socket's 0600 with a copy of the files), as PostgreSQL's own 0700 data directory does.
 */
export function ownDataDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  try {
    chmodSync(dir, 0o700);
  } catch (err) {
    log.warn('could not make the data directory private (mode 0700): other local users may read the database files', { dir, ...errorFields(err) });
  }
}

/**
 * PGlite is a single-process database: two processes on one data directory would corrupt it.
 * A pid lock file turns that into a clear error.
 */
export function lockDataDir(dir: string): () => void {
  const lock = join(dir, 'switchboard.lock');
  const pid = lockHolder(dir);
  if (pid) {
    throw new Error(
      `The embedded database in ${dir} is in use by process ${pid}. ` +
        'Stop it, or connect to that server over HTTP, or set DATABASE_URL to use PostgreSQL.',
    );
  }
  writeFileSync(lock, String(process.pid));
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    try {
      if (readFileSync(lock, 'utf8').trim() === String(process.pid)) rmSync(lock);
    } catch {
      /* already gone */
    }
  };
  process.once('exit', release);
  return release;
}

/** The live process, other than this one, that holds the lock of data directory `dir`; null when none does. */
export function lockHolder(dir: string): number | null {
  let pid: number;
  try {
    pid = Number(readFileSync(join(dir, 'switchboard.lock'), 'utf8').trim());
  } catch {
    return null;
  }
  return pid && pid !== process.pid && isAlive(pid) ? pid : null;
}

/** Whether a process with this pid exists (signal 0 probes without signalling). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
