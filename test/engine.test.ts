import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { and, eq, sql } from 'drizzle-orm';
import { buildWorld, connect, data, text, type Session, type World } from './helpers/world.js';
import { Worker } from '../src/engine/worker.js';
import { executions, executionSteps } from '../src/db/schema/index.js';
import { getEntry } from '../src/core/account-data.js';
import { resolveAutomation } from '../src/core/automations.js';
import { awaitExecution, enqueueExecution } from '../src/core/executions.js';

/**
 * The execution engine through run_automation, list_executions and get_execution: steps run in
 * order with their records, filters end runs as filtered, expression errors fail the step by
 * code, revisions are pinned, leases lapse and runs resume after their last committed step,
 * many workers never run one execution twice, and nothing runs in a suspended account.
 */

let w: World;
let boring: Session;
let acme: Session;
let worker: Worker;
const fast = { concurrency: 4, leaseMs: 2_000, pollMs: 50 };

beforeAll(async () => {
  w = await buildWorld();
  boring = await connect(w.core, w.tokens.boringAdmin);
  acme = await connect(w.core, w.tokens.acmeAdmin);
  worker = new Worker(w.core, { ...fast, listen: (c, fn) => w.database.listen(c, fn) });
  await worker.start();
});
afterAll(async () => {
  await worker.stop();
  await Promise.all([boring.close(), acme.close()]);
  await w.close();
});

interface Run {
  execution: { id: string; automation: { id: string }; status: string; revision: number; failed_step: string | null; error: { code: string; message: string } | null; next_step: number };
  steps: { index: number; id: string; kind: string; attempt: number; status: string; input: unknown; output: unknown; error: { code: string; message: string } | null }[];
}

const orderFlow = {
  name: 'Order totals',
  steps: [
    { id: 'paid', kind: 'filter', condition: 'trigger.body.status = "paid"' },
    { id: 'total', kind: 'transform', value: { order: '{{ trigger.body.id }}', cents: '{{ $sum(trigger.body.lines.(qty * price)) }}', by: '{{ trigger.headers."x-source" }}' } },
    { id: 'count', kind: 'store', action: 'increment', key: 'orders:{{ account.slug }}' },
    { id: 'remember', kind: 'store', action: 'set', key: 'last-order', value: '{{ steps.total.output }}', ttl_seconds: 3600 },
  ],
};

describe('run_automation', () => {
  it('runs every step in order, records each, and keeps their outputs', async () => {
    data(await boring.call('create_automation', orderFlow));
    const r = data<Run>(
      await boring.call('run_automation', {
        automation: 'Order totals',
        input: { body: { id: 'o-1', status: 'paid', lines: [{ qty: 2, price: 500 }, { qty: 1, price: 250 }] }, headers: { 'X-Source': 'pos' } },
      }),
    );
    expect(r.execution).toMatchObject({ status: 'succeeded', revision: 1, failed_step: null, error: null, next_step: 4 });
    expect(r.steps.map((s) => [s.id, s.status, s.attempt])).toEqual([['paid', 'succeeded', 1], ['total', 'succeeded', 1], ['count', 'succeeded', 1], ['remember', 'succeeded', 1]]);
    expect(r.steps[1]!.output).toEqual({ order: 'o-1', cents: 1250, by: 'pos' });
    expect(r.steps[2]).toMatchObject({ input: { action: 'increment', key: 'orders:boring-co', scope: 'account' }, output: 1 });
    const stored = await getEntry(w.core, w.accounts.boring, 'last-order');
    expect(stored!.value).toEqual({ order: 'o-1', cents: 1250, by: 'pos' });
    expect(stored!.expiresAt).not.toBeNull();
    // a second run counts on
    const again = data<Run>(await boring.call('run_automation', { automation: 'Order totals', input: { body: { id: 'o-2', status: 'paid', lines: [] } } }));
    expect(again.steps[2]!.output).toBe(2);
  });

  it('ends a run whose filter says no as filtered, not failed', async () => {
    const r = data<Run>(await boring.call('run_automation', { automation: 'Order totals', input: { body: { id: 'o-3', status: 'pending' } } }));
    expect(r.execution.status).toBe('filtered');
    expect(r.steps.map((s) => [s.id, s.status, s.output])).toEqual([['paid', 'filtered', false]]);
  });

  it('fails a step whose expression fails with expression_error, naming the step and the expression', async () => {
    data(await boring.call('create_automation', { name: 'Bad math', steps: [{ id: 'calc', kind: 'transform', value: '{{ $number(trigger.body.amount) * 2 }}' }] }));
    const r = await boring.call('run_automation', { automation: 'Bad math', input: { body: { amount: 'twelve' } } });
    const run = data<Run>(r);
    expect(run.execution).toMatchObject({ status: 'failed', failed_step: 'calc', error: { code: 'expression_error' } });
    expect(run.execution.error!.message).toMatch(/^Step 'calc': the expression "\$number\(trigger\.body\.amount\) \* 2" failed/);
    expect(run.steps).toHaveLength(1); // not retryable: one attempt
    expect(text(r)).toBe(`The test run of the automation ${run.execution.automation.id} failed at step 'calc' (expression_error).`);
  });

  it("lets a studio's store step use its parent's data with scope parent", async () => {
    data(
      await acme.call('create_automation', {
        account: 'acme-studio-01',
        name: 'Chain bookings',
        steps: [{ id: 'chain', kind: 'store', action: 'increment', key: 'bookings', scope: 'parent' }, { id: 'mine', kind: 'store', action: 'increment', key: 'bookings' }],
      }),
    );
    const r = data<Run>(await acme.call('run_automation', { account: 'acme-studio-01', automation: 'Chain bookings' }));
    expect(r.execution.status).toBe('succeeded');
    expect((await getEntry(w.core, w.accounts.acme, 'bookings'))!.value).toBe(1);
    expect((await getEntry(w.core, w.accounts.studio1, 'bookings'))!.value).toBe(1);
    expect(await getEntry(w.core, w.accounts.studio2, 'bookings')).toBeNull();
    // a suspended parent's data is not changed from its children either
    const admin = await connect(w.core, w.tokens.admin);
    data(await admin.call('set_account_status', { account: 'acme-fitness', status: 'suspended', reason: 'store test' }));
    try {
      const r = data<Run>(await acme.call('run_automation', { account: 'acme-studio-01', automation: 'Chain bookings' }));
      expect(r.execution).toMatchObject({ status: 'failed', failed_step: 'chain', error: { code: 'store_error' } });
      expect((await getEntry(w.core, w.accounts.acme, 'bookings'))!.value).toBe(1);
    } finally {
      data(await admin.call('set_account_status', { account: 'acme-fitness', status: 'active', reason: 'done' }));
      await admin.close();
    }
  });
});

describe('durability', () => {
  it('runs the revision it was queued with, even after an update', async () => {
    await worker.stop();
    try {
      const queued = data<Run>(await boring.call('run_automation', { automation: 'Order totals', input: { body: { id: 'o-9', status: 'paid', lines: [] } }, wait_seconds: 0 }));
      expect(queued.execution.status).toBe('queued');
      data(await boring.call('update_automation', { automation: 'Order totals', steps: [{ id: 'only', kind: 'transform', value: 'revision 2' }] }));
      worker = new Worker(w.core, { ...fast, listen: (c, fn) => w.database.listen(c, fn) });
      await worker.start();
      const done = await awaitExecution(w.core, w.accounts.boring, queued.execution.id, 10_000);
      expect(done).toMatchObject({ status: 'succeeded', revision: 1 });
      const got = data<Run>(await boring.call('get_execution', { execution: queued.execution.id }));
      expect(got.steps.map((s) => s.id)).toEqual(['paid', 'total', 'count', 'remember']);
    } finally {
      await worker.start();
    }
  });

  it('takes back an execution whose lease lapsed and resumes after its last committed step', async () => {
    const automation = await resolveAutomation(w.core, w.accounts.boring, 'Order totals'); // now revision 2: one step
    data(await boring.call('update_automation', { automation: 'Order totals', steps: [{ id: 'a', kind: 'transform', value: 'A' }, { id: 'b', kind: 'transform', value: '{{ steps.a.output }}B' }] }));
    const current = await resolveAutomation(w.core, w.accounts.boring, automation.id);
    // a worker that died after committing step a: running, its lease lapsed, next step b
    const [row] = await w.core.db
      .insert(executions)
      .values({
        tenantId: w.core.tenantId, accountId: w.accounts.boring.id, automationId: current.id, revision: current.revision, source: 'test',
        trigger: { body: {}, headers: {}, query: {}, method: 'POST' }, status: 'running', worker: 'w-dead', leaseUntil: sql`now() - interval '1 second'`,
        state: { a: 'A' }, nextStep: 1, startedAt: sql`now()`,
      })
      .returning();
    const done = await awaitExecution(w.core, w.accounts.boring, row!.id, 10_000);
    expect(done.status).toBe('succeeded');
    expect(done.worker).toMatch(new RegExp(`^${worker.id}:`));
    const steps = await w.core.db.select().from(executionSteps).where(eq(executionSteps.executionId, row!.id));
    expect(steps.map((s) => [s.stepId, s.output])).toEqual([['b', 'AB']]);
  });

  it('never runs one execution twice with several workers claiming at once', async () => {
    const others = [1, 2].map(() => new Worker(w.core, { ...fast, listen: (c, fn) => w.database.listen(c, fn) }));
    await Promise.all(others.map((o) => o.start()));
    try {
      const automation = await resolveAutomation(w.core, w.accounts.boring, 'Order totals');
      const rows = await Promise.all(Array.from({ length: 40 }, (_, i) => enqueueExecution(w.core, w.accounts.boring, automation, { body: { i }, headers: {}, query: {}, method: 'POST' }, 'test', null)));
      const finished = await Promise.all(rows.map((r) => awaitExecution(w.core, w.accounts.boring, r.id, 20_000)));
      expect(finished.every((f) => f.status === 'succeeded')).toBe(true);
      const ids = rows.map((r) => r.id);
      const steps = await w.core.db.select({ id: executionSteps.executionId, step: executionSteps.stepId }).from(executionSteps).where(sql`${executionSteps.executionId} in ${ids}`);
      expect(steps).toHaveLength(80); // two steps each, each once
    } finally {
      await Promise.all(others.map((o) => o.stop()));
    }
  });

  it('runs nothing in a suspended account until the suspension is lifted', async () => {
    const admin = await connect(w.core, w.tokens.admin);
    const automation = await resolveAutomation(w.core, w.accounts.boring, 'Order totals');
    data(await admin.call('set_account_status', { account: 'boring-co', status: 'suspended', reason: 'engine test' }));
    try {
      // the tool refuses to start a run in it …
      expect(text(await boring.call('run_automation', { automation: 'Order totals' }))).toMatch(/is suspended/);
      // … and one already queued waits (workers see a suspension within a second)
      await new Promise((r) => setTimeout(r, 1100));
      const queued = await enqueueExecution(w.core, w.accounts.boring, automation, { body: {}, headers: {}, query: {}, method: 'POST' }, 'test', null);
      const waiting = await awaitExecution(w.core, w.accounts.boring, queued.id, 500);
      expect(waiting.status).toBe('queued');
      data(await admin.call('set_account_status', { account: 'boring-co', status: 'active', reason: 'lifted' }));
      // a waiting run is due again 30 s after it was put back; here it is made due at once, once workers see the lift
      await new Promise((r) => setTimeout(r, 1100));
      await w.core.db.update(executions).set({ runAt: sql`now()` }).where(eq(executions.id, queued.id));
      expect((await awaitExecution(w.core, w.accounts.boring, queued.id, 10_000)).status).toBe('succeeded');
    } finally {
      data(await admin.call('set_account_status', { account: 'boring-co', status: 'active', reason: 'cleanup' }));
      await admin.close();
    }
  });
});

describe('list_executions and get_execution', () => {
  it('lists newest first with filters and pages, and shows nothing of another account', async () => {
    const all = data<{ executions: { id: string; status: string; automation: { name: string } }[]; next_cursor: string | null }>(await boring.call('list_executions', { limit: 200 }));
    expect(all.executions.length).toBeGreaterThan(40);
    const failed = data<{ executions: { automation: { name: string }; status: string }[] }>(await boring.call('list_executions', { status: 'failed' }));
    expect(failed.executions.map((e) => [e.automation.name, e.status])).toEqual([['Bad math', 'failed']]);
    const byAutomation = data<{ executions: unknown[] }>(await boring.call('list_executions', { automation: 'Bad math' }));
    expect(byAutomation.executions).toHaveLength(1);
    const p1 = data<{ executions: { id: string }[]; next_cursor: string }>(await boring.call('list_executions', { limit: 3 }));
    const p2 = data<{ executions: { id: string }[] }>(await boring.call('list_executions', { limit: 3, cursor: p1.next_cursor }));
    expect(p1.executions.map((e) => e.id)).toEqual(all.executions.slice(0, 3).map((e) => e.id));
    expect(p2.executions.map((e) => e.id)).toEqual(all.executions.slice(3, 6).map((e) => e.id));

    // Acme sees none of Boring's, by listing or by id
    const theirs = all.executions[0]!.id;
    expect(text(await acme.call('get_execution', { execution: theirs }))).toMatch(/^No execution .* in account 'acme-fitness'/);
    const acmeList = data<{ executions: { id: string }[] }>(await acme.call('list_executions', {}));
    expect(acmeList.executions.map((e) => e.id)).not.toContain(theirs);
    expect(text(await boring.call('get_execution', { execution: 'not-a-uuid' }))).toMatch(/by its id/);
    const forged = Buffer.from(JSON.stringify(['1', '00000000-0000-4000-8000-000000000000'])).toString('base64url');
    expect(text(await boring.call('list_executions', { cursor: forged }))).toMatch(/^The cursor is not valid/);
  });

  it('pages through runs created within the same millisecond', async () => {
    data(await acme.call('create_automation', { account: 'acme-studio-02', name: 'Same ms', steps: [{ id: 'a', kind: 'transform', value: 1 }] }));
    const a = await resolveAutomation(w.core, w.accounts.studio2, 'Same ms');
    const base = { tenantId: w.core.tenantId, accountId: w.accounts.studio2.id, automationId: a.id, revision: 1, source: 'test' as const, trigger: {}, status: 'succeeded' as const };
    const rows = await w.core.db
      .insert(executions)
      .values(['100', '200', '300', '400'].map((us) => ({ ...base, createdAt: sql`${`2026-01-01T00:00:00.000${us}Z`}::timestamptz` })))
      .returning({ id: executions.id });
    const seen: string[] = [];
    let cursor: string | null | undefined;
    do {
      const page = data<{ executions: { id: string }[]; next_cursor: string | null }>(await acme.call('list_executions', { account: 'acme-studio-02', limit: 1, ...(cursor ? { cursor } : {}) }));
      seen.push(...page.executions.map((e) => e.id));
      cursor = page.next_cursor;
    } while (cursor);
    expect(seen).toEqual(rows.map((r) => r.id).reverse());
  });

  it('keeps execution rows to their account under RLS', async () => {
    const { withAccount } = await import('../src/db/scope.js');
    const seen = await withAccount(w.core.db, [w.accounts.acme.id], (tx) => tx.select().from(executions));
    for (const r of seen) expect(r.accountId).toBe(w.accounts.acme.id);
    const steps = await withAccount(w.core.db, [w.accounts.acme.id], (tx) => tx.select().from(executionSteps).where(and(eq(executionSteps.accountId, w.accounts.boring.id))));
    expect(steps).toEqual([]);
  });
});
