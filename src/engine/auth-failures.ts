import { and, eq, gt, sql } from 'drizzle-orm';
import { connections, type ConnectionStatus } from '../db/schema/index.js';
import { withAccount } from '../db/scope.js';
import type { Core } from '../core/core.js';
import type { ConnectionRow } from '../core/connections.js';
import { expireConnection } from '../core/connection-lifecycle.js';

/**
 * 401s from an app count against the connection that authenticated the call: after
 * `core.authFailureLimit` in a row (default 3; SWITCHBOARD_EXPIRE_AFTER_401) the connection is
 * marked expired and the automations using it pause, until someone reconnects it. One success
 * resets the count. A single 401 is often a blip (a token refreshed a moment late); several in a
 * row mean the credentials are gone, and retrying them only fills the records with failures.
 *
 * The count lives on the connection row (in its owner's account: a parent's shared connection
 * counts the 401s of all its children), so it holds across workers and processes. Only 401s
 * that are about the connection's credentials count: a step that sends a credential header of
 * its own (forwarding a caller's token) is not counted, so no account can expire a connection
 * it shares with others by sending bad credentials of its own. A worker resets the count when its
 * cached view of the connection (at most a second old) shows one: a success in another worker
 * within that second may not reset it.
 */

export const DEFAULT_AUTH_FAILURE_LIMIT = 3;

/**
 * Count one 401 against the credentials `row` holds; returns the count, whether this one expired
 * the connection, and how many automations that paused. A 401 for credentials that have changed since (the connection was
 * reconnected or edited while the call was in flight or cached) counts for nothing: it is not
 * about the credentials the connection holds now.
 */
export async function countAuthFailure(core: Core, row: ConnectionRow): Promise<{ count: number; expired: boolean; paused: number }> {
  const limit = core.authFailureLimit ?? DEFAULT_AUTH_FAILURE_LIMIT;
  const [now] = await withAccount(core.db, [row.accountId], (tx) =>
    tx
      .update(connections)
      .set({ authFailures: sql`${connections.authFailures} + 1` })
      .where(and(eq(connections.id, row.id), sql`date_trunc('milliseconds', ${connections.updatedAt}) = ${row.updatedAt.toISOString()}::timestamptz`))
      .returning({ count: connections.authFailures, status: connections.status }),
  );
  if (!now) return { count: 0, expired: false, paused: 0 };
  if (now.count < limit || now.status !== ('active' satisfies ConnectionStatus)) return { count: now.count, expired: false, paused: 0 };
  const expired = await expireConnection(core, row);
  return { count: now.count, expired: expired !== null, paused: expired?.paused ?? 0 };
}

/** A call the app accepted: the count of 401s in a row starts again (written only when it is not zero). */
export async function resetAuthFailures(core: Core, row: ConnectionRow): Promise<void> {
  await withAccount(core.db, [row.accountId], (tx) =>
    tx.update(connections).set({ authFailures: 0 }).where(and(eq(connections.id, row.id), gt(connections.authFailures, 0))),
  );
}
