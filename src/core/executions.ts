import { and, asc, desc, eq, gte, sql, type SQL } from 'drizzle-orm';
import { automations, executions, executionSteps, type ExecutionStatus } from '../db/schema/index.js';
import { withAccount, type Tx } from '../db/scope.js';
import type { Core } from './core.js';
import type { Account } from './accounts.js';
import type { AutomationRow } from './automations.js';
import { UserError } from './errors.js';
import { decodeCursor, encodeCursor, isUuid } from './ids.js';

/**
 * Executions as the account sees them: enqueueing one (a test run now; webhook deliveries next),
 * listing and reading them with their step attempts. The worker that runs them is
 * src/engine/worker.ts.
 */

export type ExecutionRow = typeof executions.$inferSelect;
export type StepRow = typeof executionSteps.$inferSelect;

/** The event as expressions see it under `trigger`. */
export interface TriggerEvent {
  body: unknown;
  headers: Record<string, string>;
  query: Record<string, string>;
  method: string;
}

/** The channel workers LISTEN on; an enqueue NOTIFYs it in the same transaction (sent at commit). */
export const EXECUTION_CHANNEL = 'switchboard_executions';

export async function notifyWorkers(tx: Tx | Core['db']): Promise<void> {
  await tx.execute(sql`select pg_notify(${EXECUTION_CHANNEL}, '')`);
}

/** Queue a run of the automation's current revision in its own account. */
export async function enqueueExecution(
  core: Core,
  account: Account,
  automation: AutomationRow,
  trigger: TriggerEvent,
  source: 'test' | 'webhook',
  createdBy: string | null,
): Promise<ExecutionRow> {
  return withAccount(core.db, [account.id], async (tx) => {
    const [row] = await tx
      .insert(executions)
      .values({ tenantId: core.tenantId, accountId: account.id, automationId: automation.id, revision: automation.revision, source, trigger, createdBy })
      .returning();
    await notifyWorkers(tx);
    return row!;
  });
}

export async function getExecution(core: Core, account: Account, id: string): Promise<{ row: ExecutionRow; steps: StepRow[]; automationName: string | null }> {
  if (!isUuid(id)) throw new UserError('The execution must be given by its id (list_executions shows them).');
  return withAccount(core.db, [account.id], async (tx) => {
    const [found] = await tx
      .select({ row: executions, name: automations.name })
      .from(executions)
      .leftJoin(automations, eq(automations.id, executions.automationId))
      .where(and(eq(executions.id, id.toLowerCase()), eq(executions.accountId, account.id)));
    if (!found) throw new UserError(`No execution ${id} in account '${account.slug}'.`, 'not_found');
    const steps = await tx
      .select()
      .from(executionSteps)
      .where(eq(executionSteps.executionId, found.row.id))
      .orderBy(asc(executionSteps.stepIndex), asc(executionSteps.attempt));
    return { row: found.row, steps, automationName: found.name };
  });
}

export interface ListExecutionsInput {
  automationId?: string | undefined;
  status?: ExecutionStatus | undefined;
  since?: Date | undefined;
  limit: number;
  cursor?: string | undefined;
}

/** An account's executions, newest first, one keyset page. */
export async function listExecutions(core: Core, account: Account, input: ListExecutionsInput) {
  const conds: (SQL | undefined)[] = [eq(executions.accountId, account.id)];
  if (input.automationId) conds.push(eq(executions.automationId, input.automationId));
  if (input.status) conds.push(eq(executions.status, input.status));
  if (input.since) conds.push(gte(executions.createdAt, input.since));
  if (input.cursor) {
    const [at, id] = decodeCursor(input.cursor, ['text', 'uuid']) as [string, string];
    if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(at) || Number.isNaN(Date.parse(at))) throw new UserError('The cursor is not valid: pass the next_cursor of a previous page, or omit it.');
    conds.push(sql`(${executions.createdAt}, ${executions.id}) < (${at}::timestamptz, ${id}::uuid)`);
  }
  const rows = await withAccount(core.db, [account.id], (tx) =>
    tx
      .select({
        row: executions,
        name: automations.name,
        // the cursor needs the time to the microsecond: a JS Date keeps only milliseconds
        at: sql<string>`to_char(${executions.createdAt} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`,
      })
      .from(executions)
      .leftJoin(automations, eq(automations.id, executions.automationId))
      .where(and(...conds))
      .orderBy(desc(executions.createdAt), desc(executions.id))
      .limit(input.limit + 1),
  );
  const page = rows.slice(0, input.limit);
  const last = page[page.length - 1];
  return {
    items: page,
    nextCursor: rows.length > input.limit && last ? encodeCursor([last.at, last.row.id]) : null,
  };
}

export const FINAL: readonly ExecutionStatus[] = ['succeeded', 'failed', 'filtered', 'cancelled'];

/**
 * Wait until an execution ends or `ms` pass, reading it in the account's scope (any worker, in
 * any process, may be running it); the row as last read.
 */
export async function awaitExecution(core: Core, account: Account, id: string, ms: number): Promise<ExecutionRow> {
  const deadline = Date.now() + ms;
  let pause = 5;
  for (;;) {
    const [row] = await withAccount(core.db, [account.id], (tx) => tx.select().from(executions).where(eq(executions.id, id)));
    if (!row) throw new UserError(`The execution ${id} no longer exists.`, 'not_found');
    if (FINAL.includes(row.status) || Date.now() >= deadline) return row;
    await new Promise((r) => setTimeout(r, Math.min(pause, Math.max(1, deadline - Date.now()))));
    pause = Math.min(pause * 2, 100);
  }
}
