import { and, count, eq, gt, lt, sql } from 'drizzle-orm';
import { passwordFailures, users } from '../db/schema/index.js';
import type { Core } from './core.js';
import { verifyPassword } from './crypto.js';
import { AccessDenied, UserError } from './errors.js';

/** Failed password re-verifications allowed per user in the window. */
export const MAX_PASSWORD_FAILURES = 5;
export const PASSWORD_WINDOW_MINUTES = 15;

/**
 * Re-verify a user's password before showing decrypted credentials. At most
 * MAX_PASSWORD_FAILURES failures per user in PASSWORD_WINDOW_MINUTES: past that every attempt is
 * refused without checking the password. Attempts of one user are serialized, so parallel
 * guesses cannot slip past the count. Failures are committed on their own (never rolled back
 * with the caller's work). Throws AccessDenied (wrong password, locked) or UserError (no password).
 */
export async function reverifyPassword(core: Core, userId: string, password: string): Promise<void> {
  const outcome = await core.db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${'switchboard:reverify:' + userId}))`);
    const [recent] = await tx
      .select({ n: count() })
      .from(passwordFailures)
      .where(and(eq(passwordFailures.userId, userId), gt(passwordFailures.at, sql`now() - make_interval(mins => ${PASSWORD_WINDOW_MINUTES})`)));
    const failures = Number(recent?.n ?? 0);
    if (failures >= MAX_PASSWORD_FAILURES) return { ok: false as const, locked: true, left: 0 };
    const [u] = await tx
      .select({ hash: users.passwordHash })
      .from(users)
      .where(and(eq(users.id, userId), eq(users.tenantId, core.tenantId), eq(users.status, 'active')));
    if (!u?.hash) return { ok: false as const, noPassword: true };
    if (await verifyPassword(u.hash, password)) {
      // failures older than the window count for nothing: drop them
      await tx.delete(passwordFailures).where(and(eq(passwordFailures.userId, userId), lt(passwordFailures.at, sql`now() - make_interval(mins => ${PASSWORD_WINDOW_MINUTES})`)));
      return { ok: true as const };
    }
    await tx.insert(passwordFailures).values({ userId });
    return { ok: false as const, locked: false, left: MAX_PASSWORD_FAILURES - failures - 1 };
  });
  if (outcome.ok) return;
  if ('noPassword' in outcome) {
    throw new UserError(
      'Viewing credentials needs your password, and your user has none (or is disabled): an operator sets one with `switchboard set-password --email <you>`.',
    );
  }
  if (outcome.locked) {
    throw new AccessDenied(`Access denied: too many wrong passwords; try again in ${PASSWORD_WINDOW_MINUTES} minutes.`);
  }
  throw new AccessDenied(`Access denied: the password is not correct (${outcome.left} attempt${outcome.left === 1 ? '' : 's'} left in the next ${PASSWORD_WINDOW_MINUTES} minutes).`);
}
