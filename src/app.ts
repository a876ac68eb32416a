import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { openDatabase, type Database } from './db/client.js';
import type { Config } from './config.js';
import type { Core } from './core/core.js';
import { getMainTenant, initialize } from './core/tenants.js';
import { log, errorFields } from './log.js';

export interface App {
  database: Database;
  core: Core;
}

export async function openConfiguredDatabase(config: Config): Promise<Database> {
  const database = await openDatabase({ url: config.databaseUrl, dataDir: config.databaseUrl ? undefined : config.dataDir });
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

/**
 * Open the database and the core. On the embedded database a first start initializes the tenant
 * and seeds the demo world, writing the admin token to a 0600 file in the data directory (never
 * to the log). On PostgreSQL an uninitialized database is an error that says to run `init`.
 */
export async function openApp(config: Config): Promise<App> {
  const database = await openConfiguredDatabase(config);
  try {
    let tenant = await getMainTenant(database.db);
    if (!tenant) {
      if (config.databaseUrl) {
        throw new Error('The database is not initialized: run `switchboard init --admin-email you@example.com` first.');
      }
      const init = await initialize(database.db, { adminEmail: config.adminEmail, switchMinutes: config.switchMinutes });
      tenant = init.tenant;
      const core: Core = { db: database.db, tenantId: tenant.id, switchMinutes: config.switchMinutes };
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
    return { database, core: { db: database.db, tenantId: tenant.id, switchMinutes: config.switchMinutes } };
  } catch (err) {
    await database.close();
    throw err;
  }
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
