import { and, eq } from 'drizzle-orm';
import { accounts, memberships } from '../../db/schema/index.js';
import type { Core } from '../core.js';
import { visibleToUser, type Account } from '../accounts.js';
import { hasPermission, type Caller } from '../users.js';
import { atLeast, type Grant } from '../access.js';

/**
 * Which accounts an operations call that spans accounts covers (check_health, list_failure_groups):
 *
 *   account   the acting account alone (the tool wrapper already authorized it)
 *   children  the acting account's linked children: all of them for a caller with Switch Account
 *             or admin of the parent; otherwise only those the caller holds a membership in
 *   all       every account of the tenant for Switch Account; otherwise the accounts the caller
 *             holds a membership in and the children of those where they are admin or owner
 *
 * A caller never gets an account it could not enter with switch_account or an explicit `account`.
 */
export type OperationsScope = 'account' | 'children' | 'all';

export async function accountsInScope(core: Core, caller: Caller, acting: Account, grant: Grant | null, scope: OperationsScope): Promise<Account[]> {
  if (scope === 'account') return [acting];
  const switcher = hasPermission(caller.user, 'switch_account');
  if (scope === 'children') {
    const all = switcher || (grant !== null && atLeast(grant.role, 'admin'));
    const where = and(eq(accounts.tenantId, core.tenantId), eq(accounts.parentAccountId, acting.id));
    if (all) return core.db.select().from(accounts).where(where).orderBy(accounts.slug);
    return core.db
      .select({ a: accounts })
      .from(accounts)
      .innerJoin(memberships, and(eq(memberships.accountId, accounts.id), eq(memberships.userId, caller.user.id)))
      .where(where)
      .orderBy(accounts.slug)
      .then((rows) => rows.map((r) => r.a));
  }
  if (switcher) return core.db.select().from(accounts).where(eq(accounts.tenantId, core.tenantId)).orderBy(accounts.slug);
  return core.db
    .select()
    .from(accounts)
    .where(and(eq(accounts.tenantId, core.tenantId), visibleToUser(caller.user.id)))
    .orderBy(accounts.slug);
}
