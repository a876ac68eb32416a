import { describe, expect, it } from 'vitest';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { BoundedEventStore } from '../src/http/event-store.js';

/**
 * The resumable-SSE store of an HTTP session (src/http/event-store.ts) in time, on a clock the
 * test moves: an answered call's stream goes a minute after its answer, an open stream keeps its
 * newest event however long it is silent, and a busy session keeps about a minute of answers —
 * not its last 2 MB for as long as it lives (what the soak found: bench/soak.ts).
 */

const MINUTE = 60_000;
const priming = {} as JSONRPCMessage; // what the SDK stores first on every stream
const progress = (n: number): JSONRPCMessage => ({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 1, progress: n } });
const answer = (id: number): JSONRPCMessage => ({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: 'x'.repeat(500) }] } });

function clocked(maxEvents = 1000, maxBytes = 2 * 1024 * 1024) {
  let t = 1_000_000;
  const store = new BoundedEventStore(maxEvents, maxBytes, MINUTE, () => t);
  return { store, at: (ms: number) => void (t = 1_000_000 + ms) };
}

const replayed = async (store: BoundedEventStore, after: string): Promise<unknown[]> => {
  const got: unknown[] = [];
  await store.replayEventsAfter(after, { send: async (_id, m) => void got.push(m) });
  return got;
};

describe('the resumable-SSE store in time', () => {
  it('keeps an answered stream a minute after its answer, then drops it whole', async () => {
    const { store, at } = clocked();
    const first = await store.storeEvent('call-1', priming);
    at(5_000);
    await store.storeEvent('call-1', progress(1));
    at(10_000);
    await store.storeEvent('call-1', answer(1));
    at(10_000 + MINUTE - 1);
    // a client that lost the connection before the answer still gets it
    expect(await store.getStreamIdForEventId(first)).toBe('call-1');
    expect(await replayed(store, first)).toEqual([progress(1), answer(1)]);
    at(10_000 + MINUTE);
    expect(store.size).toBe(0);
    expect(await store.getStreamIdForEventId(first)).toBeUndefined();
  });

  it('keeps the newest event of a stream still open however long it is silent, and drops its older ones', async () => {
    const { store, at } = clocked();
    const first = await store.storeEvent('page', priming);
    at(1_000);
    const seen = await store.storeEvent('page', progress(1));
    at(2_000);
    await store.storeEvent('page', progress(2));
    // ten minutes of silence (a person on a credential page), the connection cut by a proxy meanwhile
    at(10 * MINUTE);
    expect(store.size).toBe(1);
    expect(await store.getStreamIdForEventId(seen)).toBe('page');
    expect(await replayed(store, seen)).toEqual([progress(2)]);
    // resuming from an event that aged out gives what is still kept
    expect(await replayed(store, first)).toEqual([progress(2)]);
    await store.storeEvent('page', answer(7));
    at(11 * MINUTE);
    expect(store.size).toBe(0);
  });

  it('a busy session keeps about a minute of answers, whatever its count and byte bounds allow', async () => {
    const { store, at } = clocked(1_000_000, 1024 * 1024 * 1024);
    // one call a second for ten minutes: a priming event and an answer each
    for (let i = 0; i < 600; i++) {
      at(i * 1000);
      await store.storeEvent(`call-${i}`, priming);
      await store.storeEvent(`call-${i}`, answer(i));
    }
    expect(store.size).toBeGreaterThanOrEqual(2 * 60);
    expect(store.size).toBeLessThanOrEqual(2 * 61);
    // the last minute's calls are all there: the oldest kept is 59 s old
    expect(await store.getStreamIdForEventId('call-540.1081')).toBe('call-540');
    expect(await store.getStreamIdForEventId('call-539.1079')).toBeUndefined();
  });

  it('keeps its count bound: the oldest dropped first, streams emptied that way are forgotten', async () => {
    const { store } = clocked(3);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await store.storeEvent(`call-${i}`, answer(i)));
    expect(store.size).toBe(3);
    expect(await store.getStreamIdForEventId(ids[0]!)).toBeUndefined();
    expect(await store.getStreamIdForEventId(ids[1]!)).toBe('call-1');
  });
});
