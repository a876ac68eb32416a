import { sql } from 'drizzle-orm';
import { pgTable, uuid, text, timestamp, integer, doublePrecision, index, primaryKey, check } from 'drizzle-orm/pg-core';
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
 * check_health's roll-up of the hourly aggregates (src/core/operations/health-rollup.ts): for one
 * tenant and window size, as of one hour, per account and automation the sums of the buckets
 * that can no longer change (before the live edge, the hour before as_of), so a fleet-wide read
 * adds two live buckets per automation to one stored row instead of summing up to 840 hourly
 * rows. A row of health_rollups says which as_of the rows are for; it is set to the epoch (and
 * the rows go unread) when a bucket behind the live edge is written (drizzle/0022).
 */
export const healthRollups = pgTable('health_rollups', {
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  windowHours: integer('window_hours').notNull(),
  asOf: timestamp('as_of', { withTimezone: true }).notNull(),
  computedAt: timestamp('computed_at', { withTimezone: true }).notNull().defaultNow(),
  /** the last time a fleet-wide read computed or used it (at most one write an hour): the worker keeps it current a day after */
  requestedAt: timestamp('requested_at', { withTimezone: true }).notNull().defaultNow(),
}, (t) => [primaryKey({ columns: [t.tenantId, t.windowHours] })]);

export const healthRollupRows = pgTable('health_rollup_rows', {
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  windowHours: integer('window_hours').notNull(),
  accountId: uuid('account_id').notNull().references(() => accounts.id, { onDelete: 'cascade' }),
  automationId: uuid('automation_id').notNull().references(() => automations.id, { onDelete: 'cascade' }),
  asOf: timestamp('as_of', { withTimezone: true }).notNull(),
  /** runs in the window (before the live edge) and in the window before */
  succeeded: integer('succeeded').notNull().default(0),
  failed: integer('failed').notNull().default(0),
  filtered: integer('filtered').notNull().default(0),
  cancelled: integer('cancelled').notNull().default(0),
  throttled: integer('throttled').notNull().default(0),
  previousSucceeded: integer('previous_succeeded').notNull().default(0),
  previousFailed: integer('previous_failed').notNull().default(0),
  lastSuccessAt: timestamp('last_success_at', { withTimezone: true }),
  lastFailureAt: timestamp('last_failure_at', { withTimezone: true }),
  /** deliveries in the window (before the live edge), in the window before, and the silence baseline */
  received: integer('received').notNull().default(0),
  accepted: integer('accepted').notNull().default(0),
  routed: integer('routed').notNull().default(0),
  unrouted: integer('unrouted').notNull().default(0),
  duplicate: integer('duplicate').notNull().default(0),
  rejected: integer('rejected').notNull().default(0),
  recorded: integer('recorded').notNull().default(0),
  previousReceived: integer('previous_received').notNull().default(0),
  /** mean deliveries per window over the SILENCE_WINDOWS before, and how many had SILENCE_MIN_PER_WINDOW */
  baseline: doublePrecision('baseline').notNull().default(0),
  baselineWindows: integer('baseline_windows').notNull().default(0),
}, (t) => [
  primaryKey({ columns: [t.tenantId, t.windowHours, t.accountId, t.automationId] }),
  // deleting an account or an automation cascades here
  index('health_rollup_rows_account').on(t.accountId),
  index('health_rollup_rows_automation').on(t.automationId),
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
