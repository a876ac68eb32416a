import { count, eq } from 'drizzle-orm';
import { accounts } from '../db/schema/index.js';
import type { Core } from './core.js';
import { UserError } from './errors.js';
import { createAccount, type Account } from './accounts.js';
import { createUser } from './users.js';
import type { Permission, Role } from '../db/schema/index.js';
import { randomBytes } from 'node:crypto';
import { addConnection } from './connections.js';
import { shareConnection } from './connection-lifecycle.js';
import { createAutomation } from './automations.js';

export const STUDIO_COUNT = 30;

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
 * a second customer, and users with and without Switch Account.
 */
export async function seedDemo(core: Core): Promise<DemoResult> {
  const [existing] = await core.db
    .select({ n: count() })
    .from(accounts)
    .where(eq(accounts.slug, 'acme-fitness'));
  if ((existing?.n ?? 0) > 0) throw new UserError('The demo world is already seeded on this database.', 'conflict');

  return core.db.transaction(async (tx) => {
    const c: Core = { ...core, db: tx as unknown as Core['db'] };
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
