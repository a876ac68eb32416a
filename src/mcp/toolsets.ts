import { UserError } from '../core/errors.js';

/**
 * Toolsets: every tool belongs to one (named where it is defined, `defineTool({toolset})`). A
 * session lists the tools of the toolsets it has on — chosen at connect time (`--toolsets`,
 * SWITCHBOARD_TOOLSETS, `?toolsets=` on HTTP) and turned on later by the model itself with
 * enable_toolset — so a conversation pays for the tools it uses, not for all of them.
 */
export const TOOLSETS = {
  accounts: 'Find accounts and switch into one and back (whoami, switch_account, list_accounts, get_account).',
  directory: 'Change the account directory: create accounts, link parents and children, suspend and resume (create_account, link_account, unlink_account, set_account_status).',
  operations: "An account's health, failing webhooks and their diagnosis, replays (check_health, debug_webhook, replay_webhook, list_failure_groups).",
  automations: 'Automations, their runs and account data: list, get, create, update, run, executions.',
  connections: 'App connections and apps: list, add, reconnect, share, rate limits, usage; credentials stay on a page.',
  templates: 'Templates deployed to many accounts: versions, plans, waves, deployments, rollback.',
  audit: 'The audit log of calls and switches.',
  admin: 'Tenant administration: users, permissions, API tokens, the encryption key.',
} as const;

export type Toolset = keyof typeof TOOLSETS;
/** list_toolsets and enable_toolset: always listed */
export const DISCOVERY = 'discovery';

export const TOOLSET_NAMES = Object.keys(TOOLSETS) as Toolset[];

/** What an operator needs in a conversation: find and switch accounts, check health, debug webhooks. */
export const DEFAULT_TOOLSETS: readonly Toolset[] = ['accounts', 'operations'];

/**
 * The toolsets a setting names: a comma-separated list, "all", or "default" (also combined:
 * "default,templates"). Empty or absent: the default. An unknown name is a clear error.
 */
export function parseToolsets(text: string | null | undefined): Set<Toolset> {
  const words = (text ?? '')
    .split(',')
    .map((w) => w.trim().toLowerCase())
    .filter(Boolean);
  if (!words.length) return new Set(DEFAULT_TOOLSETS);
  const out = new Set<Toolset>();
  for (const w of words) {
    if (w === 'all') TOOLSET_NAMES.forEach((t) => out.add(t));
    else if (w === 'default') DEFAULT_TOOLSETS.forEach((t) => out.add(t));
    else if (Object.hasOwn(TOOLSETS, w)) out.add(w as Toolset);
    else throw new UserError(`Unknown toolset '${w.slice(0, 40)}': the toolsets are ${TOOLSET_NAMES.join(', ')} (or all, default).`);
  }
  return out;
}

/** A yes/no setting ("true", "1", "yes", "on"; the rest is no). */
export const truthy = (v: string | null | undefined): boolean => /^(1|true|yes|on)$/i.test((v ?? '').trim());

/** How a session's tools are chosen: which toolsets, and whether it may change anything. */
export interface SurfaceOptions {
  toolsets?: Set<Toolset>;
  readOnly?: boolean;
}
