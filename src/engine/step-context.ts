import type { Core } from '../core/core.js';
import type { Account } from '../core/accounts.js';
import type { Step } from '../core/automation-definition.js';
import { ExpressionError } from './expressions.js';
import type { BucketTarget, TakeResult } from './rate-limiter.js';

/** What every step runner shares: its context, its result, and its errors with their fixed codes. */

export const STEP_ERROR_CODES = [
  'connection_refused', 'dns_failed', 'timeout', 'tls_failed', 'blocked_address',
  'http_401', 'http_403', 'http_404', 'http_4xx', 'http_429', 'http_5xx', 'response_too_large',
  'expression_error', 'connection_missing', 'connection_expired', 'rate_limited', 'signature_invalid',
  // not the app's nor the definition's fault: a limit of the account data, or the engine itself
  'store_error', 'internal_error',
] as const;
export type StepErrorCode = (typeof STEP_ERROR_CODES)[number];

export class StepError extends Error {
  constructor(
    readonly code: StepErrorCode,
    message: string,
    readonly retryable = false,
    /** the app's Retry-After, when it gave one */
    readonly retryAfterMs?: number,
    /** what the step sent and got before it failed (the upstream answer), for the record */
    readonly record?: { input?: unknown; output?: unknown },
    /** false for a wait that is no attempt at all (a rate limit): it does not use up a retry */
    readonly countsAsAttempt = true,
  ) {
    super(message);
    this.name = 'StepError';
  }
  /** what the step called: the connection's app, else the URL's host (failure groups key on it) */
  target?: string;
}

/** What expressions read: the event, the outputs of earlier steps, and the account it runs in. */
export interface ExpressionDoc {
  trigger: unknown;
  steps: Record<string, { output: unknown }>;
  account: { id: string; slug: string; routing_key: string | null };
  /** a template copy's variable values (src/core/templates/) */
  vars?: Record<string, unknown>;
}

export interface StepResult {
  input: unknown;
  /** what later steps read as steps.<id>.output */
  output: unknown;
  /** what the step record keeps instead of the output, when that is large (an http answer) */
  record?: unknown;
  /** a filter that said no: the run ends as filtered */
  stop?: boolean;
}

export interface StepContext {
  core: Core;
  /** the account the execution runs in */
  account: Account;
  doc: ExpressionDoc;
  executionId: string;
  /** the run whose Idempotency-Keys http steps send: this one, or for a replay that reuses them the original's */
  idempotencyId?: string;
  /** the account that owns the automation (the parent, for a routed event) */
  automationAccountId: string;
  /** what the worker keeps between steps; absent: every step reads and takes afresh */
  services?: StepServices;
}

/** Per-worker helpers of the step runners. */
export interface StepServices {
  /** take a token of a connection's rate budget (src/engine/token-leases.ts) */
  budget(t: BucketTarget): Promise<TakeResult>;
  /** connections (with their decrypted auth) resolved in the last second, by account and key */
  connections: Map<string, { at: number; value: unknown }>;
}

export async function expressionGuard<T>(step: Step, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ExpressionError) throw new StepError('expression_error', `Step '${step.id}': the expression "${clip(err.expression)}" failed: ${err.reason}.`);
    throw err;
  }
}

const clip = (s: string): string => (s.length > 120 ? `${s.slice(0, 120)}…` : s);
