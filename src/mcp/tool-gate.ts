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
 * Waiters are served first come, first served. The refusal does no database work at all (the
 * database is what is busy), so it is counted and logged rather than written to the audit log.
 * A waiter whose client cancels the call leaves the line at once (it would run for no one).
 *
 * A call that waits on something other than the database — a person on one of the pages, for up
 * to the link's lifetime — gives its slot back meanwhile and takes one again with `resume` (first
 * in line, no time limit: it was admitted once). Otherwise one user's page requests, left open,
 * would hold every slot for minutes and refuse every other caller in the process.
 */
export class ToolGate {
  private running = 0;
  private readonly waiting: { admit: () => void }[] = [];
  /** calls refused because every slot stayed taken for maxWaitMs */
  refused = 0;

  constructor(
    readonly slots: number,
    readonly maxWaitMs: number,
  ) {}

  /**
   * A slot: resolves to its release (call it exactly once), or to null when none freed up in time
   * or `signal` (the client cancelling the call) aborted first.
   */
  enter(signal?: AbortSignal): Promise<(() => void) | null> {
    if (signal?.aborted) return Promise.resolve(null);
    if (this.running < this.slots) {
      this.running += 1;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve) => {
      const leave = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', cancelled);
        const i = this.waiting.indexOf(waiter);
        if (i >= 0) this.waiting.splice(i, 1);
      };
      const waiter = {
        admit: () => {
          leave();
          resolve(this.releaser());
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
      this.waiting.push(waiter);
    });
  }

  /** A slot again for a call that gave its own back while it waited on a person: first in line, with no time limit. */
  resume(): Promise<() => void> {
    if (this.running < this.slots) {
      this.running += 1;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve) => this.waiting.unshift({ admit: () => resolve(this.releaser()) }));
  }

  /** calls running and calls waiting for a slot, now */
  get load(): { running: number; waiting: number } {
    return { running: this.running, waiting: this.waiting.length };
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiting.shift();
      // the slot passes straight to the next waiter: running stays the same
      if (next) next.admit();
      else this.running -= 1;
    };
  }
}

/** The sentence a refused call gets (`what`: the tool, or "this request"): it says nothing was done and when to try again. */
export const busyMessage = (what: string, gate: ToolGate): string =>
  `The server is busy: all ${gate.slots} of its tool-call slots stayed taken for ${Math.round(gate.maxWaitMs / 100) / 10} s, so ${what} was not started and nothing was done; try again in a few seconds.`;
