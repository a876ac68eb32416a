import type { EventStore, EventId, StreamId } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

/**
 * Resumable SSE for one HTTP session: every message the server sends on a stream is kept, with an
 * event id, so a client that reconnects with `Last-Event-ID` receives what it missed (a dropped
 * connection during a long call, a deploy followed for a minute, a person on a credential page).
 *
 * Bounded: at most `maxEvents` messages and `maxBytes` of them per session, the oldest dropped
 * first; and in time. A stream that has ended (its call was answered) is kept `maxAgeMs` after its
 * answer, then dropped whole: a client is told to reconnect after 1 s (`retry`), so a minute covers
 * a dropped connection many times over. A stream still open (a call running, the standalone
 * stream) drops its events older than that too, except its newest, so a client that reconnects
 * after a long silence (a proxy cut an idle stream while a person was on a credential page) still
 * resumes it. Without the time bound every session kept its last 2 MB of answers for as long as it
 * lived, and a server with 200 busy sessions grew by hundreds of MB (found by the soak,
 * bench/soak.ts).
 *
 * A client reconnecting after more than that went by gets what is still kept of its stream; a
 * stream whose events are all gone, or an id this store never issued, is refused (400). Event ids
 * carry their stream (`<stream>.<n>`). One store per session: sessions never see each other's events.
 */
export class BoundedEventStore implements EventStore {
  private events: { id: number; stream: StreamId; message: JSONRPCMessage; bytes: number; at: number }[] = [];
  private next = 1;
  private bytes = 0;
  /** per stream kept: its event count, its newest event id, and when it ended (its answer was stored) */
  private readonly streams = new Map<StreamId, { count: number; newest: number; endedAt: number | null }>();
  private prunedAt = 0;
  /** prunes what ages out while nothing is stored (an idle session); unref'd: it never keeps the process up */
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly maxEvents = 1000,
    private readonly maxBytes = 2 * 1024 * 1024,
    private readonly maxAgeMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  async storeEvent(streamId: StreamId, message: JSONRPCMessage): Promise<EventId> {
    const id = this.next++;
    const at = this.now();
    const bytes = JSON.stringify(message).length + streamId.length;
    this.events.push({ id, stream: streamId, message, bytes, at });
    this.bytes += bytes;
    const s = this.streams.get(streamId) ?? { count: 0, newest: id, endedAt: null };
    s.count++;
    s.newest = id;
    // an answer ends its request's stream (a request stream carries one call)
    if ('id' in message && ('result' in message || 'error' in message)) s.endedAt = at;
    this.streams.set(streamId, s);
    while (this.events.length > this.maxEvents || (this.bytes > this.maxBytes && this.events.length > 1)) this.forget(this.events.shift()!);
    // at most once a second: the scan is linear in what is kept
    if (at - this.prunedAt >= 1000) this.prune();
    else this.schedule();
    return `${streamId}.${id}`;
  }

  /** The stream of an event id this store issued and still holds events of; else undefined (the client gets a 400). */
  async getStreamIdForEventId(eventId: EventId): Promise<StreamId | undefined> {
    this.prune();
    const e = parse(eventId);
    return e && e.n < this.next && this.streams.has(e.stream) ? e.stream : undefined;
  }

  async replayEventsAfter(lastEventId: EventId, { send }: { send: (eventId: EventId, message: JSONRPCMessage) => Promise<void> }): Promise<StreamId> {
    this.prune();
    const last = parse(lastEventId);
    if (!last) return '';
    for (const e of this.events.filter((x) => x.stream === last.stream && x.id > last.n)) await send(`${e.stream}.${e.id}`, e.message);
    return last.stream;
  }

  /** Messages kept now (for tests and metrics). */
  get size(): number {
    this.prune();
    return this.events.length;
  }

  /** Drop what aged out: ended streams whole, open streams' events but the newest. */
  private prune(): void {
    const at = this.now();
    this.prunedAt = at;
    const cutoff = at - this.maxAgeMs;
    const kept = [];
    let expiring = false;
    for (const e of this.events) {
      const s = this.streams.get(e.stream)!;
      const newestOfOpen = s.endedAt === null && e.id === s.newest;
      if (!newestOfOpen && (s.endedAt ?? e.at) <= cutoff) this.forget(e);
      else {
        kept.push(e);
        expiring ||= !newestOfOpen;
      }
    }
    this.events = kept;
    // only the newest of open streams left: nothing to age out, no timer (a closed session's store is let go)
    if (expiring) this.schedule();
  }

  private forget(e: { stream: StreamId; bytes: number }): void {
    this.bytes -= e.bytes;
    const s = this.streams.get(e.stream)!;
    if (--s.count === 0) this.streams.delete(e.stream);
  }

  /** look again once the time bound may have passed */
  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.prune();
    }, this.maxAgeMs + 1000);
    this.timer.unref();
  }
}

function parse(eventId: string): { stream: string; n: number } | null {
  const dot = eventId.lastIndexOf('.');
  if (dot <= 0) return null;
  const n = Number(eventId.slice(dot + 1));
  return Number.isSafeInteger(n) && n > 0 ? { stream: eventId.slice(0, dot), n } : null;
}
