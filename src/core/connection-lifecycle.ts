import { createHash } from 'node:crypto';
import { and, asc, count, eq, inArray, or, sql, type SQL } from 'drizzle-orm';
import { accounts, automationConnections, automations, connections } from '../db/schema/index.js';
import type { Core } from './core.js';
import { visibleToUser, type Account } from './accounts.js';
import { getApp, maskCredentials, validateCredentials } from './apps.js';
import { sealCredentials, setConnectionFields, systemAccountId, type ConnectionRow } from './connections.js';
import { UserError } from './errors.js';

/**
 * What happens to a connection over its life: which automations use it, disconnecting (pauses
 * them), reconnecting (resumes the ones it paused), sharing with linked children.
 *
 * An automation may use a connection of another account (a parent's or the system account's
 * shared connection), so the usage of a connection spans accounts. Two limits apply to every
 * such read and change:
 *   - only accounts that may use the connection *now* count: its owner, and while it is shared,
 *     the owner's current linked children (or every account, for the system setup account) — an
 *     automation left over from an unlinked child or an unshared connection is neither listed,
 *     paused nor resumed;
 *   - a caller is shown only automations of accounts they may see (core/accounts.visibleToUser),
 *     and a count of the rest.
 * They run on the privileged path, filtered by the connection the caller was authorized for.
 */

export interface UsageItem {
  id: string;
  name: string;
  status: 'active' | 'paused';
  pausedByThis: boolean;
  account: Pick<Account, 'id' | 'slug' | 'name'>;
}

export const USAGE_SHOWN = 200;

/** SQL: the automation's account may use `conn` now (owner, or a current sharer of it). */
function usableIn(conn: Pick<ConnectionRow, 'accountId' | 'shared'>, ownerIsSystem: boolean): SQL {
  if (!conn.shared) return eq(automations.accountId, conn.accountId);
  if (ownerIsSystem) return sql`true`;
  return or(
    eq(automations.accountId, conn.accountId),
    inArray(automations.accountId, sql`(select ${accounts.id} from ${accounts} where ${accounts.parentAccountId} = ${conn.accountId})`),
  )!;
}

async function ownerIsSystem(core: Core, conn: Pick<ConnectionRow, 'accountId'>): Promise<boolean> {
  return (await systemAccountId(core)) === conn.accountId;
}

export interface UsageView {
  /** only automations of this account (a child looking at its parent's shared connection) */
  onlyAccountId?: string | undefined;
  /** the user whose visible accounts bound the list; null: every account (Switch Account) */
  visibleTo: string | null;
}

/** The automations that use a connection: the first USAGE_SHOWN the caller may see, their total, and how many are hidden. */
export async function connectionUsage(
  core: Core,
  conn: Pick<ConnectionRow, 'id' | 'accountId' | 'shared'>,
  view: UsageView,
): Promise<{ items: UsageItem[]; total: number; hidden: number }> {
  const base = and(
    eq(automationConnections.connectionId, conn.id),
    eq(automations.tenantId, core.tenantId),
    usableIn(conn, await ownerIsSystem(core, conn)),
    view.onlyAccountId ? eq(automations.accountId, view.onlyAccountId) : undefined,
  );
  const visible = view.visibleTo ? visibleToUser(view.visibleTo) : undefined;
  const [rows, [all]] = await Promise.all([
    core.db
      .select({
        id: automations.id,
        name: automations.name,
        status: automations.status,
        pausedBy: automations.pausedByConnectionId,
        accountId: accounts.id,
        slug: accounts.slug,
        accountName: accounts.name,
        total: sql<number>`count(*) over ()`,
      })
      .from(automationConnections)
      .innerJoin(automations, eq(automations.id, automationConnections.automationId))
      .innerJoin(accounts, eq(accounts.id, automations.accountId))
      .where(and(base, visible))
      .orderBy(asc(accounts.slug), asc(automations.name), asc(automations.id))
      .limit(USAGE_SHOWN),
    core.db
      .select({ n: count() })
      .from(automationConnections)
      .innerJoin(automations, eq(automations.id, automationConnections.automationId))
      .where(base),
  ]);
  const shown = Number(rows[0]?.total ?? 0);
  const total = Number(all?.n ?? 0);
  return {
    items: rows.map((r) => ({
      id: r.id,
      name: r.name,
      status: r.status,
      pausedByThis: r.pausedBy === conn.id,
      account: { id: r.accountId, slug: r.slug, name: r.accountName },
    })),
    total,
    hidden: total - shown,
  };
}

/**
 * The confirm token of a disconnect plan: it changes when the connection or the set of
 * automations it would pause changes, so a stale plan cannot be applied.
 */
export function disconnectToken(row: ConnectionRow, affectedIds: string[]): string {
  const h = createHash('sha256').update(JSON.stringify([row.id, row.status, row.updatedAt.toISOString(), [...affectedIds].sort()]));
  return `disc_${h.digest('hex').slice(0, 20)}`;
}

/** The automations a disconnect would pause: active ones, in accounts that may use the connection now. */
async function activeUsers(core: Core, row: ConnectionRow): Promise<string[]> {
  const rows = await core.db
    .select({ id: automations.id })
    .from(automationConnections)
    .innerJoin(automations, eq(automations.id, automationConnections.automationId))
    .where(and(eq(automationConnections.connectionId, row.id), eq(automations.status, 'active'), usableIn(row, await ownerIsSystem(core, row))));
  return rows.map((r) => r.id);
}

export async function disconnectPlan(core: Core, row: ConnectionRow): Promise<{ token: string; pauses: string[] }> {
  const pauses = await activeUsers(core, row);
  return { token: disconnectToken(row, pauses), pauses };
}

/**
 * Disconnect: status `disconnected`, and every active automation using the connection is paused
 * (marked as paused by it, so reconnecting resumes exactly those). Requires the plan's token.
 */
export async function disconnect(core: Core, row: ConnectionRow, confirm: string): Promise<{ row: ConnectionRow; paused: number }> {
  // lock the row: a concurrent disconnect or reconnect waits, then sees the new state and a stale token
  const [current] = await core.db.select().from(connections).where(eq(connections.id, row.id)).for('update');
  const plan = await disconnectPlan(core, current!);
  if (confirm !== plan.token) {
    throw new UserError('The confirm token does not match the current plan (the connection or its automations changed): call disconnect_connection without confirm to see the impact again.', 'conflict');
  }
  if (plan.pauses.length) {
    await core.db
      .update(automations)
      .set({ status: 'paused', pausedByConnectionId: row.id })
      .where(and(inArray(automations.id, plan.pauses), eq(automations.status, 'active')));
  }
  const updated = await setConnectionFields(core, current!, { status: 'disconnected' });
  return { row: updated, paused: plan.pauses.length };
}

/**
 * New credentials for a connection (expired, disconnected, or active with a rotated secret):
 * status back to active, and the automations it paused resume.
 */
export async function reconnect(core: Core, row: ConnectionRow, credentials: Record<string, unknown>): Promise<{ row: ConnectionRow; resumed: number }> {
  const app = await getApp(core, row.app);
  const input = { auth_kind: row.authKind, ...credentials };
  const { authKind, values } = validateCredentials(app, input);
  const { sealed, dataKeyId } = await sealCredentials(core, row.accountId, row.id, authKind, values);
  const updated = await setConnectionFields(core, row, {
    status: 'active',
    authFailures: 0,
    credentials: sealed,
    dataKeyId,
    authKind,
    masked: maskCredentials(app, authKind, values),
  });
  const resumed = await core.db
    .update(automations)
    .set({ status: 'active', pausedByConnectionId: null })
    .where(and(eq(automations.pausedByConnectionId, row.id), eq(automations.status, 'paused'), usableIn(updated, await ownerIsSystem(core, updated))))
    .returning({ id: automations.id });
  return { row: updated, resumed: resumed.length };
}

/**
 * The app refused the credentials (expired token, revoked key) again and again: the execution
 * engine marks the connection expired (src/engine/auth-failures.ts) and pauses the automations
 * that use it, as a disconnect does — reconnecting with new credentials makes it active again
 * and resumes exactly those. Null when it was no longer active (another worker expired it first).
 */
export async function expireConnection(core: Core, row: ConnectionRow): Promise<(ConnectionRow & { paused: number }) | null> {
  const system = await ownerIsSystem(core, row); // read before: inside, use only tx (PGlite)
  // one transaction with the row locked: a reconnect waits for it, then resumes what it paused
  return core.db.transaction(async (tx) => {
    const [current] = await tx.select().from(connections).where(eq(connections.id, row.id)).for('update');
    // only the call that moves it from active expires it: concurrent 401s do it once
    if (!current || current.status !== 'active') return null;
    const pauses = await tx
      .select({ id: automations.id })
      .from(automationConnections)
      .innerJoin(automations, eq(automations.id, automationConnections.automationId))
      .where(and(eq(automationConnections.connectionId, row.id), eq(automations.status, 'active'), usableIn(current, system)));
    if (pauses.length) {
      await tx
        .update(automations)
        .set({ status: 'paused', pausedByConnectionId: row.id })
        .where(and(inArray(automations.id, pauses.map((p) => p.id)), eq(automations.status, 'active')));
    }
    const [expired] = await tx
      .update(connections)
      .set({ status: 'expired', authFailures: 0, updatedAt: sql`now()` as unknown as Date })
      .where(eq(connections.id, row.id))
      .returning();
    return expired ? { ...expired, paused: pauses.length } : null;
  });
}

/** Mark an own connection shared (or not): only accounts that are not themselves linked children share. */
export async function shareConnection(core: Core, account: Account, row: ConnectionRow, shared: boolean): Promise<ConnectionRow> {
  if (shared && account.parentAccountId) {
    throw new UserError(`'${account.slug}' is a linked child account: only a parent account (or the system setup account) shares connections.`);
  }
  return setConnectionFields(core, row, { shared });
}
