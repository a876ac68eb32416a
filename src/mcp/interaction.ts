import { ElicitResultSchema } from '@modelcontextprotocol/sdk/types.js';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { Extra } from './server.js';

/**
 * What a tool may ask of the client for one call: URL-mode elicitation (MCP 2025-11-25). The
 * server sends a link; the client shows it to the person, who acts on our page, out of the
 * model's sight. Tools get this, never the SDK server.
 */
export interface Interaction {
  /** Base URL of this server's pages (`switchboard serve`), or null when this transport serves none. */
  pagesUrl: string | null;
  /** Whether the client declared the `elicitation.url` capability. */
  urlElicitation: boolean;
  /** Ask the client to open `url`; resolves with the person's answer to opening it. */
  elicitUrl(p: { message: string; url: string; elicitationId: string }): Promise<'accept' | 'decline' | 'cancel'>;
  /** Tell the client that the interaction behind `elicitationId` finished. */
  complete(elicitationId: string): Promise<void>;
  /** Aborted when the client cancels the call or goes away. */
  signal: AbortSignal;
  /** A progress notification, when the client asked for them (keeps its request timeout from firing while a person acts). */
  progress(message: string, done?: number, total?: number): Promise<void>;
}

export function interactionFor(server: Server, extra: Extra, pagesUrl: string | null): Interaction {
  let ticks = -1; // the first notification may say 0 (none done yet)
  return {
    pagesUrl,
    urlElicitation: Boolean(server.getClientCapabilities()?.elicitation?.url),
    async elicitUrl(p) {
      // sent as part of this call, so Streamable HTTP delivers it on the call's own stream;
      // a person needs time: no request timeout beyond the link's own expiry
      const r = await extra.sendRequest({ method: 'elicitation/create', params: { mode: 'url', ...p } }, ElicitResultSchema, {
        timeout: 15 * 60_000,
      });
      return r.action;
    },
    async complete(elicitationId) {
      await extra.sendNotification({ method: 'notifications/elicitation/complete', params: { elicitationId } });
    },
    signal: extra.signal,
    async progress(message, done, total) {
      const token = extra._meta?.progressToken;
      if (token === undefined) return;
      // progress must increase from one notification to the next
      ticks = done !== undefined && done > ticks ? done : ticks + 1;
      await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: ticks, ...(total !== undefined ? { total } : {}), message } });
    },
  };
}
