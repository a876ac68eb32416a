import { sql } from 'drizzle-orm';
import { pgTable, uuid, text, timestamp, integer, boolean, index, uniqueIndex, check, primaryKey } from 'drizzle-orm/pg-core';
import { jsonValue } from './json.js';
import { accounts, tenants, users } from './tenancy.js';
import { automations } from './automations.js';

/**
 * Templates (src/core/templates/): one canonical automation kept in the tenant's templates
 * account, in immutable versions, deployed as copies (automations carrying template_id) into
 * customer accounts by deployments that the engine's workers drive.
 */
export const templates = pgTable('templates', {
  id: uuid('id').primaryKey().defaultRandom(),
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  /** the tenant's templates account */
  accountId: uuid('account_id').notNull().references(() => accounts.id, { onDelete: 'cascade' }),
  name: text('name').notNull(),
  description: text('description').notNull().default(''),
  /** the newest version's number (template_versions.version) */
  latestVersion: integer('latest_version').notNull().default(1),
  createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
}, (t) => [
  uniqueIndex('templates_account_name').on(t.accountId, sql`lower(${t.name})`),
]);

/** One immutable version of a template: its definition (connections named by app), variables and classification. */
export const templateVersions = pgTable('template_versions', {
  templateId: uuid('template_id').notNull().references(() => templates.id, { onDelete: 'cascade' }),
  version: integer('version').notNull(),
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  accountId: uuid('account_id').notNull().references(() => accounts.id, { onDelete: 'cascade' }),
  definition: jsonValue('definition').notNull(),
  variables: jsonValue('variables').notNull(),
  /** the apps its steps and trigger need a connection of, sorted */
  apps: text('apps').array().notNull(),
  /** against the version before: initial, compatible or breaking */
  classification: text('classification').$type<'initial' | 'compatible' | 'breaking'>().notNull(),
  reasons: text('reasons').array().notNull().default(sql`'{}'::text[]`),
  note: text('note').notNull().default(''),
  createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
}, (t) => [
  primaryKey({ columns: [t.templateId, t.version] }),
  index('template_versions_account').on(t.accountId),
  check('template_versions_classification_check', sql`${t.classification} in ('initial', 'compatible', 'breaking')`),
]);

export const DEPLOYMENT_STATUSES = ['running', 'baking', 'completed', 'halted', 'rolled_back', 'cancelled', 'failed'] as const;
export type DeploymentStatus = (typeof DEPLOYMENT_STATUSES)[number];
/** a deployment in these states holds its template: a second one is refused */
export const ACTIVE_DEPLOYMENT = ['running', 'baking'] as const;

/**
 * A deployment: the record the workers drive (src/core/templates/runner.ts), so it survives the
 * client going away and the process being killed. Kept in the templates account.
 */
export const deployments = pgTable('deployments', {
  id: uuid('id').primaryKey().defaultRandom(),
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  accountId: uuid('account_id').notNull().references(() => accounts.id, { onDelete: 'cascade' }),
  templateId: uuid('template_id').notNull().references(() => templates.id, { onDelete: 'cascade' }),
  kind: text('kind').$type<'deploy' | 'rollback'>().notNull(),
  /** the version deployed (a rollback to a version: that one; a rollback of a deployment: null) */
  version: integer('version'),
  /** the deployment a rollback undoes, or the one an automatic rollback belongs to */
  rollbackOf: uuid('rollback_of'),
  status: text('status').$type<DeploymentStatus>().notNull().default('running'),
  planHash: text('plan_hash').notNull(),
  /** waves, bake, min_executions, max_failure_rate_increase, auto_rollback */
  options: jsonValue('options').notNull(),
  /** per wave: its targets, what was compared, the figures and the decision */
  waves: jsonValue('waves').notNull(),
  currentWave: integer('current_wave').notNull().default(0),
  /** the current wave's bake ends then (status baking) */
  bakeUntil: timestamp('bake_until', { withTimezone: true }),
  /** the worker driving it and until when (lapsed: any worker takes it over) */
  worker: text('worker'),
  leaseUntil: timestamp('lease_until', { withTimezone: true }),
  cancelRequested: boolean('cancel_requested').notNull().default(false),
  message: text('message'),
  createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  finishedAt: timestamp('finished_at', { withTimezone: true }),
}, (t) => [
  index('deployments_template').on(t.templateId, t.createdAt.desc()),
  index('deployments_account').on(t.accountId, t.createdAt.desc()),
  // one deployment of a template at a time
  uniqueIndex('deployments_one_active').on(t.templateId).where(sql`${t.status} in ('running', 'baking')`),
  index('deployments_active').on(t.leaseUntil).where(sql`${t.status} in ('running', 'baking')`),
  check('deployments_status_check', sql`${t.status} in ('running', 'baking', 'completed', 'halted', 'rolled_back', 'cancelled', 'failed')`),
  check('deployments_kind_check', sql`${t.kind} in ('deploy', 'rollback')`),
]);

export const TARGET_ACTIONS = ['create', 'update', 'restore', 'disable'] as const;
export type TargetAction = (typeof TARGET_ACTIONS)[number];
export const TARGET_STATUSES = ['pending', 'done', 'failed', 'cancelled', 'rolled_back'] as const;
export type TargetStatus = (typeof TARGET_STATUSES)[number];

/**
 * One account of a deployment: what the plan decided for it and what happened. `account_id` is
 * the target account (its admins may read the row); the apply writes the copy and this row in
 * one transaction, so a target is done exactly once.
 */
export const deploymentTargets = pgTable('deployment_targets', {
  deploymentId: uuid('deployment_id').notNull().references(() => deployments.id, { onDelete: 'cascade' }),
  accountId: uuid('account_id').notNull().references(() => accounts.id, { onDelete: 'cascade' }),
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  /** its place in the rollout (waves take targets in this order) */
  seq: integer('seq').notNull(),
  wave: integer('wave').notNull().default(0),
  action: text('action').$type<TargetAction>().notNull(),
  status: text('status').$type<TargetStatus>().notNull().default('pending'),
  /** the copy (null until a create is applied) */
  automationId: uuid('automation_id').references(() => automations.id, { onDelete: 'set null' }),
  /** what the plan saw: the copy's revision (an apply that finds another refuses: it changed since) */
  expectedRevision: integer('expected_revision'),
  fromVersion: integer('from_version'),
  toVersion: integer('to_version'),
  /** the copy's revision before the apply (what a rollback restores) and the one it wrote */
  beforeRevision: integer('before_revision'),
  afterRevision: integer('after_revision'),
  /** restore: the revision whose definition is written again */
  restoreRevision: integer('restore_revision'),
  /** the bound connection ids by app, and the variable values */
  bindings: jsonValue('bindings').notNull(),
  values: jsonValue('values').notNull(),
  reason: text('reason'),
  appliedAt: timestamp('applied_at', { withTimezone: true }),
}, (t) => [
  primaryKey({ columns: [t.deploymentId, t.accountId] }),
  index('deployment_targets_order').on(t.deploymentId, t.seq),
  index('deployment_targets_account').on(t.accountId),
  check('deployment_targets_action_check', sql`${t.action} in ('create', 'update', 'restore', 'disable')`),
  check('deployment_targets_status_check', sql`${t.status} in ('pending', 'done', 'failed', 'cancelled', 'rolled_back')`),
]);
