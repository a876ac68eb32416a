import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { count, eq, sql } from 'drizzle-orm';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { openDatabase, type Database } from '../src/db/client.js';
import { accounts, connections } from '../src/db/schema/index.js';
import { initialize } from '../src/core/tenants.js';
import { createAccount } from '../src/core/accounts.js';
import { startHttp } from '../src/http/server.js';
import { Keyring, newMasterKey, type ActiveKey } from '../src/core/keyring.js';
import { BUILTIN_APPS, maskCredentials, type App } from '../src/core/apps.js';
import { connectionAad, openCredentials } from '../src/core/connections.js';
import { rotateDataKey } from '../src/core/rotation.js';
import { sodium } from '../src/core/crypto.js';
import type { Core } from '../src/core/core.js';
import type { LatencyRow } from './http-latency.js';
import { median, note, percentile, timeEach } from './stats.js';

/**
 * Benchmarks of the app-connections feature (issue: "list_connections p99 with 1,000 connections
 * in an account and a search term (target under 20 ms on PostgreSQL); encrypt+decrypt per
 * credential; re-encryption throughput of rotate-key (target: 10,000 connections in under 10 s)").
 *
 * Connections are seeded straight into the table with batched multi-row inserts, each row with a
 * real sealed credential (Keyring.sealWith under the tenant's active key, bound to its own row by
 * connectionAad), its data_key_id and its masked view: what addConnection stores, without one
 * transaction per row.
 */

export const LIST_CONNECTIONS = 1000;
export const LIST_P99_TARGET_MS = 20;
export const ROTATE_CONNECTIONS = 10_000;
export const ROTATE_ACCOUNTS = 100;
export const ROTATE_TARGET_S = 10;

const BATCH = 500;
const PURPOSES = ['Billing', 'Marketing', 'Bookings', 'Support', 'Payroll', 'Reporting', 'Onboarding', 'Sync'];
const REGIONS = ['EU', 'US', 'APAC', 'North', 'South', 'East', 'West'];

// ---------------------------------------------------------------------------------------- seeding

export interface ConnectionSpec {
  accountId: string;
  app: App;
  name: string;
  shared?: boolean;
}

const base62 = (n: number): string => randomBytes(n * 2).toString('base64').replace(/[^A-Za-z0-9]/g, '').slice(0, n).padEnd(n, 'x');

/** Credentials of the shape the app takes (its first auth kind), with realistic lengths. */
function credentialsFor(app: App): { authKind: App['auth'][number]['kind']; values: Record<string, string> } {
  const auth = app.auth[0]!;
  const values: Record<string, string> = {};
  for (const f of auth.fields) {
    if (f.name === 'base_url') values[f.name] = 'https://api.example.test/v1';
    else if (f.name === 'header_name') values[f.name] = 'X-Api-Key';
    else if (f.name === 'site_id') values[f.name] = String(10_000 + Math.floor(Math.random() * 90_000));
    else if (f.name === 'username') values[f.name] = 'switchboard';
    else if (f.name === 'secret_key') values[f.name] = `sk_live_${base62(99)}`;
    else if (f.name === 'bot_token') values[f.name] = `xoxb-${base62(50)}`;
    else if (f.name === 'access_token') values[f.name] = `pat-na1-${base62(36)}`;
    else values[f.name] = base62(f.secret ? 40 : 12);
  }
  return { authKind: auth.kind, values };
}

export interface ConnectionSeed {
  rows: number;
  inserts: number;
  ms: number;
}

/** Insert sealed connections with multi-row inserts of BATCH rows. */
export async function insertConnections(core: Core, key: ActiveKey, createdBy: string, specs: readonly ConnectionSpec[]): Promise<ConnectionSeed> {
  const t0 = performance.now();
  let inserts = 0;
  for (let i = 0; i < specs.length; i += BATCH) {
    const rows: (typeof connections.$inferInsert)[] = [];
    for (const s of specs.slice(i, i + BATCH)) {
      const id = randomUUID();
      const { authKind, values } = credentialsFor(s.app);
      const credentials = await core.keys.sealWith(key, connectionAad(core.tenantId, s.accountId, id), JSON.stringify({ auth_kind: authKind, values }));
      rows.push({
        id,
        tenantId: core.tenantId,
        accountId: s.accountId,
        app: s.app.slug,
        name: s.name,
        authKind,
        credentials,
        dataKeyId: key.id,
        masked: maskCredentials(s.app, authKind, values),
        shared: s.shared ?? false,
        createdBy,
      });
    }
    await core.db.insert(connections).values(rows);
    inserts++;
  }
  return { rows: specs.length, inserts, ms: performance.now() - t0 };
}

/** `n` connections of one account, spread over the built-in apps; each app's first is "Default". */
export function accountConnections(accountId: string, n: number, opts: { franchiseEvery?: number } = {}): ConnectionSpec[] {
  const specs: ConnectionSpec[] = [];
  for (let i = 0; i < n; i++) {
    const app = BUILTIN_APPS[i % BUILTIN_APPS.length]!;
    const name =
      i < BUILTIN_APPS.length
        ? 'Default'
        : opts.franchiseEvery && i % opts.franchiseEvery === 7
          ? `Franchise ${PURPOSES[i % PURPOSES.length]} ${i}`
          : `${PURPOSES[i % PURPOSES.length]} ${REGIONS[(i * 3) % REGIONS.length]} ${i}`;
    specs.push({ accountId, app, name });
  }
  return specs;
}

const appBySlug = (slug: string): App => BUILTIN_APPS.find((a) => a.slug === slug)!;

async function openCore(url: string | undefined): Promise<{ database: Database; core: Core; token: string; adminId: string; systemAccountId: string }> {
  const database = await openDatabase(url ? { url } : {});
  try {
    await database.migrate();
    const init = await initialize(database.db, { adminEmail: 'bench@switchboard.test', switchMinutes: 30 });
    const core: Core = { db: database.db, tenantId: init.tenant.id, switchMinutes: 30, keys: new Keyring(newMasterKey()), secretArgs: true };
    return { database, core, token: init.token, adminId: init.admin.id, systemAccountId: init.systemAccount.id };
  } catch (err) {
    await database.close().catch(() => {});
    throw err;
  }
}

// ------------------------------------------------------------------ 1. list_connections over HTTP

export interface ListCase {
  label: string;
  args: Record<string, unknown>;
  /** what the first page must hold, checked once before timing */
  expect: { own: number; parent: number; system: number; more: boolean };
  /** matching visible connections in all (own + shared) */
  matches: number;
}

export interface ListResult {
  seed: ConnectionSeed & { total: number; own: number; parentShared: number; systemShared: number };
  cases: ListCase[];
  rows: LatencyRow[];
}

/**
 * list_connections through a real MCP client over Streamable HTTP on loopback (server in this
 * process). The measured account is a linked child holding LIST_CONNECTIONS connections; its
 * parent shares a few, the system setup account shares a few, and `siblings` sibling children
 * hold as many connections each, so the query has to find the account's rows among others.
 * The caller is the init admin (Switch Account), naming the account with the `account` argument.
 */
export async function listConnectionsLatency(opts: { url?: string | undefined; calls: number; warmup: number; siblings: number }): Promise<ListResult> {
  const { database, core, token, adminId, systemAccountId } = await openCore(opts.url);
  const cleanups: (() => Promise<unknown>)[] = [() => database.close()];
  try {
    const parent = await createAccount(core, { name: 'Bench Franchise Group', slug: 'bench-franchise-group' });
    const child = await createAccount(core, { name: 'Bench Studio Measured', slug: 'bench-studio-measured', parent, routingKey: 'studio-000' });
    const siblings = [];
    for (let i = 1; i <= opts.siblings; i++) {
      siblings.push(await createAccount(core, { name: `Bench Studio ${i}`, slug: `bench-studio-${i}`, parent, routingKey: `studio-${String(i).padStart(3, '0')}` }));
    }

    const own = accountConnections(child.id, LIST_CONNECTIONS, { franchiseEvery: 50 });
    const parentSpecs: ConnectionSpec[] = [
      { accountId: parent.id, app: appBySlug('stripe'), name: 'Default', shared: true },
      { accountId: parent.id, app: appBySlug('mailchimp'), name: 'Franchise Newsletter', shared: true },
      { accountId: parent.id, app: appBySlug('hubspot'), name: 'Franchise CRM', shared: true },
      { accountId: parent.id, app: appBySlug('slack'), name: 'Default', shared: true },
      { accountId: parent.id, app: appBySlug('http'), name: 'Franchise Internal API' }, // not shared: invisible to the child
      { accountId: parent.id, app: appBySlug('stripe'), name: 'Franchise Payouts' }, // not shared
    ];
    const systemSpecs: ConnectionSpec[] = [
      { accountId: systemAccountId, app: appBySlug('slack'), name: 'Franchise Alerts', shared: true },
      { accountId: systemAccountId, app: appBySlug('http'), name: 'Status Page', shared: true },
      { accountId: systemAccountId, app: appBySlug('stripe'), name: 'Platform Billing' }, // not shared
    ];
    const others = siblings.flatMap((s) => accountConnections(s.id, LIST_CONNECTIONS, { franchiseEvery: 50 }));

    note(`seeding ${own.length + parentSpecs.length + systemSpecs.length + others.length} connections (${database.kind})`);
    const key = await core.keys.activeKey(core);
    const seed = await insertConnections(core, key, adminId, [...own, ...parentSpecs, ...systemSpecs, ...others]);
    await database.db.execute(sql`analyze`);
    const [counted] = await database.db.select({ n: count() }).from(connections);

    // expected first pages, from the seed: own rows first, then the parent's shared, then the system's
    const visibleShared = (specs: ConnectionSpec[]) => specs.filter((s) => s.shared);
    const matching = (q: string | undefined) => (s: ConnectionSpec) =>
      !q || s.app.slug.includes(q) || s.app.name.toLowerCase().includes(q) || s.name.toLowerCase().includes(q);
    const listCase = (label: string, q: string | undefined): ListCase => {
      const o = own.filter(matching(q)).length;
      const p = visibleShared(parentSpecs).filter(matching(q)).length;
      const y = visibleShared(systemSpecs).filter(matching(q)).length;
      const eo = Math.min(50, o);
      const ep = Math.min(50 - eo, p);
      const ey = Math.min(50 - eo - ep, y);
      return { label, args: { account: child.slug, ...(q ? { query: q } : {}), limit: 50 }, expect: { own: eo, parent: ep, system: ey, more: o + p + y > 50 }, matches: o + p + y };
    };
    const cases = [
      listCase('list_connections {limit: 50}', undefined),
      listCase("list_connections {query: 'stri'} (app name)", 'stri'),
      listCase("list_connections {query: 'franchise'} (name part)", 'franchise'),
    ];

    const http = await startHttp({ core, database, port: 0, host: '127.0.0.1' });
    cleanups.unshift(() => http.close());
    const client = new Client({ name: 'switchboard-bench', version: '1.0.0' });
    // list_connections is in the connections toolset, which a session turns on (not a default one)
    const transport = new StreamableHTTPClientTransport(new URL(http.url), { requestInit: { headers: { Authorization: `Bearer ${token}`, 'X-Switchboard-Toolsets': 'default,connections' } } });
    await client.connect(transport);
    cleanups.unshift(() => client.close());

    const call = async (args: Record<string, unknown>): Promise<CallToolResult> => {
      const r = (await client.callTool({ name: 'list_connections', arguments: args })) as CallToolResult;
      if (r.isError) throw new Error(`list_connections failed: ${r.content.map((c) => (c.type === 'text' ? c.text : '')).join('')}`);
      return r;
    };
    // make sure the timed calls do the real work (all groups where the seed says so), not an error path
    for (const c of cases) {
      const d = (await call(c.args)).structuredContent as { own: unknown[]; shared_from_parent: unknown[]; shared_from_system: unknown[]; next_cursor: string | null };
      const got = { own: d.own.length, parent: d.shared_from_parent.length, system: d.shared_from_system.length, more: d.next_cursor !== null };
      if (JSON.stringify(got) !== JSON.stringify(c.expect)) {
        throw new Error(`${c.label} returned ${JSON.stringify(got)}, expected ${JSON.stringify(c.expect)}`);
      }
    }

    const timed: { label: string; fn: () => Promise<unknown>; target?: number; reference?: boolean }[] = [
      ...cases.map((c) => ({ label: c.label, fn: () => call(c.args), target: LIST_P99_TARGET_MS })),
      { label: 'ref: MCP ping over HTTP (auth, no tool)', fn: () => client.ping(), reference: true },
    ];
    note(`warming up and timing ${opts.calls} calls per case (${database.kind})`);
    for (const t of timed) await timeEach(opts.warmup, t.fn);
    const rows: LatencyRow[] = [];
    for (const t of timed) {
      const samples = await timeEach(opts.calls, t.fn);
      rows.push({
        label: t.label,
        p50: percentile(samples, 50),
        p99: percentile(samples, 99),
        n: samples.length,
        ...(t.target !== undefined ? { target: t.target } : {}),
        ...(t.reference ? { reference: true } : {}),
      });
    }
    return {
      seed: { ...seed, total: counted?.n ?? 0, own: own.length, parentShared: visibleShared(parentSpecs).length, systemShared: visibleShared(systemSpecs).length },
      cases,
      rows,
    };
  } finally {
    for (const c of cleanups) await c().catch((err) => note(`cleanup failed: ${(err as Error).message}`));
  }
}

// ------------------------------------------------------------ 2. encrypt + decrypt per credential

export interface PerOpRow {
  label: string;
  /** µs per operation: median and p99 over the batches */
  p50: number;
  p99: number;
  reference?: boolean;
}

export interface CryptoResult {
  payloadBytes: number;
  sealedBytes: number;
  batches: number;
  perBatch: number;
  rows: PerOpRow[];
}

/**
 * Keyring.sealWith + Keyring.open of one typical credential (a Stripe secret key), as the
 * keyring does them for a connection: libsodium XChaCha20-Poly1305 with the row's additional
 * data, the data key already unwrapped (cached, as it is after a process's first use).
 * Timed in batches of `perBatch` sequential operations; figures are µs per operation.
 * References from the same run: SHA-256 of the same payload, JSON.stringify + JSON.parse of it.
 */
export async function cryptoCost(opts: { batches: number; perBatch: number }): Promise<CryptoResult> {
  const { database, core } = await openCore(undefined);
  try {
    const key = await core.keys.activeKey(core);
    const credential = { auth_kind: 'bearer', values: { secret_key: `sk_live_${base62(99)}` } };
    const payload = JSON.stringify(credential);
    const aad = connectionAad(core.tenantId, randomUUID(), randomUUID());
    const sealed = await core.keys.sealWith(key, aad, payload);
    if ((await core.keys.open(core, sealed, aad)) !== payload) throw new Error('open did not return the sealed payload');

    const s = await sodium();
    let sink = 0; // keeps the reference work from being optimized away
    const cases: { label: string; op: () => Promise<unknown> | unknown; reference?: boolean }[] = [
      {
        label: 'sealWith + open, one credential',
        op: async () => {
          const s = await core.keys.sealWith(key, aad, payload);
          sink += (await core.keys.open(core, s, aad)).length;
        },
      },
      { label: 'extra: sealWith alone', op: async () => (sink += (await core.keys.sealWith(key, aad, payload)).length) },
      { label: 'extra: open alone', op: async () => (sink += (await core.keys.open(core, sealed, aad)).length) },
      // sealWith draws its 24-byte nonce from libsodium; node:crypto's generator beside it
      { label: 'extra: its nonce alone, sodium.randombytes_buf(24)', op: () => (sink += s.randombytes_buf(24).length) },
      { label: 'extra: a nonce from node:crypto randomBytes(24)', op: () => (sink += randomBytes(24).length) },
      { label: 'ref: SHA-256 of the payload (node:crypto)', op: () => (sink += createHash('sha256').update(payload).digest('hex').length), reference: true },
      { label: 'ref: JSON.stringify + JSON.parse of the payload', op: () => (sink += (JSON.parse(JSON.stringify(credential)) as { values: object }).values ? 1 : 0), reference: true },
    ];
    const batch = async (op: () => Promise<unknown> | unknown): Promise<number> => {
      const t0 = performance.now();
      for (let i = 0; i < opts.perBatch; i++) await op();
      return ((performance.now() - t0) * 1000) / opts.perBatch;
    };
    note(`timing encrypt+decrypt, ${opts.batches} batches of ${opts.perBatch} per case`);
    const rows: PerOpRow[] = [];
    for (const c of cases) {
      for (let i = 0; i < Math.min(10, opts.batches); i++) await batch(c.op); // warm-up
      const samples: number[] = [];
      for (let i = 0; i < opts.batches; i++) samples.push(await batch(c.op));
      rows.push({ label: c.label, p50: median(samples), p99: percentile(samples, 99), ...(c.reference ? { reference: true } : {}) });
    }
    if (sink === 0) note('(sink)');
    return { payloadBytes: Buffer.byteLength(payload), sealedBytes: Buffer.byteLength(sealed), batches: opts.batches, perBatch: opts.perBatch, rows };
  } finally {
    await database.close().catch((err) => note(`cleanup failed: ${(err as Error).message}`));
  }
}

// ---------------------------------------------------------------------- 3. rotate-key throughput

export interface RotationRun {
  ms: number;
  rotated: number;
  skipped: number;
  retiredKeys: number;
}

export interface RotationResult {
  seed: ConnectionSeed;
  accounts: number;
  runs: RotationRun[];
}

/**
 * rotateDataKey(core) on `total` connections spread over `accountCount` accounts, all sealed with
 * the active key: a new key, every row re-encrypted in batches (compare-and-swap UPDATE), the old
 * key retired. Repeated `runs` times on the same rows (each run rotates to a fresh key); checked
 * afterwards: every row on the newest key, a sample opens.
 */
export async function rotationThroughput(opts: { url?: string | undefined; total: number; accounts: number; runs: number }): Promise<RotationResult> {
  const { database, core, adminId } = await openCore(opts.url);
  try {
    const accountRows = await core.db
      .insert(accounts)
      .values(Array.from({ length: opts.accounts }, (_, i) => ({ tenantId: core.tenantId, name: `Rotation Customer ${i}`, slug: `rotation-customer-${i}`, kind: 'customer' as const })))
      .returning({ id: accounts.id });
    const perAccount = Math.ceil(opts.total / accountRows.length);
    const specs = accountRows.flatMap((a) => accountConnections(a.id, perAccount)).slice(0, opts.total);
    note(`seeding ${specs.length} connections over ${accountRows.length} accounts (${database.kind})`);
    const seed = await insertConnections(core, await core.keys.activeKey(core), adminId, specs);
    await database.db.execute(sql`analyze`);

    const runs: RotationRun[] = [];
    for (let i = 0; i < opts.runs; i++) {
      note(`rotate-key ${i + 1}/${opts.runs} (${database.kind})`);
      const t0 = performance.now();
      const p = await rotateDataKey(core);
      const ms = performance.now() - t0;
      if (p.rotated + p.skipped !== specs.length) throw new Error(`rotateDataKey moved ${p.rotated} rows (+${p.skipped} skipped) of ${specs.length}`);
      runs.push({ ms, rotated: p.rotated, skipped: p.skipped, retiredKeys: p.retiredKeys });
    }
    const active = await core.keys.activeKey(core);
    const [left] = await core.db.select({ n: count() }).from(connections).where(sql`${connections.dataKeyId} <> ${active.id}`);
    if ((left?.n ?? 0) !== 0) throw new Error(`${left!.n} connections are not on the active key after rotation`);
    const sample = await core.db.select().from(connections).where(eq(connections.tenantId, core.tenantId)).limit(20);
    for (const row of sample) await openCredentials(core, row);
    return { seed, accounts: accountRows.length, runs };
  } finally {
    await database.close().catch((err) => note(`cleanup failed: ${(err as Error).message}`));
  }
}

/**
 * The reference for rotation throughput: the raw single-row insert rate of this PostgreSQL
 * (pgbench, `clients` clients for `seconds` s), from ../shared/bench/pg-insert-rate.sh.
 */
export async function pgInsertRate(script: string, url: string, clients = 8, seconds = 5): Promise<{ ok: true; tps: number; text: string } | { ok: false; reason: string }> {
  if (!existsSync(script)) return { ok: false, reason: `${script} not found` };
  return new Promise((resolveRate) => {
    execFile('bash', [script, String(clients), String(seconds), url], { timeout: (seconds + 60) * 1000 }, (err, stdout, stderr) => {
      const m = /raw single-row insert rate: ([0-9.]+) tx\/s.*/.exec(stdout);
      if (m && Number(m[1]) > 0) resolveRate({ ok: true, tps: Number(m[1]), text: m[0].trim() });
      else resolveRate({ ok: false, reason: (stderr.trim().split('\n')[0] || err?.message || `no rate in: ${stdout.trim()}`).slice(0, 200) });
    });
  });
}
