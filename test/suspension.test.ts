import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { desc, eq } from 'drizzle-orm';
import { buildWorld, connect, data, text, type Session, type World } from './helpers/world.js';
import { accounts, auditLog } from '../src/db/schema/index.js';
import { addConnection } from '../src/core/connections.js';

/**
 * set_account_status: a suspended account refuses every change and every read by non-admins,
 * keeps everything it holds, and lifting the suspension restores it all.
 */

let w: World;
let admin: Session;
beforeAll(async () => {
  w = await buildWorld();
  admin = await connect(w.core, w.tokens.admin);
  await addConnection(w.core, w.accounts.boring, { app: 'stripe', credentials: { secret_key: 'sk_test_' + 'x'.repeat(24) }, createdBy: w.userIds.boringAdmin });
});
afterAll(async () => {
  await admin.close();
  await w.close();
});

type Acct = { account: { slug: string; status: string; suspended_reason: string | null } };
const SUSPENDED = /^Account 'boring-co' is suspended: /;

describe('set_account_status', () => {
  it('needs the admin permission, a reason, and never suspends the system account', async () => {
    const boringAdmin = await connect(w.core, w.tokens.boringAdmin);
    expect(text(await boringAdmin.call('set_account_status', { account: 'boring-co', status: 'suspended', reason: 'testing' }))).toMatch(
      /^Access denied: set_account_status needs the admin permission/,
    );
    expect(text(await admin.call('set_account_status', { account: 'boring-co', status: 'suspended' }))).toMatch(/Missing required argument 'reason'/);
    expect(text(await admin.call('set_account_status', { account: 'system', status: 'suspended', reason: 'lock it all' }))).toMatch(/system setup account cannot be suspended/);
    await boringAdmin.close();
  });

  it('suspends: changes are refused for everyone, reads for all but admins; everything stays', async () => {
    const r = data<{ account: { status: string }; changed: boolean }>(
      await admin.call('set_account_status', { account: 'boring-co', status: 'suspended', reason: 'invoice 2211 unpaid' }),
    );
    expect(r).toMatchObject({ account: { status: 'suspended' }, changed: true });
    const [row] = await w.core.db.select().from(accounts).where(eq(accounts.id, w.accounts.boring.id));
    expect(row).toMatchObject({ status: 'suspended', statusReason: 'invoice 2211 unpaid', statusChangedBy: w.userIds.admin });

    const viewer = await connect(w.core, w.tokens.boringViewer);
    const boringAdmin = await connect(w.core, w.tokens.boringAdmin);
    // reads: its admins (and tenant admins) may, its viewers may not
    expect(data<Acct>(await boringAdmin.call('get_account', { account: 'boring-co' })).account).toMatchObject({
      status: 'suspended',
      suspended_reason: 'invoice 2211 unpaid',
    });
    expect(data<{ connections: unknown }>(await boringAdmin.call('list_connections', { account: 'boring-co' }))).toBeTruthy();
    expect(data(await admin.call('audit_log', { account: 'boring-co' }))).toBeTruthy();
    const denied = await viewer.call('get_account', { account: 'boring-co' });
    expect(text(denied)).toMatch(SUSPENDED);
    expect(text(denied)).toMatch(/only its admins can read it/);
    expect(text(denied)).not.toContain('invoice');
    // changes: nobody, not even the tenant admin
    for (const s of [boringAdmin, admin]) {
      for (const [tool, args] of [
        ['create_user', { account: 'boring-co', email: 'new@boring.test', name: 'N', role: 'member' }],
        ['add_connection', { account: 'boring-co', app: 'hubspot', credentials: { access_token: 'pat-na1-' + 'y'.repeat(24) } }],
        ['update_connection', { account: 'boring-co', connection: 'stripe', notes: 'x' }],
        ['share_connection', { account: 'boring-co', connection: 'stripe', shared: true }],
      ] as const) {
        const res = await s.call(tool, args);
        expect(res.isError, tool).toBe(true);
        expect(text(res), tool).toMatch(/is suspended: nothing can be changed in it/);
      }
    }
    // an account named in a further argument is checked too: no child under a suspended parent
    expect(text(await admin.call('link_account', { child: 'sandbox', parent: 'boring-co', routing_key: 'x' }))).toMatch(SUSPENDED);
    // entering it is reading it: admins may, to look
    const tenantAdmin = await connect(w.core, w.tokens.tenantAdmin); // member of boring with the admin permission
    expect(text(await tenantAdmin.call('switch_account', { account: 'boring-co', reason: 'look around' }))).toMatch(/only its admins can read it/);
    data(await admin.call('switch_account', { account: 'boring-co', reason: 'look around' }));
    expect(data<Acct>(await admin.call('get_account')).account.status).toBe('suspended');
    expect(text(await admin.call('update_connection', { connection: 'stripe', notes: 'x' }))).toMatch(SUSPENDED);
    data(await admin.call('switch_account', { account: 'home' }));

    // refusals are audited in the account as denied
    const [entry] = await w.core.db.select().from(auditLog).where(eq(auditLog.tool, 'update_connection')).orderBy(desc(auditLog.id)).limit(1);
    expect(entry).toMatchObject({ outcome: 'denied', accountId: w.accounts.boring.id });
    await Promise.all([viewer.close(), boringAdmin.close(), tenantAdmin.close()]);
  });

  it('is idempotent, and lifting it restores everything', async () => {
    expect(data<{ changed: boolean }>(await admin.call('set_account_status', { account: 'boring-co', status: 'suspended', reason: 'again' })).changed).toBe(false);
    const listed = data<{ accounts: { slug: string; status: string }[] }>(await admin.call('list_accounts', { query: 'boring' }));
    expect(listed.accounts.find((a) => a.slug === 'boring-co')!.status).toBe('suspended');

    const lifted = await admin.call('set_account_status', { account: 'boring-co', status: 'active', reason: 'paid' });
    expect(data<{ changed: boolean }>(lifted).changed).toBe(true);
    expect(text(lifted)).toBe('boring-co is now active.');
    const viewer = await connect(w.core, w.tokens.boringViewer);
    expect(data<Acct>(await viewer.call('get_account', { account: 'boring-co' })).account).toMatchObject({ status: 'active', suspended_reason: null });
    const conns = data<{ own: { app: string; name: string }[] }>(await viewer.call('list_connections', { account: 'boring-co' }));
    expect(conns.own.map((c) => `${c.app}/${c.name}`)).toEqual(['stripe/Default']);
    const boringAdmin = await connect(w.core, w.tokens.boringAdmin);
    data(await boringAdmin.call('update_connection', { account: 'boring-co', connection: 'stripe', notes: 'back in business' }));
    data(await boringAdmin.call('create_user', { account: 'boring-co', email: 'after@boring.test', name: 'After', role: 'viewer' }));
    await Promise.all([viewer.close(), boringAdmin.close()]);
  });

  it('covers the account itself: a suspended parent keeps its children linked, and its children keep working', async () => {
    data(await admin.call('set_account_status', { account: 'acme-fitness', status: 'suspended', reason: 'parent contract paused' }));
    try {
      // unlinking changes the parent's set of children: refused while the parent is suspended
      const res = await admin.call('unlink_account', { child: 'acme-studio-01' });
      expect(res.isError).toBe(true);
      expect(text(res)).toMatch(/^Account 'acme-fitness' is suspended: nothing can be changed in it/);
      const studio = data<Acct & { account: { parent_id: string | null } }>(await admin.call('get_account', { account: 'acme-studio-01' })).account;
      expect(studio).toMatchObject({ status: 'active', parent_id: w.accounts.acme.id });
      // the child is an account of its own: changes in it go on
      data(await admin.call('create_user', { account: 'acme-studio-01', email: 'front-desk@studio01.test', name: 'Front Desk', role: 'viewer' }));
    } finally {
      data(await admin.call('set_account_status', { account: 'acme-fitness', status: 'active', reason: 'resumed' }));
    }
  });
});

describe('audit_log since', () => {
  it('refuses times the database cannot hold with one sentence', async () => {
    for (const since of ['0000-01-01T00:00:00Z', '1969-12-31T23:59:59Z', '+10000-01-01T00:00:00Z']) {
      const res = await admin.call('audit_log', { since });
      expect(res.isError, since).toBe(true);
      expect(text(res), since).not.toMatch(/internal error/i);
      expect(text(res), since).toMatch(/since/);
    }
    expect(data<{ entries: unknown[] }>(await admin.call('audit_log', { account: 'boring-co', since: '1970-01-01T00:00:00Z' })).entries.length).toBeGreaterThan(0);
  });
});
