import { and, asc, eq, getTableColumns, ilike, inArray, or, sql, count, type SQL } from 'drizzle-orm';
import type { Tx } from '../db/scope.js';
import { accounts, memberships, type AccountKind, type AccountStatus } from '../db/schema/index.js';
import { onTx, type Core } from './core.js';
import { UserError, sqlState, UNIQUE_VIOLATION } from './errors.js';
import { isUuid, slugify, SLUG, encodeCursor, decodeCursor, likeEscape } from './ids.js';

export type Account = typeof accounts.$inferSelect;

/**
 * Every account a caller's text could mean: the account with that id, or with that slug, or
 * with that exact name (case-insensitive). Callers decide what several matches mean
 * (core/access.resolveAccountFor).
 */
export async function findAccounts(core: Core, key: string): Promise<Account[]> {
  return core.db.select().from(accounts).where(accountKeyMatches(core, key)).orderBy(accounts.slug).limit(10);
}

/** SQL condition: the account of this tenant whose id, slug or exact name (case-insensitive) is `key`. */
export function accountKeyMatches(core: Core, key: string): SQL {
  const k = key.trim();
  const t = eq(accounts.tenantId, core.tenantId);
  if (!k) return sql`false`;
  if (isUuid(k)) return and(t, eq(accounts.id, k.toLowerCase()))!;
  const lower = k.toLowerCase();
  return and(t, or(eq(accounts.slug, lower), eq(sql`lower(${accounts.name})`, lower)))!;
}

export async function getAccountById(core: Core, id: string): Promise<Account | null> {
  const [a] = await core.db.select().from(accounts).where(and(eq(accounts.tenantId, core.tenantId), eq(accounts.id, id)));
  return a ?? null;
}

/** Slugs that mean something else where an account is expected. */
const RESERVED_SLUGS = new Set(['home']);

export const CHILDREN_SHOWN = 100;

/** The first CHILDREN_SHOWN children of a parent (none when `list` is false) and how many there are. */
export async function childrenOf(core: Core, parentId: string, list = true): Promise<{ children: Account[]; total: number }> {
  const where = and(eq(accounts.tenantId, core.tenantId), eq(accounts.parentAccountId, parentId));
  const [children, [total]] = await Promise.all([
    list ? core.db.select().from(accounts).where(where).orderBy(asc(accounts.routingKey), asc(accounts.slug)).limit(CHILDREN_SHOWN) : [],
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
    const [name, id] = decodeCursor(input.cursor, ['text', 'uuid']) as [string, string];
    conds.push(sql`(lower(${accounts.name}), ${accounts.id}) > (${name}, ${id}::uuid)`);
  }
  // the cursor carries the database's lower(name), which need not equal JavaScript's toLowerCase()
  const rows = await core.db
    .select({ ...getTableColumns(accounts), sortName: sql<string>`lower(${accounts.name})` })
    .from(accounts)
    .where(and(...conds))
    .orderBy(sql`lower(${accounts.name})`, asc(accounts.id))
    .limit(input.limit + 1);
  const page = rows.slice(0, input.limit);
  const last = page[page.length - 1];
  return {
    accounts: page.map(({ sortName: _sortName, ...a }) => a),
    nextCursor: rows.length > input.limit && last ? encodeCursor([last.sortName, last.id]) : null,
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

/**
 * Changes to the parent/child structure are serialized per tenant: the one-level rule (a parent
 * is never a child, a child never a parent) spans rows, so two concurrent links could otherwise
 * both pass their checks and build a chain or a cycle. They are rare; a lock costs nothing.
 */
async function inHierarchyLock<T>(core: Core, fn: (c: Core, tx: Tx) => Promise<T>): Promise<T> {
  return core.db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${'switchboard:hierarchy:' + core.tenantId}))`);
    return fn(onTx(core, tx), tx);
  });
}

async function reread(c: Core, id: string): Promise<Account> {
  const a = await getAccountById(c, id);
  if (!a) throw new UserError('The account no longer exists.', 'not_found');
  return a;
}

async function hasChildren(c: Core, id: string): Promise<boolean> {
  const [row] = await c.db.select({ n: count() }).from(accounts).where(eq(accounts.parentAccountId, id));
  return (row?.n ?? 0) > 0;
}

function checkParent(parent: Account): void {
  if (parent.parentAccountId) {
    throw new UserError(`'${parent.slug}' is itself a linked child account; use its parent instead (one level of linking).`);
  }
  if (parent.kind === 'system') throw new UserError('The system setup account cannot have linked children.');
  if (parent.kind === 'templates') throw new UserError('The templates account cannot have linked children.');
}

function uniqueViolation(err: unknown, message: string): never {
  if (sqlState(err) === UNIQUE_VIOLATION) throw new UserError(message, 'conflict');
  throw err;
}

export async function createAccount(core: Core, input: CreateAccountInput): Promise<Account> {
  const name = input.name.trim();
  if (!name) throw new UserError('The account name must not be empty.');
  const slug = input.slug ?? slugify(name);
  if (RESERVED_SLUGS.has(slug)) {
    throw new UserError(`'${slug}' is reserved (switch_account uses "home" to return): pass another slug.`);
  }
  if (!SLUG.test(slug)) {
    throw new UserError(`'${slug}' is not a usable slug: use 1-63 lowercase letters, digits and dashes, starting with a letter or digit.`);
  }
  const routingKey = input.routingKey?.trim();
  if (routingKey !== undefined && !input.parent) {
    throw new UserError('A routing_key only applies to a linked child account: pass parent as well.');
  }
  if (routingKey === '') throw new UserError('The routing_key must not be empty.');
  if (input.kind === 'system') {
    throw new UserError('The system setup account is created with the tenant; create a customer or sandbox account.');
  }
  const insert = async (c: Core) => {
    const [a] = await c.db
      .insert(accounts)
      .values({ tenantId: c.tenantId, name, slug, kind: input.kind ?? 'customer', parentAccountId: input.parent?.id ?? null, routingKey: routingKey ?? null })
      .returning();
    return a!;
  };
  try {
    if (!input.parent) return await insert(core);
    const parentId = input.parent.id;
    return await inHierarchyLock(core, async (c) => {
      checkParent(await reread(c, parentId));
      return insert(c);
    });
  } catch (err) {
    uniqueViolation(
      err,
      routingKey !== undefined
        ? `The slug '${slug}' or the routing key '${routingKey}' under that parent is already taken.`
        : `An account with the slug '${slug}' already exists: pass another slug.`,
    );
  }
}

/** Link `child` under `parent`. One level only; an already linked child must be unlinked first. */
export async function linkAccount(core: Core, childIn: Account, parentIn: Account, routingKeyIn: string): Promise<Account> {
  const routingKey = routingKeyIn.trim();
  if (!routingKey) throw new UserError('The routing_key must not be empty.');
  if (childIn.id === parentIn.id) throw new UserError('An account cannot be linked to itself.');
  try {
    return await inHierarchyLock(core, async (c) => {
      const [child, parent] = [await reread(c, childIn.id), await reread(c, parentIn.id)];
      if (child.kind === 'system') throw new UserError('The system setup account cannot be linked.');
      if (child.kind === 'templates') throw new UserError('The templates account cannot be linked.');
      if (child.parentAccountId) {
        throw new UserError(`'${child.slug}' is already linked to a parent; unlink it first.`, 'conflict');
      }
      checkParent(parent);
      if (await hasChildren(c, child.id)) {
        throw new UserError(`'${child.slug}' has linked child accounts of its own and cannot become a child.`);
      }
      const [a] = await c.db
        .update(accounts)
        .set({ parentAccountId: parent.id, routingKey })
        .where(and(eq(accounts.tenantId, c.tenantId), eq(accounts.id, child.id)))
        .returning();
      return a!;
    });
  } catch (err) {
    uniqueViolation(err, `'${parentIn.slug}' already has a child with the routing key '${routingKey}'.`);
  }
}

export async function unlinkAccount(core: Core, child: Account): Promise<Account> {
  return inHierarchyLock(core, async (c) => {
    const current = await reread(c, child.id);
    if (!current.parentAccountId) throw new UserError(`'${current.slug}' is not linked to a parent account.`);
    const [a] = await c.db
      .update(accounts)
      .set({ parentAccountId: null, routingKey: null })
      .where(and(eq(accounts.tenantId, c.tenantId), eq(accounts.id, current.id)))
      .returning();
    return a!;
  });
}

/**
 * Suspend an account or lift its suspension. Suspension removes nothing: while it lasts the guard
 * refuses every change in the account and every read by non-admins (core/access.suspensionDenial),
 * and lifting it restores all of it. The system setup account is never suspended: the tenant's
 * administration lives there.
 */
export async function setAccountStatus(core: Core, account: Account, status: AccountStatus, reason: string, byUserId: string): Promise<{ account: Account; changed: boolean }> {
  if (account.kind === 'system') throw new UserError('The system setup account cannot be suspended: the tenant is administered from it.');
  const text = reason.trim();
  if (!text) throw new UserError('A reason is required: say why the status changes (it is recorded).');
  const [a] = await core.db
    .update(accounts)
    .set({ status, statusReason: text, statusChangedAt: sql`now()`, statusChangedBy: byUserId })
    .where(and(eq(accounts.tenantId, core.tenantId), eq(accounts.id, account.id), sql`${accounts.status} <> ${status}`))
    .returning();
  if (a) return { account: a, changed: true };
  return { account: (await getAccountById(core, account.id)) ?? account, changed: false };
}
