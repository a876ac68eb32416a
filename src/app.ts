import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { openDatabase, type Database } from './db/client.js';
import type { Config } from './config.js';
import type { Core } from './core/core.js';
import { getMainTenant, initialize } from './core/tenants.js';
import { log, errorFields } from './log.js';
import { Keyring, foreignFingerprints, newMasterKey, parseMasterKey, shortFingerprint } from './core/keyring.js';
import { UserError } from './core/errors.js';
import { ToolGate } from './mcp/tool-gate.js';
import { dataKeys } from './db/schema/index.js';
import type { Db } from './db/client.js';

export interface App {
  database: Database;
  core: Core;
}

export async function openConfiguredDatabase(config: Config): Promise<Database> {
  const database = await openDatabase({ url: config.databaseUrl, dataDir: config.databaseUrl ? undefined : config.dataDir, max: config.dbPool });
  try {
    await database.migrate();
    // PGlite runs without autovacuum, so nothing else gathers planner statistics: without them
    // list_accounts sorts the whole tenant instead of walking its index (see bench/). Not awaited:
    // it runs while the server starts; PGlite queues the first queries behind it.
    if (database.kind === 'pglite') {
      database.db.execute(sql`analyze accounts, memberships, users, api_tokens`).catch((err: unknown) => log.warn('analyze failed', errorFields(err)));
    }
  } catch (err) {
    await database.close();
    throw err;
  }
  return database;
}

export const adminTokenFile = (config: Config): string => join(config.dataDir, 'admin-token');
export const masterKeyFile = (config: Config): string => join(config.dataDir, 'master.key');

/**
 * The master key: SWITCHBOARD_MASTER_KEY, else the key file of the data directory. A database
 * that has never encrypted anything gets a new key file (0600) with a loud note to back it up; a
 * database that has, and a key that is not the one it was encrypted with, refuse to start here,
 * with a message that says which key is expected (by fingerprint), not at a later decrypt.
 */
export async function loadKeyring(config: Config, db: Db): Promise<Keyring> {
  const file = masterKeyFile(config);
  let key: Buffer;
  if (config.masterKey) key = parseMasterKey(config.masterKey, 'SWITCHBOARD_MASTER_KEY');
  else if (existsSync(file)) key = parseMasterKey(readFileSync(file, 'utf8'), `the master key file ${file}`);
  else {
    const [used] = await db.select({ fp: dataKeys.masterFingerprint }).from(dataKeys).limit(1);
    if (used) {
      throw new UserError(
        `No master key: this database holds credentials encrypted with the master key of fingerprint ${shortFingerprint(used.fp)}. ` +
          `Set SWITCHBOARD_MASTER_KEY to that key, or restore its key file to ${file}.`,
      );
    }
    key = newMasterKey();
    mkdirSync(config.dataDir, { recursive: true });
    writeSecretFile(file, key.toString('base64') + '\n');
    process.stderr.write(
      `\n*** Generated a new master key in ${file} (mode 0600). BACK IT UP NOW: every stored credential is encrypted with it, ` +
        'and without it they cannot be decrypted. In production, set SWITCHBOARD_MASTER_KEY from your secret store instead. ***\n\n',
    );
  }
  const keyring = new Keyring(key);
  const foreign = await foreignFingerprints(db, keyring.fingerprint);
  if (foreign.length) {
    throw new UserError(
      `The configured master key (fingerprint ${shortFingerprint(keyring.fingerprint)}) is not the one this database's credentials were encrypted with ` +
        `(fingerprint ${foreign.map(shortFingerprint).join(', ')}). Set SWITCHBOARD_MASTER_KEY to that key${config.masterKey ? '' : `, or restore its key file to ${file}`}; ` +
        'refusing to start rather than fail on every decrypt.',
    );
  }
  return keyring;
}

export const coreOf = (config: Config, db: Db, tenantId: string, keys: Keyring): Core => ({
  db,
  tenantId,
  switchMinutes: config.switchMinutes,
  keys,
  secretArgs: config.secretArgs,
  outbound: { allow: config.outboundAllow },
  authFailureLimit: config.expireAfter401,
  replayMax: config.replayMax,
  toolGate: new ToolGate(config.toolSlots, config.busyWaitMs),
  ...(config.publicUrl ? { publicBaseUrl: config.publicUrl.replace(/\/+$/, '') } : {}),
});

/**
 * Open the database and the core. On the embedded database a first start initializes the tenant
 * and seeds the demo world, writing the admin token to a 0600 file in the data directory (never
 * to the log). On PostgreSQL an uninitialized database is an error that says to run `init`.
 */
export async function openApp(config: Config): Promise<App> {
  const database = await openConfiguredDatabase(config);
  try {
    const keys = await loadKeyring(config, database.db);
    let tenant = await getMainTenant(database.db);
    if (!tenant) {
      if (config.databaseUrl) {
        throw new Error('The database is not initialized: run `switchboard init --admin-email you@example.com` first.');
      }
      const init = await initialize(database.db, { adminEmail: config.adminEmail, switchMinutes: config.switchMinutes });
      tenant = init.tenant;
      const core = coreOf(config, database.db, tenant.id, keys);
      const { seedDemo } = await import('./core/demo.js'); // first start only
      const demo = await seedDemo(core);
      writeSecretFile(adminTokenFile(config), init.token + '\n');
      writeSecretFile(join(config.dataDir, 'demo-tokens.json'), JSON.stringify(demo.users.map(({ email, about, token }) => ({ email, about, token })), null, 2) + '\n');
      log.info('first start: initialized the embedded database and seeded the demo accounts', {
        admin: config.adminEmail,
        admin_token_file: adminTokenFile(config),
        demo_tokens_file: join(config.dataDir, 'demo-tokens.json'),
      });
    }
    const core = coreOf(config, database.db, tenant.id, keys);
    // automations made before webhook URLs existed get their token's hash (one query when there are none)
    const { backfillWebhookHashes } = await import('./core/webhooks.js');
    await backfillWebhookHashes(core);
    return { database, core };
  } catch (err) {
    await database.close();
    throw err;
  }
}

/** Demo mode in this process: the demo apps on loopback, allowed by the outbound guard, and the demo history played once. */
export interface DemoMode {
  /** where the demo apps answer (http://127.0.0.1:<port>) */
  origin: string;
  /** send the demo's deliveries in the background when its automations have none yet; one log line when done */
  playHistory(deliver: import('./core/demo-history.js').Deliver): void;
  /** stop sending (the deliveries in flight finish) */
  stopHistory(): Promise<void>;
  /** stop the demo apps (after the worker: its runs may still call them) */
  close(): Promise<void>;
}

/**
 * Demo mode, when this database holds the demo world (its demo apps exist): start the demo apps
 * on 127.0.0.1 (on the port of the last start when free; else another one, and the demo apps and
 * automations are pointed there), and let http steps of this process call that address — the
 * outbound guard allows their port here and only here, never as a default. Null when the demo
 * world is not seeded: nothing changes.
 */
export async function startDemo(app: App): Promise<DemoMode | null> {
  const { demoAppsOf, pointDemoAppsAt } = await import('./core/demo.js');
  const current = await demoAppsOf(app.core);
  if (!current) return null;
  const { startDemoApps, DEMO_HOST } = await import('./http/demo-apps.js');
  const history = await import('./core/demo-history.js');
  const last = Number(new URL([...current.values()][0]!).port) || 0;
  const server = await startDemoApps(last);
  try {
    await pointDemoAppsAt(app.core, server.origin);
  } catch (err) {
    await server.close();
    throw err;
  }
  // exactly the demo apps' port, never the rest of loopback where other local services listen; the
  // demo apps are the only endpoints allowed this way, so a new start replaces the last one's port
  app.core.outbound = { ...(app.core.outbound ?? { allow: [] }), allowEndpoints: [`${DEMO_HOST}:${server.port}`] };
  log.info('demo mode: the demo apps answer on loopback', { demo_apps: server.origin });
  const abort = new AbortController();
  let playing: Promise<void> = Promise.resolve();
  return {
    origin: server.origin,
    playHistory(deliver) {
      playing = (async () => {
        if (!(await history.demoHistoryMissing(app.core))) return;
        const started = performance.now();
        const r = await history.playDemoHistory(app.core, deliver, { signal: abort.signal });
        if (r && !abort.signal.aborted) {
          log.info('demo history recorded', { deliveries: r.deliveries, executions: r.executions, seconds: Math.round((performance.now() - started) / 100) / 10 });
        }
      })().catch((err: unknown) => {
        if (!abort.signal.aborted) log.warn('demo history failed', errorFields(err));
      });
    },
    async stopHistory() {
      abort.abort();
      await playing;
    },
    close: () => server.close(),
  };
}

export function writeSecretFile(path: string, content: string): void {
  writeFileSync(path, content, { mode: 0o600 });
  chmodSync(path, 0o600);
}

/** The token stdio runs as: SWITCHBOARD_TOKEN, else (embedded database) the admin token file of the data directory. */
export function configuredToken(config: Config): string | undefined {
  if (config.token) return config.token;
  const file = adminTokenFile(config);
  if (!config.databaseUrl && existsSync(file)) return readFileSync(file, 'utf8').trim();
  return undefined;
}
