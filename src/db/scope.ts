import { sql } from 'drizzle-orm';
import { PgTransaction } from 'drizzle-orm/pg-core';
import type { Db } from './client.js';
import { uuidList } from './arrays.js';

export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];


/**
 * Run `fn` in a transaction that may only see and write rows of `accountIds`.
 *
 * It sets the transaction-local `app.account_ids` and the role `switchboard_app`, to which the
 * row-level security policies of every account-scoped table apply (drizzle/0001, 0003). The core
 * still filters by account; this is the floor under that filter. `sharedFrom` names accounts
 * whose *shared* connections the scope may also read (a child's parent, the system setup
 * account). Inside `fn`, use only `tx`: on PGlite the transaction holds the database exclusively.
 *
 * Called inside another transaction it runs in a savepoint, and restores role and settings when
 * `fn` returns (a released savepoint keeps SET LOCAL values; a rolled-back one undoes them).
 */
export async function withAccount<T>(
  db: Db | Tx,
  accountIds: readonly string[],
  fn: (tx: Tx) => Promise<T>,
  sharedFrom: readonly string[] = [],
): Promise<T> {
  const nested = db instanceof PgTransaction;
  return db.transaction(async (tx) => {
    await tx.execute(
      sql`select set_config('app.account_ids', ${uuidList(accountIds)}, true), set_config('app.shared_account_ids', ${uuidList(sharedFrom)}, true), set_config('role', 'switchboard_app', true)`,
    );
    const result = await fn(tx);
    // a top-level transaction's SET LOCAL ends with it; a savepoint's must be undone by hand
    if (nested) await tx.execute(sql`select set_config('role', 'none', true), set_config('app.account_ids', '', true), set_config('app.shared_account_ids', '', true)`);
    return result;
  });
}
