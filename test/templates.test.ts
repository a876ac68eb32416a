import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { and, eq, sql } from 'drizzle-orm';
import { connect, data, text, type Session } from './helpers/world.js';
import { engineWorld, localApp, startWorker, type EngineWorld, type LocalApp } from './helpers/apps.js';
import { createAccount, type Account } from '../src/core/accounts.js';
import { addConnection } from '../src/core/connections.js';
import { createUser } from '../src/core/users.js';
import { templatesAccount } from '../src/core/templates/account.js';
import { rowsOf } from '../src/db/client.js';
import { withAccount } from '../src/db/scope.js';
import { deploymentTargets, memberships } from '../src/db/schema/index.js';
import { applyBatch } from '../src/core/templates/apply.js';
import type { TemplateDefinition } from '../src/core/templates/definition.js';
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
// the app holds /slow until released: a run in flight while a deploy applies
let slowArrived!: () => void;
const slowIn = new Promise<void>((r) => (slowArrived = r));
let releaseSlow!: () => void;
const slowReleased = new Promise<void>((r) => (releaseSlow = r));

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
    if (req.url?.startsWith('/slow')) {
      slowArrived();
      void slowReleased.then(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"ok":true}');
      });
      return;
    }
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
    // ended in the rollback's own transaction: its message names the rollback, and it is finished
    expect(String(d.message)).toMatch(/^wave 1 regressed \(.+\); its 1 account\(s\) are being rolled back by deployment [0-9a-f-]{36}$/);
    expect(d.finished_at).not.toBeNull();
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

  it('reports progress while the call follows a deployment, when the client asks for it', async () => {
    const accounts = studios.slice(0, 10).map((s) => s.slug);
    data(await admin.call('create_template', { name: 'Progress', definition: { steps: [{ id: 'one', kind: 'transform', value: '{{ trigger.body }}' }] } }));
    const plan = data<{ plan: { hash: string } }>(await admin.call('deploy_template', { template: 'Progress', accounts }));
    const seen: { progress: number; total?: number; message?: string }[] = [];
    const r = await admin.client.callTool(
      { name: 'deploy_template', arguments: { template: 'Progress', accounts, plan_hash: plan.plan.hash, wait_seconds: 20 } },
      undefined,
      { onprogress: (p) => seen.push(p) },
    );
    expect(data<{ deployment: { status: string } }>(r as never).deployment.status).toBe('completed');
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((p) => p.total === 10 && /^\d+ of 10 accounts applied$/.test(p.message ?? ''))).toBe(true);
    expect(seen.map((p) => p.progress)).toEqual([...seen.map((p) => p.progress)].sort((a, b) => a - b));
    // without a progress token, none is sent (the call above is the only one that asked)
    const quiet: unknown[] = [];
    admin.client.setNotificationHandler((await import('@modelcontextprotocol/sdk/types.js')).ProgressNotificationSchema, (n) => void quiet.push(n));
    data(await admin.call('list_deployments', { template: 'Progress' }));
    expect(quiet).toEqual([]);
  });

  it('lets a run in flight finish on the revision it started with while a deploy writes a new one', async () => {
    const slowSteps = (label: string) => [
      { id: 'call', kind: 'http', method: 'POST', url: `${app.base}/slow`, connection: 'http', body: '{{ trigger.body }}' },
      { id: 'label', kind: 'transform', value: label },
    ];
    const one = ['chain-studio-20'];
    data(await admin.call('create_template', { name: 'Slow', definition: { steps: slowSteps('v1'), retries: 0 } }));
    const p1 = data<{ plan: { hash: string } }>(await admin.call('deploy_template', { template: 'Slow', accounts: one }));
    expect((await settle(admin, data<{ deployment: { id: string } }>(await admin.call('deploy_template', { template: 'Slow', accounts: one, plan_hash: p1.plan.hash })).deployment.id)).status).toBe('completed');
    const copy = data<{ automation: { id: string }; webhook: { url: string } }>(await admin.call('get_automation', { account: 'chain-studio-20', automation: 'Slow' }));
    expect((await fetch(copy.webhook.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":1}' })).status).toBe(202);
    await slowIn; // the run is inside its http step, on revision 1

    data(await admin.call('update_template', { template: 'Slow', definition: { steps: slowSteps('v2'), retries: 0 }, note: 'v2' }));
    const p2 = data<{ plan: { hash: string } }>(await admin.call('deploy_template', { template: 'Slow', accounts: one }));
    const d2 = data<{ deployment: { id: string } }>(await admin.call('deploy_template', { template: 'Slow', accounts: one, plan_hash: p2.plan.hash }));
    expect((await settle(admin, d2.deployment.id)).status).toBe('completed');
    releaseSlow();
    const runs = async () =>
      rowsOf<{ revision: number; status: string; label: unknown }>(
        await e.w.core.db.execute(sql`select revision, status, state->'label' as label from executions where automation_id = ${copy.automation.id}::uuid order by created_at`),
      );
    const end = Date.now() + 20_000;
    while ((await runs()).some((x) => x.status !== 'succeeded') && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    expect((await runs()).map((x) => [Number(x.revision), x.status, x.label])).toEqual([[1, 'succeeded', 'v1']]);
    // the next run is on the new revision
    expect((await fetch(copy.webhook.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":2}' })).status).toBe(202);
    const end2 = Date.now() + 20_000;
    while ((await runs()).length < 2 || (await runs()).some((x) => x.status !== 'succeeded')) {
      if (Date.now() > end2) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await runs()).map((x) => [Number(x.revision), x.status, x.label])).toEqual([[1, 'succeeded', 'v1'], [2, 'succeeded', 'v2']]);
  }, 60_000);

  it('applies a target once when two workers apply the same batch at once', async () => {
    const accounts = studios.slice(10, 16).map((s) => s.slug);
    data(await admin.call('create_template', { name: 'Twice', definition: { steps: [{ id: 'one', kind: 'transform', value: '{{ trigger.body }}' }] } }));
    const plan = data<{ plan: { hash: string } }>(await admin.call('deploy_template', { template: 'Twice', accounts }));
    const d = data<{ deployment: { id: string } }>(await admin.call('deploy_template', { template: 'Twice', accounts, plan_hash: plan.plan.hash, wait_seconds: 0 }));
    // the running worker applies it too: three appliers of the same targets
    const core = e.w.core;
    const [dep] = rowsOf<{ template_id: string; version: number }>(await core.db.execute(sql`select template_id, version from deployments where id = ${d.deployment.id}::uuid`));
    const [ver] = rowsOf<{ definition: TemplateDefinition }>(await core.db.execute(sql`select definition from template_versions where template_id = ${dep!.template_id}::uuid and version = ${dep!.version}`));
    const batch = await core.db.select().from(deploymentTargets).where(eq(deploymentTargets.deploymentId, d.deployment.id));
    const ctx = { deploymentId: d.deployment.id, templateId: String(dep!.template_id), templateName: 'Twice', definition: ver!.definition, actor: { id: null, email: null }, note: 'twice' };
    const outcomes = await Promise.all([applyBatch(core, ctx, batch), applyBatch(core, ctx, batch)]);
    expect((await settle(admin, d.deployment.id)).status).toBe('completed');
    // each account's outcome came from exactly one applier
    const applied = [...outcomes.flat()].filter((o) => o.status === 'done').map((o) => o.accountId);
    expect(new Set(applied).size).toBe(applied.length);
    const copies = rowsOf<{ n: number; revisions: number; audits: number }>(
      await core.db.execute(sql`
        select count(*)::int as n,
          (select count(*)::int from automation_revisions r join automations a on a.id = r.automation_id where a.template_id = ${dep!.template_id}::uuid) as revisions,
          (select count(*)::int from audit_log where session_id = ${`deployment:${d.deployment.id}`}) as audits
        from automations where template_id = ${dep!.template_id}::uuid`),
    )[0]!;
    expect([Number(copies.n), Number(copies.revisions), Number(copies.audits)]).toEqual([6, 6, 6]);
    const targets = await core.db.select().from(deploymentTargets).where(eq(deploymentTargets.deploymentId, d.deployment.id));
    expect(targets.map((t) => t.status)).toEqual(Array(6).fill('done'));
  });

  it('plans a copy already at the version as current, and turns on again a copy whose creation a rollback undid', async () => {
    const two = ['chain-studio-17', 'chain-studio-18'];
    data(await admin.call('create_template', { name: 'Undo', definition: { steps: [{ id: 'one', kind: 'transform', value: { v: 1, body: '{{ trigger.body }}' } }] } }));
    const apply = async (args: Record<string, unknown>, tool = 'deploy_template') => {
      const p = data<{ plan: { hash: string; counts: Record<string, number> } }>(await admin.call(tool, args));
      const d = data<{ deployment: { id: string } | null }>(await admin.call(tool, { ...args, plan_hash: p.plan.hash }));
      if (d.deployment) expect((await settle(admin, d.deployment.id)).status).toBe('completed');
      return { counts: p.plan.counts, id: d.deployment?.id };
    };
    const first = await apply({ template: 'Undo', accounts: two });
    expect(first.counts).toMatchObject({ create: 2 });
    // the same version again: nothing to write
    expect((await apply({ template: 'Undo', accounts: two })).counts).toMatchObject({ current: 2, create: 0, update: 0 });
    // undoing the creation: the copies are off and no longer run the template
    expect((await apply({ template: 'Undo', deployment: first.id }, 'rollback_template')).counts).toMatchObject({ disable: 2 });
    const state = async () =>
      rowsOf<{ enabled: boolean; template_version: number | null }>(
        await e.w.core.db.execute(sql`select a.enabled, a.template_version from automations a join templates t on t.id = a.template_id where t.name = 'Undo' order by a.account_id`),
      ).map((r) => [r.enabled, r.template_version === null ? null : Number(r.template_version)]);
    expect(await state()).toEqual([[false, null], [false, null]]);
    expect(data<{ copies: unknown[]; hidden: number }>(await admin.call('template_status', { template: 'Undo' })).copies).toEqual([]);
    // deploying to them again turns them on at the version
    expect((await apply({ template: 'Undo', accounts: two })).counts).toMatchObject({ update: 2 });
    expect(await state()).toEqual([[true, 1], [true, 1]]);
  });

  it('stops deploying to an account the person who started the rollout may no longer act in', async () => {
    const [s21, s22] = [studios[20]!, studios[21]!];
    const tpl = await templatesAccount(e.w.core);
    const { user, token } = await createUser(e.w.core, { email: 'mover@switchboard.test', name: 'Mover', account: s21, role: 'member', permissions: ['deploy_automations'] });
    await withAccount(e.w.core.db, [tpl.id, s22.id], (tx) => tx.insert(memberships).values([{ userId: user.id, accountId: tpl.id, role: 'member' }, { userId: user.id, accountId: s22.id, role: 'member' }]));
    const mover = await connect(e.w.core, token);
    data(await admin.call('create_template', { name: 'Revoked', definition: { steps: [{ id: 'one', kind: 'transform', value: '{{ trigger.body }}' }] } }));
    const args = { template: 'Revoked', accounts: [s21.slug, s22.slug], waves: [{ accounts: [s21.slug] }, '100%'], bake: '2s', min_executions: 0 };
    const p = data<{ plan: { hash: string; counts: Record<string, number> } }>(await mover.call('deploy_template', args));
    expect(p.plan.counts).toMatchObject({ create: 2 });
    const d = data<{ deployment: { id: string } }>(await mover.call('deploy_template', { ...args, plan_hash: p.plan.hash, wait_seconds: 0 }));
    await settle(admin, d.deployment.id, (x) => x.status === 'baking');
    // while the first wave bakes, the person loses the second account
    await withAccount(e.w.core.db, [s22.id], (tx) => tx.delete(memberships).where(and(eq(memberships.userId, user.id), eq(memberships.accountId, s22.id))));
    const done = await settle(admin, d.deployment.id);
    expect(done.status).toBe('completed');
    expect(done.targets).toMatchObject({ done: 1, failed: 1 });
    const failed = data<{ accounts: { account: { slug: string }; reason: string }[] }>(await admin.call('get_deployment', { deployment: d.deployment.id, status: 'failed' })).accounts;
    expect(failed.map((f) => [f.account.slug, f.reason])).toEqual([[s22.slug, 'the person who started the deployment may no longer act in this account']]);
    expect(rowsOf<{ n: number }>(await e.w.core.db.execute(sql`select count(*)::int as n from automations a join templates t on t.id = a.template_id where t.name = 'Revoked' and a.account_id = ${s22.id}::uuid`))[0]!.n).toBe(0);
    await mover.close();
  }, 30_000);

  it('refuses hostile input with one clear sentence: a forged cursor, an app named in another case twice, a variable named like an object property', async () => {
    const forged = Buffer.from(JSON.stringify([3_000_000_000])).toString('base64url');
    const page = data<{ accounts: unknown[] }>(await admin.call('get_deployment', { deployment: deploymentId, cursor: forged }));
    expect(page.accounts).toEqual([]);
    const twice = await admin.call('deploy_template', { template: 'Bookings sync', accounts: ['chain-studio-01'], connections: { HTTP: 'Default', http: 'Other' } });
    expect(text(twice)).toBe("connections names the app 'http' twice.");
    // an app named in capitals binds the connection it names
    const other = await admin.call('deploy_template', { template: 'Bookings sync', version: 2, accounts: ['chain-studio-01'], connections: { HTTP: 'Other' } });
    expect(data<{ plan: { blocked_by: Record<string, number> } }>(other).plan.blocked_by).toEqual({ no_connection: 1 });
    data(await admin.call('create_template', { name: 'Proto', definition: { steps: [{ id: 'one', kind: 'transform', value: '{{ vars.toString }}' }], variables: [{ name: 'toString', type: 'string' }] } }));
    const plan = data<{ plan: { blocked_by: Record<string, number> } }>(await admin.call('deploy_template', { template: 'Proto', accounts: ['chain-studio-01'] }));
    expect(plan.plan.blocked_by).toEqual({ missing_variable: 1 });
    // a credential is a connection's, never a variable's (it would sit in every revision and plan)
    const inVar = await admin.call('create_template', {
      name: 'Key in a variable',
      definition: { steps: [{ id: 'send', kind: 'http', method: 'POST', url: `${app.base}/x`, headers: { Authorization: 'Bearer {{ vars.api_key }}' } }], variables: [{ name: 'api_key', type: 'string' }] },
    });
    expect(text(inVar)).toMatch(/\(headers\.Authorization\): credentials do not go in a step; name a connection/);
  });

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
    const names = (r: unknown) => data<{ templates: { name: string }[] }>(r as never).templates.map((t) => t.name);
    expect(names(await builder.call('list_templates', {}))).toEqual(names(await admin.call('list_templates', {})));
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
