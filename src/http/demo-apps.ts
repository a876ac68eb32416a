import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { log } from '../log.js';

/**
 * The demo apps: small stand-ins for Mindbody and a bookkeeping ledger that a process running
 * the demo world serves itself, on loopback only, so that the demo's automations make real HTTP
 * calls and get real answers — a client for a good Mindbody key, 401 for a revoked one, 422 from
 * the ledger for an entry without an amount. They are not the real services and say so in every
 * answer's `x-demo-app` header.
 *
 * They listen on a port of their own on 127.0.0.1 (not a path of serve's listener): the MCP
 * listener's Host, Origin and body rules are not theirs to bend, they run the same in `stdio`
 * (which has no listener), and the outbound guard allows their one port in demo mode only.
 *
 * Keys say what they are (they are made up by the demo seed): a Mindbody key starting with
 * `demo-mb-live-` is accepted, any other (`demo-mb-revoked-…`, the studios whose key was
 * revoked) is refused with 401; a ledger token must start with `demo-ledger-`.
 */

import { DEMO_HOST, LEDGER_PATH, LEDGER_PREFIX, MINDBODY_LIVE_PREFIX, MINDBODY_PATH } from '../core/demo-apps-spec.js';

export { DEMO_HOST } from '../core/demo-apps-spec.js';

const MAX_BODY = 64 * 1024;
/** Idempotency-Keys the ledger remembers (an entry sent again with its key is answered as before, not booked twice) */
const MAX_REMEMBERED = 10_000;

export interface DemoAppsServer {
  /** http://127.0.0.1:<port> */
  origin: string;
  port: number;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: unknown, app: string): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'x-demo-app': app });
  res.end(text);
}

function readBody(req: IncomingMessage): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        req.destroy();
        resolve(null);
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

const FIRST = ['Alex', 'Sam', 'Jordan', 'Riley', 'Casey', 'Taylor', 'Jamie', 'Morgan', 'Quinn', 'Avery'];
const LAST = ['Rivera', 'Chen', 'Okafor', 'Novak', 'Haddad', 'Silva', 'Kowalski', 'Berg', 'Tanaka', 'Moreau'];

/** A made-up client, always the same for the same id. */
function client(id: string) {
  const h = createHash('sha256').update(id).digest();
  const first = FIRST[h[0]! % FIRST.length]!;
  const last = LAST[h[1]! % LAST.length]!;
  return { Id: id, FirstName: first, LastName: last, Email: `${first}.${last}.${id}@example.com`.toLowerCase(), Status: 'Active' };
}

function mindbody(req: IncomingMessage, res: ServerResponse, url: URL): void {
  const app = 'mindbody (demo)';
  const key = req.headers['api-key'];
  if (typeof key !== 'string' || !key) return send(res, 401, { Error: { Code: 'DeniedAccess', Message: 'Missing API key.' } }, app);
  if (!key.startsWith(MINDBODY_LIVE_PREFIX)) {
    return send(res, 401, { Error: { Code: 'DeniedAccess', Message: 'The API key is invalid or has been revoked.' } }, app);
  }
  if (req.method === 'GET' && url.pathname === `${MINDBODY_PATH}/client/clients`) {
    const ids = (url.searchParams.get('clientIds') ?? '').split(',').map((s) => s.trim()).filter(Boolean).slice(0, 20);
    const clients = ids.map(client);
    return send(res, 200, { PaginationResponse: { RequestedLimit: 100, RequestedOffset: 0, PageSize: clients.length, TotalResults: clients.length }, Clients: clients }, app);
  }
  send(res, 404, { Error: { Code: 'NotFound', Message: 'Unknown endpoint of the Mindbody demo app.' } }, app);
}

function ledger(req: IncomingMessage, res: ServerResponse, url: URL, body: Buffer, remembered: Map<string, { status: number; body: unknown }>): void {
  const app = 'ledger (demo)';
  const auth = req.headers.authorization ?? '';
  if (!auth.startsWith(`Bearer ${LEDGER_PREFIX}`)) return send(res, 401, { error: 'invalid or missing token' }, app);
  if (req.method !== 'POST' || url.pathname !== `${LEDGER_PATH}/entries`) return send(res, 404, { error: 'not found' }, app);
  const key = req.headers['idempotency-key'];
  const seen = typeof key === 'string' ? remembered.get(key) : undefined;
  if (seen) return send(res, seen.status, seen.body, app);
  let entry: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
    entry = parsed as Record<string, unknown>;
  } catch {
    return send(res, 400, { error: 'the body must be a JSON object' }, app);
  }
  const { amount, currency, reference } = entry;
  let answer: { status: number; body: unknown };
  if (amount === undefined || amount === null || amount === '') answer = { status: 422, body: { error: 'amount is required', field: 'amount' } };
  else if (typeof amount !== 'number' || !Number.isInteger(amount) || amount <= 0) {
    answer = { status: 422, body: { error: 'amount must be a positive whole number of cents', field: 'amount' } };
  } else answer = { status: 201, body: { id: `le_${randomBytes(8).toString('hex')}`, amount, currency: typeof currency === 'string' ? currency : 'usd', reference: reference ?? null } };
  // only what was booked is remembered: a refused entry sent again (fixed) is looked at afresh
  if (typeof key === 'string' && answer.status === 201) {
    if (remembered.size >= MAX_REMEMBERED) remembered.delete(remembered.keys().next().value!);
    remembered.set(key, answer);
  }
  send(res, answer.status, answer.body, app);
}

/** Start the demo apps on 127.0.0.1: on `port` when it is free (the port of the last start), else on any free port. */
export async function startDemoApps(port = 0): Promise<DemoAppsServer> {
  const remembered = new Map<string, { status: number; body: unknown }>();
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', `http://${DEMO_HOST}`);
    readBody(req).then(
      (body) => {
        if (body === null) return send(res, 413, { error: 'body too large' }, 'demo');
        if (url.pathname.startsWith(`${MINDBODY_PATH}/`)) return mindbody(req, res, url);
        if (url.pathname.startsWith(`${LEDGER_PATH}/`)) return ledger(req, res, url, body, remembered);
        send(res, 404, { error: 'not found', about: 'Switchboard demo apps (stand-ins for Mindbody and a ledger; not real services)' }, 'demo');
      },
      () => res.destroy(),
    );
  });
  const listen = (p: number) =>
    new Promise<number>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      server.once('error', onError);
      server.listen(p, DEMO_HOST, () => {
        server.off('error', onError);
        resolve((server.address() as AddressInfo).port);
      });
    });
  let bound: number;
  try {
    bound = await listen(port);
  } catch (err) {
    if (port === 0 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    log.info('demo apps: their last port is taken, moving to another one', { port });
    bound = await listen(0);
  }
  return { origin: `http://${DEMO_HOST}:${bound}`, port: bound, close: () => closeServer(server) };
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}
