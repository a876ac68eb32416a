import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, constants, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { ElicitRequestSchema, type CallToolResult, type ElicitResult } from '@modelcontextprotocol/sdk/types.js';
import { buildWorld, connect, data, text, type Session, type World } from './helpers/world.js';
import { testDbKind } from './helpers/db.js';
import { holdDatabase } from './helpers/hold-database.js';
import { CLI, cliEnv, repoRoot, runCli, spawnServe, tempDataDir, type CliResult } from './helpers/spawn.js';
import { ToolGate } from '../src/mcp/tool-gate.js';
import { createMcpServer } from '../src/mcp/server.js';
import { newSession } from '../src/mcp/session.js';
import { TOOLSET_NAMES } from '../src/mcp/toolsets.js';
import { authenticate } from '../src/core/users.js';
import { openHumanRequest, submitCredentials } from '../src/core/human-requests.js';
import { openDatabase, rowsOf } from '../src/db/client.js';

/**
 * Findings of a hostile review of the tool-call gate, the transient-error paths and backup/restore,
 * each kept as the test that failed before its fix:
 *
 * - a call waiting for a person on a page held its tool-call slot for as long as the link lives:
 *   one member leaving page requests open refused every other caller of the process as busy;
 * - a call cancelled by its client while it waited for a slot kept its place and ran anyway;
 * - the embedded data directory was 0755 around files PGlite writes 0666: every local user could
 *   read and alter the database, whatever the control socket's 0600;
 * - restore checked the directory before locking it, and its clean-up after a failed open deleted
 *   whatever a server started meanwhile had made there; a restore killed half way left a
 *   half-written database where the next server opens it, and refused to run again.
 */

const SLOTS = 2;

interface Elicitation {
  url: string;
  message: string;
  answer(r: ElicitResult): void;
}

/** A client that supports URL-mode elicitation and answers each one only when the test says so. */
async function pageClient(w: World, token: string): Promise<{ call(name: string, args: Record<string, unknown>): Promise<CallToolResult>; elicited: Elicitation[]; close(): Promise<void> }> {
  const server = createMcpServer({
    core: w.core,
    session: newSession(undefined, { toolsets: new Set(TOOLSET_NAMES) }),
    authenticate: () => authenticate(w.core, token),
    // the person is never sent there: the test plays the page through the core, as the page handler does
    pagesUrl: 'http://127.0.0.1:9/',
  });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  const client = new Client({ name: 'hostile-pages', version: '1.0.0' }, { capabilities: { elicitation: { url: {} } } });
  const elicited: Elicitation[] = [];
  client.setRequestHandler(ElicitRequestSchema, (req) => new Promise<ElicitResult>((answer) => elicited.push({ url: (req.params as { url: string }).url, message: (req.params as { message: string }).message, answer })));
  await client.connect(clientSide);
  return {
    call: async (name, args) => (await client.callTool({ name, arguments: args }, undefined, { timeout: 600_000 })) as CallToolResult,
    elicited,
    async close() {
      await client.close();
      await server.close();
    },
  };
}

describe('the tool-call gate under a hostile caller', () => {
  let w: World;
  let admin: Session;
  let viewer: Session;

  beforeAll(async () => {
    w = await buildWorld();
    admin = await connect(w.core, w.tokens.admin);
    viewer = await connect(w.core, w.tokens.boringViewer);
  });

  afterAll(async () => {
    await admin?.close();
    await viewer?.close();
    await w?.close();
  });

  it('a call waiting for a person on a page holds no slot: page requests left open lock no one out, and a finished page resumes its call', async () => {
    const gate = (w.core.toolGate = new ToolGate(SLOTS, 300));
    // a customer admin (no tenant permission at all) whose client accepts links and never opens them
    const hostile = await pageClient(w, w.tokens.boringAdmin);
    try {
      const open = Array.from({ length: SLOTS + 1 }, (_, i) => hostile.call('add_connection', { account: 'boring-co', app: 'stripe', name: `left-open-${i}` }));
      await expect.poll(() => hostile.elicited.length, { timeout: 10_000 }).toBe(SLOTS + 1);
      // every one of them is waiting for its person, and none holds a slot meanwhile
      expect(gate.load).toEqual({ running: 0, waiting: 0 });
      const [who, accounts] = await Promise.all([admin.call('whoami'), viewer.call('get_account', { account: 'boring-co' })]);
      expect(who.isError, text(who)).toBeFalsy();
      expect(accounts.isError, text(accounts)).toBeFalsy();
      expect(gate.refused).toBe(0);

      // one person does fill in the page: that call takes a slot again and finishes as usual
      // the elicitations arrive in any order: the one of call SLOTS is the one naming its connection
      const done = hostile.elicited.find((e) => e.message.includes(`'left-open-${SLOTS}'`))!;
      expect(done).toBeDefined();
      done.answer({ action: 'accept' });
      const token = new URL(done.url).pathname.split('/').pop()!;
      const req = await openHumanRequest(w.core, token, 'enter_credentials');
      expect(req).not.toBeNull();
      expect(await submitCredentials(w.core, req!, { secret_key: `sk_test_${randomBytes(8).toString('hex')}` })).toBe(true);
      const finished = await open[SLOTS]!;
      expect(data<{ entered_via: string; connection: { name: string } }>(finished)).toMatchObject({ entered_via: 'page', connection: { name: `left-open-${SLOTS}` } });

      // the others are declined: each ends with its sentence and the gate is as it was
      for (const e of hostile.elicited.filter((x) => x !== done)) e.answer({ action: 'decline' });
      for (const r of await Promise.all(open.slice(0, SLOTS))) expect(text(r)).toBe('The person declined opening the page; nothing was done.');
      expect(gate.load).toEqual({ running: 0, waiting: 0 });
    } finally {
      for (const e of hostile.elicited) e.answer({ action: 'cancel' });
      await hostile.close();
    }
  });

  it('a call its client cancels while it waits for a slot leaves the line at once and never runs', async () => {
    const gate = (w.core.toolGate = new ToolGate(1, 60_000));
    const auditedWhoami = async () =>
      Number(
        rowsOf<{ n: number | string }>(
          await w.core.db.execute(sql`select count(*) as n from audit_log where tool = 'whoami' and actor_user_id = ${w.userIds.boringViewer}::uuid`),
        )[0]!.n,
      );
    const before = await auditedWhoami();
    const hold = await holdDatabase(w.database);
    let slow: Promise<CallToolResult> | undefined;
    try {
      slow = admin.call('list_accounts');
      await expect.poll(() => gate.load.running).toBe(1);
      const abort = new AbortController();
      const cancelled = viewer.client.callTool({ name: 'whoami', arguments: {} }, undefined, { signal: abort.signal }).then(
        () => 'answered',
        () => 'rejected',
      );
      await expect.poll(() => gate.load.waiting).toBe(1);
      abort.abort();
      expect(await cancelled).toBe('rejected');
      // gone from the line at once, not when the wait bound (a minute) runs out
      await expect.poll(() => gate.load.waiting).toBe(0);
    } finally {
      await hold.release();
    }
    expect((await slow!).isError).toBeFalsy();
    await expect.poll(() => gate.load).toEqual({ running: 0, waiting: 0 });
    // the cancelled call never ran: no entry, and it was not counted as a busy refusal
    expect(await auditedWhoami()).toBe(before);
    expect(gate.refused).toBe(0);
    // and the session is served as usual afterwards
    expect((await viewer.call('whoami')).isError).toBeFalsy();
    expect(await auditedWhoami()).toBe(before + 1);
  });
});

/** A ustar archive of `entries` (type '0' file, '2' symlink), as a hostile backup would be built. */
function tarOf(entries: { name: string; data?: string; type?: '0' | '2'; link?: string }[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const h = Buffer.alloc(512);
    const body = Buffer.from(e.type === '2' ? '' : (e.data ?? ''));
    h.write(e.name, 0, 100, 'utf8');
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(body.length.toString(8).padStart(11, '0') + '\0', 124);
    h.write('00000000000\0', 136);
    h.write('        ', 148);
    h.write(e.type ?? '0', 156);
    if (e.link) h.write(e.link, 157, 100, 'utf8');
    h.write('ustar\x0000', 257);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    blocks.push(h, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** Every path under `dir` (depth first). */
function walk(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => [join(dir, e.name), ...(e.isDirectory() ? walk(join(dir, e.name)) : [])]);
}

describe.runIf(testDbKind() === 'pglite')('the embedded data directory, backup and restore (embedded database only: on PostgreSQL the server keeps its own files)', { timeout: 180_000 }, () => {
  const KEY = randomBytes(32).toString('base64');
  const scratch = tempDataDir();
  const source = join(scratch, 'source');
  const backupFile = join(scratch, 'source.backup');
  const env = cliEnv({ SWITCHBOARD_DATA_DIR: source, SWITCHBOARD_MASTER_KEY: KEY, LOG_LEVEL: 'error' });
  const children: ChildProcess[] = [];
  let adminToken = '';

  const cli = (args: string[], dataDir: string, extra: Record<string, string> = {}): Promise<CliResult> => runCli(args, { ...env, SWITCHBOARD_DATA_DIR: dataDir, ...extra });
  const whoami = (dataDir: string) => cli(['call', '--json', 'whoami'], dataDir, { SWITCHBOARD_TOKEN: adminToken });

  /** `switchboard restore FILE` into `dataDir`, running: its pid, output and exit. */
  function startRestore(file: string, dataDir: string) {
    const child = spawn(process.execPath, [...CLI, 'restore', file], { env: { ...env, SWITCHBOARD_DATA_DIR: dataDir }, cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    return { child, output: () => out, exited };
  }

  beforeAll(async () => {
    // a data directory with an admin, backed up with nothing running (backup opens it itself)
    const init = await cli(['call', 'whoami'], source);
    expect(init.code, init.stderr).toBe(0);
    adminToken = readFileSync(join(source, 'admin-token'), 'utf8').trim();
    const b = await cli(['backup', backupFile], source);
    expect(b.code, b.stderr).toBe(0);
  }, 120_000);

  afterAll(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    rmSync(scratch, { recursive: true, force: true });
  });

  it('is private to its user (0700): made so, and tightened when it existed with looser modes', async () => {
    const fresh = join(scratch, 'fresh', 'data');
    const loose = join(scratch, 'loose');
    mkdirSync(loose);
    chmodSync(loose, 0o755);
    for (const dir of [fresh, loose]) {
      const db = await openDatabase({ dataDir: dir });
      try {
        expect((statSync(dir).mode & 0o777).toString(8), dir).toBe('700');
        // what it protects: PGlite writes the database's files for everyone to read and write
        expect(statSync(join(dir, 'pgdata', 'PG_VERSION')).isFile()).toBe(true);
      } finally {
        await db.close();
      }
    }
    expect((statSync(source).mode & 0o777).toString(8)).toBe('700');
  });

  it('a server started while restore reads the backup keeps its database: restore refuses and removes nothing of it', async () => {
    const target = join(scratch, 'raced');
    const fifo = join(scratch, 'slow.backup');
    // a backup that arrives slowly (a network mount, a pipe): restore has checked the directory and waits on it
    execFileSync('mkfifo', [fifo]);
    const restore = startRestore(fifo, target);
    // a writer opens without waiting only once a reader waits on the pipe: restore has made its checks
    let writer: number | undefined;
    for (let i = 0; writer === undefined; i++) {
      try {
        writer = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENXIO') throw err;
        expect(restore.child.exitCode, restore.output()).toBeNull();
        expect(i).toBeLessThan(3000);
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    expect(existsSync(target)).toBe(false);
    // meanwhile a supervisor starts the server on the same, still empty, directory
    const serve = await spawnServe({ ...env, SWITCHBOARD_DATA_DIR: target, PORT: '0', SWITCHBOARD_WORKERS: '0' });
    const server = serve.child;
    children.push(server);
    const url = serve.url;
    const made = readdirSync(target).sort();
    expect(made).toEqual(expect.arrayContaining(['admin-token', 'pgdata', 'switchboard.lock']));
    const serverToken = readFileSync(join(target, 'admin-token'), 'utf8').trim();

    await writeFile(fifo, readFileSync(backupFile));
    closeSync(writer); // the end of the backup
    const code = await restore.exited;

    // the server's database, lock, socket and token file are all still there, and it serves from them
    expect(readdirSync(target).sort(), restore.output()).toEqual(made);
    expect(readdirSync(join(target, 'pgdata'))).toEqual(expect.arrayContaining(['PG_VERSION', 'base', 'global', 'pg_wal']));
    expect(server.exitCode).toBeNull();
    const ready = await fetch(new URL('/readyz', url));
    expect(ready.status).toBe(200);
    const who = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${serverToken}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
    });
    expect(who.status).toBe(200);
    // and restore said why it did nothing
    expect(code, restore.output()).toBe(1);
    expect(restore.output()).toBe(`switchboard: ${target} is in use by process ${server.pid}, which started in it meanwhile: nothing was restored, and nothing of it was changed.\n`);
    const stopped = new Promise((r) => server.once('exit', r));
    server.kill('SIGTERM');
    await stopped;
  });

  it('a restore killed while it loads leaves no half-written database where a server would open it, and the next restore completes', async () => {
    const target = join(scratch, 'killed');
    const restore = startRestore(backupFile, target);
    // kill it as soon as database files are being written, wherever it writes them
    const loading = () => walk(target).some((p) => /\/pgdata\/./.test(p));
    for (let i = 0; !loading(); i++) {
      expect(restore.child.exitCode, `restore ended before it was killed: ${restore.output()}`).toBeNull();
      expect(i).toBeLessThan(12_000);
      await new Promise((r) => setTimeout(r, 5));
    }
    restore.child.kill('SIGKILL');
    await restore.exited;
    expect(existsSync(join(target, 'pgdata')), readdirSync(target).join(', ')).toBe(false);

    const again = await cli(['restore', backupFile], target);
    expect(again.code, again.stderr).toBe(0);
    expect(readdirSync(target).sort()).toEqual(['pgdata']);
    const who = await whoami(target);
    expect(who.code, who.stderr).toBe(0);
    expect(JSON.parse(who.stdout).user.email).toBe('admin@switchboard.local');
  });

  it('a hostile backup (entries outside its root, an absolute path, a symlink) writes nothing outside the data directory and leaves nothing behind', async () => {
    const tag = randomBytes(6).toString('hex');
    const parent = join(scratch, 'hostile');
    mkdirSync(parent);
    const target = join(parent, 'data');
    const file = join(scratch, 'hostile.backup');
    writeFileSync(
      file,
      tarOf([
        { name: 'PG_VERSION', data: '17\n' },
        { name: 'global/pg_control', data: 'not a control file' },
        { name: `../escaped-${tag}`, data: 'x' },
        { name: `../../escaped-${tag}`, data: 'x' },
        { name: `../../../escaped-${tag}`, data: 'x' },
        { name: `/tmp/escaped-${tag}`, data: 'x' },
        { name: `link-${tag}`, type: '2', link: '/etc/passwd' },
      ]),
    );
    const r = await cli(['restore', file], target);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^switchboard: .*hostile\.backup could not be restored: [^\n]+\n$/);
    expect(walk(scratch).filter((p) => p.includes(tag))).toEqual([]);
    expect(existsSync(`/tmp/escaped-${tag}`)).toBe(false);
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(parent)).toEqual([]);
  });
});
