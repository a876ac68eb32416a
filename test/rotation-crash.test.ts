import { afterAll, describe, expect, it } from 'vitest';
import { faultRuns } from './helpers/faults.js';
import { passed } from '../bench/faults/harness.js';
import { rotationKill, rotationKilledBeforeRetiring } from '../bench/faults/rotation-kill.js';

/**
 * `switchboard rotate-key` killed with SIGKILL half done, then run again (the scenario of
 * `npm run faults`, bench/faults/rotation-kill.ts): the rerun resumes the same key and finishes;
 * every credential opens to its original plaintext, all rows are on the new key, none on another,
 * the old key is retired, and there are as many rows as before. Runs on both databases: on the
 * embedded one the CLI and this file take turns on one data directory.
 */

const runs = faultRuns();
afterAll(() => runs.close());

describe('rotate-key killed with SIGKILL half way', { timeout: 180_000 }, () => {
  it('is resumed by a rerun on the same key: every credential opens to its plaintext, no row lost, none left on an old key', async () => {
    const c = await rotationKill(await runs.context(), { connections: 1000, accounts: 10, batchSize: 5, killAfter: 100 });
    const story = runs.lines.join('\n');
    // the kill landed half way
    expect(c.total).toBe(1000);
    expect(c.doneAtKill, story).toBeGreaterThanOrEqual(100);
    expect(c.doneAtKill, story).toBeLessThan(1000);
    // the rerun finished the rest: every row on the new key, none lost, none added
    expect(c, story).toMatchObject({ doneAfterRerun: 1000, duplicates: 0, lost: 0 });
    for (const x of c.checks) expect(x.ok, x.line).toBe(true);
    expect(passed(c)).toBe(true);
  });

  it('killed after its last batch, before retiring the old key: the rerun retires it and makes no new key', async () => {
    const r = await rotationKilledBeforeRetiring(await runs.context(), { connections: 40, batchSize: 10 });
    // the state the kill leaves: every row on the new key, the old key still retiring
    expect(r.before.active.rows).toBe(40);
    expect(r.before.others.map((k) => [k.status, k.rows])).toEqual([['retiring', 0]]);
    expect(r.code).toBe(0);
    expect(r.rerun).toMatchObject({ key_id: r.before.active.id, resumed: true, total: 0, rotated: 0, retired_keys: 1 });
    expect(r.after.active).toEqual({ id: r.before.active.id, rows: 40 });
    expect(r.after.others.map((k) => [k.status, k.rows])).toEqual([['retired', 0]]);
  });
});
