import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { connect, data, text, type Session } from './helpers/world.js';
import { engineWorld, localApp, startWorker, type EngineWorld, type LocalApp } from './helpers/apps.js';
import { createAccount, type Account } from '../src/core/accounts.js';
import { addConnection } from '../src/core/connections.js';
import { createUser } from '../src/core/users.js';
import { templatesAccount } from '../src/core/templates/account.js';
import { rowsOf } from '../src/db/client.js';
import { withAccount } from '../src/db/scope.js';
import { memberships } from '../src/db/schema/index.js';
import type { Worker } from '../src/engine/worker.js';

/**
 * Templates end to end, through a real MCP client: a chain of 30 studios, each with its own
 * connection to a local app; deploys planned and applied with their hash, driven by a real worker;
 * webhooks through the real ingress; rollback, drift, breaking changes, a regressing wave.
 */

let e: EngineWorld;
let app: LocalApp;
let worker: Worker;
let admin: Session;
let chain: Account;
const studios: Account[] = [];
const hits: { path: string; auth: string | undefined }[] = [];
let failV2 = false;

const steps = (path: string) => [
  { id: 'send', kind: 'http', method: 'POST', url: `${app.base}${path}/{{ vars.site_id }}`, connection: 'http', body: { event: '{{ trigger.body }}', channel: '{{ vars.channel }}' } },
];
const variables = [
  { name: 'site_id', type: 'string', description: 'The studio at the booking system.' },
  { name: 'channel', type: 'string', required: false, default: '#ops' },
];

async function settle(s: Session, id: string, until: (d: Record<string, unknown>) => boolean = (d) => !['running', 'baking'].includes(String(d.status)), ms = 30_000) {
  const end = Date.now() + ms;
  for (;;) {
    const d = data<{ deployment: Record<string, unknown> }>(await s.call('get_deployment', { deployment: id, limit: 100 })).deployment;
    if (until(d) || Date.now() > end) return d;
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  e = await engineWorld();
  app = await localApp((req, res) => {
    hits.push({ path: req.url ?? '', auth: req.headers.authorization });
    req.resume();
    req.on('end', () => {
      res.writeHead(failV2 && req.url?.startsWith('/v2') ? 500 : 200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
  const core = e.w.core;
  chain = await createAccount(core, { name: 'Chain Gyms', slug: 'chain-gyms' });
  for (let i = 1; i <= 30; i++) {
    const n = String(i).padStart(2, '0');
    const s = await createAccount(core, { name: `Chain Studio ${n}`, slug: `chain-studio-${n}`, parent: chain, routingKey: `cs-${n}` });
    studios.push(s);
    // studio 30 has no connection
    if (i < 30) await addConnection(core, s, { app: 'http', name: 'Default', credentials: { auth_kind: 'bearer', base_url: app.base, token: `studio-token-${n}` }, createdBy: null });
  }
  worker = await startWorker(e.w);
  admin = await connect(core, e.w.tokens.admin);
}, 60_000);

afterAll(async () => {
  await admin?.close();
  await worker?.stop();
  await app?.close();
  await e?.close();
});

const valuesFor = (except: number[]) => ({ site_id: { by_account: Object.fromEntries(studios.filter((_, i) => !except.includes(i + 1)).map((s) => [s.slug, `site-${s.slug.slice(-2)}`])) } });

describe('templates', () => {
  it('creates a template in the templates account with variables, and refuses a connection named by id or app/name', async () => {
    const made = data<{ template: { latest_version: number; apps: string[] }; version: { classification: string } }>(
      await admin.call('create_template', { name: 'Bookings sync', definition: { steps: steps('/v1'), variables } }),
    );
    expect(made.template.latest_version).toBe(1);
    expect(made.template.apps).toEqual(['http']);
    expect(made.version.classification).toBe('initial');
    const bad = await admin.call('create_template', { name: 'Bad', definition: { steps: [{ ...steps('/v1')[0], connection: 'http/Default' }], variables } });
    expect(bad.isError).toBe(true);
    expect(text(bad)).toMatch(/named by its app/);
    const undeclared = await admin.call('create_template', { name: 'Bad2', definition: { steps: steps('/v1') } });
    expect(text(undeclared)).toMatch(/reads vars\.site_id, but no variable 'site_id' is declared/);
    const tpl = await templatesAccount(e.w.core);
    const [row] = rowsOf<{ account_id: string }>(await e.w.core.db.execute(sql`select account_id from templates where name = 'Bookings sync'`));
    expect(String(row!.account_id)).toBe(tpl.id);
  });

  let deploymentId = '';
  it('deploys to all 30 studios in one call: the one without the connection and the one without its value are blocked, the rest applied', async () => {
    const plan = data<{ applied: boolean; plan: { hash: string; counts: Record<string, number>; targets: { account: { slug: string }; action: string; code: string | null; needs: string[] }[] } }>(
      await admin.call('deploy_template', { template: 'Bookings sync', accounts: { children_of: 'chain-gyms' }, values: valuesFor([29]) }),
    );
    expect(plan.applied).toBe(false);
    expect(plan.plan.counts).toMatchObject({ create: 28, blocked: 2 });
    const blocked = Object.fromEntries(plan.plan.targets.filter((t) => t.action === 'blocked').map((t) => [t.account.slug, t.code]));
    expect(blocked).toEqual({ 'chain-studio-29': 'missing_variable', 'chain-studio-30': 'no_connection' });

    const applied = data<{ applied: boolean; deployment: { id: string; status: string } }>(
      await admin.call('deploy_template', { template: 'Bookings sync', accounts: { children_of: 'chain-gyms' }, values: valuesFor([29]), plan_hash: plan.plan.hash, wait_seconds: 20 }),
    );
    expect(applied.applied).toBe(true);
    deploymentId = applied.deployment.id;
    const d = await settle(admin, deploymentId);
    expect(d.status).toBe('completed');
    expect(d.targets).toMatchObject({ done: 28 });
    const copies = rowsOf<{ account_id: string; template_version: number; revision: number }>(
      await e.w.core.db.execute(sql`select account_id, template_version, revision from automations where name = 'Bookings sync'`),
    );
    expect(copies.length).toBe(28);
    expect(copies.every((c) => Number(c.template_version) === 1 && Number(c.revision) === 1)).toBe(true);
    // the customer's own audit log says what changed it
    const audit = rowsOf<{ n: number }>(await e.w.core.db.execute(sql`select count(*)::int as n from audit_log where tool = 'deploy_template' and account_id = ${studios[0]!.id}::uuid`));
    expect(Number(audit[0]!.n)).toBe(1);
  });

  it("each copy runs in its own account with its own connection and values", async () => {
    const s = await connect(e.w.core, e.w.tokens.admin);
    const got = data<{ webhook: { url: string }; automation: { id: string } }>(await s.call('get_automation', { account: 'chain-studio-03', automation: 'Bookings sync' }));
    const res = await fetch(got.webhook.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ booking: 1 }) });
    expect(res.status).toBe(202);
    const end = Date.now() + 10_000;
    let rows: { account_id: string; status: string }[] = [];
    while (Date.now() < end) {
      rows = rowsOf(await e.w.core.db.execute(sql`select account_id, status from executions where automation_id = ${got.automation.id}::uuid`));
      if (rows[0]?.status === 'succeeded') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(rows.map((r) => [String(r.account_id), r.status])).toEqual([[studios[2]!.id, 'succeeded']]);
    expect(hits.some((h) => h.path === '/v1/site-03' && h.auth === 'Bearer studio-token-03')).toBe(true);
    await s.close();
  });

  it('refuses a stale plan hash with what changed', async () => {
    const plan = data<{ plan: { hash: string } }>(await admin.call('deploy_template', { template: 'Bookings sync', accounts: { children_of: 'chain-gyms' }, values: valuesFor([]) }));
    await addConnection(e.w.core, studios[29]!, { app: 'http', name: 'Default', credentials: { auth_kind: 'bearer', base_url: app.base, token: 'studio-token-30' }, createdBy: null });
    const stale = await admin.call('deploy_template', { template: 'Bookings sync', accounts: { children_of: 'chain-gyms' }, values: valuesFor([]), plan_hash: plan.plan.hash });
    expect(stale.isError).toBe(true);
    expect(text(stale)).toMatch(/plan changed since the dry run: the accounts' actions moved \(.*create 1 → 2/);
  });

  it('classifies a compatible change, rolls it out, and rolls it back to exactly the revision each ran before', async () => {
    const up = data<{ version: { version: number; classification: string }; diff: { steps: { changed: { id: string; fields: string[] }[] } } }>(
      await admin.call('update_template', { template: 'Bookings sync', definition: { steps: steps('/v1b'), variables }, note: 'new path' }),
    );
    expect(up.version).toMatchObject({ version: 2, classification: 'compatible' });
    expect(up.diff.steps.changed).toEqual([{ id: 'send', fields: ['url'] }]);
    const before = rowsOf<{ id: string; definition: unknown }>(
      await e.w.core.db.execute(sql`select a.id, r.definition from automations a join automation_revisions r on r.automation_id = a.id and r.revision = a.revision where a.name = 'Bookings sync' order by a.id`),
    );
    const plan = data<{ plan: { hash: string; counts: Record<string, number>; targets: { action: string; steps_changed: string[] }[] } }>(
      await admin.call('deploy_template', { template: 'Bookings sync', accounts: 'all' }),
    );
    expect(plan.plan.counts).toMatchObject({ update: 28 });
    expect(plan.plan.targets.find((t) => t.action === 'update')!.steps_changed).toEqual(['send']);
    const d = data<{ deployment: { id: string } }>(await admin.call('deploy_template', { template: 'Bookings sync', accounts: 'all', plan_hash: plan.plan.hash }));
    expect((await settle(admin, d.deployment.id)).status).toBe('completed');
    const rb = data<{ plan: { hash: string; counts: Record<string, number> } }>(await admin.call('rollback_template', { template: 'Bookings sync', deployment: d.deployment.id }));
    expect(rb.plan.counts).toMatchObject({ restore: 28 });
    const applied = data<{ deployment: { id: string } }>(await admin.call('rollback_template', { template: 'Bookings sync', deployment: d.deployment.id, plan_hash: rb.plan.hash }));
    expect((await settle(admin, applied.deployment.id)).status).toBe('completed');
    const after = rowsOf<{ id: string; definition: unknown; template_version: number; revision: number }>(
      await e.w.core.db.execute(sql`select a.id, r.definition, a.template_version, a.revision from automations a join automation_revisions r on r.automation_id = a.id and r.revision = a.revision where a.name = 'Bookings sync' order by a.id`),
    );
    expect(after.map((a) => a.definition)).toEqual(before.map((b) => b.definition));
    expect(after.every((a) => Number(a.template_version) === 1 && Number(a.revision) === 3)).toBe(true);
  });

  it('blocks a copy changed by hand (drift), and a breaking version for accounts not ready', async () => {
    data(await admin.call('update_automation', { account: 'chain-studio-05', automation: 'Bookings sync', retries: 1, note: 'by hand' }));
    const v3 = data<{ version: { classification: string; reasons: string[] } }>(
      await admin.call('update_template', { template: 'Bookings sync', definition: { steps: steps('/v1'), variables: [...variables, { name: 'region', type: 'string' }] }, note: 'needs a region' }),
    );
    expect(v3.version.classification).toBe('breaking');
    expect(v3.version.reasons).toEqual(['it needs a value for the new required variable region']);
    const plan = data<{ plan: { counts: Record<string, number>; blocked_by: Record<string, number>; targets: { account: { slug: string }; code: string | null; needs: string[] }[] } }>(
      await admin.call('deploy_template', { template: 'Bookings sync', accounts: 'all', values: { region: { by_account: { 'chain-studio-01': 'eu' } } } }),
    );
    expect(plan.plan.blocked_by).toEqual({ drift: 1, not_ready: 26 });
    expect(plan.plan.counts).toMatchObject({ update: 1 });
    expect(plan.plan.targets.find((t) => t.account.slug === 'chain-studio-02')!.needs).toEqual(['a value for region']);
    const status = data<{ copies: { account: { slug: string }; drift: boolean }[] }>(await admin.call('template_status', { template: 'Bookings sync' }));
    expect(status.copies.filter((c) => c.drift).map((c) => c.account.slug)).toEqual(['chain-studio-05']);
  });

  it('refuses a second deployment of the same template while one runs', async () => {
    const args = { template: 'Bookings sync', version: 2, accounts: ['chain-studio-01', 'chain-studio-02'], waves: [1, '100%'], bake: '1h' };
    const plan = data<{ plan: { hash: string } }>(await admin.call('deploy_template', args));
    const first = data<{ deployment: { id: string } }>(await admin.call('deploy_template', { ...args, plan_hash: plan.plan.hash, wait_seconds: 0 }));
    const again = await admin.call('deploy_template', { ...args, plan_hash: plan.plan.hash });
    expect(again.isError).toBe(true);
    expect(text(again)).toContain(`already running (${first.deployment.id})`);
    data(await admin.call('cancel_deployment', { deployment: first.deployment.id }));
    const d = await settle(admin, first.deployment.id);
    expect(d.status).toBe('cancelled');
  });

  it('stops a wave that regresses and rolls it back by itself', async () => {
    const gateSteps = (path: string) => [{ id: 'send', kind: 'http', method: 'POST', url: `${app.base}${path}`, connection: 'http', body: '{{ trigger.body }}' }];
    data(await admin.call('create_template', { name: 'Gate', definition: { steps: gateSteps('/v1-gate'), retries: 0 } }));
    const three = ['chain-studio-10', 'chain-studio-11', 'chain-studio-12'];
    const p1 = data<{ plan: { hash: string } }>(await admin.call('deploy_template', { template: 'Gate', accounts: three }));
    const d1 = data<{ deployment: { id: string } }>(await admin.call('deploy_template', { template: 'Gate', accounts: three, plan_hash: p1.plan.hash }));
    await settle(admin, d1.deployment.id);
    const urls: string[] = [];
    for (const a of three) urls.push(data<{ webhook: { url: string } }>(await admin.call('get_automation', { account: a, automation: 'Gate' })).webhook.url);
    const send = () => Promise.all(urls.map((u) => fetch(u, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":1}' })));
    for (let i = 0; i < 3; i++) await send();
    failV2 = true;
    data(await admin.call('update_template', { template: 'Gate', definition: { steps: gateSteps('/v2-gate'), retries: 0 }, note: 'new endpoint' }));
    const args = { template: 'Gate', accounts: three, waves: [1, '100%'], bake: '1s', min_executions: 2, auto_rollback: true };
    const p2 = data<{ plan: { hash: string; waves: number[] } }>(await admin.call('deploy_template', args));
    expect(p2.plan.waves).toEqual([1, 2]);
    const d2 = data<{ deployment: { id: string } }>(await admin.call('deploy_template', { ...args, plan_hash: p2.plan.hash, wait_seconds: 0 }));
    // traffic keeps coming while the first wave bakes
    const d = await settle(admin, d2.deployment.id, (x) => {
      void send().catch(() => {});
      return !['running', 'baking'].includes(String(x.status));
    }, 30_000);
    expect(d.status).toBe('rolled_back');
    const wave = (d.waves as { decision: string; gate: { after: { failure_rate: number }; before: { failure_rate: number }; new_error_codes: string[] } }[])[0]!;
    expect(wave.decision).toBe('regressed');
    expect(wave.gate.after.failure_rate).toBe(1);
    expect(wave.gate.before.failure_rate).toBe(0);
    expect(wave.gate.new_error_codes).toEqual(['http_5xx']);
    expect(d.targets).toMatchObject({ rolled_back: 1, cancelled: 2 });
    const list = data<{ deployments: { id: string; rollback_of: string | null; kind: string }[] }>(await admin.call('list_deployments', { template: 'Gate' }));
    const rollback = list.deployments.find((x) => x.rollback_of === d2.deployment.id)!;
    expect(rollback.kind).toBe('rollback');
    expect((await settle(admin, rollback.id)).status).toBe('completed');
    const defs = rowsOf<{ url: string; template_version: number }>(
      await e.w.core.db.execute(sql`select r.definition->'steps'->0->>'url' as url, a.template_version from automations a join automation_revisions r on r.automation_id = a.id and r.revision = a.revision where a.name = 'Gate'`),
    );
    expect(defs.map((x) => [x.url, Number(x.template_version)])).toEqual(three.map(() => [`${app.base}/v1-gate`, 1]));
    failV2 = false;
  }, 60_000);

  it('keeps templates and deployments to those allowed: the permission, the templates account, and every target account', async () => {
    const boring = await connect(e.w.core, e.w.tokens.boringAdmin);
    expect(text(await boring.call('list_templates', {}))).toMatch(/Access denied: acting in account 'templates'/);
    expect(text(await boring.call('deploy_template', { template: 'Bookings sync', accounts: ['boring-co'] }))).toMatch(/needs the deploy_automations permission/);
    await boring.close();
    // a builder: a member of the templates account with deploy_automations, nothing in the chain
    const tpl = await templatesAccount(e.w.core);
    const { user, token } = await createUser(e.w.core, { email: 'builder@switchboard.test', name: 'Builder', account: e.w.accounts.boring, role: 'admin', permissions: ['deploy_automations'] });
    await withAccount(e.w.core.db, [tpl.id], (tx) => tx.insert(memberships).values({ userId: user.id, accountId: tpl.id, role: 'member' }));
    const builder = await connect(e.w.core, token);
    expect(data<{ templates: unknown[] }>(await builder.call('list_templates', {})).templates.length).toBe(2);
    const denied = await builder.call('deploy_template', { template: 'Bookings sync', accounts: ['chain-studio-01'] });
    expect(text(denied)).toBe("Access denied: acting in account 'chain-studio-01' needs the Switch Account permission or a membership in that account.");
    expect(text(await builder.call('deploy_template', { template: 'Bookings sync', accounts: { children_of: 'chain-gyms' } }))).toMatch(/^Access denied/);
    expect(text(await builder.call('deploy_template', { template: 'Bookings sync', accounts: 'all' }))).toMatch(/needs the Switch Account permission/);
    // its own account works; template_status and get_deployment show only what it may see
    const own = data<{ plan: { counts: Record<string, number>; blocked_by: Record<string, number> } }>(
      await builder.call('deploy_template', { template: 'Bookings sync', version: 2, accounts: ['boring-co'], values: { site_id: 'b' } }),
    );
    expect(own.plan.blocked_by).toEqual({ no_connection: 1 });
    const status = data<{ copies: unknown[]; hidden: number }>(await builder.call('template_status', { template: 'Bookings sync' }));
    expect(status.copies).toEqual([]);
    expect(status.hidden).toBe(28);
    const dep = data<{ accounts: unknown[]; hidden: number }>(await builder.call('get_deployment', { deployment: deploymentId }));
    expect(dep.accounts).toEqual([]);
    expect(dep.hidden).toBe(28);
    await builder.close();
  });
});
