import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { isAlive } from '../src/db/client.js';

/**
 * Throwaway PostgreSQL databases for the benchmarks. The server is BENCH_DATABASE_URL, default
 * postgres://postgres@127.0.0.1:5432/postgres (a role allowed to CREATE/DROP DATABASE).
 * Databases are named sb_bench_<pid>_<hex> so leftovers of an interrupted run can be recognized.
 */
export const adminUrl = process.env.BENCH_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

const admin = () => postgres(adminUrl, { max: 1, connect_timeout: 3, onnotice: () => {} });

/** The server version when PostgreSQL answers, else the reason it does not. */
export async function probe(): Promise<{ ok: true; version: string } | { ok: false; reason: string }> {
  const sql = admin();
  try {
    const [row] = await sql<{ v: string }[]>`select current_setting('server_version') as v`;
    return { ok: true, version: row!.v };
  } catch (err) {
    return { ok: false, reason: (err as Error).message || String((err as { code?: string }).code ?? err) };
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

/** Drop sb_bench_<pid>_* databases whose process is gone (an interrupted earlier run). */
export async function dropLeftovers(): Promise<void> {
  const sql = admin();
  try {
    const rows = await sql<{ datname: string }[]>`select datname from pg_database where datname like 'sb\_bench\_%'`;
    for (const { datname } of rows) {
      const pid = Number(/^sb_bench_(\d+)_/.exec(datname)?.[1]);
      if (pid && pid !== process.pid && !isAlive(pid)) await sql.unsafe(`drop database if exists "${datname}" with (force)`);
    }
  } finally {
    await sql.end({ timeout: 1 });
  }
}

export interface BenchDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

export async function createDatabase(label: string): Promise<BenchDatabase> {
  const name = `sb_bench_${process.pid}_${label}_${randomBytes(3).toString('hex')}`;
  const sql = admin();
  try {
    await sql.unsafe(`create database "${name}"`);
  } finally {
    await sql.end({ timeout: 1 });
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  let dropped = false;
  return {
    name,
    url: url.toString(),
    async drop() {
      if (dropped) return;
      dropped = true;
      const a = admin();
      try {
        await a.unsafe(`drop database if exists "${name}" with (force)`);
      } finally {
        await a.end({ timeout: 1 });
      }
    },
  };
}
