import { and, desc, eq, isNull, sql } from 'drizzle-orm';
import { accounts, accountSwitches } from '../db/schema/index.js';
import type { Account } from './accounts.js';
import type { Core } from './core.js';
import { withAccount } from '../db/scope.js';

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
}

/**
 * The switch a session has open, if any: the newest one not ended (expired or not; the caller
 * decides). Read on every call of a session that has switched, so the session's state is always
 * what committed, never what a concurrent or failed call left in memory.
 */
export async function openSwitchOf(core: Core, sessionId: string, userId: string): Promise<OpenSwitch | null> {
  const [row] = await core.db
    .select({ sw: accountSwitches, account: accounts })
    .from(accountSwitches)
    .innerJoin(accounts, eq(accounts.id, accountSwitches.accountId))
    .where(and(eq(accountSwitches.sessionId, sessionId), eq(accountSwitches.userId, userId), isNull(accountSwitches.endedAt), eq(accounts.tenantId, core.tenantId)))
    .orderBy(desc(accountSwitches.startedAt))
    .limit(1);
  return row ? { id: row.sw.id, accountId: row.sw.accountId, reason: row.sw.reason, until: row.sw.expiresAt, account: row.account } : null;
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
