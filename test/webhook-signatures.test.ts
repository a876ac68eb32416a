import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHmac, randomBytes } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { buildWorld, connect, data, text, type Session, type World } from './helpers/world.js';
import { startHttp, type HttpHandle } from '../src/http/server.js';
import { webhookDeliveries, executions } from '../src/db/schema/index.js';
import { checkSignature, signFor } from '../src/core/signatures.js';

/**
 * Signature verification at ingress: each preset accepts a request signed as its provider signs,
 * and refuses (401, recorded as rejected: signature_invalid) a wrong signature, a missing header
 * and a stale timestamp; the secret lives in a webhook connection and appears nowhere; binary
 * bodies are verified on their bytes and kept as base64.
 */

let w: World;
let http: HttpHandle;
let boring: Session;
const SECRET = `whsec_${randomBytes(24).toString('base64url')}`;
const hooks: Record<string, string> = {};

beforeAll(async () => {
  w = await buildWorld();
  http = await startHttp({ core: w.core, database: w.database, port: 0, host: '127.0.0.1' });
  w.core.publicBaseUrl = new URL(http.url).origin;
  boring = await connect(w.core, w.tokens.boringAdmin);
  data(await boring.call('add_connection', { app: 'webhook', name: 'Provider', credentials: { signing_secret: SECRET } }));
  const presets: [string, Record<string, unknown>][] = [
    ['stripe', { preset: 'stripe', connection: 'webhook/Provider' }],
    ['github', { preset: 'github', connection: 'webhook/Provider' }],
    ['shopify', { preset: 'shopify', connection: 'webhook/Provider' }],
    ['slack', { preset: 'slack', connection: 'webhook/Provider', tolerance_seconds: 60 }],
    ['generic', { preset: 'generic', connection: 'webhook/Provider', header: 'X-Signature', encoding: 'base64', prefix: 'hmac=' }],
  ];
  for (const [name, signature] of presets) {
    data(await boring.call('create_automation', { name: `Signed ${name}`, trigger: { signature }, steps: [{ id: 'a', kind: 'transform', value: '{{ trigger.body }}' }] }));
    hooks[name] = data<{ webhook: { url: string } }>(await boring.call('get_automation', { automation: `Signed ${name}` })).webhook.url;
  }
});
afterAll(async () => {
  await boring.close();
  await http.close();
  await w.close();
});

const post = (url: string, body: string | Buffer, headers: Record<string, string>) => fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });

const generic = (body: string | Buffer, secret = SECRET) => ({ 'x-signature': `hmac=${createHmac('sha256', secret).update(body).digest('base64')}` });

async function delivery(id: string) {
  const [row] = await w.core.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, id));
  return row!;
}

describe('webhook signatures', () => {
  it('accepts a request signed as each provider signs, and runs it', async () => {
    const body = JSON.stringify({ id: 'evt_1', amount: 100 });
    for (const preset of ['stripe', 'github', 'shopify', 'slack'] as const) {
      const res = await post(hooks[preset]!, body, signFor(preset, SECRET, body));
      expect(res.status, preset).toBe(202);
      expect(await res.json(), preset).toMatchObject({ status: 'accepted' });
    }
    const res = await post(hooks.generic!, body, generic(body));
    expect(res.status).toBe(202);
  });

  it('refuses a wrong signature, a missing header and another secret with 401, recorded as rejected: signature_invalid', async () => {
    const body = JSON.stringify({ id: 'evt_2' });
    const other = `whsec_${randomBytes(24).toString('base64url')}`;
    const cases: [string, Record<string, string>, RegExp][] = [
      ['stripe', signFor('stripe', other, body), /Stripe-Signature does not match/],
      ['stripe', {}, /Stripe-Signature header is missing/],
      ['stripe', { 'stripe-signature': 'v1=abc' }, /timestamp is missing/],
      ['github', signFor('github', other, body), /X-Hub-Signature-256 does not match/],
      ['github', { 'x-hub-signature-256': 'sha1=abc' }, /does not start with sha256=/],
      ['shopify', signFor('shopify', other, body), /X-Shopify-Hmac-Sha256 does not match/],
      ['shopify', signFor('shopify', SECRET, `${body} `), /does not match/], // a body changed after signing
      ['slack', signFor('slack', other, body), /X-Slack-Signature does not match/],
      ['generic', generic(body, other), /X-Signature does not match/],
      ['generic', { 'x-signature': generic(body)['x-signature'].slice(5) }, /does not start with hmac=/],
    ];
    for (const [preset, headers, reason] of cases) {
      const res = await post(hooks[preset]!, body, headers);
      expect(res.status, `${preset} ${JSON.stringify(headers)}`).toBe(401);
      const answer = (await res.json()) as { delivery_id: string; status: string; reason: string };
      expect(answer.status).toBe('rejected');
      expect(answer.reason).toMatch(/^signature_invalid: /);
      expect(answer.reason).toMatch(reason);
      const row = await delivery(answer.delivery_id);
      expect(row).toMatchObject({ status: 'rejected', code: 'signature_invalid', executionId: null });
    }
    // nothing refused ran
    const ran = await w.core.db.select().from(executions).where(eq(executions.accountId, w.accounts.boring.id));
    expect(ran.every((r) => (r.trigger as { body: { id?: string } }).body?.id !== 'evt_2')).toBe(true);
  });

  it('refuses a stale or future timestamp (a replayed request) for Stripe and Slack', async () => {
    const body = JSON.stringify({ id: 'evt_3' });
    const hourAgo = Date.now() - 3600_000;
    for (const preset of ['stripe', 'slack'] as const) {
      const res = await post(hooks[preset]!, body, signFor(preset, SECRET, body, hourAgo));
      expect(res.status, preset).toBe(401);
      expect(((await res.json()) as { reason: string }).reason).toMatch(/s old, past the (300|60) s tolerance/);
    }
    // Slack's tolerance here is 60 s: two minutes late is refused, Stripe's default 300 s accepts it
    const twoMinutes = Date.now() - 120_000;
    expect((await post(hooks.slack!, body, signFor('slack', SECRET, body, twoMinutes))).status).toBe(401);
    expect((await post(hooks.stripe!, body, signFor('stripe', SECRET, body, twoMinutes))).status).toBe(202);
    expect(checkSignature({ preset: 'stripe', connection: 'x' }, SECRET, Buffer.from(body), signFor('stripe', SECRET, body, Date.now() + 3600_000))).toMatch(/in the future/);
  });

  it('accepts one of several v1 signatures (a secret being rolled) and keeps the secret and signatures out of the record', async () => {
    const body = JSON.stringify({ id: 'evt_4' });
    const t = Math.floor(Date.now() / 1000);
    const good = createHmac('sha256', SECRET).update(`${t}.${body}`).digest('hex');
    const res = await post(hooks.stripe!, body, { 'stripe-signature': `t=${t},v1=${'0'.repeat(64)},v1=${good}` });
    expect(res.status).toBe(202);
    const row = await delivery(((await res.json()) as { delivery_id: string }).delivery_id);
    expect(row.headers['stripe-signature']).toBe('[redacted]');
    const all = JSON.stringify(await w.core.db.select().from(webhookDeliveries));
    expect(all).not.toContain(SECRET);
    expect(all).not.toContain(good);
  });

  it('verifies a binary body on its bytes and keeps it as base64', async () => {
    const bytes = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0xff, 0xfe, 0x00, 0x80]);
    const res = await fetch(hooks.github!, { method: 'POST', body: bytes, headers: { 'content-type': 'application/octet-stream', ...signFor('github', SECRET, bytes) } });
    expect(res.status).toBe(202);
    const row = await delivery(((await res.json()) as { delivery_id: string }).delivery_id);
    expect(row.body).toEqual({ encoding: 'base64', data: bytes.toString('base64'), size: bytes.length });
    expect(row.size).toBe(bytes.length);
    // bytes that are not UTF-8 under a JSON content type are a malformed body, once the signature holds
    const bad = await post(hooks.github!, bytes, signFor('github', SECRET, bytes));
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ status: 'rejected', reason: 'the body is not UTF-8 text, as application/json must be' });
  });

  it('checks the definition: the secret must be a signing secret, generic needs its header, a signing secret is never sent', async () => {
    data(await boring.call('add_connection', { app: 'stripe', name: 'API', credentials: { secret_key: `sk_test_${randomBytes(12).toString('hex')}` } }));
    const r = await boring.call('create_automation', {
      name: 'Bad signature',
      trigger: { signature: { preset: 'generic', connection: 'stripe/API' } },
      steps: [{ id: 'send', kind: 'http', method: 'POST', url: 'https://api.example.com/x', connection: 'webhook/Provider' }],
    });
    expect(r.isError).toBe(true);
    const message = text(r);
    expect(message).toMatch(/the generic preset needs header/);
    expect(message).toMatch(/stripe\/API is not a signing secret/);
    expect(message).toMatch(/webhook\/Provider is a webhook signing secret/);
    const missing = await boring.call('create_automation', { name: 'No secret', trigger: { signature: { preset: 'github', connection: 'webhook/Nope' } }, steps: [{ id: 'a', kind: 'transform', value: 1 }] });
    expect(missing.isError).toBe(true);
    expect(text(missing)).toMatch(/The signature: /);
  });

  it('withholds the body of a request that fails its signature, and tells the sender no names', async () => {
    const body = JSON.stringify({ id: 'evt_5', big: 'x'.repeat(1000) });
    const res = await post(hooks.github!, body, signFor('github', `whsec_${randomBytes(8).toString('hex')}`, body));
    expect(res.status).toBe(401);
    const row = await delivery(((await res.json()) as { delivery_id: string }).delivery_id);
    expect(row.body).toMatchObject({ withheld: 'signature_invalid', size: Buffer.byteLength(body), sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    // a generic preset's header is redacted in the record whatever its name, and a prototype-like name is just a missing header
    data(await boring.call('create_automation', { name: 'Odd header', trigger: { signature: { preset: 'generic', connection: 'webhook/Provider', header: 'constructor' } }, steps: [{ id: 'a', kind: 'transform', value: 1 }] }));
    const odd = data<{ webhook: { url: string } }>(await boring.call('get_automation', { automation: 'Odd header' })).webhook.url;
    const r = await post(odd, '{}', {});
    expect(r.status).toBe(401);
    expect(((await r.json()) as { reason: string }).reason).toMatch(/constructor header is missing/);
    const digest = createHmac('sha256', SECRET).update('{}').digest('hex');
    const ok = await post(odd, '{}', { constructor: digest });
    expect(ok.status).toBe(202);
    const kept = await delivery(((await ok.json()) as { delivery_id: string }).delivery_id);
    expect(kept.headers.constructor).toBe('[redacted]');
  });

  it('says only that the signature cannot be verified when the signing secret is unavailable', async () => {
    data(await boring.call('add_connection', { app: 'webhook', name: 'Gone', credentials: { signing_secret: 'whsec_gone_0123456789' } }));
    data(await boring.call('create_automation', { name: 'Gone secret', trigger: { signature: { preset: 'github', connection: 'webhook/Gone' } }, steps: [{ id: 'a', kind: 'transform', value: 1 }] }));
    const url = data<{ webhook: { url: string } }>(await boring.call('get_automation', { automation: 'Gone secret' })).webhook.url;
    const plan = data<{ confirm_token: string }>(await boring.call('disconnect_connection', { connection: 'webhook/Gone' }));
    data(await boring.call('disconnect_connection', { connection: 'webhook/Gone', confirm: plan.confirm_token }));
    data(await boring.call('set_automation_enabled', { automation: 'Gone secret', enabled: true }));
    await new Promise((r) => setTimeout(r, 1100)); // the secret cache holds a second
    const res = await post(url, '{}', signFor('github', 'whsec_gone_0123456789', '{}'));
    const answer = (await res.json()) as { status: string; reason?: string; delivery_id: string };
    // paused by the disconnect, or refused: either way not run, and the answer names nothing
    expect(JSON.stringify(answer)).not.toMatch(/webhook\/Gone|reconnect_connection/);
    const row = await delivery(answer.delivery_id);
    expect(row.executionId).toBeNull();
  });
});
