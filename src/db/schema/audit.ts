import { sql } from 'drizzle-orm';
import { pgTable, bigserial, uuid, text, timestamp, jsonb, integer, index, check } from 'drizzle-orm/pg-core';
import { accounts, tenants, users } from './tenancy.js';

export const AUDIT_OUTCOMES = ['ok', 'denied', 'error'] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

/**
 * One row per tool call, allowed or not. `account_id` is the acting account (null when the call
 * never resolved one, e.g. an unknown account); arguments are stored with secrets redacted.
 */
export const auditLog = pgTable('audit_log', {
  id: bigserial('id', { mode: 'number' }).primaryKey(),
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
  actorUserId: uuid('actor_user_id').references(() => users.id, { onDelete: 'set null' }),
  actorEmail: text('actor_email'),
  homeAccountId: uuid('home_account_id').references(() => accounts.id, { onDelete: 'set null' }),
  accountId: uuid('account_id').references(() => accounts.id, { onDelete: 'set null' }),
  switchId: uuid('switch_id'),
  sessionId: text('session_id'),
  tool: text('tool').notNull(),
  arguments: jsonb('arguments').notNull().default(sql`'{}'::jsonb`),
  outcome: text('outcome').$type<AuditOutcome>().notNull(),
  message: text('message'),
  durationMs: integer('duration_ms'),
}, (t) => [
  index('audit_log_account_at').on(t.accountId, t.id),
  index('audit_log_actor_at').on(t.actorUserId, t.id),
  check('audit_log_outcome_check', sql`${t.outcome} in ('ok', 'denied', 'error')`),
]);
