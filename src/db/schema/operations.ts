import { sql } from 'drizzle-orm';
import { pgTable, uuid, text, timestamp, integer, index, primaryKey, check } from 'drizzle-orm/pg-core';
import { accounts, tenants } from './tenancy.js';
import { automations } from './automations.js';

/**
 * What operating the fleet reads (check_health, debug_webhook, list_failure_groups): aggregates
 * kept by database triggers in the same transaction as the write they count (drizzle/0018), so
 * health never loads executions and can never disagree with what committed.
 */

/** Executions that ended, per account (where they ran), automation and hour of their end. */
export const executionStats = pgTable('execution_stats', {
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  accountId: uuid('account_id').notNull().references(() => accounts.id, { onDelete: 'cascade' }),
  automationId: uuid('automation_id').notNull().references(() => automations.id, { onDelete: 'cascade' }),
  hour: timestamp('hour', { withTimezone: true }).notNull(),
  succeeded: integer('succeeded').notNull().default(0),
  failed: integer('failed').notNull().default(0),
  filtered: integer('filtered').notNull().default(0),
  cancelled: integer('cancelled').notNull().default(0),
  /** step attempts held back by a rate limit: the connection's budget (rate_limited) or the app's 429 */
  throttled: integer('throttled').notNull().default(0),
  lastSuccessAt: timestamp('last_success_at', { withTimezone: true }),
  lastFailureAt: timestamp('last_failure_at', { withTimezone: true }),
}, (t) => [
  primaryKey({ columns: [t.accountId, t.hour, t.automationId] }),
  index('execution_stats_automation').on(t.automationId, t.hour),
  // retention prunes by age
  index('execution_stats_hour').on(t.hour),
]);

/** Webhook deliveries received, per account (the automation's), automation and hour, by status. */
export const deliveryStats = pgTable('delivery_stats', {
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  accountId: uuid('account_id').notNull().references(() => accounts.id, { onDelete: 'cascade' }),
  automationId: uuid('automation_id').notNull().references(() => automations.id, { onDelete: 'cascade' }),
  hour: timestamp('hour', { withTimezone: true }).notNull(),
  received: integer('received').notNull().default(0),
  accepted: integer('accepted').notNull().default(0),
  routed: integer('routed').notNull().default(0),
  unrouted: integer('unrouted').notNull().default(0),
  duplicate: integer('duplicate').notNull().default(0),
  rejected: integer('rejected').notNull().default(0),
  recorded: integer('recorded').notNull().default(0),
}, (t) => [
  primaryKey({ columns: [t.accountId, t.hour, t.automationId] }),
  index('delivery_stats_automation').on(t.automationId, t.hour),
  index('delivery_stats_hour').on(t.hour),
]);

/**
 * One failure fingerprint — target (the app, or the host called without a connection), step,
 * error code, upstream status — as seen in one automation of one account. A group across
 * accounts is every row with the same fingerprint; list_failure_groups adds up those the caller
 * may see. A row is open from its first failure and resolved when that automation next succeeds
 * in that account; failing again opens it again (first_seen starts over, total keeps counting).
 */
export const failureGroups = pgTable('failure_groups', {
  fingerprint: text('fingerprint').notNull(),
  accountId: uuid('account_id').notNull().references(() => accounts.id, { onDelete: 'cascade' }),
  automationId: uuid('automation_id').notNull().references(() => automations.id, { onDelete: 'cascade' }),
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  target: text('target').notNull(),
  stepId: text('step_id').notNull(),
  errorCode: text('error_code').notNull(),
  upstreamStatus: integer('upstream_status'),
  status: text('status').$type<'open' | 'resolved'>().notNull().default('open'),
  /** failures since it (last) opened, and ever */
  count: integer('count').notNull().default(0),
  total: integer('total').notNull().default(0),
  firstSeen: timestamp('first_seen', { withTimezone: true }).notNull(),
  lastSeen: timestamp('last_seen', { withTimezone: true }).notNull(),
  resolvedAt: timestamp('resolved_at', { withTimezone: true }),
  lastExecutionId: uuid('last_execution_id'),
  lastMessage: text('last_message'),
}, (t) => [
  primaryKey({ columns: [t.fingerprint, t.accountId, t.automationId] }),
  index('failure_groups_account').on(t.accountId, t.lastSeen.desc()),
  index('failure_groups_open').on(t.accountId, t.automationId).where(sql`${t.status} = 'open'`),
  index('failure_groups_last_seen').on(t.lastSeen.desc()),
  // the same outage in other accounts: debug_webhook counts open rows of one target, code and status tenant-wide
  index('failure_groups_outage').on(t.tenantId, t.target, t.errorCode, t.upstreamStatus).where(sql`${t.status} = 'open'`),
  check('failure_groups_status_check', sql`${t.status} in ('open', 'resolved')`),
]);
