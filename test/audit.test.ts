import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { buildWorld, connect, data, text, type World } from './helpers/world.js';

interface Entry {
  id: number;
  at: string;
  actor: { id: string | null; email: string | null };
  home_account_id: string | null;
  account_id: string | null;
  target_account_id: string | null;
  switch_id: string | null;
  tool: string;
  arguments: Record<string, unknown>;
  outcome: 'ok' | 'denied' | 'error';
  message: string | null;
}
type Page = { entries: Entry[]; next_cursor: string | null };

let w: World;
beforeAll(async () => {
  w = await buildWorld();
});
afterAll(async () => {
  await w.close();
});

/** Every stored byte of the audit log, as text. */
async function auditDump(): Promise<string> {
  const r = await w.database.db.execute(sql`select coalesce(string_agg(a::text, E'\n'), '') as dump from audit_log a`);
  const rows = (Array.isArray(r) ? r : (r as { rows: unknown[] }).rows) as { dump: string }[];
  return rows[0]!.dump;
}

describe('audit log', () => {
  it('records allowed, denied and failed calls with actor, home and acting account', async () => {
    const s = await connect(w.core, w.tokens.boringAdmin);
    data(await s.call('get_account', { account: 'boring-co' }));
    expect((await s.call('get_account', { account: 'acme-fitness' })).isError).toBe(true); // denied
    expect((await s.call('create_user', { account: 'boring-co', email: 'not-an-email', name: 'x', role: 'member' })).isError).toBe(true); // error

    const mine = data<Page>(await s.call('audit_log', { account: 'boring-co', actor: 'boringadmin@switchboard.test' }));
    const byTool = (t: string, outcome = 'ok') => mine.entries.find((e) => e.tool === t && e.outcome === outcome)!;
    expect(byTool('get_account')).toMatchObject({
      outcome: 'ok',
      actor: { id: w.userIds.boringAdmin, email: 'boringadmin@switchboard.test' },
      home_account_id: w.accounts.boring.id,
      account_id: w.accounts.boring.id,
    });
    expect(byTool('create_user', 'error')).toMatchObject({ message: expect.stringMatching(/email/) });

    // a caller without any access to the target: the entry stays with the caller's account and
    // says only what was typed; the target's own admins do not learn who probed them, tenant admins do
    expect(byTool('get_account', 'denied')).toMatchObject({
      account_id: w.accounts.boring.id,
      target_account_id: null,
      arguments: { account: 'acme-fitness' },
      message: expect.stringMatching(/^Access denied/),
    });
    const acmeAdmin = await connect(w.core, w.tokens.acmeAdmin);
    const acmeView = data<Page>(await acmeAdmin.call('audit_log', { account: 'acme-fitness', outcome: 'denied' }));
    expect(acmeView.entries).toHaveLength(0);
    const admin = await connect(w.core, w.tokens.admin);
    const tenantView = data<Page>(await admin.call('audit_log', { account: 'acme-fitness', outcome: 'denied' }));
    expect(tenantView.entries[0]).toMatchObject({ tool: 'get_account', actor: { id: w.userIds.boringAdmin }, target_account_id: w.accounts.acme.id });
    await s.close();
    await acmeAdmin.close();
    await admin.close();
  });

  it('records a switched call with its switch', async () => {
    const s = await connect(w.core, w.tokens.switcher);
    const sw = data<{ switched: unknown }>(await s.call('switch_account', { account: 'boring-co', reason: 'audit test' }));
    expect(sw.switched).not.toBeNull();
    data(await s.call('get_account'));
    const page = data<Page>(await s.call('audit_log', { tool: 'get_account', actor: w.userIds.switcher }));
    expect(page.entries[0]).toMatchObject({ account_id: w.accounts.boring.id, home_account_id: w.accounts.sandbox.id, switch_id: expect.any(String) });
    await s.close();
  });

  it('never stores a password or a token', async () => {
    const s = await connect(w.core, w.tokens.admin);
    const password = 'correct horse battery staple';
    const created = data<{ token: string }>(
      await s.call('create_user', { account: 'boring-co', email: 'pw@switchboard.test', name: 'Pw', role: 'member', password }),
    );
    // a token pasted into any argument is redacted too
    const echoed = await s.call('get_account', { account: created.token });
    expect(text(echoed)).toMatch(/No account matches '\[redacted\]'/);
    const page = data<Page>(await s.call('audit_log', { account: 'boring-co', tool: 'create_user' }));
    expect(page.entries[0]!.arguments).toMatchObject({ password: '[redacted]', email: 'pw@switchboard.test' });
    // a token used as an argument name is redacted too
    await s.call('whoami', { [created.token]: 1 });
    const dump = await auditDump();
    expect(dump).not.toContain(password);
    expect(dump).not.toContain(created.token);
    expect(dump).not.toContain(w.tokens.admin);
    await s.close();
  });

  it('records a revocation in the tenant log, naming the token, even while switched', async () => {
    const admin = await connect(w.core, w.tokens.admin);
    const made = data<{ token_id: string }>(await admin.call('create_user', { account: 'acme-fitness', email: 'rev@switchboard.test', name: 'Rev', role: 'member' }));
    data(await admin.call('switch_account', { account: 'boring-co', reason: 'unrelated work' }));
    data(await admin.call('revoke_token', { token_id: made.token_id }));
    const tenant = data<Page>(await admin.call('audit_log', { account: 'system', tool: 'revoke_token' }));
    expect(tenant.entries[0]!.arguments).toEqual({ token_id: made.token_id });
    const boring = data<Page>(await admin.call('audit_log', { account: 'boring-co', tool: 'revoke_token' }));
    expect(boring.entries).toEqual([]);
    await admin.close();
  });

  it('answers an unknown actor with an empty page', async () => {
    const s = await connect(w.core, w.tokens.boringAdmin);
    const r = data<Page>(await s.call('audit_log', { account: 'boring-co', actor: 'nobody@elsewhere.test' }));
    expect(r).toEqual({ entries: [], next_cursor: null });
    await s.close();
  });

  it('needs the admin role in the account', async () => {
    const viewer = await connect(w.core, w.tokens.boringViewer);
    const r = await viewer.call('audit_log', { account: 'boring-co' });
    expect(text(r)).toMatch(/^Access denied: this needs the admin role in account 'boring-co'; you are viewer there/);
    await viewer.close();
  });

  it('filters by tool, outcome and time and pages with a cursor', async () => {
    const s = await connect(w.core, w.tokens.boringAdmin);
    const since = new Date().toISOString();
    for (let i = 0; i < 5; i++) data(await s.call('whoami'));
    const first = data<Page>(await s.call('audit_log', { account: 'boring-co', tool: 'whoami', since, limit: 3 }));
    expect(first.entries).toHaveLength(3);
    expect(first.next_cursor).not.toBeNull();
    const second = data<Page>(await s.call('audit_log', { account: 'boring-co', tool: 'whoami', since, limit: 3, cursor: first.next_cursor }));
    expect(second.entries).toHaveLength(2);
    expect(second.next_cursor).toBeNull();
    const ids = [...first.entries, ...second.entries].map((e) => e.id);
    expect(new Set(ids).size).toBe(5);
    expect([...ids].sort((a, b) => b - a)).toEqual(ids);
    expect(data<Page>(await s.call('audit_log', { account: 'boring-co', outcome: 'denied', since })).entries).toHaveLength(0);
    await s.close();
  });
});
