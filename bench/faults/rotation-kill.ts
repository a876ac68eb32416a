import { eq, sql } from 'drizzle-orm';
import { connections } from '../../src/db/schema/index.js';
import { rowsOf, type Database } from '../../src/db/client.js';
import { initialize } from '../../src/core/tenants.js';
import { createAccount } from '../../src/core/accounts.js';
import { Keyring, newMasterKey } from '../../src/core/keyring.js';
import { connectionAad } from '../../src/core/connections.js';
import type { Core } from '../../src/core/core.js';
import { accountConnections, insertConnections } from '../connections.js';
import { check, startCli, withDatabase, type FaultContext, type FaultCounts, type Scenario } from './harness.js';

/**
 * kill -9 of `switchboard rotate-key` half done, then a rerun. The world: connections with real
 * sealed credentials (batched inserts, bench/connections.ts) spread over accounts, each one's
 * plaintext read back before the rotation. rotate-key runs with a small --batch-size and is
 * killed once its progress line says a part (not all) of the rows are re-encrypted; the rows on
 * the new key are counted; the rerun must say it resumed the same key and finish. Afterwards
 * every row opens to its original plaintext, is on the active key, none is on another key, the
 * old key is retired, no key was made by the rerun, and there are as many rows as before.
 */

export interface RotationWorld {
  core: Core;
  master: Buffer;
  /** connection id → its credentials' plaintext, as stored before any rotation */
  plaintexts: Map<string, string>;
}

/** Tenant, `accounts` accounts and `connections` sealed connections spread over them, in an empty migrated database. */
export async function seedRotationWorld(database: Database, opts: { connections: number; accounts: number }): Promise<RotationWorld> {
  const master = newMasterKey();
  const init = await initialize(database.db, { adminEmail: 'faults@switchboard.test', switchMinutes: 30 });
  const core: Core = { db: database.db, tenantId: init.tenant.id, switchMinutes: 30, keys: new Keyring(master), secretArgs: true };
  const perAccount = Math.ceil(opts.connections / opts.accounts);
  const specs = [];
  for (let a = 0; a < opts.accounts && specs.length < opts.connections; a++) {
    const account = await createAccount(core, { name: `Rotation Customer ${a + 1}`, slug: `rotation-customer-${a + 1}` });
    specs.push(...accountConnections(account.id, Math.min(perAccount, opts.connections - specs.length)));
  }
  await insertConnections(core, await core.keys.activeKey(core), init.admin.id, specs);
  return { core, master, plaintexts: await plaintextsOf(core) };
}

/** Every connection's plaintext, opened with its own key and row binding; null for a row that does not open. */
export async function plaintextsOf(core: Core): Promise<Map<string, string>> {
  const rows = await core.db.select({ id: connections.id, accountId: connections.accountId, credentials: connections.credentials }).from(connections).where(eq(connections.tenantId, core.tenantId));
  const out = new Map<string, string>();
  for (const r of rows) {
    try {
      out.set(r.id, await core.keys.open(core, r.credentials, connectionAad(core.tenantId, r.accountId, r.id)));
    } catch {
      // counted as lost by the caller: it is not in the map
    }
  }
  return out;
}

export interface KeyState {
  /** the active key and its rows */
  active: { id: string; rows: number };
  /** other keys: status and rows still on them */
  others: { id: string; status: string; rows: number }[];
  rows: number;
}

export async function keyState(core: Core): Promise<KeyState> {
  const keys = rowsOf<{ id: string; status: string; rows: number }>(
    await core.db.execute(sql`
      select k.id, k.status, (select count(*)::int from connections c where c.data_key_id = k.id) as rows
      from data_keys k where k.tenant_id = ${core.tenantId}::uuid order by k.created_at`),
  );
  const [all] = rowsOf<{ n: number }>(await core.db.execute(sql`select count(*)::int as n from connections where tenant_id = ${core.tenantId}::uuid`));
  const active = keys.find((k) => k.status === 'active')!;
  return {
    active: { id: active.id, rows: Number(active.rows) },
    others: keys.filter((k) => k !== active).map((k) => ({ id: k.id, status: k.status, rows: Number(k.rows) })),
    rows: Number(all!.n),
  };
}

/** The core of a world on a reopened database (same tenant, same master key). */
const reopened = (world: RotationWorld, database: Database): Core => ({ ...world.core, db: database.db, keys: new Keyring(world.master) });

/** Secret-looking values of the plaintexts (long enough to mean something if printed). */
function secretsIn(plaintexts: Map<string, string>): string[] {
  return [...plaintexts.values()].flatMap((p) => Object.values((JSON.parse(p) as { values: Record<string, string> }).values).filter((v) => v.length >= 20));
}

export interface RotationKillOptions {
  connections?: number;
  accounts?: number;
  batchSize?: number;
  /** kill once the progress line says this many rows are done (default: a third of them) */
  killAfter?: number;
}

export async function rotationKill(ctx: FaultContext, opts: RotationKillOptions = {}): Promise<FaultCounts> {
  const total = opts.connections ?? 2000;
  const batchSize = opts.batchSize ?? 10;
  const killAfter = opts.killAfter ?? Math.floor(total / 3);
  const log = ctx.log ?? (() => {});

  const world = await withDatabase(ctx.target, (database) => seedRotationWorld(database, { connections: total, accounts: opts.accounts ?? 20 }));
  const before = await withDatabase(ctx.target, (database) => keyState(reopened(world, database)));
  log(`seeded ${before.rows} connections with sealed credentials on key ${before.active.id}`);
  const env = { ...ctx.target.env, SWITCHBOARD_MASTER_KEY: world.master.toString('base64') };

  // the first run, killed once its progress says a part is done
  let progressAtKill = -1;
  const first = startCli(ctx, ['rotate-key', '--batch-size', String(batchSize)], env, (line) => {
    const m = /: (\d+)\/(\d+)$/.exec(line);
    if (m && progressAtKill < 0 && Number(m[1]) >= killAfter) {
      progressAtKill = Number(m[1]);
      first.child.kill('SIGKILL');
    }
  });
  const end1 = await first.exited;
  const atKill = await withDatabase(ctx.target, (database) => keyState(reopened(world, database)));
  log(`killed rotate-key (${end1.signal ?? `exit ${end1.code}`}) at progress ${progressAtKill}/${total}: ${atKill.active.rows} rows on the new key, ${atKill.others.reduce((s, k) => s + k.rows, 0)} on the old one`);

  // the rerun
  const second = startCli(ctx, ['rotate-key', '--json', '--batch-size', String(batchSize)], env);
  const end2 = await second.exited;
  let report: { key_id?: string; resumed?: boolean; total?: number; rotated?: number; unreadable?: number; retired_keys?: number } = {};
  try {
    report = JSON.parse(second.stdout());
  } catch {
    // checked below: the rerun did not answer in JSON
  }
  log(`rerun: exit ${end2.code}, ${second.stdout().trim()}`);

  const { after, opened } = await withDatabase(ctx.target, async (database) => {
    const core = reopened(world, database);
    return { after: await keyState(core), opened: await plaintextsOf(core) };
  });
  let lost = 0;
  for (const [id, plaintext] of world.plaintexts) if (opened.get(id) !== plaintext) lost++;
  const printed = first.stdout() + first.stderr() + second.stdout() + second.stderr();
  const leaked = secretsIn(world.plaintexts).filter((s) => printed.includes(s)).length;

  const oldKey = before.active.id;
  const newKey = atKill.active.id;
  return {
    unit: 'connections',
    total: before.rows,
    doneAtKill: newKey === oldKey ? 0 : atKill.active.rows,
    doneAfterRerun: after.active.id === newKey ? after.active.rows : 0,
    duplicates: Math.max(0, after.rows - before.rows),
    lost,
    checks: [
      check(end1.signal === 'SIGKILL', `first run ended by ${end1.signal ?? `exit ${end1.code}`} at progress ${progressAtKill} of ${before.rows}`),
      check(end2.code === 0 && report.resumed === true && report.key_id === newKey, `rerun exit ${end2.code}, resumed ${report.resumed}, on the key of the killed run: ${report.key_id === newKey}`),
      check(report.total === before.rows - atKill.active.rows && report.rotated === report.total && report.unreadable === 0, `rerun re-encrypted ${report.rotated} of ${report.total} (left at the kill: ${before.rows - atKill.active.rows})`),
      check(after.active.id === newKey && after.active.rows === after.rows, `rows on the active key after the rerun: ${after.active.rows} of ${after.rows}`),
      check(after.others.every((k) => k.rows === 0 && k.status === 'retired'), `other keys: ${after.others.map((k) => `${k.status} with ${k.rows} rows`).join(', ')}`),
      check(after.others.length === 1 && after.others[0]!.id === oldKey, `data keys in all: ${after.others.length + 1} (the old one and the new one)`),
      check(leaked === 0, `secrets in the CLI's output: ${leaked}`),
    ],
  };
}

/**
 * A rotation killed after its last batch and before it retired the old key leaves every row on
 * the new key and the old key `retiring`: the rerun must finish that (retire it) rather than
 * start another rotation with a new key. The state is made in process (rotateDataKey stopped
 * after exactly the batches it needs), the rerun is the CLI.
 */
export async function rotationKilledBeforeRetiring(ctx: FaultContext, opts: { connections?: number; batchSize?: number } = {}): Promise<{ rerun: Record<string, unknown>; code: number | null; before: KeyState; after: KeyState }> {
  const total = opts.connections ?? 50;
  const batchSize = opts.batchSize ?? 10;
  const { world, before } = await withDatabase(ctx.target, async (database) => {
    const world = await seedRotationWorld(database, { connections: total, accounts: 2 });
    const { rotateDataKey } = await import('../../src/core/rotation.js');
    await rotateDataKey(world.core, { batchSize, maxBatches: Math.ceil(total / batchSize) });
    return { world, before: await keyState(world.core) };
  });
  const rerun = startCli(ctx, ['rotate-key', '--json'], { ...ctx.target.env, SWITCHBOARD_MASTER_KEY: world.master.toString('base64') });
  const end = await rerun.exited;
  const after = await withDatabase(ctx.target, (database) => keyState(reopened(world, database)));
  let report: Record<string, unknown> = {};
  try {
    report = JSON.parse(rerun.stdout());
  } catch {
    report = { stderr: rerun.stderr() };
  }
  return { rerun: report, code: end.code, before, after };
}

export const rotationKillScenario: Scenario = {
  id: 'rotation',
  name: 'rotate-key killed half way',
  about: 'kill -9 of `switchboard rotate-key --batch-size 10` a third of the way through 2,000 connections, then rotate-key again',
  run: (ctx) => rotationKill(ctx),
};

