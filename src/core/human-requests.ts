import { randomBytes, randomUUID } from 'node:crypto';
import { and, eq, gt, lt, sql } from 'drizzle-orm';
import { humanRequests, type HumanRequestKind } from '../db/schema/index.js';
import type { Core } from './core.js';
import { hashToken } from './crypto.js';

/**
 * One-time, short-lived links to the server's pages, where a person (not the model) enters
 * credentials or re-verifies their password to view them: the MCP URL-mode elicitation flow.
 *
 *   tool call → createHumanRequest → elicitation/create {mode: "url", url} → the person acts on
 *   the page (src/http/pages.ts) → the request turns `submitted` (credentials, sealed here) or
 *   `done` (viewed) → the waiting tool call takes the result → notifications/elicitation/complete
 *
 * The link carries 256 random bits; only their SHA-256 is stored. Requests live in PostgreSQL,
 * so the page and the waiting call may be served by different processes.
 */

export const HUMAN_REQUEST_MINUTES = 10;
export type HumanRequest = typeof humanRequests.$inferSelect;
export type HumanSubject = HumanRequest['subject'];

const requestAad = (tenantId: string, id: string) => `switchboard/human-request/v1|tenant:${tenantId}|request:${id}`;

export async function createHumanRequest(
  core: Core,
  r: { accountId: string; userId: string; kind: HumanRequestKind; subject: HumanSubject },
): Promise<{ id: string; token: string }> {
  const id = randomUUID();
  const token = randomBytes(32).toString('base64url');
  // housekeeping: requests an hour past their expiry are of no use to anyone (nor their sealed values)
  await core.db.delete(humanRequests).where(and(eq(humanRequests.tenantId, core.tenantId), lt(humanRequests.expiresAt, sql`now() - interval '1 hour'`)));
  await core.db.insert(humanRequests).values({
    id,
    tenantId: core.tenantId,
    accountId: r.accountId,
    userId: r.userId,
    kind: r.kind,
    tokenHash: hashToken(token),
    subject: r.subject,
    expiresAt: sql`now() + make_interval(mins => ${HUMAN_REQUEST_MINUTES})` as unknown as Date,
  });
  return { id, token };
}

/** The pending, unexpired request a link token opens, or null (used, expired, unknown: all the same). */
export async function openHumanRequest(core: Core, token: string, kind: HumanRequestKind): Promise<HumanRequest | null> {
  if (!/^[A-Za-z0-9_-]{43}$/.test(token)) return null;
  const [row] = await core.db
    .select()
    .from(humanRequests)
    .where(
      and(
        eq(humanRequests.tokenHash, hashToken(token)),
        eq(humanRequests.tenantId, core.tenantId),
        eq(humanRequests.kind, kind),
        eq(humanRequests.status, 'pending'),
        gt(humanRequests.expiresAt, sql`now()`),
      ),
    );
  return row ?? null;
}

/** Store entered credentials for the waiting call (sealed, bound to the request); false when no longer pending. */
export async function submitCredentials(core: Core, req: HumanRequest, credentials: Record<string, string>): Promise<boolean> {
  const key = await core.keys.activeKey(core);
  const sealed = await core.keys.sealWith(key, requestAad(core.tenantId, req.id), JSON.stringify(credentials));
  const rows = await core.db
    .update(humanRequests)
    .set({ status: 'submitted', sealed })
    .where(and(eq(humanRequests.id, req.id), eq(humanRequests.status, 'pending'), gt(humanRequests.expiresAt, sql`now()`)))
    .returning({ id: humanRequests.id });
  return rows.length === 1;
}

/** Close a request (viewed, declined, timed out); false when it was not pending. */
export async function finishHumanRequest(core: Core, id: string, status: 'done' | 'cancelled'): Promise<boolean> {
  const rows = await core.db
    .update(humanRequests)
    .set({ status, sealed: null })
    .where(and(eq(humanRequests.id, id), eq(humanRequests.status, 'pending')))
    .returning({ id: humanRequests.id });
  return rows.length === 1;
}

export type WaitOutcome = { status: 'submitted'; credentials: Record<string, string> } | { status: 'done' } | { status: 'cancelled' | 'expired' };

/**
 * Wait (polling) until the person has acted on the page, the link expired, or `signal` aborted.
 * Submitted credentials are taken exactly once: the row is cleared as they are read.
 */
export async function waitForHuman(
  core: Core,
  id: string,
  signal: AbortSignal,
  opts: { pollMs?: number; onWaiting?: () => Promise<void>; everyMs?: number } = {},
): Promise<WaitOutcome> {
  const pollMs = opts.pollMs ?? 200;
  let lastTick = Date.now();
  for (;;) {
    if (opts.onWaiting && Date.now() - lastTick >= (opts.everyMs ?? 10_000)) {
      lastTick = Date.now();
      await opts.onWaiting().catch(() => {});
    }
    const [row] = await core.db
      .select({ status: humanRequests.status, sealed: humanRequests.sealed, expired: sql<boolean>`${humanRequests.expiresAt} <= now()` })
      .from(humanRequests)
      .where(eq(humanRequests.id, id));
    if (!row) return { status: 'cancelled' };
    if (row.status === 'submitted') {
      const taken = await core.db
        .update(humanRequests)
        .set({ status: 'done', sealed: null })
        .where(and(eq(humanRequests.id, id), eq(humanRequests.status, 'submitted')))
        .returning({ id: humanRequests.id });
      if (taken.length !== 1 || !row.sealed) return { status: 'cancelled' };
      const plain = await core.keys.open(core, row.sealed, requestAad(core.tenantId, id));
      return { status: 'submitted', credentials: JSON.parse(plain) as Record<string, string> };
    }
    if (row.status === 'done') return { status: 'done' };
    if (row.status === 'cancelled') return { status: 'cancelled' };
    if (row.expired || signal.aborted) {
      await finishHumanRequest(core, id, 'cancelled');
      return { status: signal.aborted ? 'cancelled' : 'expired' };
    }
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, pollMs);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}
