import { and, eq, inArray, isNotNull, sql } from 'drizzle-orm';
import { accounts, automations, memberships, type Role } from '../../db/schema/index.js';
import type { Core } from '../core.js';
import type { Account } from '../accounts.js';
import { atLeast, noAccess } from '../access.js';
import { hasPermission, type Caller } from '../users.js';
import { AccessDenied, UserError } from '../errors.js';
import { isUuid } from '../ids.js';
import { textList, uuidList } from '../../db/arrays.js';

/**
 * Which accounts a deploy reaches, and whether the caller may deploy there — the access rule of
 * src/core/access.ts (a membership with the role, admin of the linked parent, or Switch Account),
 * read for many accounts in two queries instead of two per account. Like the guard, an account
 * the caller may not act in and one that does not exist give the same denial.
 */

export const MAX_LISTED_ACCOUNTS = 1000;

export type TargetSpec = string[] | { children_of: string } | 'all';

/** The caller's role in each of `list` (null: none), by the same rule as access.grantIn. */
export async function rolesIn(core: Core, caller: { user: Pick<Caller['user'], 'id' | 'permissions'> }, list: Pick<Account, 'id' | 'parentAccountId'>[]): Promise<Map<string, Role | null>> {
  const out = new Map<string, Role | null>();
  if (hasPermission(caller.user, 'switch_account')) {
    for (const a of list) out.set(a.id, 'admin');
    // a membership of owner ranks above the admin Switch Account gives
  }
  const ids = [...new Set(list.flatMap((a) => (a.parentAccountId ? [a.id, a.parentAccountId] : [a.id])))];
  const held = new Map<string, Role>();
  for (let i = 0; i < ids.length; i += 5000) {
    const rows = await core.db
      .select({ accountId: memberships.accountId, role: memberships.role })
      .from(memberships)
      .where(and(eq(memberships.userId, caller.user.id), inArray(memberships.accountId, ids.slice(i, i + 5000))));
    for (const r of rows) held.set(r.accountId, r.role);
  }
  for (const a of list) {
    const candidates: Role[] = [];
    const own = held.get(a.id);
    if (own) candidates.push(own);
    const parent = a.parentAccountId ? held.get(a.parentAccountId) : undefined;
    if (parent && atLeast(parent, 'admin')) candidates.push('admin');
    const before = out.get(a.id);
    if (before) candidates.push(before);
    out.set(a.id, candidates.reduce<Role | null>((best, r) => (!best || atLeast(r, best) ? r : best), null));
  }
  return out;
}

/** Accounts by what was typed (id, slug or exact name), every one of which the caller may act in with `need`. */
export async function resolveListed(core: Core, caller: Caller, keys: string[], need: Role): Promise<Account[]> {
  const typed = [...new Set(keys.map((k) => k.trim()))];
  const ids = typed.filter(isUuid).map((k) => k.toLowerCase());
  const words = typed.filter((k) => !isUuid(k)).map((k) => k.toLowerCase());
  const rows = typed.length
    ? await core.db
        .select()
        .from(accounts)
        .where(
          and(
            eq(accounts.tenantId, core.tenantId),
            sql`(${accounts.id} = any(${uuidList(ids)}::uuid[]) or ${accounts.slug} = any(${textList(words)}::text[]) or lower(${accounts.name}) = any(${textList(words)}::text[]))`,
          ),
        )
    : [];
  const roles = await rolesIn(core, caller, rows);
  const out = new Map<string, Account>();
  for (const key of typed) {
    const k = key.toLowerCase();
    const fits = rows.filter((a) => a.id === k || a.slug === k || a.name.toLowerCase() === k);
    const mine = fits.filter((a) => roles.get(a.id));
    if (mine.length === 0) throw noAccess(key);
    if (mine.length > 1) throw new UserError(`'${key}' fits several accounts (${mine.map((a) => a.slug).join(', ')}): pass the slug or id.`, 'conflict');
    const a = mine[0]!;
    if (!atLeast(roles.get(a.id)!, need)) throw new AccessDenied(`Access denied: deploying into account '${a.slug}' needs the ${need} role there.`);
    out.set(a.id, a);
  }
  return [...out.values()];
}

/** The linked children of `parent`, by slug. */
export async function childrenOf(core: Core, parent: Account): Promise<Account[]> {
  return core.db
    .select()
    .from(accounts)
    .where(and(eq(accounts.tenantId, core.tenantId), eq(accounts.parentAccountId, parent.id)))
    .orderBy(accounts.slug);
}

/** Every account holding a copy of the template, by slug. */
export async function accountsRunning(core: Core, templateId: string): Promise<Account[]> {
  return core.db
    .select({ account: accounts })
    .from(automations)
    .innerJoin(accounts, eq(accounts.id, automations.accountId))
    // a copy at no version is one a rollback undid the creation of: it does not run the template
    .where(and(eq(automations.templateId, templateId), isNotNull(automations.templateVersion), eq(automations.tenantId, core.tenantId)))
    .orderBy(accounts.slug)
    .then((rows) => rows.map((r) => r.account));
}

/**
 * The account ids the caller may see (null: every one, with Switch Account): what template_status
 * and get_deployment show by name; the rest are counted only.
 */
export async function visibleAccounts(core: Core, caller: Caller, list: Account[]): Promise<Set<string> | null> {
  if (hasPermission(caller.user, 'switch_account')) return null;
  const roles = await rolesIn(core, caller, list);
  return new Set([...roles].filter(([, r]) => r !== null).map(([id]) => id));
}
