import { sql, type SQL } from 'drizzle-orm';
import type { Core } from '../core.js';
import type { Account } from '../accounts.js';
import type { Caller } from '../users.js';
import { hasPermission } from '../users.js';
import type { Grant } from '../access.js';
import { withAccount, type Tx } from '../../db/scope.js';
import type { Db } from '../../db/client.js';
import { rowsOf } from '../../db/client.js';
import { uuidList } from '../../db/arrays.js';
import { accountsInScope, type OperationsScope } from './visibility.js';

/**
 * How an operations read that spans accounts (check_health, list_failure_groups) reaches the
 * rows of the accounts it covers, decided once per call from accountsInScope:
 *
 *   - a Switch Account holder asking for scope 'all' sees every account of the tenant: the
 *     aggregate queries run on the service path (core.db outside withAccount, as retention does)
 *     filtered by tenant_id. Passing 10,000 ids into withAccount would make the row-level policy
 *     (`account_id = ANY(array)`) cost O(accounts) per row read.
 *   - everyone else reads inside withAccount with the ids of the accounts they may see (few),
 *     and every query also filters by those ids: row-level security is the floor under the filter.
 *
 * `lookups` are accounts whose rows may be read for names only (the acting account: a parent's
 * automation that ran in its children), never counted.
 */
export interface Coverage {
  /** the covered accounts, by slug */
  accounts: Account[];
  byId: Map<string, Account>;
  /** whole tenant on the service path */
  privileged: boolean;
  /** `alias.account_id` (or the column given) restricted to the covered accounts */
  where(alias: string, column?: string): SQL;
  /** run the reads of one call: one transaction under RLS, or the service path */
  read<T>(fn: (q: Reader) => Promise<T>): Promise<T>;
}

/** Raw grouped queries: each returns its rows (drivers differ in result shape). */
export type Reader = <R>(query: SQL) => Promise<R[]>;


export async function coverage(core: Core, caller: Caller, acting: Account, grant: Grant | null, scope: OperationsScope): Promise<Coverage> {
  const accounts = await accountsInScope(core, caller, acting, grant, scope);
  const byId = new Map(accounts.map((a) => [a.id, a]));
  const privileged = scope === 'all' && hasPermission(caller.user, 'switch_account');
  const ids = uuidList(accounts.map((a) => a.id));
  const where = (alias: string, column = 'account_id'): SQL =>
    privileged
      ? sql`${sql.raw(alias)}.tenant_id = ${core.tenantId}`
      : sql`${sql.raw(alias)}.${sql.raw(column)} = any(${ids}::uuid[])`;
  const run = (db: Db | Tx): Reader => async <R>(query: SQL) => rowsOf<R>(await db.execute(query));
  return {
    accounts,
    byId,
    privileged,
    where,
    read: (fn) => (privileged ? fn(run(core.db)) : withAccount(core.db, [...new Set([...byId.keys(), acting.id])], (tx) => fn(run(tx)))),
  };
}

/** Column helpers for raw results: both drivers, whatever type they hand back. */
export const num = (v: unknown): number => (v === null || v === undefined ? 0 : Number(v));
export const date = (v: unknown): Date | null => (v === null || v === undefined ? null : v instanceof Date ? v : new Date(v as string));
export const json = <T>(v: unknown): T => (typeof v === 'string' ? (JSON.parse(v) as T) : (v as T));
