import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { automationUsing, buildWorld, connect, data, text, type Persona, type Session, type World } from './helpers/world.js';
import type { Role } from '../src/db/schema/index.js';
import { addConnection } from '../src/core/connections.js';

/**
 * The isolation matrix: every account-taking tool × {a linked parent, a linked child, another
 * customer, the caller's own account} × every kind of caller. The expected roles are written out
 * here by hand from the rule in the foundation issue, independent of src/core/access.ts.
 */
type Target = 'acme' | 'studio1' | 'boring' | 'sandbox';
const TARGETS: Target[] = ['acme', 'studio1', 'boring', 'sandbox'];

// effective role of each caller in each account ('-' = no access)
const ROLE: Record<Persona, Record<Target, Role | '-'>> = {
  admin: { acme: 'admin', studio1: 'admin', boring: 'admin', sandbox: 'owner' },
  switcher: { acme: 'admin', studio1: 'admin', boring: 'admin', sandbox: 'admin' },
  acmeAdmin: { acme: 'admin', studio1: 'admin', boring: '-', sandbox: '-' },
  acmeMember: { acme: 'member', studio1: '-', boring: '-', sandbox: '-' },
  studioMember: { acme: '-', studio1: 'member', boring: '-', sandbox: '-' },
  boringAdmin: { acme: '-', studio1: '-', boring: 'admin', sandbox: '-' },
  boringViewer: { acme: '-', studio1: '-', boring: 'viewer', sandbox: '-' },
  tenantAdmin: { acme: '-', studio1: '-', boring: 'member', sandbox: '-' },
};
const PERSONAS = Object.keys(ROLE) as Persona[];
const TENANT_ADMINS: Persona[] = ['admin', 'tenantAdmin'];
const RANK = ['viewer', 'member', 'admin', 'owner'];
const atLeast = (r: Role | '-', need: Role) => r !== '-' && RANK.indexOf(r) >= RANK.indexOf(need);

let n = 0;
interface Case {
  tool: string;
  args: (slug: string) => Record<string, unknown>;
  need: Role;
  tenantAdmin?: boolean;
}
const CASES: Case[] = [
  { tool: 'get_account', args: (s) => ({ account: s }), need: 'viewer' },
  { tool: 'switch_account', args: (s) => ({ account: s, reason: 'isolation matrix' }), need: 'viewer' },
  { tool: 'list_accounts', args: (s) => ({ parent: s }), need: 'viewer' },
  { tool: 'audit_log', args: (s) => ({ account: s }), need: 'admin' },
  { tool: 'create_user', args: (s) => ({ account: s, email: `m${++n}@matrix.test`, name: 'Matrix', role: 'viewer' }), need: 'admin' },
  { tool: 'create_account', args: (s) => ({ name: `Matrix ${++n}`, parent: s, routing_key: `m-${n}` }), need: 'admin', tenantAdmin: true },
  // app connections: each target account holds a stripe connection (beforeAll)
  { tool: 'list_connections', args: (s) => ({ account: s }), need: 'viewer' },
  { tool: 'list_connection_usage', args: (s) => ({ account: s, connection: 'stripe' }), need: 'viewer' },
  { tool: 'add_connection', args: (s) => ({ account: s, app: 'stripe', name: `Matrix ${++n}`, credentials: { secret_key: MATRIX_KEY } }), need: 'member' },
  { tool: 'update_connection', args: (s) => ({ account: s, connection: 'stripe', notes: `matrix ${++n}` }), need: 'member' },
  { tool: 'reconnect_connection', args: (s) => ({ account: s, connection: 'stripe', credentials: { secret_key: MATRIX_KEY } }), need: 'member' },
  { tool: 'set_connection_rate_limit', args: (s) => ({ account: s, connection: 'stripe', per_minute: 100 }), need: 'admin' },
  { tool: 'share_connection', args: (s) => ({ account: s, connection: 'stripe', shared: false }), need: 'admin' },
  { tool: 'disconnect_connection', args: (s) => ({ account: s, connection: 'stripe' }), need: 'admin' },
  { tool: 'view_connection_info', args: (s) => ({ account: s, connection: 'stripe', password: 'not-anyones-password' }), need: 'admin' },
  // automations: each target account holds 'Matrix flow' (beforeAll)
  { tool: 'list_automations', args: (s) => ({ account: s }), need: 'viewer' },
  { tool: 'get_automation', args: (s) => ({ account: s, automation: 'Matrix flow' }), need: 'viewer' },
  { tool: 'create_automation', args: (s) => ({ account: s, name: `Matrix ${++n}`, steps: [{ id: 'one', kind: 'transform', value: '{{ trigger.body }}' }] }), need: 'member' },
  { tool: 'update_automation', args: (s) => ({ account: s, automation: 'Matrix flow', note: `matrix ${++n}` }), need: 'member' },
  { tool: 'set_automation_enabled', args: (s) => ({ account: s, automation: 'Matrix flow', enabled: true }), need: 'member' },
  { tool: 'delete_automation', args: (s) => ({ account: s, automation: 'No such flow' }), need: 'admin' },
  { tool: 'rotate_webhook_url', args: (s) => ({ account: s, automation: 'Matrix flow' }), need: 'member' },
  // executions: no worker runs in this file, so test runs stay queued
  { tool: 'run_automation', args: (s) => ({ account: s, automation: 'Matrix flow', wait_seconds: 0 }), need: 'member' },
  { tool: 'list_executions', args: (s) => ({ account: s }), need: 'viewer' },
  { tool: 'get_execution', args: (s) => ({ account: s, execution: '00000000-0000-4000-8000-000000000000' }), need: 'viewer' },
  // account data: reading needs viewer, changing member
  { tool: 'account_data', args: (s) => ({ account: s, action: 'list' }), need: 'viewer' },
  { tool: 'account_data', args: (s) => ({ account: s, action: 'set', key: `matrix:${++n}`, value: n }), need: 'member' },
];
const MATRIX_KEY = 'sk_test_matrix_0123456789abcdef';

let w: World;
const sessions = new Map<Persona, Session>();

beforeAll(async () => {
  w = await buildWorld();
  for (const p of PERSONAS) sessions.set(p, await connect(w.core, w.tokens[p]));
  for (const t of TARGETS) {
    const { row } = await addConnection(w.core, w.accounts[t], { app: 'stripe', credentials: { secret_key: MATRIX_KEY }, createdBy: w.userIds.admin });
    await automationUsing(w.core, w.accounts[t], 'Matrix flow', [row.id]);
  }
});
afterAll(async () => {
  for (const s of sessions.values()) await s.close();
  await w.close();
});

const isDenied = (r: { isError?: boolean; content: unknown[] }) => r.isError === true && /^Access denied/.test(text(r as never));

describe('isolation matrix', () => {
  // first, before the matrix creates accounts of its own
  it('list_accounts shows each caller exactly the accounts they may see', async () => {
    const expected: Record<Persona, string[] | 'all'> = {
      admin: 'all',
      switcher: 'all',
      acmeAdmin: ['acme-fitness', 'acme-studio-01', 'acme-studio-02'],
      acmeMember: ['acme-fitness'],
      studioMember: ['acme-studio-01'],
      boringAdmin: ['boring-co'],
      boringViewer: ['boring-co'],
      tenantAdmin: ['boring-co'],
    };
    const everything = (await w.database.db.query.accounts.findMany()).map((a) => a.slug).sort();
    for (const p of PERSONAS) {
      const got = data<{ accounts: { slug: string }[] }>(await sessions.get(p)!.call('list_accounts', { limit: 200 }));
      const slugs = got.accounts.map((a) => a.slug).sort();
      const want = expected[p];
      expect(slugs, p).toEqual(want === 'all' ? everything : [...want].sort());
    }
  });

  for (const c of CASES) {
    for (const persona of PERSONAS) {
      for (const target of TARGETS) {
        const allowed = atLeast(ROLE[persona][target], c.need) && (!c.tenantAdmin || TENANT_ADMINS.includes(persona));
        it(`${c.tool} × ${persona} → ${target}: ${allowed ? 'allowed' : 'denied'}`, async () => {
          const account = w.accounts[target];
          const s = sessions.get(persona)!;
          const r = await s.call(c.tool, c.args(account.slug));
          if (c.tool === 'switch_account' && !r.isError) await s.call('switch_account', { account: 'home' });
          if (allowed) {
            expect(isDenied(r), text(r)).toBe(false);
          } else {
            expect(isDenied(r), text(r)).toBe(true);
            // nothing of the target: no structured result, neither its id nor its name
            expect(r.structuredContent).toBeUndefined();
            expect(text(r)).not.toContain(account.id);
            expect(text(r)).not.toContain(account.name);
          }
          // no tool ever returns a stored secret in clear, allowed or not (view_connection_info needs a password)
          expect(JSON.stringify(r)).not.toContain(MATRIX_KEY);
        });
      }
    }
  }

  it('a denial for an existing account and for a missing one read the same to a caller without Switch Account', async () => {
    const s = sessions.get('boringAdmin')!;
    const real = text(await s.call('get_account', { account: 'acme-fitness' }));
    const missing = text(await s.call('get_account', { account: 'no-such-account' }));
    expect(real.replace('acme-fitness', 'X')).toBe(missing.replace('no-such-account', 'X'));
  });

  it("another account's id is refused like its slug", async () => {
    const r = await sessions.get('studioMember')!.call('get_account', { account: w.accounts.boring.id });
    expect(isDenied(r)).toBe(true);
    expect(text(r)).not.toContain('Boring Co');
  });

  it('link_account and unlink_account need the admin permission and admin in both accounts', async () => {
    const loose = await connect(w.core, w.tokens.admin);
    const created = data<{ account: { slug: string } }>(await loose.call('create_account', { name: 'Loose Studio' }));
    const args = { child: created.account.slug, parent: 'acme-fitness', routing_key: 'studio-99' };
    // the parent's admin lacks the admin permission; the tenant admin lacks access to acme
    expect(text(await sessions.get('acmeAdmin')!.call('link_account', args))).toMatch(/^Access denied: link_account needs the admin permission/);
    expect(isDenied(await sessions.get('tenantAdmin')!.call('link_account', args))).toBe(true);
    const linked = data<{ account: { parent_id: string; routing_key: string } }>(await loose.call('link_account', args));
    expect(linked.account).toMatchObject({ parent_id: w.accounts.acme.id, routing_key: 'studio-99' });
    // the parent's admin now reaches the child through the link …
    expect(isDenied(await sessions.get('acmeAdmin')!.call('get_account', { account: created.account.slug }))).toBe(false);
    expect(isDenied(await sessions.get('studioMember')!.call('unlink_account', { child: created.account.slug }))).toBe(true);
    data(await loose.call('unlink_account', { child: created.account.slug }));
    // … and loses it when the link goes
    expect(isDenied(await sessions.get('acmeAdmin')!.call('get_account', { account: created.account.slug }))).toBe(true);
    await loose.close();
  });
});

describe('tenant-wide tools', () => {
  it('set_user_permissions needs the admin permission, and keeps the last admin', async () => {
    for (const p of PERSONAS) {
      const r = await sessions.get(p)!.call('set_user_permissions', { user: 'boringviewer@switchboard.test', permissions: [] });
      expect(isDenied(r), `${p}: ${text(r)}`).toBe(!TENANT_ADMINS.includes(p));
    }
    // the tenant admin may not strip the init admin and then itself of admin: one must remain
    const t = sessions.get('tenantAdmin')!;
    data(await t.call('set_user_permissions', { user: 'admin@switchboard.test', permissions: ['switch_account'] }));
    const last = await t.call('set_user_permissions', { user: 'tenantadmin@switchboard.test', permissions: [] });
    expect(text(last)).toMatch(/last admin of the tenant/);
    data(await t.call('set_user_permissions', { user: 'admin@switchboard.test', permissions: ['switch_account', 'admin'] }));
  });

  it('whoami names the caller and the token in use, for every caller', async () => {
    for (const p of PERSONAS) {
      const who = data<{ user: { id: string }; token_id: string }>(await sessions.get(p)!.call('whoami'));
      expect(who.user.id).toBe(w.userIds[p]);
      expect(who.token_id).toMatch(/^[0-9a-f-]{36}$/);
    }
  });
});
