import { sql } from 'drizzle-orm';
import { pgTable, uuid, text, timestamp, integer, jsonb, index, check, primaryKey } from 'drizzle-orm/pg-core';
import { jsonValue } from './json.js';
import { accounts, tenants } from './tenancy.js';
import { automations } from './automations.js';

export const EXECUTION_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'filtered', 'cancelled'] as const;
export type ExecutionStatus = (typeof EXECUTION_STATUSES)[number];
export const STEP_STATUSES = ['succeeded', 'failed', 'filtered', 'retrying'] as const;
export type StepStatus = (typeof STEP_STATUSES)[number];

/**
 * One run of an automation revision, in the account it runs in. The table is both the queue
 * (status queued + run_at, claimed with FOR UPDATE SKIP LOCKED; running + lease_until, taken
 * over when a worker's lease lapses) and the history that debugging and health read
 * (src/engine/worker.ts). `state` holds the outputs of the steps done so far, so a run that
 * moves to another worker resumes at `next_step` without repeating them.
 */
export const executions = pgTable('executions', {
  id: uuid('id').primaryKey().defaultRandom(),
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  accountId: uuid('account_id').notNull().references(() => accounts.id, { onDelete: 'cascade' }),
  automationId: uuid('automation_id').notNull().references(() => automations.id, { onDelete: 'cascade' }),
  /** the automation's account when it is not the one the run lives in: a parent's automation routed to a child */
  automationAccountId: uuid('automation_account_id').references(() => accounts.id, { onDelete: 'cascade' }),
  /**
   * the account that owns the automation (automation_account_id for a routed run, else account_id),
   * a plain column for the indexes that find an account's runs wherever they ran: under row-level
   * security a query's coalesce(…) is not leakproof, so it cannot use an index on the expression
   */
  automationOwnerId: uuid('automation_owner_id').generatedAlwaysAs(sql`coalesce(automation_account_id, account_id)`),
  revision: integer('revision').notNull(),
  /** what started it: a test run (run_automation), a webhook delivery, or a replay of one (replay_webhook) */
  source: text('source').$type<'test' | 'webhook' | 'replay'>().notNull(),
  /** the delivery it runs (for a replay: the original delivery it re-runs) */
  deliveryId: uuid('delivery_id'),
  /** a replay: whether its http steps send the original run's Idempotency-Keys (the run they reuse) */
  idempotencyOf: uuid('idempotency_of'),
  status: text('status').$type<ExecutionStatus>().notNull().default('queued'),
  trigger: jsonValue('trigger').notNull(),
  state: jsonValue<Record<string, unknown>>('state').notNull().default({}),
  nextStep: integer('next_step').notNull().default(0),
  /** attempts of the current step so far, rate-limit waits included (each has a step record) */
  attempt: integer('attempt').notNull().default(0),
  /** of those, waits for a rate limit: they do not use up the automation's retries */
  waits: integer('waits').notNull().default(0),
  runAt: timestamp('run_at', { withTimezone: true }).notNull().defaultNow(),
  leaseUntil: timestamp('lease_until', { withTimezone: true }),
  worker: text('worker'),
  errorCode: text('error_code'),
  errorMessage: text('error_message'),
  failedStep: text('failed_step'),
  /** of a failed run: what the failing step called (the connection's app, else the URL's host, else the step kind) and the upstream HTTP status */
  errorTarget: text('error_target'),
  errorStatus: integer('error_status'),
  createdBy: uuid('created_by'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  startedAt: timestamp('started_at', { withTimezone: true }),
  finishedAt: timestamp('finished_at', { withTimezone: true }),
}, (t) => [
  // the queue, per account (the fair claim walks the accounts with work, then each one's oldest)
  index('executions_queued').on(t.accountId, t.runAt).where(sql`${t.status} = 'queued'`),
  // an account's runs in flight: its concurrency cap
  index('executions_running').on(t.accountId).where(sql`${t.status} = 'running'`),
  // retention prunes by age
  index('executions_created').on(t.createdAt),
  // lapsed leases
  index('executions_leased').on(t.leaseUntil).where(sql`${t.status} = 'running'`),
  // history: an account's and an automation's runs, newest first
  index('executions_account').on(t.accountId, t.createdAt.desc(), t.id.desc()),
  index('executions_automation').on(t.automationId, t.createdAt.desc(), t.id.desc()),
  // replays of a delivery (the original run is the delivery's execution_id)
  index('executions_replays').on(t.deliveryId).where(sql`${t.source} = 'replay'`),
  // failed webhook runs by the account that owns the automation (the parent, for routed runs), newest
  // first: debug_webhook {status: failed} walks it in order, replay_webhook's failure filters probe it
  index('executions_failed_deliveries').on(t.automationOwnerId, t.createdAt.desc(), t.deliveryId.desc()).where(sql`${t.status} = 'failed' and ${t.deliveryId} is not null`),
  check('executions_status_check', sql`${t.status} in ('queued', 'running', 'succeeded', 'failed', 'filtered', 'cancelled')`),
]);

/** One attempt of one step of an execution: what went in, what came out, and how it ended. */
export const executionSteps = pgTable('execution_steps', {
  executionId: uuid('execution_id').notNull().references(() => executions.id, { onDelete: 'cascade' }),
  stepIndex: integer('step_index').notNull(),
  attempt: integer('attempt').notNull(),
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  accountId: uuid('account_id').notNull().references(() => accounts.id, { onDelete: 'cascade' }),
  stepId: text('step_id').notNull(),
  kind: text('kind').notNull(),
  status: text('status').$type<StepStatus>().notNull(),
  input: jsonValue('input'),
  output: jsonValue('output'),
  errorCode: text('error_code'),
  errorMessage: text('error_message'),
  startedAt: timestamp('started_at', { withTimezone: true }).notNull(),
  durationMs: integer('duration_ms').notNull(),
}, (t) => [
  primaryKey({ columns: [t.executionId, t.stepIndex, t.attempt] }),
  index('execution_steps_account').on(t.accountId),
  check('execution_steps_status_check', sql`${t.status} in ('succeeded', 'failed', 'filtered', 'retrying')`),
]);

export const DELIVERY_STATUSES = ['accepted', 'routed', 'unrouted', 'duplicate', 'rejected', 'recorded'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

/**
 * One request to an automation's webhook URL, recorded before it is answered (with the run it
 * started, in the same transaction): accepted (a run was queued), routed (a run was queued in the
 * linked child whose routing key matched), unrouted (no child matched: not run), duplicate (its
 * de-duplication key was seen within 24 h: not run again), rejected (bad signature or malformed
 * body: `code` and `reason` say which), recorded (kept, not run: the automation is disabled or
 * paused, or the account suspended). Secret headers are redacted; the body is kept up to the
 * size limit.
 */
export const webhookDeliveries = pgTable('webhook_deliveries', {
  id: uuid('id').primaryKey().defaultRandom(),
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  accountId: uuid('account_id').notNull().references(() => accounts.id, { onDelete: 'cascade' }),
  automationId: uuid('automation_id').notNull().references(() => automations.id, { onDelete: 'cascade' }),
  status: text('status').$type<DeliveryStatus>().notNull(),
  /** why it was not run, as a fixed code: signature_invalid, malformed_body, unrouted, … (reason says it in a sentence) */
  code: text('code'),
  reason: text('reason'),
  /** routing: the routing key's value for this event, and the linked child it ran in */
  routingValue: text('routing_value'),
  routedAccountId: uuid('routed_account_id').references(() => accounts.id, { onDelete: 'set null' }),
  method: text('method').notNull(),
  headers: jsonb('headers').$type<Record<string, string>>().notNull(),
  query: jsonb('query').$type<Record<string, string>>().notNull(),
  contentType: text('content_type'),
  body: jsonValue('body'),
  size: integer('size').notNull(),
  sourceIp: text('source_ip'),
  executionId: uuid('execution_id'),
  /**
   * its latest replay (replay_webhook sets it in the replay's transaction): the delivery's latest
   * run is this, else execution_id — what debug_webhook shows and replay_webhook matches on
   * (src/core/operations/latest-run.ts). Null until it is replayed; ingress never writes it.
   */
  latestReplayId: uuid('latest_replay_id'),
  receivedAt: timestamp('received_at', { withTimezone: true }).notNull().defaultNow(),
}, (t) => [
  index('webhook_deliveries_account').on(t.accountId, t.receivedAt.desc(), t.id.desc()),
  index('webhook_deliveries_automation').on(t.automationId, t.receivedAt.desc()),
  // retention prunes by age
  index('webhook_deliveries_received').on(t.receivedAt),
  // the deliveries that did not run (rare): debug_webhook {status: rejected | unrouted | duplicate}
  index('webhook_deliveries_not_run').on(t.accountId, t.status, t.receivedAt.desc()).where(sql`${t.status} not in ('accepted', 'routed')`),
  check('webhook_deliveries_status_check', sql`${t.status} in ('accepted', 'routed', 'unrouted', 'duplicate', 'rejected', 'recorded')`),
]);

/**
 * De-duplication keys of deliveries (an automation's `trigger.dedupe.key`), live for 24 h: a
 * delivery whose key is live here is recorded as a duplicate and not run again.
 */
export const webhookDedupeKeys = pgTable('webhook_dedupe_keys', {
  automationId: uuid('automation_id').notNull().references(() => automations.id, { onDelete: 'cascade' }),
  key: text('key').notNull(),
  tenantId: uuid('tenant_id').notNull().references(() => tenants.id),
  accountId: uuid('account_id').notNull().references(() => accounts.id, { onDelete: 'cascade' }),
  deliveryId: uuid('delivery_id').notNull(),
  expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
}, (t) => [
  primaryKey({ columns: [t.automationId, t.key] }),
  index('webhook_dedupe_keys_expiry').on(t.expiresAt),
]);
