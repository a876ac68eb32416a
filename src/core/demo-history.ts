import { request } from 'node:http';
import { and, count, eq, inArray } from 'drizzle-orm';
import { accounts, executions, webhookDeliveries } from '../db/schema/index.js';
import type { Core } from './core.js';
import { resolveAutomation } from './automations.js';
import { receiveDelivery, webhookPath, webhookToken } from './webhooks.js';
import { DEMO_AUTOMATIONS, STUDIO_COUNT } from './demo.js';

/**
 * The demo's history, made the way real history is made: webhook deliveries sent to the demo
 * automations' URLs through the real ingress, run by the worker against the demo apps. Nothing
 * is inserted by hand: every delivery, execution, step record, aggregate and failure group is
 * what the platform itself recorded.
 *
 * Two phases, the second sent once the first has run: Boring Co's payments arrive in the old
 * payload first (booked), then in the new one (`amount_cents`: refused by the ledger), so its
 * failures start after successes as a changed payload does. Acme's bookings go to all 30
 * studios, a few to `studio-99` (no such studio: unrouted) and a few are cancellations
 * (filtered); studios 04 and 11 fail on their revoked Mindbody key.
 */

export const BOOKINGS_PER_PHASE = 150;
export const OLD_PAYMENTS = 8;
export const NEW_PAYMENTS = 30;
export const SANDBOX_PER_PHASE = 10;
/** deliveries sent at once */
const IN_FLIGHT = 8;

/** What sends one delivery: an HTTP POST to serve's /hooks/ URL, or receiveDelivery in-process. */
export type Deliver = (token: string, body: unknown, headers: Record<string, string>) => Promise<string>;

/**
 * POST to `origin` + /hooks/<token>, as a sender on the network would, on a socket of its own
 * (no kept-alive socket the server may be closing), trying again after a network error as
 * senders do. Returns the delivery's status.
 */
export const httpDeliverer =
  (origin: string): Deliver =>
  async (token, body, headers) => {
    const payload = Buffer.from(JSON.stringify(body));
    for (let attempt = 1; ; attempt++) {
      try {
        return await post(new URL(webhookPath(token), origin), payload, headers);
      } catch (err) {
        if (attempt >= 3) throw err;
        await new Promise((r) => setTimeout(r, 200 * attempt));
      }
    }
  };

function post(url: URL, payload: Buffer, headers: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent: false, timeout: 30_000, headers: { 'content-type': 'application/json', 'content-length': payload.length, ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let answer: { status?: string } = {};
        try {
          answer = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { status?: string };
        } catch {
          // not JSON: the HTTP status says it
        }
        resolve(answer.status ?? `http_${res.statusCode}`);
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(payload);
  });
}

/** receiveDelivery in this process (stdio has no listener): the same ingress the HTTP handler calls. */
export const coreDeliverer =
  (core: Core): Deliver =>
  async (token, body, headers) => {
    const out = await receiveDelivery(core, token, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      query: {},
      contentType: 'application/json',
      raw: Buffer.from(JSON.stringify(body)),
      sourceIp: '127.0.0.1',
    });
    return 'delivery' in out ? out.delivery : 'not_found';
  };

const pad = (n: number, w = 4) => String(n).padStart(w, '0');

function booking(i: number) {
  // spread over the studios (7 is prime to 30: every studio in turn), every 25th for a studio that does not exist
  const location = i % 25 === 24 ? 'studio-99' : `studio-${pad(((i * 7) % STUDIO_COUNT) + 1, 2)}`;
  return {
    id: `bk_demo_${pad(i)}`,
    event: i % 12 === 11 ? 'class.cancelled' : 'class.booked',
    location_id: location,
    client_id: String(100_000 + ((i * 37) % 900)),
    class: { id: `cls_${pad((i * 13) % 60, 3)}`, name: ['Spin 7am', 'Yoga Flow', 'HIIT 45', 'Pilates Core'][i % 4], starts_at: new Date(Date.now() + (i % 48) * 3_600_000).toISOString() },
  };
}

function payment(i: number, changed: boolean) {
  const cents = 1500 + ((i * 733) % 20_000);
  return {
    id: `evt_demo_${pad(i)}`,
    object: 'event',
    type: 'payment_intent.succeeded',
    created: Math.floor(Date.now() / 1000),
    data: { object: { id: `pi_demo_${pad(i)}`, object: 'payment_intent', ...(changed ? { amount_cents: cents } : { amount: cents }), currency: 'usd', customer: `cus_demo_${pad(i % 9, 2)}` } },
  };
}

const order = (i: number) => ({ order_id: `ord_test_${pad(i)}`, total_cents: 990 + i * 10 });

interface Send {
  token: string;
  body: unknown;
  headers: Record<string, string>;
}

/** The demo automations' ids and webhook tokens (null when the demo world is not on this database). */
async function demoHooks(core: Core): Promise<{ ids: string[]; tokens: Record<keyof typeof DEMO_AUTOMATIONS, string> } | null> {
  const tokens = {} as Record<keyof typeof DEMO_AUTOMATIONS, string>;
  const ids: string[] = [];
  for (const [key, { account: slug, name }] of Object.entries(DEMO_AUTOMATIONS) as [keyof typeof DEMO_AUTOMATIONS, { account: string; name: string }][]) {
    const [account] = await core.db.select().from(accounts).where(and(eq(accounts.tenantId, core.tenantId), eq(accounts.slug, slug)));
    const row = account ? await resolveAutomation(core, account, name).catch(() => null) : null;
    if (!row) return null;
    tokens[key] = webhookToken(core, row);
    ids.push(row.id);
  }
  return { ids, tokens };
}

/** Whether the demo history should be played: the demo world is here and its automations have never received a delivery. */
export async function demoHistoryMissing(core: Core): Promise<boolean> {
  const hooks = await demoHooks(core);
  if (!hooks) return false;
  const [any] = await core.db.select({ id: webhookDeliveries.id }).from(webhookDeliveries).where(inArray(webhookDeliveries.automationId, hooks.ids)).limit(1);
  return !any;
}

export interface DemoHistory {
  /** deliveries sent, by the status ingress gave them */
  deliveries: Record<string, number>;
  /** the demo automations' executions, by status, once the worker has run them */
  executions: Record<string, number>;
}

/**
 * Send the demo's deliveries and wait until the worker has run them (up to `drainMs` per phase).
 * `signal` stops it between deliveries (the process is shutting down).
 */
export async function playDemoHistory(core: Core, deliver: Deliver, opts: { signal?: AbortSignal; drainMs?: number } = {}): Promise<DemoHistory | null> {
  const hooks = await demoHooks(core);
  if (!hooks) return null;
  const { tokens } = hooks;
  const mb = { 'user-agent': 'BookingSystem-Webhooks/2.1 (demo)' };
  const stripe = { 'user-agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks) (demo)' };
  const sandbox = { 'user-agent': 'curl/8.5.0' };
  const range = (from: number, n: number) => Array.from({ length: n }, (_, k) => from + k);
  const phases: Send[][] = [
    [
      ...range(0, OLD_PAYMENTS).map((i) => ({ token: tokens.payments, body: payment(i, false), headers: stripe })),
      ...range(0, BOOKINGS_PER_PHASE).map((i) => ({ token: tokens.bookings, body: booking(i), headers: mb })),
      ...range(0, SANDBOX_PER_PHASE).map((i) => ({ token: tokens.sandbox, body: order(i), headers: sandbox })),
    ],
    [
      ...range(OLD_PAYMENTS, NEW_PAYMENTS).map((i) => ({ token: tokens.payments, body: payment(i, true), headers: stripe })),
      // Stripe retrying two events it thinks were not received: duplicates
      ...[OLD_PAYMENTS + 2, OLD_PAYMENTS + 12].map((i) => ({ token: tokens.payments, body: payment(i, true), headers: stripe })),
      ...range(BOOKINGS_PER_PHASE, BOOKINGS_PER_PHASE).map((i) => ({ token: tokens.bookings, body: booking(i), headers: mb })),
      ...range(SANDBOX_PER_PHASE, SANDBOX_PER_PHASE).map((i) => ({ token: tokens.sandbox, body: order(i), headers: sandbox })),
    ],
  ];
  const deliveries: Record<string, number> = {};
  for (const phase of phases) {
    let next = 0;
    const lane = async () => {
      while (next < phase.length && !opts.signal?.aborted) {
        const s = phase[next++]!;
        const status = await deliver(s.token, s.body, s.headers);
        deliveries[status] = (deliveries[status] ?? 0) + 1;
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
    if (!(await drained(core, hooks.ids, opts.drainMs ?? 300_000, opts.signal))) break;
  }
  const rows = await core.db.select({ status: executions.status, n: count() }).from(executions).where(inArray(executions.automationId, hooks.ids)).groupBy(executions.status);
  return { deliveries, executions: Object.fromEntries(rows.map((r) => [r.status, r.n])) };
}

/** Wait until none of the automations' executions is queued or running; false when stopped or out of time. */
async function drained(core: Core, ids: string[], ms: number, signal?: AbortSignal): Promise<boolean> {
  const until = Date.now() + ms;
  while (!signal?.aborted && Date.now() < until) {
    const [left] = await core.db
      .select({ n: count() })
      .from(executions)
      .where(and(inArray(executions.automationId, ids), inArray(executions.status, ['queued', 'running'])));
    if (!left?.n) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}
