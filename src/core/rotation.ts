import { and, asc, count, eq, gt, ne, sql } from 'drizzle-orm';
import { connections, dataKeys } from '../db/schema/index.js';
import type { Core } from './core.js';
import { connectionAad } from './connections.js';
import type { ActiveKey } from './keyring.js';

/**
 * Data key rotation: a new data key becomes active (new writes use it at once), then every
 * connection still sealed with an older key is re-encrypted in batches. Each batch is read,
 * re-sealed in memory and written back with one UPDATE that only touches rows still holding the
 * exact ciphertext that was read (compare-and-swap): a row changed meanwhile (a reconnect) keeps
 * its new value, which is already under the active key. Resumable: a rotation that stopped
 * leaves rows on old keys; the next run continues with them instead of making another key.
 * When no row uses an older key, those keys are retired.
 */

export interface RotationProgress {
  keyId: string;
  resumed: boolean;
  total: number;
  rotated: number;
  /** rows that changed between read and write (left as the concurrent writer wrote them) */
  skipped: number;
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
  const pending = async (keyId: string) =>
    Number(
      (await core.db.select({ n: count() }).from(connections).where(and(eq(connections.tenantId, core.tenantId), ne(connections.dataKeyId, keyId))))[0]!.n,
    );
  let key: ActiveKey = await core.keys.activeKey(core);
  const unfinished = await pending(key.id);
  const resumed = unfinished > 0;
  if (!resumed) key = await core.keys.createKey(core);
  const total = resumed ? unfinished : await pending(key.id);
  const p: RotationProgress = { keyId: key.id, resumed, total, rotated: 0, skipped: 0, remaining: total, retiredKeys: 0 };
  opts.onProgress?.({ ...p });

  let after = '00000000-0000-0000-0000-000000000000';
  let batches = 0;
  for (;;) {
    if (opts.maxBatches !== undefined && batches >= opts.maxBatches) return p;
    const rows = await core.db
      .select({ id: connections.id, accountId: connections.accountId, credentials: connections.credentials })
      .from(connections)
      .where(and(eq(connections.tenantId, core.tenantId), ne(connections.dataKeyId, key.id), gt(connections.id, after)))
      .orderBy(asc(connections.id))
      .limit(batchSize);
    if (rows.length === 0) break;
    batches++;
    after = rows[rows.length - 1]!.id;
    const resealed = await Promise.all(
      rows.map(async (r) => {
        const aad = connectionAad(core.tenantId, r.accountId, r.id);
        const plain = await core.keys.open(core, r.credentials, aad);
        return { id: r.id, old: r.credentials, sealed: await core.keys.sealWith(key, aad, plain) };
      }),
    );
    await opts.afterRead?.(rows.map((r) => r.id));
    const values = sql.join(
      resealed.map((r) => sql`(${r.id}::uuid, ${r.old}, ${r.sealed})`),
      sql`, `,
    );
    const written = await core.db.execute<{ id: string }>(sql`
      update ${connections} as c set credentials = v.sealed, data_key_id = ${key.id}::uuid
      from (values ${values}) as v(id, old, sealed)
      where c.id = v.id and c.credentials = v.old
      returning c.id`);
    const n = (Array.isArray(written) ? written : (written as { rows: unknown[] }).rows).length;
    p.rotated += n;
    p.skipped += rows.length - n;
    p.remaining = Math.max(0, p.total - p.rotated - p.skipped);
    opts.onProgress?.({ ...p });
  }
  // a concurrent writer that still sealed with an older key after our pass: go again
  if ((await pending(key.id)) > 0) {
    const again = await rotateDataKey(core, opts);
    return { ...again, total: p.total, rotated: p.rotated + again.rotated, skipped: p.skipped + again.skipped, resumed };
  }
  const retired = await core.db
    .update(dataKeys)
    .set({ status: 'retired', retiredAt: sql`now()` })
    .where(
      and(
        eq(dataKeys.tenantId, core.tenantId),
        eq(dataKeys.status, 'retiring'),
        sql`not exists (select 1 from ${connections} where ${connections.dataKeyId} = ${dataKeys.id})`,
      ),
    )
    .returning({ id: dataKeys.id });
  p.retiredKeys = retired.length;
  p.remaining = 0;
  return p;
}
