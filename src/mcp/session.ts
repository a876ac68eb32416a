import { randomUUID } from 'node:crypto';
import { DEFAULT_TOOLSETS, type SurfaceOptions, type Toolset } from './toolsets.js';

/**
 * Per MCP session. Which account the session has switched into is not kept here: it is read from
 * `account_switches` at each call (src/mcp/define-tool.ts), so concurrent calls, a failed call and
 * several processes all see what the database says. `switched` only saves that read for sessions
 * that never tried to switch: it turns true before the first switch_account call writes anything.
 *
 * `toolsets` and `readOnly` shape what the session lists and may call (src/mcp/toolsets.ts):
 * chosen when it connects; enable_toolset adds toolsets (never removes a read-only flag).
 */
export interface SessionState {
  id: string;
  switched: boolean;
  toolsets: Set<Toolset>;
  readOnly: boolean;
}

export const newSession = (id: string = randomUUID(), surface: SurfaceOptions = {}): SessionState => ({
  id,
  switched: false,
  toolsets: new Set(surface.toolsets ?? DEFAULT_TOOLSETS),
  readOnly: surface.readOnly ?? false,
});
