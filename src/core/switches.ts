import { and, desc, eq, gt, gte, isNull, lte, or, sql, type SQL } from 'drizzle-orm';
import { alias } from 'drizzle-orm/pg-core';
import { accounts, accountSwitches, auditLog, users } from '../db/schema/index.js';
import { visibleToUser, type Account } from './accounts.js';
import type { Core } from './core.js';
import { withAccount } from '../db/scope.js';
import { uuidList } from '../db/arrays.js';
import { decodeCursor, encodeCursor, microTime } from './ids.js';
import type { Db } from '../db/client.js';

/**
 * The longest a switch can last (switch_account takes up to 480 minutes, SWITCHBOARD_SWITCH_MINUTES
 * up to this): what bounds the history a query of open switches must look back through.
 */
export const MAX_SWITCH_MINUTES = 1440;

export interface ActiveSwitch {
  id: string;
  accountId: string;
  reason: string;
  until: Date;
}

/**
 * Record entering an account: both identities, the reason and the time box. Any switch still
 * open in the same session ends now (one session, one switch, even under concurrent calls); that
 * spans accounts, so it runs on the privileged path.
 */
export async function startSwitch(
  core: Core,
  s: { userId: string; homeAccountId: string; accountId: string; sessionId: string; reason: string; minutes: number },
): Promise<ActiveSwitch> {
  // serialize switches of one session; held until the calling transaction ends (call inside one)
  await core.db.execute(sql`select pg_advisory_xact_lock(hashtext(${'switchboard:switch:' + s.sessionId}))`);
  await endSessionSwitches(core, s.sessionId);
  const [row] = await withAccount(core.db, [s.accountId], (tx) =>
    tx
      .insert(accountSwitches)
      .values({
        userId: s.userId,
        homeAccountId: s.homeAccountId,
        accountId: s.accountId,
        sessionId: s.sessionId,
        reason: s.reason,
        expiresAt: sql`now() + make_interval(mins => ${s.minutes})`,
      })
      .returning(),
  );
  return { id: row!.id, accountId: row!.accountId, reason: row!.reason, until: row!.expiresAt };
}

/** A session's open switch with the account it entered, as the database has it now. */
export interface OpenSwitch extends ActiveSwitch {
  account: Account;
  /** set when someone else ended it (end_switch): who (their reason is list_switches' data) */
  endedBy: { email: string | null } | null;
}

/**
 * The switch a session has open, if any: the newest one not ended (expired or not; the caller
 * decides). Read on every call of a session that has switched, so the session's state is always
 * what committed, never what a concurrent or failed call left in memory.
 */
export async function openSwitchOf(core: Core, sessionId: string, userId: string): Promise<OpenSwitch | null> {
  const ender = alias(users, 'ender');
  const [row] = await core.db
    .select({ sw: accountSwitches, account: accounts, enderEmail: ender.email })
    .from(accountSwitches)
    .innerJoin(accounts, eq(accounts.id, accountSwitches.accountId))
    .leftJoin(ender, eq(ender.id, accountSwitches.endedBy))
    .where(and(eq(accountSwitches.sessionId, sessionId), eq(accountSwitches.userId, userId), isNull(accountSwitches.endedAt), eq(accounts.tenantId, core.tenantId)))
    .orderBy(desc(accountSwitches.startedAt))
    .limit(1);
  if (!row) return null;
  const endedBy = row.sw.endedBy !== null || row.sw.endReason !== null ? { email: row.enderEmail } : null;
  return { id: row.sw.id, accountId: row.sw.accountId, reason: row.sw.reason, until: row.sw.expiresAt, account: row.account, endedBy };
}

/** Close a switch (return home, expiry noticed, or access lost). Idempotent. */
export async function endSwitch(core: Core, sw: Pick<ActiveSwitch, 'id' | 'accountId'>): Promise<void> {
  await withAccount(core.db, [sw.accountId], (tx) =>
    tx
      .update(accountSwitches)
      .set({ endedAt: sql`least(now(), ${accountSwitches.expiresAt})` })
      .where(and(eq(accountSwitches.id, sw.id), isNull(accountSwitches.endedAt))),
  );
}

/** End every open switch of a session (returning home). */
export async function endSessionSwitches(core: Core, sessionId: string): Promise<void> {
  await core.db
    .update(accountSwitches)
    .set({ endedAt: sql`least(now(), ${accountSwitches.expiresAt})` })
    .where(and(eq(accountSwitches.sessionId, sessionId), isNull(accountSwitches.endedAt)));
}

/** A switch as the access review reads it (list_switches). */
export interface SwitchRecord {
  id: string;
  user: { id: string; email: string };
  homeAccountId: string;
  /** null when the reader may not see the switcher's home account (its id is no secret: audit entries carry it) */
  homeAccount: Pick<Account, 'id' | 'slug' | 'name'> | null;
  account: Pick<Account, 'id' | 'slug' | 'name'>;
  sessionId: string;
  reason: string;
  startedAt: Date;
  expiresAt: Date;
  /** when it ended: returned from, ended by someone else, or (not yet noticed by its session) expired; null while active */
  endedAt: Date | null;
  active: boolean;
  endedBy: { id: string | null; email: string | null; reason: string | null } | null;
  /** tool calls made under it, allowed or not, wherever their audit entries are kept */
  calls: number;
}

export interface SwitchQuery {
  /** one account's switches (read under its row-level security); omitted: the whole tenant */
  accountId?: string;
  userId?: string;
  /** switches open at or after this time */
  since?: Date;
  active?: boolean;
  limit: number;
  cursor?: string;
  /** whose view it is: home accounts are named only where this user may see them; 'all' for the tenant view and Switch Account */
  reader: { userId: string } | 'all';
}

/**
 * Switches newest first, with their users, accounts and the number of calls made under each:
 * one query for the page and one for the counts (never one per switch). An account's page is
 * read under its row-level security; the tenant's on the privileged path, filtered by tenant.
 */
export async function listSwitches(core: Core, q: SwitchQuery): Promise<{ switches: SwitchRecord[]; nextCursor: string | null }> {
  const s = accountSwitches;
  const home = alias(accounts, 'home');
  const who = alias(users, 'who');
  const ender = alias(users, 'ender');
  const conds: (SQL | undefined)[] = [eq(accounts.tenantId, core.tenantId)];
  if (q.accountId) conds.push(eq(s.accountId, q.accountId));
  if (q.userId) conds.push(eq(s.userId, q.userId));
  // open at or after `since`: it ends (ended_at, else expires_at; ended_at is never later) at or after it
  // a switch lasts at most MAX_SWITCH_MINUTES: bounding started_at lets the (started_at) indexes
  // skip the history before it
  if (q.since) {
    conds.push(gte(s.expiresAt, q.since), or(isNull(s.endedAt), gte(s.endedAt, q.since)));
    conds.push(gte(s.startedAt, new Date(q.since.getTime() - MAX_SWITCH_MINUTES * 60_000)));
  }
  if (q.active === true) {
    conds.push(isNull(s.endedAt), gt(s.expiresAt, sql`now()`), gt(s.startedAt, sql`now() - make_interval(mins => ${MAX_SWITCH_MINUTES})`));
  }
  if (q.active === false) conds.push(or(sql`${s.endedAt} is not null`, lte(s.expiresAt, sql`now()`)));
  if (q.cursor) {
    const [at, id] = decodeCursor(q.cursor, ['time', 'uuid']) as [string, string];
    conds.push(sql`(${s.startedAt}, ${s.id}) < (${at}::timestamptz, ${id}::uuid)`);
  }
  const page = (db: Db) =>
    db
      .select({
        sw: s,
        key: microTime(s.startedAt),
        now: sql<Date>`now()`.mapWith((v: string | Date) => new Date(v)),
        account: { id: accounts.id, slug: accounts.slug, name: accounts.name },
        home: { id: home.id, slug: home.slug, name: home.name },
        userEmail: who.email,
        enderEmail: ender.email,
      })
      .from(s)
      .innerJoin(accounts, eq(accounts.id, s.accountId))
      .innerJoin(home, eq(home.id, s.homeAccountId))
      .innerJoin(who, eq(who.id, s.userId))
      .leftJoin(ender, eq(ender.id, s.endedBy))
      .where(and(...conds))
      .orderBy(desc(s.startedAt), desc(s.id))
      .limit(q.limit + 1);
  const rows = q.accountId ? await withAccount(core.db, [q.accountId], page) : await page(core.db);
  const shown = rows.slice(0, q.limit);
  // the number of calls is not the account's data: counted on the privileged path, so a call
  // under the switch that the tenant's log keeps (a tenant-level tool) counts too
  const counts = new Map<string, number>();
  let homesShown: Set<string> | null = null;
  if (shown.length && q.reader !== 'all') {
    const homes = [...new Set(shown.map((r) => r.sw.homeAccountId))];
    const seen = await core.db
      .select({ id: accounts.id })
      .from(accounts)
      .where(and(eq(accounts.tenantId, core.tenantId), sql`${accounts.id} = any(${uuidList(homes)}::uuid[])`, visibleToUser(q.reader.userId)));
    homesShown = new Set(seen.map((r) => r.id));
  }
  if (shown.length) {
    const counted = await core.db
      .select({ switchId: auditLog.switchId, n: sql<number>`count(*)::int` })
      .from(auditLog)
      .where(and(eq(auditLog.tenantId, core.tenantId), sql`${auditLog.switchId} = any(${uuidList(shown.map((r) => r.sw.id))}::uuid[])`))
      .groupBy(auditLog.switchId);
    for (const c of counted) counts.set(c.switchId!, c.n);
  }
  const switches = shown.map(({ sw, now, account, home, userEmail, enderEmail }): SwitchRecord => {
    const expired = sw.expiresAt.getTime() <= now.getTime();
    return {
      id: sw.id,
      user: { id: sw.userId, email: userEmail },
      homeAccountId: sw.homeAccountId,
      homeAccount: homesShown === null || homesShown.has(sw.homeAccountId) ? home : null,
      account,
      sessionId: sw.sessionId,
      reason: sw.reason,
      startedAt: sw.startedAt,
      expiresAt: sw.expiresAt,
      endedAt: sw.endedAt ?? (expired ? sw.expiresAt : null),
      active: sw.endedAt === null && !expired,
      endedBy: sw.endedBy !== null || sw.endReason !== null ? { id: sw.endedBy, email: enderEmail, reason: sw.endReason } : null,
      calls: counts.get(sw.id) ?? 0,
    };
  });
  const last = shown[shown.length - 1];
  return { switches, nextCursor: rows.length > q.limit && last ? encodeCursor([last.key, last.sw.id]) : null };
}

/** A switch of this tenant by id, with the account it entered; null when there is none. */
export async function findSwitch(core: Core, id: string): Promise<{ id: string; userId: string; account: Account; endedAt: Date | null; expiresAt: Date; active: boolean } | null> {
  const [row] = await core.db
    .select({ sw: accountSwitches, account: accounts, active: sql<boolean>`${accountSwitches.endedAt} is null and ${accountSwitches.expiresAt} > now()` })
    .from(accountSwitches)
    .innerJoin(accounts, eq(accounts.id, accountSwitches.accountId))
    .where(and(eq(accountSwitches.id, id), eq(accounts.tenantId, core.tenantId)));
  return row ? { id: row.sw.id, userId: row.sw.userId, account: row.account, endedAt: row.sw.endedAt, expiresAt: row.sw.expiresAt, active: row.active } : null;
}

/**
 * End another session's switch from outside it (end_switch). Its time box is cut to now, with who
 * ended it and why; the session notices on its next call (define-tool's sessionAccount), which
 * closes the switch there and tells the model why it is back home. False when it was no longer active.
 */
export async function endSwitchFor(core: Core, sw: { id: string; accountId: string }, by: { userId: string; reason: string | null }): Promise<Date | null> {
  const [row] = await withAccount(core.db, [sw.accountId], (tx) =>
    tx
      .update(accountSwitches)
      .set({ expiresAt: sql`now()`, endedBy: by.userId, endReason: by.reason })
      // ended_by: a second end_switch whose transaction began before the first committed (now() is
      // its start) re-reads the row once the first commits, and finds it ended
      .where(and(eq(accountSwitches.id, sw.id), isNull(accountSwitches.endedAt), isNull(accountSwitches.endedBy), gt(accountSwitches.expiresAt, sql`now()`)))
      .returning({ at: accountSwitches.expiresAt }),
  );
  return row?.at ?? null;
}
