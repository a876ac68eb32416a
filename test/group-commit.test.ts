import { describe, expect, it } from 'vitest';
import { GroupCommit } from '../src/core/group-commit.js';

/**
 * Group commit: what arrives while a write of its key is in flight goes into the next write; a
 * lone item is written at once; a failing batch is retried item by item so only the bad item
 * fails; keys do not wait for each other.
 */
describe('group commit', () => {
  it('writes what arrives during a write in the next one, and answers each submitter with its own result', async () => {
    const batches: number[][] = [];
    const gc = new GroupCommit<number, string>(
      async (_key, items) => {
        batches.push(items);
        await new Promise((r) => setTimeout(r, 20));
        return items.map((i) => `done ${i}`);
      },
      { maxBatch: 100, maxInFlight: 1 },
    );
    const first = gc.submit('a', 0);
    const rest = Array.from({ length: 30 }, (_, i) => gc.submit('a', i + 1));
    expect(await first).toBe('done 0');
    expect(await Promise.all(rest)).toEqual(Array.from({ length: 30 }, (_, i) => `done ${i + 1}`));
    // the first alone (nothing waits on a timer), the other 30 together
    expect(batches).toEqual([[0], Array.from({ length: 30 }, (_, i) => i + 1)]);
  });

  it('fails only the bad item of a failing batch', async () => {
    const gc = new GroupCommit<string, string>(
      async (_key, items) => {
        await new Promise((r) => setTimeout(r, 5));
        if (items.includes('bad')) throw new Error('bad item');
        return items.map((i) => i.toUpperCase());
      },
      { maxBatch: 100, maxInFlight: 1 },
    );
    const head = gc.submit('k', 'head');
    const results = await Promise.allSettled(['x', 'bad', 'y'].map((i) => gc.submit('k', i)));
    expect(await head).toBe('HEAD');
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message))).toEqual(['X', 'bad item', 'Y']);
  });

  it('keeps keys apart: a slow key does not hold back another', async () => {
    let release!: () => void;
    const slow = new Promise<void>((r) => (release = r));
    const gc = new GroupCommit<string, string>(async (key, items) => {
      if (key === 'slow') await slow;
      return items.map((i) => `${key}:${i}`);
    });
    const s = gc.submit('slow', 'a');
    expect(await gc.submit('fast', 'b')).toBe('fast:b');
    release();
    expect(await s).toBe('slow:a');
  });

  it('keeps a batch under its weight limit, one heavy item going alone', async () => {
    const batches: number[][] = [];
    const gc = new GroupCommit<number, number>(
      async (_key, items) => {
        batches.push(items);
        await new Promise((r) => setTimeout(r, 10));
        return items;
      },
      { maxBatch: 100, maxInFlight: 1, weigh: (n) => n, maxWeight: 10 },
    );
    await Promise.all([0, 4, 4, 4, 20, 1, 1].map((n) => gc.submit('k', n)));
    expect(batches).toEqual([[0], [4, 4], [4], [20], [1, 1]]);
  });
});
