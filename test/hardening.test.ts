import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq, sql } from 'drizzle-orm';
import { buildWorld, connect, data, text, type Session, type World } from './helpers/world.js';
import { accounts, auditLog } from '../src/db/schema/index.js';
import { createUser } from '../src/core/users.js';

/** Findings of the security review of the guard, each kept fixed by a test. */
let w: World;
let admin: Session;
beforeAll(async () => {
  w = await buildWorld();
  admin = await connect(w.core, w.tokens.admin);
});
afterAll(async () => {
  await admin.close();
  await w.close();
});

const cursor = (key: unknown[]) => Buffer.from(JSON.stringify(key)).toString('base64url');
const auditCount = async () => (await w.core.db.select({ id: auditLog.id }).from(auditLog)).length;

describe('audit entries are always storable, and a change never commits without one', () => {
  it('a long reason ending in an emoji is stored, cut at a whole character', async () => {
    const s = await connect(w.core, w.tokens.switcher);
    const reason = 'r'.repeat(199) + '🔥 urgent';
    data(await s.call('switch_account', { account: 'boring-co', reason }));
    const [entry] = await w.core.db.select().from(auditLog).where(eq(auditLog.tool, 'switch_account')).orderBy(sql`${auditLog.id} desc`).limit(1);
    expect((entry!.arguments as { reason: string }).reason).toMatch(/^r{199}🔥… \(207 chars\)$/);
    await s.close();
  });

  it('refuses text PostgreSQL cannot store, and creates nothing', async () => {
    for (const name of ['Ghost \ud800 Co', 'Nul\u0000 Co']) {
      const r = await admin.call('create_account', { name });
      expect(text(r)).toMatch(/^Invalid argument 'name': text must be valid Unicode without NUL/);
    }
    const ghosts = await w.core.db.select().from(accounts).where(sql`${accounts.name} like 'Ghost%' or ${accounts.name} like 'Nul%'`);
    expect(ghosts).toHaveLength(0);
  });

  it('rolls a change back when its audit entry cannot be written', async () => {
    await w.core.db.execute(sql`alter table audit_log add constraint test_refuse check (tool <> 'create_account') not valid`);
    try {
      const before = await auditCount();
      const r = await admin.call('create_account', { name: 'Unaudited Co' });
      expect(r.isError).toBe(true);
      expect(text(r)).toMatch(/could not be recorded in the audit log, so it was not done/);
      expect(await w.core.db.select().from(accounts).where(eq(accounts.slug, 'unaudited-co'))).toHaveLength(0);
      expect(await auditCount()).toBe(before);
    } finally {
      await w.core.db.execute(sql`alter table audit_log drop constraint test_refuse`);
    }
    data(await admin.call('create_account', { name: 'Unaudited Co' }));
  });

  it('a failed switch leaves the session where it was', async () => {
    const s = await connect(w.core, w.tokens.switcher);
    await w.core.db.execute(sql`alter table audit_log add constraint test_refuse_switch check (tool <> 'switch_account') not valid`);
    try {
      expect((await s.call('switch_account', { account: 'acme-fitness', reason: 'will fail' })).isError).toBe(true);
    } finally {
      await w.core.db.execute(sql`alter table audit_log drop constraint test_refuse_switch`);
    }
    expect(data<{ acting_account: { slug: string } }>(await s.call('whoami')).acting_account.slug).toBe('sandbox');
    await s.close();
  });
});

describe('nothing reveals which accounts exist to a caller who may not see them', () => {
  it('a tool needing a permission answers the same for real and missing accounts', async () => {
    const s = await connect(w.core, w.tokens.acmeAdmin);
    const answers = new Set<string>();
    for (const child of ['boring-co', w.accounts.boring.id, 'Boring Co', 'no-such-account']) answers.add(text(await s.call('unlink_account', { child })));
    expect([...answers]).toEqual(['Access denied: unlink_account needs the admin permission.']);
    await s.close();
  });

  it('a name shared by accounts the caller cannot see reads like a missing one', async () => {
    data(await admin.call('create_account', { name: 'Secret Corp', slug: 'secret-corp-1' }));
    data(await admin.call('create_account', { name: 'Secret Corp', slug: 'secret-corp-2' }));
    const s = await connect(w.core, w.tokens.boringAdmin);
    const shared = text(await s.call('get_account', { account: 'secret corp' }));
    const missing = text(await s.call('get_account', { account: 'nothing corp' }));
    expect(shared.replace('secret corp', 'X')).toBe(missing.replace('nothing corp', 'X'));
    // a caller who may see both is asked to choose
    expect(text(await admin.call('get_account', { account: 'Secret Corp' }))).toMatch(/fits several accounts \(secret-corp-1, secret-corp-2\)/);
    await s.close();
  });

  it('a slug of one account and the name of another are ambiguous, never silently one of them', async () => {
    data(await admin.call('create_account', { name: 'studio-x', slug: 'real-studio' }));
    data(await admin.call('create_account', { name: 'Other', slug: 'studio-x' }));
    expect(text(await admin.call('get_account', { account: 'studio-x' }))).toMatch(/fits several accounts \(real-studio, studio-x\)/);
  });

  it('get_account lists children only to those who may act in them', async () => {
    const member = await connect(w.core, w.tokens.acmeMember);
    const seen = data<{ account: { children: unknown[]; children_total: number } }>(await member.call('get_account', { account: 'acme-fitness' }));
    expect(seen.account.children).toEqual([]);
    expect(seen.account.children_total).toBeGreaterThanOrEqual(2);
    const parentAdmin = await connect(w.core, w.tokens.acmeAdmin);
    const full = data<{ account: { children: { slug: string }[] } }>(await parentAdmin.call('get_account', { account: 'acme-fitness' }));
    expect(full.account.children.map((c) => c.slug)).toContain('acme-studio-01');
    await member.close();
    await parentAdmin.close();
  });
});

describe('linking', () => {
  it('keeps one level under concurrent links in both directions', async () => {
    const a = data<{ account: { slug: string } }>(await admin.call('create_account', { name: 'Race A' })).account.slug;
    const b = data<{ account: { slug: string } }>(await admin.call('create_account', { name: 'Race B' })).account.slug;
    const other = await connect(w.core, w.tokens.admin);
    const [ab, ba] = await Promise.all([
      admin.call('link_account', { child: a, parent: b, routing_key: 'x' }),
      other.call('link_account', { child: b, parent: a, routing_key: 'y' }),
    ]);
    expect([ab.isError, ba.isError].filter(Boolean)).toHaveLength(1);
    const rows = await w.core.db.select().from(accounts).where(sql`${accounts.slug} in (${a}, ${b})`);
    expect(rows.filter((r) => r.parentAccountId !== null)).toHaveLength(1);
    await other.close();
  });

  it('refuses to move a linked child to another parent, and unlink needs admin of the parent too', async () => {
    expect(text(await admin.call('link_account', { child: 'acme-studio-02', parent: 'boring-co', routing_key: 'z' }))).toMatch(/already linked to a parent; unlink it first/);
    // admin permission and admin of the child, but nothing in its parent
    const { token } = await createUser(w.core, { email: 'child-admin@switchboard.test', name: 'C', account: w.accounts.studio2, role: 'admin', permissions: ['admin'] });
    const s = await connect(w.core, token);
    const r = await s.call('unlink_account', { child: 'acme-studio-02' });
    expect(text(r)).toMatch(/^Access denied/);
    expect((await w.core.db.select().from(accounts).where(eq(accounts.id, w.accounts.studio2.id)))[0]!.parentAccountId).toBe(w.accounts.acme.id);
    await s.close();
  });

  it('trims routing keys, so that " studio-01" cannot pass the uniqueness of "studio-01"', async () => {
    const r = await admin.call('create_account', { name: 'Spacey', parent: 'acme-fitness', routing_key: ' studio-01' });
    expect(text(r)).toMatch(/routing key 'studio-01' under that parent is already taken/);
  });
});

describe('other hardening', () => {
  it('checks every part of a cursor', async () => {
    for (const [tool, c] of [
      ['list_accounts', cursor(['a', 'sbt_secretlooking'])],
      ['audit_log', cursor([1.5])],
      ['audit_log', cursor([1e30])],
    ] as const) {
      const r = await admin.call(tool, { cursor: c });
      expect(text(r), tool).toMatch(/cursor is not valid/);
    }
  });

  it('adding users to the system setup account needs the admin permission', async () => {
    const s = await connect(w.core, w.tokens.switcher);
    const r = await s.call('create_user', { account: 'system', email: 'sneaky@switchboard.test', name: 'S', role: 'owner' });
    expect(text(r)).toMatch(/^Access denied: adding users to the system setup account needs the admin permission/);
    await s.close();
  });

  it('records a call that names its account without the session switch', async () => {
    const s = await connect(w.core, w.tokens.switcher);
    data(await s.call('switch_account', { account: 'acme-fitness', reason: 'switch id test' }));
    data(await s.call('get_account', { account: 'boring-co' }));
    const [entry] = await w.core.db.select().from(auditLog).where(eq(auditLog.tool, 'get_account')).orderBy(sql`${auditLog.id} desc`).limit(1);
    expect(entry).toMatchObject({ accountId: w.accounts.boring.id, switchId: null });
    await s.close();
  });
});
