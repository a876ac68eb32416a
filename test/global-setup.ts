import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import postgres from 'postgres';
import { openDatabase } from '../src/db/client.js';
import { findBrowser } from '../scripts/ensure-browser.mjs';

declare module 'vitest' {
  export interface ProvidedContext {
    pgliteDump: string;
    pgTemplate: string | null;
    /** the browser of the page tests (CHROMIUM_PATH, else /usr/bin/chromium), or why there is none */
    browser: { path: string | null; reason: string | null };
  }
}

/**
 * One migrated database of each kind for the whole run: a PGlite data directory dumped to a file
 * (a new PGlite costs seconds; loading a dump is much cheaper), and a PostgreSQL template database
 * that each test file copies with CREATE DATABASE … TEMPLATE.
 */
export default async function setup(project: TestProject) {
  // found the same way as by `npm test`'s pretest step (scripts/ensure-browser.mjs), which installs it
  project.provide('browser', findBrowser());
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-test-'));
  const pg = await openDatabase({});
  await pg.migrate();
  const dump = await pg.dump!();
  await pg.close();
  const dumpPath = join(dir, 'pgdata.tar');
  writeFileSync(dumpPath, Buffer.from(await dump.arrayBuffer()));
  project.provide('pgliteDump', dumpPath);

  let template: string | null = null;
  const url = process.env.TEST_DATABASE_URL;
  if (url) {
    template = `sb_tpl_${process.pid}`;
    const admin = postgres(url, { max: 1, onnotice: () => {} });
    await admin.unsafe(`drop database if exists ${template}`);
    await admin.unsafe(`create database ${template}`);
    const tplUrl = new URL(url);
    tplUrl.pathname = `/${template}`;
    const db = await openDatabase({ url: tplUrl.toString(), max: 1 });
    await db.migrate();
    await db.close();
    await admin.end();
  }
  project.provide('pgTemplate', template);

  return async () => {
    rmSync(dir, { recursive: true, force: true });
    if (url && template) {
      const admin = postgres(url, { max: 1, onnotice: () => {} });
      const leftovers = await admin<{ datname: string }[]>`select datname from pg_database where datname like ${'sb_t_' + process.pid + '_%'}`;
      for (const { datname } of leftovers) await admin.unsafe(`drop database if exists ${datname} with (force)`);
      await admin.unsafe(`drop database if exists ${template} with (force)`);
      await admin.end();
    }
  };
}
