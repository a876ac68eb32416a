import { and, desc, eq, gte, lt } from 'drizzle-orm';
import { auditLog, type AuditOutcome } from '../db/schema/index.js';
import type { Core } from './core.js';
import { withAccount } from '../db/scope.js';
import { decodeCursor, encodeCursor } from './ids.js';
import { TOKEN_PREFIX } from './crypto.js';

const SECRET_KEY = /pass(word|phrase)?|secret|token|credential|api[-_]?key|authorization|private[-_]?key|cookie|session[-_]?key/i;
const MAX_STRING = 200;
const MAX_DEPTH = 6;
export const REDACTED = '[redacted]';

/**
 * Tool arguments as they may be stored: values under secret-looking keys and anything shaped
 * like an API token are replaced, long strings are cut, deep structures are flattened.
 */
const TOKEN_LIKE = new RegExp(`${TOKEN_PREFIX}[A-Za-z0-9_-]*`, 'g');

/** Free text with anything shaped like an API token replaced (error messages echo what callers typed). */
export const scrubText = (s: string): string => s.replace(TOKEN_LIKE, REDACTED);

export function redact(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') {
    if (value.includes(TOKEN_PREFIX)) return REDACTED;
    return value.length > MAX_STRING ? `${value.slice(0, MAX_STRING)}… (${value.length} chars)` : value;
  }
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_DEPTH) return '[…]';
  if (Array.isArray(value)) return value.slice(0, 50).map((v) => redact(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value).slice(0, 50)) {
    out[k] = SECRET_KEY.test(k) && v !== null && v !== undefined ? REDACTED : redact(v, depth + 1);
  }
  return out;
}

export interface AuditEntryInput {
  actorUserId: string | null;
  actorEmail: string | null;
  homeAccountId: string | null;
  accountId: string | null;
  switchId: string | null;
  sessionId: string | null;
  tool: string;
  arguments: unknown;
  outcome: AuditOutcome;
  message: string | null;
  durationMs: number;
}

/** Written on the privileged path: a denied call is recorded against the account it tried to reach. */
export async function writeAudit(core: Core, e: AuditEntryInput): Promise<number> {
  const [row] = await core.db
    .insert(auditLog)
    .values({ ...e, tenantId: core.tenantId, arguments: redact(e.arguments ?? {}) as object, message: e.message ? scrubText(e.message).slice(0, 500) : null })
    .returning({ id: auditLog.id });
  return row!.id;
}

export interface AuditQuery {
  accountId: string;
  actorUserId?: string | undefined;
  tool?: string | undefined;
  outcome?: AuditOutcome | undefined;
  since?: Date | undefined;
  limit: number;
  cursor?: string | undefined;
}

export type AuditEntry = typeof auditLog.$inferSelect;

/** Newest first, inside the account's scope (row-level security applies). */
export async function listAudit(core: Core, q: AuditQuery): Promise<{ entries: AuditEntry[]; nextCursor: string | null }> {
  const conds = [eq(auditLog.tenantId, core.tenantId), eq(auditLog.accountId, q.accountId)];
  if (q.actorUserId) conds.push(eq(auditLog.actorUserId, q.actorUserId));
  if (q.tool) conds.push(eq(auditLog.tool, q.tool));
  if (q.outcome) conds.push(eq(auditLog.outcome, q.outcome));
  if (q.since) conds.push(gte(auditLog.at, q.since));
  if (q.cursor) conds.push(lt(auditLog.id, decodeCursor(q.cursor, ['number'])[0] as number));
  const rows = await withAccount(core.db, [q.accountId], (tx) =>
    tx.select().from(auditLog).where(and(...conds)).orderBy(desc(auditLog.id)).limit(q.limit + 1),
  );
  const page = rows.slice(0, q.limit);
  const last = page[page.length - 1];
  return { entries: page, nextCursor: rows.length > q.limit && last ? encodeCursor([last.id]) : null };
}
