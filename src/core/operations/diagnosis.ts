import { SLUG } from '../ids.js';

/**
 * What went wrong with a webhook delivery and what to do next (debug_webhook): a cause and a
 * next action, one sentence each, naming the tools to call.
 *
 * The diagnosis is a function of codes, statuses and counts only. Payload and upstream text,
 * error messages, names, hosts, expressions and routing keys are data: they travel in `subject`
 * and `data`, never in a sentence, so nothing a sender or an upstream writes can change what the
 * diagnosis says. The only values a sentence may carry are of formats the platform restricts:
 * error codes, numbers, ISO times, step ids (letters, digits, _), and app and account slugs —
 * and each is checked against its format here before it is written into a sentence.
 */

export interface Diagnosis {
  code: string;
  cause: string;
  next_action: string;
  tools: string[];
  /** what the sentences are about, as data */
  subject: { step?: string; connection?: { id: string; app: string; name: string; status: string } } | null;
  /** figures and data behind the sentences */
  data: Record<string, unknown> | null;
}

/** A connection a diagnosis is about (the failing step's, the signing secret, the one that paused the automation). */
export interface ConnectionFacts {
  id: string;
  app: string;
  name: string;
  status: string;
  ratePerMinute: number | null;
  appDefaultPerMinute: number | null;
}

/** Everything a diagnosis is computed from. Text fields here end up in `data` only. */
export interface DiagnosisFacts {
  /** the derived status of the delivery */
  status: string;
  /** the delivery's own code (rejected, unrouted, duplicate, recorded) */
  deliveryCode: string | null;
  execution: {
    errorCode: string | null;
    failedStep: string | null;
    upstreamStatus: number | null;
    /** the step the run stopped at (a filter that said no) */
    stoppedStep: string | null;
  } | null;
  connection: ConnectionFacts | null;
  /** failures of this fingerprint in this automation and account while its group is open */
  failedCount: number;
  /** the upstream outage: other accounts the caller may see with the same failure open */
  outage: { otherAccounts: number; since: string | null } | null;
  /** an expression_error: the expression that reads a trigger.body path the payload lacks */
  expression: { expression: string; missingPath: string | null } | null;
  /** unrouted: the routing value of this delivery (null: none could be computed), and the keys that exist */
  routing: { value: string | null; keys: string[] } | null;
  /** a validation answer: the upstream body excerpt (data) */
  upstreamExcerpt: string | null;
}

const STEP_ID = /^[A-Za-z_][A-Za-z0-9_]{0,39}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** A step reference for a sentence, only when the id has the restricted format. */
const stepRef = (id: string | null | undefined): string => (id && STEP_ID.test(id) ? `step '${id}'` : 'the failing step');
const StepRef = (id: string | null | undefined): string => {
  const s = stepRef(id);
  return s[0]!.toUpperCase() + s.slice(1);
};
/** An app for a sentence: its slug when it has the slug format, else a neutral word. */
const appRef = (c: ConnectionFacts | null, fallback = 'the upstream app'): string => (c && SLUG.test(c.app) ? c.app : fallback);
const statusRef = (s: number | null): string => (s !== null && Number.isInteger(s) && s >= 100 && s <= 599 ? ` (${s})` : '');
const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;
const codeRef = (code: string | null): string => (code && /^[a-z0-9_]{1,40}$/.test(code) ? code : 'an error');

const replayOf = (n: number): string => (n > 1 ? `replay the ${n} failed deliveries (replay_webhook)` : 'replay the delivery (replay_webhook)');

const OUTAGE = new Set(['http_5xx', 'timeout', 'connection_refused', 'dns_failed', 'tls_failed']);
const VALIDATION = new Set(['http_4xx', 'http_404']);

/** The diagnosis of a delivery that did not succeed; null for one that succeeded or is still in flight. */
export function diagnose(f: DiagnosisFacts): Diagnosis | null {
  const conn = f.connection
    ? { id: f.connection.id, app: f.connection.app, name: f.connection.name, status: f.connection.status }
    : undefined;
  const make = (code: string, cause: string, next: string, tools: string[], data: Record<string, unknown> | null = null, step?: string | null): Diagnosis => ({
    code,
    cause,
    next_action: next,
    tools,
    subject: conn || step ? { ...(step ? { step } : {}), ...(conn ? { connection: conn } : {}) } : null,
    data,
  });

  switch (f.status) {
    case 'succeeded':
    case 'accepted':
    case 'routed':
    case 'running':
      return null;
    case 'rejected':
      if (f.deliveryCode === 'signature_invalid') {
        return make(
          'signature_invalid',
          `The request's signature did not verify against the signing secret${f.connection ? ` connection of ${appRef(f.connection, 'the sender')}` : ''}, so it was refused (401) and nothing ran.`,
          'Check that the sender signs with the secret the connection holds, and store the rotated secret with reconnect_connection if it changed.',
          ['reconnect_connection'],
        );
      }
      return make(
        codeRef(f.deliveryCode ?? 'malformed_body'),
        'The sender posted a body that does not parse as its content type, so it was refused (400) and nothing ran.',
        'Have the sender fix what it posts (request.body shows what arrived); nothing on this side can run it.',
        [],
      );
    case 'unrouted':
      return make(
        'unrouted',
        f.routing?.value === null
          ? "No routing key could be computed from this delivery's payload, so it ran in no linked account."
          : "No linked account has this delivery's routing key (routing.value), so it ran nowhere.",
        f.routing?.value === null
          ? 'Check the routing key expression with update_automation, or have the sender include the field it reads.'
          : 'Link the account it is meant for with that routing key (link_account) or create it (create_account); the keys that exist are in data.routing_keys.',
        f.routing?.value === null ? ['update_automation'] : ['link_account', 'create_account'],
        { routing_value: f.routing?.value ?? null, routing_keys: f.routing?.keys ?? [] },
      );
    case 'duplicate':
      return make(
        'duplicate',
        'An event with the same de-duplication key arrived within 24 h, so this one was recorded and not run again.',
        'Nothing to do, unless the de-duplication key expression is wrong (update_automation).',
        ['update_automation'],
      );
    case 'recorded':
      return recorded(f, make);
    case 'filtered':
      return make(
        'filtered',
        `The filter at ${stepRef(f.execution?.stoppedStep)} said no for this delivery, so the run ended without its later steps.`,
        "Nothing to do if that is intended; otherwise correct the filter's condition with update_automation.",
        ['update_automation'],
        null,
        f.execution?.stoppedStep,
      );
    case 'cancelled':
      return make('cancelled', 'The run of this delivery was cancelled before it finished.', 'Replay the delivery (replay_webhook) if it should still run.', ['replay_webhook']);
    case 'failed':
      return failed(f, make);
    default:
      return null;
  }
}

type Make = (code: string, cause: string, next: string, tools: string[], data?: Record<string, unknown> | null, step?: string | null) => Diagnosis;

function recorded(f: DiagnosisFacts, make: Make): Diagnosis {
  switch (f.deliveryCode) {
    case 'automation_paused':
      return make(
        'automation_paused',
        `The automation is paused because its ${appRef(f.connection, 'app')} connection was disconnected or expired, so the delivery was recorded and not run.`,
        'Reconnect that connection (reconnect_connection): the automation resumes; then replay the delivery (replay_webhook).',
        ['reconnect_connection', 'replay_webhook'],
      );
    case 'automation_disabled':
      return make(
        'automation_disabled',
        'The automation is disabled, so the delivery was recorded and not run.',
        'Enable it with set_automation_enabled, then replay the delivery (replay_webhook).',
        ['set_automation_enabled', 'replay_webhook'],
      );
    case 'account_suspended':
      return make(
        'account_suspended',
        'The account the delivery runs in is suspended, so it was recorded and not run.',
        'An admin lifts the suspension with set_account_status, then replay the delivery (replay_webhook).',
        ['set_account_status', 'replay_webhook'],
      );
    default:
      return make(codeRef(f.deliveryCode), 'The delivery was recorded and not run.', 'Read the delivery (get_delivery) for the reason it records.', ['get_delivery']);
  }
}

function failed(f: DiagnosisFacts, make: Make): Diagnosis {
  const e = f.execution;
  const code = e?.errorCode ?? 'internal_error';
  const step = e?.failedStep ?? null;
  const app = appRef(f.connection);
  const n = Math.max(1, f.failedCount);
  const status = statusRef(e?.upstreamStatus ?? null);
  const c = f.connection;

  if (code === 'connection_expired' || code === 'http_401') {
    const expired = c?.status === 'expired' || code === 'connection_expired';
    return make(
      code,
      code === 'connection_expired'
        ? `${StepRef(step)} could not call ${app}: its connection has expired after repeated rejections of its credentials.`
        : `${app} rejected the credentials of the connection used by ${stepRef(step)} (401)${expired ? ', and the connection is now marked expired' : ''}.`,
      `Reconnect the connection (reconnect_connection), then ${replayOf(n)}.`,
      ['reconnect_connection', 'replay_webhook'],
      { failed_deliveries: n },
      step,
    );
  }
  if (code === 'http_403') {
    return make(
      code,
      `${app} refused ${stepRef(step)} (403): the connection's credentials lack the permission for this call.`,
      `Reconnect the connection with credentials that have that permission (reconnect_connection), then ${replayOf(n)}.`,
      ['reconnect_connection', 'replay_webhook'],
      { failed_deliveries: n },
      step,
    );
  }
  if (code === 'connection_missing') {
    return make(
      code,
      `${StepRef(step)} names a connection that is not usable where it ran (deleted, disconnected, unshared or without credentials).`,
      `Reconnect it (reconnect_connection) or add it (add_connection), then ${replayOf(n)}.`,
      ['reconnect_connection', 'add_connection', 'replay_webhook'],
      { failed_deliveries: n },
      step,
    );
  }
  if (code === 'http_429' || code === 'rate_limited') {
    const own = c?.ratePerMinute ?? null;
    const budget = own ?? c?.appDefaultPerMinute ?? null;
    const budgetText = budget !== null ? `${budget} per minute (${own !== null ? "the connection's own setting" : "the app's default"})` : 'its budget';
    const data = { rate_per_minute: own, app_default_per_minute: c?.appDefaultPerMinute ?? null, raising_limit_helps: code === 'rate_limited', failed_deliveries: n };
    return code === 'http_429'
      ? make(
          code,
          `${app} itself throttled ${stepRef(step)} (429) until its retries ran out; the connection's own budget is ${budgetText}, so raising it with set_connection_rate_limit would not help.`,
          `Lower the connection's rate below what ${app} allows (set_connection_rate_limit) or let the load pass, then ${replayOf(n)}.`,
          ['set_connection_rate_limit', 'replay_webhook'],
          data,
          step,
        )
      : make(
          code,
          `The connection's own budget of ${budgetText} held ${stepRef(step)} back; ${app} did not refuse it.`,
          `Raise the connection's limit with set_connection_rate_limit if ${app} allows more, then ${replayOf(n)}.`,
          ['set_connection_rate_limit', 'replay_webhook'],
          data,
          step,
        );
  }
  if (OUTAGE.has(code)) {
    const o = f.outage;
    const since = o?.since && ISO.test(o.since) ? ` since ${o.since}` : '';
    const others = o && o.otherAccounts > 0 ? `; ${plural(o.otherAccounts, 'other account')} you can see ${o.otherAccounts === 1 ? 'has' : 'have'} the same failure open${since}` : '; no other account you can see has the same failure open';
    return make(
      code,
      `${StepRef(step)} failed with ${code}${status}: ${app} looks unavailable${others}.`,
      `Follow the outage with list_failure_groups and ${replayOf(n)} once ${app} recovers.`,
      ['list_failure_groups', 'replay_webhook'],
      { failed_deliveries: n, other_accounts: o?.otherAccounts ?? 0, since: o?.since ?? null },
      step,
    );
  }
  if (code === 'expression_error') {
    const x = f.expression;
    return make(
      code,
      x?.missingPath
        ? `An expression of ${stepRef(step)} failed: it reads a trigger.body field that this delivery's payload lacks (data.missing_path).`
        : `An expression of ${stepRef(step)} failed on this delivery (data.expression; the error message says why).`,
      'Fix the expression with update_automation, or have the sender include the field, then replay the delivery (replay_webhook).',
      ['update_automation', 'replay_webhook'],
      { expression: x?.expression ?? null, missing_path: x?.missingPath ?? null },
      step,
    );
  }
  if (VALIDATION.has(code)) {
    return make(
      code,
      `${app} refused what ${stepRef(step)} sent${status}: its answer (upstream.body_excerpt) says what it expected.`,
      `Correct what ${stepRef(step)} sends with update_automation, then ${replayOf(n)}.`,
      ['update_automation', 'replay_webhook'],
      { upstream_body_excerpt: f.upstreamExcerpt },
      step,
    );
  }
  if (code === 'internal_error') {
    return make(code, `${StepRef(step)} failed inside the engine, not because of the app or the definition.`, `Replay the delivery (replay_webhook); if it fails again, report the execution id.`, ['replay_webhook'], null, step);
  }
  return make(
    codeRef(code),
    `${StepRef(step)} failed with ${codeRef(code)}${status}.`,
    `Read the step's error (get_delivery), correct the automation with update_automation, then ${replayOf(n)}.`,
    ['get_delivery', 'update_automation', 'replay_webhook'],
    { failed_deliveries: n },
    step,
  );
}

/**
 * The first `trigger.body` path an expression reads that `body` lacks, best effort: plain dotted
 * paths only (what a wildcard or a function computes is not followed).
 */
export function missingBodyPath(expression: string, body: unknown): string | null {
  for (const m of expression.matchAll(/\btrigger\.body((?:\.[A-Za-z_$][\w$]*)+)/g)) {
    const parts = m[1]!.slice(1).split('.');
    let v: unknown = body;
    for (const [i, p] of parts.entries()) {
      if (v === null || typeof v !== 'object' || !(p in (v as object))) return `trigger.body.${parts.slice(0, i + 1).join('.')}`;
      v = (v as Record<string, unknown>)[p];
    }
  }
  return null;
}
