import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq } from 'drizzle-orm';
import { buildWorld, connect, data, text, type Session, type World } from './helpers/world.js';
import { auditLog } from '../src/db/schema/index.js';

/** Issue 11 item 7: "who switched into which customer this week, and why?" in one call; ending another's switch. */

interface Ref {
  id: string;
  slug: string;
  name: string;
}
interface Sw {
  id: string;
  user: { id: string | null; email: string | null };
  home_account_id: string;
  home_account: Ref | null;
  account: Ref;
  session_id: string;
  reason: string;
  started_at: string;
  expires_at: string;
  ended_at: string | null;
  active: boolean;
  ended_by: { user: { id: string | null; email: string | null }; reason: string | null } | null;
  calls: number;
}
interface Page {
  switches: Sw[];
  next_cursor: string | null;
}
interface AuditPage {
  entries: { account_id: string | null; tool: string; switch_id: string | null; outcome: string; actor: { email: string | null } }[];
  next_cursor: string | null;
}

let w: World;
let boringSwitch: Sw;
const weekStart = new Date(Date.now() - 7 * 86_400_000).toISOString();

beforeAll(async () => {
  w = await buildWorld();
  // the switcher enters Boring Co, makes two calls there and returns; the admin enters Acme
  const s = await connect(w.core, w.tokens.switcher);
  await s.call('switch_account', { account: 'boring-co', reason: 'debug failing webhook, ticket 4411' });
  await s.call('get_account');
  await s.call('list_automations');
  await s.call('switch_account', { account: 'home' });
  await s.close();
  const a = await connect(w.core, w.tokens.admin);
  await a.call('switch_account', { account: 'acme-fitness', reason: 'quarterly review' });
  await a.close();
});
afterAll(async () => {
  await w.close();
});

describe('list_switches', () => {
  it("shows an account's admins who switched in, why, when, and how many calls they made", async () => {
    const s = await connect(w.core, w.tokens.boringAdmin);
    const page = data<Page>(await s.call('list_switches', { since: weekStart }));
    expect(page.switches).toHaveLength(1);
    boringSwitch = page.switches[0]!;
    expect(boringSwitch).toMatchObject({
      user: { id: w.userIds.switcher, email: 'switcher@switchboard.test' },
      // the switcher's home is not an account Boring Co's admin may see: its id only
      home_account_id: w.accounts.sandbox.id,
      home_account: null,
      account: { slug: 'boring-co' },
      reason: 'debug failing webhook, ticket 4411',
      active: false,
      ended_by: null,
    });
    expect(boringSwitch.ended_at).not.toBeNull();
    expect(Date.parse(boringSwitch.ended_at!)).toBeGreaterThanOrEqual(Date.parse(boringSwitch.started_at));
    // get_account, list_automations and the return home ran under the switch
    const entries = await w.database.db.select().from(auditLog).where(eq(auditLog.switchId, boringSwitch.id));
    expect(entries.map((e) => e.tool).sort()).toEqual(['get_account', 'list_automations', 'switch_account']);
    expect(boringSwitch.calls).toBe(3);
    await s.close();
  });

  it('gives the tenant view to holders of the admin permission only, and nothing of an account to outsiders', async () => {
    const tenantAdmin = await connect(w.core, w.tokens.tenantAdmin);
    const all = data<Page>(await tenantAdmin.call('list_switches', { scope: 'tenant', since: weekStart }));
    expect(all.switches.map((s) => `${s.user.email}→${s.account.slug}`)).toEqual(['admin@switchboard.test→acme-fitness', 'switcher@switchboard.test→boring-co']);
    expect(all.switches[0]!.active).toBe(true);
    expect(all.switches.map((s) => s.home_account?.slug)).toEqual(['system', 'sandbox']);
    // the admin permission is the tenant view, not a role in each account
    const notMember = await tenantAdmin.call('list_switches', { account: 'acme-fitness' });
    expect(notMember.isError).toBe(true);
    expect(text(notMember)).toMatch(/^Access denied/);
    expect(notMember.structuredContent).toBeUndefined();
    const both = await tenantAdmin.call('list_switches', { scope: 'tenant', account: 'boring-co' });
    expect(text(both)).toBe('Give either account or scope "tenant", not both.');
    await tenantAdmin.close();

    const boringAdmin = await connect(w.core, w.tokens.boringAdmin);
    const tenantDenied = await boringAdmin.call('list_switches', { scope: 'tenant' });
    expect(tenantDenied.isError).toBe(true);
    expect(text(tenantDenied)).toBe('Access denied: list_switches with scope "tenant" needs the admin permission.');
    const otherAccount = await boringAdmin.call('list_switches', { account: 'acme-fitness' });
    expect(otherAccount.isError).toBe(true);
    expect(JSON.stringify(otherAccount)).not.toContain('quarterly review');
    await boringAdmin.close();

    // an acme admin does not see switches into Boring Co, even by naming it
    const acmeAdmin = await connect(w.core, w.tokens.acmeAdmin);
    const acme = data<Page>(await acmeAdmin.call('list_switches'));
    expect(acme.switches.map((s) => s.reason)).toEqual(['quarterly review']);
    expect((await acmeAdmin.call('list_switches', { account: 'boring-co' })).isError).toBe(true);
    await acmeAdmin.close();
  });

  it('filters by user, activity and time, and pages with a cursor', async () => {
    const s = await connect(w.core, w.tokens.admin);
    const q = (args: Record<string, unknown>) => s.call('list_switches', { scope: 'tenant', ...args });
    expect(data<Page>(await q({ user: 'switcher@switchboard.test' })).switches.map((x) => x.account.slug)).toEqual(['boring-co']);
    expect(data<Page>(await q({ user: w.userIds.admin })).switches.map((x) => x.account.slug)).toEqual(['acme-fitness']);
    expect(data<Page>(await q({ user: 'nobody@nowhere.test' })).switches).toEqual([]);
    expect(data<Page>(await q({ active: true })).switches.map((x) => x.reason)).toEqual(['quarterly review']);
    expect(data<Page>(await q({ active: false })).switches.map((x) => x.reason)).toEqual(['debug failing webhook, ticket 4411']);
    expect(data<Page>(await q({ since: new Date(Date.now() + 3_600_000).toISOString() })).switches).toEqual([]);

    const first = data<Page>(await q({ limit: 1 }));
    expect(first.switches).toHaveLength(1);
    expect(first.next_cursor).not.toBeNull();
    const second = data<Page>(await q({ limit: 1, cursor: first.next_cursor }));
    expect(second.switches).toHaveLength(1);
    expect(second.switches[0]!.id).not.toBe(first.switches[0]!.id);
    expect(second.next_cursor).toBeNull();
    const forged = await q({ cursor: Buffer.from(JSON.stringify(['not a time', first.switches[0]!.id])).toString('base64url') });
    expect(text(forged)).toBe('The cursor is not valid: pass the next_cursor of a previous page, or omit it.');
    await s.close();
  });
});

describe('end_switch', () => {
  let victim: Session;
  let switchId: string;

  beforeAll(async () => {
    victim = await connect(w.core, w.tokens.switcher);
    await victim.call('switch_account', { account: 'boring-co', reason: 'second look' });
    const admin = await connect(w.core, w.tokens.boringAdmin);
    switchId = data<Page>(await admin.call('list_switches', { active: true })).switches[0]!.id;
    await admin.close();
  });
  afterAll(async () => {
    await victim.close();
  });

  it('is refused alike for a switch that does not exist and one the caller may not end', async () => {
    const acmeAdmin = await connect(w.core, w.tokens.acmeAdmin);
    const real = text(await acmeAdmin.call('end_switch', { switch: switchId }));
    const made = text(await acmeAdmin.call('end_switch', { switch: '6f1c3a52-0d5e-4d0b-9a51-1f2e3d4c5b6a' }));
    expect(real).toBe(`Access denied: there is no switch '${switchId}' that you may end; ending a switch needs the admin role in the account it entered, or the admin permission.`);
    expect(made.replace('6f1c3a52-0d5e-4d0b-9a51-1f2e3d4c5b6a', switchId)).toBe(real);
    expect(text(await acmeAdmin.call('end_switch', { switch: "x' or 1=1 --" }))).toMatch(/^Access denied: there is no switch/);
    await acmeAdmin.close();
    // still in effect
    expect(data<{ account: { slug: string } }>(await victim.call('get_account')).account.slug).toBe('boring-co');
  });

  it("lets the account's admin end it: the session's next call is refused saying who (the reason is data in list_switches), then it acts at home", async () => {
    const admin = await connect(w.core, w.tokens.boringAdmin);
    const ended = await admin.call('end_switch', { switch: switchId, reason: 'ticket closed' });
    expect(ended.isError).toBeFalsy();
    expect(data<{ account: Ref; user_id: string }>(ended)).toMatchObject({ account: { slug: 'boring-co' }, user_id: w.userIds.switcher });

    const next = await victim.call('get_account');
    expect(next.isError).toBe(true);
    expect(text(next)).toBe(
      "Your switch into account 'boring-co' was ended by boringadmin@switchboard.test; you are back in your home account, and nothing was done. Call switch_account again only if you still need to act there.",
    );
    expect(data<{ account: { slug: string } }>(await victim.call('get_account')).account.slug).toBe('sandbox');

    const listed = data<Page>(await admin.call('list_switches', { active: false })).switches.find((s) => s.id === switchId)!;
    expect(listed.active).toBe(false);
    expect(listed.ended_by).toEqual({ user: { id: w.userIds.boringAdmin, email: 'boringadmin@switchboard.test' }, reason: 'ticket closed' });
    expect(text(await admin.call('end_switch', { switch: switchId }))).toMatch(new RegExp(`^Switch '${switchId}' is no longer active \\(it ended at `));

    // the end is in the account's own log, under its admin
    const log = data<AuditPage>(await admin.call('audit_log', { tool: 'end_switch' }));
    expect(log.entries.map((e) => [e.actor.email, e.outcome])).toEqual([
      ['boringadmin@switchboard.test', 'error'],
      ['boringadmin@switchboard.test', 'ok'],
    ]);
    await admin.close();
  });
});

describe('audit_log with scope "tenant"', () => {
  it('reads every account and the tenant log for holders of the admin permission', async () => {
    const s = await connect(w.core, w.tokens.tenantAdmin);
    const page = data<AuditPage>(await s.call('audit_log', { scope: 'tenant', limit: 200 }));
    const accountsSeen = new Set(page.entries.map((e) => e.account_id));
    for (const a of [w.accounts.boring, w.accounts.acme, w.accounts.sandbox, w.accounts.system]) expect(accountsSeen).toContain(a.id);
    // tenant-wide reads are themselves kept in the tenant's log
    const again = data<AuditPage>(await s.call('audit_log', { scope: 'tenant', tool: 'audit_log', limit: 5 }));
    expect(again.entries[0]!.account_id).toBe(w.accounts.system.id);
    await s.close();

    const boringAdmin = await connect(w.core, w.tokens.boringAdmin);
    const denied = await boringAdmin.call('audit_log', { scope: 'tenant' });
    expect(denied.isError).toBe(true);
    expect(text(denied)).toBe('Access denied: audit_log with scope "tenant" needs the admin permission.');
    expect(denied.structuredContent).toBeUndefined();
    await boringAdmin.close();
  });
});
