import { sql } from 'drizzle-orm';
import { pgTable, uuid, text, timestamp, index, primaryKey } from 'drizzle-orm/pg-core';
import { jsonValue } from './json.js';
import { accounts, tenants } from './tenancy.js';

/**
 * An account's key-value data: what its automations remember between runs (de-duplication keys,
 * id mappings, cursors, counters), written by the `store` step and the account_data tool
 * (src/core/account-data.ts). A linked child may use its parent's with scope "parent". An entry
 * past `expires_at` is gone for every read, and swept in batches.
 */
export const accountData = pgTable('account_data', {
  accountId: uuid('account_id').notNull().references(() => accounts.id, { onDelete: 'cascade' }),
  key: text('key').notNull(),
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  value: jsonValue('value').notNull(),
  expiresAt: timestamp('expires_at', { withTimezone: true }),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
}, (t) => [
  // also the order of list: an account's keys by key (prefix search is a range on it)
  primaryKey({ columns: [t.accountId, t.key] }),
  index('account_data_expiry').on(t.expiresAt).where(sql`${t.expiresAt} is not null`),
]);
