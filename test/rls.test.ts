import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq, sql } from 'drizzle-orm';
import { buildWorld, connect, data, type World } from './helpers/world.js';
import { withAccount } from '../src/db/scope.js';
import { sqlState } from '../src/core/errors.js';
import { auditLog, memberships, accountSwitches } from '../src/db/schema/index.js';

/**
 * Defense in depth: inside one account's scope, queries that "forget" the account filter still
 * cannot read or write another account's rows — PostgreSQL row-level security stops them.
 */
let w: World;
beforeAll(async () => {
  w = await buildWorld();
  // give both accounts audit rows and switches
  const admin = await connect(w.core, w.tokens.admin);
  for (const account of ['boring-co', 'acme-fitness']) {
    data(await admin.call('get_account', { account }));
    data(await admin.call('switch_account', { account, reason: 'rls fixture' }));
  }
  await admin.close();
});
afterAll(async () => {
  await w.close();
});

const rowsOf = <T>(r: unknown): T[] => (Array.isArray(r) ? r : (r as { rows: T[] }).rows) as T[];

describe('row-level security under withAccount', () => {
  it('covers every table with an account_id the app role can read: enabled, forced, and scoped', async () => {
    const tables = rowsOf<{ table_name: string; rls: boolean; forced: boolean; scoped: boolean; readable: boolean }>(
      await w.core.db.execute(sql`
        select c.table_name, k.relrowsecurity as rls, k.relforcerowsecurity as forced,
               exists (select 1 from pg_policies p where p.tablename = c.table_name and p.policyname = 'account_scope') as scoped,
               has_table_privilege('switchboard_app', k.oid, 'select,insert,update,delete') as readable
        from information_schema.columns c
        join pg_class k on k.relname = c.table_name and k.relkind = 'r'
        join pg_namespace n on n.oid = k.relnamespace and n.nspname = c.table_schema
        where c.table_schema = 'public' and c.column_name = 'account_id'
        order by 1`),
    );
    expect(tables.map((t) => t.table_name)).toContain('automation_revisions');
    // tables of the privileged path only (human_requests) are out of the scoped role's reach altogether
    expect(tables.filter((t) => !t.readable).map((t) => t.table_name)).toEqual(['human_requests']);
    for (const t of tables.filter((t) => t.readable)) expect(t, t.table_name).toMatchObject({ rls: true, forced: true, scoped: true });
  });

  it('reads only the scoped account, even without a filter', async () => {
    const boring = w.accounts.boring.id;
    const [audit, members, switches] = await withAccount(w.core.db, [boring], async (tx) => [
      await tx.select().from(auditLog),
      await tx.select().from(memberships),
      await tx.select().from(accountSwitches),
    ]);
    expect(audit.length).toBeGreaterThan(0);
    expect(members.length).toBeGreaterThan(0);
    expect(switches.length).toBeGreaterThan(0);
    for (const r of [...audit, ...members, ...switches]) expect(r.accountId).toBe(boring);
    // outside the scope, the connecting role sees both accounts
    const all = await w.core.db.select().from(auditLog);
    expect(new Set(all.map((r) => r.accountId))).toContain(w.accounts.acme.id);
  });

  it('cannot insert rows for another account', async () => {
    await expect(
      withAccount(w.core.db, [w.accounts.boring.id], (tx) =>
        tx.insert(memberships).values({ userId: w.userIds.boringAdmin, accountId: w.accounts.acme.id, role: 'owner' }),
      ),
    ).rejects.toThrow();
    const leaked = await w.core.db.select().from(memberships).where(eq(memberships.accountId, w.accounts.acme.id));
    expect(leaked.some((m) => m.userId === w.userIds.boringAdmin)).toBe(false);
  });

  it('cannot update or delete rows of another account', async () => {
    const acme = w.accounts.acme.id;
    const before = await w.core.db.select().from(auditLog).where(eq(auditLog.accountId, acme));
    const [updated, deleted] = await withAccount(w.core.db, [w.accounts.boring.id], async (tx) => [
      await tx.update(auditLog).set({ tool: 'tampered' }).where(eq(auditLog.accountId, acme)).returning(),
      await tx.delete(memberships).where(eq(memberships.accountId, acme)).returning(),
    ]);
    expect(updated).toHaveLength(0);
    expect(deleted).toHaveLength(0);
    const after = await w.core.db.select().from(auditLog).where(eq(auditLog.accountId, acme));
    expect(after).toEqual(before);
  });

  it('cannot move a row of its own account into another', async () => {
    await expect(
      withAccount(w.core.db, [w.accounts.boring.id], (tx) =>
        tx.update(memberships).set({ accountId: w.accounts.acme.id }).where(eq(memberships.accountId, w.accounts.boring.id)),
      ),
    ).rejects.toThrow();
  });

  it('sees nothing with an empty scope, and no secrets at all', async () => {
    const audit = await withAccount(w.core.db, [], (tx) => tx.select().from(auditLog));
    expect(audit).toHaveLength(0);
    for (const q of [sql`select password_hash from users`, sql`select token_hash from api_tokens`]) {
      const err = await withAccount(w.core.db, [w.accounts.boring.id], (tx) => tx.execute(q)).catch((e: unknown) => e);
      expect(sqlState(err)).toBe('42501'); // insufficient_privilege
    }
    // the columns a scoped query may read are still there
    const names = await withAccount(w.core.db, [w.accounts.boring.id], (tx) => tx.execute(sql`select email from users`));
    expect(rowsOf(names).length).toBeGreaterThan(0);
  });

  it('the scope setting does not outlive its transaction', async () => {
    await withAccount(w.core.db, [w.accounts.boring.id], async () => undefined);
    const r = rowsOf<{ ids: string; role: string }>(
      await w.core.db.execute(sql`select coalesce(current_setting('app.account_ids', true), '') as ids, current_user as role`),
    );
    expect(r[0]!.ids).toBe('');
    expect(r[0]!.role).not.toBe('switchboard_app');
  });
});

describe('row-level security on connections', () => {
  it("a scope sees its own connections, and of another account only the shared ones it names, even without a filter", async () => {
    const { addConnection } = await import('../src/core/connections.js');
    const { connections } = await import('../src/db/schema/index.js');
    const mk = (account: typeof w.accounts.acme, name: string) =>
      addConnection(w.core, account, { app: 'slack', name, credentials: { bot_token: 'xoxb-rls-000000000000' }, createdBy: w.userIds.admin });
    const shared = (await mk(w.accounts.acme, 'Shared')).row;
    const hidden = (await mk(w.accounts.acme, 'Private')).row;
    await w.core.db.update(connections).set({ shared: true }).where(eq(connections.id, shared.id));
    const own = (await mk(w.accounts.studio1, 'Mine')).row;
    await mk(w.accounts.boring, 'Other');

    const seen = await withAccount(w.core.db, [w.accounts.studio1.id], (tx) => tx.select().from(connections), [w.accounts.acme.id]);
    expect(seen.map((r) => r.id).sort()).toEqual([own.id, shared.id].sort());
    expect(seen.map((r) => r.id)).not.toContain(hidden.id);
    // the parent's shared row is readable, never writable, from the child's scope
    const updated = await withAccount(
      w.core.db,
      [w.accounts.studio1.id],
      (tx) => tx.update(connections).set({ notes: 'hijack' }).where(eq(connections.id, shared.id)).returning(),
      [w.accounts.acme.id],
    );
    expect(updated).toEqual([]);
    const alone = await withAccount(w.core.db, [w.accounts.studio1.id], (tx) => tx.select().from(connections));
    expect(alone.map((r) => r.id)).toEqual([own.id]);
  });
});
