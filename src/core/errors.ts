/**
 * Errors the caller can act on. Their message is one sentence meant for the caller (and the
 * model): it must never contain a secret or data of an account the caller may not see.
 */
export class UserError extends Error {
  constructor(message: string, readonly code: 'invalid' | 'not_found' | 'conflict' = 'invalid') {
    super(message);
    this.name = 'UserError';
  }
}

/** The access guard said no. The message names what is missing, nothing of the target. */
export class AccessDenied extends Error {
  constructor(
    message: string,
    /**
     * Set when the caller has no access at all to the account they named: what they typed (and
     * the account's id when it was already known). Such an entry stays with the caller's account;
     * the target it resolves to is recorded for tenant admins only (src/mcp/define-tool.ts).
     */
    readonly outsider?: { key: string; accountId?: string },
  ) {
    super(message);
    this.name = 'AccessDenied';
  }
}

/** SQLSTATE of a driver error, looking through Drizzle's wrapper. */
export function sqlState(err: unknown): string | undefined {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

export const UNIQUE_VIOLATION = '23505';
/** a lock_timeout ran out */
export const LOCK_NOT_AVAILABLE = '55P03';
