import { and, eq, inArray, isNotNull, or } from 'drizzle-orm';
import { alias } from 'drizzle-orm/pg-core';
import { accounts, memberships, ROLES, type Permission, type Role } from '../db/schema/index.js';
import type { Core } from './core.js';
import { accountKeyMatches, findAccounts, type Account } from './accounts.js';
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
  return strongest(candidates);
}

/** The strongest role wins; on a tie the first (the caller's own membership) is kept. */
const strongest = (candidates: Grant[]): Grant | null =>
  candidates.reduce<Grant | null>((best, g) => (!best || roleRank(g.role) > roleRank(best.role) ? g : best), null);

const ROLE_LABEL: Record<Role, string> = { viewer: 'viewer', member: 'member', admin: 'admin', owner: 'owner' };

/** The denial for an account the caller has no way into. It names only what the caller typed. */
export function noAccess(label: string, accountId?: string): AccessDenied {
  return new AccessDenied(
    `Access denied: acting in account '${label}' needs the Switch Account permission or a membership in that account.`,
    accountId === undefined ? { key: label } : { key: label, accountId },
  );
}

/**
 * Why a caller may not use a suspended account, or null when they may. While an account is
 * suspended nothing can be changed in it (and nothing runs in it); its admins can still read it.
 */
export function suspensionDenial(account: Account, grant: Grant, write: boolean): AccessDenied | null {
  if (account.status !== 'suspended') return null;
  if (!write && atLeast(grant.role, 'admin')) return null;
  return new AccessDenied(
    `Account '${account.slug}' is suspended: ${write ? 'nothing can be changed in it' : 'only its admins can read it'} until an admin lifts the suspension (set_account_status).`,
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

export interface Resolved {
  account: Account;
  /** the caller's grant there when resolution already read it (callers without Switch Account) */
  grant?: Grant;
}

/**
 * Resolve what a caller typed as an account (id, slug or exact name). For a caller without
 * Switch Account only the accounts they have a grant in are searched, in one query that also
 * reads the grant: an unknown account, one they cannot enter, and a name shared with accounts
 * they cannot see all give the same denial after the same work, so neither the answer nor its
 * timing reveals accounts they may not see. Text that fits several accounts the caller may see
 * (a slug of one, the name of another) is ambiguous, never silently one of them.
 */
export async function resolveAccountFor(core: Core, caller: Caller, key: string): Promise<Resolved> {
  if (!hasPermission(caller.user, 'switch_account')) {
    const found = await findGrantedAccounts(core, caller.user.id, key);
    if (found.length === 0) throw noAccess(key);
    if (found.length === 1) return found[0]!;
    throw ambiguous(key, found.map((f) => f.account));
  }
  const matches = await findAccounts(core, key);
  if (matches.length === 1) return { account: matches[0]! };
  if (matches.length === 0) {
    throw new UserError(`No account matches '${key}': pass an account id, slug or exact name (list_accounts finds them).`, 'not_found');
  }
  throw ambiguous(key, matches);
}

const ambiguous = (key: string, candidates: Account[]) =>
  new UserError(`'${key}' fits several accounts (${candidates.map((a) => a.slug).join(', ')}): pass the slug or id.`, 'conflict');

/**
 * The accounts `key` could mean in which the user holds a membership, or of whose linked parent
 * they are an admin or owner, each with the grant that gives (the Switch Account permission is
 * not considered: its holders search every account).
 */
async function findGrantedAccounts(core: Core, userId: string, key: string): Promise<Required<Resolved>[]> {
  const own = alias(memberships, 'own');
  const viaParent = alias(memberships, 'via_parent');
  const rows = await core.db
    .select({ account: accounts, own: own.role, parent: viaParent.role })
    .from(accounts)
    .leftJoin(own, and(eq(own.accountId, accounts.id), eq(own.userId, userId)))
    .leftJoin(viaParent, and(eq(viaParent.accountId, accounts.parentAccountId), eq(viaParent.userId, userId), inArray(viaParent.role, ['admin', 'owner'])))
    .where(and(accountKeyMatches(core, key), or(isNotNull(own.role), isNotNull(viaParent.role))))
    .orderBy(accounts.slug)
    .limit(10);
  return rows.map((r) => {
    const candidates: Grant[] = [];
    if (r.own) candidates.push({ role: r.own, via: 'membership' });
    if (r.parent) candidates.push({ role: 'admin', via: 'parent_admin' });
    return { account: r.account, grant: strongest(candidates)! };
  });
}

const PERMISSION_LABEL: Record<Permission, string> = { admin: 'admin', switch_account: 'Switch Account', deploy_automations: 'deploy_automations' };

export function requirePermission(caller: Caller, permission: Permission, what: string): void {
  if (!hasPermission(caller.user, permission)) {
    const label = PERMISSION_LABEL[permission];
    throw new AccessDenied(`Access denied: ${what} needs the ${label} permission.`);
  }
}
