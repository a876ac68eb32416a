import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { automationUsing, buildWorld, connect, data, text, type Session, type World } from './helpers/world.js';
import { expireConnection, shareConnection } from '../src/core/connection-lifecycle.js';
import { addConnection } from '../src/core/connections.js';
import { linkAccount, unlinkAccount } from '../src/core/accounts.js';
import { maskValue } from '../src/core/apps.js';
import { createUser } from '../src/core/users.js';
import { auditLog, automations, connections } from '../src/db/schema/index.js';

/**
 * App connections through a real MCP client: naming, validation, search and grouping, notes,
 * disconnect/reconnect with the automations they pause and resume, rate limits, sharing, and
 * the verified view. Credentials are made up per test; none is a real key.
 */

let w: World;
let admin: Session;
let acme: Session;
let studio: Session;
let boring: Session;
const STRIPE_KEY = `sk_live_${'A1b2C3d4'.repeat(3)}4242`;

type Conn = { id: string; app: string; name: string; status: string; notes: string; shared: boolean; source: string; rate_limit: { per_minute: number; source: string } };
type Listing = { own: Conn[]; shared_from_parent: Conn[]; shared_from_system: Conn[]; next_cursor: string | null };

beforeAll(async () => {
  w = await buildWorld();
  admin = await connect(w.core, w.tokens.admin);
  acme = await connect(w.core, w.tokens.acmeAdmin);
  studio = await connect(w.core, w.tokens.studioMember);
  boring = await connect(w.core, w.tokens.boringAdmin);
});
afterAll(async () => {
  for (const s of [admin, acme, studio, boring]) await s.close();
  await w.close();
});

describe('apps', () => {
  it('lists the built-in catalog with auth kinds, fields and rate limits, and filters it', async () => {
    const all = data<{ apps: { slug: string; auth: { kind: string }[]; default_rate_per_minute: number }[] }>(await boring.call('list_apps'));
    expect(all.apps.map((a) => a.slug)).toEqual(expect.arrayContaining(['http', 'stripe', 'hubspot', 'slack', 'mindbody']));
    expect(all.apps.find((a) => a.slug === 'http')!.auth.map((a) => a.kind)).toEqual(['bearer', 'api_key', 'basic']);
    const some = data<{ apps: { slug: string }[] }>(await boring.call('list_apps', { query: 'STUDIO' }));
    expect(some.apps.map((a) => a.slug)).toEqual(['mindbody']);
  });

  it('lets admins add a custom app, once, and not over a built-in one', async () => {
    const app = { slug: 'acme-crm', name: 'Acme CRM', auth: [{ kind: 'api_key', header: 'X-Api-Key', fields: [{ name: 'api_key', label: 'API key', secret: true }] }], default_rate_per_minute: 30 };
    expect(text(await boring.call('create_app', app))).toMatch(/^Access denied: create_app needs the admin permission/);
    expect(data<{ app: { slug: string; builtin: boolean } }>(await admin.call('create_app', app)).app).toMatchObject({ slug: 'acme-crm', builtin: false });
    expect(text(await admin.call('create_app', app))).toMatch(/already exists/);
    expect(text(await admin.call('create_app', { ...app, slug: 'stripe' }))).toMatch(/built-in app/);
    const noSecret = { ...app, slug: 'x-crm', auth: [{ kind: 'bearer', fields: [{ name: 'user', label: 'User', secret: false }] }] };
    expect(text(await admin.call('create_app', noSecret))).toMatch(/at least one secret field/);
    const found = data<{ apps: { slug: string }[] }>(await boring.call('list_apps', { query: 'acme' }));
    expect(found.apps.map((a) => a.slug)).toEqual(['acme-crm']);
  });
});

describe('add_connection', () => {
  it('names the first connection of an app Default, and requires a unique name after that', async () => {
    const first = data<{ connection: Conn; credentials: Record<string, string>; entered_via: string }>(
      await boring.call('add_connection', { app: 'stripe', credentials: { secret_key: STRIPE_KEY }, notes: 'live account' }),
    );
    expect(first.connection).toMatchObject({ app: 'stripe', name: 'Default', status: 'active', notes: 'live account', source: 'own' });
    expect(first.credentials).toEqual({ secret_key: 'sk_live_…4242' });
    expect(first.entered_via).toBe('arguments');
    expect(JSON.stringify(first)).not.toContain(STRIPE_KEY);

    const unnamed = await boring.call('add_connection', { app: 'stripe', credentials: { secret_key: STRIPE_KEY } });
    expect(text(unnamed)).toMatch(/already has a stripe connection \([0-9a-f-]{36}\): give the new one a name/);
    data(await boring.call('add_connection', { app: 'stripe', name: 'EU', credentials: { secret_key: STRIPE_KEY } }));
    expect(text(await boring.call('add_connection', { app: 'stripe', name: 'eu', credentials: { secret_key: STRIPE_KEY } }))).toMatch(
      /already has a stripe connection named 'eu'/,
    );
  });

  it('validates credentials against the app, naming the missing or unknown field and never echoing a value', async () => {
    const missing = await boring.call('add_connection', { app: 'mindbody', credentials: { api_key: 'k'.repeat(20) } });
    expect(text(missing)).toBe("The credentials for Mindbody miss the field 'site_id' (Site id).");
    const unknown = await boring.call('add_connection', { app: 'mindbody', credentials: { api_key: 'secret-value-123456', site_id: '1', pin: '9999' } });
    expect(text(unknown)).toMatch(/Unknown credential field 'pin' for Mindbody/);
    expect(text(unknown)).not.toContain('secret-value-123456');
    const kind = await boring.call('add_connection', { app: 'http', credentials: { token: 't'.repeat(20), base_url: 'https://api.example.test' } });
    expect(text(kind)).toMatch(/bearer, api_key, basic: say which with credentials.auth_kind/);
    const http = data<{ credentials: Record<string, string> }>(
      await boring.call('add_connection', {
        app: 'http',
        credentials: { auth_kind: 'api_key', base_url: 'https://api.example.test', header_name: 'X-Key', api_key: 'key-ABCDEFGHIJKLMNOP' },
      }),
    );
    expect(http.credentials).toEqual({ base_url: 'https://api.example.test', header_name: 'X-Key', api_key: '…MNOP' }); // 'key-' is no known prefix
  });

  it('refuses an unknown app, oversized notes, and a name with a slash, clearly', async () => {
    expect(text(await boring.call('add_connection', { app: 'nosuchapp', credentials: { a: 'b' } }))).toMatch(/^Unknown app 'nosuchapp': list_apps/);
    expect(text(await boring.call('add_connection', { app: 'slack', notes: 'x'.repeat(2001), credentials: { bot_token: 'xoxb-1' } }))).toMatch(
      /Invalid argument 'notes'/,
    );
    expect(text(await boring.call('add_connection', { app: 'slack', name: 'a/b', credentials: { bot_token: 'xoxb-1' } }))).toMatch(/cannot contain '\/'/);
  });

  it('without credentials and without a page to send the person to, says what to do', async () => {
    const r = await boring.call('add_connection', { app: 'slack' });
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/cannot be asked for on a page: this server was not started with its pages.*Pass credentials instead/);
  });

  it('keeps the secret out of the audit log and out of every column', async () => {
    const entries = await w.database.db.select().from(auditLog).where(sql`${auditLog.tool} = 'add_connection'`);
    expect(entries.length).toBeGreaterThan(0);
    expect(JSON.stringify(entries)).not.toContain(STRIPE_KEY);
    const rows = await w.database.db.execute(sql`select * from connections`);
    const dump = JSON.stringify(rows);
    expect(dump).not.toContain(STRIPE_KEY);
    expect(dump).not.toContain('key-ABCDEFGHIJKLMNOP');
    expect(dump).not.toContain(STRIPE_KEY.slice(8, 30)); // no long piece of it either
  });
});

describe('list_connections', () => {
  it('finds connections by app name as you type, case-insensitively, and by connection name', async () => {
    const q = async (query: string) => data<Listing>(await boring.call('list_connections', { query })).own.map((c) => `${c.app}/${c.name}`);
    expect(await q('STRI')).toEqual(['stripe/Default', 'stripe/EU']);
    expect(await q('http api')).toEqual(['http/Default']); // the app's display name
    expect(await q('eu')).toEqual(['stripe/EU']);
    expect(await q('zzz')).toEqual([]);
    expect(await q('%')).toEqual([]); // wildcards are text
  });

  it('pages with a cursor without repeating or skipping', async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = data<Listing>(await boring.call('list_connections', { limit: 1, ...(cursor ? { cursor } : {}) }));
      seen.push(...page.own.map((c) => c.id));
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
    const all = data<Listing>(await boring.call('list_connections', {}));
    expect(seen).toEqual(all.own.map((c) => c.id));
    expect(text(await boring.call('list_connections', { cursor: 'bogus' }))).toMatch(/cursor is not valid/);
  });

  it('groups own connections, those shared by the parent, and those shared by the system account', async () => {
    data(await acme.call('add_connection', { app: 'mindbody', credentials: { api_key: 'mb-key-1234567890abcd', site_id: '-99' } }));
    data(await acme.call('add_connection', { app: 'hubspot', credentials: { access_token: 'pat-na1-0000000000000000' } }));
    data(await acme.call('share_connection', { connection: 'mindbody', shared: true }));
    data(await admin.call('add_connection', { account: 'system', app: 'slack', credentials: { bot_token: 'xoxb-system-000000000000' } }));
    data(await admin.call('share_connection', { account: 'system', connection: 'slack', shared: true }));
    data(await studio.call('add_connection', { app: 'stripe', credentials: { secret_key: 'sk_test_studio_0000000000' } }));

    const view = data<Listing>(await studio.call('list_connections', {}));
    expect(view.own.map((c) => `${c.app}/${c.name}`)).toEqual(['stripe/Default']);
    expect(view.shared_from_parent.map((c) => `${c.app}/${c.name}`)).toEqual(['mindbody/Default']); // not the unshared hubspot
    expect(view.shared_from_system.map((c) => `${c.app}/${c.name}`)).toEqual(['slack/Default']);
    expect(view.shared_from_parent[0]).toMatchObject({ source: 'parent', shared: true });

    // another customer sees the system's shared connection, nothing of acme's
    const other = data<Listing>(await boring.call('list_connections', {}));
    expect(other.shared_from_parent).toEqual([]);
    expect(other.shared_from_system.map((c) => c.app)).toEqual(['slack']);
    expect(data<Listing>(await boring.call('list_connections', { include_shared: false })).shared_from_system).toEqual([]);
  });
});

describe('a child and its parent’s shared connection', () => {
  it('the child can look at its usage but cannot edit, share, rate-limit, disconnect or view it', async () => {
    data(await studio.call('list_connection_usage', { connection: 'mindbody' }));
    for (const [tool, args] of [
      ['update_connection', { notes: 'mine now' }],
      ['disconnect_connection', {}],
      ['reconnect_connection', { credentials: { api_key: 'x'.repeat(20), site_id: '1' } }],
      ['view_connection_info', { password: 'whatever-password' }],
    ] as const) {
      const r = await studio.call(tool, { connection: 'mindbody/Default', ...args });
      expect(r.isError, tool).toBe(true);
      expect(text(r), tool).toMatch(/shared with this account by its parent account|Access denied/);
      expect(JSON.stringify(r)).not.toContain('mb-key-1234567890abcd');
    }
    // once unshared it is gone from the child entirely
    data(await acme.call('share_connection', { connection: 'mindbody', shared: false }));
    expect(text(await studio.call('list_connection_usage', { connection: 'mindbody' }))).toMatch(/^No connection 'mindbody' in account/);
    data(await acme.call('share_connection', { connection: 'mindbody', shared: true }));
  });

  it('a linked child cannot share its own connections', async () => {
    const child = await connect(w.core, w.tokens.acmeAdmin);
    const res = await child.call('share_connection', { account: 'acme-studio-01', connection: 'stripe', shared: true });
    expect(text(res)).toMatch(/is a linked child account: only a parent account/);
    await child.close();
  });
});

describe('notes, usage, disconnect and reconnect', () => {
  it('edits notes and renames', async () => {
    const r = data<{ connection: Conn }>(await boring.call('update_connection', { connection: 'stripe/EU', notes: 'EU entity; rotate yearly' }));
    expect(r.connection.notes).toBe('EU entity; rotate yearly');
    expect(data<{ connection: Conn }>(await boring.call('update_connection', { connection: 'stripe/EU', name: 'Europe' })).connection.name).toBe('Europe');
    expect(text(await boring.call('update_connection', { connection: 'stripe/Europe', name: 'default' }))).toMatch(/already has a stripe connection named/);
    expect(text(await boring.call('update_connection', { connection: 'stripe/Europe' }))).toMatch(/Nothing to change/);
  });

  it('disconnect shows the impact first, pauses the automations on confirm, and reconnect resumes them', async () => {
    const list = data<Listing>(await boring.call('list_connections', { query: 'stripe' }));
    const conn = list.own.find((c) => c.name === 'Default')!;
    const a1 = await automationUsing(w.core, w.accounts.boring, 'Sync invoices', [conn.id]);
    const a2 = await automationUsing(w.core, w.accounts.boring, 'Refund alerts', [conn.id]);
    const usage = data<{ automations: { name: string }[]; total: number }>(await boring.call('list_connection_usage', { connection: 'stripe' }));
    expect(usage.total).toBe(2);
    expect(usage.automations.map((a) => a.name)).toEqual(['Refund alerts', 'Sync invoices']);

    const plan = data<{ applied: boolean; confirm_token: string; automations_to_pause: { id: string }[] }>(
      await boring.call('disconnect_connection', { connection: 'stripe' }),
    );
    expect(plan.applied).toBe(false);
    expect(plan.automations_to_pause.map((a) => a.id).sort()).toEqual([a1, a2].sort());
    expect(data<Listing>(await boring.call('list_connections', { query: 'stripe' })).own.find((c) => c.id === conn.id)!.status).toBe('active');

    // a plan made stale by a new automation is refused
    const a3 = await automationUsing(w.core, w.accounts.boring, 'Late addition', [conn.id]);
    expect(text(await boring.call('disconnect_connection', { connection: 'stripe', confirm: plan.confirm_token }))).toMatch(/does not match the current plan/);
    const plan2 = data<{ confirm_token: string }>(await boring.call('disconnect_connection', { connection: 'stripe' }));
    const done = data<{ applied: boolean; automations_paused: number; connection: Conn }>(
      await boring.call('disconnect_connection', { connection: 'stripe', confirm: plan2.confirm_token }),
    );
    expect(done).toMatchObject({ applied: true, automations_paused: 3, connection: { status: 'disconnected' } });
    const paused = data<{ automations: { status: string; paused_by_this_connection: boolean }[] }>(await boring.call('list_connection_usage', { connection: 'stripe' }));
    expect(paused.automations.every((a) => a.status === 'paused' && a.paused_by_this_connection)).toBe(true);
    expect(text(await boring.call('disconnect_connection', { connection: 'stripe' }))).toMatch(/already disconnected/);

    const back = data<{ connection: Conn; automations_resumed: number; credentials: Record<string, string> }>(
      await boring.call('reconnect_connection', { connection: 'stripe', credentials: { secret_key: 'sk_live_NEWNEWNEWNEWNEW9999' } }),
    );
    expect(back).toMatchObject({ automations_resumed: 3, connection: { status: 'active' }, credentials: { secret_key: 'sk_live_…9999' } });
    const after = data<{ automations: { id: string; status: string }[] }>(await boring.call('list_connection_usage', { connection: 'stripe' }));
    expect(after.automations.map((a) => a.status)).toEqual(['active', 'active', 'active']);
    expect(after.automations.map((a) => a.id).sort()).toEqual([a1, a2, a3].sort());
  });

  it('disconnect and rate limits need the admin role in the account', async () => {
    const viewer = await connect(w.core, w.tokens.boringViewer);
    expect(text(await viewer.call('disconnect_connection', { connection: 'stripe' }))).toMatch(/^Access denied: this needs the admin role/);
    expect(text(await viewer.call('set_connection_rate_limit', { connection: 'stripe', per_minute: 5 }))).toMatch(/^Access denied/);
    expect(data<Listing>(await viewer.call('list_connections', {})).own.length).toBeGreaterThan(0);
    await viewer.close();
  });
});

describe('an expired connection', () => {
  it('shows as expired until reconnected; a basic-auth password is masked whole', async () => {
    const added = data<{ connection: Conn; credentials: Record<string, string> }>(
      await boring.call('add_connection', { app: 'mailchimp', credentials: { username: 'ops', password: 'a-very-long-mailchimp-api-key-us1' } }),
    );
    expect(added.credentials).toEqual({ username: 'ops', password: '••••••••' });
    const [row] = await w.database.db.select().from(connections).where(sql`${connections.id} = ${added.connection.id}`);
    await expireConnection(w.core, row!);
    const listed = data<Listing>(await boring.call('list_connections', { query: 'mailchimp' }));
    expect(listed.own[0]!.status).toBe('expired');
    const back = data<{ connection: Conn }>(
      await boring.call('reconnect_connection', { connection: 'mailchimp', credentials: { username: 'ops', password: 'a-new-mailchimp-api-key-us1' } }),
    );
    expect(back.connection.status).toBe('active');
  });
});

describe('rate limits', () => {
  it('overrides the app default per connection, and null returns to it', async () => {
    const set = data<{ connection: Conn }>(await boring.call('set_connection_rate_limit', { connection: 'stripe', per_minute: 5000 }));
    expect(set.connection.rate_limit).toEqual({ per_minute: 5000, source: 'connection' });
    const reset = data<{ connection: Conn }>(await boring.call('set_connection_rate_limit', { connection: 'stripe', per_minute: null }));
    expect(reset.connection.rate_limit).toEqual({ per_minute: 1500, source: 'app' });
    expect(text(await boring.call('set_connection_rate_limit', { connection: 'stripe', per_minute: 0 }))).toMatch(/Invalid argument 'per_minute'/);
  });
});

describe('view_connection_info', () => {
  let viewer: Session;
  const PASSWORD = 'correct horse battery staple';
  beforeAll(async () => {
    const u = await createUser(w.core, { email: 'ops2@boring.test', name: 'Ops Two', account: w.accounts.boring, role: 'admin', password: PASSWORD });
    viewer = await connect(w.core, u.token);
  });
  afterAll(async () => viewer.close());

  it('shows decrypted credentials only after the password, and audits both outcomes', async () => {
    const wrong = await viewer.call('view_connection_info', { connection: 'stripe', password: 'not the password' });
    expect(text(wrong)).toMatch(/^Access denied: the password is not correct \(4 attempts left/);
    expect(JSON.stringify(wrong)).not.toContain('sk_live_NEWNEWNEWNEWNEW9999');
    const ok = data<{ decrypted: Record<string, string>; credentials: Record<string, string>; shown_on: string }>(
      await viewer.call('view_connection_info', { connection: 'stripe', password: PASSWORD }),
    );
    expect(ok).toMatchObject({ decrypted: { secret_key: 'sk_live_NEWNEWNEWNEWNEW9999' }, credentials: { secret_key: 'sk_live_…9999' }, shown_on: 'result' });
    const entries = await w.database.db.select().from(auditLog).where(sql`${auditLog.tool} = 'view_connection_info' and ${auditLog.actorEmail} = 'ops2@boring.test'`);
    expect(entries.map((e) => e.outcome).sort()).toEqual(['denied', 'ok']);
    expect(JSON.stringify(entries)).not.toContain(PASSWORD);
    expect(JSON.stringify(entries)).not.toContain('NEWNEWNEW');
  });

  it('allows 5 failed attempts per 15 minutes, then refuses even the right password', async () => {
    for (let i = 0; i < 4; i++) await viewer.call('view_connection_info', { connection: 'stripe', password: `wrong-${i}` });
    const locked = await viewer.call('view_connection_info', { connection: 'stripe', password: PASSWORD });
    expect(text(locked)).toMatch(/too many wrong passwords; try again in 15 minutes/);
    expect(locked.structuredContent).toBeUndefined();
  });

  it('a user without a password is told what is missing', async () => {
    expect(text(await boring.call('view_connection_info', { connection: 'stripe', password: 'anything-at-all' }))).toMatch(/your user has none/);
  });
});

describe('secrets as arguments can be switched off', () => {
  it('refuses credentials and passwords as arguments, pointing to the page', async () => {
    const strict = await connect({ ...w.core, secretArgs: false }, w.tokens.boringAdmin);
    expect(text(await strict.call('add_connection', { app: 'slack', name: 'Ops', credentials: { bot_token: 'xoxb-123' } }))).toMatch(/SWITCHBOARD_SECRET_ARGS=off/);
    expect(text(await strict.call('view_connection_info', { connection: 'stripe', password: 'x' }))).toMatch(/SWITCHBOARD_SECRET_ARGS=off/);
    await strict.close();
  });
});

describe("another account's connection", () => {
  it('is invisible and unusable by id, by app/name and by app, even after a switch elsewhere', async () => {
    const theirs = data<Listing>(await boring.call('list_connections', { query: 'stripe' })).own[0]!;
    for (const key of [theirs.id, `stripe/${theirs.name}`]) {
      for (const [tool, extra] of [
        ['list_connection_usage', {}],
        ['update_connection', { notes: 'x' }],
        ['set_connection_rate_limit', { per_minute: 1 }],
        ['view_connection_info', { password: 'x' }],
      ] as const) {
        const r = await acme.call(tool, { connection: key, ...extra });
        expect(r.isError, `${tool} ${key}`).toBe(true);
        expect(text(r)).toMatch(/^No connection '.*' in account 'acme-fitness'/);
        expect(text(r)).not.toContain('Boring');
      }
    }
    // Switch Account into acme: the call acts in acme, where boring's connection does not exist
    const sw = await connect(w.core, w.tokens.switcher);
    data(await sw.call('switch_account', { account: 'acme-fitness', reason: 'isolation check' }));
    expect(text(await sw.call('update_connection', { connection: theirs.id, notes: 'x' }))).toMatch(/^No connection/);
    await sw.close();
    const unchanged = data<Listing>(await boring.call('list_connections', { query: 'stripe' })).own[0]!;
    expect(unchanged.notes).toBe(theirs.notes);
  });
});

describe('usage across accounts', () => {
  it("lists automations only in accounts the caller may see, and never pauses a former child's", async () => {
    const { row: shared } = await addConnection(w.core, w.accounts.acme, { app: 'hubspot', name: 'Chain CRM', credentials: { access_token: 'pat-na1-usage-000000000000' }, createdBy: null });
    await shareConnection(w.core, w.accounts.acme, shared, true);
    await automationUsing(w.core, w.accounts.acme, 'Chain report', [shared.id]);
    await automationUsing(w.core, w.accounts.studio2, 'Studio two private flow', [shared.id]);
    // a member of the parent cannot enter the studios: they see the count, not the studio's automation
    const member = await connect(w.core, w.tokens.acmeMember);
    const seen = data<{ automations: { name: string }[]; total: number; hidden: number }>(await member.call('list_connection_usage', { connection: 'hubspot/Chain CRM' }));
    expect(seen).toMatchObject({ total: 2, hidden: 1 });
    expect(seen.automations.map((a) => a.name)).toEqual(['Chain report']);
    expect(JSON.stringify(seen)).not.toContain('Studio two');
    await member.close();
    // the parent's admin sees both
    expect(data<{ total: number; hidden: number }>(await acme.call('list_connection_usage', { connection: 'hubspot/Chain CRM' }))).toMatchObject({ total: 2, hidden: 0 });
    // once studio2 is unlinked its automation no longer counts, and a disconnect leaves it alone
    await unlinkAccount(w.core, w.accounts.studio2);
    expect(data<{ total: number }>(await acme.call('list_connection_usage', { connection: 'hubspot/Chain CRM' })).total).toBe(1);
    const plan = data<{ confirm_token: string; automations_to_pause_total: number }>(await acme.call('disconnect_connection', { connection: 'hubspot/Chain CRM' }));
    expect(plan.automations_to_pause_total).toBe(1);
    expect(data<{ automations_paused: number }>(await acme.call('disconnect_connection', { connection: 'hubspot/Chain CRM', confirm: plan.confirm_token })).automations_paused).toBe(1);
    const [studioFlow] = await w.database.db.select().from(automations).where(sql`${automations.name} = 'Studio two private flow'`);
    expect(studioFlow!.status).toBe('active');
    await linkAccount(w.core, w.accounts.studio2, w.accounts.acme, 'studio-02');
  });
});

describe('masking', () => {
  it('keeps only a well-known prefix and, for long values, the last 4 characters', () => {
    expect(maskValue('sk_live_0123456789abcdefWXYZ')).toBe('sk_live_…WXYZ');
    expect(maskValue('xoxb-1234-5678-abcdefghijkl')).toBe('xoxb-…ijkl');
    expect(maskValue('Ab3dE_g7h9JkLmNoPqRs')).toBe('…PqRs'); // a random key with an '_' keeps no head
    expect(maskValue('Ab3dE_g7h9JkLmNo')).toBe('••••••••'); // short: nothing at all
  });

  it('refuses custom app fields that would clash with auth_kind or Object.prototype', async () => {
    for (const name of ['auth_kind', 'constructor', 'valueof']) {
      const app = { slug: `odd-${name.replace('_', '-')}`, name: 'Odd', default_rate_per_minute: 5, auth: [{ kind: 'bearer', fields: [{ name, label: 'x', secret: true }] }] };
      const r = await admin.call('create_app', app);
      expect(r.isError === true, name).toBe(name !== 'valueof'); // valueOf is reserved, valueof is just a name
      if (r.isError) expect(text(r)).toMatch(/is reserved|not a usable field name/);
    }
  });
});
