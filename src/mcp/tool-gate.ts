import { isIPv6 } from 'node:net';

/**
 * Admission to tool calls: at most `slots` run at once in this process, and a call that finds
 * them all taken waits at most `maxWaitMs` for one, then is refused with "busy, retry".
 *
 * Why: a tool call holds a database connection while it runs. Without a bound, many slow calls
 * (a table locked by a migration, a long report, a flood of sessions) take every connection of
 * the pool and each new call queues inside the driver for as long as they last — an assistant
 * sees a call that never answers. With the gate, the calls past the pool's worth wait a bounded
 * time in memory and then get one clear sentence; the connections the gate leaves over (the pool
 * is sized above the slots) stay free for webhook ingest, the workers and /readyz.
 *
 * Over HTTP the gate is passed twice per call, one after the other, never nested: for the token
 * check of the request (src/http/server.ts), which reads the database too, and for the tool call.
 *
 * A freed slot goes to the waiter whose key holds the fewest slots, first come first served among
 * equals, so one caller flooding the server cannot make everyone else wait behind all of its calls;
 * a call that has waited half the bound goes before that, in arrival order (see next()).
 * The key of a tool call over HTTP is the caller's customer (its home account, or that account's
 * parent when it is a linked child), not the user: a customer's admin can create users, but
 * accounts are created only by the integrator's admins, so more users do not buy a customer a
 * larger share. A token check, before anyone is known, counts against the client's address (an
 * IPv6 client's /48); stdio and in-memory sessions are one caller each. The refusal does no database work at all (the
 * database is what is busy), so it is counted and logged rather than written to the audit log.
 * A waiter whose client cancels the call leaves the line at once (it would run for no one).
 *
 * A call that waits on something other than the database — a person on one of the pages, for up
 * to the link's lifetime, or between two looks at a deployment it follows — gives its slot back
 * meanwhile and takes one again with `resume` (ahead of new calls of keys holding as many slots,
 * no time limit: it was admitted once). Otherwise one user's page requests, left open,
 * would hold every slot for minutes and refuse every other caller in the process.
 */
interface Waiter {
  /** arrival order, across keys */
  seq: number;
  /** when it began to wait (performance.now()) */
  since: number;
  admit: () => void;
}

/** A key's waiters, each set in arrival order: calls coming back from a wait outside the gate, and new calls. */
interface Line {
  resumed: Set<Waiter>;
  fresh: Set<Waiter>;
}

export class ToolGate {
  private running = 0;
  /** slots held per key */
  private readonly held = new Map<string, number>();
  /** waiters per key: a freed slot looks at each waiting key once, not at every waiter */
  private readonly lines = new Map<string, Line>();
  private waiters = 0;
  private seq = 0;
  /** calls refused because every slot stayed taken for maxWaitMs */
  refused = 0;

  constructor(
    readonly slots: number,
    readonly maxWaitMs: number,
  ) {}

  /**
   * A slot for a call of `key` (a customer's account, a request's client address, a session):
   * resolves to its release (call it exactly once), or to null when none freed up in time or
   * `signal` (the client cancelling the call) aborted first.
   */
  enter(signal?: AbortSignal, key = ''): Promise<(() => void) | null> {
    if (signal?.aborted) return Promise.resolve(null);
    if (this.running < this.slots) {
      this.running += 1;
      return Promise.resolve(this.take(key));
    }
    return new Promise((resolve) => {
      const leave = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', cancelled);
        this.unqueue(key, waiter, 'fresh');
      };
      const waiter: Waiter = {
        seq: this.seq++,
        since: performance.now(),
        admit: () => {
          leave();
          resolve(this.take(key));
        },
      };
      const timer = setTimeout(() => {
        leave();
        this.refused += 1;
        resolve(null);
      }, this.maxWaitMs);
      const cancelled = () => {
        leave();
        resolve(null);
      };
      signal?.addEventListener('abort', cancelled, { once: true });
      this.queue(key, waiter, 'fresh');
    });
  }

  /**
   * A slot again for a call that gave its own back while it waited outside the gate (on a person,
   * or between two looks at a deployment): ahead of new calls whose key holds as many slots, and
   * with no time limit (it was admitted once). It waits at most until its own key's other calls
   * have given their slots back: then its key holds none, and nothing ranks before it.
   */
  resume(key = ''): Promise<() => void> {
    if (this.running < this.slots) {
      this.running += 1;
      return Promise.resolve(this.take(key));
    }
    return new Promise((resolve) => {
      const waiter: Waiter = {
        seq: this.seq++,
        since: performance.now(),
        admit: () => {
          this.unqueue(key, waiter, 'resumed');
          resolve(this.take(key));
        },
      };
      this.queue(key, waiter, 'resumed');
    });
  }

  /** calls running and calls waiting for a slot, now */
  get load(): { running: number; waiting: number } {
    return { running: this.running, waiting: this.waiters };
  }

  private queue(key: string, w: Waiter, kind: keyof Line): void {
    let line = this.lines.get(key);
    if (!line) this.lines.set(key, (line = { resumed: new Set(), fresh: new Set() }));
    line[kind].add(w);
    this.waiters += 1;
  }

  private unqueue(key: string, w: Waiter, kind: keyof Line): void {
    const line = this.lines.get(key);
    if (!line?.[kind].delete(w)) return;
    this.waiters -= 1;
    if (!line.resumed.size && !line.fresh.size) this.lines.delete(key);
  }

  /** `key` holds one more slot; the release gives it back (once) and passes it on. */
  private take(key: string): () => void {
    this.held.set(key, (this.held.get(key) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.held.get(key) ?? 1) - 1;
      if (n > 0) this.held.set(key, n);
      else this.held.delete(key);
      const next = this.next();
      // the slot passes straight to the next waiter: running stays the same
      if (next) next.admit();
      else this.running -= 1;
    };
  }

  /**
   * Who gets a freed slot: a waiter that has already waited half the bound, the earliest of them;
   * otherwise the first waiter of the key holding the fewest slots, and among keys holding as many,
   * a call coming back from a wait outside the gate first, then the earliest. One caller sending
   * many calls at once (or many calls that step out and back in) thus takes the slots others leave
   * free, while whoever else waits with fewer gets the next one that frees up, not a place behind
   * them. The half-bound rule keeps the preference from costing the busiest caller refusals when
   * the whole server is merely loaded: past half the bound, everyone is served in arrival order
   * (measured: with two customers of 150 and 50 sessions on a saturated server, the preference
   * alone pushed the larger one's slowest calls past the bound). One look per waiting key.
   */
  private next(): Waiter | undefined {
    const aged = performance.now() - this.maxWaitMs / 2;
    let oldest: Waiter | undefined;
    let best: Waiter | undefined;
    let bestRank = Infinity;
    for (const [key, line] of this.lines) {
      for (const set of [line.resumed, line.fresh]) {
        const head = set.values().next().value as Waiter | undefined;
        if (head && head.since <= aged && (!oldest || head.seq < oldest.seq)) oldest = head;
      }
      const resumed = line.resumed.size > 0;
      const first = (resumed ? line.resumed : line.fresh).values().next().value as Waiter;
      // fewest held first; a resumed call before a new one of a key holding as many; then arrival
      const rank = (this.held.get(key) ?? 0) * 2 + (resumed ? 0 : 1);
      if (rank < bestRank || (rank === bestRank && first.seq < best!.seq)) {
        bestRank = rank;
        best = first;
      }
    }
    return oldest ?? best;
  }
}

/**
 * The key a request's token check takes its share of the slots under: the client's address, and
 * for IPv6 its /48 (a site's prefix: one client can get a whole /48 for free and send from any
 * address in it). An IPv4-mapped address is its IPv4 address. Clients behind one proxy or NAT share
 * one key: among themselves they are served first come, first served.
 */
export function addressKey(address: string | undefined): string {
  if (!address) return 'unknown';
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (v4) return v4[1]!;
  if (!isIPv6(address)) return address;
  const bare = address.split('%')[0]!.toLowerCase();
  const [head = '', tail] = bare.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  // a dotted IPv4 ending stands for two groups
  const groupsIn = (xs: string[]) => xs.reduce((n, x) => n + (x.includes('.') ? 2 : 1), 0);
  const groups = tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - groupsIn(h) - groupsIn(t))).fill('0'), ...t];
  return `${groups.slice(0, 3).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/48`;
}

/** The sentence a refused call gets (`what`: the tool, or "this request"): it says nothing was done and when to try again. */
export const busyMessage = (what: string, gate: ToolGate): string =>
  `The server is busy: all ${gate.slots} of its tool-call slots stayed taken for ${Math.round(gate.maxWaitMs / 100) / 10} s, so ${what} was not started and nothing was done; try again in a few seconds.`;
