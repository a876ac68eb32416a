import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import postgres from 'postgres';
import { openDatabase, type Database } from '../../src/db/client.js';

export const testDbKind = (): 'pglite' | 'postgres' => (process.env.SB_TEST_DB === 'postgres' ? 'postgres' : 'pglite');

export interface TestDatabase extends Database {
  /** a postgres:// URL for this database (PostgreSQL runs only), for spawned processes */
  url: string | undefined;
}

/** A fresh, migrated database for one test file: a loaded PGlite dump, or a copy of the PostgreSQL template. */
export async function testDatabase(): Promise<TestDatabase> {
  if (testDbKind() === 'pglite') {
    const buf = readFileSync(inject('pgliteDump'));
    const db = await openDatabase({ loadDataDir: new Blob([buf]) });
    return Object.assign(db, { url: undefined });
  }
  const base = process.env.TEST_DATABASE_URL!;
  const template = inject('pgTemplate')!;
  const name = `sb_t_${template.slice('sb_tpl_'.length)}_${randomBytes(4).toString('hex')}`;
  const admin = postgres(base, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name} template ${template}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  const db = await openDatabase({ url: url.toString(), max: 4 });
  const close = db.close.bind(db);
  return Object.assign(db, {
    url: url.toString(),
    async close() {
      await close();
      const a = postgres(base, { max: 1, onnotice: () => {} });
      await a.unsafe(`drop database if exists ${name} with (force)`);
      await a.end();
    },
  });
}
