import { count, sql } from 'drizzle-orm';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { openDatabase } from '../src/db/client.js';
import { accounts } from '../src/db/schema/index.js';
import { initialize } from '../src/core/tenants.js';
import { createAccount } from '../src/core/accounts.js';
import { createUser } from '../src/core/users.js';
import { startHttp } from '../src/http/server.js';
import { Keyring, newMasterKey } from '../src/core/keyring.js';
import type { Core } from '../src/core/core.js';
import { seedAccounts, type SeedResult } from './seed.js';
import { note, percentile, timeEach } from './stats.js';

export interface LatencyRow {
  label: string;
  p50: number;
  p99: number;
  n: number;
  /** p99 target in ms, when the issue sets one */
  target?: number;
  reference?: boolean;
}

export interface HttpResult {
  seed: SeedResult;
  accountsTotal: number;
  rows: LatencyRow[];
  /** list_accounts straight after the bulk load, before ANALYZE (fewer calls) */
  beforeAnalyze: LatencyRow[];
  /** a denied get_account by a customer admin: an existing account vs a missing one, interleaved */
  denials: (LatencyRow & { p10: number })[];
}

export const LIST_P99_TARGET_MS = 20;

/**
 * Tool-call latency over Streamable HTTP on loopback: the HTTP server runs in this process on a
 * database with `accounts` customer accounts; a real MCP client calls tools sequentially, one
 * at a time. References from the same run: `select 1` through the same database handle, and a
 * GET /healthz to the same server (no database, no MCP).
 */
export async function httpLatency(opts: { url?: string | undefined; accounts: number; calls: number; warmup: number }): Promise<HttpResult> {
  const database = await openDatabase(opts.url ? { url: opts.url } : {});
  const cleanups: (() => Promise<unknown>)[] = [() => database.close()];
  try {
    await database.migrate();
    const init = await initialize(database.db, { adminEmail: 'bench@switchboard.test', switchMinutes: 30 });
    const core: Core = { db: database.db, tenantId: init.tenant.id, switchMinutes: 30, keys: new Keyring(newMasterKey()), secretArgs: true };

    note(`seeding ${opts.accounts} accounts (${database.kind})`);
    const seed = await seedAccounts(database.db, core.tenantId, opts.accounts);
    const [counted] = await database.db.select({ n: count() }).from(accounts);
    const accountsTotal = counted?.n ?? 0;

    const http = await startHttp({ core, database, port: 0, host: '127.0.0.1' });
    cleanups.unshift(() => http.close());
    const client = new Client({ name: 'switchboard-bench', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(http.url), {
      requestInit: { headers: { Authorization: `Bearer ${init.token}` } },
    });
    await client.connect(transport);
    cleanups.unshift(() => client.close());

    const call = async (name: string, args: Record<string, unknown>): Promise<CallToolResult> => {
      const r = (await client.callTool({ name, arguments: args })) as CallToolResult;
      if (r.isError) throw new Error(`${name} failed: ${r.content.map((c) => (c.type === 'text' ? c.text : '')).join('')}`);
      return r;
    };
    // make sure the timed calls do the real work, not an error path
    const page = (await call('list_accounts', { limit: 50 })).structuredContent as { accounts: unknown[] };
    const found = (await call('list_accounts', { query: 'acme', limit: 50 })).structuredContent as { accounts: unknown[] };
    if (page.accounts.length !== 50 || found.accounts.length !== 50) {
      throw new Error(`list_accounts returned ${page.accounts.length} and ${found.accounts.length} accounts, expected 50 each`);
    }

    // Straight after the bulk load the table has no planner statistics. PostgreSQL's autovacuum
    // gathers them within a minute or so; PGlite (single-user, no autovacuum) never does unless
    // something runs ANALYZE. Measure a shorter series in that state, then ANALYZE.
    const fewer = Math.max(20, Math.round(opts.calls / 5));
    const beforeAnalyze: LatencyRow[] = [];
    note(`timing list_accounts before ANALYZE, ${fewer} calls per case (${database.kind})`);
    for (const [label, args] of [
      ['list_accounts {limit: 50}, before ANALYZE', { limit: 50 }],
      ["list_accounts {query: 'acme'}, before ANALYZE", { query: 'acme', limit: 50 }],
    ] as const) {
      await timeEach(Math.min(opts.warmup, 20), () => call('list_accounts', args));
      const samples = await timeEach(fewer, () => call('list_accounts', args));
      beforeAnalyze.push({ label, p50: percentile(samples, 50), p99: percentile(samples, 99), n: samples.length, target: LIST_P99_TARGET_MS });
    }
    await database.db.execute(sql`analyze`);

    const healthz = new URL('/healthz', http.url).toString();
    const cases: { label: string; fn: () => Promise<unknown>; target?: number; reference?: boolean }[] = [
      { label: 'whoami {}', fn: () => call('whoami', {}) },
      { label: 'list_accounts {limit: 50}', fn: () => call('list_accounts', { limit: 50 }), target: LIST_P99_TARGET_MS },
      { label: "list_accounts {query: 'acme', limit: 50}", fn: () => call('list_accounts', { query: 'acme', limit: 50 }), target: LIST_P99_TARGET_MS },
      { label: 'ref: database.ping() (select 1)', fn: () => database.ping(), reference: true },
      { label: 'ref: MCP ping over HTTP (auth, no tool)', fn: () => client.ping(), reference: true },
      {
        label: 'ref: GET /healthz (fetch)',
        fn: async () => {
          const r = await fetch(healthz);
          await r.arrayBuffer();
          if (!r.ok) throw new Error(`/healthz answered ${r.status}`);
        },
        reference: true,
      },
    ];
    note(`warming up and timing ${opts.calls} calls per case (${database.kind})`);
    for (const c of cases) await timeEach(opts.warmup, c.fn);
    const rows: LatencyRow[] = [];
    for (const c of cases) {
      const samples = await timeEach(opts.calls, c.fn);
      rows.push({
        label: c.label,
        p50: percentile(samples, 50),
        p99: percentile(samples, 99),
        n: samples.length,
        ...(c.target !== undefined ? { target: c.target } : {}),
        ...(c.reference ? { reference: true } : {}),
      });
    }
    const denials = await denialLatency(core, http.url, opts.calls, opts.warmup);
    return { seed, accountsTotal, rows, beforeAnalyze, denials };
  } finally {
    for (const c of cleanups) await c().catch((err) => note(`cleanup failed: ${(err as Error).message}`));
  }
}

/**
 * Whether a denial takes longer when the account exists (a caller without Switch Account must not
 * learn that from timing): a customer admin calls get_account on an existing account of another
 * customer and on a missing one, alternately (so drift hits both alike), `calls` times each.
 */
async function denialLatency(core: Core, url: string, calls: number, warmup: number): Promise<(LatencyRow & { p10: number })[]> {
  const home = await createAccount(core, { name: 'Probe Co', slug: 'probe-co' });
  const { token } = await createUser(core, { email: 'probe@switchboard.test', name: 'Probe', account: home, role: 'admin' });
  const client = new Client({ name: 'switchboard-bench-probe', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
  try {
    const denied = async (account: string) => {
      const r = (await client.callTool({ name: 'get_account', arguments: { account } })) as CallToolResult;
      if (!r.isError) throw new Error(`get_account ${account} was not denied`);
    };
    const keys = { exists: 'acme-fitness-0', missing: 'acme-fitness-999999' };
    const samples: Record<keyof typeof keys, number[]> = { exists: [], missing: [] };
    note(`timing ${calls} denied get_account calls per case, interleaved`);
    for (let i = 0; i < warmup + calls; i++) {
      for (const k of (i % 2 ? ['exists', 'missing'] : ['missing', 'exists']) as (keyof typeof keys)[]) {
        const t0 = performance.now();
        await denied(keys[k]);
        if (i >= warmup) samples[k].push(performance.now() - t0);
      }
    }
    return (['exists', 'missing'] as const).map((k) => ({
      label: `get_account denied, account ${k === 'exists' ? 'exists' : 'does not exist'}`,
      p10: percentile(samples[k], 10),
      p50: percentile(samples[k], 50),
      p99: percentile(samples[k], 99),
      n: samples[k].length,
    }));
  } finally {
    await client.close();
  }
}
