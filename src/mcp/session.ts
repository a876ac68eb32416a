import { randomUUID } from 'node:crypto';

/**
 * Per MCP session. Which account the session has switched into is not kept here: it is read from
 * `account_switches` at each call (src/mcp/define-tool.ts), so concurrent calls, a failed call and
 * several processes all see what the database says. `switched` only saves that read for sessions
 * that never tried to switch: it turns true before the first switch_account call writes anything.
 */
export interface SessionState {
  id: string;
  switched: boolean;
}

export const newSession = (id: string = randomUUID()): SessionState => ({ id, switched: false });
