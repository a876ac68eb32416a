import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq, sql } from 'drizzle-orm';
import { buildWorld, connect, data, type World } from './helpers/world.js';
import { addConnection, type ConnectionRow } from '../src/core/connections.js';
import { acquireConnection, takeToken } from '../src/engine/rate-limiter.js';
import { openDatabase } from '../src/db/client.js';
import { rateLimitBuckets } from '../src/db/schema/index.js';
import { testDbKind } from './helpers/db.js';

/**
 * The token bucket in PostgreSQL: it never lets through more than the limit, whoever asks at
 * once (several connections of a pool, or two separate pools standing in for two processes).
 * Time passing is simulated by moving the bucket's refill time back, not by waiting.
 */
let w: World;
let conn: ConnectionRow;
const target = (perMinute: number) => ({ connectionId: conn.id, perMinute });
const ageBucket = (seconds: number) =>
  w.database.db
    .update(rateLimitBuckets)
    .set({ refilledAt: sql`${rateLimitBuckets.refilledAt} - make_interval(secs => ${seconds})` })
    .where(eq(rateLimitBuckets.connectionId, conn.id));

beforeAll(async () => {
  w = await buildWorld();
  ({ row: conn } = await addConnection(w.core, w.accounts.boring, { app: 'slack', credentials: { bot_token: 'xoxb-rate-limit-test-0000' }, createdBy: w.userIds.admin }));
});
afterAll(async () => w.close());

describe('token bucket', () => {
  it('lets exactly the limit through when 40 callers ask at once', async () => {
    const results = await Promise.all(Array.from({ length: 40 }, () => takeToken(w.core, target(10))));
    expect(results.filter((r) => r.allowed)).toHaveLength(10);
    const refused = results.filter((r) => !r.allowed);
    expect(refused).toHaveLength(30);
    // 10 a minute: the next token is at most 6 seconds away
    for (const r of refused) expect(r.retryAfterMs).toBeGreaterThan(0), expect(r.retryAfterMs).toBeLessThanOrEqual(6000);
  });

  it('refills at the limit per minute, never above one minute of calls', async () => {
    await ageBucket(30); // half a minute: 5 tokens
    const half = await Promise.all(Array.from({ length: 8 }, () => takeToken(w.core, target(10))));
    expect(half.filter((r) => r.allowed)).toHaveLength(5);
    await ageBucket(3600); // an hour idle still holds only a minute's worth
    const full = await Promise.all(Array.from({ length: 15 }, () => takeToken(w.core, target(10))));
    expect(full.filter((r) => r.allowed)).toHaveLength(10);
  });

  it('a changed limit applies at once: a lower one caps the bucket', async () => {
    await ageBucket(3600);
    const r = await Promise.all(Array.from({ length: 6 }, () => takeToken(w.core, target(3))));
    expect(r.filter((x) => x.allowed)).toHaveLength(3);
  });

  // PostgreSQL only: PGlite is one process by design (a second handle on its data directory is refused)
  it.runIf(testDbKind() === 'postgres')('holds across two database pools (two processes)', async () => {
    await ageBucket(3600);
    const other = await openDatabase({ url: w.database.url!, max: 4 });
    try {
      const otherCore = { ...w.core, db: other.db };
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) => takeToken(i % 2 ? otherCore : w.core, target(12))),
      );
      expect(results.filter((r) => r.allowed)).toHaveLength(12);
    } finally {
      await other.close();
    }
  });

  it('a cost above the whole bucket is refused without consuming anything', async () => {
    await ageBucket(3600);
    const big = await takeToken(w.core, target(5), 6);
    expect(big).toMatchObject({ allowed: false });
    expect((await takeToken(w.core, target(5), 5)).allowed).toBe(true);
  });
});

describe('acquireConnection (what the execution engine calls)', () => {
  it('stamps last use, which list_connections shows', async () => {
    await ageBucket(3600);
    expect((await acquireConnection(w.core, target(100))).allowed).toBe(true);
    const s = await connect(w.core, w.tokens.boringAdmin);
    const listed = data<{ own: { app: string; last_used_at: string | null }[] }>(await s.call('list_connections', { query: 'slack' }));
    expect(listed.own[0]!.last_used_at).toMatch(/^\d{4}-\d\d-\d\dT/);
    await s.close();
  });
});
