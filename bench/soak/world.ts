import { sql } from 'drizzle-orm';
import type { Database } from '../../src/db/client.js';
import { initialize } from '../../src/core/tenants.js';
import { createAccount, type Account } from '../../src/core/accounts.js';
import { createUser } from '../../src/core/users.js';
import { addConnection } from '../../src/core/connections.js';
import { shareConnection } from '../../src/core/connection-lifecycle.js';
import { createAutomation } from '../../src/core/automations.js';
import type { Definition } from '../../src/core/automation-definition.js';
import { webhookPath, webhookToken } from '../../src/core/webhooks.js';
import { Keyring, newMasterKey } from '../../src/core/keyring.js';
import type { Core } from '../../src/core/core.js';

/**
 * The soak's world (bench/soak.ts), written through the core functions as the tools would:
 *
 *   summit-fitness (parent) ── summit-studio-01 … -12 (routing keys studio-01 …), using the
 *                              parent's shared "Bookings API" connection
 *   20 standalone customers, each with its own "Orders API" connection and another app's
 *   the system setup account sharing a Slack connection with everyone
 *
 * Every http connection points at the local app (`appBase`, 127.0.0.1) with a sealed bearer token.
 * Automations, each with a webhook trigger: the parent's bookings, routed to its studios by
 * `location_id`; every customer's orders (transform → POST /orders → transform), which filters
 * events that are not `order.created`; every fourth customer's ledger sync, which the app refuses
 * (422): failures for debug_webhook and check_health to find.
 *
 * Users, at most PER_USER sessions each (serve keeps 32 per user): support staff with the Switch
 * Account permission (home: the sandbox), and one in four a franchise admin (admin of the parent,
 * who may act in its studios but in no other customer).
 */

export const PER_USER = 10;
const STUDIOS = 12;
const CUSTOMERS = [
  'Northwind Logistics', 'Contoso Bakery', 'Fabrikam Dental', 'Tailspin Motors', 'Wingtip Legal', 'Litware Travel', 'Adventure Books',
  'Blue Yonder Bikes', 'Coho Clinic', 'Humongous Labs', 'Lucerne Foods', 'Margie Media', 'Proseware Energy', 'Southridge Garden',
  'Trey Pharmacy', 'Woodgrove Outfitters', 'Alpine Dental', 'Fourth Coffee', 'Graphic Design Co', 'Relecloud Fitness',
];

export type SoakUserKind = 'support' | 'franchise';

export interface SoakHook {
  /** what the sender counts it as */
  label: 'booking' | 'order' | 'order_update' | 'ledger';
  /** /hooks/<token> */
  path: string;
  /** share of the webhook traffic, summing to 1 over all hooks */
  weight: number;
  body(i: number): unknown;
}

export interface SoakWorld {
  master: Buffer;
  users: { token: string; kind: SoakUserKind }[];
  /** slugs a support session switches into (every customer: the parent, its studios, the others) */
  customers: string[];
  /** slugs a franchise admin switches into (the studios) */
  studios: string[];
  /** the parent, which a session checks with scope "children" */
  parent: string;
  /** customers a franchise admin may not read: its expected refusals */
  foreign: string[];
  /** a connection of each account a session reads the usage of (own, or the parent's shared one) */
  connectionOf: Record<string, string>;
  hooks: SoakHook[];
}

export async function seedSoakWorld(database: Database, opts: { appBase: string; sessions: number }): Promise<SoakWorld> {
  const master = newMasterKey();
  const init = await initialize(database.db, { adminEmail: 'soak@switchboard.test', switchMinutes: 30 });
  const core: Core = { db: database.db, tenantId: init.tenant.id, switchMinutes: 30, keys: new Keyring(master), secretArgs: true, outbound: { allow: ['127.0.0.1'] } };
  const bearer = (n: string) => ({ auth_kind: 'bearer', base_url: opts.appBase, token: `soak-${n}-0123456789abcdef` });

  const parent = await createAccount(core, { name: 'Summit Fitness', slug: 'summit-fitness' });
  const studios: Account[] = [];
  for (let i = 1; i <= STUDIOS; i++) {
    const n = String(i).padStart(2, '0');
    studios.push(await createAccount(core, { name: `Summit Studio ${n}`, slug: `summit-studio-${n}`, parent, routingKey: `studio-${n}` }));
  }
  const others: Account[] = [];
  for (const name of CUSTOMERS) others.push(await createAccount(core, { name }));

  const connectionOf: Record<string, string> = {};
  const bookings = await addConnection(core, parent, { app: 'http', name: 'Bookings API', credentials: bearer('bookings'), createdBy: null });
  await shareConnection(core, parent, bookings.row, true);
  await addConnection(core, parent, { app: 'stripe', credentials: { secret_key: 'sk_test_soakSummit0123456789' }, createdBy: null });
  connectionOf[parent.slug] = 'http/Bookings API';
  for (const [i, s] of studios.entries()) {
    connectionOf[s.slug] = 'http/Bookings API'; // the parent's, shared
    if (i % 2 === 0) await addConnection(core, s, { app: 'slack', credentials: { bot_token: `xoxb-soak-${i}-0123456789` }, createdBy: null });
  }
  const slack = await addConnection(core, init.systemAccount, { app: 'slack', name: 'Status Alerts', credentials: { bot_token: 'xoxb-soak-system-0123456789' }, createdBy: null });
  await shareConnection(core, init.systemAccount, slack.row, true);
  for (const [i, a] of others.entries()) {
    await addConnection(core, a, { app: 'http', name: 'Orders API', credentials: bearer(a.slug), createdBy: null });
    if (i % 2) await addConnection(core, a, { app: 'stripe', credentials: { secret_key: `sk_test_soak${i}0123456789abcdef` }, createdBy: null });
    else await addConnection(core, a, { app: 'hubspot', credentials: { access_token: `pat-soak-${i}-0123456789abcdef` }, createdBy: null });
    connectionOf[a.slug] = 'http/Orders API';
  }
  // the local app answers every call: no connection's rate limit should hold a run back
  await database.db.execute(sql`update connections set rate_per_minute = 100000000 where app = 'http'`);

  const webhook = (steps: Definition['steps'], extra: Partial<Definition> = {}): Definition => ({
    trigger: { type: 'webhook', dedupe: null },
    routing: null,
    retries: { max: 2 },
    steps,
    ...extra,
  });
  const hooks: SoakHook[] = [];
  const hookOf = (row: { id: string; webhookGeneration: number }) => webhookPath(webhookToken(core, row));

  const booked = await createAutomation(core, parent, {
    name: 'Bookings → studio',
    createdBy: null,
    definition: webhook(
      [
        { id: 'booked', kind: 'filter', condition: 'trigger.body.event = "class.booked"' },
        { id: 'book', kind: 'http', method: 'POST', url: `${opts.appBase}/bookings`, body: { client: '{{ trigger.body.client_id }}' }, connection: 'http/Bookings API' },
        { id: 'count', kind: 'store', action: 'increment', key: 'bookings' },
      ],
      { routing: { key: 'body.location_id' } },
    ),
  });
  hooks.push({
    label: 'booking',
    path: hookOf(booked.row),
    weight: 0.3,
    body: (i) => ({ event: 'class.booked', location_id: `studio-${String(1 + (i % STUDIOS)).padStart(2, '0')}`, client_id: `c-${i}` }),
  });

  const orders: string[] = [];
  const ledgers: string[] = [];
  for (const [i, a] of others.entries()) {
    const { row } = await createAutomation(core, a, {
      name: 'Orders → API',
      createdBy: null,
      definition: webhook([
        { id: 'created', kind: 'filter', condition: 'trigger.body.event = "order.created"' },
        { id: 'shape', kind: 'transform', value: { order: '{{ trigger.body.i }}', customer: a.slug } },
        { id: 'send', kind: 'http', method: 'POST', url: `${opts.appBase}/orders`, body: '{{ steps.shape.output }}', connection: 'http/Orders API' },
        { id: 'done', kind: 'transform', value: '{{ steps.send.output.status }}' },
      ]),
    });
    orders.push(hookOf(row));
    if (i % 4 === 0) {
      const ledger = await createAutomation(core, a, {
        name: 'Invoices → ledger',
        createdBy: null,
        definition: webhook(
          [{ id: 'book', kind: 'http', method: 'POST', url: `${opts.appBase}/ledger`, body: { cents: '{{ trigger.body.amount }}' }, connection: 'http/Orders API' }],
          { retries: { max: 0 } },
        ),
      });
      ledgers.push(hookOf(ledger.row));
    }
  }
  const each = (paths: string[], label: SoakHook['label'], weight: number, body: SoakHook['body']) =>
    paths.forEach((path) => hooks.push({ label, path, weight: weight / paths.length, body }));
  each(orders, 'order', 0.55, (i) => ({ event: 'order.created', i, total: 1000 + i }));
  each(orders, 'order_update', 0.05, (i) => ({ event: 'order.updated', i }));
  each(ledgers, 'ledger', 0.1, (i) => ({ invoice: `inv-${i}`, amount: 100 + i }));

  const users: SoakWorld['users'] = [];
  const count = Math.max(2, Math.ceil(opts.sessions / PER_USER));
  for (let i = 0; i < count; i++) {
    const kind: SoakUserKind = i % 4 === 1 ? 'franchise' : 'support';
    const { token } =
      kind === 'support'
        ? await createUser(core, { email: `support-${i}@soak.test`, name: `Support ${i}`, account: init.sandboxAccount, role: 'member', permissions: ['switch_account'] })
        : await createUser(core, { email: `franchise-${i}@soak.test`, name: `Franchise admin ${i}`, account: parent, role: 'admin' });
    users.push({ token, kind });
  }
  // planner statistics for the tables the sessions read (PGlite runs no autovacuum)
  await database.db.execute(sql`analyze`);
  return {
    master,
    users,
    customers: [parent, ...studios, ...others].map((a) => a.slug),
    studios: studios.map((s) => s.slug),
    parent: parent.slug,
    foreign: others.map((a) => a.slug),
    connectionOf,
    hooks,
  };
}
