import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { and, eq, ne, sql } from 'drizzle-orm';
import { buildWorld, connect, data, text, testKeyring, type Session, type World } from './helpers/world.js';
import { addConnection, openCredentials, type ConnectionRow } from '../src/core/connections.js';
import { reconnect } from '../src/core/connection-lifecycle.js';
import { rotateDataKey } from '../src/core/rotation.js';
import { DecryptError, Keyring, masterFingerprint } from '../src/core/keyring.js';
import { connections, dataKeys } from '../src/db/schema/index.js';
import { createUser } from '../src/core/users.js';

/**
 * Envelope encryption: credentials are bound to their row, data keys to the master key, and
 * rotation re-encrypts everything without losing a concurrent write.
 */
let w: World;
let boring: Session;
const PASSWORD = 'a long enough password';

beforeAll(async () => {
  w = await buildWorld();
  const u = await createUser(w.core, { email: 'keys@boring.test', name: 'Keys', account: w.accounts.boring, role: 'admin', password: PASSWORD });
  boring = await connect(w.core, u.token);
});
afterAll(async () => {
  await boring.close();
  await w.close();
});

const secretFor = (i: number, gen = 0) => `sk_test_${String(i).padStart(4, '0')}_gen${gen}_${'x'.repeat(12)}`;
const rowById = async (id: string): Promise<ConnectionRow> => (await w.database.db.select().from(connections).where(eq(connections.id, id)))[0]!;

describe('sealed credentials', () => {
  it('open only on the row they were written for: a ciphertext copied onto another connection fails', async () => {
    const a = await addConnection(w.core, w.accounts.boring, { app: 'stripe', name: 'A', credentials: { secret_key: secretFor(1) }, createdBy: w.userIds.admin });
    const b = await addConnection(w.core, w.accounts.boring, { app: 'stripe', name: 'B', credentials: { secret_key: secretFor(2) }, createdBy: w.userIds.admin });
    expect((await openCredentials(w.core, a.row)).values.secret_key).toBe(secretFor(1));
    // same account, other row: the additional data (tenant, account, connection) differs
    await w.database.db.update(connections).set({ credentials: a.row.credentials }).where(eq(connections.id, b.row.id));
    await expect(openCredentials(w.core, await rowById(b.row.id))).rejects.toBeInstanceOf(DecryptError);
    // through the tool: a clear error, and nothing of either secret
    const r = await boring.call('view_connection_info', { connection: 'stripe/B', password: PASSWORD });
    expect(r.isError).toBe(true);
    expect(text(r)).toBe(`The stored credentials of the stripe connection ${b.row.id} could not be decrypted (they were not written for this connection, or are damaged): give it new ones with reconnect_connection.`);
    expect(JSON.stringify(r)).not.toContain('sk_test_');
    // moved to another account with the same connection id it fails too
    await expect(openCredentials(w.core, { ...a.row, accountId: w.accounts.acme.id })).rejects.toBeInstanceOf(DecryptError);
    await w.database.db.delete(connections).where(eq(connections.id, b.row.id));
  });

  it('a damaged ciphertext fails, and a value that is not sealed at all fails the same way', async () => {
    const row = (await w.database.db.select().from(connections).where(eq(connections.name, 'A')))[0]!;
    const parts = row.credentials.split('.');
    const body = Buffer.from(parts[2]!, 'base64url');
    body[body.length - 1]! ^= 1;
    await expect(openCredentials(w.core, { ...row, credentials: `${parts[0]}.${parts[1]}.${body.toString('base64url')}` })).rejects.toBeInstanceOf(DecryptError);
    await expect(openCredentials(w.core, { ...row, credentials: 'plain text' })).rejects.toBeInstanceOf(DecryptError);
  });

  it('data keys are wrapped by the master key: another master key cannot unwrap them', async () => {
    const row = (await w.database.db.select().from(connections).where(eq(connections.name, 'A')))[0]!;
    const other = testKeyring();
    await expect(openCredentials({ ...w.core, keys: other }, row)).rejects.toThrow(/could not be unwrapped with the configured master key/);
    const keys = await w.database.db.select().from(dataKeys);
    expect(keys.every((k) => k.masterFingerprint === w.core.keys.fingerprint)).toBe(true);
    expect(w.core.keys.fingerprint).not.toBe(other.fingerprint);
    expect(masterFingerprint(Buffer.alloc(32, 1))).toMatch(/^[0-9a-f]{32}$/);
  });
});

describe('rotation', () => {
  const N = 60;
  const ids: string[] = [];
  const latest = new Map<string, string>();

  beforeAll(async () => {
    for (let i = 0; i < N; i++) {
      const account = [w.accounts.boring, w.accounts.acme, w.accounts.studio1][i % 3]!;
      const { row } = await addConnection(w.core, account, { app: 'stripe', name: `R${i}`, credentials: { secret_key: secretFor(i) }, createdBy: w.userIds.admin });
      ids.push(row.id);
      latest.set(row.id, secretFor(i));
    }
  });

  const activeKeyId = async () => (await w.database.db.select().from(dataKeys).where(eq(dataKeys.status, 'active')))[0]!.id;
  async function expectAllReadable(onKey: string) {
    const rows = await w.database.db.select().from(connections).where(sql`${connections.id} in ${ids}`);
    expect(rows).toHaveLength(N);
    for (const r of rows) {
      expect(r.dataKeyId).toBe(onKey);
      expect((await openCredentials(w.core, r)).values.secret_key).toBe(latest.get(r.id));
    }
  }

  it('re-encrypts every connection with a new key in batches, then retires the old key', async () => {
    const before = await activeKeyId();
    const progress: number[] = [];
    const p = await rotateDataKey(w.core, { batchSize: 7, onProgress: (q) => progress.push(q.rotated) });
    expect(p.keyId).not.toBe(before);
    expect(p.resumed).toBe(false);
    expect(p.rotated).toBe(p.total);
    expect(p.total).toBeGreaterThanOrEqual(N);
    expect(progress.length).toBeGreaterThan(N / 7); // reported batch by batch
    expect(p.retiredKeys).toBe(1);
    await expectAllReadable(p.keyId);
    const old = (await w.database.db.select().from(dataKeys).where(eq(dataKeys.id, before)))[0]!;
    expect(old.status).toBe('retired');
  });

  it('resumes a rotation that stopped half way instead of making another key', async () => {
    const first = await rotateDataKey(w.core, { batchSize: 10, maxBatches: 2 });
    expect(first.rotated).toBe(20);
    const left = await w.database.db.select({ id: connections.id }).from(connections).where(ne(connections.dataKeyId, first.keyId));
    expect(left.length).toBe(first.total - 20);
    const resumed = await rotateDataKey(w.core, { batchSize: 10 });
    expect(resumed).toMatchObject({ keyId: first.keyId, resumed: true, total: first.total - 20, rotated: first.total - 20 });
    await expectAllReadable(first.keyId);
  });

  it('keeps a write made between reading a batch and writing it back (compare-and-swap)', async () => {
    const victim = ids[5]!;
    let struck = false;
    const p = await rotateDataKey(w.core, {
      batchSize: 25,
      afterRead: async (batch) => {
        if (struck || !batch.includes(victim)) return;
        struck = true;
        await reconnect(w.core, await rowById(victim), { secret_key: secretFor(5, 1) });
        latest.set(victim, secretFor(5, 1));
      },
    });
    expect(struck).toBe(true);
    expect(p.skipped).toBe(1);
    expect(p.rotated).toBe(p.total - 1);
    await expectAllReadable(p.keyId); // the reconnect's value survived, sealed with the new key
  });

  it('loses and corrupts nothing under concurrent reconnects', async () => {
    const writes = ids.slice(0, 30).map(async (id, i) => {
      await new Promise((r) => setTimeout(r, i % 5));
      await reconnect(w.core, await rowById(id), { secret_key: secretFor(i, 2) });
      latest.set(id, secretFor(i, 2));
    });
    const [p] = await Promise.all([rotateDataKey(w.core, { batchSize: 4 }), ...writes]);
    const active = await activeKeyId();
    expect(p.keyId).toBe(active);
    await expectAllReadable(active);
  });

  it('through the tool: admin permission only, and the result is counts, never values', async () => {
    const viewer = await connect(w.core, w.tokens.boringAdmin);
    expect(text(await viewer.call('rotate_encryption_key'))).toMatch(/^Access denied: rotate_encryption_key needs the admin permission/);
    await viewer.close();
    const admin = await connect(w.core, w.tokens.admin);
    // with a progress token, the rotation reports its batches
    const seen: { progress: number; total?: number; message?: string }[] = [];
    const res = await admin.client.callTool({ name: 'rotate_encryption_key', arguments: {} }, undefined, { onprogress: (p) => seen.push(p) });
    const r = data<{ rotated: number; total: number; resumed: boolean }>(res as never);
    expect(r.rotated).toBe(r.total);
    expect(r.total).toBeGreaterThan(0);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.at(-1)).toMatchObject({ progress: r.total, total: r.total, message: `${r.total} of ${r.total} connections re-encrypted` });
    expect(JSON.stringify(r)).not.toContain('sk_test_');
    await admin.close();
    const keys = await w.database.db.select().from(dataKeys).where(and(eq(dataKeys.status, 'active')));
    expect(keys).toHaveLength(1);
    await expectAllReadable(keys[0]!.id);
  });
});

it('two keyrings on one database (two processes) create one first data key between them', async () => {
  const fresh = await buildWorld();
  const k = new Keyring(Buffer.alloc(32, 7));
  const [a, b] = await Promise.all([k.activeKey(fresh.core), new Keyring(Buffer.alloc(32, 7)).activeKey(fresh.core)]);
  expect(a.id).toBe(b.id);
  expect(await fresh.database.db.select().from(dataKeys)).toHaveLength(1);
  await fresh.close();
});

it('a row that does not decrypt is counted and left, and the rest still rotates', async () => {
  const fresh = await buildWorld();
  const made = [];
  for (let i = 0; i < 5; i++) {
    made.push((await addConnection(fresh.core, fresh.accounts.boring, { app: 'stripe', name: `D${i}`, credentials: { secret_key: secretFor(i) }, createdBy: null })).row);
  }
  // row 2 gets row 1's ciphertext: it no longer opens
  await fresh.database.db.update(connections).set({ credentials: made[1]!.credentials }).where(eq(connections.id, made[2]!.id));
  const p = await rotateDataKey(fresh.core, { batchSize: 2 });
  expect(p).toMatchObject({ total: 5, rotated: 4, unreadable: 1, retiredKeys: 0 }); // the old key stays: a row still needs it
  const rows = await fresh.database.db.select().from(connections);
  expect(rows.filter((r) => r.dataKeyId === p.keyId)).toHaveLength(4);
  // reconnecting the damaged one repairs it; the next rotation then finishes and retires the old key
  await reconnect(fresh.core, rows.find((r) => r.id === made[2]!.id)!, { secret_key: secretFor(2, 9) });
  const again = await rotateDataKey(fresh.core);
  expect(again.unreadable).toBe(0);
  expect(again.retiredKeys).toBeGreaterThanOrEqual(1);
  await fresh.close();
});
