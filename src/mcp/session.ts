import { randomUUID } from 'node:crypto';
import type { ActiveSwitch } from '../core/switches.js';

/** Per MCP session: which account the session has switched into, if any. */
export interface SessionState {
  id: string;
  switch: (ActiveSwitch & { slug: string }) | null;
}

export const newSession = (id: string = randomUUID()): SessionState => ({ id, switch: null });
