import { sql } from 'drizzle-orm';
import {
  pgTable, uuid, text, timestamp, integer, boolean, jsonb, doublePrecision, index, uniqueIndex, check,
} from 'drizzle-orm/pg-core';
import { accounts, tenants, users } from './tenancy.js';

/** signing_secret: not sent anywhere — the secret a provider signs its webhooks with, checked at ingress */
export const AUTH_KINDS = ['bearer', 'api_key', 'basic', 'signing_secret'] as const;
export type AuthKind = (typeof AUTH_KINDS)[number];
export const CONNECTION_STATUSES = ['active', 'expired', 'disconnected'] as const;
export type ConnectionStatus = (typeof CONNECTION_STATUSES)[number];

/** One credential field of an app: its name in `credentials`, and whether it is a secret. */
export interface AppField {
  name: string;
  label: string;
  secret: boolean;
  optional?: boolean;
}
/** One way an app authenticates: bearer token, API key in a named header, or basic auth. */
export interface AppAuth {
  kind: AuthKind;
  fields: AppField[];
  /** api_key: the header the key goes in (fixed by the app, or taken from a field named header_name) */
  header?: string;
}

/**
 * Apps an admin added to the catalog (built-in apps live in code: src/core/apps.ts). A tenant
 * table, not account data: every account of the tenant can connect to them.
 */
export const apps = pgTable('apps', {
  id: uuid('id').primaryKey().defaultRandom(),
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  slug: text('slug').notNull(),
  name: text('name').notNull(),
  description: text('description').notNull().default(''),
  auth: jsonb('auth').$type<AppAuth[]>().notNull(),
  baseUrl: text('base_url'),
  defaultPerMinute: integer('default_per_minute').notNull(),
  createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
}, (t) => [uniqueIndex('apps_tenant_slug').on(t.tenantId, t.slug)]);

/**
 * Envelope encryption: data keys, each wrapped (XChaCha20-Poly1305) by the master key whose
 * fingerprint it records. Exactly one key per tenant is `active` (new ciphertexts use it);
 * `retiring` keys are still read while a rotation moves their rows; `retired` keys encrypt nothing.
 */
export const dataKeys = pgTable('data_keys', {
  id: uuid('id').primaryKey().defaultRandom(),
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  wrappedKey: text('wrapped_key').notNull(),
  masterFingerprint: text('master_fingerprint').notNull(),
  status: text('status').$type<'active' | 'retiring' | 'retired'>().notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  retiredAt: timestamp('retired_at', { withTimezone: true }),
}, (t) => [
  uniqueIndex('data_keys_one_active').on(t.tenantId).where(sql`${t.status} = 'active'`),
  check('data_keys_status_check', sql`${t.status} in ('active', 'retiring', 'retired')`),
]);

/**
 * A named connection of an account to an app. `credentials` is a sealed box (src/core/keyring.ts)
 * bound to tenant, account and connection id; `masked` is the safe-to-show view, computed when
 * the credentials are written. Names are unique per (account, app), case-insensitively.
 */
export const connections = pgTable('connections', {
  id: uuid('id').primaryKey(),
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  accountId: uuid('account_id').notNull().references(() => accounts.id, { onDelete: 'cascade' }),
  app: text('app').notNull(),
  name: text('name').notNull(),
  authKind: text('auth_kind').$type<AuthKind>().notNull(),
  status: text('status').$type<ConnectionStatus>().notNull().default('active'),
  notes: text('notes').notNull().default(''),
  credentials: text('credentials').notNull(),
  dataKeyId: uuid('data_key_id').notNull().references(() => dataKeys.id),
  masked: jsonb('masked').$type<Record<string, string>>().notNull(),
  shared: boolean('shared').notNull().default(false),
  ratePerMinute: integer('rate_per_minute'),
  lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
  /** 401s from the app in a row (src/engine/auth-failures.ts); one success resets it, a few expire the connection */
  authFailures: integer('auth_failures').notNull().default(0),
  createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
}, (t) => [
  // also the order of list_connections: an account's connections by (app, lower(name))
  uniqueIndex('connections_account_app_name').on(t.accountId, t.app, sql`lower(${t.name})`),
  // children and every account read the shared connections of a parent / the system account
  index('connections_shared').on(t.accountId).where(sql`${t.shared}`),
  // rotation walks the rows not yet on the active key
  index('connections_data_key').on(t.tenantId, t.dataKeyId, t.id),
  check('connections_status_check', sql`${t.status} in ('active', 'expired', 'disconnected')`),
  check('connections_rate_check', sql`${t.ratePerMinute} is null or ${t.ratePerMinute} > 0`),
]);

/**
 * The token bucket of a connection's rate limit, kept in PostgreSQL so that it holds across
 * processes (src/engine/rate-limiter.ts). Capacity: one minute's worth of calls.
 */
export const rateLimitBuckets = pgTable('rate_limit_buckets', {
  connectionId: uuid('connection_id').primaryKey().references(() => connections.id, { onDelete: 'cascade' }),
  accountId: uuid('account_id').notNull().references(() => accounts.id, { onDelete: 'cascade' }),
  tokens: doublePrecision('tokens').notNull(),
  refilledAt: timestamp('refilled_at', { withTimezone: true }).notNull(),
});

export const HUMAN_REQUEST_KINDS = ['enter_credentials', 'view_credentials'] as const;
export type HumanRequestKind = (typeof HUMAN_REQUEST_KINDS)[number];

/**
 * A one-time, short-lived link to a page where a person enters credentials or re-verifies their
 * password to view them (MCP URL-mode elicitation). Only the link token's SHA-256 is stored.
 * Entered credentials wait here sealed (bound to the request id) until the waiting tool call
 * takes them. Read and written on the privileged path: the page has no account scope of its own.
 */
export const humanRequests = pgTable('human_requests', {
  id: uuid('id').primaryKey(),
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  accountId: uuid('account_id').notNull().references(() => accounts.id, { onDelete: 'cascade' }),
  userId: uuid('user_id').notNull().references(() => users.id, { onDelete: 'cascade' }),
  kind: text('kind').$type<HumanRequestKind>().notNull(),
  tokenHash: text('token_hash').notNull().unique(),
  /** what the page needs: app and auth kind for entering; the connection for viewing */
  subject: jsonb('subject').$type<{ app: string; authKind: AuthKind | null; connectionName: string | null; connectionId: string | null }>().notNull(),
  status: text('status').$type<'pending' | 'submitted' | 'done' | 'cancelled'>().notNull().default('pending'),
  sealed: text('sealed'),
  expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
}, (t) => [check('human_requests_status_check', sql`${t.status} in ('pending', 'submitted', 'done', 'cancelled')`)]);

/** Failed password re-verifications, for the limit of 5 per 15 minutes per user. */
export const passwordFailures = pgTable('password_failures', {
  id: uuid('id').primaryKey().defaultRandom(),
  userId: uuid('user_id').notNull().references(() => users.id, { onDelete: 'cascade' }),
  at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
}, (t) => [index('password_failures_user_at').on(t.userId, t.at)]);
