import { and, eq, inArray } from 'drizzle-orm';
import { memberships, ROLES, type Role } from '../db/schema/index.js';
import type { Core } from './core.js';
import { findAccounts, type Account } from './accounts.js';
import { hasPermission, type Caller } from './users.js';
import { AccessDenied, UserError } from './errors.js';

/**
 * Who may act in which account. One rule, used by the tool wrapper for every call:
 *
 *   a caller may act in account A with role R when
 *     - they are a member of A with a role of at least R, or
 *     - they are an admin or owner of A's linked parent (they act as admin in the child), or
 *     - they hold the Switch Account permission (they act as admin anywhere in the tenant).
 *
 * Nothing is cached: memberships and permissions are read on every call, so a revocation takes
 * effect on the very next one.
 */

export const roleRank = (r: Role): number => ROLES.indexOf(r);
export const atLeast = (have: Role, need: Role): boolean => roleRank(have) >= roleRank(need);

export type GrantSource = 'membership' | 'parent_admin' | 'switch_account';
export interface Grant {
  role: Role;
  via: GrantSource;
}

/** The strongest role the caller holds in `account`, and where it comes from; null for none. */
export async function grantIn(core: Core, caller: Caller, account: Account): Promise<Grant | null> {
  const ids = account.parentAccountId ? [account.id, account.parentAccountId] : [account.id];
  const rows = await core.db
    .select({ accountId: memberships.accountId, role: memberships.role })
    .from(memberships)
    .where(and(eq(memberships.userId, caller.user.id), inArray(memberships.accountId, ids)));
  const candidates: Grant[] = [];
  const own = rows.find((r) => r.accountId === account.id);
  if (own) candidates.push({ role: own.role, via: 'membership' });
  const parent = rows.find((r) => r.accountId === account.parentAccountId);
  if (parent && atLeast(parent.role, 'admin')) candidates.push({ role: 'admin', via: 'parent_admin' });
  if (hasPermission(caller.user, 'switch_account')) candidates.push({ role: 'admin', via: 'switch_account' });
  // strongest role wins; on a tie the first (the caller's own membership) is kept
  return candidates.reduce<Grant | null>((best, g) => (!best || roleRank(g.role) > roleRank(best.role) ? g : best), null);
}

const ROLE_LABEL: Record<Role, string> = { viewer: 'viewer', member: 'member', admin: 'admin', owner: 'owner' };

/** The denial for an account the caller has no way into. It names only what the caller typed. */
export function noAccess(label: string, accountId?: string): AccessDenied {
  return new AccessDenied(
    `Access denied: acting in account '${label}' needs the Switch Account permission or a membership in that account.`,
    accountId,
  );
}

/** Check that the caller may act in `account` with at least `need`; returns the grant or throws AccessDenied. */
export async function authorize(
  core: Core,
  caller: Caller,
  account: Account,
  need: Role,
  label = account.slug,
  /** the caller's grant in `account` when already read during this call */
  known?: Grant | null,
): Promise<Grant> {
  const grant = known === undefined ? await grantIn(core, caller, account) : known;
  if (!grant) throw noAccess(label, account.id);
  if (!atLeast(grant.role, need)) {
    throw new AccessDenied(
      `Access denied: this needs the ${ROLE_LABEL[need]} role in account '${account.slug}'; you are ${ROLE_LABEL[grant.role]} there.`,
    );
  }
  return grant;
}

/**
 * Resolve what a caller typed as an account (id, slug or exact name). For a caller without
 * Switch Account only the accounts they have a grant in count: an unknown account, one they
 * cannot enter, and a name shared with accounts they cannot see all give the same denial, so the
 * answer reveals nothing about accounts they may not see. Text that fits several accounts the
 * caller may see (a slug of one, the name of another) is ambiguous, never silently one of them.
 */
export async function resolveAccountFor(core: Core, caller: Caller, key: string): Promise<Account> {
  const matches = await findAccounts(core, key);
  const switcher = hasPermission(caller.user, 'switch_account');
  if (matches.length === 1) return matches[0]!;
  if (matches.length === 0) {
    if (switcher) {
      throw new UserError(`No account matches '${key}': pass an account id, slug or exact name (list_accounts finds them).`, 'not_found');
    }
    throw noAccess(key);
  }
  let candidates = matches;
  if (!switcher) {
    candidates = [];
    for (const m of matches) if (await grantIn(core, caller, m)) candidates.push(m);
    if (candidates.length === 1) return candidates[0]!;
    if (candidates.length === 0) throw noAccess(key);
  }
  throw new UserError(`'${key}' fits several accounts (${candidates.map((a) => a.slug).join(', ')}): pass the slug or id.`, 'conflict');
}

export function requirePermission(caller: Caller, permission: 'admin' | 'switch_account', what: string): void {
  if (!hasPermission(caller.user, permission)) {
    const label = permission === 'admin' ? 'admin' : 'Switch Account';
    throw new AccessDenied(`Access denied: ${what} needs the ${label} permission.`);
  }
}
