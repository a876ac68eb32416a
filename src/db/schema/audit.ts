import { sql } from 'drizzle-orm';
import { pgTable, bigserial, uuid, text, timestamp, jsonb, integer, index, check } from 'drizzle-orm/pg-core';
import { accounts, tenants, users } from './tenancy.js';

export const AUDIT_OUTCOMES = ['ok', 'denied', 'error'] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

/**
 * One row per tool call, allowed or not; arguments are stored with secrets redacted.
 * `account_id` is the account the entry belongs to: the acting account, except for a call denied
 * because the caller has no access at all to its target — that entry stays with the caller's home
 * account (the target's admins must not learn who probed them) and names the target in
 * `target_account_id`, which only tenant admins read.
 */
export const auditLog = pgTable('audit_log', {
  id: bigserial('id', { mode: 'number' }).primaryKey(),
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
  actorUserId: uuid('actor_user_id').references(() => users.id, { onDelete: 'set null' }),
  actorEmail: text('actor_email'),
  homeAccountId: uuid('home_account_id').references(() => accounts.id, { onDelete: 'set null' }),
  accountId: uuid('account_id').references(() => accounts.id, { onDelete: 'set null' }),
  targetAccountId: uuid('target_account_id').references(() => accounts.id, { onDelete: 'set null' }),
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
  index('audit_log_target_at').on(t.targetAccountId, t.id).where(sql`${t.targetAccountId} is not null`),
  // the tenant's whole log (audit_log scope "tenant"), newest first
  index('audit_log_tenant_at').on(t.tenantId, t.id),
  // the calls made under each switch (list_switches)
  index('audit_log_switch').on(t.switchId).where(sql`${t.switchId} is not null`),
  check('audit_log_outcome_check', sql`${t.outcome} in ('ok', 'denied', 'error')`),
]);
