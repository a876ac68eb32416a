import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { CLI, cliEnv, repoRoot, runCli, spawnServe, tempDataDir, type CliResult } from './helpers/spawn.js';
import { runCliWithInput } from './helpers/cli-world.js';
import { data } from './helpers/world.js';
import { testDbKind } from './helpers/db.js';

/**
 * `switchboard backup` and `switchboard restore` of the embedded database, through the real CLI:
 * a backup taken from a running `serve` over its control socket while tool calls keep writing,
 * restored into a fresh directory and read back (a decrypted credential) with the original
 * master key only; the refusals; and a backup with no server, which opens the directory itself.
 */
const KEY = randomBytes(32).toString('base64');
const OTHER_KEY = randomBytes(32).toString('base64');
const SECRET = `sk_live_${randomBytes(12).toString('hex')}`;
const PASSWORD = 'restore-check password';
const dir = tempDataDir();
const scratch = tempDataDir(); // backup files and restore targets
const backupFile = join(scratch, 'switchboard.backup');
const env = cliEnv({ SWITCHBOARD_DATA_DIR: dir, SWITCHBOARD_MASTER_KEY: KEY, PORT: '0', SWITCHBOARD_WORKERS: '1' });
const outputs: string[] = [];

let server: ChildProcess;
let serverErr: () => string = () => '';
let client: Client;
let adminToken: string;

async function cli(args: string[], extra: Record<string, string | undefined> = {}): Promise<CliResult> {
  const e = { ...env };
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete e[k];
    else e[k] = v;
  }
  const r = await runCli(args, e);
  outputs.push(r.stdout, r.stderr);
  return r;
}

const call = (name: string, args: Record<string, unknown>) => client.callTool({ name, arguments: args }) as Promise<CallToolResult>;
const addConnection = (name: string, secret: string) => call('add_connection', { account: 'boring-co', app: 'stripe', name, credentials: { secret_key: secret } });

/** The names of boring-co's stripe connections in the restored data directory `restored`, through `switchboard call`. */
async function restoredConnections(restored: string): Promise<string[]> {
  const r = await cli(['call', '--json', 'list_connections', JSON.stringify({ account: 'boring-co', include_shared: false, limit: 200 })], {
    SWITCHBOARD_DATA_DIR: restored,
    SWITCHBOARD_TOKEN: adminToken,
  });
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { own: { app: string; name: string }[] }).own.filter((c) => c.app === 'stripe').map((c) => c.name);
}

/**
 * The admin's view of boring-co's stripe/Test credential in the data directory `restored`, after
 * setting their password there (re-verification): `extra` chooses the master key. Its output
 * holds the secret by design, so it is not kept with the others.
 */
async function viewCredential(restored: string, extra: Record<string, string | undefined>): Promise<CliResult> {
  const pw = await runCliWithInput(['set-password', '--email', 'admin@switchboard.local'], { ...env, SWITCHBOARD_DATA_DIR: restored }, PASSWORD + '\n');
  expect(pw.code, pw.stderr).toBe(0);
  const e: Record<string, string> = { ...env, SWITCHBOARD_DATA_DIR: restored, SWITCHBOARD_TOKEN: adminToken };
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete e[k];
    else e[k] = v;
  }
  return runCli(['call', '--json', 'view_connection_info', JSON.stringify({ account: 'boring-co', connection: 'stripe/Test', password: PASSWORD })], e);
}

/** A one-sentence refusal: exit 1, one line on stderr, no stack trace, nothing on stdout. */
function refused(r: CliResult, pattern: RegExp): void {
  expect(r.code, r.stdout + r.stderr).toBe(1);
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(/^switchboard: [^\n]+\.\n$/);
  expect(r.stderr).toMatch(pattern);
}

let loads = { atSpawn: 0, atExit: 0, total: 0 };

describe.runIf(testDbKind() === 'pglite')('backup and restore (embedded database only: PostgreSQL deployments use pg_dump)', { timeout: 180_000 }, () => {
  beforeAll(async () => {
    const serve = await spawnServe(env);
    server = serve.child;
    serverErr = serve.stderr;
    const url = serve.url;
    adminToken = readFileSync(join(dir, 'admin-token'), 'utf8').trim();
    client = new Client({ name: 'switchboard-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${adminToken}` } } }));
    const r = await addConnection('Test', SECRET);
    expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
  }, 120_000);

  afterAll(async () => {
    await client?.close().catch(() => {});
    if (server && server.exitCode === null) server.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    rmSync(scratch, { recursive: true, force: true });
  });

  it('backs up while serve runs and keeps writing: the snapshot holds every write acknowledged before it and none after', async () => {
    // the server's control socket: a socket only its user can use
    const socket = statSync(join(dir, 'switchboard.sock'));
    expect(socket.isSocket()).toBe(true);
    expect(socket.mode & 0o777).toBe(0o600);

    // one write after another (each acknowledged before the next starts) all through the backup
    let acked = 0;
    let stop = false;
    const writer = (async () => {
      while (!stop) {
        const r = await addConnection(`load-${acked}`, `sk_test_${acked}`);
        expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
        acked++;
      }
    })();
    writer.catch(() => (stop = true));
    while (acked < 3 && !stop) await new Promise((r) => setTimeout(r, 20));
    loads.atSpawn = acked;
    const backup = await cli(['backup', backupFile]);
    loads.atExit = acked;
    stop = true;
    await writer;
    loads.total = acked;

    expect(backup.code, backup.stderr).toBe(0);
    const m = /^Wrote (\d+) bytes to (\S+) \(a snapshot from the running process (\d+)\)\.\n$/.exec(backup.stdout);
    expect(m, backup.stdout).not.toBeNull();
    expect(Number(m![1])).toBe(statSync(backupFile).size);
    expect(m![2]).toBe(backupFile);
    expect(Number(m![3])).toBe(server.pid);
    expect(statSync(backupFile).mode & 0o777).toBe(0o600); // it holds the database
    expect(readdirSync(scratch)).toEqual(['switchboard.backup']); // no temp file left beside it
    expect(loads.total).toBeGreaterThan(loads.atSpawn); // writes went on while the backup ran

    // the server kept serving, and still holds its data directory
    const who = data<{ user: { email: string } }>(await call('whoami', {}));
    expect(who.user.email).toBe('admin@switchboard.local');
    expect(server.exitCode).toBeNull();
    expect(readFileSync(join(dir, 'switchboard.lock'), 'utf8').trim()).toBe(String(server.pid));
  });

  it('restores into an empty directory; the credential decrypts with the original master key and with no other', async () => {
    const restored = join(scratch, 'restored'); // does not exist yet: empty
    const r = await cli(['restore', backupFile], { SWITCHBOARD_DATA_DIR: restored });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`Restored ${backupFile} into ${restored}.`);
    expect(r.stdout).toMatch(/The master key is not in the backup: its credentials are encrypted with the master key of fingerprint [0-9a-f]{12}\. Start with that same key/);
    expect(r.stdout).toContain('The configured master key (SWITCHBOARD_MASTER_KEY) is that key.');
    expect(existsSync(join(restored, 'master.key'))).toBe(false); // never restored: not in the backup
    expect(existsSync(join(restored, 'switchboard.lock'))).toBe(false);

    // a consistent snapshot: load-0 … load-(k-1) for a k between the writes acknowledged when
    // the backup started and those acknowledged when it ended (plus the one then in flight)
    const names = await restoredConnections(restored);
    expect(names).toContain('Test');
    const k = names.filter((n) => n.startsWith('load-')).length;
    expect(k).toBeGreaterThanOrEqual(loads.atSpawn);
    expect(k).toBeLessThanOrEqual(loads.atExit + 1);
    expect(names.filter((n) => n.startsWith('load-')).sort()).toEqual(Array.from({ length: k }, (_, i) => `load-${i}`).sort());

    // the decrypted credential, as the admin (whose token from before the backup still works) sees it
    const view = await viewCredential(restored, {});
    expect(view.code, view.stderr).toBe(0);
    expect(JSON.parse(view.stdout).decrypted).toEqual({ secret_key: SECRET });

    // another key: refused at start, naming the expected key; no key at all: the same
    const other = await cli(['call', 'whoami'], { SWITCHBOARD_DATA_DIR: restored, SWITCHBOARD_TOKEN: adminToken, SWITCHBOARD_MASTER_KEY: OTHER_KEY });
    refused(other, /The configured master key \(fingerprint [0-9a-f]{12}\) is not the one this database's credentials were encrypted with/);
    const none = await cli(['call', 'whoami'], { SWITCHBOARD_DATA_DIR: restored, SWITCHBOARD_TOKEN: adminToken, SWITCHBOARD_MASTER_KEY: undefined });
    refused(none, /No master key: this database holds credentials encrypted with the master key of fingerprint [0-9a-f]{12}/);
    expect(existsSync(join(restored, 'master.key'))).toBe(false); // not replaced by a new one
  });

  it('restores into a directory holding only the master key file, which then opens the credentials', async () => {
    const restored = join(scratch, 'with-key');
    mkdirSync(restored);
    writeFileSync(join(restored, 'master.key'), KEY + '\n', { mode: 0o600 });
    const r = await cli(['restore', backupFile], { SWITCHBOARD_DATA_DIR: restored, SWITCHBOARD_MASTER_KEY: undefined });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`The configured master key (the key file ${join(restored, 'master.key')}) is that key.`);
    const view = await viewCredential(restored, { SWITCHBOARD_MASTER_KEY: undefined });
    expect(view.code, view.stderr).toBe(0);
    expect(JSON.parse(view.stdout).decrypted).toEqual({ secret_key: SECRET });
    // the key file told apart from another one
    const wrong = join(scratch, 'wrong-key');
    mkdirSync(wrong);
    writeFileSync(join(wrong, 'master.key'), OTHER_KEY + '\n', { mode: 0o600 });
    const w = await cli(['restore', backupFile], { SWITCHBOARD_DATA_DIR: wrong, SWITCHBOARD_MASTER_KEY: undefined });
    expect(w.code, w.stderr).toBe(0);
    expect(w.stdout).toMatch(/The configured master key \(the key file .*master\.key, fingerprint [0-9a-f]{12}\) is NOT that key/);
  });

  it('refuses: a non-empty data directory (untouched), an existing FILE without --force, files that are not backups, PostgreSQL', async () => {
    const busy = join(scratch, 'busy');
    mkdirSync(busy);
    writeFileSync(join(busy, 'notes.txt'), 'keep me');
    const garbage = join(scratch, 'garbage.bin');
    writeFileSync(garbage, randomBytes(4096));
    const gzText = join(scratch, 'text.gz');
    writeFileSync(gzText, gzipSync('not a tar archive at all'));
    const truncated = join(scratch, 'truncated.backup');
    writeFileSync(truncated, readFileSync(backupFile).subarray(0, Math.floor(statSync(backupFile).size / 2)));
    const before = readFileSync(backupFile);
    const fresh = join(scratch, 'never-made');
    const lockedByOther = join(scratch, 'locked');
    mkdirSync(join(lockedByOther, 'pgdata'), { recursive: true });
    writeFileSync(join(lockedByOther, 'pgdata', 'PG_VERSION'), '17\n');
    writeFileSync(join(lockedByOther, 'switchboard.lock'), String(process.pid)); // alive, and answers on no socket

    const [nonEmpty, exists, notBackup, notTar, cut, missing, pgBackup, pgRestore, noAnswer, nothing] = await Promise.all([
      cli(['restore', backupFile], { SWITCHBOARD_DATA_DIR: busy }),
      cli(['backup', backupFile]),
      cli(['restore', garbage], { SWITCHBOARD_DATA_DIR: fresh }),
      cli(['restore', gzText], { SWITCHBOARD_DATA_DIR: fresh }),
      cli(['restore', truncated], { SWITCHBOARD_DATA_DIR: fresh }),
      cli(['restore', join(scratch, 'no-such-file')], { SWITCHBOARD_DATA_DIR: fresh }),
      cli(['backup', join(scratch, 'pg.backup')], { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/none' }),
      cli(['restore', backupFile], { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/none', SWITCHBOARD_DATA_DIR: fresh }),
      cli(['backup', join(scratch, 'other.backup')], { SWITCHBOARD_DATA_DIR: lockedByOther }),
      cli(['backup', join(scratch, 'empty.backup')], { SWITCHBOARD_DATA_DIR: join(scratch, 'empty-dir') }),
    ]);
    refused(nonEmpty, new RegExp(`${busy} is not empty: restore only into an empty data directory`));
    expect(readdirSync(busy)).toEqual(['notes.txt']);
    expect(readFileSync(join(busy, 'notes.txt'), 'utf8')).toBe('keep me');

    refused(exists, /switchboard\.backup already exists: choose another FILE, or pass --force to replace it\./);
    expect(readFileSync(backupFile).equals(before)).toBe(true);

    refused(notBackup, /garbage\.bin is not a Switchboard backup \(a file written by `switchboard backup`\)\./);
    refused(notTar, /text\.gz is not a Switchboard backup/);
    refused(cut, /truncated\.backup is a damaged or incomplete backup/);
    refused(missing, /There is no file .*no-such-file\./);
    expect(existsSync(fresh)).toBe(false); // nothing made by a refused restore

    refused(pgBackup, /backup is for the embedded database: with DATABASE_URL set, back up PostgreSQL with pg_dump\./);
    refused(pgRestore, /restore is for the embedded database: with DATABASE_URL set, restore PostgreSQL with pg_restore or psql\./);
    refused(noAnswer, new RegExp(`in use by process ${process.pid}, which does not answer on its control socket`));
    refused(nothing, /There is no embedded database in .*empty-dir to back up\./);
    expect(readdirSync(scratch).filter((f) => f.endsWith('.tmp') || f === 'pg.backup' || f === 'other.backup' || f === 'empty.backup')).toEqual([]);
  });

  it('with no server running, backup opens the data directory itself (replacing a stale socket file) and --force replaces FILE', async () => {
    const exited = new Promise<number | null>((resolve) => server.once('exit', resolve));
    server.kill('SIGTERM');
    expect(await exited).toBe(0);
    // serve removed its socket and its lock when it stopped
    expect(existsSync(join(dir, 'switchboard.sock'))).toBe(false);
    expect(existsSync(join(dir, 'switchboard.lock'))).toBe(false);
    // what a killed holder leaves behind
    writeFileSync(join(dir, 'switchboard.sock'), '');

    const before = readFileSync(backupFile);
    const r = await cli(['backup', backupFile, '--force']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Wrote \d+ bytes to \S+ \(taken by opening the data directory: no process held it\)\.\n$/);
    expect(readFileSync(backupFile).equals(before)).toBe(false);
    expect(existsSync(join(dir, 'switchboard.sock'))).toBe(false);
    expect(existsSync(join(dir, 'switchboard.lock'))).toBe(false);

    // every write is in this one
    const restored = join(scratch, 'after-stop');
    const rr = await cli(['restore', backupFile], { SWITCHBOARD_DATA_DIR: restored });
    expect(rr.code, rr.stderr).toBe(0);
    const names = await restoredConnections(restored);
    expect(names.filter((n) => n.startsWith('load-')).length).toBe(loads.total);
    expect(names).toContain('Test');
  });

  it('no secret reached any output of serve, backup or restore: not the credential, the master key or a token', () => {
    expect(outputs.length).toBeGreaterThan(20);
    for (const out of [...outputs, serverErr()]) {
      expect(out).not.toContain(SECRET);
      expect(out).not.toContain(KEY);
      expect(out).not.toContain(adminToken);
    }
  });
});
