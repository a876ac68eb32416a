import { and, asc, count, eq, gt, inArray, ne, sql } from 'drizzle-orm';
import { connections, dataKeys } from '../db/schema/index.js';
import type { Core } from './core.js';
import { connectionAad } from './connections.js';
import { DecryptError, type ActiveKey } from './keyring.js';
import { log } from '../log.js';

/**
 * Data key rotation: a new data key becomes active (new writes use it at once), then every
 * connection still sealed with an older key is re-encrypted in batches. Each batch is read,
 * re-sealed in memory and written back with one UPDATE that only touches rows still holding the
 * exact ciphertext that was read (compare-and-swap): a row changed meanwhile (a reconnect) keeps
 * its new value, which is already under the active key. Resumable: a rotation that stopped
 * leaves rows on old keys, or (stopped after its last batch) old keys not yet retired; the next
 * run continues with them instead of making another key. When no row uses an older key, those
 * keys are retired. A row whose credentials do not decrypt is counted and left on its key (which
 * then stays); reconnecting the connection repairs it.
 */

export interface RotationProgress {
  keyId: string;
  resumed: boolean;
  total: number;
  rotated: number;
  /** rows that changed between read and write (left as the concurrent writer wrote them) */
  skipped: number;
  /** rows whose credentials do not decrypt (damaged, or not this row's): left on their old key */
  unreadable: number;
  remaining: number;
  retiredKeys: number;
}

export const ROTATION_BATCH = 500;

export async function rotateDataKey(
  core: Core,
  opts: {
    batchSize?: number;
    onProgress?: (p: RotationProgress) => void;
    /** stop after this many batches (a rotation cut short, as by a crash) */
    maxBatches?: number;
    /** called between reading a batch and writing it back: where a concurrent writer can strike */
    afterRead?: (ids: string[]) => Promise<void>;
  } = {},
): Promise<RotationProgress> {
  const batchSize = opts.batchSize ?? ROTATION_BATCH;
  // the keys rows may still be on: every key of the tenant but `keyId` (a handful); counted and
  // walked through the (tenant_id, data_key_id, id) index, key by key
  const olderKeys = async (keyId: string) =>
    (await core.db.select({ id: dataKeys.id }).from(dataKeys).where(and(eq(dataKeys.tenantId, core.tenantId), ne(dataKeys.id, keyId)))).map((k) => k.id);
  const pending = async (keyId: string) => {
    const older = await olderKeys(keyId);
    if (older.length === 0) return 0;
    const [row] = await core.db.select({ n: count() }).from(connections).where(and(eq(connections.tenantId, core.tenantId), inArray(connections.dataKeyId, older)));
    return Number(row!.n);
  };
  const retiring = async () =>
    (await core.db.select({ n: count() }).from(dataKeys).where(and(eq(dataKeys.tenantId, core.tenantId), eq(dataKeys.status, 'retiring'))))[0]!.n;
  let key: ActiveKey = await core.keys.activeKey(core);
  const unfinished = await pending(key.id);
  // a run stopped after its last batch but before retiring leaves keys `retiring` that no row
  // uses: finishing it means retiring them, not another key and another pass over every row
  const resumed = unfinished > 0 || (await retiring()) > 0;
  if (!resumed) key = await core.keys.createKey(core);
  const total = resumed ? unfinished : await pending(key.id);
  const p: RotationProgress = { keyId: key.id, resumed, total, rotated: 0, skipped: 0, unreadable: 0, remaining: total, retiredKeys: 0 };
  opts.onProgress?.({ ...p });
  const unreadable = new Set<string>();

  // passes over the rows not on the active key, until one changes nothing: a row skipped by the
  // compare-and-swap, or written under an older key by a writer that read it just before the
  // switch, is picked up by the next pass; a row that does not decrypt is left (and counted)
  let batches = 0;
  for (;;) {
    let moved = 0;
    for (const older of await olderKeys(key.id)) {
      let after = '00000000-0000-0000-0000-000000000000';
      for (;;) {
        if (opts.maxBatches !== undefined && batches >= opts.maxBatches) return p;
        const rows = await core.db
          .select({ id: connections.id, accountId: connections.accountId, credentials: connections.credentials })
          .from(connections)
          .where(and(eq(connections.tenantId, core.tenantId), eq(connections.dataKeyId, older), gt(connections.id, after)))
          .orderBy(asc(connections.id))
          .limit(batchSize);
        if (rows.length === 0) break;
        batches++;
        after = rows[rows.length - 1]!.id;
        const resealed: { id: string; old: string; sealed: string }[] = [];
        for (const r of rows) {
          const aad = connectionAad(core.tenantId, r.accountId, r.id);
          try {
            resealed.push({ id: r.id, old: r.credentials, sealed: await core.keys.sealWith(key, aad, await core.keys.open(core, r.credentials, aad)) });
          } catch (err) {
            if (!(err instanceof DecryptError)) throw err;
            if (!unreadable.has(r.id)) log.warn('rotation: credentials do not decrypt; left as they are', { connection: r.id, account: r.accountId });
            unreadable.add(r.id);
          }
        }
        await opts.afterRead?.(rows.map((r) => r.id));
        const n = resealed.length ? await writeBack(core, key.id, resealed) : 0;
        moved += n;
        p.rotated += n;
        p.skipped += resealed.length - n;
        p.unreadable = unreadable.size;
        p.remaining = Math.max(0, p.total - p.rotated - p.skipped - p.unreadable);
        opts.onProgress?.({ ...p });
      }
    }
    if (moved === 0 && (await pending(key.id)) <= unreadable.size) break;
  }
  const retired = await core.db
    .update(dataKeys)
    .set({ status: 'retired', retiredAt: sql`now()` })
    .where(
      and(
        eq(dataKeys.tenantId, core.tenantId),
        eq(dataKeys.status, 'retiring'),
        sql`not exists (select 1 from ${connections} where ${connections.tenantId} = ${dataKeys.tenantId} and ${connections.dataKeyId} = ${dataKeys.id})`,
      ),
    )
    .returning({ id: dataKeys.id });
  p.retiredKeys = retired.length;
  p.remaining = 0;
  return p;
}

/** Write re-sealed rows back in one statement, each only if it still holds what was read; the number written. */
async function writeBack(core: Core, keyId: string, rows: { id: string; old: string; sealed: string }[]): Promise<number> {
  const values = sql.join(
    rows.map((r) => sql`(${r.id}::uuid, ${r.old}, ${r.sealed})`),
    sql`, `,
  );
  const written = await core.db.execute<{ id: string }>(sql`
    update ${connections} as c set credentials = v.sealed, data_key_id = ${keyId}::uuid
    from (values ${values}) as v(id, old, sealed)
    where c.id = v.id and c.credentials = v.old
    returning c.id`);
  return (Array.isArray(written) ? written : (written as { rows: unknown[] }).rows).length;
}
