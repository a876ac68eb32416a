import { and, eq, sql } from 'drizzle-orm';
import { connections, rateLimitBuckets } from '../db/schema/index.js';
import { withAccount, type Tx } from '../db/scope.js';
import type { Core } from '../core/core.js';

/**
 * A token bucket per connection, kept in PostgreSQL so that it holds across processes: the
 * bucket holds at most one minute's worth of calls (`perMinute`) and refills continuously at
 * perMinute / 60 per second. Taking is one statement: the row lock of the upsert serializes
 * concurrent takers, so N processes together never get more than the bucket allows.
 */

export interface TakeResult {
  allowed: boolean;
  /** tokens left after this take (allowed), or available now (refused) */
  remaining: number;
  /** when refused: milliseconds until `cost` tokens are available */
  retryAfterMs: number;
}

export interface BucketTarget {
  connectionId: string;
  perMinute: number;
}

/** The account that owns a connection: its bucket lives there, whichever account uses it (a shared connection). */
async function ownerOf(core: Core, connectionId: string): Promise<string> {
  const [row] = await core.db.select({ accountId: connections.accountId }).from(connections).where(and(eq(connections.id, connectionId), eq(connections.tenantId, core.tenantId)));
  if (!row) throw new Error(`rate limiter: no connection ${connectionId}`);
  return row.accountId;
}

export async function takeToken(core: Core, target: BucketTarget, cost = 1): Promise<TakeResult> {
  const owner = await ownerOf(core, target.connectionId);
  return withAccount(core.db, [owner], (tx) => takeIn(tx, target, owner, cost));
}

/** The take itself, inside the owner account's scope. */
async function takeIn(tx: Tx, t: BucketTarget, owner: string, cost: number): Promise<TakeResult> {
  const cap = t.perMinute;
  const perSecond = t.perMinute / 60;
  // refilled level at clock_timestamp(); the first take starts from a full bucket
  const level = sql`least(${cap}::float8, ${rateLimitBuckets.tokens} + extract(epoch from (clock_timestamp() - ${rateLimitBuckets.refilledAt})) * ${perSecond}::float8)`;
  const taken = await tx
    .insert(rateLimitBuckets)
    .values({ connectionId: t.connectionId, accountId: owner, tokens: sql`${cap}::float8 - ${cost}::float8`, refilledAt: sql`clock_timestamp()` })
    .onConflictDoUpdate({
      target: rateLimitBuckets.connectionId,
      set: { tokens: sql`${level} - ${cost}::float8`, refilledAt: sql`clock_timestamp()` },
      setWhere: sql`${level} >= ${cost}::float8`,
    })
    .returning({ tokens: rateLimitBuckets.tokens });
  if (taken.length && taken[0]!.tokens >= 0) return { allowed: true, remaining: taken[0]!.tokens, retryAfterMs: 0 };
  if (taken.length) {
    // cost above capacity on a fresh bucket: never allowed; undo the insert
    await tx.delete(rateLimitBuckets).where(sql`${rateLimitBuckets.connectionId} = ${t.connectionId}`);
    return { allowed: false, remaining: cap, retryAfterMs: Number.POSITIVE_INFINITY };
  }
  const [now] = await tx.select({ level }).from(rateLimitBuckets).where(sql`${rateLimitBuckets.connectionId} = ${t.connectionId}`);
  const available = Number(now?.level ?? 0);
  return { allowed: false, remaining: available, retryAfterMs: Math.ceil(((cost - available) / perSecond) * 1000) };
}

/**
 * What the execution engine takes before requests to an app (a block of `cost` tokens at once,
 * src/engine/token-leases.ts): take from the connection's bucket and, when allowed, stamp last_used_at (at most once a minute per
 * connection), in one transaction of the owner account.
 */
export async function acquireConnection(core: Core, t: BucketTarget, cost = 1): Promise<TakeResult> {
  const owner = await ownerOf(core, t.connectionId);
  return withAccount(core.db, [owner], async (tx) => {
    const r = await takeIn(tx, t, owner, cost);
    if (r.allowed) {
      await tx
        .update(connections)
        .set({ lastUsedAt: sql`now()` })
        .where(sql`${connections.id} = ${t.connectionId} and (${connections.lastUsedAt} is null or ${connections.lastUsedAt} < now() - interval '1 minute')`);
    }
    return r;
  });
}
