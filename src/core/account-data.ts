import { and, asc, count, eq, gt, isNull, lte, ne, or, sql, type SQL } from 'drizzle-orm';
import { rowsOf } from '../db/client.js';
import { accountData } from '../db/schema/index.js';
import { withAccount, type Tx } from '../db/scope.js';
import type { Core } from './core.js';
import type { Account } from './accounts.js';
import { UserError } from './errors.js';
import { decodeCursor, encodeCursor } from './ids.js';

/**
 * An account's key-value data (table account_data): get, set with an optional time to live,
 * atomic increment, delete, list by prefix. Every operation runs in the account's scope (RLS).
 * Bounded per account: key length, value size, and number of live keys (the count is exact:
 * new keys are added under a per-account advisory lock).
 *
 * An entry past its expiry is gone for every operation (a set or increment starts it afresh),
 * does not count against the limit, and is deleted by sweepExpired.
 */

export const MAX_KEY_CHARS = 256;
export const MAX_VALUE_CHARS = 64 * 1024;
export const MAX_KEYS = 10_000;
/** list shows values up to this size inline; larger ones only by size (get reads them) */
export const LIST_VALUE_CHARS = 2000;

type Owner = Pick<Account, 'id' | 'slug'>;
export type DataEntry = typeof accountData.$inferSelect;

const live = (): SQL => or(isNull(accountData.expiresAt), gt(accountData.expiresAt, sql`now()`))!;
const expired = (): SQL => lte(accountData.expiresAt, sql`now()`);

export function checkKey(key: string): void {
  if (key.length === 0) throw new UserError('The key must not be empty.');
  if ([...key].length > MAX_KEY_CHARS) throw new UserError(`The key is longer than ${MAX_KEY_CHARS} characters.`);
  if (!key.isWellFormed() || key.includes('\0')) throw new UserError('The key contains characters that cannot be stored (NUL or a lone surrogate).');
}

/** The value as stored JSON, or a clear error: JSON only, within the size bound, storable text. */
function checkValue(value: unknown): void {
  const json = JSON.stringify(value);
  if (json === undefined) throw new UserError('The value must be JSON (a string, number, boolean, null, array or object).');
  if (json.length > MAX_VALUE_CHARS) throw new UserError(`The value is ${json.length} characters as JSON, more than the limit of ${MAX_VALUE_CHARS}.`);
  if (!storableJson(value)) throw new UserError('The value contains text that cannot be stored (NUL or a lone surrogate).');
}

/** Whether every text in a value (keys too) is storable in jsonb: no NUL, no lone surrogate. */
function storableJson(value: unknown): boolean {
  const ok = (s: string) => s.isWellFormed() && !s.includes('\0');
  if (typeof value === 'string') return ok(value);
  if (Array.isArray(value)) return value.every(storableJson);
  if (value && typeof value === 'object') return Object.entries(value).every(([k, v]) => ok(k) && storableJson(v));
  return true;
}

const expiry = (ttlSeconds: number | undefined): SQL | null =>
  ttlSeconds === undefined ? null : sql`now() + make_interval(secs => ${ttlSeconds})`;

function checkTtl(ttlSeconds: number | undefined): void {
  if (ttlSeconds !== undefined && (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > 31_536_000)) {
    throw new UserError('ttl_seconds must be a whole number of seconds from 1 to 31536000 (a year).');
  }
}

export async function getEntry(core: Core, account: Owner, key: string): Promise<DataEntry | null> {
  checkKey(key);
  const [row] = await withAccount(core.db, [account.id], (tx) =>
    tx.select().from(accountData).where(and(eq(accountData.accountId, account.id), eq(accountData.key, key), live())),
  );
  return row ?? null;
}

/**
 * Room for `key`: under the account's advisory lock (held to the end of the transaction, so
 * concurrent new keys are counted one after another), the other live keys must be under the limit.
 * Expired entries do not count; sweepExpired deletes them.
 */
async function reserveKey(tx: Tx, account: Owner, key: string): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(hashtextextended(${`account_data:${account.id}`}, 0))`);
  const [row] = await tx.select({ n: count() }).from(accountData).where(and(eq(accountData.accountId, account.id), live(), ne(accountData.key, key)));
  if (Number(row!.n) >= MAX_KEYS) {
    throw new UserError(`Account '${account.slug}' holds ${MAX_KEYS} keys, the most it may: delete some (account_data) or give them a ttl_seconds.`);
  }
}

/** Set a key (replacing any value); with ttlSeconds it expires then, without it never. */
export async function setEntry(core: Core, account: Owner, key: string, value: unknown, ttlSeconds?: number): Promise<DataEntry> {
  checkKey(key);
  checkValue(value);
  checkTtl(ttlSeconds);
  return withAccount(core.db, [account.id], async (tx) => {
    // JSON null is a value like any other: the driver would send it as SQL NULL, which the column refuses
    const changes = { value: value === null ? sql`'null'::jsonb` : value, expiresAt: expiry(ttlSeconds), updatedAt: sql`now()` };
    // a live key is replaced in place: no new key, nothing to count (an expired one counts as new)
    const [replaced] = await tx.update(accountData).set(changes).where(and(eq(accountData.accountId, account.id), eq(accountData.key, key), live())).returning();
    if (replaced) return replaced;
    await reserveKey(tx, account, key);
    const [row] = await tx
      .insert(accountData)
      .values({ accountId: account.id, tenantId: core.tenantId, key, ...changes })
      .onConflictDoUpdate({ target: [accountData.accountId, accountData.key], set: changes })
      .returning();
    return row!;
  });
}

/**
 * Add `by` to a number atomically (a missing or expired key counts as 0; the expiry of a live
 * one is kept). Concurrent increments never lose one.
 */
export async function incrementEntry(core: Core, account: Owner, key: string, by = 1): Promise<DataEntry> {
  checkKey(key);
  if (!Number.isFinite(by)) throw new UserError('by must be a finite number.');
  return withAccount(core.db, [account.id], async (tx) => {
    const add = sql`case when ${accountData.expiresAt} <= now() then to_jsonb(${by}::numeric) else to_jsonb((${accountData.value} #>> '{}')::numeric + ${by}::numeric) end`;
    const keepExpiry = sql`case when ${accountData.expiresAt} <= now() then null else ${accountData.expiresAt} end`;
    const isNumber = or(expired(), sql`jsonb_typeof(${accountData.value}) = 'number'`);
    const [updated] = await tx
      .update(accountData)
      .set({ value: add, expiresAt: keepExpiry, updatedAt: sql`now()` })
      .where(and(eq(accountData.accountId, account.id), eq(accountData.key, key), live(), sql`jsonb_typeof(${accountData.value}) = 'number'`))
      .returning();
    if (updated) return finite(updated, key);
    // no live number there (yet): insert, or add to what a concurrent call inserted meanwhile
    await reserveKey(tx, account, key);
    const [row] = await tx
      .insert(accountData)
      .values({ accountId: account.id, tenantId: core.tenantId, key, value: sql`to_jsonb(${by}::numeric)` })
      .onConflictDoUpdate({ target: [accountData.accountId, accountData.key], set: { value: add, expiresAt: keepExpiry, updatedAt: sql`now()` }, setWhere: isNumber })
      .returning();
    if (!row) throw new UserError(`The value of '${key.slice(0, 100)}' is not a number: it cannot be incremented.`);
    return finite(row, key);
  });
}

/** A counter past what a JSON number holds is refused (the transaction rolls back), never read back as null. */
function finite(row: DataEntry, key: string): DataEntry {
  if (typeof row.value !== 'number' || !Number.isFinite(row.value)) throw new UserError(`Incrementing '${key.slice(0, 100)}' would pass the largest number a value can hold.`);
  return row;
}

/** Delete a key; false when there was none (or it had expired). */
export async function deleteEntry(core: Core, account: Owner, key: string): Promise<boolean> {
  checkKey(key);
  const rows = await withAccount(core.db, [account.id], (tx) =>
    tx.delete(accountData).where(and(eq(accountData.accountId, account.id), eq(accountData.key, key))).returning({ expiresAt: accountData.expiresAt }),
  );
  return rows.some((r) => r.expiresAt === null || r.expiresAt.getTime() > Date.now());
}

export interface ListedEntry {
  key: string;
  /** null when larger than LIST_VALUE_CHARS as JSON (get reads it) */
  value: unknown;
  valueChars: number;
  expiresAt: Date | null;
  updatedAt: Date;
}

/** Live keys in key order (byte order), optionally those starting with `prefix`; one keyset page. */
export async function listEntries(
  core: Core,
  account: Owner,
  input: { prefix?: string | undefined; limit: number; cursor?: string | undefined },
): Promise<{ items: ListedEntry[]; nextCursor: string | null }> {
  const conds: (SQL | undefined)[] = [eq(accountData.accountId, account.id), live()];
  if (input.prefix) {
    checkKey(input.prefix);
    conds.push(sql`${accountData.key} >= ${input.prefix}`, sql`starts_with(${accountData.key}, ${input.prefix})`);
  }
  if (input.cursor) conds.push(sql`${accountData.key} > ${decodeCursor(input.cursor, ['text'])[0] as string}`);
  const size = sql<number>`length(${accountData.value}::text)`;
  const rows = await withAccount(core.db, [account.id], (tx) =>
    tx
      .select({
        key: accountData.key,
        valueChars: size,
        value: sql<unknown>`case when ${size} <= ${LIST_VALUE_CHARS} then ${accountData.value} end`,
        expiresAt: accountData.expiresAt,
        updatedAt: accountData.updatedAt,
      })
      .from(accountData)
      .where(and(...conds))
      .orderBy(asc(accountData.key))
      .limit(input.limit + 1),
  );
  const page = rows.slice(0, input.limit);
  const last = page[page.length - 1];
  return {
    items: page.map((r) => ({ ...r, valueChars: Number(r.valueChars), value: r.value ?? null })),
    nextCursor: rows.length > input.limit && last ? encodeCursor([last.key]) : null,
  };
}

/** Delete up to `batch` expired entries of every account (the privileged path; retention calls it). */
export async function sweepExpired(core: Core, batch = 1000): Promise<number> {
  const rows = await core.db.execute(
    sql`delete from account_data where ctid in (select ctid from account_data where expires_at <= now() limit ${batch}) returning 1`,
  );
  return rowsOf(rows).length;
}
