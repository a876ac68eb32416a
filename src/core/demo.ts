import { and, asc, count, eq, inArray, sql } from 'drizzle-orm';
import { accounts, apps, users } from '../db/schema/index.js';
import { onTx, type Core } from './core.js';
import { UserError } from './errors.js';
import { createAccount, type Account } from './accounts.js';
import { createUser } from './users.js';
import type { Permission, Role } from '../db/schema/index.js';
import { randomBytes } from 'node:crypto';
import { addConnection } from './connections.js';
import { shareConnection } from './connection-lifecycle.js';
import { createAutomation, getRevision, resolveAutomation, updateAutomation } from './automations.js';
import { createApp } from './apps.js';
import type { Definition } from './automation-definition.js';
import { DEMO_HOST, freeDemoPort, LEDGER_PATH, LEDGER_PREFIX, MINDBODY_LIVE_PREFIX, MINDBODY_PATH, MINDBODY_REVOKED_PREFIX } from './demo-apps-spec.js';

export const STUDIO_COUNT = 30;
/** the studios whose own Mindbody key was revoked: their bookings fail with 401 (then connection_expired) */
export const REVOKED_STUDIOS = ['04', '11'];

/** The demo apps (custom apps served by the process itself on loopback: src/http/demo-apps.ts) */
export const DEMO_MINDBODY = 'demo-mindbody';
export const DEMO_LEDGER = 'demo-ledger';
const DEMO_APP_SLUGS = [DEMO_MINDBODY, DEMO_LEDGER];

/** The demo's webhook automations, by account slug: the demo history sends their deliveries. */
export const DEMO_AUTOMATIONS = {
  bookings: { account: 'acme-fitness', name: 'Class bookings → Mindbody client check (demo)' },
  payments: { account: 'boring-co', name: 'Stripe payments → ledger (demo)' },
  sandbox: { account: 'sandbox', name: 'Test orders → ledger (demo)' },
} as const;

export interface DemoUser {
  email: string;
  name: string;
  home: string;
  role: Role;
  permissions: Permission[];
  token: string;
  about: string;
}

export interface DemoResult {
  accounts: { slug: string; name: string; children?: number }[];
  users: DemoUser[];
}

/**
 * A realistic world on an initialized database: a fitness chain with 30 linked studios,
 * a second customer, and users with and without Switch Account; and the demo apps with the
 * automations that call them (docs/demo.md), pointed at `demoOrigin` (default: a port free now
 * on 127.0.0.1). Their history is not made here: serve plays it (src/core/demo-history.ts).
 */
export async function seedDemo(core: Core, opts: { demoOrigin?: string } = {}): Promise<DemoResult> {
  const [existing] = await core.db
    .select({ n: count() })
    .from(accounts)
    .where(eq(accounts.slug, 'acme-fitness'));
  if ((existing?.n ?? 0) > 0) throw new UserError('The demo world is already seeded on this database.', 'conflict');

  // the demo apps' address: a port free now, which the demo apps take when they start (src/app.ts startDemo)
  const origin = opts.demoOrigin ?? `http://${DEMO_HOST}:${await freeDemoPort()}`;
  const [creator] = await core.db
    .select({ id: users.id })
    .from(users)
    .where(and(eq(users.tenantId, core.tenantId), sql`'admin' = any(${users.permissions})`))
    .orderBy(asc(users.createdAt))
    .limit(1);

  return core.db.transaction(async (tx) => {
    const c = onTx(core, tx);
    const acme = await createAccount(c, { name: 'Acme Fitness', slug: 'acme-fitness' });
    const studios: Account[] = [];
    for (let i = 1; i <= STUDIO_COUNT; i++) {
      const n = String(i).padStart(2, '0');
      studios.push(
        await createAccount(c, { name: `Acme Fitness Studio ${n}`, slug: `acme-studio-${n}`, parent: acme, routingKey: `studio-${n}` }),
      );
    }
    const boring = await createAccount(c, { name: 'Boring Co', slug: 'boring-co' });
    const [sandbox] = await tx.select().from(accounts).where(eq(accounts.slug, 'sandbox'));

    const people: Omit<DemoUser, 'token'>[] = [
      { email: 'support@integrator.example', name: 'Sam Support', home: sandbox!.slug, role: 'admin', permissions: ['switch_account'], about: 'integrator engineer with Switch Account' },
      { email: 'owner@acme-fitness.example', name: 'Avery Acme', home: acme.slug, role: 'owner', permissions: [], about: 'owner of Acme Fitness: admin of all 30 linked studios, no Switch Account' },
      { email: 'manager@studio-01.example', name: 'Morgan Studio', home: studios[0]!.slug, role: 'member', permissions: [], about: 'member of one studio only' },
      { email: 'ops@boring.example', name: 'Blair Boring', home: boring.slug, role: 'admin', permissions: [], about: 'admin of Boring Co only' },
    ];
    const bySlug = new Map([acme, boring, sandbox!, ...studios].map((a) => [a.slug, a]));
    const users: DemoUser[] = [];
    for (const p of people) {
      const { token } = await createUser(c, { email: p.email, name: p.name, account: bySlug.get(p.home)!, role: p.role, permissions: p.permissions });
      users.push({ ...p, token });
    }

    // connections with made-up credentials (random, so nothing here is a real or reused key)
    const fake = (prefix: string) => `${prefix}${randomBytes(12).toString('hex')}`;
    const mindbody = await addConnection(c, acme, {
      app: 'mindbody',
      credentials: { api_key: fake('demo-'), site_id: '-99' },
      notes: 'One Mindbody site for the whole chain; shared with every studio.',
      createdBy: null,
    });
    await shareConnection(c, acme, mindbody.row, true);
    const stripe = await addConnection(c, boring, { app: 'stripe', credentials: { secret_key: fake('sk_test_demo_') }, notes: 'Test mode.', createdBy: null });
    await createAutomation(c, boring, {
      name: 'Sync Stripe invoices to the ledger',
      createdBy: null,
      definition: {
        trigger: { type: 'webhook', dedupe: { key: 'trigger.body.id' } },
        routing: null,
        retries: { max: 3 },
        steps: [
          { id: 'paid', kind: 'filter', condition: 'trigger.body.type = "invoice.paid"' },
          { id: 'invoice', kind: 'http', method: 'GET', url: 'https://api.stripe.com/v1/invoices/{{ trigger.body.data.object.id }}', connection: stripe.row.id },
          { id: 'entry', kind: 'transform', value: { invoice: '{{ steps.invoice.output.body.id }}', amount: '{{ steps.invoice.output.body.amount_paid / 100 }}' } },
        ],
      },
    });
    for (const studio of studios.slice(0, 3)) {
      await createAutomation(c, studio, {
        name: `New Mindbody bookings → welcome email (${studio.routingKey})`,
        createdBy: null,
        definition: {
          trigger: { type: 'webhook', dedupe: null },
          routing: null,
          retries: { max: 3 },
          steps: [
            { id: 'booking', kind: 'filter', condition: 'trigger.body.event = "booking.created"' },
            { id: 'client', kind: 'http', method: 'GET', url: 'https://api.mindbodyonline.com/public/v6/client/clients', query: { clientIds: '{{ trigger.body.client_id }}' }, connection: 'mindbody' },
          ],
        },
      });
    }
    await seedDemoApps(c, { acme, studios, boring, sandbox: sandbox! }, origin, creator?.id ?? null);
    return {
      accounts: [
        { slug: acme.slug, name: acme.name, children: studios.length },
        { slug: boring.slug, name: boring.name },
        { slug: sandbox!.slug, name: sandbox!.name },
      ],
      users,
    };
  });
}

/**
 * The part of the demo that runs: two demo apps, Acme's class-booking webhook routed to its
 * studios with the Mindbody demo connection it shares (studios 04 and 11 have their own, with a
 * revoked key, which wins over the shared one: a routed child resolves a connection named by app
 * among its own first), Boring Co's payment webhook whose sender changed its payload (the ledger
 * refuses the entry), and a healthy automation in the sandbox.
 */
async function seedDemoApps(
  c: Core,
  a: { acme: Account; studios: Account[]; boring: Account; sandbox: Account },
  origin: string,
  creator: string | null,
): Promise<void> {
  const random = () => randomBytes(12).toString('hex');
  // createApp wants its creator; the demo's is the tenant's first admin (there is always one after init)
  const createdBy = creator as string;
  await createApp(c, {
    slug: DEMO_MINDBODY,
    name: 'Mindbody (demo app)',
    description: 'DEMO APP: a stand-in for Mindbody served by this Switchboard process on loopback (demo mode only). Not the real Mindbody.',
    auth: [{ kind: 'api_key', header: 'Api-Key', fields: [{ name: 'api_key', label: 'API key', secret: true }, { name: 'site_id', label: 'Site id', secret: false }] }],
    baseUrl: origin + MINDBODY_PATH,
    defaultPerMinute: 3000,
    createdBy,
  });
  await createApp(c, {
    slug: DEMO_LEDGER,
    name: 'Ledger (demo app)',
    description: 'DEMO APP: a bookkeeping ledger served by this Switchboard process on loopback (demo mode only). POST /entries {amount, currency, reference}.',
    auth: [{ kind: 'bearer', fields: [{ name: 'token', label: 'API token', secret: true }] }],
    baseUrl: origin + LEDGER_PATH,
    defaultPerMinute: 3000,
    createdBy,
  });

  const shared = await addConnection(c, a.acme, {
    app: DEMO_MINDBODY,
    credentials: { api_key: MINDBODY_LIVE_PREFIX + random(), site_id: '-99' },
    notes: 'Demo: the chain-wide Mindbody site, shared with every studio.',
    createdBy: null,
  });
  await shareConnection(c, a.acme, shared.row, true);
  for (const n of REVOKED_STUDIOS) {
    const studio = a.studios[Number(n) - 1]!;
    await addConnection(c, studio, {
      app: DEMO_MINDBODY,
      credentials: { api_key: MINDBODY_REVOKED_PREFIX + random(), site_id: `-${n}` },
      notes: `Demo: studio ${n} connected its own Mindbody site; its API key has since been revoked in Mindbody.`,
      createdBy: null,
    });
  }
  for (const account of [a.boring, a.sandbox]) {
    await addConnection(c, account, { app: DEMO_LEDGER, credentials: { token: LEDGER_PREFIX + random() }, notes: 'Demo: the ledger the payments are booked in.', createdBy: null });
  }

  const webhook = (steps: Definition['steps'], extra: Partial<Definition> = {}): Definition => ({
    trigger: { type: 'webhook', dedupe: null },
    routing: null,
    retries: { max: 3 },
    steps,
    ...extra,
  });
  const mb = origin + MINDBODY_PATH;
  const ledger = origin + LEDGER_PATH;
  await createAutomation(c, a.acme, {
    name: DEMO_AUTOMATIONS.bookings.name,
    description: 'Each class booking from the booking system runs in its studio (routing key location_id): the client is looked up in Mindbody and the booking counted.',
    createdBy: null,
    definition: webhook(
      [
        { id: 'booked', kind: 'filter', condition: 'trigger.body.event = "class.booked"' },
        { id: 'client', kind: 'http', method: 'GET', url: `${mb}/client/clients`, query: { clientIds: '{{ trigger.body.client_id }}' }, connection: DEMO_MINDBODY },
        { id: 'count', kind: 'store', action: 'increment', key: 'bookings' },
      ],
      { routing: { key: 'body.location_id' } },
    ),
  });
  await createAutomation(c, a.boring, {
    name: DEMO_AUTOMATIONS.payments.name,
    description: "Books every succeeded Stripe payment in the ledger (amount in cents, from the event's data.object.amount).",
    createdBy: null,
    definition: webhook(
      [
        { id: 'succeeded', kind: 'filter', condition: 'trigger.body.type = "payment_intent.succeeded"' },
        {
          id: 'book',
          kind: 'http',
          method: 'POST',
          url: `${ledger}/entries`,
          connection: DEMO_LEDGER,
          body: { amount: '{{ trigger.body.data.object.amount }}', currency: '{{ trigger.body.data.object.currency }}', reference: '{{ trigger.body.data.object.id }}' },
        },
      ],
      { trigger: { type: 'webhook', dedupe: { key: 'trigger.body.id' } } },
    ),
  });
  await createAutomation(c, a.sandbox, {
    name: DEMO_AUTOMATIONS.sandbox.name,
    description: 'The integrator\'s test automation: books test orders in the demo ledger.',
    createdBy: null,
    definition: webhook([
      { id: 'book', kind: 'http', method: 'POST', url: `${ledger}/entries`, connection: DEMO_LEDGER, body: { amount: '{{ trigger.body.total_cents }}', currency: 'usd', reference: '{{ trigger.body.order_id }}' } },
    ]),
  });
}

/** The demo apps' base URLs when this database holds the demo world (its demo apps exist), else null. */
export async function demoAppsOf(core: Core): Promise<Map<string, string> | null> {
  const rows = await core.db
    .select({ slug: apps.slug, baseUrl: apps.baseUrl })
    .from(apps)
    .where(and(eq(apps.tenantId, core.tenantId), inArray(apps.slug, DEMO_APP_SLUGS)));
  if (rows.length !== DEMO_APP_SLUGS.length) return null;
  return new Map(rows.map((r) => [r.slug, r.baseUrl ?? '']));
}

/**
 * Point the demo apps and the demo automations at `origin`, where the demo apps run now (their
 * port was taken since the last start): the apps' base URLs, then each demo automation's step
 * URLs, in a new revision that says why. Nothing when they already point there.
 */
export async function pointDemoAppsAt(core: Core, origin: string): Promise<boolean> {
  const current = await demoAppsOf(core);
  if (!current) return false;
  const old = new URL([...current.values()][0]!).origin;
  if (old === origin) return false;
  const swap = (u: string) => (u.startsWith(old) ? origin + u.slice(old.length) : u);
  for (const [slug, base] of current) {
    await core.db.update(apps).set({ baseUrl: swap(base) }).where(and(eq(apps.tenantId, core.tenantId), eq(apps.slug, slug)));
  }
  for (const { account: slug, name } of Object.values(DEMO_AUTOMATIONS)) {
    const [account] = await core.db.select().from(accounts).where(and(eq(accounts.tenantId, core.tenantId), eq(accounts.slug, slug)));
    if (!account) continue;
    const row = await resolveAutomation(core, account, name).catch(() => null);
    if (!row) continue;
    const definition = (await getRevision(core, account, row.id, row.revision)).definition as Definition;
    const steps = definition.steps.map((s) => (s.kind === 'http' ? { ...s, url: swap(s.url) } : s));
    await updateAutomation(core, account, row, { definition: { steps }, note: `the demo apps moved to ${origin}`, by: null });
  }
  return true;
}

