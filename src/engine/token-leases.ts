import type { Core } from '../core/core.js';
import { acquireConnection, type BucketTarget, type TakeResult } from './rate-limiter.js';

/**
 * A worker's tokens of connections' rate budgets, taken from the shared bucket in PostgreSQL in
 * blocks and spent in this process. One transaction then serves a block of calls instead of one
 * (the bucket row is the hot spot of a busy connection: every take locks it). The budget stays
 * exact across processes: a token is spent only after it was taken from the bucket, and tokens a
 * lease does not spend within a second are dropped, never returned or carried over — so calls
 * never exceed the budget; at worst a little of it goes unused.
 *
 * A block is a tenth of a minute's budget at most (at most 50), and 1 for connections allowed
 * fewer than 600 calls a minute, so small budgets are shared call by call.
 */
const LEASE_MS = 1000;
const MAX_BLOCK = 50;

export const blockFor = (perMinute: number): number => Math.max(1, Math.min(MAX_BLOCK, Math.floor(perMinute / 600)));

interface Lease {
  tokens: number;
  until: number;
  perMinute: number;
}

export class TokenLeases {
  private readonly leases = new Map<string, Lease>();
  private readonly refills = new Map<string, Promise<unknown>>();

  constructor(private readonly core: Core) {}

  async take(t: BucketTarget): Promise<TakeResult> {
    for (;;) {
      const lease = this.leases.get(t.connectionId);
      if (lease && lease.tokens >= 1 && lease.until > Date.now() && lease.perMinute === t.perMinute) {
        lease.tokens -= 1;
        return { allowed: true, remaining: lease.tokens, retryAfterMs: 0 };
      }
      // one refill per connection at a time: the others wait for it, then take from its block
      const pending = this.refills.get(t.connectionId);
      if (pending) {
        await pending;
        continue;
      }
      const refill = this.refill(t);
      this.refills.set(t.connectionId, refill);
      try {
        return await refill;
      } finally {
        this.refills.delete(t.connectionId);
      }
    }
  }

  private async refill(t: BucketTarget): Promise<TakeResult> {
    this.leases.delete(t.connectionId);
    const block = blockFor(t.perMinute);
    let r = await acquireConnection(this.core, t, block);
    let got = block;
    if (!r.allowed && block > 1) {
      // not a whole block left: take what there is, one at least
      got = Math.floor(r.remaining);
      if (got < 1) return r;
      r = await acquireConnection(this.core, t, got);
      if (!r.allowed) return r;
    }
    if (!r.allowed) return r;
    this.leases.set(t.connectionId, { tokens: got - 1, until: Date.now() + LEASE_MS, perMinute: t.perMinute });
    return { allowed: true, remaining: r.remaining, retryAfterMs: 0 };
  }
}
