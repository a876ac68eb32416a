import { validateHeaderName, validateHeaderValue } from 'node:http';
import { FORBIDDEN_HEADER, type HttpStep } from '../core/automation-definition.js';
import { getApp, type App } from '../core/apps.js';
import { openCredentials, resolveConnection, type ConnectionRow } from '../core/connections.js';
import { UserError } from '../core/errors.js';
import { CREDENTIAL_NAME, REDACTED, scrubUrl } from '../core/crypto.js';
import { acquireConnection } from './rate-limiter.js';
import { countAuthFailure, DEFAULT_AUTH_FAILURE_LIMIT, resetAuthFailures } from './auth-failures.js';
import { OutboundError, send, type OutboundResponse } from './outbound.js';
import { expressionGuard, StepError, type StepContext, type StepResult } from './step-context.js';
import { render } from './expressions.js';
import { appLabel, metricsOf, statusClass } from './metrics.js';

/**
 * The http step: render the request from the expression document, add the credentials of the
 * connection the account may use (decrypted here, in the worker's memory only, never recorded),
 * take a token from the connection's rate budget, send it through the outbound guard, and turn
 * the answer into the step's output or an error code.
 *
 * Credentials go only to the app's own address: the app's base URL (or, for the generic http
 * app, the connection's base_url). A definition cannot send a connection's key anywhere else.
 */

export const DEFAULT_TIMEOUT_MS = 30_000;
export const MAX_RESPONSE_BYTES = 1024 * 1024;
/** how much of an answer's body the step record keeps */
const RECORD_BODY_CHARS = 8 * 1024;
const RECORD_HEADERS = ['content-type', 'content-length', 'retry-after', 'location', 'x-request-id', 'request-id', 'www-authenticate'];

interface Auth {
  headers: Record<string, string>;
  names: string[];
  origin: string;
  label: string;
}

/** The connection this step uses in the account it runs in, checked for state. */
async function connectionFor(ctx: StepContext, step: HttpStep): Promise<{ row: ConnectionRow; app: App }> {
  // the automation's own account uses the connection resolved at save; a routed child resolves it again among its own
  const key = step.connection_id && ctx.account.id === ctx.automationAccountId ? step.connection_id : step.connection!;
  let row: ConnectionRow;
  try {
    row = (await resolveConnection(ctx.core, ctx.account, key)).row;
  } catch (err) {
    if (err instanceof UserError) throw new StepError('connection_missing', `Step '${step.id}': the connection '${step.connection}' is not available in '${ctx.account.slug}' (deleted, unshared or never made there).`);
    throw err;
  }
  const label = `${row.app}/${row.name}`;
  const failed = (code: 'connection_expired' | 'connection_missing', message: string) => Object.assign(new StepError(code, message), { target: row.app });
  if (row.status === 'expired') throw failed('connection_expired', `Step '${step.id}': the connection ${label} has expired: reconnect it (reconnect_connection).`);
  if (row.status === 'disconnected') throw failed('connection_missing', `Step '${step.id}': the connection ${label} is disconnected: reconnect it (reconnect_connection).`);
  return { row, app: await getApp(ctx.core, row.app) };
}

async function authFor(ctx: StepContext, step: HttpStep, row: ConnectionRow, app: App): Promise<Auth> {
  let opened: Awaited<ReturnType<typeof openCredentials>>;
  try {
    opened = await openCredentials(ctx.core, row);
  } catch {
    throw new StepError('connection_missing', `Step '${step.id}': the credentials of ${row.app}/${row.name} cannot be decrypted: reconnect it (reconnect_connection).`);
  }
  const { auth_kind: kind, values } = opened;
  if (kind === 'signing_secret') throw new StepError('connection_missing', `Step '${step.id}': ${row.app}/${row.name} is a webhook signing secret, never sent with a request: name the app's API connection.`);
  const spec = app.auth.find((a) => a.kind === kind);
  const secret = spec?.fields.find((f) => f.secret)?.name;
  const value = secret ? values[secret] : undefined;
  const label = `${row.app}/${row.name}`;
  const base = app.baseUrl ?? values.base_url;
  if (!base || !value) throw new StepError('connection_missing', `Step '${step.id}': the connection ${label} lacks its credentials or base URL: reconnect it.`);
  const origin = new URL(base).origin;
  switch (kind) {
    case 'bearer':
      return { headers: { authorization: `Bearer ${value}` }, names: ['authorization'], origin, label };
    case 'api_key': {
      const header = (spec?.header ?? values.header_name ?? 'x-api-key').toLowerCase();
      return { headers: { [header]: value }, names: [header], origin, label };
    }
    case 'basic':
      return { headers: { authorization: `Basic ${Buffer.from(`${values.username ?? ''}:${value}`).toString('base64')}` }, names: ['authorization'], origin, label };
  }
}

/**
 * The connection and its auth, from the worker's cache when resolved in the last second (a busy
 * automation resolves and decrypts once a second, not once a call). A change to the connection
 * — disconnected, expired, new credentials — therefore reaches running steps within a second.
 */
const CONNECTION_TTL_MS = 1000;

const connectionCacheKey = (ctx: StepContext, step: HttpStep): string =>
  `${ctx.account.id}|${ctx.account.id === ctx.automationAccountId ? (step.connection_id ?? step.connection) : step.connection}`;

async function cachedConnection(ctx: StepContext, step: HttpStep): Promise<{ row: ConnectionRow; app: App; auth: Auth }> {
  const key = connectionCacheKey(ctx, step);
  const cache = ctx.services?.connections;
  const hit = cache?.get(key);
  if (hit && Date.now() - hit.at < CONNECTION_TTL_MS) return hit.value as { row: ConnectionRow; app: App; auth: Auth };
  const { row, app } = await connectionFor(ctx, step);
  const value = { row, app, auth: await authFor(ctx, step, row, app) };
  if (cache) {
    if (cache.size > 10_000) cache.clear();
    cache.set(key, { at: Date.now(), value });
  }
  return value;
}

/** Drop the cached connection, so the next call reads its new state (a count of 401s, an expiry). */
function forgetConnection(ctx: StepContext, step: HttpStep): void {
  ctx.services?.connections.delete(connectionCacheKey(ctx, step));
}

const asText = (v: unknown): string => (typeof v === 'string' ? v : v === null || v === undefined ? '' : JSON.stringify(v));

/** A body that is not text (a PDF, an image) is described, never decoded into the records. */
function binaryLabel(res: OutboundResponse): string | null {
  const type = res.headers['content-type'] ?? '';
  const texty = type === '' || /json|text\/|xml|x-www-form-urlencoded|javascript|csv/i.test(type);
  return texty && !res.body.includes(0) ? null : `[binary body: ${res.body.length} bytes${type ? `, ${type}` : ''}]`;
}

function parseBody(res: OutboundResponse): unknown {
  const binary = binaryLabel(res);
  if (binary) return binary;
  const text = res.body.toString('utf8');
  if (/json/i.test(res.headers['content-type'] ?? '')) {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}

/** The answer as the step record keeps it: a few headers and the start of the body. */
function answerRecord(res: OutboundResponse) {
  const text = binaryLabel(res) ?? res.body.toString('utf8');
  return {
    status: res.status,
    headers: Object.fromEntries(RECORD_HEADERS.filter((h) => res.headers[h] !== undefined).map((h) => [h, res.headers[h]!])),
    body: text.length > RECORD_BODY_CHARS ? `${text.slice(0, RECORD_BODY_CHARS)}… (${res.body.length} bytes)` : text,
  };
}

function retryAfter(res: OutboundResponse): number | undefined {
  const v = res.headers['retry-after'];
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/**
 * What failure groups call a request without a connection: `host:<host>` when the definition
 * names the host, `host:*` when the host is computed from the event (so a sender cannot make a
 * new group per request). The `host:` prefix keeps it apart from app slugs: only those are ever
 * written into a tool's sentence; hosts stay in data fields.
 */
function hostTarget(template: string, url: URL): string {
  const origin = /^[a-z]+:\/\/[^/?#]*/i.exec(template)?.[0] ?? template;
  return origin.includes('{{') ? 'host:*' : `host:${url.host}`;
}

export async function runHttpStep(ctx: StepContext, step: HttpStep): Promise<StepResult> {
  const seen: { target?: string } = {};
  try {
    return await callHttp(ctx, step, seen);
  } catch (err) {
    if (err instanceof StepError) err.target ??= seen.target;
    throw err;
  }
}

async function callHttp(ctx: StepContext, step: HttpStep, seen: { target?: string }): Promise<StepResult> {
  const rendered = await expressionGuard(step, async () => ({
    url: asText(await render(step.url, ctx.doc)),
    headers: (await render(step.headers ?? {}, ctx.doc)) as Record<string, unknown>,
    query: (await render(step.query ?? {}, ctx.doc)) as Record<string, unknown>,
    body: step.body === undefined ? undefined : await render(step.body, ctx.doc),
  }));
  let url: URL;
  try {
    url = new URL(rendered.url);
  } catch {
    throw new StepError('expression_error', `Step '${step.id}': the URL "${rendered.url.slice(0, 200)}" is not a URL.`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new StepError('blocked_address', `Step '${step.id}': only http and https URLs are called, not ${url.protocol}.`);
  url.username = '';
  url.password = '';
  seen.target = hostTarget(step.url, url);
  for (const [k, v] of Object.entries(rendered.query)) if (v !== null && v !== undefined) url.searchParams.append(k, asText(v));

  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(rendered.headers)) {
    if (v === null || v === undefined) continue;
    const name = k.toLowerCase();
    // the engine decides where a request goes and how it is framed: never a definition
    if (FORBIDDEN_HEADER.test(name)) throw new StepError('expression_error', `Step '${step.id}': the header ${name} is set by the engine, not by a step.`);
    const value = asText(v);
    try {
      validateHeaderName(name);
      validateHeaderValue(name, value);
    } catch {
      throw new StepError('expression_error', `Step '${step.id}': the header ${name.slice(0, 60)} has a name or value HTTP does not allow (line breaks, control characters).`);
    }
    headers[name] = value;
  }
  let body: Buffer | undefined;
  if (rendered.body !== undefined && step.method !== 'GET') {
    body = Buffer.from(typeof rendered.body === 'string' ? rendered.body : JSON.stringify(rendered.body));
    headers['content-type'] ??= typeof rendered.body === 'string' ? 'text/plain; charset=utf-8' : 'application/json';
  }
  headers['idempotency-key'] = `${ctx.idempotencyId ?? ctx.executionId}:${step.id}`;
  headers['user-agent'] ??= 'Switchboard';
  // the record never keeps a credential, whether from a connection (below) or computed into a header or the URL
  const recordedHeaders = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, CREDENTIAL_NAME.test(k) ? REDACTED : v]));
  const input = { method: step.method, url: scrubUrl(url.toString()), headers: recordedHeaders, body: rendered.body ?? null };

  let auth: Auth | null = null;
  let conn: ConnectionRow | null = null;
  if (step.connection !== undefined) {
    const { row, app, auth: found } = await cachedConnection(ctx, step);
    auth = found;
    conn = row;
    seen.target = row.app;
    if (url.origin !== auth.origin) {
      throw new StepError('blocked_address', `Step '${step.id}': the credentials of ${auth.label} are sent only to ${auth.origin}, not ${url.origin}.`, false, undefined, { input });
    }
    const target = { connectionId: row.id, perMinute: row.ratePerMinute ?? app.defaultPerMinute };
    const budget = ctx.services ? await ctx.services.budget(target) : await acquireConnection(ctx.core, target);
    if (!budget.allowed) {
      throw new StepError('rate_limited', `Step '${step.id}': the rate limit of ${auth.label} is used up; retrying in ${Math.ceil(budget.retryAfterMs / 1000)} s.`, true, budget.retryAfterMs, { input }, false);
    }
    Object.assign(headers, auth.headers);
    (input.headers as Record<string, string>)[auth.names[0]!] = `[credentials of ${auth.label}]`;
  }

  let res: OutboundResponse;
  // counted by app (never a host, URL or account) and status class or error code
  const sent = (status: string) => metricsOf(ctx.core).outbound.inc({ app: appLabel(conn?.app), status });
  try {
    res = await send(
      { method: step.method, url, headers, body, timeoutMs: step.timeout_ms ?? DEFAULT_TIMEOUT_MS, maxBytes: MAX_RESPONSE_BYTES, credentialHeaders: auth?.names ?? [] },
      ctx.core.outbound ?? { allow: [] },
    );
  } catch (err) {
    sent(err instanceof OutboundError ? err.code : 'internal_error');
    if (err instanceof OutboundError) {
      const retryable = err.code === 'timeout' || err.code === 'connection_refused' || err.code === 'dns_failed';
      throw new StepError(err.code, `Step '${step.id}': ${err.message}`, retryable, undefined, { input });
    }
    throw err;
  }
  const record = { input, output: answerRecord(res) };
  const s = res.status;
  sent(statusClass(s));
  if (conn && s !== 401 && s !== 403 && conn.authFailures > 0) {
    // accepted after 401s: the count of 401s in a row starts again
    await resetAuthFailures(ctx.core, conn);
    forgetConnection(ctx, step);
  }
  if (s >= 200 && s < 400) {
    const { 'set-cookie': _cookie, ...headers } = res.headers;
    return { input, output: { status: s, headers, body: parseBody(res) }, record: record.output };
  }
  const at = `Step '${step.id}': ${url.host} answered ${s}`;
  if (s === 401) {
    if (!conn || !auth) throw new StepError('http_401', `${at}: unauthorized (the step names no connection to authenticate it).`, false, undefined, record);
    // a step that sent credentials of its own was refused for those, not the connection's
    const ownCredentials = Object.keys(rendered.headers).some((h) => CREDENTIAL_NAME.test(h) && h.toLowerCase() !== auth.names[0]);
    if (ownCredentials) throw new StepError('http_401', `${at}: unauthorized (the step sends credentials of its own beside those of ${auth.label}).`, false, undefined, record);
    const { count, expired, paused } = await countAuthFailure(ctx.core, conn);
    forgetConnection(ctx, step);
    const limit = ctx.core.authFailureLimit ?? DEFAULT_AUTH_FAILURE_LIMIT;
    // nothing pauses when the connection is a linked child's own, used by its parent's routed
    // automation; no count: a shared connection's automations are in accounts this run's readers may not see
    const pausedWhat = paused
      ? 'and the automations using it are paused; reconnect it (reconnect_connection) and they resume'
      : 'and calls through it fail until it is reconnected (reconnect_connection)';
    const what = expired
      ? `the credentials of ${auth.label} were refused ${count} times in a row: the connection is now marked expired ${pausedWhat}`
      : `the credentials of ${auth.label} were refused (${count} in a row; at ${limit} the connection is marked expired): reconnect it (reconnect_connection) if this persists`;
    throw new StepError('http_401', `${at}: ${what}.`, false, undefined, record);
  }
  if (s === 403) throw new StepError('http_403', `${at}: forbidden.`, false, undefined, record);
  if (s === 404) throw new StepError('http_404', `${at}: not found.`, false, undefined, record);
  if (s === 429) throw new StepError('http_429', `${at}: too many requests.`, true, retryAfter(res), record);
  if (s >= 500) throw new StepError('http_5xx', `${at}.`, true, retryAfter(res), record);
  throw new StepError('http_4xx', `${at}.`, s === 408, undefined, record);
}
