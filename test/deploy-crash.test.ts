import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import postgres from 'postgres';
import { sql } from 'drizzle-orm';
import { buildWorld, connect, data, type Session, type World } from './helpers/world.js';
import { startWorker } from './helpers/apps.js';
import { testDbKind } from './helpers/db.js';
import { CLI, cliEnv, repoRoot } from './helpers/spawn.js';
import { createAccount, type Account } from '../src/core/accounts.js';
import { rowsOf } from '../src/db/client.js';
import { transientDbError } from '../src/core/errors.js';

/**
 * A template deployment survives `kill -9` of the worker applying it. The spawned worker applies
 * the first wave, then blocks inside the second wave's transaction (the test holds a lock on one
 * of its copies) and is killed there; a worker taking over once the lease lapsed finishes the
 * rollout: every account deployed exactly once (one new revision, one audit entry), none half
 * deployed, and the wave counts are those of the targets. PostgreSQL only: a second process cannot
 * share the embedded in-memory database the PGlite run of the suite uses.
 */

const onPostgres = testDbKind() === 'postgres';
let w: World;
let admin: Session;
let child: ChildProcess | null = null;
const studios: Account[] = [];
const transform = (label: string) => ({ steps: [{ id: 'one', kind: 'transform', value: { version: label, body: '{{ trigger.body }}' } }] });

beforeAll(async () => {
  if (!onPostgres) return;
  w = await buildWorld();
  const chain = await createAccount(w.core, { name: 'Crash Chain', slug: 'crash-chain' });
  for (let i = 1; i <= 12; i++) studios.push(await createAccount(w.core, { name: `Crash Studio ${i}`, slug: `crash-studio-${i}`, parent: chain, routingKey: `crash-${i}` }));
  admin = await connect(w.core, w.tokens.admin);
}, 60_000);

afterAll(async () => {
  if (!onPostgres) return;
  child?.kill('SIGKILL');
  await admin?.close();
  await w?.close();
});

const copies = async () =>
  rowsOf<{ account_id: string; revision: number; revisions: number }>(
    await w.core.db.execute(sql`
      select a.account_id, a.revision, (select count(*)::int from automation_revisions r where r.automation_id = a.id) as revisions
      from automations a join templates t on t.id = a.template_id where t.name = 'Crash flow' order by a.account_id`),
  ).map((r) => ({ account: String(r.account_id), revision: Number(r.revision), revisions: Number(r.revisions) }));

const targets = async (id: string) =>
  rowsOf<{ account_id: string; wave: number; status: string }>(await w.core.db.execute(sql`select account_id, wave, status from deployment_targets where deployment_id = ${id}::uuid`));

async function until<T>(probe: () => Promise<T>, ok: (v: T) => boolean, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out; last: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(!onPostgres)('a deployment whose worker is killed mid-apply (PostgreSQL only: a spawned process needs a shared database)', () => {
  it('is finished by the worker taking over: every account deployed once, none half deployed', async () => {
    // version 1 on all twelve, applied by an in-process worker
    data(await admin.call('create_template', { name: 'Crash flow', definition: transform('v1') }));
    const p1 = data<{ plan: { hash: string } }>(await admin.call('deploy_template', { template: 'Crash flow', accounts: { children_of: 'crash-chain' } }));
    const first = await startWorker(w);
    const d1 = data<{ deployment: { id: string; status: string } }>(
      await admin.call('deploy_template', { template: 'Crash flow', accounts: { children_of: 'crash-chain' }, plan_hash: p1.plan.hash, wait_seconds: 30 }),
    );
    await first.stop();
    expect(d1.deployment.status).toBe('completed');
    expect((await copies()).map((c) => c.revision)).toEqual(Array(12).fill(1));

    // version 2 in two waves: four accounts, then the rest, no bake between them
    data(await admin.call('update_template', { template: 'Crash flow', definition: transform('v2'), note: 'v2' }));
    const waveOne = studios.slice(0, 4).map((s) => s.slug);
    const args = { template: 'Crash flow', accounts: 'all', waves: [{ accounts: waveOne }, '100%'], bake: '0s' };
    const p2 = data<{ plan: { hash: string; counts: Record<string, number> } }>(await admin.call('deploy_template', args));
    expect(p2.plan.counts).toMatchObject({ update: 12 });

    // hold a lock on a second-wave copy, so the spawned worker stops inside that wave's transaction
    const blocked = studios[7]!;
    const holder = postgres(w.database.url, { max: 1, onnotice: () => {} });
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const holding = holder.begin(async (tx) => {
      // no key update: deployment rows may still reference the copy (key share), the apply's lock waits
      await tx`select id from automations where account_id = ${blocked.id} for no key update`;
      locked();
      await released;
    });
    await isLocked;

    const d2 = data<{ deployment: { id: string } }>(await admin.call('deploy_template', { ...args, plan_hash: p2.plan.hash, wait_seconds: 0 }));
    child = spawn(process.execPath, [...CLI, 'worker'], {
      cwd: repoRoot,
      env: cliEnv({ DATABASE_URL: w.database.url, SWITCHBOARD_LEASE_SECONDS: '2' }),
      stdio: 'ignore',
    });
    // the first wave is committed and the second wave's transaction waits on the lock
    await until(() => targets(d2.deployment.id), (ts) => ts.filter((t) => t.status === 'done').length === 4);
    await until(
      async () => rowsOf<{ n: number }>(await w.core.db.execute(sql`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`))[0]!.n,
      (n) => Number(n) >= 1,
    );
    child.kill('SIGKILL');
    await new Promise((r) => child!.once('exit', r));
    child = null;

    // at the kill: wave one done, wave two untouched
    const atKill = await targets(d2.deployment.id);
    const waveOneIds = new Set(studios.slice(0, 4).map((s) => s.id));
    expect(atKill.filter((t) => t.status === 'done').every((t) => waveOneIds.has(String(t.account_id)))).toBe(true);
    expect(atKill.filter((t) => t.status === 'pending')).toHaveLength(8);
    const before = await copies();
    expect(before.filter((c) => c.revision === 2).map((c) => c.account).sort()).toEqual([...waveOneIds].sort());
    expect(before.filter((c) => !waveOneIds.has(c.account)).every((c) => c.revision === 1 && c.revisions === 1)).toBe(true);

    release();
    await holding;
    await holder.end();

    const rescuer = await startWorker(w, { leaseMs: 2_000 });
    try {
      const done = await until(
        async () => data<{ deployment: { status: string; targets: Record<string, number>; waves: { done: number; failed: number }[] } }>(await admin.call('get_deployment', { deployment: d2.deployment.id })).deployment,
        (d) => d.status !== 'running',
      );
      expect(done.status).toBe('completed');
      expect(done.targets).toMatchObject({ done: 12 });
      expect(done.waves.map((x) => [x.done, x.failed])).toEqual([[4, 0], [8, 0]]);
    } finally {
      await rescuer.stop();
    }
    // once each: revision 2 everywhere, two revisions per copy, one audit entry per account
    expect((await copies()).map((c) => [c.revision, c.revisions])).toEqual(Array(12).fill([2, 2]));
    const audit = rowsOf<{ account_id: string; n: number }>(
      await w.core.db.execute(sql`select account_id, count(*)::int as n from audit_log where session_id = ${`deployment:${d2.deployment.id}`} group by account_id`),
    );
    expect(audit).toHaveLength(12);
    expect(audit.every((a) => Number(a.n) === 1)).toBe(true);
    expect((await targets(d2.deployment.id)).every((t) => t.status === 'done')).toBe(true);
  }, 120_000);

  it('tells a database error that says nothing of the work (a killed connection) from one that does, so a batch is taken up again rather than failed', async () => {
    const c = postgres(w.database.url, { max: 1, onnotice: () => {} });
    try {
      const syntax = await c`select from where`.catch((e: unknown) => e);
      const killed = await c`select pg_terminate_backend(pg_backend_pid())`.catch((e: unknown) => e);
      expect(transientDbError(killed)).toBe(true);
      expect(transientDbError(syntax)).toBe(false);
      expect(transientDbError(new TypeError('a bug'))).toBe(false);
    } finally {
      await c.end({ timeout: 0 });
    }
  });
});
