import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { eq } from 'drizzle-orm';
import { buildWorld, connect, data, type Session, type World } from './helpers/world.js';
import { Worker } from '../src/engine/worker.js';
import { connections } from '../src/db/schema/index.js';
import { countAuthFailure } from '../src/engine/auth-failures.js';

/**
 * 401s count against the connection that authenticated the call: one success resets the count,
 * and the third in a row marks the connection expired and pauses the automations using it, with
 * records that say to reconnect; reconnecting resumes them. A connection a parent shares counts
 * the 401s of all its studios.
 */

let w: World;
let boring: Session;
let admin: Session;
let worker: Worker;
let app: Server;
let base: string;
let refuse = true;
const TOKEN = 'tok_auth_failures_0123456789';

interface Run {
  execution: { id: string; status: string; error: { code: string; message: string } | null };
}

beforeAll(async () => {
  app = createServer((req, res) => {
    req.resume();
    res.writeHead(refuse ? 401 : 200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(refuse ? { error: 'invalid token' } : { ok: true }));
  });
  base = await new Promise<string>((r) => app.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(app.address() as AddressInfo).port}`)));
  w = await buildWorld();
  w.core.outbound = { allow: ['127.0.0.1'] };
  boring = await connect(w.core, w.tokens.boringAdmin);
  admin = await connect(w.core, w.tokens.admin);
  data(await boring.call('add_connection', { app: 'http', name: 'CRM', credentials: { auth_kind: 'bearer', base_url: base, token: TOKEN } }));
  for (const name of ['Sync contacts', 'Sync deals']) {
    data(await boring.call('create_automation', { name, retries: 0, steps: [{ id: 'call', kind: 'http', method: 'GET', url: `${base}/me`, connection: 'http/CRM' }] }));
  }
  worker = new Worker(w.core, { concurrency: 2, leaseMs: 5_000, pollMs: 50, listen: (c, fn) => w.database.listen(c, fn) });
  await worker.start();
});
afterAll(async () => {
  await worker.stop();
  await boring.close();
  await admin.close();
  await w.close();
  await new Promise((r) => app.close(r));
});

const run = async (s: Session, automation: string, account?: string) =>
  data<Run>(await s.call('run_automation', { automation, ...(account ? { account } : {}), wait_seconds: 20 })).execution;

const connectionRow = async (id?: string) => {
  const rows = await w.core.db.select().from(connections).where(eq(connections.accountId, id ?? w.accounts.boring.id));
  return rows.find((r) => r.name === 'CRM' || r.name === 'Chain CRM')!;
};

describe('401s against a connection', () => {
  it('counts 401s in a row, and one success starts the count again', async () => {
    refuse = true;
    const first = await run(boring, 'Sync contacts');
    expect(first.error).toMatchObject({ code: 'http_401', message: expect.stringMatching(/refused \(1 in a row; at 3 the connection is marked expired\)/) });
    expect((await run(boring, 'Sync deals')).error!.message).toMatch(/2 in a row/);
    expect(await connectionRow()).toMatchObject({ status: 'active', authFailures: 2 });
    refuse = false;
    expect((await run(boring, 'Sync contacts')).status).toBe('succeeded');
    expect(await connectionRow()).toMatchObject({ status: 'active', authFailures: 0 });
  });

  it('marks the connection expired at the third 401 in a row and pauses its automations; reconnecting resumes them', async () => {
    refuse = true;
    await run(boring, 'Sync contacts');
    await run(boring, 'Sync contacts');
    const third = await run(boring, 'Sync deals');
    expect(third.error).toMatchObject({
      code: 'http_401',
      message: expect.stringMatching(/refused 3 times in a row: the connection is now marked expired and the automations using it are paused; reconnect it \(reconnect_connection\) and they resume/),
    });
    expect((await connectionRow()).status).toBe('expired');
    const listed = data<{ automations: { name: string; state: string }[] }>(await boring.call('list_automations', {}));
    for (const name of ['Sync contacts', 'Sync deals']) expect(listed.automations.find((a) => a.name === name)?.state, name).toBe('paused');
    // a run now says why without calling the app
    const after = await run(boring, 'Sync deals');
    expect(after.error).toMatchObject({ code: 'connection_expired', message: expect.stringMatching(/reconnect it/) });
    refuse = false;
    data(await boring.call('reconnect_connection', { connection: 'http/CRM', credentials: { base_url: base, token: `${TOKEN}-new` } }));
    expect(await connectionRow()).toMatchObject({ status: 'active', authFailures: 0 });
    const again = data<{ automations: { name: string; state: string }[] }>(await boring.call('list_automations', {}));
    for (const name of ['Sync contacts', 'Sync deals']) expect(again.automations.find((a) => a.name === name)?.state, name).toBe('enabled');
    expect((await run(boring, 'Sync deals')).status).toBe('succeeded');
  });

  it("counts the 401s of every studio against the parent's shared connection", async () => {
    refuse = true;
    data(await admin.call('add_connection', { account: 'acme-fitness', app: 'http', name: 'Chain CRM', credentials: { auth_kind: 'bearer', base_url: base, token: TOKEN } }));
    data(await admin.call('share_connection', { account: 'acme-fitness', connection: 'http/Chain CRM', shared: true }));
    for (const studio of ['acme-studio-01', 'acme-studio-02']) {
      data(await admin.call('create_automation', { account: studio, name: 'Chain sync', retries: 0, steps: [{ id: 'call', kind: 'http', method: 'GET', url: `${base}/me`, connection: 'http/Chain CRM' }] }));
    }
    await run(admin, 'Chain sync', 'acme-studio-01');
    await run(admin, 'Chain sync', 'acme-studio-02');
    expect((await connectionRow(w.accounts.acme.id)).authFailures).toBe(2);
    const third = await run(admin, 'Chain sync', 'acme-studio-01');
    expect(third.error!.message).toMatch(/marked expired/);
    expect((await connectionRow(w.accounts.acme.id)).status).toBe('expired');
    for (const studio of ['acme-studio-01', 'acme-studio-02']) {
      const listed = data<{ automations: { name: string; state: string }[] }>(await admin.call('list_automations', { account: studio }));
      expect(listed.automations.find((a) => a.name === 'Chain sync')?.state, studio).toBe('paused');
    }
  });

  it('does not count a 401 for credentials the step sent itself, nor one for credentials since replaced', async () => {
    refuse = true;
    data(await boring.call('add_connection', { app: 'http', name: 'Keyed', credentials: { auth_kind: 'api_key', base_url: base, header_name: 'X-Api-Key', api_key: 'key_0123456789abcdef' } }));
    data(
      await boring.call('create_automation', {
        name: 'Forwarding',
        retries: 0,
        steps: [{ id: 'call', kind: 'http', method: 'GET', url: `${base}/me`, connection: 'http/Keyed', headers: { authorization: 'Bearer {{ trigger.body.token }}' } }],
      }),
    );
    for (let i = 0; i < 4; i++) {
      const r = data<Run>(await boring.call('run_automation', { automation: 'Forwarding', input: { body: { token: 'junk' } }, wait_seconds: 20 })).execution;
      expect(r.error!.message).toMatch(/sends credentials of its own/);
    }
    const keyed = (await w.core.db.select().from(connections).where(eq(connections.accountId, w.accounts.boring.id))).find((c) => c.name === 'Keyed')!;
    expect(keyed).toMatchObject({ status: 'active', authFailures: 0 });
    // a 401 answered to the old credentials after a reconnect is not about the new ones
    data(await boring.call('reconnect_connection', { connection: 'http/Keyed', credentials: { base_url: base, header_name: 'X-Api-Key', api_key: 'key_new_0123456789' } }));
    expect(await countAuthFailure(w.core, keyed)).toEqual({ count: 0, expired: false, paused: 0 });
  });
});
