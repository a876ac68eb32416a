import { eq, sql } from 'drizzle-orm';
import { tenants, accounts, memberships } from '../db/schema/index.js';
import type { Db } from '../db/client.js';
import type { Core } from './core.js';
import { UserError } from './errors.js';
import { withAccount } from '../db/scope.js';
import { createAccount, type Account } from './accounts.js';
import { createUser, type User } from './users.js';
import { NO_KEYRING } from './keyring.js';

export type Tenant = typeof tenants.$inferSelect;

export async function getMainTenant(db: Db): Promise<Tenant | null> {
  const [t] = await db.select().from(tenants).where(eq(tenants.kind, 'main')).limit(1);
  return t ?? null;
}

export interface InitResult {
  tenant: Tenant;
  systemAccount: Account;
  sandboxAccount: Account;
  /** where templates live (src/core/templates/) */
  templatesAccount: Account;
  admin: User;
  token: string;
}

/**
 * Create the main tenant, its system setup account, a sandbox account, the templates account and
 * the first admin (Switch Account, admin, deploy_automations). Refuses on an initialized database rather than making a second admin.
 */
export async function initialize(
  db: Db,
  opts: { adminEmail: string; adminName?: string | undefined; adminPassword?: string | undefined; switchMinutes: number },
): Promise<InitResult> {
  return db.transaction(async (tx) => {
    // serialize concurrent `init` runs on PostgreSQL; the unique slug catches the rest
    await tx.execute(sql`select pg_advisory_xact_lock(7461626)`);
    if (await getMainTenant(tx as unknown as Db)) {
      throw new UserError('This database is already initialized: it has a tenant and an admin. Use the existing admin token, or start from an empty database.', 'conflict');
    }
    const [tenant] = await tx.insert(tenants).values({ slug: 'main', name: 'Main tenant', kind: 'main' }).returning();
    // nothing here encrypts: the keyring is loaded by the commands that serve
    const core: Core = { db: tx as unknown as Db, tenantId: tenant!.id, switchMinutes: opts.switchMinutes, keys: NO_KEYRING, secretArgs: false };
    const [systemAccount] = await tx
      .insert(accounts)
      .values({ tenantId: tenant!.id, slug: 'system', name: 'System setup', kind: 'system' })
      .returning();
    const sandboxAccount = await createAccount(core, { name: 'Sandbox', slug: 'sandbox', kind: 'sandbox' });
    const templatesAccount = await createAccount(core, { name: 'Templates', slug: 'templates', kind: 'templates' });
    const { user, token } = await createUser(
      core,
      {
        email: opts.adminEmail,
        name: opts.adminName ?? 'Administrator',
        account: systemAccount!,
        role: 'owner',
        permissions: ['switch_account', 'admin', 'deploy_automations'],
        password: opts.adminPassword,
      },
    );
    await withAccount(tx, [sandboxAccount.id], (scoped) =>
      scoped.insert(memberships).values({ userId: user.id, accountId: sandboxAccount.id, role: 'owner' }),
    );
    return { tenant: tenant!, systemAccount: systemAccount!, sandboxAccount, templatesAccount, admin: user, token };
  });
}
