import { mkdirSync, writeFileSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import * as schema from './schema/index.js';
import { migrationsFolder } from '../paths.js';

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
  const client = postgres(url, { max, onnotice: () => {}, connection: { application_name: 'switchboard' } });
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
    mkdirSync(opts.dataDir, { recursive: true });
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
  const db = drizzle(pg, { schema }) as unknown as Db;
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
      await pg.close();
      release();
    },
    dump: () => pg.dumpDataDir('none'),
  };
}

/**
 * PGlite is a single-process database: two processes on one data directory would corrupt it.
 * A pid lock file turns that into a clear error.
 */
function lockDataDir(dir: string): () => void {
  const lock = join(dir, 'switchboard.lock');
  if (existsSync(lock)) {
    const pid = Number(readFileSync(lock, 'utf8').trim());
    if (pid && pid !== process.pid && isAlive(pid)) {
      throw new Error(
        `The embedded database in ${dir} is in use by process ${pid}. ` +
          'Stop it, or connect to that server over HTTP, or set DATABASE_URL to use PostgreSQL.',
      );
    }
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

/** Whether a process with this pid exists (signal 0 probes without signalling). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
