import { sql } from 'drizzle-orm';
import {
  pgTable, uuid, text, timestamp, index, uniqueIndex, primaryKey, check, type AnyPgColumn,
} from 'drizzle-orm/pg-core';

export const ACCOUNT_KINDS = ['customer', 'system', 'sandbox', 'templates'] as const;
export type AccountKind = (typeof ACCOUNT_KINDS)[number];
export const ACCOUNT_STATUSES = ['active', 'suspended'] as const;
export type AccountStatus = (typeof ACCOUNT_STATUSES)[number];
export const ROLES = ['viewer', 'member', 'admin', 'owner'] as const;
export type Role = (typeof ROLES)[number];
export const PERMISSIONS = ['switch_account', 'admin', 'deploy_automations'] as const;
export type Permission = (typeof PERMISSIONS)[number];

/**
 * A tenant is a whole database: today only the main tenant lives here. A dedicated tenant
 * (separate database) gets its own row with `kind = 'dedicated'` and its own connection.
 */
export const tenants = pgTable('tenants', {
  id: uuid('id').primaryKey().defaultRandom(),
  slug: text('slug').notNull().unique(),
  name: text('name').notNull(),
  kind: text('kind').$type<'main' | 'dedicated'>().notNull().default('main'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});

export const accounts = pgTable('accounts', {
  id: uuid('id').primaryKey().defaultRandom(),
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  slug: text('slug').notNull(),
  name: text('name').notNull(),
  kind: text('kind').$type<AccountKind>().notNull().default('customer'),
  parentAccountId: uuid('parent_account_id').references((): AnyPgColumn => accounts.id),
  routingKey: text('routing_key'),
  status: text('status').$type<AccountStatus>().notNull().default('active'),
  /** why and by whom the status last changed (set_account_status) */
  statusReason: text('status_reason'),
  statusChangedAt: timestamp('status_changed_at', { withTimezone: true }),
  statusChangedBy: uuid('status_changed_by'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
}, (t) => [
  uniqueIndex('accounts_tenant_slug').on(t.tenantId, t.slug),
  // name lookups ("Acme Fitness") and the keyset order of list_accounts: (lower(name), id)
  index('accounts_tenant_name').on(t.tenantId, sql`lower(${t.name})`, t.id),
  // one routing key per parent: how an event finds its location
  uniqueIndex('accounts_parent_routing_key').on(t.parentAccountId, t.routingKey),
  // exactly one system setup account per tenant
  uniqueIndex('accounts_one_system_per_tenant').on(t.tenantId).where(sql`${t.kind} = 'system'`),
  // exactly one templates account per tenant (src/core/templates/)
  uniqueIndex('accounts_one_templates_per_tenant').on(t.tenantId).where(sql`${t.kind} = 'templates'`),
  check('accounts_kind_check', sql`${t.kind} in ('customer', 'system', 'sandbox', 'templates')`),
  check('accounts_status_check', sql`${t.status} in ('active', 'suspended')`),
  check('accounts_not_own_parent', sql`${t.parentAccountId} is distinct from ${t.id}`),
]);

export const users = pgTable('users', {
  id: uuid('id').primaryKey().defaultRandom(),
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  email: text('email').notNull(),
  name: text('name').notNull(),
  /** argon2id (libsodium crypto_pwhash_str); null when the user signs in with tokens only */
  passwordHash: text('password_hash'),
  homeAccountId: uuid('home_account_id').notNull().references(() => accounts.id),
  permissions: text('permissions').array().$type<Permission[]>().notNull().default(sql`'{}'::text[]`),
  status: text('status').$type<'active' | 'disabled'>().notNull().default('active'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
}, (t) => [
  uniqueIndex('users_tenant_email').on(t.tenantId, sql`lower(${t.email})`),
]);

export const memberships = pgTable('memberships', {
  userId: uuid('user_id').notNull().references(() => users.id, { onDelete: 'cascade' }),
  accountId: uuid('account_id').notNull().references(() => accounts.id, { onDelete: 'cascade' }),
  role: text('role').$type<Role>().notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
}, (t) => [
  primaryKey({ columns: [t.userId, t.accountId] }),
  index('memberships_account').on(t.accountId),
  check('memberships_role_check', sql`${t.role} in ('viewer', 'member', 'admin', 'owner')`),
]);

/** API tokens are stored as SHA-256 hashes only: a token is 256 random bits, so a slow hash buys nothing. */
export const apiTokens = pgTable('api_tokens', {
  id: uuid('id').primaryKey().defaultRandom(),
  userId: uuid('user_id').notNull().references(() => users.id, { onDelete: 'cascade' }),
  name: text('name').notNull(),
  tokenHash: text('token_hash').notNull().unique(),
  /** the first characters of the token, safe to show ("sbt_Ab12…") */
  prefix: text('prefix').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
  expiresAt: timestamp('expires_at', { withTimezone: true }),
  revokedAt: timestamp('revoked_at', { withTimezone: true }),
}, (t) => [index('api_tokens_user').on(t.userId)]);

/** A Switch Account session: who entered which account, why, until when. */
export const accountSwitches = pgTable('account_switches', {
  id: uuid('id').primaryKey().defaultRandom(),
  userId: uuid('user_id').notNull().references(() => users.id, { onDelete: 'cascade' }),
  homeAccountId: uuid('home_account_id').notNull().references(() => accounts.id),
  accountId: uuid('account_id').notNull().references(() => accounts.id, { onDelete: 'cascade' }),
  sessionId: text('session_id').notNull(),
  reason: text('reason').notNull(),
  startedAt: timestamp('started_at', { withTimezone: true }).notNull().defaultNow(),
  expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
  endedAt: timestamp('ended_at', { withTimezone: true }),
  /** who ended it from outside the session (end_switch), and why; null when it ended by itself or was returned from */
  endedBy: uuid('ended_by').references(() => users.id, { onDelete: 'set null' }),
  endReason: text('end_reason'),
}, (t) => [
  index('account_switches_account').on(t.accountId, t.startedAt),
  // the tenant-wide review (list_switches scope "tenant"), newest first
  index('account_switches_started').on(t.startedAt, t.id),
  index('account_switches_user').on(t.userId, t.startedAt),
  // every call of a switched session reads its open switch
  index('account_switches_open').on(t.sessionId).where(sql`${t.endedAt} is null`),
]);
