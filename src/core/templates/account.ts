import { and, eq } from 'drizzle-orm';
import { accounts } from '../../db/schema/index.js';
import type { Core } from '../core.js';
import type { Account } from '../accounts.js';
import { UserError } from '../errors.js';

/**
 * The tenant's templates account: where templates, their versions and deployments live. Made at
 * `init` (and by drizzle/0025 for tenants made before). Builders reach it by a membership, or with
 * Switch Account; the template tools act in it whatever account the session switched into.
 */
export async function templatesAccount(core: Core): Promise<Account> {
  const [row] = await core.db
    .select()
    .from(accounts)
    .where(and(eq(accounts.tenantId, core.tenantId), eq(accounts.kind, 'templates')))
    .limit(1);
  if (!row) throw new UserError('This tenant has no templates account; run the migrations (start the server once) to create it.', 'not_found');
  return row;
}
