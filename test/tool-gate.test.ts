import { describe, expect, it } from 'vitest';
import { addressKey, ToolGate } from '../src/mcp/tool-gate.js';

/**
 * Who gets a freed slot (src/mcp/tool-gate.ts): a call that has waited half the bound, earliest
 * first; otherwise the first waiter of the key (a customer's account; for a request's token check,
 * the client's address) holding the fewest slots; among keys holding as many, a call coming back
 * from a wait outside the gate, then the earliest. One user flooding the server must not
 * put everyone else behind all of its calls. No database here: the gate is plain bookkeeping.
 */

/** Enter, and note the order in which entries are admitted. */
function tracker(gate: ToolGate) {
  const admitted: string[] = [];
  const releases = new Map<string, () => void>();
  const enter = (key: string, label: string) =>
    gate.enter(undefined, key).then((release) => {
      if (!release) throw new Error(`${label} was refused`);
      admitted.push(label);
      releases.set(label, release);
    });
  const release = (label: string) => releases.get(label)!();
  return { admitted, enter, release };
}

const settle = () => new Promise((r) => setImmediate(r));

describe('the tool-call gate shares its slots between callers', () => {
  it('gives a freed slot to a caller holding none before the flooding caller’s queued calls', async () => {
    const gate = new ToolGate(2, 60_000);
    const t = tracker(gate);
    await t.enter('user:a', 'a1');
    await t.enter('user:a', 'a2');
    // a queues three more, then b arrives last
    const queued = [t.enter('user:a', 'a3'), t.enter('user:a', 'a4'), t.enter('user:a', 'a5')];
    const b = t.enter('user:b', 'b1');
    expect(gate.load).toEqual({ running: 2, waiting: 4 });
    t.release('a1');
    await b;
    expect(t.admitted).toEqual(['a1', 'a2', 'b1']);
    // then a's own calls, in their order, as slots free up
    t.release('a2');
    t.release('b1');
    await settle();
    expect(t.admitted).toEqual(['a1', 'a2', 'b1', 'a3', 'a4']);
    t.release('a3');
    await Promise.all(queued);
    expect(t.admitted.slice(3)).toEqual(['a3', 'a4', 'a5']);
    t.release('a4');
    t.release('a5');
    expect(gate.load).toEqual({ running: 0, waiting: 0 });
  });

  it('serves callers holding as many slots first come, first served', async () => {
    const gate = new ToolGate(1, 60_000);
    const t = tracker(gate);
    await t.enter('user:a', 'a1');
    const later = [t.enter('user:c', 'c1'), t.enter('user:b', 'b1'), t.enter('user:d', 'd1')];
    for (const label of ['a1', 'c1', 'b1']) {
      t.release(label);
      await settle();
    }
    await Promise.all(later);
    expect(t.admitted).toEqual(['a1', 'c1', 'b1', 'd1']);
  });

  it('lets a call back from a wait outside the gate in before new calls of keys holding as many, and still bounds the others’ wait', async () => {
    const gate = new ToolGate(1, 50);
    const t = tracker(gate);
    await t.enter('user:a', 'a1');
    const stranger = gate.enter(undefined, 'user:b');
    const back = gate.resume('user:c');
    t.release('a1');
    const release = await back;
    // b waited behind the returning call, past its bound: refused, counted
    expect(await stranger).toBeNull();
    expect(gate.refused).toBe(1);
    release();
    expect(gate.load).toEqual({ running: 0, waiting: 0 });
  });

  it('does not let a caller whose calls keep stepping out and back in (resume) take every slot from one holding none', async () => {
    const gate = new ToolGate(2, 60_000);
    const t = tracker(gate);
    await t.enter('account:a', 'a1');
    await t.enter('account:a', 'a2');
    // both of a's calls step out (a deployment followed, a page open) and queue to come back
    t.release('a1');
    t.release('a2');
    await t.enter('account:a', 'a3');
    await t.enter('account:a', 'a4');
    const backs = [gate.resume('account:a'), gate.resume('account:a')];
    const b = t.enter('account:b', 'b1');
    t.release('a3');
    await b;
    // b held nothing, a still held one: b first, then a's returning calls
    expect(t.admitted).toEqual(['a1', 'a2', 'a3', 'a4', 'b1']);
    t.release('a4');
    const first = await Promise.race(backs);
    first();
    t.release('b1');
    for (const r of await Promise.all(backs)) r();
    expect(gate.load).toEqual({ running: 0, waiting: 0 });
  });

  it('serves a call that has waited half the bound before a fresher one of a key holding fewer', async () => {
    const gate = new ToolGate(2, 1_000);
    const t = tracker(gate);
    await t.enter('account:a', 'a1');
    await t.enter('account:a', 'a2');
    const a3 = t.enter('account:a', 'a3');
    // a3 has waited past half the bound (timers never fire early) when b arrives
    await new Promise((r) => setTimeout(r, 600));
    const b1 = t.enter('account:b', 'b1');
    t.release('a1');
    await a3;
    // a still holds one slot and b none, but a3 had waited long: it goes first, b next
    expect(t.admitted).toEqual(['a1', 'a2', 'a3']);
    t.release('a2');
    await b1;
    expect(t.admitted).toEqual(['a1', 'a2', 'a3', 'b1']);
    t.release('a3');
    t.release('b1');
    expect(gate.load).toEqual({ running: 0, waiting: 0 });
  });

  it('keys a token check by the client address, an IPv6 client by its /48', () => {
    expect(addressKey('203.0.113.9')).toBe('203.0.113.9');
    expect(addressKey('::ffff:203.0.113.9')).toBe('203.0.113.9');
    expect(addressKey('2001:db8:aa:bb:1:2:3:4')).toBe('2001:db8:aa::/48');
    expect(addressKey('2001:db8:aa:ffff::99')).toBe('2001:db8:aa::/48');
    expect(addressKey('2001:0DB8:00aa:0bb::1')).toBe('2001:db8:aa::/48');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0::/48');
    expect(addressKey('1::2:3:4:5:1.2.3.4')).toBe('1:0:2::/48');
    expect(addressKey('::1')).toBe('0:0:0::/48');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0::/48');
    expect(addressKey(undefined)).toBe('unknown');
  });

  it('counts a release once, whatever calls it twice', async () => {
    const gate = new ToolGate(1, 60_000);
    const first = (await gate.enter(undefined, 'user:a'))!;
    const waiting = gate.enter(undefined, 'user:a');
    first();
    first();
    const second = (await waiting)!;
    expect(gate.load).toEqual({ running: 1, waiting: 0 });
    second();
    expect(gate.load).toEqual({ running: 0, waiting: 0 });
  });
});
