#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type Config } from './config.js';
import { parseToolsets } from './mcp/toolsets.js';
import { configuredToken, openApp, openConfiguredDatabase, adminTokenFile, coreOf, loadKeyring, startDemo, type App, type DemoMode } from './app.js';
import { DEFAULT_WORKER, Worker } from './engine/worker.js';
import { NO_KEYRING } from './core/keyring.js';
import { getMainTenant, initialize } from './core/tenants.js';
import { seedDemo } from './core/demo.js';
import { authenticate, findUser, issueToken, setPassword, type User } from './core/users.js';
import type { Core } from './core/core.js';
import { writeAudit } from './core/audit.js';
import { UserError } from './core/errors.js';
import { log, setLogLevel, errorFields } from './log.js';

const HELP = `switchboard — MCP server for operating customer accounts of an integration platform

Usage:
  switchboard serve [--toolsets a,b] [--read-only]
                                       Streamable HTTP at /mcp (PORT, default 3000), /healthz, /readyz
  switchboard stdio [--toolsets a,b] [--read-only]
                                       stdio MCP server for Claude Code / Claude Desktop (SWITCHBOARD_TOKEN)
                                       toolsets: accounts, operations (the default), directory, automations,
                                       connections, templates, audit, admin; all
  switchboard call TOOL [JSON] [--json] [--toolsets a,b] [--read-only]
                                       one tool call as the user of SWITCHBOARD_TOKEN, through the MCP server:
                                       its text (--json: its structuredContent) on stdout; an error exits 1
  switchboard call --script FILE [--json] [--keep-going] [--toolsets a,b] [--read-only]
                                       calls from a JSON-lines file (- for stdin) in one session, each
                                       {"tool", "arguments"?, "expect"?: {"isError", "match"}}; one line per
                                       call; exit 1 at the first unmet expectation, 2 for usage errors.
                                       call has every toolset on unless --toolsets / SWITCHBOARD_TOOLSETS
  switchboard worker                   run automations only (PostgreSQL: any number beside serve)
  switchboard init --admin-email E [--admin-password P] [--admin-name N] [--json]
                                       create the tenant, its system and sandbox accounts and the first admin
  switchboard demo [--json]            seed Acme Fitness (30 linked studios), Boring Co, demo apps and demo users
                                       (the next serve starts the demo apps and plays the demo's history)
  switchboard issue-token --email E [--name N] [--json]
                                       a new API token for a user (recovery by whoever runs the server)
  switchboard migrate                  apply database migrations
  switchboard set-password --email E   read a password from stdin and set it for a user (re-verification
                                       before viewing credentials)
  switchboard rotate-key [--batch-size N] [--json]
                                       new data key; re-encrypt every connection in batches (resumable)
  switchboard backup FILE [--force]    embedded database: a consistent snapshot to FILE, also while a server
                                       runs (the master key is not in it: keep it separately)
  switchboard restore FILE             embedded database: FILE into an empty SWITCHBOARD_DATA_DIR

Without DATABASE_URL the embedded database lives in SWITCHBOARD_DATA_DIR (default ./.switchboard).`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const config = loadConfig();
  setLogLevel(config.logLevel);
  switch (command) {
    case 'serve':
      return serve(surfaceFlags(config, rest), rest.includes('--conformance'));
    case 'stdio':
      return stdio(surfaceFlags(config, rest));
    case 'call':
      // loaded only here: it builds the MCP server, which no other one-shot command needs
      return (await import('./call.js')).callCommand(config, rest);
    case 'worker':
      return workerCommand(config);
    case 'init':
      return init(config, rest);
    case 'demo':
      return demo(config, rest);
    case 'issue-token':
      return issueTokenCommand(config, rest);
    case 'set-password':
      return setPasswordCommand(config, rest);
    case 'rotate-key':
      return rotateKeyCommand(config, rest);
    case 'backup':
      return (await import('./backup.js')).backupCommand(config, rest);
    case 'restore':
      return (await import('./backup.js')).restoreCommand(config, rest);
    case 'migrate': {
      const database = await openConfiguredDatabase(config);
      await database.close();
      process.stderr.write('Migrations applied.\n');
      return 0;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(HELP + '\n');
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`Unknown command '${command}'.\n\n${HELP}\n`);
      return 2;
  }
}

/** `--toolsets a,b` and `--read-only` (serve, stdio): over SWITCHBOARD_TOOLSETS and SWITCHBOARD_READ_ONLY. */
function surfaceFlags(config: Config, args: string[]): Config {
  const { values } = parseArgs({ args, options: { toolsets: { type: 'string' }, 'read-only': { type: 'boolean' }, conformance: { type: 'boolean' } }, strict: true });
  const next = { ...config, toolsets: values.toolsets ?? config.toolsets, readOnly: config.readOnly || values['read-only'] === true };
  parseToolsets(next.toolsets); // an unknown toolset stops the start with a clear sentence
  return next;
}

/**
 * `serve --conformance`: for the official MCP conformance suite, which cannot send a token. An
 * explicit opt-in that weakens nothing else: loopback only, a throwaway embedded database made for
 * this run (deleted at exit), every session read-only, and requests without a token acting as a
 * demo user with access to one customer (ops@boring.example).
 */
const CONFORMANCE_USER = 'ops@boring.example';

function conformanceConfig(config: Config): Config {
  if (!/^(127\.0\.0\.1|localhost|::1)$/.test(config.host)) {
    throw new UserError('--conformance serves only on a loopback HOST (127.0.0.1, localhost or ::1).');
  }
  const dataDir = mkdtempSync(join(tmpdir(), 'switchboard-conformance-'));
  // thrown away however the process ends (a failed start included): it holds tokens and a key
  process.once('exit', () => rmSync(dataDir, { recursive: true, force: true }));
  return { ...config, databaseUrl: undefined, dataDir, masterKey: undefined, readOnly: true, toolsets: config.toolsets ?? 'all', workers: 0 };
}

async function serve(configIn: Config, conformance = false): Promise<number> {
  const config = conformance ? conformanceConfig(configIn) : configIn;
  const [app, { startHttp }] = await Promise.all([openApp(config), import('./http/server.js')]);
  const anonymousToken = conformance
    ? (JSON.parse(readFileSync(join(config.dataDir, 'demo-tokens.json'), 'utf8')) as { email: string; token: string }[]).find((u) => u.email === CONFORMANCE_USER)?.token
    : undefined;
  const http = await startHttp({
    core: app.core,
    database: app.database,
    port: config.port,
    host: config.host,
    publicUrl: config.publicUrl,
    allowedHosts: config.allowedHosts,
    allowedOrigins: config.allowedOrigins,
    webhookMaxBytes: config.webhookMaxBytes,
    readyStallMs: config.readyStallSeconds * 1000,
    surface: { toolsets: config.toolsets, readOnly: config.readOnly },
    anonymousToken,
  }).catch(async (err: NodeJS.ErrnoException) => {
    await app.database.close();
    if (err.code === 'EADDRINUSE') throw new UserError(`Port ${config.port} on ${config.host} is in use: stop what runs there, or set PORT.`);
    throw err;
  });
  app.core.publicBaseUrl ??= new URL(http.url).origin;
  // the demo apps run where the worker runs (its http steps call them): before it starts
  const demo = await demoFor(app, config);
  const worker = await startWorker(app, config);
  const url = config.publicUrl ? new URL('/mcp', config.publicUrl).toString() : http.url;
  log.info('switchboard listening', { mcp_url: url, database: app.database.kind });
  if (demo) {
    // the demo's deliveries go through this server's own /hooks/ URLs when it listens on loopback
    const { coreDeliverer, httpDeliverer } = await import('./core/demo-history.js');
    const loopback = /^(127\.0\.0\.1|localhost|::1)$/.test(config.host);
    demo.playHistory(loopback ? httpDeliverer(new URL(http.url).origin) : coreDeliverer(app.core));
  }
  process.stderr.write(
    `\nSwitchboard MCP endpoint: ${url}\n` +
      (app.database.kind === 'pglite'
        ? `Admin token: in ${adminTokenFile(config)} (send it as "Authorization: Bearer <token>"); demo users' tokens beside it in demo-tokens.json.\n\n`
        : `Tokens come from \`switchboard init\` and the create_user tool.\n\n`),
  );
  if (conformance) process.stderr.write(`Conformance mode: read-only, requests without a token act as ${CONFORMANCE_USER}; the database is thrown away at exit.\n`);
  await waitForSignal();
  await demo?.stopHistory();
  await http.close();
  await worker?.stop();
  await demo?.close();
  await app.database.close();
  return 0;
}

/** Demo mode when the demo world is on this database and this process runs a worker (src/app.ts startDemo). */
async function demoFor(app: App, config: Config): Promise<DemoMode | null> {
  if (config.workers <= 0) return null;
  return startDemo(app).catch(async (err: unknown) => {
    await app.database.close();
    throw err;
  });
}

/** The in-process worker of serve and stdio (SWITCHBOARD_WORKERS executions at once; 0: none). */
async function startWorker(app: App, config: Config, concurrency = config.workers): Promise<Worker | null> {
  if (concurrency <= 0) return null;
  const worker = new Worker(app.core, {
    ...DEFAULT_WORKER,
    concurrency,
    leaseMs: config.leaseMs,
    accountConcurrency: config.accountConcurrency,
    retentionDays: config.retentionDays,
    listen: (c, fn) => app.database.listen(c, fn),
  });
  await worker.start();
  return worker;
}

async function workerCommand(config: Config): Promise<number> {
  const app = await openApp(config);
  const worker = await startWorker(app, config, Math.max(1, config.workers));
  log.info('switchboard worker running', { worker: worker!.id, concurrency: Math.max(1, config.workers), database: app.database.kind });
  await waitForSignal();
  // stop claiming; finish what runs or give it back to the queue within the deadline
  await worker!.stop();
  await app.database.close();
  return 0;
}

async function stdio(config: Config): Promise<number> {
  // load the MCP modules while the database opens (PGlite compiles its WebAssembly off the main thread)
  const [app, { StdioServerTransport }, { createMcpServer }, { newSession }] = await Promise.all([
    openApp(config),
    import('@modelcontextprotocol/sdk/server/stdio.js'),
    import('./mcp/server.js'),
    import('./mcp/session.js'),
  ]);
  const token = configuredToken(config);
  const first = token ? await authenticate(app.core, token) : null;
  if (!token || !first) {
    await app.database.close();
    throw new UserError(
      token
        ? 'SWITCHBOARD_TOKEN is not a valid API token (unknown, expired or revoked).'
        : 'Set SWITCHBOARD_TOKEN to your API token (from `switchboard init` or the create_user tool).',
    );
  }
  const session = newSession(undefined, { toolsets: parseToolsets(config.toolsets), readOnly: config.readOnly });
  const server = createMcpServer({ core: app.core, session, authenticate: () => authenticate(app.core, token) });
  const transport = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => {
    transport.onclose = () => resolve();
    process.stdin.once('end', () => resolve());
  });
  await server.connect(transport);
  // the demo apps answer the demo automations' runs here too; the demo history is played by serve
  const demo = await demoFor(app, config);
  const worker = await startWorker(app, config);
  log.info('switchboard stdio ready', { user: first.user.email, database: app.database.kind });
  await Promise.race([closed, waitForSignal()]);
  await demo?.stopHistory();
  await server.close().catch(() => {});
  await worker?.stop();
  await demo?.close();
  await app.database.close();
  return 0;
}

async function init(config: Config, args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      'admin-email': { type: 'string' },
      'admin-password': { type: 'string' },
      'admin-name': { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const email = values['admin-email'];
  if (!email) throw new UserError('init needs --admin-email.');
  const database = await openConfiguredDatabase(config);
  try {
    const r = await initialize(database.db, {
      adminEmail: email,
      adminName: values['admin-name'],
      adminPassword: values['admin-password'],
      switchMinutes: config.switchMinutes,
    });
    const out = {
      tenant: { id: r.tenant.id, slug: r.tenant.slug },
      system_account: { id: r.systemAccount.id, slug: r.systemAccount.slug },
      sandbox_account: { id: r.sandboxAccount.id, slug: r.sandboxAccount.slug },
      admin: { id: r.admin.id, email: r.admin.email, permissions: r.admin.permissions },
      token: r.token,
    };
    if (values.json) process.stdout.write(JSON.stringify(out) + '\n');
    else {
      process.stdout.write(
        `Initialized tenant '${out.tenant.slug}' with accounts '${out.system_account.slug}' and '${out.sandbox_account.slug}'.\n` +
          `Admin ${out.admin.email} (Switch Account, admin). API token, shown once:\n\n  ${out.token}\n\n`,
      );
    }
    return 0;
  } finally {
    await database.close();
  }
}

async function demo(config: Config, args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { json: { type: 'boolean', default: false } }, strict: true });
  const database = await openConfiguredDatabase(config);
  try {
    const tenant = await getMainTenant(database.db);
    if (!tenant) throw new UserError('The database is not initialized: run `switchboard init --admin-email you@example.com` first.');
    const r = await seedDemo(coreOf(config, database.db, tenant.id, await loadKeyring(config, database.db)));
    if (values.json) process.stdout.write(JSON.stringify(r) + '\n');
    else {
      process.stdout.write(`Seeded ${r.accounts.map((a) => a.name + (a.children ? ` (${a.children} linked studios)` : '')).join(', ')}.\nUsers (tokens shown once):\n`);
      for (const u of r.users) process.stdout.write(`  ${u.email.padEnd(30)} ${u.about}\n    ${u.token}\n`);
      process.stdout.write('The next `switchboard serve` starts the demo apps and plays the demo\'s history (docs/demo.md).\n');
    }
    return 0;
  } finally {
    await database.close();
  }
}

/** Operators' way back in when every token of an admin was revoked: needs access to the database itself. */
async function issueTokenCommand(config: Config, args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { email: { type: 'string' }, name: { type: 'string' }, json: { type: 'boolean', default: false } },
    strict: true,
  });
  if (!values.email) throw new UserError('issue-token needs --email.');
  return asOperatorOn(config, values.email, async (core, user) => {
    const name = values.name ?? `cli ${new Date().toISOString().slice(0, 10)}`;
    const { token, tokenId } = await issueToken(core, user.id, name);
    await cliAudit(core, { accountId: user.homeAccountId, tool: 'cli:issue-token', arguments: { email: user.email, name }, message: `token ${tokenId} issued from the command line` });
    if (values.json) process.stdout.write(JSON.stringify({ user: { id: user.id, email: user.email }, token_id: tokenId, token }) + '\n');
    else process.stdout.write(`New API token for ${user.email} (id ${tokenId}), shown once:\n\n  ${token}\n\n`);
    return 0;
  });
}

/**
 * Commands run by whoever holds the database (no token): open it, find the user by email, run
 * `fn`, close. They never decrypt anything.
 */
async function asOperatorOn(config: Config, email: string, fn: (core: Core, user: User) => Promise<number>): Promise<number> {
  const database = await openConfiguredDatabase(config);
  try {
    const tenant = await getMainTenant(database.db);
    if (!tenant) throw new UserError('The database is not initialized: run `switchboard init --admin-email you@example.com` first.');
    const core = coreOf(config, database.db, tenant.id, NO_KEYRING);
    const user = await findUser(core, email);
    if (!user) throw new UserError(`No user has the email '${email}'.`);
    return await fn(core, user);
  } finally {
    await database.close();
  }
}

/** The audit entry of an operator's command (no acting user: it ran from the command line). */
function cliAudit(core: Core, e: { accountId: string | null; tool: string; arguments: Record<string, unknown>; message: string; durationMs?: number }) {
  return writeAudit(core, {
    actorUserId: null,
    actorEmail: null,
    homeAccountId: null,
    targetAccountId: null,
    switchId: null,
    sessionId: null,
    outcome: 'ok',
    durationMs: 0,
    ...e,
  });
}

/** Operators set a user's password from stdin: it never appears in a command line or a log. */
async function setPasswordCommand(config: Config, args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { email: { type: 'string' } }, strict: true });
  if (!values.email) throw new UserError('set-password needs --email.');
  if (process.stdin.isTTY) process.stderr.write('Password (input is not hidden; pipe it in to keep it off the screen): ');
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const password = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
  return asOperatorOn(config, values.email, async (core, user) => {
    await setPassword(core, user.id, password);
    await cliAudit(core, { accountId: user.homeAccountId, tool: 'cli:set-password', arguments: { email: user.email }, message: 'password set from the command line' });
    process.stderr.write(`Password set for ${user.email}.\n`);
    return 0;
  });
}

/** Rotate the data key: a new key, then every connection re-encrypted in batches, with progress on stderr. */
async function rotateKeyCommand(config: Config, args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { 'batch-size': { type: 'string' }, json: { type: 'boolean', default: false } },
    strict: true,
  });
  const batchSize = values['batch-size'] === undefined ? undefined : Number(values['batch-size']);
  if (batchSize !== undefined && !(Number.isInteger(batchSize) && batchSize >= 1 && batchSize <= 10_000)) {
    throw new UserError('--batch-size must be a whole number from 1 to 10000.');
  }
  const app = await openApp(config);
  try {
    const { rotateDataKey } = await import('./core/rotation.js');
    const started = performance.now();
    const p = await rotateDataKey(app.core, {
      ...(batchSize ? { batchSize } : {}),
      onProgress: (q) => {
        if (!values.json) process.stderr.write(`${q.resumed ? 'resuming' : 'rotating'} to key ${q.keyId}: ${q.rotated + q.skipped}/${q.total}\n`);
      },
    });
    await cliAudit(app.core, {
      accountId: null,
      tool: 'cli:rotate-key',
      arguments: { batch_size: batchSize ?? null },
      message: `data key ${p.keyId}: ${p.rotated} re-encrypted, ${p.skipped} changed meanwhile, ${p.retiredKeys} keys retired`,
      durationMs: Math.round(performance.now() - started),
    });
    const out = { key_id: p.keyId, resumed: p.resumed, total: p.total, rotated: p.rotated, changed_meanwhile: p.skipped, unreadable: p.unreadable, retired_keys: p.retiredKeys };
    if (values.json) process.stdout.write(JSON.stringify(out) + '\n');
    else process.stdout.write(`Active data key ${p.keyId}: re-encrypted ${p.rotated} of ${p.total} connections (${p.skipped} changed meanwhile), retired ${p.retiredKeys} old key(s).\n` +
          (p.unreadable ? `${p.unreadable} connection(s) do not decrypt and were left on their old key: reconnect them, then run rotate-key again.\n` : ''));
    return 0;
  } finally {
    await app.database.close();
  }
}

function waitForSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    if (err instanceof UserError || (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      process.stderr.write(`switchboard: ${(err as Error).message}\n`);
      process.exit(1);
    }
    if (err instanceof Error && /^(Invalid configuration|The database is not initialized|The embedded database in)/.test(err.message)) {
      process.stderr.write(`switchboard: ${err.message}\n`);
      process.exit(1);
    }
    log.error('switchboard failed', errorFields(err));
    process.exit(1);
  },
);
