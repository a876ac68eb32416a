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
     * the account's id when it was already known, null when there is none to look up). Such an
     * entry stays with the caller's account; the target it resolves to is recorded for tenant
     * admins only (src/mcp/define-tool.ts).
     */
    readonly outsider?: { key: string; accountId?: string | null },
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

/**
 * A database error that says nothing of the statement: a serialization failure or deadlock, an
 * operator intervention (a restart, a cancel), insufficient resources, or a lost connection (the
 * driver's CONNECTION_* and socket codes). Trying again later is right; recording it as the
 * outcome of the work is not. Anything else, a bug included, is not transient.
 */
export function transientDbError(err: unknown): boolean {
  const code = sqlState(err);
  if (code) return code === '40001' || code === '40P01' || /^(57|08|53)/.test(code);
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    const c = (e as { code?: unknown }).code;
    if (typeof c === 'string' && /^(CONNECTION_|ECONN|EPIPE|ETIMEDOUT)/.test(c)) return true;
  }
  return false;
}
/** a lock_timeout ran out */
export const LOCK_NOT_AVAILABLE = '55P03';
