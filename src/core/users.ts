import { and, eq, gt, isNull, lt, or, sql } from 'drizzle-orm';
import { apiTokens, memberships, users, type Permission, type Role } from '../db/schema/index.js';
import type { Core } from './core.js';
import type { Account } from './accounts.js';
import { UserError, sqlState, UNIQUE_VIOLATION } from './errors.js';
import { hashPassword, hashToken, newToken } from './crypto.js';
import { isUuid } from './ids.js';
import { withAccount } from '../db/scope.js';

export type User = Omit<typeof users.$inferSelect, 'passwordHash'>;

/** The authenticated caller of one tool call, read fresh from the database on every call. */
export interface Caller {
  user: User;
  tokenId: string;
  /**
   * The customer the caller belongs to for the tool-call gate's shares (src/mcp/tool-gate.ts): the
   * home account's parent when it is a linked child, else the home account. A parent's admin can
   * make users homed in each child, so the child alone would be a share of its own.
   */
  customerAccountId?: string;
}

const userColumns = {
  id: users.id,
  tenantId: users.tenantId,
  email: users.email,
  name: users.name,
  homeAccountId: users.homeAccountId,
  permissions: users.permissions,
  status: users.status,
  createdAt: users.createdAt,
};

export const hasPermission = (u: Pick<User, 'permissions'>, p: Permission): boolean => u.permissions.includes(p);

export const MIN_PASSWORD_LENGTH = 10;

export interface CreateUserInput {
  email: string;
  name: string;
  account: Account;
  role: Role;
  permissions?: Permission[] | undefined;
  password?: string | undefined;
}

/** Create a user at home in `account` with a membership there, and their first API token (shown once). */
export async function createUser(core: Core, input: CreateUserInput): Promise<{ user: User; token: string; tokenId: string }> {
  const email = input.email.trim().toLowerCase();
  if (input.password !== undefined && input.password.length < MIN_PASSWORD_LENGTH) {
    throw new UserError(`The password must be at least ${MIN_PASSWORD_LENGTH} characters long.`);
  }
  const passwordHash = input.password === undefined ? null : await hashPassword(input.password);
  try {
    return await core.db.transaction(async (tx) => {
      const [user] = await tx
        .insert(users)
        .values({
          tenantId: core.tenantId,
          email,
          name: input.name.trim(),
          passwordHash,
          homeAccountId: input.account.id,
          permissions: [...new Set(input.permissions ?? [])],
        })
        .returning(userColumns);
      // account data: written inside the account's row-level-security scope
      await withAccount(tx, [input.account.id], (scoped) =>
        scoped.insert(memberships).values({ userId: user!.id, accountId: input.account.id, role: input.role }),
      );
      const t = newToken();
      const [tok] = await tx
        .insert(apiTokens)
        .values({ userId: user!.id, name: 'default', tokenHash: t.hash, prefix: t.prefix })
        .returning({ id: apiTokens.id });
      return { user: user!, token: t.token, tokenId: tok!.id };
    });
  } catch (err) {
    if (sqlState(err) === UNIQUE_VIOLATION) throw new UserError(`A user with the email '${email}' already exists.`, 'conflict');
    throw err;
  }
}

/** A further API token for an existing user (shown once). */
export async function issueToken(core: Core, userId: string, name: string): Promise<{ token: string; tokenId: string }> {
  const t = newToken();
  const [tok] = await core.db.insert(apiTokens).values({ userId, name, tokenHash: t.hash, prefix: t.prefix }).returning({ id: apiTokens.id });
  return { token: t.token, tokenId: tok!.id };
}

/** Only stamp last_used_at when it is older than this: one write a minute per token, not one per call. */
const LAST_USED_GRANULARITY = sql`interval '1 minute'`;

/**
 * The user behind a token, or null when the token is unknown, revoked, expired or its user is
 * disabled. Called on every tool call, so revocation takes effect on the next one.
 */
export async function authenticate(core: Core, token: string): Promise<Caller | null> {
  if (!token) return null;
  const [row] = await core.db
    .select({
      tokenId: apiTokens.id,
      lastUsedAt: apiTokens.lastUsedAt,
      customerAccountId: sql<string | null>`(select coalesce(a.parent_account_id, a.id) from accounts a where a.id = ${users.homeAccountId})`,
      ...userColumns,
    })
    .from(apiTokens)
    .innerJoin(users, eq(users.id, apiTokens.userId))
    .where(
      and(
        eq(apiTokens.tokenHash, hashToken(token)),
        isNull(apiTokens.revokedAt),
        or(isNull(apiTokens.expiresAt), gt(apiTokens.expiresAt, sql`now()`)),
        eq(users.tenantId, core.tenantId),
        eq(users.status, 'active'),
      ),
    );
  if (!row) return null;
  const { tokenId, lastUsedAt, customerAccountId, ...user } = row;
  if (!lastUsedAt || Date.now() - lastUsedAt.getTime() > 60_000) {
    await core.db
      .update(apiTokens)
      .set({ lastUsedAt: sql`now()` })
      .where(and(eq(apiTokens.id, tokenId), or(isNull(apiTokens.lastUsedAt), lt(apiTokens.lastUsedAt, sql`now() - ${LAST_USED_GRANULARITY}`))));
  }
  return { user, tokenId, customerAccountId: customerAccountId ?? user.homeAccountId };
}

export async function findUser(core: Core, key: string): Promise<User | null> {
  const k = key.trim().toLowerCase();
  const [u] = await core.db
    .select(userColumns)
    .from(users)
    .where(and(eq(users.tenantId, core.tenantId), isUuid(k) ? eq(users.id, k) : eq(sql`lower(${users.email})`, k)));
  return u ?? null;
}

/** Replace a user's permissions. Refuses to remove the admin permission from the tenant's last active admin. */
export async function setPermissions(core: Core, userId: string, permissions: Permission[]): Promise<User> {
  return core.db.transaction(async (tx) => {
    // serialize permission changes so that two admins cannot demote each other at once
    await tx.execute(sql`select pg_advisory_xact_lock(7461627)`);
    if (!permissions.includes('admin')) {
      const others = await tx
        .select({ id: users.id })
        .from(users)
        .where(and(eq(users.tenantId, core.tenantId), eq(users.status, 'active'), sql`'admin' = any(${users.permissions})`, sql`${users.id} <> ${userId}`))
        .limit(1);
      const [target] = await tx.select({ permissions: users.permissions }).from(users).where(eq(users.id, userId));
      if (target?.permissions.includes('admin') && others.length === 0) {
        throw new UserError('This is the last admin of the tenant: grant the admin permission to someone else first.', 'conflict');
      }
    }
    const [u] = await tx
      .update(users)
      .set({ permissions: [...new Set(permissions)] })
      .where(and(eq(users.tenantId, core.tenantId), eq(users.id, userId)))
      .returning(userColumns);
    return u!;
  });
}

export interface TokenRow {
  id: string;
  userId: string;
  name: string;
  prefix: string;
  revokedAt: Date | null;
}

export async function getToken(core: Core, tokenId: string): Promise<TokenRow | null> {
  const [t] = await core.db
    .select({ id: apiTokens.id, userId: apiTokens.userId, name: apiTokens.name, prefix: apiTokens.prefix, revokedAt: apiTokens.revokedAt })
    .from(apiTokens)
    .innerJoin(users, eq(users.id, apiTokens.userId))
    .where(and(eq(apiTokens.id, tokenId), eq(users.tenantId, core.tenantId)));
  return t ?? null;
}

export async function revokeToken(core: Core, tokenId: string): Promise<void> {
  await core.db.update(apiTokens).set({ revokedAt: sql`now()` }).where(and(eq(apiTokens.id, tokenId), isNull(apiTokens.revokedAt)));
}

/** Set (or replace) a user's password, used to re-verify before viewing secrets. */
export async function setPassword(core: Core, userId: string, password: string): Promise<void> {
  if (password.length < MIN_PASSWORD_LENGTH) throw new UserError(`The password must be at least ${MIN_PASSWORD_LENGTH} characters long.`);
  const passwordHash = await hashPassword(password);
  await core.db.update(users).set({ passwordHash }).where(and(eq(users.tenantId, core.tenantId), eq(users.id, userId)));
}
