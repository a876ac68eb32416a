import { accounts } from '../src/db/schema/index.js';
import type { Db } from '../src/db/client.js';

type NewAccount = typeof accounts.$inferInsert;

const PARENTS = 10;
const CHILDREN_PER_PARENT = 30;
const BATCH = 500;

const BRANDS = ['Acme Fitness', 'Globex Gyms', 'Initech Health', 'Umbrella Wellness', 'Stark Studios',
  'Wayne Athletics', 'Soylent Spa', 'Hooli Yoga', 'Vandelay Sports', 'Pied Piper Pilates'];
const FIRST = ['Northwind', 'Contoso', 'Fabrikam', 'Tailspin', 'Wingtip', 'Litware', 'Adventure', 'Blue Yonder',
  'Coho', 'Humongous', 'Lucerne', 'Margie', 'Proseware', 'Southridge', 'Trey', 'Woodgrove', 'Alpine', 'Fourth Coffee'];
const SECOND = ['Logistics', 'Bakery', 'Dental', 'Motors', 'Legal', 'Travel', 'Books', 'Bikes', 'Clinic', 'Labs',
  'Foods', 'Media', 'Energy', 'Garden', 'Pharmacy', 'Outfitters'];

const slug = (name: string, i: number) => `${name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 50)}-${i}`;

export interface SeedResult {
  rows: number;
  inserts: number;
  /** accounts whose name, slug or routing key contains "acme" */
  acme: number;
  ms: number;
}

/**
 * `total` customer accounts with batched multi-row inserts: 10 parents with 30 linked children
 * each (routing keys "loc-001"…), the rest standalone. One account in 50 is an "Acme …" business,
 * and the first parent is Acme Fitness, so `query: 'acme'` has a few hundred matches.
 */
export async function seedAccounts(db: Db, tenantId: string, total = 10_000): Promise<SeedResult> {
  const t0 = performance.now();
  let inserts = 0;
  let acme = 0;
  const parentRows: NewAccount[] = BRANDS.slice(0, PARENTS).map((name, i) => ({ tenantId, name, slug: slug(name, i), kind: 'customer' }));
  const parents = await db.insert(accounts).values(parentRows).returning({ id: accounts.id, name: accounts.name });
  inserts++;
  acme += parents.filter((p) => /acme/i.test(p.name)).length;

  const rows: NewAccount[] = [];
  for (const [pi, p] of parents.entries()) {
    for (let c = 1; c <= CHILDREN_PER_PARENT; c++) {
      const name = `${p.name} Studio ${String(c).padStart(3, '0')}`;
      rows.push({ tenantId, name, slug: slug(name, pi * 1000 + c), kind: 'customer', parentAccountId: p.id, routingKey: `loc-${String(c).padStart(3, '0')}` });
    }
  }
  for (let i = 0; rows.length + parents.length < total; i++) {
    const name = i % 50 === 0 ? `Acme ${SECOND[i % SECOND.length]} ${i}` : `${FIRST[i % FIRST.length]} ${SECOND[(i * 7) % SECOND.length]} ${i}`;
    rows.push({ tenantId, name, slug: slug(name, 100_000 + i), kind: 'customer' });
  }
  acme += rows.filter((r) => /acme/i.test(r.name)).length;

  for (let i = 0; i < rows.length; i += BATCH) {
    await db.insert(accounts).values(rows.slice(i, i + BATCH));
    inserts++;
  }
  return { rows: parents.length + rows.length, inserts, acme, ms: performance.now() - t0 };
}
