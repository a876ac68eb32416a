import type { Db } from '../db/client.js';
import type { Keyring } from './keyring.js';
import type { OutboundPolicy } from '../engine/outbound.js';
import type { ToolGate } from '../mcp/tool-gate.js';

/** What every core function needs: the database and the tenant it serves. */
export interface Core {
  db: Db;
  tenantId: string;
  /** default length of a Switch Account session, in minutes */
  switchMinutes: number;
  /** the master key's keyring: seals and opens credentials (src/core/keyring.ts) */
  keys: Keyring;
  /**
   * Whether credentials and passwords may be passed as tool arguments (clients without URL-mode
   * elicitation, scripts). Off: they can only be entered on the server's pages.
   */
  secretArgs: boolean;
  /** addresses http steps may call although private or loopback (SWITCHBOARD_OUTBOUND_ALLOW); none when absent */
  outbound?: OutboundPolicy;
  /** where this server is reached (SWITCHBOARD_PUBLIC_URL, else the address serve listens on): webhook URLs are shown under it */
  publicBaseUrl?: string;
  /** 401s in a row after which a connection is marked expired (SWITCHBOARD_EXPIRE_AFTER_401, default 3) */
  authFailureLimit?: number;
  /** deliveries one replay_webhook call replays at most (SWITCHBOARD_REPLAY_MAX, default 1,000) */
  replayMax?: number;
  /** admission to tool calls in this process (src/mcp/tool-gate.ts); none: unbounded (tests that build a core by hand) */
  toolGate?: ToolGate;
}

/** The same core, its queries on `tx` (a transaction, or a scope's transaction) instead of the pool. */
export const onTx = (core: Core, tx: unknown): Core => ({ ...core, db: tx as Core['db'] });
