import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { desc, eq } from 'drizzle-orm';
import { buildWorld, connect, data, text, type World } from './helpers/world.js';
import { auditLog } from '../src/db/schema/index.js';
import { resolveAccountFor } from '../src/core/access.js';
import { authenticate } from '../src/core/users.js';
import { AccessDenied } from '../src/core/errors.js';

/**
 * What the audit log tells the people who read it, and where each entry goes: an account's log
 * never reveals which other accounts or users exist, and calls about the tenant stay out of the
 * customer account a session happened to be switched into.
 */

interface Entry {
  id: number;
  tool: string;
  outcome: string;
  account_id: string | null;
  target_account_id: string | null;
  arguments: unknown;
  message: string | null;
  actor: { id: string | null; email: string | null };
}
type Page = { entries: Entry[]; next_cursor: string | null };

let w: World;
beforeAll(async () => {
  w = await buildWorld();
});
afterAll(async () => {
  await w.close();
});

const newest = async (tool: string) => (await w.core.db.select().from(auditLog).where(eq(auditLog.tool, tool)).orderBy(desc(auditLog.id)).limit(1))[0]!;

describe("an account's log does not reveal which accounts exist", () => {
  it('probes of a real and a missing account read the same to the prober’s admin, and only tenant admins see the target', async () => {
    const probe = await connect(w.core, w.tokens.boringViewer);
    const boring = await connect(w.core, w.tokens.boringAdmin);
    const keys = ['acme-studio-01', 'acme-studio-99', 'Acme Fitness', 'system', w.accounts.acme.id];
    const since = new Date().toISOString();
    const answers = new Set<string>();
    for (const account of keys) answers.add(text(await probe.call('get_account', { account })).replace(account, 'X'));
    expect(answers.size).toBe(1);

    // Boring's admin reads the probes of a Boring user: what was typed, never what it resolved to
    const seen = data<Page>(await boring.call('audit_log', { account: 'boring-co', tool: 'get_account', outcome: 'denied', since }));
    expect(seen.entries).toHaveLength(keys.length);
    const shapes = new Set(
      seen.entries.map((e) => JSON.stringify({ account: e.account_id, target: e.target_account_id, message: e.message?.replace(/'[^']*'/, 'X'), outcome: e.outcome })),
    );
    expect(shapes.size).toBe(1);
    expect(seen.entries.every((e) => e.target_account_id === null && e.account_id === w.accounts.boring.id)).toBe(true);
    expect(seen.entries.map((e) => (e.arguments as { account: string }).account).sort()).toEqual([...keys].sort());
    const everything = JSON.stringify(seen);
    for (const id of [w.accounts.studio1.id, w.accounts.acme.id, w.accounts.system.id]) {
      if (!keys.includes(id)) expect(everything).not.toContain(id);
    }

    // the tenant admin reading the target's log sees who probed it
    const admin = await connect(w.core, w.tokens.admin);
    const studio = data<Page>(await admin.call('audit_log', { account: 'acme-studio-01', outcome: 'denied', since }));
    expect(studio.entries.map((e) => e.actor.id)).toEqual([w.userIds.boringViewer]);
    expect(studio.entries[0]!.target_account_id).toBe(w.accounts.studio1.id);
    await Promise.all([probe.close(), boring.close(), admin.close()]);
  });

  it('a denial of an existing account and of a missing one do the same work: neither looks the target up', async () => {
    const caller = (await authenticate(w.core, w.tokens.boringAdmin))!;
    const denials: AccessDenied[] = [];
    for (const key of ['acme-studio-17', 'acme-studio-01', 'Acme Fitness', 'no-such-account']) {
      const err = await resolveAccountFor(w.core, caller, key).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(AccessDenied);
      denials.push(err as AccessDenied);
    }
    // the guard found nothing to resolve: only what was typed travels with the denial
    expect(denials.map((d) => d.outsider)).toEqual([{ key: 'acme-studio-17' }, { key: 'acme-studio-01' }, { key: 'Acme Fitness' }, { key: 'no-such-account' }]);
    expect(new Set(denials.map((d) => d.message.replace(/'[^']*'/, 'X'))).size).toBe(1);
    // and the caller's own accounts still resolve, with the grant read in the same query
    expect(await resolveAccountFor(w.core, caller, 'Boring Co')).toMatchObject({ account: { id: w.accounts.boring.id }, grant: { role: 'admin', via: 'membership' } });
    const parentAdmin = (await authenticate(w.core, w.tokens.acmeAdmin))!;
    expect(await resolveAccountFor(w.core, parentAdmin, 'acme-studio-01')).toMatchObject({
      account: { id: w.accounts.studio1.id },
      grant: { role: 'admin', via: 'parent_admin' },
    });
  });
});

describe("a user's existence does not show through audit_log {actor}", () => {
  it('an existing user without entries and an unknown one get the same answer', async () => {
    const boring = await connect(w.core, w.tokens.boringAdmin);
    const existing = await boring.call('audit_log', { account: 'boring-co', actor: 'acmeadmin@switchboard.test' });
    const unknown = await boring.call('audit_log', { account: 'boring-co', actor: 'nobody@elsewhere.test' });
    expect(data(existing)).toEqual({ entries: [], next_cursor: null });
    expect(data(unknown)).toEqual({ entries: [], next_cursor: null });
    expect(text(existing)).toBe(text(unknown));
    // by id too
    const byId = await boring.call('audit_log', { account: 'boring-co', actor: w.userIds.acmeAdmin });
    const byUnknownId = await boring.call('audit_log', { account: 'boring-co', actor: '7d3c1f8e-0000-4000-8000-000000000000' });
    expect(text(byId)).toBe(text(byUnknownId));
    await boring.close();
  });
});

describe('calls that act on the tenant are audited in the tenant log', () => {
  it('while switched into a customer, tenant-wide calls never land in that customer’s log', async () => {
    const admin = await connect(w.core, w.tokens.admin);
    data(await admin.call('switch_account', { account: 'boring-co', reason: 'tenant audit placement' }));
    const since = new Date().toISOString();
    data(await admin.call('whoami'));
    const calls: [string, Record<string, unknown>][] = [
      ['list_accounts', { parent: 'acme-fitness' }],
      ['list_apps', {}],
      ['set_user_permissions', { user: 'acmemember@switchboard.test', permissions: [] }],
      ['set_user_permissions', { user: 'ghost@acme.test', permissions: [] }], // fails: still the tenant's business
      ['revoke_token', { token_id: '3b0c7a52-1b8e-4d8e-9d6f-2d7d3f9b1a00' }],
      ['create_account', { name: 'Placement Co', parent: 'acme-fitness', routing_key: 'placement' }],
    ];
    for (const [tool, args] of calls) await admin.call(tool, args);

    const boring = data<Page>(await admin.call('audit_log', { account: 'boring-co', since }));
    expect(boring.entries.map((e) => e.tool)).toEqual(['whoami']);
    const tenant = data<Page>(await admin.call('audit_log', { account: 'system', since }));
    expect(tenant.entries.map((e) => e.tool).reverse()).toEqual(calls.map(([t]) => t));
    expect(tenant.entries.every((e) => e.account_id === w.accounts.system.id)).toBe(true);
    await admin.close();
  });

  it('a denied tenant call of a customer admin goes to the tenant log, not their account', async () => {
    const boring = await connect(w.core, w.tokens.boringAdmin);
    expect(text(await boring.call('set_user_permissions', { user: 'acmeadmin@switchboard.test', permissions: ['admin'] }))).toMatch(/^Access denied/);
    expect(await newest('set_user_permissions')).toMatchObject({ accountId: w.accounts.system.id, outcome: 'denied', actorUserId: w.userIds.boringAdmin });
    await boring.close();
  });
});

describe('calls refused before any tool runs leave a trace', () => {
  it('an unknown tool name is audited as typed, and the server keeps serving', async () => {
    const s = await connect(w.core, w.tokens.boringViewer);
    await expect(s.client.callTool({ name: 'drop_all_accounts', arguments: { account: 'acme-fitness' } })).rejects.toThrow(/Unknown tool 'drop_all_accounts'/);
    expect(await newest('drop_all_accounts')).toMatchObject({
      outcome: 'error',
      actorUserId: w.userIds.boringViewer,
      accountId: w.accounts.boring.id,
      arguments: { account: 'acme-fitness' },
      message: expect.stringMatching(/Unknown tool/),
    });
    expect(data<{ user: { id: string } }>(await s.call('whoami')).user.id).toBe(w.userIds.boringViewer);
    await s.close();
  });

  it('arguments that are not an object reach the guard: one clear sentence, audited', async () => {
    const s = await connect(w.core, w.tokens.boringViewer);
    for (const args of [['a', 'b'], 'text', 42, true]) {
      const r = await s.client.request(
        { method: 'tools/call', params: { name: 'get_account', arguments: args as unknown as Record<string, unknown> } },
        (await import('@modelcontextprotocol/sdk/types.js')).CallToolResultSchema,
      );
      expect(r.isError).toBe(true);
      expect(text(r as never)).toMatch(/^Invalid arguments: .*expected object/);
      expect(await newest('get_account')).toMatchObject({ outcome: 'error', actorUserId: w.userIds.boringViewer });
    }
    await s.close();
  });

  it('a tool name that is not text is refused and audited', async () => {
    const s = await connect(w.core, w.tokens.boringViewer);
    const { CallToolResultSchema } = await import('@modelcontextprotocol/sdk/types.js');
    for (const params of [{ name: 42 }, { arguments: {} }, undefined]) {
      await expect(s.client.request({ method: 'tools/call', params } as never, CallToolResultSchema)).rejects.toThrow(/params.name must be the name of a tool/);
      expect(await newest('(not a string)')).toMatchObject({ outcome: 'error', actorUserId: w.userIds.boringViewer });
    }
    expect(data<{ user: { id: string } }>(await s.call('whoami')).user.id).toBe(w.userIds.boringViewer);
    await s.close();
  });
});
