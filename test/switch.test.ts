import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { and, eq, isNull, sql } from 'drizzle-orm';
import { buildWorld, connect, data, text, type World } from './helpers/world.js';
import { accountSwitches, apiTokens, memberships } from '../src/db/schema/index.js';
import { createUser } from '../src/core/users.js';

interface Who {
  acting_account: { slug: string };
  home_account: { slug: string };
  switched: { until: string; reason: string } | null;
}

let w: World;
beforeAll(async () => {
  w = await buildWorld();
});
afterAll(async () => {
  await w.close();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('switch_account', () => {
  it('enters an account for the session, records both identities, and returns home', async () => {
    const s = await connect(w.core, w.tokens.switcher);
    const before = Date.now();
    const r = data<Who>(await s.call('switch_account', { account: 'Boring Co', reason: 'debug failing webhook' }));
    expect(r.acting_account.slug).toBe('boring-co');
    expect(r.switched!.reason).toBe('debug failing webhook');
    const until = new Date(r.switched!.until).getTime();
    expect(until - before).toBeGreaterThan(29 * 60_000);
    expect(until - before).toBeLessThan(31 * 60_000);

    // every call now acts in the switched account
    expect(data<Who>(await s.call('whoami')).acting_account.slug).toBe('boring-co');
    expect(data<{ account: { slug: string } }>(await s.call('get_account')).account.slug).toBe('boring-co');
    // an explicit account still wins
    expect(data<{ account: { slug: string } }>(await s.call('get_account', { account: 'acme-fitness' })).account.slug).toBe('acme-fitness');

    const [row] = await w.database.db.select().from(accountSwitches).where(eq(accountSwitches.sessionId, s.session.id));
    expect(row).toMatchObject({
      userId: w.userIds.switcher,
      homeAccountId: w.accounts.sandbox.id,
      accountId: w.accounts.boring.id,
      reason: 'debug failing webhook',
      endedAt: null,
    });

    const back = data<Who>(await s.call('switch_account', { account: 'home' }));
    expect(back.acting_account.slug).toBe('sandbox');
    expect(back.switched).toBeNull();
    const [ended] = await w.database.db.select().from(accountSwitches).where(eq(accountSwitches.id, row!.id));
    expect(ended!.endedAt).not.toBeNull();
    expect(data<Who>(await s.call('whoami')).acting_account.slug).toBe('sandbox');
    await s.close();
  });

  it('needs a reason, and the Switch Account permission for accounts the caller does not belong to', async () => {
    const s = await connect(w.core, w.tokens.boringAdmin);
    expect(text(await s.call('switch_account', { account: 'acme-fitness' }))).toMatch(/reason is required/);
    const denied = await s.call('switch_account', { account: 'acme-fitness', reason: 'curious' });
    expect(denied.isError).toBe(true);
    expect(text(denied)).toMatch(/^Access denied: .*needs the Switch Account permission/);
    expect(data<Who>(await s.call('whoami')).acting_account.slug).toBe('boring-co');
    await s.close();
  });

  it('lets a parent admin enter a linked child without Switch Account', async () => {
    const s = await connect(w.core, w.tokens.acmeAdmin);
    const r = data<Who>(await s.call('switch_account', { account: 'acme-studio-02', reason: 'studio onboarding', minutes: 5 }));
    expect(r.acting_account.slug).toBe('acme-studio-02');
    expect(new Date(r.switched!.until).getTime() - Date.now()).toBeLessThan(5 * 60_000 + 1000);
    await s.close();
  });

  it('keeps one open switch per session, even when switches race', async () => {
    const s = await connect(w.core, w.tokens.switcher);
    await Promise.all([
      s.call('switch_account', { account: 'acme-fitness', reason: 'race one' }),
      s.call('switch_account', { account: 'boring-co', reason: 'race two' }),
    ]);
    const open = await w.database.db
      .select()
      .from(accountSwitches)
      .where(and(eq(accountSwitches.sessionId, s.session.id), isNull(accountSwitches.endedAt)));
    expect(open).toHaveLength(1);
    expect(data<Who>(await s.call('whoami')).acting_account.slug).toBe(open[0]!.accountId === w.accounts.acme.id ? 'acme-fitness' : 'boring-co');
    await s.close();
  });

  it('a failing call running beside "return home" does not undo it: the session follows the database', async () => {
    const s = await connect(w.core, w.tokens.admin);
    data(await s.call('switch_account', { account: 'boring-co', reason: 'concurrent failure' }));
    // slow (a password to hash) and failing (the email exists), started before the return home
    const failing = s.call('create_user', { account: 'boring-co', email: 'boringadmin@switchboard.test', name: 'Dup', role: 'member', password: 'a long enough password' });
    await new Promise((r) => setTimeout(r, 15));
    const home = data<Who>(await s.call('switch_account', { account: 'home' }));
    expect(home.acting_account.slug).toBe('system');
    expect((await failing).isError).toBe(true);

    const who = data<Who>(await s.call('whoami'));
    expect(who.acting_account.slug).toBe('system');
    expect(who.switched).toBeNull();
    const open = await w.database.db.select().from(accountSwitches).where(and(eq(accountSwitches.sessionId, s.session.id), isNull(accountSwitches.endedAt)));
    expect(open).toHaveLength(0);
    // and a call without an account acts at home, recorded without a switch
    expect(data<{ account: { slug: string } }>(await s.call('get_account')).account.slug).toBe('system');
    await s.close();
  });

  it('a switch made by another process (the database) is what the session acts in', async () => {
    const s = await connect(w.core, w.tokens.switcher);
    data(await s.call('switch_account', { account: 'acme-fitness', reason: 'ended elsewhere' }));
    // ended outside this session's calls (another process, an operator): the next call sees it
    await w.database.db.update(accountSwitches).set({ endedAt: sql`now()` }).where(eq(accountSwitches.sessionId, s.session.id));
    expect(data<Who>(await s.call('whoami')).acting_account.slug).toBe('sandbox');
    await s.close();
  });

  it('keeps the switch state of each session apart', async () => {
    const a = await connect(w.core, w.tokens.switcher);
    const b = await connect(w.core, w.tokens.switcher);
    data(await a.call('switch_account', { account: 'acme-fitness', reason: 'session a' }));
    data(await b.call('switch_account', { account: 'boring-co', reason: 'session b' }));
    expect(data<Who>(await a.call('whoami')).acting_account.slug).toBe('acme-fitness');
    expect(data<Who>(await b.call('whoami')).acting_account.slug).toBe('boring-co');
    await a.close();
    await b.close();
  });

  it('expires after its time box: the next call is refused, never silently run at home', async () => {
    const s = await connect(w.core, w.tokens.switcher);
    data(await s.call('switch_account', { account: 'acme-fitness', reason: 'health check', minutes: 10 }));
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 10 * 60_000 + 1000 });
    // a call that names its account does not depend on the switch
    expect(data<{ account: { slug: string } }>(await s.call('get_account', { account: 'boring-co' })).account.slug).toBe('boring-co');
    const r = await s.call('get_account');
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/switch into account 'acme-fitness' expired/);
    const who = data<Who>(await s.call('whoami'));
    expect(who.acting_account.slug).toBe('sandbox');
    expect(who.switched).toBeNull();
    const [row] = await w.database.db.select().from(accountSwitches).where(eq(accountSwitches.sessionId, s.session.id));
    expect(row!.endedAt).not.toBeNull();
    await s.close();
  });
});

describe('revocation takes effect on the very next call', () => {
  it('removing Switch Account ends an active switch', async () => {
    const { token, user } = await createUser(w.core, {
      email: 'temp-support@switchboard.test', name: 'Temp', account: w.accounts.sandbox, role: 'member', permissions: ['switch_account'],
    });
    const s = await connect(w.core, token);
    const admin = await connect(w.core, w.tokens.admin);
    data(await s.call('switch_account', { account: 'boring-co', reason: 'ticket 1' }));
    expect(data<{ account: { slug: string } }>(await s.call('get_account')).account.slug).toBe('boring-co');

    data(await admin.call('set_user_permissions', { user: user.email, permissions: [] }));

    const r = await s.call('get_account');
    expect(text(r)).toMatch(/^Access denied: you may no longer act in account 'boring-co'/);
    expect(r.structuredContent).toBeUndefined();
    expect(text(await s.call('get_account', { account: 'boring-co' }))).toMatch(/^Access denied/);
    expect(data<Who>(await s.call('whoami')).acting_account.slug).toBe('sandbox');
    await s.close();
    await admin.close();
  });

  it('removing a membership denies the next call', async () => {
    const { token, user } = await createUser(w.core, { email: 'leaver@switchboard.test', name: 'Leaver', account: w.accounts.boring, role: 'admin' });
    const s = await connect(w.core, token);
    data(await s.call('get_account', { account: 'boring-co' }));
    await w.database.db.delete(memberships).where(eq(memberships.userId, user.id));
    expect(text(await s.call('get_account', { account: 'boring-co' }))).toMatch(/^Access denied/);
    await s.close();
  });

  it('a revoked token is refused on the next call of the same session', async () => {
    const { token, tokenId } = await createUser(w.core, { email: 'revoked@switchboard.test', name: 'R', account: w.accounts.boring, role: 'member' });
    const s = await connect(w.core, token);
    data(await s.call('whoami'));
    data(await s.call('revoke_token', { token_id: tokenId }));
    const r = await s.call('whoami');
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/token is missing, unknown, expired or revoked/);
    await s.close();
  });

  it('an expired token is refused', async () => {
    const { token, tokenId } = await createUser(w.core, { email: 'expired@switchboard.test', name: 'E', account: w.accounts.boring, role: 'member' });
    const s = await connect(w.core, token);
    data(await s.call('whoami'));
    await w.database.db.update(apiTokens).set({ expiresAt: sql`now() - interval '1 second'` }).where(eq(apiTokens.id, tokenId));
    expect(text(await s.call('whoami'))).toMatch(/expired or revoked/);
    await s.close();
  });

  it("only an admin revokes another user's token", async () => {
    const victim = await createUser(w.core, { email: 'victim@switchboard.test', name: 'V', account: w.accounts.boring, role: 'member' });
    const s = await connect(w.core, w.tokens.boringAdmin);
    const r = await s.call('revoke_token', { token_id: victim.tokenId });
    expect(r.isError).toBe(true);
    const still = await connect(w.core, victim.token);
    data(await still.call('whoami'));
    await s.close();
    await still.close();
  });
});
