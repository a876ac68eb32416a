import { afterAll, describe, expect, it } from 'vitest';
import { and, eq, inArray } from 'drizzle-orm';
import { faultRuns } from './helpers/faults.js';
import { connect, data } from './helpers/world.js';
import { engineWorld, localApp, startWorker } from './helpers/apps.js';
import { passed } from '../bench/faults/harness.js';
import { replayKill } from '../bench/faults/replay-kill.js';
import { applyReplay, planReplay } from '../src/core/operations/replay.js';
import { authenticate } from '../src/core/users.js';
import { grantIn } from '../src/core/access.js';
import { awaitExecution } from '../src/core/executions.js';
import { executions, webhookDeliveries } from '../src/db/schema/index.js';
import { UserError } from '../src/core/errors.js';

/**
 * A bulk replay_webhook whose `serve` is killed with SIGKILL while its workers run the replays
 * (the scenario of `npm run faults`, bench/faults/replay-kill.ts): after a restart every delivery
 * of the plan has exactly one replay, which succeeded and is its latest run; the apply sent again
 * with the same plan_hash — while the killed process's runs are still held, and after they all
 * ended — replays nothing; the app got each delivery's write under one Idempotency-Key. Runs on
 * both databases: on the embedded one serve and this file take turns on one data directory.
 */

const runs = faultRuns();
afterAll(() => runs.close());

describe('a bulk replay whose serve is killed with SIGKILL half way', { timeout: 240_000 }, () => {
  it('finishes after a restart: every delivery replayed once, none lost, the apply sent again replays nothing', async () => {
    const c = await replayKill(await runs.context(), { deliveries: 30, appDelayMs: 100, workers: 2 });
    const story = runs.lines.join('\n');
    expect(c.total, story).toBe(30);
    // the kill landed half way
    expect(c.doneAtKill, story).toBeGreaterThan(0);
    expect(c.doneAtKill, story).toBeLessThan(30);
    // every delivery replayed exactly once, its replay succeeded and is its latest run
    expect(c, story).toMatchObject({ doneAfterRerun: 30, duplicates: 0, lost: 0 });
    for (const x of c.checks) expect(x.ok, `${x.line}\n${story}`).toBe(true);
    expect(passed(c)).toBe(true);
  });
});

describe('one plan applied twice', () => {
  it('planned twice before either apply committed: the second apply is undone whole, each delivery replayed once', async () => {
    const app = await localApp((req, res) => {
      req.resume();
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end('{"error":"down"}');
    });
    const { w, close } = await engineWorld();
    const boring = await connect(w.core, w.tokens.boringAdmin);
    try {
      data(await boring.call('create_automation', { name: 'Twice', retries: 0, steps: [{ id: 'send', kind: 'http', method: 'POST', url: `${app.base}/orders` }] }));
      const hook = data<{ webhook: { url: string } }>(await boring.call('get_automation', { automation: 'Twice' })).webhook.url;
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push(((await (await fetch(hook, { method: 'POST', body: JSON.stringify({ i }), headers: { 'content-type': 'application/json' } })).json()) as { delivery_id: string }).delivery_id);
      const worker = await startWorker(w);
      try {
        const delivered = await w.core.db.select().from(webhookDeliveries).where(inArray(webhookDeliveries.id, ids));
        for (const d of delivered) expect((await awaitExecution(w.core, w.accounts.boring, d.executionId!, 10_000)).status).toBe('failed');
      } finally {
        await worker.stop();
      }

      // two callers plan the same replay from the same state: the same hash
      const caller = (await authenticate(w.core, w.tokens.boringAdmin))!;
      const grant = await grantIn(w.core, caller, w.accounts.boring);
      const automationId = (await w.core.db.select({ id: executions.automationId }).from(executions).where(inArray(executions.deliveryId, ids)))[0]!.id;
      const plan = () => planReplay(w.core, caller, w.accounts.boring, grant, { filter: { automationId } }, { revision: 'current', reuse: true });
      const [first, second] = [await plan(), await plan()];
      expect(first.hash).toBe(second.hash);
      expect(first.replayable).toHaveLength(3);

      const made = await applyReplay(w.core, caller, w.accounts.boring, first);
      expect(made).toHaveLength(3);
      const late = await applyReplay(w.core, caller, w.accounts.boring, second).catch((e: unknown) => e);
      expect(late).toBeInstanceOf(UserError);
      expect((late as UserError).message).toBe('The plan changed since dry_run: 3 of its deliveries were replayed meanwhile; nothing was replayed, run dry_run again.');

      // one replay per delivery, each the delivery's latest run
      const replays = await w.core.db.select().from(executions).where(and(eq(executions.source, 'replay'), inArray(executions.deliveryId, ids)));
      expect(replays.map((r) => r.id).sort()).toEqual(made.map((m) => m.id).sort());
      const latest = await w.core.db.select({ id: webhookDeliveries.latestReplayId }).from(webhookDeliveries).where(inArray(webhookDeliveries.id, ids));
      expect(latest.map((l) => l.id).sort()).toEqual(made.map((m) => m.id).sort());

      // a dry run now plans from those replays: another hash
      const dry = data<{ plan: { hash: string } }>(await boring.call('replay_webhook', { filter: { automation: 'Twice' }, dry_run: true }));
      expect(dry.plan.hash).not.toBe(first.hash); // the deliveries' latest runs are the replays now
    } finally {
      await boring.close();
      await close();
      await app.close();
    }
  });
});
