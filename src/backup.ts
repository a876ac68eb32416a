import { closeSync, existsSync, fsyncSync, linkSync, openSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { sql } from 'drizzle-orm';
import type { Config } from './config.js';
import { lockDataDir, lockHolder, openDatabase, ownDataDir, rowsOf, type Database } from './db/client.js';
import { controlSocketPath, requestBackup } from './db/control-socket.js';
import { readSnapshotFile } from './db/snapshot-file.js';
import { dataKeys } from './db/schema/index.js';
import { masterFingerprint, parseMasterKey, shortFingerprint } from './core/keyring.js';
import { UserError } from './core/errors.js';
import { masterKeyFile } from './app.js';

/**
 * `switchboard backup FILE` and `switchboard restore FILE`: the embedded database's data
 * directory as one file and back. The master key is never in it (README, "Backups").
 */

function embeddedOnly(config: Config, command: 'backup' | 'restore'): void {
  if (config.databaseUrl) {
    throw new UserError(
      command === 'backup'
        ? 'backup is for the embedded database: with DATABASE_URL set, back up PostgreSQL with pg_dump.'
        : 'restore is for the embedded database: with DATABASE_URL set, restore PostgreSQL with pg_restore or psql.',
    );
  }
}

function fileArgument(args: string[], command: string, options: { force?: { type: 'boolean' } } = {}) {
  const { values, positionals } = parseArgs({ args, options, allowPositionals: true, strict: true });
  if (positionals.length !== 1) throw new UserError(`${command} needs one FILE: switchboard ${command} FILE.`);
  return { file: resolve(positionals[0]!), force: (values as { force?: boolean }).force === true };
}

/**
 * A consistent snapshot while a server runs (asked of the lock holder on the control socket),
 * or, when nothing holds the data directory, taken by opening it here. Written to a temp file
 * beside FILE (0600: it holds the database), synced, then moved into place atomically.
 */
export async function backupCommand(config: Config, args: string[]): Promise<number> {
  embeddedOnly(config, 'backup');
  const { file, force } = fileArgument(args, 'backup', { force: { type: 'boolean' } });
  if (existsSync(file) && !force) throw new UserError(`${file} already exists: choose another FILE, or pass --force to replace it.`);
  if (!existsSync(dirname(file))) throw new UserError(`The directory ${dirname(file)} does not exist.`);
  if (!existsSync(join(config.dataDir, 'pgdata', 'PG_VERSION'))) throw new UserError(`There is no embedded database in ${config.dataDir} to back up.`);
  const temp = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);
  try {
    const { bytes, source } = await snapshotTo(config.dataDir, temp);
    const fd = openSync(temp, 'r');
    fsyncSync(fd);
    closeSync(fd);
    place(temp, file, force);
    process.stdout.write(`Wrote ${bytes} bytes to ${file} (${source}).\n`);
    return 0;
  } finally {
    rmSync(temp, { force: true });
  }
}

async function snapshotTo(dataDir: string, temp: string): Promise<{ bytes: number; source: string }> {
  const ask = async (pid: number) => {
    const bytes = await requestBackup(dataDir, temp).catch((err: Error) => {
      throw new UserError(`The backup from process ${pid} failed: ${err.message}.`);
    });
    if (bytes === null) {
      throw new UserError(
        `The embedded database in ${dataDir} is in use by process ${pid}, which does not answer on its control socket ${controlSocketPath(dataDir)}: ` +
          'stop it and run backup again.',
      );
    }
    return { bytes, source: `a snapshot from the running process ${pid}` };
  };
  const holder = lockHolder(dataDir);
  if (holder) return ask(holder);
  let database: Database;
  try {
    database = await openDatabase({ dataDir }); // as it is: a backup migrates nothing
  } catch (err) {
    const raced = lockHolder(dataDir); // a server started meanwhile
    if (raced) return ask(raced);
    throw err;
  }
  try {
    const snapshot = Buffer.from(await (await database.backup!()).arrayBuffer());
    writeFileSync(temp, snapshot, { mode: 0o600, flag: 'wx' });
    return { bytes: snapshot.byteLength, source: 'taken by opening the data directory: no process held it' };
  } finally {
    await database.close();
  }
}

/** Move the finished temp file to FILE: a rename with --force, else a link, which never replaces a file that appeared meanwhile. */
function place(temp: string, file: string, force: boolean): void {
  if (force) return renameSync(temp, file);
  try {
    linkSync(temp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new UserError(`${file} already exists: choose another FILE, or pass --force to replace it.`);
    throw err;
  }
}

/**
 * Restore FILE into the configured data directory, which must be empty (or hold only the
 * master key file, which the backup does not contain: an operator may put it there first).
 * Opening the restored database applies the migrations of this version, so a backup made by
 * an older one is brought up to date here.
 *
 * Reading a large backup takes a while, and a server may start in the directory meanwhile: the
 * directory's lock is taken before anything is written and it is checked again under it, and a
 * restore removes only what it made itself — never a database, lock or socket that another
 * process made there. The backup is loaded and migrated in `RESTORING` inside the directory and
 * moved to `pgdata` only when complete: a restore that fails, or is killed, leaves no
 * half-written database where a server would open it, and the next restore clears what a killed
 * one left.
 */
export async function restoreCommand(config: Config, args: string[]): Promise<number> {
  embeddedOnly(config, 'restore');
  const { file } = fileArgument(args, 'restore');
  const dir = config.dataDir;
  const ours = (e: string) => ['master.key', 'switchboard.lock', RESTORING].includes(e);
  const notEmpty = `${dir} is not empty: restore only into an empty data directory (or set SWITCHBOARD_DATA_DIR to a new one).`;
  const present = entriesOf(dir);
  if (present?.some((e) => !ours(e))) throw new UserError(notEmpty); // nothing touched
  const snapshot = readSnapshotFile(file); // nor for a file that is not a backup
  const existed = present !== null;
  ownDataDir(dir);
  let unlock: () => void;
  try {
    unlock = lockDataDir(dir);
  } catch (err) {
    // a server started in it while the backup was read: what it made there stays as it is
    if (!existed) rmdirQuietly(dir);
    const pid = lockHolder(dir);
    throw new UserError(pid ? `${dir} is in use by process ${pid}, which started in it meanwhile: nothing was restored, and nothing of it was changed.` : (err as Error).message);
  }
  const staging = join(dir, RESTORING);
  let database: Database | undefined;
  let fingerprints: string[];
  try {
    if (entriesOf(dir)!.some((e) => !ours(e))) throw new UserError(notEmpty); // again, now that no one else can start in it
    rmSync(staging, { recursive: true, force: true }); // what a killed restore left (the lock is ours: none runs)
    try {
      database = await openDatabase({ dataDir: staging, loadDataDir: snapshot });
      const [found] = rowsOf<{ t: string | null }>(await database.db.execute(sql`select to_regclass('drizzle.__drizzle_migrations')::text as t`));
      if (!found?.t) throw new UserError(`${file} is a PGlite database, but not a Switchboard one.`);
      await database.migrate();
      fingerprints = (await database.db.selectDistinct({ fp: dataKeys.masterFingerprint }).from(dataKeys)).map((r) => r.fp);
      await database.close();
    } catch (err) {
      await database?.close().catch(() => {});
      if (err instanceof UserError) throw err;
      throw new UserError(`${file} could not be restored: ${(err as Error).message.split('\n')[0]!.replace(/\.?$/, '.')}`);
    }
    renameSync(join(staging, 'pgdata'), join(dir, 'pgdata'));
  } finally {
    rmSync(staging, { recursive: true, force: true });
    unlock();
    if (!existed) rmdirQuietly(dir); // a refused or failed restore leaves no directory it made (a restored one is not empty)
  }
  process.stdout.write(`Restored ${file} into ${dir}.\n` + keyReminder(config, fingerprints));
  return 0;
}

/** Where a restore loads and migrates the backup before moving it into place (inside the data directory: same file system). */
const RESTORING = 'restoring';

/** Remove `dir` if it is empty. */
function rmdirQuietly(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    /* not empty, or gone */
  }
}

/** The names in `dir`; null when it does not exist (empty too). */
function entriesOf(dir: string): string[] | null {
  try {
    return readdirSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ENOTDIR') throw new UserError(`${dir} is a file, not a data directory.`);
    throw err;
  }
}

/** What to know about the master key after a restore: which one the credentials need, and whether the configured one is it. */
function keyReminder(config: Config, fingerprints: string[]): string {
  const file = masterKeyFile(config);
  const tokens =
    'API tokens issued before the backup still work; the admin-token file is not in it (make a new token with `switchboard issue-token --email …`).\n';
  if (fingerprints.length === 0) return `The backup holds no encrypted credentials. ${tokens}`;
  const need = fingerprints.map(shortFingerprint).join(', ');
  let configured = '';
  try {
    const key = config.masterKey
      ? { source: 'SWITCHBOARD_MASTER_KEY', key: parseMasterKey(config.masterKey, 'SWITCHBOARD_MASTER_KEY') }
      : existsSync(file) && statSync(file).isFile()
        ? { source: `the key file ${file}`, key: parseMasterKey(readFileSync(file, 'utf8'), `the master key file ${file}`) }
        : null;
    if (key) {
      const fp = masterFingerprint(key.key);
      configured = fingerprints.includes(fp)
        ? `The configured master key (${key.source}) is that key.\n`
        : `The configured master key (${key.source}, fingerprint ${shortFingerprint(fp)}) is NOT that key: the server will refuse to start with it.\n`;
    }
  } catch (err) {
    configured = `${(err as Error).message}\n`;
  }
  return (
    `The master key is not in the backup: its credentials are encrypted with the master key of fingerprint ${need}. ` +
    `Start with that same key (SWITCHBOARD_MASTER_KEY, or its key file at ${file}), or they cannot be decrypted.\n` +
    configured +
    tokens
  );
}
