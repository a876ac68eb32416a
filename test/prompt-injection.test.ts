import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq, sql } from 'drizzle-orm';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { connect, data, text, type Session, type World } from './helpers/world.js';
import { engineWorld, localApp, startWorker, type LocalApp } from './helpers/apps.js';
import type { HttpHandle } from '../src/http/server.js';
import type { Worker } from '../src/engine/worker.js';
import { awaitExecution } from '../src/core/executions.js';
import { getAccountById, type Account } from '../src/core/accounts.js';
import { users, webhookDeliveries } from '../src/db/schema/index.js';
import { rowsOf } from '../src/db/client.js';
import { CORPUS, byId, fitting, type Injection } from './injection/corpus.js';
import { Inspector } from './injection/inspect.js';

/**
 * Prompt injection through data (issue 12, item 2). Every stored-text field a customer, a sender
 * or an upstream app controls is planted with the corpus (test/injection/corpus.ts) through the
 * real paths — tools, the webhook ingress, an upstream on 127.0.0.1 answering 4xx/5xx with it —
 * and every tool that reads them back is called. Held to (test/injection/inspect.ts): no tool's
 * own sentence carries planted text; planted text shows only at that tool's data fields
 * (test/injection/data-fields.ts), byte for byte; diagnoses, health, deploy and replay plans are
 * the same as for plain text; nothing planted changes what a caller sees or does.
 *
 * Adding a tool: INJECTION_DISCOVER=1 prints, per tool, every path where planted text showed.
 */

let w: World;
let http: HttpHandle;
let worker: Worker;
let upstream: LocalApp;
let admin: Session;
let boring: Session;
let viewer: Session;
let studio: Session;
const I = new Inspector();
const sessions: Session[] = [];

// which corpus entries fit which field
const noExpr = (list: Injection[]) => list.filter((c) => !c.text.includes('{{'));
const NAMES = fitting(200);
const CONN_NAMES = fitting(100, { noSlash: true });
const KEYS = fitting(100);
const LONG = fitting(2000);
const REASONS = fitting(500);
const HEADERS = noExpr(fitting(500, { ascii: true }));
const STATIC = noExpr(fitting(4000));
const nth = <T>(list: T[], i: number): T => list[i % list.length]!;
/** the template's name; boring-co's automations take the other names (a copy would find its name taken) */
const TEMPLATE_NAME = nth(NAMES, 4).text;
const AUTOMATION_NAMES = NAMES.filter((c) => c.text !== TEMPLATE_NAME);

/** What the upstream answers: /s/<status>/<plain|inj>/<corpus index> in JSON, /t/… as text/plain. */
function answer(req: IncomingMessage, res: ServerResponse) {
  req.resume();
  req.on('end', () => {
    const m = /^\/([st])\/(\d{3})\/(plain|inj)\/(\d+)/.exec(new URL(req.url!, 'http://x').pathname);
    const status = m ? Number(m[2]) : 200;
    const inj = m?.[3] === 'inj';
    const said = inj ? CORPUS[Number(m[4])]!.text : 'amount is required';
    const json = m?.[1] !== 't';
    // the headers the engine records carry it too
    res.writeHead(status, {
      'content-type': json ? 'application/json' : 'text/plain; charset=utf-8',
      'x-request-id': inj ? byId('system').text : 'upstream-1',
      ...(status === 401 ? { 'www-authenticate': inj ? byId('json-break').text : 'Bearer' } : {}),
    });
    res.end(json ? JSON.stringify({ error: said }) : said);
  });
}

// the automations of boring-co, each named with a corpus entry, by what they do
const ROLES = ['ok', 'http_401', 'http_4xx', 'http_5xx', 'text_4xx', 'expr', 'filter', 'noop'] as const;
type Role = (typeof ROLES)[number];
/** the corpus entry the upstream answers with, per role */
const ANSWER: Partial<Record<Role, string>> = { ok: 'roles', http_401: 'jsonrpc', http_4xx: 'long', http_5xx: 'emoji-long', text_4xx: 'emoji-long' };
const automations = new Map<Role, { id: string; name: string; hook: string }>();
const twins = new Map<string, { plain: string; inj: string }>();
const deliveries: { account: string; id: string }[] = [];
/** the x-note header and the note query parameter each injected delivery carried */
const sent: { header: string; query: string }[] = [];
const connIds: string[] = [];
let sharedConnId = '';
let templateId = '';
let templateName = '';
let deploymentId = '';
let routedName = '';
let vault: Session;
/** what the switched session heard on its next call after its switch was ended */
let ended: CallToolResult;
let visibleBefore: string[] = [];
let permissionsBefore: Record<string, string[]> = {};
/** every user's tenant-wide permissions, by email */
const permissions = async () =>
  Object.fromEntries((await w.core.db.select({ email: users.email, permissions: users.permissions }).from(users)).map((u) => [u.email, [...u.permissions].sort()]));
const userTokens: { id: string; token: string; tokenId: string; name: string }[] = [];

const stepsFor = (role: Role, i: number) => {
  const to = (kind: 's' | 't', status: number) => `${upstream.base}/${kind}/${status}/{{ trigger.body.variant }}/{{ trigger.body.cid }}`;
  const call = (url: string, connection: string) => [
    { id: 'send', kind: 'http', method: 'POST', url, connection, headers: { 'x-inj': nth(HEADERS, i).text }, body: { note: nth(noExpr(LONG), i).text, event: '{{ trigger.body.variant }}' } },
  ];
  switch (role) {
    case 'ok':
      return call(to('s', 200), connIds[0]!);
    case 'http_401':
      return call(to('s', 401), connIds[1]!);
    case 'http_4xx':
      return call(to('s', 422), connIds[0]!);
    case 'http_5xx':
      return call(to('s', 500), connIds[0]!);
    case 'text_4xx':
      return call(to('t', 422), connIds[0]!);
    case 'expr':
      return [{ id: 'check', kind: 'transform', value: '{{ $assert($exists(trigger.body.email), trigger.body.msg) }}' }];
    case 'filter':
      return [{ id: 'only', kind: 'filter', condition: 'trigger.body.variant = "never"' }];
    default:
      return [{ id: 'keep', kind: 'transform', value: nth(STATIC, i).text }];
  }
};

async function post(hook: string, body: string, headers: Record<string, string> = {}): Promise<string> {
  const res = await fetch(hook, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
  const id = ((await res.json()) as { delivery_id: string }).delivery_id;
  const [d] = await w.core.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, id));
  if (d?.executionId) await awaitExecution(w.core, (await getAccountById(w.core, d.routedAccountId ?? d.accountId)) as Account, d.executionId, 15_000);
  return id;
}

/** The plain and the injected delivery of one automation: the same event but for the text it carries. */
async function twin(key: string, hook: string, cid: string, account: string, extra: { plain?: Record<string, unknown>; inj?: Record<string, unknown> } = {}) {
  const k = twins.size;
  const carried = { header: nth(HEADERS, k).text, query: nth(NAMES, k).text };
  sent.push(carried);
  const plain = await post(hook, JSON.stringify({ variant: 'plain', cid: 0, msg: 'email is required', notes: ['plain'], ...extra.plain }), { 'x-note': 'plain' });
  const inj = await post(
    `${hook}?note=${encodeURIComponent(carried.query)}`,
    JSON.stringify({ variant: 'inj', cid: CORPUS.indexOf(byId(cid)), msg: nth(NAMES, k + 1).text, notes: CORPUS.map((c) => c.text), ...extra.inj }),
    { 'x-note': carried.header },
  );
  twins.set(key, { plain, inj });
  deliveries.push({ account, id: plain }, { account, id: inj });
}

beforeAll(async () => {
  upstream = await localApp(answer);
  ({ w, http } = await engineWorld());
  admin = await connect(w.core, w.tokens.admin);
  boring = await connect(w.core, w.tokens.boringAdmin);
  viewer = await connect(w.core, w.tokens.boringViewer);
  studio = await connect(w.core, w.tokens.studioMember);
  sessions.push(admin, boring, viewer, studio);
  visibleBefore = (await I.ok<{ accounts: { id: string }[] }>(viewer, 'list_accounts', { limit: 200 })).accounts.map((a) => a.id).sort();
  permissionsBefore = await permissions();

  // accounts: names, and children addressed by corpus routing keys
  for (const [i, c] of NAMES.entries()) await I.ok(admin, 'create_account', { name: c.text, slug: `inj-${i}` });
  for (const [i, c] of KEYS.slice(1).entries()) {
    await I.ok(admin, 'create_account', { name: nth(NAMES, i + 5).text, slug: `inj-child-${i}`, parent: 'acme-fitness', routing_key: c.text });
  }
  await I.ok(admin, 'create_account', { name: nth(NAMES, 6).text, slug: 'inj-free' });
  await I.ok(admin, 'set_account_status', { account: 'inj-0', status: 'suspended', reason: nth(REASONS, 3).text });

  // users and apps named by the corpus
  for (const [i, c] of NAMES.entries()) {
    const made = await I.ok<{ user: { id: string }; token: string; token_id: string }>(admin, 'create_user', { email: `inj${i}@switchboard.test`, name: c.text, account: w.accounts.boring.id, role: 'viewer' });
    userTokens.push({ id: made.user.id, token: made.token, tokenId: made.token_id, name: c.text });
    await I.ok(admin, 'create_app', {
      slug: `inj-app-${i}`,
      name: c.text,
      description: nth(REASONS, i + 1).text,
      auth: [{ kind: 'api_key', header: 'X-Api-Key', fields: [{ name: 'api_key', label: nth(NAMES, i + 2).text, secret: true }] }],
      default_rate_per_minute: 60,
    });
  }
  const vaultUser = await I.ok<{ token: string }>(admin, 'create_user', { email: 'vault@switchboard.test', name: nth(NAMES, 9).text, account: w.accounts.boring.id, role: 'admin', password: 'correct horse battery staple' });
  vault = await connect(w.core, vaultUser.token);
  sessions.push(vault);

  // connections: names and notes; acme shares one with its children
  const creds = (n: number) => ({ auth_kind: 'bearer', base_url: upstream.base, token: `tok_injection_${n}_0123456789abcdef` });
  for (const [i, c] of CONN_NAMES.entries()) {
    const r = await I.ok<{ connection: { id: string } }>(boring, 'add_connection', { app: 'http', name: c.text, credentials: creds(i), notes: nth(LONG, i + 1).text });
    connIds.push(r.connection.id);
  }
  await I.ok(boring, 'update_connection', { connection: connIds[2]!, notes: nth(LONG, 7).text });
  const shared = await I.ok<{ connection: { id: string } }>(admin, 'add_connection', { account: 'acme-fitness', app: 'http', name: nth(CONN_NAMES, 3).text, credentials: creds(99), notes: nth(LONG, 4).text });
  sharedConnId = shared.connection.id;
  await I.ok(admin, 'share_connection', { account: 'acme-fitness', connection: sharedConnId, shared: true });

  // automations of boring-co: names, descriptions, and steps that carry corpus text
  for (const [i, c] of AUTOMATION_NAMES.entries()) {
    const role: Role = ROLES[Math.min(i, ROLES.length - 1)]!;
    const made = await I.ok<{ automation: { id: string } }>(boring, 'create_automation', { name: c.text, description: nth(LONG, i + 4).text, retries: 0, steps: stepsFor(role, i) });
    const hook = (await I.ok<{ webhook: { url: string } }>(boring, 'get_automation', { automation: made.automation.id })).webhook.url;
    if (!automations.has(role)) automations.set(role, { id: made.automation.id, name: c.text, hook });
  }
  routedName = nth(NAMES, 11).text;
  const routed = await I.ok<{ automation: { id: string } }>(admin, 'create_automation', { account: 'acme-fitness', name: routedName, retries: 0, routing: { key: 'body.location_id' }, steps: [{ id: 'book', kind: 'transform', value: '{{ trigger.body.msg }}' }] });
  const routedHook = (await I.ok<{ webhook: { url: string } }>(admin, 'get_automation', { account: 'acme-fitness', automation: routed.automation.id })).webhook.url;

  // deliveries through the real ingress, run by a real worker against the upstream
  worker = await startWorker(w, { concurrency: 2, pollMs: 20, retryBaseMs: 5 });
  for (const role of ROLES) if (role !== 'noop') await twin(role, automations.get(role)!.hook, ANSWER[role] ?? 'markdown', 'boring-co');
  // a body that does not parse: the sender's text comes back only as the recorded reason
  const noop = automations.get('noop')!.hook;
  const malformed = { plain: await post(noop, 'not json'), inj: await post(noop, byId('html').text) };
  twins.set('malformed', malformed);
  deliveries.push({ account: 'boring-co', id: malformed.plain }, { account: 'boring-co', id: malformed.inj });
  // routed by a corpus routing key into a linked child; unrouted by a value no child has
  deliveries.push({ account: 'acme-fitness', id: await post(routedHook, JSON.stringify({ location_id: KEYS[1]!.text, msg: nth(NAMES, 2).text })) });
  await twin('unrouted', routedHook, 'ignore', 'acme-fitness', { plain: { location_id: 'nowhere' }, inj: { location_id: byId('long').text } });

  await I.ok(boring, 'run_automation', {
    automation: automations.get('ok')!.name,
    input: { body: { variant: 'inj', cid: CORPUS.indexOf(byId('markdown')), notes: CORPUS.map((c) => c.text) }, headers: { 'x-inj': nth(HEADERS, 2).text }, query: { note: nth(NAMES, 3).text } },
    wait_seconds: 10,
  });

  // account data: values (every entry) and keys
  for (const [i, c] of CORPUS.entries()) await I.ok(boring, 'account_data', { action: 'set', key: `inj:${i}`, value: { note: c.text, list: [c.text] } });
  for (const c of fitting(256)) await I.ok(boring, 'account_data', { action: 'set', key: c.text, value: 1 });

  // a template: name, description, variable default and description, version note; deployed with a corpus value
  templateName = TEMPLATE_NAME;
  const definition = (v: string) => ({
    steps: [{ id: 'send', kind: 'http', method: 'POST', url: `${upstream.base}/s/200/plain/${v}`, connection: 'http', body: { note: '{{ vars.note }}' } }],
    variables: [{ name: 'note', type: 'string', default: byId('emoji-long').text, description: nth(REASONS, 6).text }],
  });
  templateId = (await I.ok<{ template: { id: string } }>(admin, 'create_template', { name: templateName, description: nth(LONG, 5).text, definition: definition('v1') })).template.id;
  await I.ok(admin, 'update_template', { template: templateName, definition: definition('v2'), note: nth(REASONS, 2).text, description: nth(LONG, 8).text });
  await I.ok(admin, 'add_connection', { account: 'inj-2', app: 'http', name: nth(CONN_NAMES, 5).text, credentials: creds(98), notes: nth(LONG, 6).text });
  // acme-studio-02 has an automation of its own with the template's name
  await I.ok(admin, 'create_automation', { account: 'acme-studio-02', name: templateName, steps: [{ id: 'keep', kind: 'transform', value: 1 }] });
  const plan = await I.ok<{ plan: { hash: string } }>(admin, 'deploy_template', deployArgs());
  deploymentId = (await I.ok<{ deployment: { id: string } }>(admin, 'deploy_template', { ...deployArgs(), plan_hash: plan.plan.hash, wait_seconds: 30 })).deployment.id;
  await I.ok(admin, 'set_template_values', { template: templateId, account: w.accounts.boring.id, values: { note: nth(STATIC, 10).text } });

  // a switch with a corpus reason, ended with another
  const visitor = await connect(w.core, w.tokens.admin);
  sessions.push(visitor);
  await I.ok(visitor, 'switch_account', { account: 'inj-3', reason: byId('switch-notice').text });
  await I.ok(visitor, 'whoami');
  const open = await I.ok<{ switches: { id: string; reason: string }[] }>(admin, 'list_switches', { scope: 'tenant', active: true });
  await I.ok(admin, 'end_switch', { switch: open.switches.find((s) => s.reason === byId('switch-notice').text)!.id, reason: byId('fence').text });
  ended = await I.call(visitor, 'get_account');
  await I.ok(admin, 'link_account', { child: 'inj-free', parent: 'acme-fitness', routing_key: KEYS[0]!.text });
}, 240_000);

const deployArgs = () => ({
  template: templateId,
  accounts: [w.accounts.boring.id, 'acme-studio-01', 'acme-studio-02', 'inj-1', 'inj-2'],
  connections: { http: { by_account: { [w.accounts.boring.id]: CONN_NAMES[0]!.text, 'inj-2': nth(CONN_NAMES, 5).text } } },
  values: { note: { by_account: { [w.accounts.boring.id]: nth(STATIC, 9).text, 'inj-2': nth(STATIC, 11).text } } },
});

afterAll(async () => {
  if (process.env.INJECTION_DISCOVER) {
    const out = Object.fromEntries([...I.found].sort().map(([tool, paths]) => [tool, Object.fromEntries([...paths].sort())]));
    console.log(JSON.stringify(out, null, 1));
  }
  await worker?.stop();
  for (const s of sessions) await s.close();
  await http?.close();
  await w?.close();
  await upstream?.close();
});

describe('prompt injection through data: sentences and data fields', () => {
  it('every call that planted the corpus answered with a clean sentence and echoed it only in data fields', () => {
    expect(I.violations).toEqual([]);
    expect(twins.size).toBe(9);
    // the session whose switch was ended is told by whom, in a sentence of its own: the reason is data (list_switches)
    expect(ended.isError).toBe(true);
    expect(text(ended)).toMatch(/^Your switch into account 'inj-3' was ended by admin@switchboard\.test; you are back in your home account/);
  });

  it('every tool that reads stored text back keeps it in its data fields, byte for byte', async () => {
    const reads: [Session, string, Record<string, unknown>][] = [
      [admin, 'whoami', {}],
      [admin, 'list_toolsets', {}],
      [admin, 'list_accounts', { limit: 200 }],
      [admin, 'list_accounts', { parent: 'acme-fitness', limit: 200 }],
      [admin, 'get_account', { account: 'acme-fitness' }],
      [admin, 'get_account', { account: 'inj-0' }],
      [admin, 'get_account', { account: 'inj-child-0' }],
      [admin, 'list_apps', {}],
      [admin, 'list_connections', { account: 'boring-co', limit: 200 }],
      [studio, 'list_connections', {}],
      [admin, 'list_connection_usage', { account: 'boring-co', connection: connIds[0]! }],
      [admin, 'list_connection_usage', { account: 'acme-fitness', connection: sharedConnId }],
      [admin, 'list_automations', { account: 'boring-co', limit: 200 }],
      [admin, 'list_executions', { account: 'boring-co', limit: 200 }],
      [admin, 'debug_webhook', { account: 'boring-co', limit: 100 }],
      [admin, 'debug_webhook', { account: 'acme-fitness', limit: 100 }],
      [admin, 'check_health', { account: 'boring-co' }],
      [admin, 'check_health', { scope: 'all', limit: 1000 }],
      [admin, 'check_health', { account: 'acme-fitness', scope: 'children', limit: 1000 }],
      [admin, 'list_failure_groups', { scope: 'all', status: 'all' }],
      [boring, 'list_failure_groups', {}],
      [boring, 'replay_webhook', { filter: { status: 'failed' }, dry_run: true }],
      [admin, 'replay_webhook', { account: 'acme-fitness', filter: { status: 'unrouted' }, dry_run: true }],
      [boring, 'account_data', { action: 'list', limit: 200 }],
      [boring, 'account_data', { action: 'get', key: `inj:${CORPUS.indexOf(byId('long'))}` }],
      [boring, 'account_data', { action: 'get', key: NAMES[0]!.text }],
      [admin, 'audit_log', { scope: 'tenant', limit: 200 }],
      [boring, 'audit_log', { limit: 200 }],
      [admin, 'list_switches', { scope: 'tenant' }],
      [admin, 'list_switches', { account: 'inj-3' }],
      [admin, 'list_templates', {}],
      [admin, 'get_template', { template: templateName, version: 2, diff_from: 1 }],
      [admin, 'template_status', { template: templateName }],
      [admin, 'list_deployments', {}],
      [admin, 'get_deployment', { deployment: deploymentId }],
      [viewer, 'whoami', {}],
      [viewer, 'get_account', {}],
      [viewer, 'debug_webhook', {}],
    ];
    for (const [s, tool, args] of reads) expect((await I.call(s, tool, args)).isError, `${tool} ${JSON.stringify(args).slice(0, 200)}`).toBeFalsy();
    // one by one: every automation by its (corpus) name, every delivery, every run
    for (const c of AUTOMATION_NAMES) await I.call(boring, 'get_automation', { automation: c.text });
    await I.call(admin, 'get_automation', { account: 'acme-fitness', automation: routedName });
    for (const d of deliveries) expect((await I.call(admin, 'get_delivery', { account: d.account, delivery: d.id })).isError).toBeFalsy();
    const runs = data<{ executions: { id: string }[] }>(await I.call(boring, 'list_executions', { limit: 200 })).executions;
    for (const r of runs) await I.call(boring, 'get_execution', { execution: r.id });
    // every user named by the corpus, as themselves
    for (const u of userTokens.slice(0, 5)) {
      const s = await connect(w.core, u.token);
      await I.call(s, 'whoami');
      await s.close();
    }
    for (const u of userTokens) await I.call(admin, 'set_user_permissions', { user: u.id, permissions: [] });
    expect(I.violations).toEqual([]);
  }, 120_000);
});

/** What a delivery's fate is, without the text it echoes (names, excerpts, messages, routing values). */
function fate(d: Delivery) {
  const omit = <T extends object>(o: T | null, keys: string[]) => (o ? Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k))) : o);
  const dx = d.diagnosis;
  return {
    status: d.status,
    code: d.code,
    replays: d.replays,
    execution: d.execution && { status: d.execution.status, failed_step: d.execution.failed_step, error: omit(d.execution.error, ['message']) },
    upstream: d.upstream && { status: d.upstream.status },
    diagnosis: dx && {
      ...omit(dx, ['subject', 'data']),
      subject: dx.subject && { step: dx.subject.step, connection: omit(dx.subject.connection ?? null, ['name']) },
      data: omit(dx.data, ['upstream_body_excerpt', 'routing_value']),
    },
  };
}
interface Delivery {
  status: string;
  code: string | null;
  replays: number;
  reason: string | null;
  routing: { value: string | null } | null;
  execution: { status: string; failed_step: string | null; error: { code: string; message: string } | null } | null;
  upstream: { status: number | null; body_excerpt: string | null } | null;
  diagnosis: { code: string; cause: string; next_action: string; subject: { step?: string; connection?: { name: string } } | null; data: Record<string, unknown> | null } | null;
}

describe('prompt injection through data: diagnoses are the same as for plain text', () => {
  const CODES: Record<string, string | null> = {
    ok: null,
    http_401: 'http_401',
    http_4xx: 'http_4xx',
    http_5xx: 'http_5xx',
    text_4xx: 'http_4xx',
    expr: 'expression_error',
    filter: 'filtered',
    malformed: 'malformed_body',
    unrouted: 'unrouted',
  };

  it('a plain and an injected delivery of the same automation come to the same status, codes and diagnosis; only data fields differ', async () => {
    expect([...twins.keys()].sort()).toEqual(Object.keys(CODES).sort());
    for (const [key, t] of twins) {
      const account = key === 'unrouted' ? 'acme-fitness' : w.accounts.boring.id;
      const get = async (id: string) => data<{ delivery: Delivery }>(await I.call(admin, 'get_delivery', { account, delivery: id })).delivery;
      const [plain, inj] = [await get(t.plain), await get(t.inj)];
      expect(inj.diagnosis?.code ?? null, key).toBe(CODES[key]);
      expect(fate(inj), key).toEqual(fate(plain));
      // …and the injected one really carried other text, in its data fields
      const echo = (d: Delivery) => [d.reason, d.routing?.value, d.execution?.error?.message, d.upstream?.body_excerpt].map((x) => x ?? '').join('|');
      if (key !== 'ok' && key !== 'filter') expect(echo(inj), key).not.toBe(echo(plain));
    }
    expect(I.violations).toEqual([]);
  });

  it('an upstream excerpt is the start of what the upstream said, cut at a whole character', async () => {
    for (const key of ['http_4xx', 'http_5xx', 'text_4xx']) {
      const d = data<{ delivery: Delivery; executions: { steps: { output: { body: string } | null }[] }[] }>(
        await I.call(admin, 'get_delivery', { account: w.accounts.boring.id, delivery: twins.get(key)!.inj }),
      );
      const excerpt = d.delivery.upstream!.body_excerpt!;
      const recorded = d.executions.at(-1)!.steps.at(-1)!.output!.body;
      expect(excerpt.length, key).toBeGreaterThan(400);
      expect(recorded.startsWith(excerpt), key).toBe(true);
      expect(excerpt.isWellFormed(), `${key}: the excerpt ends inside a surrogate pair`).toBe(true);
    }
  });
});

describe('prompt injection through data: nothing planted changes what a caller sees or does', () => {
  it('the viewer sees what it saw before, acts at home without a permission; no user gained one; no switch or deployment but the test\'s', async () => {
    const seen = data<{ accounts: { id: string }[] }>(await I.call(viewer, 'list_accounts', { limit: 200 })).accounts.map((a) => a.id).sort();
    expect(seen).toEqual(visibleBefore);
    const me = data<{ acting_account: { id: string }; switched: unknown; permissions: string[] }>(await I.call(viewer, 'whoami'));
    expect(me).toMatchObject({ acting_account: { id: w.accounts.boring.id }, switched: null, permissions: [] });
    const now = await permissions();
    for (const [email, before] of Object.entries(permissionsBefore)) expect(now[email], email).toEqual(before);
    for (const email of Object.keys(now).filter((e) => !(e in permissionsBefore))) expect(now[email], email).toEqual([]);
    const switches = data<{ switches: { reason: string; active: boolean }[] }>(await I.call(admin, 'list_switches', { scope: 'tenant' })).switches;
    expect(switches.map((s) => [s.reason, s.active])).toEqual([[byId('switch-notice').text, false]]);
    expect(data<{ deployments: unknown[] }>(await I.call(admin, 'list_deployments', {})).deployments).toHaveLength(1);
  });

  it('every call in the audit log is one the test made: no text made a tool run', async () => {
    const logged = rowsOf<{ tool: string; n: number }>(
      await w.core.db.execute(sql`select tool, count(*)::int as n from audit_log where session_id not like 'deployment:%' group by tool`),
    );
    expect(Object.fromEntries(logged.map((r) => [r.tool, Number(r.n)]).sort())).toEqual(Object.fromEntries([...I.count].sort()));
    // a deployment records its change in each account it applied to: only the test's one deployment did
    const applied = rowsOf<{ session_id: string }>(await w.core.db.execute(sql`select distinct session_id from audit_log where session_id like 'deployment:%'`));
    expect(applied.map((r) => r.session_id)).toEqual([`deployment:${deploymentId}`]);
  });

  it('an account named like another\'s slug, or "Home", captures no call', async () => {
    await I.call(admin, 'create_account', { name: 'boring-co', slug: 'inj-impostor' });
    await I.call(admin, 'create_account', { name: 'Home', slug: 'inj-home' });
    // the viewer may act only in the real one: it is what the slug means to them
    expect(data<{ account: { id: string } }>(await I.call(viewer, 'get_account', { account: 'boring-co' })).account.id).toBe(w.accounts.boring.id);
    // to a caller who may see both, the text is ambiguous: asked to choose, never silently the impostor
    const both = await I.call(admin, 'get_account', { account: 'boring-co' });
    expect(both.isError).toBe(true);
    expect(text(both)).toBe("'boring-co' fits several accounts (boring-co, inj-impostor): pass the slug or id.");
    // "home" returns home, whatever account is named so
    const s = await connect(w.core, w.tokens.admin);
    sessions.push(s);
    await I.call(s, 'switch_account', { account: 'inj-2', reason: 'ticket 12: injection' });
    const back = data<{ acting_account: { id: string }; switched: unknown }>(await I.call(s, 'switch_account', { account: 'Home' }));
    expect(back).toMatchObject({ acting_account: { id: w.accounts.system.id }, switched: null });
    expect(I.violations).toEqual([]);
  });
});

describe('prompt injection through data: the tools that change things', () => {
  it('answer in ids, slugs and counts while they change what carries the corpus', async () => {
    const B = w.accounts.boring.id;
    const noop = automations.get('noop')!;
    const ok = automations.get('ok')!;
    await I.call(boring, 'update_automation', { automation: noop.id, description: nth(LONG, 12).text, note: nth(REASONS, 12).text });
    await I.call(boring, 'get_automation', { automation: noop.name, revision: 2 });
    await I.call(boring, 'set_automation_enabled', { automation: ok.name, enabled: false });
    await I.call(boring, 'set_automation_enabled', { automation: ok.name, enabled: true });
    await I.call(boring, 'rotate_webhook_url', { automation: automations.get('filter')!.name });
    await I.call(boring, 'set_connection_rate_limit', { connection: connIds[0]!, per_minute: 120 });
    const shown = data<{ decrypted: Record<string, string> }>(await I.call(vault, 'view_connection_info', { connection: connIds[0]!, password: 'correct horse battery staple' }));
    expect(shown.decrypted.token).toBe('tok_injection_0_0123456789abcdef');
    const plan = data<{ confirm_token: string; automations_to_pause: { name: string }[] }>(await I.call(boring, 'disconnect_connection', { connection: connIds[1]! }));
    expect(plan.automations_to_pause.map((a) => a.name)).toEqual([automations.get('http_401')!.name]);
    await I.call(boring, 'disconnect_connection', { connection: connIds[1]!, confirm: plan.confirm_token });
    await I.call(boring, 'check_health', {});
    await I.call(boring, 'list_connection_usage', { connection: connIds[1]! });
    await I.call(boring, 'reconnect_connection', { connection: connIds[1]!, credentials: { base_url: upstream.base, token: 'tok_injection_new_0123456789abcdef' } });
    const one = data<{ executions: { id: string }[] }>(await I.call(boring, 'replay_webhook', { delivery: twins.get('http_4xx')!.inj }));
    await awaitExecution(w.core, w.accounts.boring, one.executions[0]!.id, 15_000);
    const dry = data<{ plan: { hash: string } }>(await I.call(boring, 'replay_webhook', { filter: { status: 'failed' }, dry_run: true }));
    await I.call(boring, 'replay_webhook', { filter: { status: 'failed' }, plan_hash: dry.plan.hash });
    await I.call(admin, 'unlink_deployed_copy', { account: 'acme-studio-01', automation: templateName });
    const back = data<{ plan: { hash: string } }>(await I.call(admin, 'rollback_template', { template: templateId, deployment: deploymentId }));
    const rolled = data<{ deployment: { id: string } }>(await I.call(admin, 'rollback_template', { template: templateId, deployment: deploymentId, plan_hash: back.plan.hash, wait_seconds: 30 }));
    await I.call(admin, 'get_deployment', { deployment: rolled.deployment.id });
    // finished: the answer is a refusal, one sentence of ids and statuses
    await I.call(admin, 'cancel_deployment', { deployment: rolled.deployment.id });
    await I.call(admin, 'unlink_account', { child: 'inj-free' });
    const del = data<{ confirm_token: string | null }>(await I.call(boring, 'delete_automation', { automation: automations.get('filter')!.name }));
    await I.call(boring, 'delete_automation', { automation: automations.get('filter')!.name, ...(del.confirm_token ? { confirm: del.confirm_token } : {}) });
    await I.call(boring, 'account_data', { action: 'delete', key: NAMES[0]!.text });
    await I.call(admin, 'set_account_status', { account: 'inj-0', status: 'active', reason: nth(REASONS, 4).text });
    await I.call(admin, 'revoke_token', { token_id: userTokens[0]!.tokenId });
    await I.call(admin, 'rotate_encryption_key', {});
    await I.call(viewer, 'enable_toolset', { toolset: 'all' });
    await I.call(viewer, 'list_toolsets', {});
    await I.call(admin, 'list_accounts', { query: 'inj', limit: 200 });
    expect(I.violations).toEqual([]);
  }, 120_000);
});

describe('prompt injection through data: coverage', () => {
  /** Tools whose results hold no stored text at all (checked below: nothing planted ever showed in them). */
  const QUIET: Record<string, string> = {
    list_toolsets: 'the toolsets: names, descriptions and tool names, all of them code',
    enable_toolset: 'toolset names',
    revoke_token: "the token's id, prefix, user id and name (named by the server, or by the operator's issue-token command: no tool names one)",
    rotate_encryption_key: 'a key id and counts',
    cancel_deployment: 'a deployment: ids, statuses, counts, the gate figures of its waves and a message of counts',
    list_deployments: 'deployments: ids, statuses, counts, the gate figures of their waves and messages of counts',
    unlink_deployed_copy: 'an automation id, a template id and a version',
  };

  it('every listed tool was called, and every planted field came back byte for byte where it is read', async () => {
    const listed = (await admin.client.listTools()).tools.map((t) => t.name).sort();
    expect(listed.length).toBeGreaterThan(50);
    expect(listed.filter((t) => !I.called.has(t))).toEqual([]);
    expect(listed.filter((t) => !I.found.has(t))).toEqual(Object.keys(QUIET).sort());
    const texts = (list: Injection[]) => list.map((c) => c.text);
    const back: [string, string, string[]][] = [
      ['list_accounts', 'accounts[].name', texts(NAMES)],
      ['get_account', 'account.children[].routing_key', texts(KEYS.slice(1))],
      ['get_account', 'account.suspended_reason', [nth(REASONS, 3).text]],
      ['list_apps', 'apps[].name', texts(NAMES)],
      ['list_apps', 'apps[].auth[].fields[].label', texts(NAMES)],
      ['set_user_permissions', 'user.name', texts(NAMES)],
      ['whoami', 'user.name', userTokens.slice(0, 5).map((u) => u.name)],
      ['whoami', 'switched.reason', [byId('switch-notice').text]],
      ['list_switches', 'switches[].ended_by.reason', [byId('fence').text]],
      ['list_connections', 'own[].name', texts(CONN_NAMES)],
      ['list_connections', 'shared_from_parent[].name', [nth(CONN_NAMES, 3).text]],
      ['list_connections', 'own[].notes', [nth(LONG, 7).text]],
      ['list_automations', 'automations[].name', texts(AUTOMATION_NAMES)],
      ['list_automations', 'automations[].description', AUTOMATION_NAMES.map((_, i) => nth(LONG, i + 4).text)],
      ['get_automation', 'definition.steps[].value', [nth(STATIC, 7).text]],
      ['get_automation', 'shown_revision.note', [nth(REASONS, 12).text]],
      ['get_delivery', 'request.body.notes[]', texts(CORPUS)],
      ['get_delivery', 'request.body', [byId('html').text]],
      ['get_delivery', 'request.headers.x-note', sent.map((x) => x.header)],
      ['get_delivery', 'request.query.note', sent.map((x) => x.query)],
      ['get_delivery', 'executions[].steps[].input.headers.x-inj', [nth(HEADERS, 0).text]],
      ['get_delivery', 'delivery.diagnosis.data.routing_keys[]', texts(KEYS.slice(1))],
      ['get_delivery', 'executions[].steps[].output', [nth(NAMES, 2).text]],
      ['get_delivery', 'executions[].steps[].output.headers.x-request-id', [byId('system').text]],
      ['get_delivery', 'executions[].steps[].output.headers.www-authenticate', [byId('json-break').text]],
      ['account_data', 'entries[].value.note', texts(CORPUS)],
      ['account_data', 'entries[].key', texts(fitting(256))],
      ['get_template', 'version.note', [nth(REASONS, 2).text]],
      ['get_template', 'variables[].default', [byId('emoji-long').text]],
      ['set_template_values', 'values.note', [nth(STATIC, 10).text]],
      ['template_status', 'copies[].account.name', [NAMES[2]!.text]],
      ['deploy_template', 'plan.template.name', [templateName]],
    ];
    const missing = back.flatMap(([tool, path, values]) => values.filter((v) => !I.returned(tool, path, v)).map((v) => `${tool} ${path}: ${JSON.stringify(v.slice(0, 60))}`));
    expect(missing).toEqual([]);
    expect(I.violations).toEqual([]);
  });
});

describe('prompt injection through data: the same world with plain labels', () => {
  /** Everything a decision is made of: health, failure groups, diagnoses, deploy and replay plans with their hashes. */
  async function decisions() {
    const B = w.accounts.boring.id;
    return {
      health: await I.ok(admin, 'check_health', { scope: 'all', limit: 1000 }),
      children: await I.ok(admin, 'check_health', { account: 'acme-fitness', scope: 'children', limit: 1000 }),
      boring: await I.ok(admin, 'check_health', { account: B, window: '7d' }),
      groups: await I.ok(admin, 'list_failure_groups', { scope: 'all', status: 'all', limit: 200 }),
      deliveries: await I.ok(admin, 'debug_webhook', { account: B, limit: 100 }),
      routed: await I.ok(admin, 'debug_webhook', { account: 'acme-fitness', limit: 100 }),
      replay: await I.ok(admin, 'replay_webhook', { account: B, filter: { status: 'failed' }, dry_run: true }),
      unrouted: await I.ok(admin, 'replay_webhook', { account: 'acme-fitness', filter: { status: 'unrouted' }, dry_run: true }),
      deploy: await I.ok(admin, 'deploy_template', deployArgs()),
      copies: await I.ok(admin, 'template_status', { template: templateId }),
    };
  }
  /** the labels themselves are not compared: names, descriptions, notes */
  // labels differ by design; queue_lag_seconds is the age of the oldest queued run, which grows
  // between the two readings whatever the labels say (a clock, not a decision)
  const LABELS = new Set(['name', 'description', 'notes', 'queue_lag_seconds']);
  const unlabelled = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(unlabelled) : v !== null && typeof v === 'object' ? Object.fromEntries(Object.entries(v).filter(([k]) => !LABELS.has(k)).map(([k, x]) => [k, unlabelled(x)])) : v;

  it('rewriting every label to plain text in place changes no status, reason, diagnosis, summary, plan or hash', async () => {
    // the health window is this hour and the ones before: both readings in the same hour
    const toHour = 3_600_000 - (Date.now() % 3_600_000);
    if (toHour < 30_000) await new Promise((r) => setTimeout(r, toHour + 1_000));
    const planted = await decisions();
    // names, descriptions, notes, reasons of every kind, each distinct text to its own plain one (what was
    // equal stays equal: a copy's name is its template's). Connection names stay: a deployed copy's steps
    // name their connection (app/name), so a plan rightly depends on them.
    const plain = (col: string) => sql.raw(`case when ${col} is null or ${col} = '' then ${col} else 'plain ' || md5(${col}) end`);
    const db = w.core.db;
    await db.execute(sql`update accounts set name = ${plain('name')}, status_reason = ${plain('status_reason')}`);
    await db.execute(sql`update automations set name = ${plain('name')}, description = ${plain('description')}`);
    await db.execute(sql`update automation_revisions set name = ${plain('name')}, note = ${plain('note')}`);
    await db.execute(sql`update connections set notes = ${plain('notes')}`);
    await db.execute(sql`update templates set name = ${plain('name')}, description = ${plain('description')}`);
    await db.execute(sql`update template_versions set note = ${plain('note')}`);
    await db.execute(sql`update users set name = ${plain('name')}`);
    await db.execute(sql`update apps set name = ${plain('name')}, description = ${plain('description')}`);
    await db.execute(sql`update account_switches set reason = ${plain('reason')}, end_reason = ${plain('end_reason')}`);
    const relabelled = await decisions();
    // the labels did change: the corpus before, plain text after
    const names = (d: typeof planted) => (d.deliveries as { deliveries: { automation: { name: string } }[] }).deliveries.map((x) => x.automation.name);
    expect(names(planted).every((n) => AUTOMATION_NAMES.some((c) => c.text === n))).toBe(true);
    expect(names(relabelled).every((n) => n.startsWith('plain '))).toBe(true);
    expect((relabelled.deploy as { plan: { template: { name: string } } }).plan.template.name).toMatch(/^plain /);
    expect(unlabelled(relabelled)).toEqual(unlabelled(planted));
    expect((relabelled.deploy as { plan: { hash: string } }).plan.hash).toBe((planted.deploy as { plan: { hash: string } }).plan.hash);
    expect((relabelled.replay as { plan: { hash: string } }).plan.hash).toBe((planted.replay as { plan: { hash: string } }).plan.hash);
  }, 60_000);
});
