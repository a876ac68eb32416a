import type { EventStore, EventId, StreamId } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

/**
 * Resumable SSE for one HTTP session: every message the server sends on a stream is kept, with an
 * event id, so a client that reconnects with `Last-Event-ID` receives what it missed (a dropped
 * connection during a long call, a deploy followed for a minute, a person on a credential page).
 *
 * Bounded: at most `maxEvents` messages and `maxBytes` of them per session, the oldest dropped
 * first. A client reconnecting after more than that went by gets what is still kept of its
 * stream; a stream whose events all aged out, or an id this store never issued, is refused (400).
 * Event ids carry their stream (`<stream>.<n>`). One store per session: sessions never see each
 * other's events.
 */
export class BoundedEventStore implements EventStore {
  private readonly events: { id: number; stream: StreamId; message: JSONRPCMessage; bytes: number }[] = [];
  private next = 1;
  private bytes = 0;

  constructor(
    private readonly maxEvents = 1000,
    private readonly maxBytes = 2 * 1024 * 1024,
  ) {}

  async storeEvent(streamId: StreamId, message: JSONRPCMessage): Promise<EventId> {
    const id = this.next++;
    const bytes = JSON.stringify(message).length + streamId.length;
    this.events.push({ id, stream: streamId, message, bytes });
    this.bytes += bytes;
    while (this.events.length > this.maxEvents || (this.bytes > this.maxBytes && this.events.length > 1)) {
      this.bytes -= this.events.shift()!.bytes;
    }
    return `${streamId}.${id}`;
  }

  /** The stream of an event id this store issued and still holds events of; else undefined (the client gets a 400). */
  async getStreamIdForEventId(eventId: EventId): Promise<StreamId | undefined> {
    const e = parse(eventId);
    return e && e.n < this.next && this.events.some((x) => x.stream === e.stream) ? e.stream : undefined;
  }

  async replayEventsAfter(lastEventId: EventId, { send }: { send: (eventId: EventId, message: JSONRPCMessage) => Promise<void> }): Promise<StreamId> {
    const last = parse(lastEventId);
    if (!last) return '';
    for (const e of this.events.filter((x) => x.stream === last.stream && x.id > last.n)) await send(`${e.stream}.${e.id}`, e.message);
    return last.stream;
  }

  /** Messages kept now (for tests and metrics). */
  get size(): number {
    return this.events.length;
  }
}

function parse(eventId: string): { stream: string; n: number } | null {
  const dot = eventId.lastIndexOf('.');
  if (dot <= 0) return null;
  const n = Number(eventId.slice(dot + 1));
  return Number.isSafeInteger(n) && n > 0 ? { stream: eventId.slice(0, dot), n } : null;
}
