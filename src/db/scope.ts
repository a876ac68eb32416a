import { sql } from 'drizzle-orm';
import type { Db } from './client.js';

export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];

/**
 * Run `fn` in a transaction that may only see and write rows of `accountIds`.
 *
 * It sets the transaction-local `app.account_ids` and the role `switchboard_app`, to which the
 * row-level security policies of every account-scoped table apply (drizzle/0001). The core still
 * filters by account; this is the floor under that filter. Inside `fn`, use only `tx`: on PGlite
 * the transaction holds the database exclusively.
 *
 * Called inside another transaction it runs in a savepoint, and restores role and setting when
 * `fn` returns (a released savepoint keeps SET LOCAL values; a rolled-back one undoes them).
 */
export async function withAccount<T>(db: Db | Tx, accountIds: readonly string[], fn: (tx: Tx) => Promise<T>): Promise<T> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`select set_config('app.account_ids', ${`{${accountIds.join(',')}}`}, true), set_config('role', 'switchboard_app', true)`);
    const result = await fn(tx);
    await tx.execute(sql`select set_config('role', 'none', true), set_config('app.account_ids', '', true)`);
    return result;
  });
}
