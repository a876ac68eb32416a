import { sql } from 'drizzle-orm';
import { pgTable, uuid, text, timestamp, integer, boolean, index, uniqueIndex, check, primaryKey } from 'drizzle-orm/pg-core';
import { jsonValue } from './json.js';
import { accounts, tenants, users } from './tenancy.js';
import { connections } from './connections.js';

/**
 * An automation of one account: what runs when its trigger fires. Its definition (trigger,
 * routing, steps, retries) lives in immutable revisions; the row holds what changes without a new
 * revision: whether it is enabled, whether a disconnected connection paused it, and which
 * revision is current. An execution records the revision it runs (src/core/automations.ts).
 */
export const automations = pgTable('automations', {
  id: uuid('id').primaryKey().defaultRandom(),
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  accountId: uuid('account_id').notNull().references(() => accounts.id, { onDelete: 'cascade' }),
  name: text('name').notNull(),
  description: text('description').notNull().default(''),
  /** the person's switch: a disabled automation records its webhooks and runs nothing */
  enabled: boolean('enabled').notNull().default(true),
  status: text('status').$type<'active' | 'paused'>().notNull().default('active'),
  /** set when a disconnected connection paused it; reconnecting that connection resumes it */
  pausedByConnectionId: uuid('paused_by_connection_id').references(() => connections.id, { onDelete: 'set null' }),
  /** the current revision's number (automation_revisions.revision) */
  revision: integer('revision').notNull().default(1),
  /** the webhook URL's generation: rotate_webhook_url moves to the next (src/core/webhooks.ts) */
  webhookGeneration: integer('webhook_generation').notNull().default(1),
  /** SHA-256 of the current webhook token: how a delivery finds its automation (the token itself is never stored) */
  webhookTokenHash: text('webhook_token_hash'),
  /**
   * A deployed copy of a template (src/core/templates/): the template, the version it runs, and
   * the revision its last deploy wrote — a current revision other than that one was changed by
   * hand since (drift). Null for automations of their own (and copies unlinked from it).
   */
  templateId: uuid('template_id'),
  templateVersion: integer('template_version'),
  templateRevision: integer('template_revision'),
  createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
}, (t) => [
  index('automations_account').on(t.accountId, t.id),
  // one copy of a template per account; template_status and deploys find the copies by template
  uniqueIndex('automations_template_copy').on(t.templateId, t.accountId).where(sql`${t.templateId} is not null`),
  // names are unique in an account, case-insensitively; also the order of list_automations
  uniqueIndex('automations_account_name').on(t.accountId, sql`lower(${t.name})`),
  uniqueIndex('automations_webhook').on(t.webhookTokenHash),
  index('automations_paused_by').on(t.pausedByConnectionId).where(sql`${t.pausedByConnectionId} is not null`),
  check('automations_status_check', sql`${t.status} in ('active', 'paused')`),
]);

/**
 * One immutable revision of an automation's definition. Written on create and on every update,
 * never changed: a run in flight keeps the revision it started with, and templates deploy
 * revisions.
 */
export const automationRevisions = pgTable('automation_revisions', {
  automationId: uuid('automation_id').notNull().references(() => automations.id, { onDelete: 'cascade' }),
  revision: integer('revision').notNull(),
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  accountId: uuid('account_id').notNull().references(() => accounts.id, { onDelete: 'cascade' }),
  name: text('name').notNull(),
  definition: jsonValue('definition').notNull(),
  note: text('note').notNull().default(''),
  createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
}, (t) => [
  primaryKey({ columns: [t.automationId, t.revision] }),
  index('automation_revisions_account').on(t.accountId),
  check('automation_revisions_revision_check', sql`${t.revision} > 0`),
]);

/** Which connection an automation uses; the automation's account may differ (a shared connection). */
export const automationConnections = pgTable('automation_connections', {
  automationId: uuid('automation_id').notNull().references(() => automations.id, { onDelete: 'cascade' }),
  connectionId: uuid('connection_id').notNull().references(() => connections.id, { onDelete: 'cascade' }),
  accountId: uuid('account_id').notNull().references(() => accounts.id, { onDelete: 'cascade' }),
}, (t) => [
  primaryKey({ columns: [t.automationId, t.connectionId] }),
  index('automation_connections_connection').on(t.connectionId),
]);
