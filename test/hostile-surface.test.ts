import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { eq } from 'drizzle-orm';
import { z } from 'zod';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { allTools } from '../src/mcp/server.js';
import { listedSchema } from '../src/mcp/schema-listing.js';
import { newSession } from '../src/mcp/session.js';
import { TOOLSET_NAMES } from '../src/mcp/toolsets.js';
import { awaitExecution } from '../src/core/executions.js';
import { getAccountById, type Account } from '../src/core/accounts.js';
import { templatesAccount } from '../src/core/templates/account.js';
import { webhookDeliveries } from '../src/db/schema/index.js';
import { connect, data, text, type Session, type World } from './helpers/world.js';
import { engineWorld, localApp, startWorker, type LocalApp } from './helpers/apps.js';
import { spawnStdio } from './helpers/spawn.js';
import { cliWorld, type CliWorld } from './helpers/cli-world.js';

/**
 * A hostile review of 107b911 (lean listing, get_delivery) and d01eccb (switchboard call).
 * The tests that began "BUG:" showed defects of 107b911/d01eccb, fixed since; the others show a
 * defence that held already.
 */

type Schema = Record<string, unknown>;
/** exactly the validator the SDK Client builds for a tool's outputSchema */
const validator = new AjvJsonSchemaValidator();
const check = (schema: Schema) => validator.getValidator(structuredClone(schema));
const listing = (name: string) => allTools.find((t) => t.name === name)!.listing() as unknown as { inputSchema: Schema; outputSchema: Schema };

/** The schema with every object's properties required where it lists no required: what the server instructions promise. */
function everyFieldRequired(s: unknown): Schema {
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk);
    if (v === null || typeof v !== 'object') return v;
    const out = Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)])) as Schema;
    const keys = out.properties && typeof out.properties === 'object' ? Object.keys(out.properties as Schema) : [];
    if (keys.length && !out.required) out.required = keys;
    return out;
  };
  return walk(s) as Schema;
}

/** Inputs whose verdict differs between the schema as written and the schema as listed. */
function verdictDiffs(raw: Schema, io: 'input' | 'output', samples: unknown[]): string[] {
  const listed = listedSchema(structuredClone(raw), io);
  const a = check(raw);
  const b = check(listed);
  return samples.filter((s) => a(s).valid !== b(s).valid).map((s) => `${JSON.stringify(s)}: as written ${a(s).valid}, as listed ${b(s).valid}`);
}

// ---------------------------------------------------------------------------------------------
describe('schema listing: every listed schema is usable by the SDK client', () => {
  it('every tool lists input and output schemas that ajv (the SDK client validator) compiles', () => {
    const broken: string[] = [];
    for (const t of allTools) {
      const l = t.listing() as unknown as { inputSchema: Schema; outputSchema: Schema };
      for (const io of ['inputSchema', 'outputSchema'] as const) {
        try {
          check(l[io]);
        } catch (err) {
          broken.push(`${t.name}.${io}: ${(err as Error).message}`);
        }
        // every $ref points at a $defs entry the listing still has
        const defs = Object.keys((l[io].$defs as Schema | undefined) ?? {});
        for (const ref of JSON.stringify(l[io]).match(/"\$ref":"[^"]*"/g) ?? []) {
          const target = ref.slice(8, -1);
          if (target !== '#' && !defs.includes(target.replace('#/$defs/', ''))) broken.push(`${t.name}.${io}: dangling ${target}`);
        }
      }
    }
    expect(broken).toEqual([]);
  });

  it("pattern is replaced only where it is zod's date-time pattern (by a short one of the same shape); every other pattern stays", () => {
    const short = listedSchema({ type: 'string', format: 'date-time', pattern: '^x$' }, 'input') as { pattern: string };
    expect(short).toMatchObject({ type: 'string', format: 'date-time' });
    expect(short.pattern.length).toBeLessThan(60);
    expect(listedSchema({ type: 'string', pattern: '^[a-z]+$' }, 'input')).toEqual({ type: 'string', pattern: '^[a-z]+$' });
    expect(listedSchema({ type: 'string', format: 'email', pattern: '^.+@.+$' }, 'output')).toMatchObject({ pattern: '^.+@.+$' });
    // the real listings: slug/uuid patterns of inputs survive (create_user's email, revoke_token's uuid, …)
    const patterns = allTools.flatMap((t) =>
      (JSON.stringify((t.listing() as unknown as { inputSchema: Schema }).inputSchema).match(/"pattern":"(?:[^"\\]|\\.)*"/g) ?? []).filter((p) => p !== `"pattern":${JSON.stringify(short.pattern)}`).map(() => t.name),
    );
    expect(new Set(patterns)).toEqual(new Set(['create_user', 'revoke_token', 'create_automation', 'update_automation', 'replay_webhook', 'create_template', 'update_template', 'deploy_template', 'rollback_template', 'get_deployment', 'cancel_deployment']));
  });

  it('required goes only from all-required output objects: an optional field keeps the list, inputs always keep it', () => {
    const obj = { type: 'object', properties: { a: { type: 'string' }, b: { type: 'string' } } };
    expect(listedSchema({ ...obj, required: ['a', 'b'] }, 'output')).not.toHaveProperty('required');
    expect(listedSchema({ ...obj, required: ['a'] }, 'output')).toMatchObject({ required: ['a'] });
    expect(listedSchema({ ...obj, required: ['a', 'b'] }, 'input')).toMatchObject({ required: ['a', 'b'] });
    // nested: the inner object with an optional field keeps its list inside an all-required outer one
    const nested = listedSchema({ type: 'object', properties: { x: { ...obj, required: ['b'] } }, required: ['x'] }, 'output') as { properties: { x: Schema } };
    expect(nested.properties.x.required).toEqual(['b']);
    // only looser, never stricter: dropping required never makes a real result fail validation
    const stricter = verdictDiffs({ ...obj, required: ['a', 'b'] }, 'output', [{ a: 'x', b: 'y' }, { a: 'x' }, {}, { a: 1 }]).filter((d) => d.includes('as written true'));
    expect(stricter).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
describe('mergeDefs edge cases (listedSchema with crafted schemas)', () => {
  const tree = (leaf: string, self: string) => ({ anyOf: [{ type: leaf }, { type: 'array', items: { $ref: `#/$defs/${self}` } }] });

  it('a name that is a prefix of another (__schema1 vs __schema10) is not confused; equal self-recursive defs merge', () => {
    const raw = {
      type: 'object',
      properties: { a: { $ref: '#/$defs/__schema1' }, b: { $ref: '#/$defs/__schema10' }, c: { $ref: '#/$defs/__schema2' } },
      $defs: { __schema1: tree('string', '__schema1'), __schema10: tree('number', '__schema10'), __schema2: tree('string', '__schema2') },
    };
    const listed = listedSchema(structuredClone(raw), 'input') as { $defs: Schema };
    expect(Object.keys(listed.$defs).sort()).toEqual(['__schema1', '__schema10']);
    const samples = [{ a: ['x', ['y']], b: [1, [2]], c: ['z', [['w']]] }, { b: ['x'] }, { c: [1] }, { a: [[1]] }, { b: [[[3]]] }, { c: 'top' }, { b: 'top' }];
    expect(verdictDiffs(raw, 'input', samples)).toEqual([]);
  });

  it('defs that reference other defs keep their meaning (equal text, different targets, are not merged)', () => {
    const raw = {
      type: 'object',
      properties: { p: { $ref: '#/$defs/A' }, q: { $ref: '#/$defs/C' }, r: { $ref: '#/$defs/E' } },
      $defs: {
        A: { type: 'array', items: { $ref: '#/$defs/B' } },
        B: { type: 'string' },
        C: { type: 'array', items: { $ref: '#/$defs/D' } },
        D: { type: 'number' },
        E: { type: 'array', items: { $ref: '#/$defs/B' } }, // same as A: merged into it
        F: { type: 'string' }, // same as B, referenced by nobody
      },
    };
    const listed = listedSchema(structuredClone(raw), 'input') as { $defs: Schema; properties: Record<string, Schema> };
    expect(Object.keys(listed.$defs).sort()).toEqual(['A', 'B', 'C', 'D']);
    expect(listed.properties.r).toEqual({ $ref: '#/$defs/A' });
    expect(verdictDiffs(raw, 'input', [{ p: ['x'], q: [1], r: ['y'] }, { p: [1] }, { q: ['x'] }, { r: [1] }])).toEqual([]);
  });

  it('a property named "$ref" and nested $defs survive; references inside merged defs are rewritten', () => {
    const raw = {
      type: 'object',
      properties: {
        $ref: { type: 'string' },
        inner: { type: 'object', $defs: { local: { type: 'boolean' } }, properties: { v: { $ref: '#/$defs/__schema3' } } },
        list: { type: 'array', items: { $ref: '#/$defs/__schema4' } },
      },
      $defs: { __schema3: tree('boolean', '__schema3'), __schema4: tree('boolean', '__schema4'), __schema5: { type: 'array', items: { $ref: '#/$defs/__schema4' } } },
    };
    const listed = listedSchema(structuredClone(raw), 'input') as { properties: Record<string, Schema> };
    expect(listed.properties.$ref).toEqual({ type: 'string' });
    expect(verdictDiffs(raw, 'input', [{ $ref: 'x', inner: { v: [true, [false]] }, list: [[true]] }, { $ref: 1 }, { inner: { v: ['no'] } }, { list: ['no'] }])).toEqual([]);
  });

  it('zod JSON values (z.json, one $def per use) merge without changing what is accepted', () => {
    const schema = z.object({ a: z.json(), b: z.array(z.json()), c: z.record(z.string(), z.json()).nullable(), d: z.object({ e: z.json() }) });
    const { $schema: _s, ...raw } = z.toJSONSchema(schema, { io: 'output', unrepresentable: 'any' }) as Schema;
    const listed = listedSchema(structuredClone(raw), 'output') as { $defs?: Schema };
    expect(Object.keys((raw.$defs as Schema) ?? {}).length).toBeGreaterThan(1);
    expect(Object.keys(listed.$defs ?? {})).toHaveLength(1);
    const samples = [
      { a: 1, b: [null, 'x', { y: [1, { z: true }] }], c: { k: [1, 2] }, d: { e: { deep: [[[]]] } } },
      { a: null, b: [], c: null, d: { e: 'x' } },
      { a: 1, b: 'not an array', c: null, d: { e: 1 } },
      { a: 1, b: [], c: 'x', d: { e: 1 } },
    ];
    expect(verdictDiffs(raw, 'output', samples)).toEqual([]);
  });

  // latent: zod never writes these today (its names are __schemaN or a meta id, never in data), so no
  // real listing is affected; but mergeDefs compares and rewrites JSON text, not schema positions
  it('(latent in zod\'s output) a def whose data (const/enum) spells its own $ref string is not merged with a different def', () => {
    const raw = {
      type: 'object',
      properties: { a: { $ref: '#/$defs/X' }, b: { $ref: '#/$defs/Y' } },
      $defs: { X: { const: '#/$defs/X' }, Y: { const: '#/$defs/Y' } },
    };
    expect(verdictDiffs(raw, 'input', [{ b: '#/$defs/Y' }, { a: '#/$defs/X' }])).toEqual([]);
  });

  it('(latent) a "$ref" key inside data (const, default, examples) is not rewritten as if it were a reference', () => {
    const raw = {
      type: 'object',
      properties: { a: { $ref: '#/$defs/__schema1' }, b: { $ref: '#/$defs/__schema2' }, link: { const: { $ref: '#/$defs/__schema2' } } },
      $defs: { __schema1: { type: 'string' }, __schema2: { type: 'string' } },
    };
    expect(verdictDiffs(raw, 'input', [{ link: { $ref: '#/$defs/__schema2' } }])).toEqual([]);
  });

  it('(latent) a JSON pointer into a merged-away def ("#/$defs/__schema2/items") follows the merge', () => {
    const raw = {
      type: 'object',
      properties: { a: { $ref: '#/$defs/__schema1' }, b: { $ref: '#/$defs/__schema2/items' } },
      $defs: { __schema1: { type: 'array', items: { type: 'string' } }, __schema2: { type: 'array', items: { type: 'string' } } },
    };
    expect(() => check(listedSchema(structuredClone(raw), 'input'))).not.toThrow();
  });
});

// ---------------------------------------------------------------------------------------------
// A world with real deliveries: failed with a connection, failed in an expression, routed to a
// child, replayed; the results of real calls are validated against the listed output schemas.

let w: World;
let http: { close(): Promise<void> };
let worker: { stop(): Promise<void> };
let app: LocalApp;
let admin: Session;
let boring: Session;
const hooks = new Map<string, string>();
const ids = { down: '', expr: '', ok: '', routed1: '', routed2: '', unrouted: '' };

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

async function make(s: Session, account: string, name: string, def: Record<string, unknown>) {
  data(await s.call('create_automation', { account, name, retries: 0, ...def }));
  hooks.set(name, data<{ webhook: { url: string } }>(await s.call('get_automation', { account, automation: name })).webhook.url);
}
async function post(name: string, body: unknown): Promise<string> {
  const res = await fetch(hooks.get(name)!, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', authorization: 'Bearer tok_should_be_redacted_0123456789' } });
  const id = ((await res.json()) as { delivery_id: string }).delivery_id;
  const [d] = await w.core.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, id));
  if (d?.executionId) await awaitExecution(w.core, (await getAccountById(w.core, d.routedAccountId ?? d.accountId)) as Account, d.executionId, 15_000);
  return id;
}

describe('real results against the listed output schemas, and get_delivery', () => {
  beforeAll(async () => {
    app = await localApp((req: IncomingMessage, res) => {
      req.resume();
      req.on('end', () => (req.url!.startsWith('/down') ? json(res, 500, { error: 'upstream exploded' }) : json(res, 200, { ok: true })));
    });
    const e = await engineWorld();
    w = e.w;
    http = e.http;
    admin = await connect(w.core, w.tokens.admin);
    boring = await connect(w.core, w.tokens.boringAdmin);
    data(await boring.call('add_connection', { app: 'http', name: 'Main', credentials: { auth_kind: 'bearer', base_url: app.base, token: 'tok_main_0123456789abcdef' } }));
    await make(boring, 'boring-co', 'Down', { steps: [{ id: 'charge', kind: 'http', method: 'POST', url: `${app.base}/down`, connection: 'http/Main' }] });
    await make(boring, 'boring-co', 'Expr', { steps: [{ id: 'shape', kind: 'transform', value: '{{ $assert($exists(trigger.body.email), "no email") }}' }] });
    await make(boring, 'boring-co', 'Ok', { steps: [{ id: 'call', kind: 'http', method: 'GET', url: `${app.base}/ok`, connection: 'http/Main' }] });
    await make(admin, 'acme-fitness', 'Bookings', { routing: { key: 'body.location_id' }, steps: [{ id: 'book', kind: 'transform', value: '{{ trigger.body.id }}' }] });
    worker = await startWorker(w, { concurrency: 2, pollMs: 20, retryBaseMs: 5 });
    ids.down = await post('Down', { amount: 1 });
    ids.expr = await post('Expr', { nope: true });
    ids.ok = await post('Ok', { fine: true });
    ids.routed1 = await post('Bookings', { id: 'b1', location_id: 'studio-01' });
    ids.routed2 = await post('Bookings', { id: 'b2', location_id: 'studio-02' });
    ids.unrouted = await post('Bookings', { id: 'b3', location_id: 'nowhere' });
    // a replay of the failed one (a second run on the same delivery)
    const replay = data<{ executions: { id: string }[] }>(await boring.call('replay_webhook', { delivery: ids.down }));
    if (replay.executions[0]) await awaitExecution(w.core, w.accounts.boring, replay.executions[0].id, 15_000);
  }, 120_000);
  afterAll(async () => {
    await worker?.stop();
    await admin?.close();
    await boring?.close();
    await http?.close();
    await w?.close();
    await app?.close();
  });

  it('every result of ~35 real calls (deliveries, diagnoses, runs, health, audit, JSON data) validates against its listed output schema', async () => {
    const validators = new Map(allTools.map((t) => [t.name, check((t.listing() as unknown as { outputSchema: Schema }).outputSchema)]));
    // what the instructions promise: an object without a required list has every field in every result
    const promised = new Map(allTools.map((t) => [t.name, check(everyFieldRequired((t.listing() as unknown as { outputSchema: Schema }).outputSchema))]));
    const promiseBroken: string[] = [];
    const problems: string[] = [];
    let checked = 0;
    const run = async (s: Session, tool: string, args: Record<string, unknown> = {}): Promise<CallToolResult> => {
      const r = await s.call(tool, args);
      if (r.isError) {
        problems.push(`${tool} ${JSON.stringify(args)} failed: ${text(r)}`);
        return r;
      }
      const v = validators.get(tool)!(r.structuredContent);
      checked++;
      if (!v.valid) problems.push(`${tool} ${JSON.stringify(args)}: ${v.errorMessage}`);
      const p = promised.get(tool)!(r.structuredContent);
      if (!p.valid) promiseBroken.push(...p.errorMessage!.split(', ').map((m) => `${tool}: ${m}`));
      return r;
    };
    data(await admin.call('account_data', { account: 'boring-co', action: 'set', key: 'nested', value: { a: [1, 'x', null, { b: [true, { c: 1.5 }] }], s: 'x'.repeat(50) } }));
    for (const s of [admin, boring]) {
      for (const tool of ['whoami', 'list_toolsets', 'list_accounts', 'list_apps']) await run(s, tool);
      await run(s, 'get_account', { account: 'boring-co' });
      await run(s, 'check_health', { account: 'boring-co' });
      await run(s, 'check_health', { scope: 'all' });
      await run(s, 'list_failure_groups', { account: 'boring-co' });
      await run(s, 'debug_webhook', { account: 'boring-co' });
      await run(s, 'debug_webhook', { account: 'boring-co', status: 'failed' });
      for (const id of [ids.down, ids.expr, ids.ok]) await run(s, 'get_delivery', { account: 'boring-co', delivery: id });
      const execs = data<{ executions: { id: string }[] }>(await run(s, 'list_executions', { account: 'boring-co' }));
      for (const e of execs.executions.slice(0, 4)) await run(s, 'get_execution', { account: 'boring-co', execution: e.id });
      await run(s, 'list_automations', { account: 'boring-co' });
      await run(s, 'get_automation', { account: 'boring-co', automation: 'Down' });
      await run(s, 'list_connections', { account: 'boring-co' });
      await run(s, 'account_data', { account: 'boring-co', action: 'get', key: 'nested' });
      await run(s, 'account_data', { account: 'boring-co', action: 'list' });
      await run(s, 'replay_webhook', { account: 'boring-co', filter: { status: 'failed' }, dry_run: true });
      await run(s, 'run_automation', { account: 'boring-co', automation: 'Ok', wait_seconds: 10 });
    }
    await run(admin, 'check_health', { account: 'acme-fitness', scope: 'children' });
    await run(admin, 'debug_webhook', { account: 'acme-fitness' });
    for (const id of [ids.routed1, ids.routed2, ids.unrouted]) await run(admin, 'get_delivery', { account: 'acme-fitness', delivery: id });
    await run(admin, 'audit_log', { scope: 'tenant', limit: 100 });
    await run(admin, 'list_switches', { scope: 'tenant' });
    for (const tool of ['list_templates', 'list_deployments']) await run(admin, tool);
    expect(problems).toEqual([]);
    expect([...new Set(promiseBroken)]).toEqual([]);
    expect(checked).toBeGreaterThan(50);
  }, 120_000);

  it('the SDK client itself (after tools/list, as switchboard call does) accepts get_delivery and debug_webhook results', async () => {
    const s = await connect(w.core, w.tokens.admin);
    await s.client.listTools();
    for (const id of Object.values(ids)) {
      const r = await s.call('get_delivery', { account: 'acme-fitness', delivery: id }).catch((e: Error) => ({ isError: true, content: [{ type: 'text', text: e.message }] }) as CallToolResult);
      // boring's ids in acme: a not-found error result, never a validation failure
      expect(text(r)).not.toMatch(/output schema/);
    }
    for (const id of [ids.down, ids.expr, ids.ok]) expect((await s.call('get_delivery', { account: 'boring-co', delivery: id })).isError).toBeFalsy();
    await s.close();
  });

  it('diagnosis.subject (all fields optional) is listed with `required: []`, so the instructions\' rule (no list: every field) holds', async () => {
    const full = data<{ delivery: { diagnosis: { subject: Record<string, unknown> | null } } }>(await boring.call('get_delivery', { delivery: ids.expr }));
    // a real subject: the step only, no connection
    expect(full.delivery.diagnosis.subject).toEqual({ step: 'shape' });
    expect(admin.client.getInstructions()).toContain('an object without a `required` list has every field in every result');
    const diag = (listing('get_delivery').outputSchema as any).properties.delivery.properties.diagnosis.anyOf[0];
    const subject = diag.properties.subject.anyOf[0] as Schema;
    // either an explicit (empty) required list, or the fields always present (nullable)
    expect(subject.required ?? 'no required list: the model is told step and connection are always there').toEqual([]);
  });

  it('an input time the listed schema accepts is taken by the tool, and what the tool refuses the listing refuses', async () => {
    const since = check(listing('audit_log').inputSchema);
    for (const t of ['2026-01-01 00:00:00Z', '2026-01-01t00:00:00z', '2026-01-01T00:00:00+0200', '2026-13-01T00:00:00Z', '2026-01-01T24:00:00Z']) {
      expect(since({ since: t }).valid, t).toBe(false); // a client that checks its arguments stops it
      expect((await admin.call('audit_log', { since: t, limit: 1 })).isError, t).toBe(true);
    }
    for (const t of ['2026-01-01T00:00:00Z', '2026-01-01T00:00:00.123456+02:00', '2024-02-29T23:59:59-05:30']) {
      expect(since({ since: t }).valid, t).toBe(true);
      expect((await admin.call('audit_log', { since: t, limit: 1 })).isError, t).toBeFalsy();
    }
    // a day that does not exist: the listed format (ajv-formats checks the calendar) and the tool both refuse it
    expect(since({ since: '2026-02-30T00:00:00Z' }).valid).toBe(false);
    expect(text(await admin.call('audit_log', { since: '2026-02-30T00:00:00Z' }))).toMatch(/^Invalid argument 'since': /);
    // the one difference (schema-listing.ts): a leap second passes the listing, and the tool says why in one sentence
    expect(since({ since: '2026-06-30T23:59:60Z' }).valid).toBe(true);
    expect(text(await admin.call('audit_log', { since: '2026-06-30T23:59:60Z' }))).toMatch(/^Invalid argument 'since': /);
  });

  // ---- get_delivery: who may read which delivery
  const notFound = (id: string, slug: string) => `No delivery ${id} in account '${slug}'.`;
  const denied = (slug: string) => `Access denied: acting in account '${slug}' needs the Switch Account permission or a membership in that account.`;
  const stranger = '00000000-0000-4000-8000-000000000000';

  it("another customer's delivery: by id in one's own account it is simply not there, said as for an id that never existed", async () => {
    for (const id of [ids.routed1, ids.routed1.toUpperCase(), stranger]) {
      const r = await boring.call('get_delivery', { delivery: id });
      expect(r.isError).toBe(true);
      expect(r.structuredContent).toBeUndefined();
      expect(text(r)).toBe(notFound(id, 'boring-co'));
    }
  });

  it("naming the other customer's account: one denial whatever the id (existing, upper-case, unknown, not a uuid)", async () => {
    const texts = new Set<string>();
    for (const id of [ids.routed1, ids.routed1.toUpperCase(), stranger, 'not-a-uuid', "' or 1=1 --"]) {
      const r = await boring.call('get_delivery', { account: 'acme-fitness', delivery: id });
      expect(r.isError).toBe(true);
      expect(r.structuredContent).toBeUndefined();
      texts.add(text(r));
    }
    expect([...texts]).toEqual([denied('acme-fitness')]);
    // …and the same sentence as for an account that does not exist
    expect(text(await boring.call('get_delivery', { account: 'acme-fitnesz', delivery: ids.routed1 }))).toBe(denied('acme-fitnesz'));
    // the admin permission without Switch Account reaches no customer either
    const tenantAdmin = await connect(w.core, w.tokens.tenantAdmin);
    expect(text(await tenantAdmin.call('get_delivery', { account: 'acme-fitness', delivery: ids.routed1 }))).toBe(denied('acme-fitness'));
    await tenantAdmin.close();
  });

  it("a linked child's run: the parent's admin sees it, a parent member sees the delivery without the run, the child's member cannot reach the parent's delivery", async () => {
    const parentAdmin = await connect(w.core, w.tokens.acmeAdmin);
    const viaAdmin = data<{ delivery: { execution_visible: boolean; routing: { account: { slug: string } | null } }; executions: unknown[] }>(
      await parentAdmin.call('get_delivery', { account: 'acme-fitness', delivery: ids.routed1 }),
    );
    expect(viaAdmin.delivery.execution_visible).toBe(true);
    expect(viaAdmin.delivery.routing.account?.slug).toBe('acme-studio-01');
    expect(viaAdmin.executions.length).toBeGreaterThan(0);
    await parentAdmin.close();

    const member = await connect(w.core, w.tokens.acmeMember);
    const r = await member.call('get_delivery', { account: 'acme-fitness', delivery: ids.routed1 });
    const viaMember = data<{ delivery: { execution_visible: boolean; execution: unknown; routing: { account: unknown } }; executions: unknown[] }>(r);
    expect(viaMember.delivery).toMatchObject({ execution_visible: false, execution: null, routing: { account: null } });
    expect(viaMember.executions).toEqual([]);
    expect(JSON.stringify(r)).not.toContain(w.accounts.studio1.id);
    await member.close();

    const child = await connect(w.core, w.tokens.studioMember);
    // the delivery lives in the parent: not in the child's account, and the parent is out of reach
    expect(text(await child.call('get_delivery', { account: 'acme-studio-01', delivery: ids.routed1 }))).toBe(notFound(ids.routed1, 'acme-studio-01'));
    expect(text(await child.call('get_delivery', { account: 'acme-fitness', delivery: ids.routed1 }))).toBe(denied('acme-fitness'));
    expect(text(await child.call('get_delivery', { account: 'acme-studio-02', delivery: ids.routed2 }))).toBe(denied('acme-studio-02'));
    await child.close();
  });

  it('the templates account: a customer is refused as for any account; Switch Account finds no foreign delivery there', async () => {
    const templates = await templatesAccount(w.core);
    expect(text(await boring.call('get_delivery', { account: templates.slug, delivery: ids.down }))).toBe(denied(templates.slug));
    const r = await admin.call('get_delivery', { account: templates.slug, delivery: ids.down });
    expect(text(r)).toBe(notFound(ids.down, templates.slug));
    // debug_webhook agrees
    expect(text(await boring.call('debug_webhook', { account: templates.slug }))).toBe(denied(templates.slug));
  });

  it('the owner reads by upper-case id; a non-uuid is one sentence', async () => {
    const upper = data<{ delivery: { id: string } }>(await boring.call('get_delivery', { delivery: ids.down.toUpperCase() }));
    expect(upper.delivery.id).toBe(ids.down);
    expect(text(await boring.call('get_delivery', { delivery: 'x'.repeat(100) }))).toBe('The delivery must be given by its id (debug_webhook lists them).');
    expect(text(await boring.call('get_delivery', { delivery: 'x'.repeat(101) }))).toMatch(/^Invalid argument 'delivery'/);
  });

  it('read-only: get_delivery is listed and answers; in the default toolsets it is neither listed nor callable', async () => {
    const ro = await connect(w.core, w.tokens.boringViewer, newSession(undefined, { toolsets: new Set(TOOLSET_NAMES), readOnly: true }));
    expect((await ro.client.listTools()).tools.map((t) => t.name)).toContain('get_delivery');
    const full = data<{ request: { headers: Record<string, string> } }>(await ro.call('get_delivery', { delivery: ids.down }));
    // the bearer header the sender put on the delivery is redacted
    expect(JSON.stringify(full)).not.toContain('tok_should_be_redacted');
    await ro.close();
    const dflt = await connect(w.core, w.tokens.boringViewer, newSession(undefined, { toolsets: new Set(['accounts', 'operations']) }));
    expect((await dflt.client.listTools()).tools.map((t) => t.name)).not.toContain('get_delivery');
    expect(text(await dflt.call('get_delivery', { delivery: ids.down }))).toBe(
      "get_delivery is in the toolset 'automations', which this session has not turned on: call enable_toolset with toolset 'automations' first.",
    );
    await dflt.close();
  });
});

// ---------------------------------------------------------------------------------------------
// switchboard call, through the real CLI process

let cw: CliWorld;
let base: Record<string, string>;
const tokens = {} as CliWorld['tokens'];
const call: CliWorld['call'] = (...a) => cw.call(...a);
const script: CliWorld['script'] = (...a) => cw.script(...a);

describe('switchboard call, attacked', () => {
  beforeAll(async () => {
    cw = await cliWorld({ ownToolsets: true }); // call's own default surface
    base = cw.env;
    Object.assign(tokens, cw.tokens);
  }, 120_000);
  afterAll(async () => {
    await cw?.close();
  });

  const SECRET = 'Zq9-credential-value-7731';

  it('credentials passed as arguments appear in no output: ok and FAIL lines, --json lines, errors, audit', async () => {
    const file = script('creds.jsonl', [
      { tool: 'add_connection', arguments: { account: 'boring-co', app: 'http', name: 'CI', credentials: { auth_kind: 'bearer', base_url: 'https://api.example.com', token: SECRET } } },
      // unmet expectation on a call carrying the secret: the FAIL line says what came back, not what was sent
      { tool: 'add_connection', arguments: { account: 'boring-co', app: 'http', name: 'CI2', credentials: { auth_kind: 'bearer', base_url: 'https://api.example.com', token: SECRET } }, expect: { match: 'never there' } },
      // bad credentials: the error sentence does not quote them
      { tool: 'add_connection', arguments: { account: 'boring-co', app: 'http', name: 'CI3', credentials: { auth_kind: 'bearer', base_url: SECRET, token: SECRET } }, expect: { isError: false } },
      { tool: 'add_connection', arguments: { account: 'boring-co', app: 'http', name: 'CI4', credentials: { auth_kind: 'nope', [SECRET]: SECRET } }, expect: { isError: false } },
      { tool: 'reconnect_connection', arguments: { account: 'boring-co', connection: 'http/CI', credentials: { auth_kind: 'bearer', base_url: 'https://api.example.com', token: `${SECRET}-2` } }, expect: { match: 'not in the answer' } },
    ]);
    const plain = await call('boring', ['--script', file, '--keep-going']);
    const asJson = await call('boring', ['--script', file, '--keep-going', '--json']);
    for (const r of [plain, asJson]) {
      expect(r.code).toBe(1);
      expect(r.stdout + r.stderr).not.toContain('credential-value');
    }
    expect(plain.stdout).toMatch(/^FAIL line 2  add_connection  expected a match for "never there"/m);
    const audit = await call('admin', ['--json', 'audit_log', JSON.stringify({ scope: 'tenant', tool: 'add_connection' })]);
    expect(audit.code, audit.stderr).toBe(0);
    expect(audit.stdout).not.toContain('credential-value');
  }, 120_000);

  it('a malformed script line (or JSON argument) never prints the piece of the credential it carries', async () => {
    // single quotes: the commonest JSON typo, in a CI file that carries a credential
    const line = `{"tool": "add_connection", "arguments": {"account": "boring-co", "app": "http", "credentials": {"auth_kind": "bearer", "base_url": "https://api.example.com", "token": 'hunter2'}}}`;
    const r = await call('boring', ['--script', script('typo-secret.jsonl', [line])]);
    expect(r.code).toBe(2);
    const one = await call('boring', ['add_connection', `{"app": "http", "credentials": {"token": 'hunter2'}}`]);
    expect(one.code).toBe(2);
    expect(r.stderr + one.stderr).not.toContain('hunter2');
  }, 60_000);

  it('a script stopped by an unmet expectation does not leave its switch into a customer account active: it returns home itself', async () => {
    const file = script('strand.jsonl', [
      { tool: 'switch_account', arguments: { account: 'acme-fitness', reason: 'nightly check, strand test' } },
      { tool: 'check_health', arguments: { scope: 'children' }, expect: { match: 'a figure that is not there' } },
      { tool: 'switch_account', arguments: { account: 'home' } },
    ]);
    const r = await call('support', ['--script', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('switchboard: line 2 did not meet its expectation; stopped there, 1 call not made (--keep-going makes them).\n');
    expect(r.stdout).toMatch(/^end  the script ended inside a switch: Returned from acme-fitness to /m);
    const open = await call('admin', ['--json', 'list_switches', JSON.stringify({ scope: 'tenant', active: true })]);
    expect(open.code, open.stderr).toBe(0);
    const stranded = (JSON.parse(open.stdout) as { switches: { reason: string; account: { slug: string }; expires_at: string }[] }).switches.filter((x) => x.reason.includes('strand test'));
    // the process has exited, its session is gone, yet list_switches (and the audit_switches prompt) show it in acme for 30 minutes
    expect(stranded).toEqual([]);
  }, 60_000);

  it('never prints a token: a bad token, a revoked one, and the token revoked in the middle of a script', async () => {
    const bad = await call('admin', ['whoami'], { env: { ...base, SWITCHBOARD_TOKEN: 'sbt_not-a-real-token-but-looks-like-one' } });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe('switchboard: SWITCHBOARD_TOKEN is not a valid API token (unknown, expired or revoked).\n');
    expect(bad.stderr).not.toContain('not-a-real');

    // a fresh token for the support user, revoked by its own script half-way through
    const made = await call('admin', ['--json', 'create_user', JSON.stringify({ email: 'ci@integrator.example', name: 'CI', account: 'sandbox', role: 'admin', permissions: ['switch_account', 'admin'] })]);
    expect(made.code, made.stderr).toBe(0);
    const { token, token_id: tokenId } = JSON.parse(made.stdout) as { token: string; token_id: string };
    const file = script('revoke.jsonl', [
      { tool: 'switch_account', arguments: { account: 'acme-fitness', reason: 'revocation drill' } },
      { tool: 'revoke_token', arguments: { token_id: tokenId } },
      { tool: 'whoami', expect: { isError: true, match: '^Access denied: the API token is missing, unknown, expired or revoked' } },
      { tool: 'get_account', expect: { isError: true, match: 'revoked' } },
      { tool: 'switch_account', arguments: { account: 'home' }, expect: { isError: true } },
    ]);
    const r = await call('admin', ['--script', file], { env: { ...base, SWITCHBOARD_TOKEN: token } });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout + r.stderr).not.toContain(token);
    const again = await call('admin', ['whoami'], { env: { ...base, SWITCHBOARD_TOKEN: token } });
    expect(again.code).toBe(1);
    expect(again.stderr).not.toContain(token);
    for (const out of cw.outputs) for (const t of Object.values(tokens)) expect(out).not.toContain(t);
  }, 120_000);

  it('hostile lines: 100,000-deep arguments, a 4 MB argument, a 1 MB tool name, a bad regex: one sentence each, no crash', async () => {
    const deep = '{"tool": "whoami", "arguments": {"a": ' + '['.repeat(100_000) + ']'.repeat(100_000) + '}, "expect": {"isError": true, "match": "nested more than 32 levels"}}';
    const big = JSON.stringify({ tool: 'list_accounts', arguments: { query: 'q'.repeat(4_000_000) }, expect: { isError: true, match: "Invalid argument 'query'" } });
    const name = JSON.stringify({ tool: 'w'.repeat(1_000_000), expect: { isError: true, match: 'Unknown tool' } });
    const regex = JSON.stringify({ tool: 'whoami', expect: { match: '(unclosed' } });
    const r = await call('support', ['--script', '-', '--keep-going'], { input: [deep, big, name, regex].join('\n') });
    const lines = r.stdout.trim().split('\n');
    expect(lines.map((l) => l.slice(0, 30))).toEqual([expect.stringMatching(/^ok   line 1  whoami/), expect.stringMatching(/^ok   line 2  list_accounts/), expect.stringMatching(/^ok   line 3  w+/), expect.stringMatching(/^FAIL line 4  whoami/)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('switchboard: 1 of 4 calls did not meet their expectations (line 4).\n');
  }, 120_000);

  it('read-only and toolsets: call answers exactly as stdio does with the same settings', async () => {
    const env = { ...base, SWITCHBOARD_TOKEN: tokens.support, SWITCHBOARD_READ_ONLY: 'on', SWITCHBOARD_TOOLSETS: 'accounts,operations' };
    const steps: [string, Record<string, unknown>][] = [
      ['list_toolsets', {}],
      ['switch_account', { account: 'acme-fitness', reason: 'x' }],
      ['get_delivery', { delivery: '00000000-0000-4000-8000-000000000000' }],
      ['replay_webhook', { account: 'boring-co', filter: {}, dry_run: true }],
      ['enable_toolset', { toolset: 'all' }],
      ['view_connection_info', { account: 'boring-co', connection: 'stripe', password: 'x' }],
      ['set_account_status', { account: 'boring-co', status: 'suspended', reason: 'x' }],
      ['get_delivery', { account: 'boring-co', delivery: '00000000-0000-4000-8000-000000000000' }],
    ];
    const viaCall = await call('support', ['--script', '-', '--json', '--keep-going'], { input: steps.map(([tool, args]) => JSON.stringify({ tool, arguments: args, expect: {} })).join('\n'), env });
    expect(viaCall.code, viaCall.stderr).toBe(0);
    const callResults = viaCall.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { isError: boolean; text: string; structuredContent: unknown })
      .map((x) => ({ isError: x.isError, text: x.text, structuredContent: x.structuredContent }));

    const stdio = await spawnStdio(env);
    const stdioResults = [];
    for (const [tool, args] of steps) {
      const r = (await stdio.client.callTool({ name: tool, arguments: args })) as CallToolResult;
      stdioResults.push({ isError: r.isError === true, text: text(r), structuredContent: r.structuredContent ?? null });
    }
    await stdio.close();
    expect(callResults).toEqual(stdioResults);
    expect(callResults[1]!.text).toBe('Access denied: this session is read-only, and switch_account changes things.');
    expect(callResults[3]!.text).toBe('Access denied: this session is read-only, and replay_webhook changes things.');
    expect(callResults[5]!.text).toMatch(/^Access denied: this session is read-only, and view_connection_info records/);
    // --read-only on the command line and --toolsets as well; an unknown toolset is a usage error
    const flags = await call('support', ['--read-only', '--toolsets', 'accounts', 'check_health', '{}'], { env: { ...base, SWITCHBOARD_TOKEN: tokens.support } });
    expect(flags.code).toBe(1);
    expect(flags.stderr).toBe("switchboard: check_health: check_health is in the toolset 'operations', which this session has not turned on: call enable_toolset with toolset 'operations' first.\n");
    const unknown = await call('support', ['--toolsets', 'everything', 'whoami']);
    expect(unknown.code).toBe(2);
  }, 120_000);
});
