import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { and, eq, sql } from 'drizzle-orm';
import { buildWorld, connect, data, text, type Session, type World } from './helpers/world.js';
import { accountData } from '../src/db/schema/index.js';
import { getEntry, incrementEntry, LIST_VALUE_CHARS, MAX_KEYS, setEntry, sweepExpired } from '../src/core/account-data.js';
import { withAccount } from '../src/db/scope.js';

/** The account key-value store: the account_data tool, expiry, atomic increments, bounds, roles. */

let w: World;
let boring: Session; // admin of Boring Co
let viewer: Session; // viewer of Boring Co
beforeAll(async () => {
  w = await buildWorld();
  boring = await connect(w.core, w.tokens.boringAdmin);
  viewer = await connect(w.core, w.tokens.boringViewer);
});
afterAll(async () => {
  await Promise.all([boring.close(), viewer.close()]);
  await w.close();
});

interface Entries {
  entries: { key: string; value: unknown; value_chars: number; expires_at: string | null }[];
  found: boolean;
  next_cursor: string | null;
}
const call = async (s: Session, args: object) => data<Entries>(await s.call('account_data', args));

describe('account_data', () => {
  it('sets, gets, lists by prefix in byte order with pages, and deletes', async () => {
    for (const [key, value] of [
      ['stripe:cus_2', { ledger: 'L-2' }],
      ['stripe:cus_1', { ledger: 'L-1' }],
      ['stripe-old', 1],
      ['cursor', '2026-11-29T00:00:00Z'],
    ] as const) {
      expect((await call(boring, { action: 'set', key, value })).entries[0]).toMatchObject({ key, value });
    }
    expect((await call(viewer, { action: 'get', key: 'stripe:cus_1' })).entries[0]!.value).toEqual({ ledger: 'L-1' });
    expect(await call(viewer, { action: 'get', key: 'nope' })).toMatchObject({ entries: [], found: false });
    const all = await call(viewer, { action: 'list' });
    // byte order: '-' (0x2d) sorts before ':' (0x3a)
    expect(all.entries.map((e) => e.key)).toEqual(['cursor', 'stripe-old', 'stripe:cus_1', 'stripe:cus_2']);
    const pre = await call(viewer, { action: 'list', prefix: 'stripe:' });
    expect(pre.entries.map((e) => e.key)).toEqual(['stripe:cus_1', 'stripe:cus_2']);
    const p1 = await call(viewer, { action: 'list', prefix: 'stripe', limit: 2 });
    expect(p1.entries.map((e) => e.key)).toEqual(['stripe-old', 'stripe:cus_1']);
    const p2 = await call(viewer, { action: 'list', prefix: 'stripe', limit: 2, cursor: p1.next_cursor });
    expect(p2.entries.map((e) => e.key)).toEqual(['stripe:cus_2']);
    expect(p2.next_cursor).toBeNull();
    // LIKE metacharacters in a prefix are plain text
    expect((await call(viewer, { action: 'list', prefix: 'stripe%' })).entries).toEqual([]);

    expect(await call(boring, { action: 'delete', key: 'stripe-old' })).toMatchObject({ found: true });
    expect(await call(boring, { action: 'delete', key: 'stripe-old' })).toMatchObject({ found: false });
  });

  it('stores JSON null as a value (found by the fuzzer: it was an internal error, the column refusing SQL NULL)', async () => {
    expect((await call(boring, { action: 'set', key: 'cleared', value: null })).entries[0]).toMatchObject({ key: 'cleared', value: null });
    expect(await call(viewer, { action: 'get', key: 'cleared' })).toMatchObject({ found: true, entries: [{ key: 'cleared', value: null }] });
    expect((await call(boring, { action: 'set', key: 'cleared', value: 2 })).entries[0]).toMatchObject({ value: 2 });
    expect((await call(boring, { action: 'set', key: 'cleared', value: null })).entries[0]).toMatchObject({ value: null });
  });

  it('lists a large value by size only; get returns it whole', async () => {
    const big = 'x'.repeat(LIST_VALUE_CHARS + 10);
    await call(boring, { action: 'set', key: 'big', value: big });
    const listed = (await call(viewer, { action: 'list', prefix: 'big' })).entries[0]!;
    expect(listed).toMatchObject({ key: 'big', value: null, value_chars: big.length + 2 });
    expect((await call(viewer, { action: 'get', key: 'big' })).entries[0]!.value).toBe(big);
  });

  it('lets viewers read and members change, and no one of another account', async () => {
    const r = await viewer.call('account_data', { action: 'set', key: 'k', value: 1 });
    expect(text(r)).toMatch(/^Access denied: this needs the member role in account 'boring-co'; you are viewer there/);
    expect(text(await viewer.call('account_data', { action: 'delete', key: 'cursor' }))).toMatch(/needs the member role/);
    const acme = await connect(w.core, w.tokens.acmeAdmin);
    for (const action of ['list', 'get', 'set']) {
      const denied = await acme.call('account_data', { account: 'boring-co', action, key: 'cursor', value: 1 });
      expect(text(denied)).toMatch(/^Access denied/);
      expect(denied.structuredContent).toBeUndefined();
    }
    // Acme's own data is its own
    expect((await call(acme, { action: 'list' })).entries).toEqual([]);
    await acme.close();
  });

  it('gives clear errors for missing fields, bad keys and oversized values', async () => {
    expect(text(await boring.call('account_data', { action: 'set', key: 'k' }))).toBe('set needs value.');
    expect(text(await boring.call('account_data', { action: 'get' }))).toBe('get needs key.');
    expect(text(await boring.call('account_data', { action: 'set', key: 'k'.repeat(300), value: 1 }))).toMatch(/key/);
    expect(text(await boring.call('account_data', { action: 'set', key: 'huge', value: 'y'.repeat(70_000) }))).toMatch(/more than the limit of 65536/);
    expect(text(await boring.call('account_data', { action: 'set', key: 'k', value: 1, ttl_seconds: 0 }))).toMatch(/ttl_seconds/);
  });

  it('reads and changes nothing in a suspended account but lets its admins read', async () => {
    const admin = await connect(w.core, w.tokens.admin);
    data(await admin.call('set_account_status', { account: 'boring-co', status: 'suspended', reason: 'data test' }));
    try {
      expect((await call(boring, { action: 'get', key: 'cursor' })).found).toBe(true);
      expect(text(await boring.call('account_data', { action: 'set', key: 'cursor', value: 'x' }))).toMatch(/is suspended: nothing can be changed in it/);
      expect(text(await viewer.call('account_data', { action: 'list' }))).toMatch(/only its admins can read it/);
    } finally {
      data(await admin.call('set_account_status', { account: 'boring-co', status: 'active', reason: 'done' }));
      await admin.close();
    }
  });
});

describe('expiry', () => {
  it('hides an expired entry from every read, starts it afresh on set, and sweeps it', async () => {
    const set = await call(boring, { action: 'set', key: 'seen:evt_1', value: true, ttl_seconds: 3600 });
    expect(Date.parse(set.entries[0]!.expires_at!)).toBeGreaterThan(Date.now() + 3500_000);
    const expire = () =>
      w.core.db.update(accountData).set({ expiresAt: sql`now() - interval '1 second'` }).where(and(eq(accountData.accountId, w.accounts.boring.id), eq(accountData.key, 'seen:evt_1')));
    await expire();
    expect((await call(boring, { action: 'get', key: 'seen:evt_1' })).found).toBe(false);
    expect((await call(boring, { action: 'list', prefix: 'seen:' })).entries).toEqual([]);
    expect((await call(boring, { action: 'delete', key: 'seen:evt_1' })).found).toBe(false);
    // set again: a fresh entry without the old expiry
    await call(boring, { action: 'set', key: 'seen:evt_1', value: 'again' });
    expect((await call(boring, { action: 'get', key: 'seen:evt_1' })).entries[0]).toMatchObject({ value: 'again', expires_at: null });
    await call(boring, { action: 'set', key: 'seen:evt_1', value: 'again', ttl_seconds: 60 });
    await expire();
    expect(await sweepExpired(w.core)).toBeGreaterThanOrEqual(1);
    const left = await w.core.db.select().from(accountData).where(eq(accountData.key, 'seen:evt_1'));
    expect(left).toEqual([]);
  });
});

describe('increment', () => {
  it('is atomic under concurrency, starts missing and expired keys at by, and refuses non-numbers', async () => {
    const acme = w.accounts.acme;
    await Promise.all(Array.from({ length: 25 }, () => incrementEntry(w.core, acme, 'bookings')));
    expect((await getEntry(w.core, acme, 'bookings'))!.value).toBe(25);
    expect((await incrementEntry(w.core, acme, 'bookings', -5.5)).value).toBe(19.5);
    await setEntry(w.core, acme, 'name', 'not a number');
    await expect(incrementEntry(w.core, acme, 'name')).rejects.toThrow(/is not a number/);
    await setEntry(w.core, acme, 'daily', 40, 60);
    expect((await incrementEntry(w.core, acme, 'daily', 2)).value).toBe(42);
    await w.core.db.update(accountData).set({ expiresAt: sql`now() - interval '1 second'` }).where(and(eq(accountData.accountId, acme.id), eq(accountData.key, 'daily')));
    const restarted = await incrementEntry(w.core, acme, 'daily', 2);
    expect(restarted).toMatchObject({ value: 2, expiresAt: null });
    await incrementEntry(w.core, acme, 'huge', 1e308);
    await expect(incrementEntry(w.core, acme, 'huge', 1e308)).rejects.toThrow(/largest number/);
    expect((await getEntry(w.core, acme, 'huge'))!.value).toBe(1e308);
    // the text backslash-u-0000 is plain text, unlike a real NUL
    expect((await setEntry(w.core, acme, 'escaped', '\\u0000')).value).toBe('\\u0000');
    // text that reads like JSON comes back as the text it was
    for (const v of ['42', '{"a":1}', 'true', '"quoted"']) {
      await setEntry(w.core, acme, 'looks-like-json', v);
      expect((await getEntry(w.core, acme, 'looks-like-json'))!.value, v).toBe(v);
    }
    await expect(setEntry(w.core, acme, 'nul', 'a\u0000b')).rejects.toThrow(/cannot be stored/);
  });
});

describe('bounds', () => {
  it('refuses a key past the per-account limit, counting only live keys', async () => {
    const studio = w.accounts.studio2;
    const rows = Array.from({ length: MAX_KEYS }, (_, i) => ({ accountId: studio.id, tenantId: w.core.tenantId, key: `k${String(i).padStart(5, '0')}`, value: i }));
    for (let i = 0; i < rows.length; i += 2000) await w.core.db.insert(accountData).values(rows.slice(i, i + 2000));
    await expect(setEntry(w.core, studio, 'one-more', 1)).rejects.toThrow(new RegExp(`holds ${MAX_KEYS} keys, the most it may`));
    await expect(incrementEntry(w.core, studio, 'one-more')).rejects.toThrow(/the most it may/);
    // replacing an existing key needs no room
    expect((await setEntry(w.core, studio, 'k00000', 'replaced')).value).toBe('replaced');
    // an expired key does not count: it makes room for one more …
    await w.core.db.update(accountData).set({ expiresAt: sql`now() - interval '1 second'` }).where(and(eq(accountData.accountId, studio.id), eq(accountData.key, 'k00001')));
    expect((await setEntry(w.core, studio, 'one-more', 1)).value).toBe(1);
    // an expired key set again counts as new: no way past the limit through expired keys
    await w.core.db.update(accountData).set({ expiresAt: sql`now() - interval '1 second'` }).where(and(eq(accountData.accountId, studio.id), eq(accountData.key, 'k00002')));
    await expect(setEntry(w.core, studio, 'k00002', 'back')).resolves.toBeTruthy(); // one slot free again: allowed
    await w.core.db.update(accountData).set({ expiresAt: sql`now() - interval '1 second'` }).where(and(eq(accountData.accountId, studio.id), eq(accountData.key, 'k00003')));
    await expect(setEntry(w.core, studio, 'k00002', 'replaced')).resolves.toBeTruthy(); // a live key: replaced in place
    expect((await incrementEntry(w.core, studio, 'k00003', 5)).value).toBe(5); // expired: starts afresh, taking the free slot
    // … and at the limit again it is refused; the sweep removes the expired row
    await expect(setEntry(w.core, studio, 'two-more', 1)).rejects.toThrow(/the most it may/);
    expect(await sweepExpired(w.core)).toBeGreaterThanOrEqual(1);
    const gone = await w.core.db.select().from(accountData).where(and(eq(accountData.accountId, studio.id), eq(accountData.key, 'k00001')));
    expect(gone).toEqual([]);
  });

  it('keeps each account to its own rows under RLS', async () => {
    const seen = await withAccount(w.core.db, [w.accounts.boring.id], (tx) => tx.select().from(accountData));
    expect(seen.length).toBeGreaterThan(0);
    for (const r of seen) expect(r.accountId).toBe(w.accounts.boring.id);
  });
});
