import { and, desc, eq, gte, lt, or, sql } from 'drizzle-orm';
import { accounts, auditLog, type AuditOutcome } from '../db/schema/index.js';
import type { Core } from './core.js';
import { withAccount } from '../db/scope.js';
import { decodeCursor, encodeCursor } from './ids.js';
import { REDACTED, TOKEN_PREFIX, scrubText, scrubUrl } from './crypto.js';
import type { Db } from '../db/client.js';

// keys whose values are secrets; ids (token_id, …) are references, not secrets
const SECRET_KEY = /pass(word|phrase)?|secret|token|credential|api[-_]?key|authorization|private[-_]?key|cookie|session[-_]?key/i;
const REFERENCE_KEY = /_id$/i;
const MAX_STRING = 200;
const MAX_KEY = 64;
const MAX_DEPTH = 6;

/**
 * Text as it may be stored in jsonb: cut at a code point (never inside a surrogate pair), lone
 * surrogates replaced, NUL removed — PostgreSQL refuses both, and an unstorable entry would
 * leave a call unaudited.
 */
function storable(s: string, max: number): string {
  const clean = s.toWellFormed().replaceAll('\0', '');
  const points = Array.from(clean);
  return points.length > max ? `${points.slice(0, max).join('')}… (${points.length} chars)` : clean;
}

/**
 * Tool arguments as they may be stored: values under secret-looking keys and anything shaped
 * like an API token (in a value or a key) are replaced, long strings are cut, deep structures
 * are flattened.
 */
export function redact(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return value.includes(TOKEN_PREFIX) ? REDACTED : storable(scrubUrl(value), MAX_STRING);
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_DEPTH) return '[…]';
  if (Array.isArray(value)) return value.slice(0, 50).map((v) => redact(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value).slice(0, 50)) {
    const key = k.includes(TOKEN_PREFIX) ? REDACTED : storable(k, MAX_KEY);
    const secret = SECRET_KEY.test(k) && !REFERENCE_KEY.test(k);
    out[key] = secret && v !== null && v !== undefined ? REDACTED : redact(v, depth + 1);
  }
  return out;
}

/** As an entry's account: the tenant's own log, kept in its system setup account. */
export const TENANT_LOG = Symbol('tenant log');

export interface AuditEntryInput {
  actorUserId: string | null;
  actorEmail: string | null;
  homeAccountId: string | null;
  /** the account whose log holds the entry, or TENANT_LOG for calls that act on the tenant */
  accountId: string | null | typeof TENANT_LOG;
  targetAccountId: string | null;
  switchId: string | null;
  sessionId: string | null;
  tool: string;
  arguments: unknown;
  outcome: AuditOutcome;
  message: string | null;
  durationMs: number;
}

/**
 * Written on the privileged path (a denied call has no scope to write in); given a core whose
 * db is the transaction of the call it records, the change and its entry commit together.
 */
export async function writeAudit(core: Core, e: AuditEntryInput): Promise<number> {
  const accountId =
    e.accountId === TENANT_LOG
      ? sql`(select ${accounts.id} from ${accounts} where ${accounts.tenantId} = ${core.tenantId} and ${accounts.kind} = 'system')`
      : e.accountId;
  const [row] = await core.db
    .insert(auditLog)
    .values({
      ...e,
      accountId,
      tenantId: core.tenantId,
      // a tool name as typed (an unknown tool) is caller text too
      tool: storable(e.tool.includes(TOKEN_PREFIX) ? REDACTED : e.tool, 100),
      arguments: redact(e.arguments ?? {}) as object,
      message: e.message ? storable(scrubText(e.message), 500) : null,
    })
    .returning({ id: auditLog.id });
  return row!.id;
}

export interface AuditQuery {
  /** the account whose log to read; null: the tenant's whole log (holders of the admin permission) */
  accountId: string | null;
  /** also the calls denied to outsiders that targeted this account (tenant admins only) */
  includeTargeted?: boolean;
  actorUserId?: string | undefined;
  tool?: string | undefined;
  outcome?: AuditOutcome | undefined;
  since?: Date | undefined;
  limit: number;
  cursor?: string | undefined;
}

export type AuditEntry = typeof auditLog.$inferSelect;

/**
 * Newest first, inside the account's scope (row-level security applies). With includeTargeted
 * the entries of other accounts' callers who were denied here are read too, on the privileged
 * path: a deliberate cross-account read that only tenant admins are given, as is the whole
 * tenant's log (accountId null).
 */
export async function listAudit(core: Core, q: AuditQuery): Promise<{ entries: AuditEntry[]; nextCursor: string | null }> {
  const account = q.accountId;
  const conds = [eq(auditLog.tenantId, core.tenantId)];
  if (account !== null) {
    conds.push(q.includeTargeted ? or(eq(auditLog.accountId, account), eq(auditLog.targetAccountId, account))! : eq(auditLog.accountId, account));
  }
  if (q.actorUserId) conds.push(eq(auditLog.actorUserId, q.actorUserId));
  if (q.tool) conds.push(eq(auditLog.tool, q.tool));
  if (q.outcome) conds.push(eq(auditLog.outcome, q.outcome));
  if (q.since) conds.push(gte(auditLog.at, q.since));
  if (q.cursor) conds.push(lt(auditLog.id, decodeCursor(q.cursor, ['id'])[0] as number));
  const query = (db: Db) => db.select().from(auditLog).where(and(...conds)).orderBy(desc(auditLog.id)).limit(q.limit + 1);
  const rows = account === null || q.includeTargeted ? await query(core.db) : await withAccount(core.db, [account], query);
  const page = rows.slice(0, q.limit);
  const last = page[page.length - 1];
  return { entries: page, nextCursor: rows.length > q.limit && last ? encodeCursor([last.id]) : null };
}
