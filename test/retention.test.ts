import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { eq, inArray, sql } from 'drizzle-orm';
import { buildWorld, type World } from './helpers/world.js';
import { createAutomation } from '../src/core/automations.js';
import { executions, executionSteps, webhookDedupeKeys, webhookDeliveries } from '../src/db/schema/index.js';
import { prune } from '../src/engine/retention.js';
import { loadConfig } from '../src/config.js';

/**
 * Retention: executions (with their step records) and deliveries older than the retention are
 * deleted in batches, runs still queued or running are kept whatever their age, recent ones are
 * kept, and expired de-duplication keys go too.
 */

let w: World;
beforeAll(async () => {
  w = await buildWorld();
});
afterAll(async () => {
  await w.close();
});

describe('retention', () => {
  it('prunes old finished executions, their steps and old deliveries in batches, and keeps the rest', async () => {
    const { row: a } = await createAutomation(w.core, w.accounts.boring, {
      name: 'Old and new',
      createdBy: null,
      definition: { trigger: { type: 'webhook', dedupe: null }, routing: null, retries: { max: 0 }, steps: [{ id: 'a', kind: 'transform', value: 1 }] },
    });
    const old = new Date(Date.now() - 40 * 86_400_000);
    const base = { tenantId: w.core.tenantId, accountId: w.accounts.boring.id, automationId: a.id, revision: 1, source: 'webhook' as const, trigger: {} };
    const oldDone = Array.from({ length: 25 }, () => ({ ...base, id: randomUUID(), status: 'succeeded' as const, createdAt: old }));
    const oldQueued = { ...base, id: randomUUID(), status: 'queued' as const, createdAt: old, runAt: new Date(Date.now() + 3600_000) };
    const recent = { ...base, id: randomUUID(), status: 'failed' as const };
    await w.core.db.insert(executions).values([...oldDone, oldQueued, recent]);
    await w.core.db.insert(executionSteps).values(
      [...oldDone, recent].map((e) => ({
        executionId: e.id, stepIndex: 0, attempt: 1, tenantId: w.core.tenantId, accountId: w.accounts.boring.id, stepId: 'a', kind: 'transform', status: 'succeeded' as const, startedAt: new Date(), durationMs: 1,
      })),
    );
    const delivery = { tenantId: w.core.tenantId, accountId: w.accounts.boring.id, automationId: a.id, status: 'accepted' as const, method: 'POST', headers: {}, query: {}, size: 0 };
    const oldDeliveries = Array.from({ length: 12 }, () => ({ ...delivery, id: randomUUID(), receivedAt: old }));
    const newDelivery = { ...delivery, id: randomUUID() };
    // an old delivery whose run still waits (a long-suspended account) stays with its run
    const waiting = { ...delivery, id: randomUUID(), receivedAt: old, executionId: oldQueued.id };
    await w.core.db.insert(webhookDeliveries).values([...oldDeliveries, newDelivery, waiting]);
    await w.core.db.insert(webhookDedupeKeys).values([
      { automationId: a.id, key: 'expired', tenantId: w.core.tenantId, accountId: w.accounts.boring.id, deliveryId: newDelivery.id, expiresAt: new Date(Date.now() - 1000) },
      { automationId: a.id, key: 'live', tenantId: w.core.tenantId, accountId: w.accounts.boring.id, deliveryId: newDelivery.id, expiresAt: new Date(Date.now() + 3600_000) },
    ]);

    // batches of 10: several rounds
    const pruned = await prune(w.core, 30, 10);
    expect(pruned).toMatchObject({ executions: 25, deliveries: 12, dedupeKeys: 1 });

    const left = await w.core.db.select({ id: executions.id }).from(executions).where(eq(executions.automationId, a.id));
    expect(left.map((r) => r.id).sort()).toEqual([oldQueued.id, recent.id].sort());
    const steps = await w.core.db.select({ id: executionSteps.executionId }).from(executionSteps).where(inArray(executionSteps.executionId, [...oldDone, recent].map((e) => e.id)));
    expect(steps.map((s) => s.id)).toEqual([recent.id]);
    const deliveries = await w.core.db.select({ id: webhookDeliveries.id }).from(webhookDeliveries).where(eq(webhookDeliveries.automationId, a.id));
    expect(deliveries.map((d) => d.id).sort()).toEqual([newDelivery.id, waiting.id].sort());
    const keys = await w.core.db.select({ key: webhookDedupeKeys.key }).from(webhookDedupeKeys).where(eq(webhookDedupeKeys.automationId, a.id));
    expect(keys.map((k) => k.key)).toEqual(['live']);
    // nothing more to do
    expect(await prune(w.core, 30, 10)).toEqual({ executions: 0, deliveries: 0, dedupeKeys: 0, accountData: 0, aggregates: 0 });
    // a longer retention keeps what a shorter one would prune
    await w.core.db.update(executions).set({ createdAt: sql`now() - interval '10 days'` }).where(eq(executions.id, recent.id));
    expect((await prune(w.core, 30)).executions).toBe(0);
    expect((await prune(w.core, 7)).executions).toBe(1);
  });

  it('reads the retention from SWITCHBOARD_EXECUTION_RETENTION_DAYS (default 30) and refuses nonsense', () => {
    expect(loadConfig({}).retentionDays).toBe(30);
    expect(loadConfig({ SWITCHBOARD_EXECUTION_RETENTION_DAYS: '7' }).retentionDays).toBe(7);
    expect(() => loadConfig({ SWITCHBOARD_EXECUTION_RETENTION_DAYS: '0' })).toThrow(/SWITCHBOARD_EXECUTION_RETENTION_DAYS/);
    expect(loadConfig({}).expireAfter401).toBe(3);
    expect(loadConfig({}).accountConcurrency).toBe(16);
  });
});
