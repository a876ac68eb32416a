import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { parseToolsets, truthy, type Toolset } from '../mcp/toolsets.js';
import { BoundedEventStore } from './event-store.js';
import type { AddressInfo } from 'node:net';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import type { Server as McpServer } from '@modelcontextprotocol/sdk/server/index.js';
import type { Core } from '../core/core.js';
import type { Database } from '../db/client.js';
import { authenticate, type Caller } from '../core/users.js';
import { createMcpServer } from '../mcp/server.js';
import { addressKey, busyMessage } from '../mcp/tool-gate.js';
import { newSession } from '../mcp/session.js';
import { log, errorFields } from '../log.js';
import { handlePage } from './pages.js';
import { readBody, readBodyBytes } from './body.js';
import { receiveDelivery } from '../core/webhooks.js';
import { transientDbError } from '../core/errors.js';
import { RequestGuard } from './request-guard.js';
import { metricsOf, metricsText } from '../engine/metrics.js';
import { checkReadiness, DEFAULT_READY_STALL_MS } from '../engine/readiness.js';

const MAX_BODY = 1024 * 1024;
const SESSION_IDLE_MS = 60 * 60 * 1000;
/** Sessions one user may hold open; opening one more closes their least recently used. */
const SESSIONS_PER_USER = 32;

interface HttpSession {
  transport: StreamableHTTPServerTransport;
  server: McpServer;
  userId: string;
  lastSeen: number;
}

export interface HttpHandle {
  url: string;
  server: HttpServer;
  sessionCount(): number;
  /** requests to /hooks/ URLs that match no automation since start (counted, never stored) */
  unknownHooks(): number;
  close(): Promise<void>;
}

/**
 * `switchboard serve`: Streamable HTTP at /mcp with a bearer token on every request, plus
 * /healthz, /readyz (readiness.ts) and /metrics (metrics.ts). Each MCP session has its own server
 * and its own switch state, and is bound to the user who opened it.
 *
 * The operator endpoints answer whatever the Host and Origin (load balancers and scrapers use
 * their own names) and without a token: they expose counts and states, never account data.
 */
export async function startHttp(opts: {
  core: Core;
  database: Database;
  port: number;
  host: string;
  publicUrl?: string | undefined;
  allowedHosts?: readonly string[] | undefined;
  allowedOrigins?: readonly string[] | undefined;
  /** largest webhook body accepted (SWITCHBOARD_WEBHOOK_MAX_BYTES) */
  webhookMaxBytes?: number | undefined;
  /** /readyz fails when work has been due this long and no worker works it (SWITCHBOARD_READY_STALL_SECONDS; default 120 s) */
  readyStallMs?: number | undefined;
  /** the toolsets a session lists unless it asks for others, and whether every session is read-only */
  surface?: { toolsets?: string | undefined; readOnly?: boolean | undefined } | undefined;
  /** `serve --conformance` only: the token of a request that sends none (src/cli.ts says what else that mode does) */
  anonymousToken?: string | undefined;
}): Promise<HttpHandle> {
  const metrics = metricsOf(opts.core);
  const delivered = (status: string) => metrics.deliveries.inc({ status });
  const sessions = new Map<string, HttpSession>();
  /** where people open the credential and password pages (set once listening) */
  let pagesUrl: string | null = null;

  /** Host and Origin checks (DNS rebinding, cross-site browsers): see request-guard.ts */
  const guard = new RequestGuard({ listenHost: opts.host, publicUrl: opts.publicUrl, allowedHosts: opts.allowedHosts, allowedOrigins: opts.allowedOrigins });
  if (!guard.checksHost) {
    log.warn('Host headers are not checked: HOST is not a loopback address and SWITCHBOARD_ALLOWED_HOSTS is unset', { host: opts.host });
  }

  async function handleMcp(req: IncomingMessage & { auth?: { token: string; clientId: string; scopes: string[]; extra?: Record<string, unknown> } }, res: ServerResponse) {
    // conformance mode: a request with no Authorization header at all acts as the demo user; a
    // malformed or unknown one is refused as everywhere
    const token = req.headers.authorization === undefined && opts.anonymousToken ? opts.anonymousToken : bearer(req);
    // the token check reads the database: it passes the tool-call gate like the call itself, so a
    // database every slot is stuck in refuses new requests in a bounded time instead of queueing them
    const gate = opts.core.toolGate;
    // (the user is not known yet: the check's share of the slots is the client address's)
    const release = gate ? await gate.enter(undefined, `address:${addressKey(req.socket.remoteAddress)}`) : () => {};
    if (!release) {
      log.warn('request refused: every slot stayed taken', { path: '/mcp', slots: gate!.slots, wait_ms: gate!.maxWaitMs });
      res.setHeader('retry-after', '2');
      return json(res, 503, { error: 'busy', message: busyMessage('this request', gate!) });
    }
    let caller: Caller | null;
    try {
      caller = token ? await authenticate(opts.core, token) : null;
    } finally {
      release();
    }
    if (!caller || !token) {
      res.writeHead(401, {
        'content-type': 'application/json',
        'www-authenticate': `Bearer realm="switchboard", error="invalid_token", error_description="${token ? 'The token is unknown, expired or revoked' : 'A bearer token is required'}"`,
      });
      res.end(JSON.stringify({ error: 'unauthorized', message: 'Send Authorization: Bearer <API token>.' }));
      return;
    }
    req.auth = { token, clientId: caller.user.id, scopes: [], extra: { caller } };

    let body: unknown;
    if (req.method === 'POST') {
      const raw = await readBody(req, MAX_BODY);
      if (raw === null) {
        return json(res, 413, { error: 'payload_too_large', message: `Request bodies are limited to ${MAX_BODY} bytes.` });
      }
      try {
        body = JSON.parse(raw);
      } catch {
        return json(res, 400, { jsonrpc: '2.0', error: { code: -32700, message: 'Parse error: the body is not JSON.' }, id: null });
      }
    }

    const sid = req.headers['mcp-session-id'];
    if (typeof sid === 'string') {
      const s = sessions.get(sid);
      if (!s) return json(res, 404, { jsonrpc: '2.0', error: { code: -32001, message: 'Session not found: initialize a new session.' }, id: null });
      if (s.userId !== caller.user.id) return json(res, 403, { jsonrpc: '2.0', error: { code: -32003, message: 'This session belongs to another user.' }, id: null });
      s.lastSeen = Date.now();
      await s.transport.handleRequest(req, res, body);
      return;
    }
    if (req.method !== 'POST' || !isInitializeRequest(body)) {
      return json(res, 400, { jsonrpc: '2.0', error: { code: -32000, message: 'Bad request: no mcp-session-id header; start with an initialize request.' }, id: null });
    }
    // the session's surface: ?toolsets= / X-Switchboard-Toolsets, ?read_only= / X-Switchboard-Read-Only
    // (a session may make itself read-only, never lift a server that is)
    const url = new URL(req.url ?? '/', 'http://x');
    const header = (name: string) => (typeof req.headers[name] === 'string' ? (req.headers[name] as string) : undefined);
    let toolsets: Set<Toolset>;
    try {
      // empty counts as not given: the operator's setting stands
      toolsets = parseToolsets(url.searchParams.get('toolsets') || header('x-switchboard-toolsets') || opts.surface?.toolsets);
    } catch (err) {
      return json(res, 400, { jsonrpc: '2.0', error: { code: -32602, message: (err as Error).message }, id: null });
    }
    const readOnly = Boolean(opts.surface?.readOnly) || truthy(url.searchParams.get('read_only')) || truthy(header('x-switchboard-read-only'));
    evictBeyondLimit(caller.user.id);
    const id = randomUUID();
    const session = newSession(id, { toolsets, readOnly });
    const server = createMcpServer({
      core: opts.core,
      session,
      pagesUrl,
      authenticate: async (extra, fresh) =>
        fresh && extra.authInfo ? authenticate(opts.core, extra.authInfo.token) : ((extra.authInfo?.extra?.caller as Caller | undefined) ?? null),
      // a customer's users (its linked children's too) share one share of the slots: its admins can
      // make users, and homes for them in its children, but not accounts
      gateKey: (extra) => {
        const who = extra.authInfo?.extra?.caller as Caller | undefined;
        return who ? `account:${who.customerAccountId ?? who.user.homeAccountId}` : undefined;
      },
    });
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => id,
      // resumable streams: a client reconnecting with Last-Event-ID gets what it missed (bounded per session)
      eventStore: new BoundedEventStore(),
      retryInterval: 1000,
      onsessioninitialized: (sessionId) => {
        sessions.set(sessionId, { transport, server, userId: caller.user.id, lastSeen: Date.now() });
      },
    });
    transport.onclose = () => {
      sessions.delete(id);
    };
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
  }

  function evictBeyondLimit(userId: string): void {
    const mine = [...sessions.entries()].filter(([, s]) => s.userId === userId).sort((a, b) => a[1].lastSeen - b[1].lastSeen);
    for (const [id, s] of mine.slice(0, Math.max(0, mine.length - SESSIONS_PER_USER + 1))) {
      sessions.delete(id);
      void s.transport.close();
    }
  }

  /** `/hooks/<token>`: a webhook delivery, recorded (and its run queued) before the answer. */
  async function handleHook(req: IncomingMessage, res: ServerResponse, token: string): Promise<void> {
    // deliveries are sent: a GET (a link preview, a prefetch) must not start a run
    if (req.method !== 'POST' && req.method !== 'PUT' && req.method !== 'PATCH') {
      res.setHeader('allow', 'POST, PUT, PATCH');
      return json(res, 405, { error: 'method_not_allowed', message: 'Webhooks are delivered with POST, PUT or PATCH.' });
    }
    const max = opts.webhookMaxBytes ?? 1024 * 1024;
    const raw = await readBodyBytes(req, max);
    if (raw === null) {
      delivered('too_large');
      return json(res, 413, { error: 'too_large', message: `Webhook bodies are limited to ${max} bytes.` });
    }
    const url = new URL(req.url ?? '/', 'http://x');
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
    const out = await receiveDelivery(opts.core, token, {
      method: req.method ?? 'POST',
      headers,
      query: Object.fromEntries(url.searchParams),
      contentType: req.headers['content-type'] ?? null,
      raw,
      sourceIp: req.socket.remoteAddress ?? null,
    });
    if (out.status === 404) {
      hooksUnknown += 1;
      delivered('not_found');
      return json(res, 404, { error: 'not_found' });
    }
    delivered(out.delivery);
    json(res, out.status, { delivery_id: out.deliveryId, status: out.delivery, ...(out.reason ? { reason: out.reason } : {}) });
  }
  /** requests to unknown webhook URLs: counted, never stored */
  let hooksUnknown = 0;

  const http = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const done = (p: Promise<void>) =>
      p.catch((err) => {
        // a page path carries its one-time link token: never log it
        const safePath = path?.replace(/^\/(connect|verify|hooks)\/.*/, '/$1/…');
        if (transientDbError(err)) {
          // a restart or a lost connection: the sender (a webhook provider, an MCP client) should retry,
          // and a webhook answered this way was not acknowledged, so it is not lost when it is sent again
          log.warn('http request failed: the database is unavailable', { path: safePath, ...errorFields(err) });
          if (!res.headersSent) {
            res.setHeader('retry-after', '5');
            json(res, 503, { error: 'unavailable', message: 'The database is not answering right now; retry in a few seconds.' });
          } else res.end();
          return;
        }
        log.error('http request failed', { path: safePath, ...errorFields(err) });
        if (!res.headersSent) json(res, 500, { error: 'internal_error' });
        else res.end();
      });
    if (path === '/healthz') return json(res, 200, { status: 'ok' });
    if (path === '/readyz') {
      return done(
        checkReadiness(opts.database, opts.readyStallMs ?? DEFAULT_READY_STALL_MS).then((r) =>
          r.ready ? json(res, 200, { status: 'ready' }) : json(res, 503, { status: 'unavailable', check: r.failed, message: r.message }),
        ),
      );
    }
    if (path === '/metrics') {
      return done(
        metricsText(opts.core).then(({ contentType, text }) => {
          res.writeHead(200, { 'content-type': contentType });
          res.end(text);
        }),
      );
    }
    const refused = guard.check(req);
    if (refused) return json(res, 403, refused);
    if (path === '/mcp') return done(handleMcp(req, res));
    if (path?.startsWith('/hooks/')) return done(handleHook(req, res, path.slice('/hooks/'.length)));
    if (path === '/connect' || path === '/verify' || path?.startsWith('/connect/') || path?.startsWith('/verify/')) {
      // every request gets an answer, even one a page handler forgot
      return done(handlePage(opts.core, req, res, path).then(() => void (res.headersSent || json(res, 404, { error: 'not_found' }))));
    }
    json(res, 404, { error: 'not_found', message: 'MCP is served at /mcp.' });
  });

  const sweep = setInterval(() => {
    const cutoff = Date.now() - SESSION_IDLE_MS;
    for (const [id, s] of sessions) {
      if (s.lastSeen < cutoff) {
        sessions.delete(id);
        void s.transport.close();
      }
    }
  }, 60_000);
  sweep.unref();

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(opts.port, opts.host, () => resolve());
  });
  const addr = http.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  pagesUrl = opts.publicUrl ? new URL('/', opts.publicUrl).toString() : `http://${host}:${addr.port}/`;
  return {
    url: `http://${host}:${addr.port}/mcp`,
    server: http,
    sessionCount: () => sessions.size,
    unknownHooks: () => hooksUnknown,
    async close() {
      clearInterval(sweep);
      await Promise.allSettled([...sessions.values()].map((s) => s.transport.close()));
      sessions.clear();
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}

function bearer(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  const m = h ? /^Bearer\s+(\S+)$/i.exec(h) : null;
  return m?.[1];
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}
