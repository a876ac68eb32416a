import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { eq } from 'drizzle-orm';
import { buildWorld, connect, data, type Session, type World } from './helpers/world.js';
import { startHttp, type HttpHandle } from '../src/http/server.js';
import { Worker } from '../src/engine/worker.js';
import { awaitExecution } from '../src/core/executions.js';
import { getEntry } from '../src/core/account-data.js';
import { executions, webhookDeliveries } from '../src/db/schema/index.js';
import { getAccountById, linkAccount, setAccountStatus, unlinkAccount } from '../src/core/accounts.js';

/**
 * Per-location routing: a parent's automation runs each event in the linked child whose
 * routing_key matches the event's routing key, in the child's account (its data, its history),
 * calling the app with the connection the parent shares; an event no child matches is recorded
 * as unrouted with the key it had, and runs nowhere.
 */

let w: World;
let http: HttpHandle;
let acme: Session;
let worker: Worker;
let app: Server;
let hook: string;
const calls: { url: string; authorization: string | undefined }[] = [];
const TOKEN = 'tok_chain_api_0123456789abcdef';

beforeAll(async () => {
  app = createServer((req: IncomingMessage, res) => {
    calls.push({ url: req.url!, authorization: req.headers.authorization });
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: true }));
    });
  });
  const base = await new Promise<string>((r) => app.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(app.address() as AddressInfo).port}`)));
  w = await buildWorld();
  w.core.outbound = { allow: ['127.0.0.1'] };
  http = await startHttp({ core: w.core, database: w.database, port: 0, host: '127.0.0.1' });
  w.core.publicBaseUrl = new URL(http.url).origin;
  acme = await connect(w.core, w.tokens.admin);
  // the chain connects its API once and shares it with its studios
  data(await acme.call('add_connection', { account: 'acme-fitness', app: 'http', name: 'Chain API', credentials: { auth_kind: 'bearer', base_url: base, token: TOKEN } }));
  data(await acme.call('share_connection', { account: 'acme-fitness', connection: 'http/Chain API', shared: true }));
  data(
    await acme.call('create_automation', {
      account: 'acme-fitness',
      name: 'Bookings',
      routing: { key: 'body.location_id' },
      steps: [
        { id: 'count', kind: 'store', action: 'increment', key: 'bookings' },
        { id: 'tell', kind: 'http', method: 'POST', url: `${base}/bookings/{{ account.routing_key }}`, connection: 'http/Chain API', body: { id: '{{ trigger.body.id }}' } },
        { id: 'where', kind: 'transform', value: { studio: '{{ account.slug }}', key: '{{ account.routing_key }}' } },
      ],
    }),
  );
  hook = data<{ webhook: { url: string } }>(await acme.call('get_automation', { account: 'acme-fitness', automation: 'Bookings' })).webhook.url;
  worker = new Worker(w.core, { concurrency: 4, leaseMs: 5_000, pollMs: 50, listen: (c, fn) => w.database.listen(c, fn) });
  await worker.start();
});
afterAll(async () => {
  await worker.stop();
  await acme.close();
  await http.close();
  await w.close();
  await new Promise((r) => app.close(r));
});

const post = async (body: unknown) => {
  const res = await fetch(hook, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return { status: res.status, answer: (await res.json()) as { delivery_id: string; status: string; reason?: string } };
};

describe('routing to linked accounts', () => {
  it("runs each event in the studio whose routing key matches, in the studio's account, with the parent's shared connection", async () => {
    const { status, answer } = await post({ id: 'b-1', location_id: 'studio-02' });
    expect(status).toBe(202);
    expect(answer.status).toBe('routed');
    const [d] = await w.core.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, answer.delivery_id));
    expect(d).toMatchObject({ accountId: w.accounts.acme.id, status: 'routed', routingValue: 'studio-02', routedAccountId: w.accounts.studio2.id });
    const run = await awaitExecution(w.core, w.accounts.studio2, d!.executionId!, 10_000);
    expect(run).toMatchObject({ status: 'succeeded', accountId: w.accounts.studio2.id, automationAccountId: w.accounts.acme.id, deliveryId: d!.id });
    expect(run.state).toMatchObject({ where: { studio: 'acme-studio-02', key: 'studio-02' } });
    // the studio's own data, not the parent's or the other studio's
    expect((await getEntry(w.core, w.accounts.studio2, 'bookings'))!.value).toBe(1);
    expect(await getEntry(w.core, w.accounts.studio1, 'bookings')).toBeNull();
    expect(await getEntry(w.core, w.accounts.acme, 'bookings')).toBeNull();
    // the parent's shared connection authenticated the call
    expect(calls.find((c) => c.url === '/bookings/studio-02')?.authorization).toBe(`Bearer ${TOKEN}`);
  });

  it("puts the run in the studio's history, which the parent's admins read", async () => {
    const { answer } = await post({ id: 'b-2', location_id: 'studio-01' });
    const [d] = await w.core.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, answer.delivery_id));
    await awaitExecution(w.core, w.accounts.studio1, d!.executionId!, 10_000);
    const parentAdmin = await connect(w.core, w.tokens.acmeAdmin);
    const list = data<{ executions: { id: string; status: string }[] }>(await parentAdmin.call('list_executions', { account: 'acme-studio-01' }));
    expect(list.executions.map((e) => e.id)).toContain(d!.executionId);
    const one = data<{ execution: { id: string; status: string } }>(await parentAdmin.call('get_execution', { account: 'acme-studio-01', execution: d!.executionId }));
    expect(one.execution.status).toBe('succeeded');
    // not in the parent's own history, nor the other studio's
    const own = data<{ executions: { id: string }[] }>(await parentAdmin.call('list_executions', { account: 'acme-fitness' }));
    expect(own.executions.map((e) => e.id)).not.toContain(d!.executionId);
    const other = data<{ executions: { id: string }[] }>(await parentAdmin.call('list_executions', { account: 'acme-studio-02' }));
    expect(other.executions.map((e) => e.id)).not.toContain(d!.executionId);
    await parentAdmin.close();
  });

  it('records an event no studio matches as unrouted, with its key, and runs nothing', async () => {
    const before = (await w.core.db.select().from(executions)).length;
    const { status, answer } = await post({ id: 'b-3', location_id: 'studio-99' });
    expect(status).toBe(202);
    expect(answer).toMatchObject({ status: 'unrouted', reason: 'no linked account has routing key studio-99' });
    const [d] = await w.core.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, answer.delivery_id));
    expect(d).toMatchObject({ status: 'unrouted', code: 'unrouted', routingValue: 'studio-99', routedAccountId: null, executionId: null });
    const missing = await post({ id: 'b-4' });
    expect(missing.answer).toMatchObject({ status: 'unrouted', reason: 'the routing key is empty for this event' });
    // a number matches a key written as text
    data(await acme.call('create_account', { name: 'Acme Studio 07', slug: 'acme-studio-07', parent: 'acme-fitness', routing_key: '7' }).then((r) => r));
    const numeric = await post({ id: 'b-5', location_id: 7 });
    expect(numeric.answer.status).toBe('routed');
    expect((await w.core.db.select().from(executions)).length).toBe(before + 1);
  });

  it('does not run a queued routed run in an account that is no longer linked, nor while the parent is suspended', async () => {
    // the worker is stopped: runs stay queued while the links change
    await worker.stop();
    try {
      const queued = await post({ id: 'b-6', location_id: 'studio-01' });
      const [d] = await w.core.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, queued.answer.delivery_id));
      const studio1 = (await getAccountById(w.core, w.accounts.studio1.id))!;
      await unlinkAccount(w.core, studio1);
      await linkAccount(w.core, (await getAccountById(w.core, w.accounts.studio1.id))!, w.accounts.boring, 'moved-01');
      const paused = await post({ id: 'b-7', location_id: 'studio-02' });
      const [p] = await w.core.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, paused.answer.delivery_id));
      await setAccountStatus(w.core, w.accounts.acme, 'suspended', 'routing test', w.userIds.admin);
      worker = new Worker(w.core, { concurrency: 4, leaseMs: 5_000, pollMs: 50, listen: (c, fn) => w.database.listen(c, fn) });
      await worker.start();
      const moved = await awaitExecution(w.core, w.accounts.studio1, d!.executionId!, 10_000);
      expect(moved).toMatchObject({ status: 'cancelled', errorCode: 'unrouted' });
      expect(moved.errorMessage).toMatch(/no longer a linked account/);
      // the suspended parent's routed run waits
      await new Promise((r) => setTimeout(r, 300));
      const [waiting] = await w.core.db.select().from(executions).where(eq(executions.id, p!.executionId!));
      expect(waiting!.status).toBe('queued');
    } finally {
      await setAccountStatus(w.core, w.accounts.acme, 'active', 'routing test done', w.userIds.admin);
    }
  });
});
