import { and, asc, eq, ilike, inArray, or, sql, count } from 'drizzle-orm';
import { accounts, memberships, type AccountKind } from '../db/schema/index.js';
import type { Core } from './core.js';
import type { Db } from '../db/client.js';
import { UserError, sqlState, UNIQUE_VIOLATION } from './errors.js';
import { isUuid, slugify, SLUG, encodeCursor, decodeCursor, likeEscape } from './ids.js';

export type Account = typeof accounts.$inferSelect;
export type AccountRef = { id: string; slug: string; name: string };

export const ref = (a: Pick<Account, 'id' | 'slug' | 'name'>): AccountRef => ({ id: a.id, slug: a.slug, name: a.name });

/**
 * Find an account by id, slug or exact name (case-insensitive). Null when nothing matches;
 * an error when a name matches several accounts (the caller should use the slug).
 */
export async function findAccount(core: Core, key: string): Promise<Account | null> {
  const k = key.trim();
  if (!k) return null;
  const t = eq(accounts.tenantId, core.tenantId);
  if (isUuid(k)) {
    const [a] = await core.db.select().from(accounts).where(and(t, eq(accounts.id, k.toLowerCase())));
    return a ?? null;
  }
  const lower = k.toLowerCase();
  const rows = await core.db
    .select()
    .from(accounts)
    .where(and(t, or(eq(accounts.slug, lower), eq(sql`lower(${accounts.name})`, lower))))
    .limit(3);
  const bySlug = rows.find((a) => a.slug === lower);
  if (bySlug) return bySlug;
  if (rows.length > 1) {
    throw new UserError(`Several accounts are named '${k}': pass the slug or id instead.`, 'conflict');
  }
  return rows[0] ?? null;
}

export async function getAccountById(core: Core, id: string): Promise<Account | null> {
  const [a] = await core.db.select().from(accounts).where(and(eq(accounts.tenantId, core.tenantId), eq(accounts.id, id)));
  return a ?? null;
}

export async function getAccountsByIds(core: Core, ids: string[]): Promise<Map<string, Account>> {
  if (ids.length === 0) return new Map();
  const rows = await core.db
    .select()
    .from(accounts)
    .where(and(eq(accounts.tenantId, core.tenantId), inArray(accounts.id, [...new Set(ids)])));
  return new Map(rows.map((a) => [a.id, a]));
}

/** Slugs that mean something else where an account is expected. */
const RESERVED_SLUGS = new Set(['home']);

export const CHILDREN_SHOWN = 100;

export async function childrenOf(core: Core, parentId: string): Promise<{ children: Account[]; total: number }> {
  const where = and(eq(accounts.tenantId, core.tenantId), eq(accounts.parentAccountId, parentId));
  const [children, [total]] = await Promise.all([
    core.db.select().from(accounts).where(where).orderBy(asc(accounts.routingKey), asc(accounts.slug)).limit(CHILDREN_SHOWN),
    core.db.select({ n: count() }).from(accounts).where(where),
  ]);
  return { children, total: total?.n ?? 0 };
}

export interface ListAccountsInput {
  /** null: every account of the tenant (Switch Account); otherwise the user whose accounts are visible */
  visibleTo: string | null;
  query?: string | undefined;
  parentId?: string | undefined;
  limit: number;
  cursor?: string | undefined;
}

/**
 * Accounts ordered by lower(name), id with a keyset cursor. A user without Switch Account sees
 * the accounts they are a member of and the children of accounts they administer.
 */
export async function listAccounts(core: Core, input: ListAccountsInput): Promise<{ accounts: Account[]; nextCursor: string | null }> {
  const conds = [eq(accounts.tenantId, core.tenantId)];
  if (input.visibleTo) conds.push(visibleToUser(input.visibleTo));
  if (input.query) {
    const q = `%${likeEscape(input.query.trim().toLowerCase())}%`;
    conds.push(or(ilike(accounts.name, q), ilike(accounts.slug, q), ilike(accounts.routingKey, q))!);
  }
  if (input.parentId) conds.push(eq(accounts.parentAccountId, input.parentId));
  if (input.cursor) {
    const [name, id] = decodeCursor(input.cursor, ['string', 'string']) as [string, string];
    conds.push(sql`(lower(${accounts.name}), ${accounts.id}) > (${name}, ${id})`);
  }
  const rows = await core.db
    .select()
    .from(accounts)
    .where(and(...conds))
    .orderBy(sql`lower(${accounts.name})`, asc(accounts.id))
    .limit(input.limit + 1);
  const page = rows.slice(0, input.limit);
  const last = page[page.length - 1];
  return {
    accounts: page,
    nextCursor: rows.length > input.limit && last ? encodeCursor([last.name.toLowerCase(), last.id]) : null,
  };
}

/** SQL condition: the account is visible to this user through a membership or as a child of an account they administer. */
export function visibleToUser(userId: string) {
  return or(
    inArray(accounts.id, sql`(select ${memberships.accountId} from ${memberships} where ${memberships.userId} = ${userId})`),
    inArray(
      accounts.parentAccountId,
      sql`(select ${memberships.accountId} from ${memberships} where ${memberships.userId} = ${userId} and ${memberships.role} in ('admin', 'owner'))`,
    ),
  )!;
}

export interface CreateAccountInput {
  name: string;
  slug?: string | undefined;
  kind?: AccountKind | undefined;
  parent?: Account | undefined;
  routingKey?: string | undefined;
}

export async function createAccount(core: Core, input: CreateAccountInput, db: Db = core.db): Promise<Account> {
  const name = input.name.trim();
  if (!name) throw new UserError('The account name must not be empty.');
  const slug = input.slug ?? slugify(name);
  if (RESERVED_SLUGS.has(slug)) {
    throw new UserError(`'${slug}' is reserved (switch_account uses "home" to return): pass another slug.`);
  }
  if (!SLUG.test(slug)) {
    throw new UserError(`'${slug}' is not a usable slug: use 1-63 lowercase letters, digits and dashes, starting with a letter or digit.`);
  }
  if (input.parent?.parentAccountId) {
    throw new UserError(`'${input.parent.slug}' is itself a linked child account; create the account under its parent (one level of linking).`);
  }
  if (input.parent?.kind === 'system') throw new UserError('The system setup account cannot have linked children.');
  if (input.routingKey !== undefined && !input.parent) {
    throw new UserError('A routing_key only applies to a linked child account: pass parent as well.');
  }
  if (input.kind === 'system') {
    throw new UserError('The system setup account is created with the tenant; create a customer or sandbox account.');
  }
  try {
    const [a] = await db
      .insert(accounts)
      .values({
        tenantId: core.tenantId,
        name,
        slug,
        kind: input.kind ?? 'customer',
        parentAccountId: input.parent?.id ?? null,
        routingKey: input.routingKey ?? null,
      })
      .returning();
    return a!;
  } catch (err) {
    if (sqlState(err) === UNIQUE_VIOLATION) {
      throw new UserError(
        input.routingKey !== undefined
          ? `The slug '${slug}' or the routing key '${input.routingKey}' under that parent is already taken.`
          : `An account with the slug '${slug}' already exists: pass another slug.`,
        'conflict',
      );
    }
    throw err;
  }
}

/** Link `child` under `parent`. One level only: a parent cannot itself be a child, and a child has no children. */
export async function linkAccount(core: Core, child: Account, parent: Account, routingKey: string): Promise<Account> {
  if (child.id === parent.id) throw new UserError('An account cannot be linked to itself.');
  if (parent.parentAccountId) {
    throw new UserError(`'${parent.slug}' is itself a linked child account; link to its parent instead (one level of linking).`);
  }
  if (child.kind === 'system' || parent.kind === 'system') {
    throw new UserError('The system setup account cannot be linked.');
  }
  const [{ n } = { n: 0 }] = await core.db
    .select({ n: count() })
    .from(accounts)
    .where(eq(accounts.parentAccountId, child.id));
  if (n > 0) throw new UserError(`'${child.slug}' has linked child accounts of its own and cannot become a child.`);
  if (!routingKey.trim()) throw new UserError('The routing_key must not be empty.');
  try {
    const [a] = await core.db
      .update(accounts)
      .set({ parentAccountId: parent.id, routingKey: routingKey.trim() })
      .where(and(eq(accounts.tenantId, core.tenantId), eq(accounts.id, child.id)))
      .returning();
    return a!;
  } catch (err) {
    if (sqlState(err) === UNIQUE_VIOLATION) {
      throw new UserError(`'${parent.slug}' already has a child with the routing key '${routingKey.trim()}'.`, 'conflict');
    }
    throw err;
  }
}

export async function unlinkAccount(core: Core, child: Account): Promise<Account> {
  if (!child.parentAccountId) throw new UserError(`'${child.slug}' is not linked to a parent account.`);
  const [a] = await core.db
    .update(accounts)
    .set({ parentAccountId: null, routingKey: null })
    .where(and(eq(accounts.tenantId, core.tenantId), eq(accounts.id, child.id)))
    .returning();
  return a!;
}

