import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { buildWorld, connect, data, text, type World } from './helpers/world.js';

interface Entry {
  id: number;
  at: string;
  actor: { id: string | null; email: string | null };
  home_account_id: string | null;
  account_id: string | null;
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
    const byTool = (t: string) => mine.entries.find((e) => e.tool === t)!;
    expect(byTool('get_account')).toMatchObject({
      outcome: 'ok',
      actor: { id: w.userIds.boringAdmin, email: 'boringadmin@switchboard.test' },
      home_account_id: w.accounts.boring.id,
      account_id: w.accounts.boring.id,
    });
    expect(byTool('create_user')).toMatchObject({ outcome: 'error', message: expect.stringMatching(/email/) });

    // the denied attempt is recorded against the account it tried to reach: its admins see it, the caller does not
    const admin = await connect(w.core, w.tokens.admin);
    const acme = data<Page>(await admin.call('audit_log', { account: 'acme-fitness', outcome: 'denied' }));
    expect(acme.entries[0]).toMatchObject({ tool: 'get_account', outcome: 'denied', actor: { id: w.userIds.boringAdmin }, account_id: w.accounts.acme.id });
    expect(acme.entries[0]!.message).toMatch(/^Access denied/);
    expect(mine.entries.some((e) => e.account_id === w.accounts.acme.id)).toBe(false);
    await s.close();
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
    const dump = await auditDump();
    expect(dump).not.toContain(password);
    expect(dump).not.toContain(created.token);
    expect(dump).not.toContain(w.tokens.admin);
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
