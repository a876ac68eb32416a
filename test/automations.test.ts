import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { and, eq } from 'drizzle-orm';
import { buildWorld, connect, data, text, type Session, type World } from './helpers/world.js';
import { addConnection } from '../src/core/connections.js';
import { shareConnection } from '../src/core/connection-lifecycle.js';
import { auditLog, automationRevisions, automations, executions } from '../src/db/schema/index.js';
import { resolveAutomation } from '../src/core/automations.js';
import { enqueueExecution } from '../src/core/executions.js';

/**
 * Automations through the MCP tools: definitions validated whole at save, immutable revisions,
 * the connections they use, states, and deletion.
 */

let w: World;
let boring: Session; // Boring Co's admin
let acme: Session; // Acme Fitness's admin (and so of its studios)
const KEY = 'sk_test_automation_0123456789';

beforeAll(async () => {
  w = await buildWorld();
  boring = await connect(w.core, w.tokens.boringAdmin);
  acme = await connect(w.core, w.tokens.acmeAdmin);
  await addConnection(w.core, w.accounts.boring, { app: 'stripe', credentials: { secret_key: KEY }, createdBy: null });
  const { row } = await addConnection(w.core, w.accounts.acme, { app: 'mindbody', credentials: { api_key: 'mb-automation-key-000000', site_id: '-99' }, createdBy: null });
  await shareConnection(w.core, w.accounts.acme, row, true);
});
afterAll(async () => {
  await Promise.all([boring.close(), acme.close()]);
  await w.close();
});

interface Got {
  automation: { id: string; name: string; state: string; revision: number; steps: number; routed: boolean; paused_by_connection_id: string | null };
  shown_revision: { revision: number; note: string };
  definition: { steps: { id: string; kind: string; connection?: string; connection_id?: string | null; url?: string }[]; routing: { key: string } | null; retries: { max: number } };
  revisions: { revision: number; note: string }[];
  connections: { app: string; name: string; source: string; owner: { slug: string } }[];
}

const invoiceSync = {
  name: 'Sync invoices',
  description: 'Paid invoices go to the ledger.',
  trigger: { dedupe: { key: 'trigger.body.id' } },
  steps: [
    { id: 'paid', kind: 'filter', condition: 'trigger.body.type = "invoice.paid"' },
    { id: 'invoice', kind: 'http', method: 'GET', url: 'https://api.stripe.com/v1/invoices/{{ trigger.body.data.object.id }}', connection: 'stripe' },
    { id: 'entry', kind: 'transform', value: { amount: '{{ steps.invoice.output.body.amount_paid / 100 }}', ref: 'inv-{{ steps.invoice.output.body.id }}' } },
    { id: 'seen', kind: 'store', action: 'increment', key: 'invoices:{{ $substring($now(), 0, 7) }}' },
  ],
};

describe('create_automation and get_automation', () => {
  it('saves revision 1 with every step kind and shows the connections it uses', async () => {
    const created = data<{ automation: Got['automation'] }>(await boring.call('create_automation', invoiceSync));
    expect(created.automation).toMatchObject({ name: 'Sync invoices', state: 'enabled', revision: 1, steps: 4, routed: false });
    const got = data<Got>(await boring.call('get_automation', { automation: 'sync INVOICES' }));
    expect(got.automation.id).toBe(created.automation.id);
    expect(got.definition.steps.map((s) => s.kind)).toEqual(['filter', 'http', 'transform', 'store']);
    expect(got.definition.steps[1]).toMatchObject({ connection: 'stripe', connection_id: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    expect(got.definition.retries).toEqual({ max: 3 });
    expect(got.connections).toEqual([expect.objectContaining({ app: 'stripe', name: 'Default', source: 'own', owner: expect.objectContaining({ slug: 'boring-co' }) })]);
    expect(got.revisions).toEqual([expect.objectContaining({ revision: 1, note: 'created' })]);
    // the connection's usage now lists it
    const usage = data<{ automations: { name: string }[] }>(await boring.call('list_connection_usage', { connection: 'stripe' }));
    expect(usage.automations.map((a) => a.name)).toContain('Sync invoices');
    // names are unique per account, case-insensitively
    expect(text(await boring.call('create_automation', { ...invoiceSync, name: 'SYNC invoices' }))).toMatch(/already has an automation named 'SYNC invoices'/);
  });

  it("uses a connection its parent shares, and sees none of another account's", async () => {
    const studio = data<{ automation: { id: string } }>(
      await acme.call('create_automation', {
        account: 'acme-studio-01',
        name: 'Welcome new members',
        steps: [{ id: 'client', kind: 'http', method: 'GET', url: 'https://api.mindbodyonline.com/public/v6/client/clients', query: { clientIds: '{{ trigger.body.client_id }}' }, connection: 'mindbody' }],
      }),
    );
    const got = data<Got>(await acme.call('get_automation', { account: 'acme-studio-01', automation: studio.automation.id }));
    expect(got.connections).toEqual([expect.objectContaining({ app: 'mindbody', source: 'parent', owner: expect.objectContaining({ slug: 'acme-fitness' }) })]);
    // Boring's stripe connection does not exist for Acme, by app or by id
    const boringConn = data<{ own: { id: string }[] }>(await boring.call('list_connections', {})).own[0]!.id;
    for (const connection of ['stripe', boringConn]) {
      const r = await acme.call('create_automation', { name: `Steal ${connection}`, steps: [{ id: 'x', kind: 'http', method: 'POST', url: 'https://x.test', connection }] });
      expect(r.isError).toBe(true);
      expect(text(r)).toMatch(/No connection '.*' in account 'acme-fitness'/);
    }
    // nor are Boring's automations there, by name or by id
    const boringAuto = data<{ automations: { id: string }[] }>(await boring.call('list_automations', {})).automations[0]!.id;
    for (const automation of ['Sync invoices', boringAuto]) {
      expect(text(await acme.call('get_automation', { automation }))).toMatch(/^No automation '.*' in account 'acme-fitness'/);
    }
  });
});

describe('validation at save', () => {
  it('reports every problem at once, one sentence each, and saves nothing', async () => {
    const r = await boring.call('create_automation', {
      name: 'Broken',
      steps: [
        { id: 'a', kind: 'transform', value: { x: '{{ trigger.body.( }}', y: '{{ steps.c.output }}', z: '{{ steps.nope.output }}' } },
        { id: 'a', kind: 'filter', condition: 'steps.a.output.ok' },
        { id: 'c', kind: 'http', method: 'POST', url: 'ftp://files.example.test/x', headers: { Authorization: 'Bearer abc' }, connection: 'salesforce' },
        { id: 'd', kind: 'http', method: 'GET', url: 'not a url' },
        { id: 'e', kind: 'store', action: 'set', key: 'k', scope: 'parent' },
      ],
    });
    expect(r.isError).toBe(true);
    const msg = text(r);
    for (const expected of [
      /Two steps have the id 'a'/,
      /Step 'a' \(value\.x\): the expression "trigger\.body\.\(" does not parse: .*at character/,
      /Step 'a' \(value\.y\) reads steps\.c, which runs after it/,
      /Step 'a' \(value\.z\) reads steps\.nope, but there is no step 'nope'/,
      /Step 'c' \(url\): the URL must be http:\/\/ or https:\/\/, not ftp:\/\//,
      /Step 'c' \(headers\.Authorization\): credentials do not go in a step/,
      /Step 'c' \(connection\): No connection 'salesforce'/,
      /Step 'd' \(url\): 'not a url' is not a URL/,
      /Step 'e' \(value\): a store set needs a value/,
      /Step 'e' \(scope\): scope "parent" .* 'boring-co' has no parent/,
    ]) {
      expect(msg).toMatch(expected);
    }
    expect(msg).not.toContain('Bearer abc');
    const saved = await w.core.db.select().from(automations).where(and(eq(automations.accountId, w.accounts.boring.id), eq(automations.name, 'Broken')));
    expect(saved).toEqual([]);
  });

  it('keeps credentials out of definitions, error messages and the audit log', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ url: 'https://admin:hunter2pass@api.example.test/{{ trigger.body.id }}' }, /Step 'x' \(url\): the URL must not carry a user name or password/],
      [{ url: 'https://api.example.test/x', headers: { Authorization: 'Bearer sk_live_hidden123{{ "" }}' } }, /Step 'x' \(headers\.Authorization\): credentials do not go in a step/],
      [{ url: 'https://api.example.test/x', headers: { 'X-Shopify-Access-Token': 'shpat_hidden123' } }, /headers\.X-Shopify-Access-Token/],
      [{ url: 'https://api.example.test/x', query: { api_key: 'hidden123' } }, /query\.api_key/],
      [{ url: 'https://api.example.test/x?access_token=hidden123&page=1' }, /Step 'x' \(url\): credentials do not go in a step/],
      [{ url: 'https://admin:hunter2pass@api exa.test/' }, /./],
    ];
    for (const [step, why] of cases) {
      const r = await boring.call('create_automation', { name: 'Leaky', steps: [{ id: 'x', kind: 'http', method: 'GET', ...step }] });
      expect(r.isError, JSON.stringify(step)).toBe(true);
      expect(text(r)).toMatch(why);
      expect(text(r)).not.toMatch(/hunter2pass|hidden123/);
    }
    // forwarding the caller's own header is fine: it is not written into the definition
    data(await boring.call('create_automation', { name: 'Forwarding', steps: [{ id: 'x', kind: 'http', method: 'GET', url: 'https://api.example.test/x', headers: { Authorization: 'Bearer {{ trigger.headers.authorization }}' } }] }));
    const entries = await w.core.db.select().from(auditLog).where(and(eq(auditLog.tool, 'create_automation'), eq(auditLog.accountId, w.accounts.boring.id)));
    expect(JSON.stringify(entries)).not.toMatch(/hunter2pass|hidden123/);
    data(await boring.call('delete_automation', { automation: 'Forwarding' }));
  });

  it('refuses names that are invisible or look like ids, and reserved step ids', async () => {
    expect(text(await boring.call('create_automation', { name: '\u200b', steps: [{ id: 'a', kind: 'transform', value: 1 }] }))).toMatch(/must not be empty/);
    expect(text(await boring.call('create_automation', { name: '6f1c8a52-5c8e-4c1e-9a57-3d2f0e0b1a77', steps: [{ id: 'a', kind: 'transform', value: 1 }] }))).toMatch(/cannot be an id/);
    for (const id of ['__proto__', 'constructor']) {
      expect(text(await boring.call('create_automation', { name: 'Proto', steps: [{ id, kind: 'transform', value: 1 }] }))).toMatch(/reserved word/);
    }
    expect(text(await boring.call('get_automation', { automation: 'Sync invoices', revision: 2 ** 31 }))).toMatch(/revision/);
    expect(text(await boring.call('create_automation', { name: 'Long', steps: [{ id: 'a', kind: 'transform', value: `{{ 1${'+1'.repeat(4500)} }}` }] }))).toMatch(/longer than 4000 characters/);
  });

  it('checks shapes before meaning: step ids, kinds and sizes', async () => {
    const bad = [
      [{ id: '1st', kind: 'transform', value: 1 }, /id/],
      [{ id: 'and', kind: 'transform', value: 1 }, /reserved word/],
      [{ id: 'x', kind: 'shell', command: 'rm -rf /' }, /kind/],
      [{ id: 'x', kind: 'http', method: 'TRACE', url: 'https://x.test' }, /method/],
      // a misspelt field is an error, never silently dropped
      [{ id: 'x', kind: 'http', method: 'GET', url: 'https://x.test', conection: 'stripe' }, /conection/],
    ] as const;
    for (const [step, why] of bad) {
      const r = await boring.call('create_automation', { name: 'Shapes', steps: [step] });
      expect(r.isError, JSON.stringify(step)).toBe(true);
      expect(text(r)).toMatch(why);
    }
    expect(text(await boring.call('create_automation', { name: 'Empty', steps: [] }))).toMatch(/steps/);
  });

  it('routes only from a parent account, and a routed step may name an app its children connect', async () => {
    const routedIn = (account: string, connection: string) =>
      acme.call('create_automation', {
        account,
        name: `Bookings by studio ${connection}`,
        routing: { key: 'trigger.body.location_id' },
        steps: [{ id: 'notify', kind: 'http', method: 'POST', url: 'https://hooks.slack.test/x', body: { text: 'Booking at {{ account.slug }}' }, connection }],
      });
    // the parent has no Slack connection; its studios may: the app is enough
    const ok = data<{ automation: { routed: boolean } }>(await routedIn('acme-fitness', 'slack'));
    expect(ok.automation.routed).toBe(true);
    expect(text(await routedIn('acme-fitness', 'no-such-app'))).toMatch(/Step 'notify' \(connection\)/);
    expect(text(await routedIn('acme-studio-02', 'slack'))).toMatch(/'acme-studio-02' is a linked child: only a parent account routes events/);
  });
});

describe('revisions', () => {
  it('writes a new immutable revision on every update and keeps the old ones as they were', async () => {
    const updated = data<{ automation: { revision: number } }>(
      await boring.call('update_automation', {
        automation: 'Sync invoices',
        note: 'also refunds',
        steps: [
          { id: 'paid', kind: 'filter', condition: 'trigger.body.type in ["invoice.paid", "charge.refunded"]' },
          { id: 'entry', kind: 'transform', value: '{{ trigger.body.data.object }}' },
        ],
      }),
    );
    expect(updated.automation.revision).toBe(2);
    const now = data<Got>(await boring.call('get_automation', { automation: 'Sync invoices' }));
    expect(now.definition.steps.map((s) => s.id)).toEqual(['paid', 'entry']);
    // the trigger was not given: kept from revision 1
    expect(now.revisions.map((r) => [r.revision, r.note])).toEqual([[2, 'also refunds'], [1, 'created']]);
    // no http step any more: the connection is no longer in use
    expect(now.connections).toEqual([]);
    const first = data<Got>(await boring.call('get_automation', { automation: 'Sync invoices', revision: 1 }));
    expect(first.shown_revision.revision).toBe(1);
    expect(first.definition.steps.map((s) => s.id)).toEqual(['paid', 'invoice', 'entry', 'seen']);
    expect(text(await boring.call('get_automation', { automation: 'Sync invoices', revision: 9 }))).toMatch(/no revision 9/);
    // an update that does not validate writes nothing
    expect((await boring.call('update_automation', { automation: 'Sync invoices', steps: [{ id: 'x', kind: 'filter', condition: 'steps.y' }] })).isError).toBe(true);
    expect(data<Got>(await boring.call('get_automation', { automation: 'Sync invoices' })).automation.revision).toBe(2);
  });

  it('loses no part of concurrent updates that change different parts', async () => {
    data(await boring.call('create_automation', { name: 'Raced', steps: [{ id: 'v', kind: 'transform', value: 'orig' }] }));
    for (let i = 0; i < 5; i++) {
      const [a, b] = await Promise.all([
        boring.call('update_automation', { automation: 'Raced', steps: [{ id: 'v', kind: 'transform', value: `new ${i}` }] }),
        boring.call('update_automation', { automation: 'Raced', description: `described ${i}` }),
      ]);
      expect(a.isError || b.isError).toBeFalsy();
      const got = data<Got & { automation: { description?: string } }>(await boring.call('get_automation', { automation: 'Raced' }));
      expect(got.definition.steps).toEqual([expect.objectContaining({ value: `new ${i}` })]);
    }
    data(await boring.call('delete_automation', { automation: 'Raced' }));
  });

  it('gives concurrent updates consecutive revisions, none lost', async () => {
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => boring.call('update_automation', { automation: 'Sync invoices', note: `concurrent ${i}` })),
    );
    for (const r of results) expect(r.isError, text(r)).toBeFalsy();
    const auto = (await w.core.db.select().from(automations).where(and(eq(automations.accountId, w.accounts.boring.id), eq(automations.name, 'Sync invoices'))))[0]!;
    const revs = await w.core.db.select({ revision: automationRevisions.revision }).from(automationRevisions).where(eq(automationRevisions.automationId, auto.id));
    expect(revs.map((r) => r.revision).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(auto.revision).toBe(8);
  });
});

describe('state, listing and deletion', () => {
  it('lists by name and state; disabling writes no revision; a disconnect shows as paused', async () => {
    data(await boring.call('create_automation', { name: 'Refund alerts', steps: [{ id: 'call', kind: 'http', method: 'POST', url: 'https://api.stripe.com/v1/x', connection: 'stripe/Default' }] }));
    const off = data<{ automation: { state: string; revision: number }; changed: boolean }>(await boring.call('set_automation_enabled', { automation: 'Sync invoices', enabled: false }));
    expect(off).toMatchObject({ automation: { state: 'disabled', revision: 8 }, changed: true });
    expect(data<{ changed: boolean }>(await boring.call('set_automation_enabled', { automation: 'Sync invoices', enabled: false })).changed).toBe(false);

    const plan = data<{ confirm_token: string }>(await boring.call('disconnect_connection', { connection: 'stripe' }));
    data(await boring.call('disconnect_connection', { connection: 'stripe', confirm: plan.confirm_token }));
    const list = async (args: object) => data<{ automations: { name: string; state: string }[] }>(await boring.call('list_automations', args)).automations;
    expect((await list({})).map((a) => [a.name, a.state])).toEqual([['Refund alerts', 'paused'], ['Sync invoices', 'disabled']]);
    expect((await list({ state: 'paused' })).map((a) => a.name)).toEqual(['Refund alerts']);
    expect((await list({ query: 'SYNC' })).map((a) => a.name)).toEqual(['Sync invoices']);
    expect(await list({ state: 'enabled' })).toEqual([]);
    data(await boring.call('reconnect_connection', { connection: 'stripe', credentials: { secret_key: KEY } }));
    expect((await list({ state: 'enabled' })).map((a) => a.name)).toEqual(['Refund alerts']);

    // pages
    const p1 = data<{ automations: { name: string }[]; next_cursor: string | null }>(await boring.call('list_automations', { limit: 1 }));
    expect(p1.automations.map((a) => a.name)).toEqual(['Refund alerts']);
    const p2 = data<{ automations: { name: string }[]; next_cursor: string | null }>(await boring.call('list_automations', { limit: 1, cursor: p1.next_cursor }));
    expect(p2.automations.map((a) => a.name)).toEqual(['Sync invoices']);
    expect(p2.next_cursor).toBeNull();
  });

  it('deletes with the admin role only, with its revisions', async () => {
    const member = await connect(w.core, w.tokens.acmeMember);
    data(await member.call('create_automation', { name: 'Member flow', steps: [{ id: 'a', kind: 'transform', value: 1 }] }));
    expect(text(await member.call('delete_automation', { automation: 'Member flow' }))).toMatch(/^Access denied: this needs the admin role/);
    const del = data<{ deleted: { name: string; revisions: number } }>(await acme.call('delete_automation', { automation: 'Member flow' }));
    expect(del.deleted).toMatchObject({ name: 'Member flow', revisions: 1 });
    expect(text(await member.call('get_automation', { automation: 'Member flow' }))).toMatch(/^No automation 'Member flow'/);
    const left = await w.core.db.select().from(automationRevisions).where(eq(automationRevisions.name, 'Member flow'));
    expect(left).toEqual([]);
    await member.close();
  });

  it('deletes an automation that ran in the last 24 h only with the confirm token of its plan', async () => {
    data(await boring.call('create_automation', { name: 'Busy flow', steps: [{ id: 'a', kind: 'transform', value: 1 }] }));
    const row = await resolveAutomation(w.core, w.accounts.boring, 'Busy flow');
    await enqueueExecution(w.core, w.accounts.boring, row, { body: null, headers: {}, query: {}, method: 'POST' }, 'test', null);
    const plan = data<{ applied: boolean; deleted: unknown; confirm_token: string; executions_last_24h: number; in_flight: number }>(
      await boring.call('delete_automation', { automation: 'Busy flow' }),
    );
    expect(plan).toMatchObject({ applied: false, deleted: null, executions_last_24h: 1, in_flight: 1, confirm_token: expect.stringMatching(/^del_/) });
    // still there
    data(await boring.call('get_automation', { automation: 'Busy flow' }));
    const wrong = await boring.call('delete_automation', { automation: 'Busy flow', confirm: 'del_0000' });
    expect(wrong.isError).toBe(true);
    expect(text(wrong)).toMatch(/confirm token does not match/);
    // a change since the plan makes its token stale
    data(await boring.call('update_automation', { automation: 'Busy flow', steps: [{ id: 'a', kind: 'transform', value: 2 }] }));
    expect((await boring.call('delete_automation', { automation: 'Busy flow', confirm: plan.confirm_token })).isError).toBe(true);
    const again = data<{ confirm_token: string }>(await boring.call('delete_automation', { automation: 'Busy flow' }));
    const done = data<{ applied: boolean; deleted: { name: string } }>(await boring.call('delete_automation', { automation: 'Busy flow', confirm: again.confirm_token }));
    expect(done).toMatchObject({ applied: true, deleted: { name: 'Busy flow' } });
    expect(await w.core.db.select().from(executions).where(eq(executions.automationId, row.id))).toEqual([]);
  });

  it('audits definitions without the secrets a header might carry', async () => {
    data(
      await boring.call('create_automation', {
        name: 'Forward signature',
        steps: [{ id: 'fwd', kind: 'http', method: 'POST', url: 'https://x.test/in', headers: { 'X-Api-Key': '{{ trigger.headers."x-api-key" }}' } }],
      }),
    );
    const [entry] = await w.core.db.select().from(auditLog).where(and(eq(auditLog.tool, 'create_automation'), eq(auditLog.outcome, 'ok'), eq(auditLog.accountId, w.accounts.boring.id)));
    expect(entry).toBeTruthy();
    expect(JSON.stringify(entry!.arguments)).not.toContain(KEY);
  });
});
