import { NO_KEYRING } from '../src/core/keyring.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliEnv, runCli, tempDataDir } from './helpers/spawn.js';
import { testDatabase, testDbKind, type TestDatabase } from './helpers/db.js';
import { openDatabase } from '../src/db/client.js';
import { getMainTenant } from '../src/core/tenants.js';
import { authenticate } from '../src/core/users.js';

let env: Record<string, string>;
let db: TestDatabase | undefined;
beforeAll(async () => {
  if (testDbKind() === 'postgres') {
    db = await testDatabase(); // migrated, not initialized
    env = cliEnv({ DATABASE_URL: db.url });
  } else {
    env = cliEnv({ SWITCHBOARD_DATA_DIR: tempDataDir() });
  }
});
afterAll(async () => {
  await db?.close();
});

describe('switchboard CLI', () => {
  it('demo needs an initialized database', async () => {
    const r = await runCli(['demo'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not initialized: run `switchboard init/);
  });

  it('init --json creates the tenant, its accounts and an admin, and prints the token once', async () => {
    const r = await runCli(['init', '--admin-email', 'ops@integrator.test', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({
      system_account: { slug: 'system' },
      sandbox_account: { slug: 'sandbox' },
      admin: { email: 'ops@integrator.test', permissions: ['switch_account', 'admin', 'deploy_automations'] },
      token: expect.stringMatching(/^sbt_[A-Za-z0-9_-]{43}$/),
    });
    expect(r.stderr).not.toContain(out.token);
  });

  it('init again is a clear error, not a second admin', async () => {
    const r = await runCli(['init', '--admin-email', 'other@integrator.test', '--json'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/already initialized/);
    expect(r.stdout).toBe('');
  });

  it('demo seeds Acme Fitness with 30 linked studios, Boring Co and users with and without Switch Account', async () => {
    const r = await runCli(['demo', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.accounts).toContainEqual({ slug: 'acme-fitness', name: 'Acme Fitness', children: 30 });
    expect(out.accounts.map((a: { slug: string }) => a.slug)).toContain('boring-co');
    const perms = out.users.map((u: { permissions: string[] }) => u.permissions.includes('switch_account'));
    expect(perms).toContain(true);
    expect(perms).toContain(false);
    for (const u of out.users) expect(u.token).toMatch(/^sbt_/);
    const again = await runCli(['demo'], env);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already seeded/);
  });

  it('issue-token gives a working new token to an existing user, and nothing to an unknown one', async () => {
    const r = await runCli(['issue-token', '--email', 'ops@integrator.test', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ user: { email: 'ops@integrator.test' }, token: expect.stringMatching(/^sbt_/) });
    const database = db ?? (await openDatabase({ dataDir: env.SWITCHBOARD_DATA_DIR }));
    try {
      const tenant = (await getMainTenant(database.db))!;
      const caller = await authenticate({ db: database.db, tenantId: tenant.id, switchMinutes: 30, keys: NO_KEYRING, secretArgs: false }, out.token);
      expect(caller?.user.email).toBe('ops@integrator.test');
    } finally {
      if (!db) await database.close();
    }
    const unknown = await runCli(['issue-token', '--email', 'nobody@integrator.test'], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/No user has the email/);
  });

  it('rejects unknown commands and options with usage', async () => {
    const r = await runCli(['frobnicate'], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Unknown command 'frobnicate'/);
    const o = await runCli(['init', '--admin-mail', 'x@y.z'], env);
    expect(o.code).toBe(1);
    expect(o.stderr).toMatch(/Unknown option '--admin-mail'/);
  });
});
