import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq, sql } from 'drizzle-orm';
import { buildWorld, connect, data, text, type Session, type World } from './helpers/world.js';
import { startHttp, type HttpHandle } from '../src/http/server.js';
import { Worker } from '../src/engine/worker.js';
import { awaitExecution } from '../src/core/executions.js';
import { executions, webhookDedupeKeys, webhookDeliveries } from '../src/db/schema/index.js';
import { withAccount } from '../src/db/scope.js';

/**
 * Webhook ingress over real HTTP: a delivery is recorded and its run queued before the 202, runs
 * through the engine with the body, headers and query under trigger; unknown URLs are 404 and
 * stored nowhere; bodies over the limit 413; malformed JSON 400 and recorded as rejected; a
 * disabled or paused automation and a suspended account record without running; rotating the
 * URL retires the old one; secret headers are never recorded.
 */

let w: World;
let http: HttpHandle;
let boring: Session;
let worker: Worker;
let hook: { url: string | null; path: string };

beforeAll(async () => {
  w = await buildWorld();
  http = await startHttp({ core: w.core, database: w.database, port: 0, host: '127.0.0.1', webhookMaxBytes: 4096 });
  w.core.publicBaseUrl = new URL(http.url).origin;
  boring = await connect(w.core, w.tokens.boringAdmin);
  worker = new Worker(w.core, { concurrency: 4, leaseMs: 5_000, pollMs: 50, listen: (c, fn) => w.database.listen(c, fn) });
  await worker.start();
  data(
    await boring.call('create_automation', {
      name: 'Orders in',
      steps: [{ id: 'shape', kind: 'transform', value: { order: '{{ trigger.body.id }}', via: '{{ trigger.headers."x-source" }}', page: '{{ trigger.query.page }}', method: '{{ trigger.method }}' } }],
    }),
  );
  hook = data<{ webhook: { url: string | null; path: string } }>(await boring.call('get_automation', { automation: 'Orders in' })).webhook;
});
afterAll(async () => {
  await worker.stop();
  await boring.close();
  await http.close();
  await w.close();
});

const post = (url: string, body: string, headers: Record<string, string> = { 'content-type': 'application/json' }) => fetch(url, { method: 'POST', body, headers });

describe('webhook ingress', () => {
  it('shows the URL, records the delivery, queues its run and answers 202; the run sees body, headers and query', async () => {
    expect(hook.url).toBe(`${new URL(http.url).origin}${hook.path}`);
    expect(hook.path).toMatch(/^\/hooks\/[A-Za-z0-9_-]{43}$/);
    const res = await post(`${hook.url}?page=2&token=query-secret-456`, JSON.stringify({ id: 'o-1' }), {
      'content-type': 'application/json',
      'x-source': 'shop',
      authorization: 'Bearer provider-secret-123',
      'x-gitlab-token': 'gitlab-secret-789',
      'x-hub-signature-256': 'sha256=abc',
    });
    expect(res.status).toBe(202);
    const answer = (await res.json()) as { delivery_id: string; status: string };
    expect(answer.status).toBe('accepted');
    const [delivery] = await w.core.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, answer.delivery_id));
    expect(delivery).toMatchObject({ status: 'accepted', method: 'POST', body: { id: 'o-1' }, query: { page: '2', token: '[redacted]' }, accountId: w.accounts.boring.id });
    for (const h of ['authorization', 'x-gitlab-token', 'x-hub-signature-256']) expect(delivery!.headers[h], h).toBe('[redacted]');
    expect(JSON.stringify(delivery)).not.toMatch(/provider-secret-123|gitlab-secret-789|query-secret-456/);
    const run = await awaitExecution(w.core, w.accounts.boring, delivery!.executionId!, 10_000);
    expect(run).toMatchObject({ status: 'succeeded', source: 'webhook', deliveryId: delivery!.id });
    expect(run.state).toEqual({ shape: { order: 'o-1', via: 'shop', page: '2', method: 'POST' } });
    expect(JSON.stringify(run.trigger)).not.toMatch(/provider-secret-123|gitlab-secret-789|query-secret-456/);
    // only members and above see the URL: holding it is enough to start runs
    const viewer = await connect(w.core, w.tokens.boringViewer);
    expect(data<{ webhook: unknown }>(await viewer.call('get_automation', { automation: 'Orders in' })).webhook).toBeNull();
    await viewer.close();
    // a GET (a link preview) starts nothing
    expect((await fetch(hook.url!)).status).toBe(405);
  });

  it('records every one of a burst of concurrent deliveries with its own run (written in batches)', async () => {
    const answers = await Promise.all(
      Array.from({ length: 120 }, async (_, i) => {
        const res = await post(hook.url!, JSON.stringify({ id: `burst-${i}` }));
        return { http: res.status, ...((await res.json()) as { delivery_id: string; status: string }) };
      }),
    );
    expect(answers.filter((a) => a.http !== 202 || a.status !== 'accepted' || !a.delivery_id)).toEqual([]);
    const ids = answers.map((a) => a.delivery_id);
    expect(new Set(ids).size).toBe(120);
    const rows = await w.core.db.select().from(webhookDeliveries).where(sql`${webhookDeliveries.id} in ${ids}`);
    expect(rows).toHaveLength(120);
    const runs = await w.core.db.select().from(executions).where(sql`${executions.deliveryId} in ${ids}`);
    expect(runs).toHaveLength(120);
    // each run carries its own delivery's body
    for (const r of runs) {
      const d = rows.find((x) => x.id === r.deliveryId)!;
      expect((r.trigger as { body: unknown }).body).toEqual(d.body);
    }
  });

  it('accepts form and text bodies', async () => {
    const form = await post(hook.url!, 'id=o-2&x=1', { 'content-type': 'application/x-www-form-urlencoded' });
    const f = (await form.json()) as { delivery_id: string };
    const [fd] = await w.core.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, f.delivery_id));
    expect(fd!.body).toEqual({ id: 'o-2', x: '1' });
    // text stays text, even text that looks like JSON
    for (const body of ['hello', '{"a":1}', '42']) {
      const plain = await post(hook.url!, body, { 'content-type': 'text/plain' });
      expect(plain.status).toBe(202);
      const p = (await plain.json()) as { delivery_id: string };
      const [pd] = await w.core.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, p.delivery_id));
      expect(pd!.body, body).toBe(body);
    }
  });

  it('answers 404 to unknown URLs and stores nothing, 413 to bodies over the limit, 400 to malformed JSON (recorded as rejected)', async () => {
    const before = (await w.core.db.select().from(webhookDeliveries)).length;
    for (const path of ['/hooks/not-a-token', `/hooks/${'A'.repeat(43)}`, '/hooks/']) {
      expect((await post(`${new URL(http.url).origin}${path}`, '{}')).status, path).toBe(404);
    }
    expect(http.unknownHooks()).toBeGreaterThanOrEqual(3);
    expect((await w.core.db.select().from(webhookDeliveries)).length).toBe(before);
    expect((await post(hook.url!, JSON.stringify({ big: 'x'.repeat(5000) }))).status).toBe(413);
    const bad = await post(hook.url!, '{"id": ');
    expect(bad.status).toBe(400);
    const b = (await bad.json()) as { delivery_id: string; status: string; reason: string };
    expect(b).toMatchObject({ status: 'rejected', reason: expect.stringMatching(/^malformed JSON/) });
    const [rd] = await w.core.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, b.delivery_id));
    expect(rd).toMatchObject({ status: 'rejected', executionId: null, body: '{"id": ' });
    const deep = await post(hook.url!, '['.repeat(1000) + ']'.repeat(1000));
    expect(deep.status).toBe(400);
    expect(await deep.json()).toMatchObject({ status: 'rejected', reason: 'the JSON is nested more than 64 levels deep' });
  });

  it('records without running for a disabled automation and a suspended account', async () => {
    data(await boring.call('set_automation_enabled', { automation: 'Orders in', enabled: false }));
    const off = (await (await post(hook.url!, '{"id":"o-3"}')).json()) as { status: string; reason: string };
    expect(off).toMatchObject({ status: 'recorded', reason: 'the automation is disabled' });
    data(await boring.call('set_automation_enabled', { automation: 'Orders in', enabled: true }));
    const admin = await connect(w.core, w.tokens.admin);
    data(await admin.call('set_account_status', { account: 'boring-co', status: 'suspended', reason: 'hook test' }));
    try {
      const res = await post(hook.url!, '{"id":"o-4"}');
      expect(res.status).toBe(202);
      expect(await res.json()).toMatchObject({ status: 'recorded', reason: 'the account is suspended' });
    } finally {
      data(await admin.call('set_account_status', { account: 'boring-co', status: 'active', reason: 'done' }));
      await admin.close();
    }
  });

  it('runs a repeat of the same event once within 24 h (dedupe), and again once its key expired', async () => {
    data(
      await boring.call('create_automation', {
        name: 'Deduped',
        trigger: { dedupe: { key: 'trigger.body.id' } },
        steps: [{ id: 'a', kind: 'transform', value: '{{ trigger.body.id }}' }],
      }),
    );
    const url = data<{ webhook: { url: string } }>(await boring.call('get_automation', { automation: 'Deduped' })).webhook.url;
    const send = async (body: unknown) => (await (await post(url, JSON.stringify(body))).json()) as { status: string; reason?: string; delivery_id: string };
    expect((await send({ id: 'evt_1' })).status).toBe('accepted');
    const again = await send({ id: 'evt_1' });
    expect(again).toMatchObject({ status: 'duplicate', reason: expect.stringMatching(/same de-duplication key/) });
    expect((await send({ id: 'evt_2' })).status).toBe('accepted');
    // an event without the key runs (never lost), and says why it was not de-duplicated
    expect(await send({ other: 1 })).toMatchObject({ status: 'accepted', reason: expect.stringMatching(/key is empty/) });
    const [dup] = await w.core.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, again.delivery_id));
    expect(dup).toMatchObject({ status: 'duplicate', executionId: null });
    await w.core.db.update(webhookDedupeKeys).set({ expiresAt: sql`now() - interval '1 second'` });
    expect((await send({ id: 'evt_1' })).status).toBe('accepted');
    // concurrent repeats: exactly one runs
    const burst = await Promise.all(Array.from({ length: 8 }, () => send({ id: 'evt_burst' })));
    expect(burst.filter((b) => b.status === 'accepted')).toHaveLength(1);
    expect(burst.filter((b) => b.status === 'duplicate')).toHaveLength(7);
  });

  it('retires the old URL when rotated, and keeps deliveries to their account', async () => {
    const rotated = data<{ webhook: { url: string } }>(await boring.call('rotate_webhook_url', { automation: 'Orders in' }));
    expect(rotated.webhook.url).not.toBe(hook.url);
    expect((await post(hook.url!, '{}')).status).toBe(404);
    expect((await post(rotated.webhook.url, '{"id":"o-5"}')).status).toBe(202);
    expect(data<{ automation: { name: string } }>(await boring.call('get_automation', { automation: 'Orders in' })).automation.name).toBe('Orders in');
    // another account's scope sees none of them
    const seen = await withAccount(w.core.db, [w.accounts.acme.id], (tx) => tx.select().from(webhookDeliveries));
    expect(seen).toEqual([]);
    const runs = await w.core.db.select().from(executions).where(eq(executions.source, 'webhook'));
    expect(runs.every((r) => r.accountId === w.accounts.boring.id)).toBe(true);
  });
});
