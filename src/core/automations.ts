import { createHash } from 'node:crypto';
import { randomUUID } from 'node:crypto';
import { and, asc, desc, eq, ilike, sql, type SQL } from 'drizzle-orm';
import { accounts, automationConnections, automationRevisions, automations, connections } from '../db/schema/index.js';
import { withAccount, type Tx } from '../db/scope.js';
import { rowsOf } from '../db/client.js';
import type { Core } from './core.js';
import type { Account } from './accounts.js';
import { validateDefinition, type Definition } from './automation-definition.js';
import { sharingAccounts } from './connections.js';
import { hashToken } from './crypto.js';
import { webhookToken } from './webhooks.js';
import { UserError, sqlState, UNIQUE_VIOLATION } from './errors.js';
import { decodeCursor, encodeCursor, isUuid, likeEscape } from './ids.js';

/**
 * Automations of an account and their immutable revisions. Every create and update validates the
 * whole definition (core/automation-definition.ts) and writes a new revision; the automation row
 * points at the current one. All reads and writes run in the account's scope (RLS).
 */

export type AutomationRow = typeof automations.$inferSelect;
export type RevisionRow = typeof automationRevisions.$inferSelect;

export const MAX_NAME = 200;
export const MAX_DESCRIPTION = 2000;

function cleanName(name: string): string {
  const n = name.trim();
  // invisible characters alone (zero-width spaces, BOM) are no name either
  if (!/[^\s\u200B-\u200F\u2060\uFEFF]/u.test(n)) throw new UserError('The automation name must not be empty.');
  if (isUuid(n)) throw new UserError('An automation name cannot be an id: automations are found by id or name, and it would hide another.');
  return n;
}

function uniqueName(err: unknown, account: Account, name: string): never {
  if (sqlState(err) === UNIQUE_VIOLATION) {
    throw new UserError(`Account '${account.slug}' already has an automation named '${name}': pick another name.`, 'conflict');
  }
  throw err;
}

/** Which connections the automation uses: replaced as a whole on every revision. */
async function setUsage(tx: Tx, account: Account, automationId: string, connectionIds: string[]): Promise<void> {
  await tx.delete(automationConnections).where(eq(automationConnections.automationId, automationId));
  if (connectionIds.length) {
    await tx.insert(automationConnections).values(connectionIds.map((connectionId) => ({ automationId, connectionId, accountId: account.id })));
  }
}

export interface CreateAutomationInput {
  name: string;
  description?: string | undefined;
  enabled?: boolean | undefined;
  definition: Definition;
  createdBy: string | null;
}

export async function createAutomation(core: Core, account: Account, input: CreateAutomationInput): Promise<{ row: AutomationRow; revision: RevisionRow }> {
  const name = cleanName(input.name);
  const { definition, connectionIds } = await validateDefinition(core, account, input.definition);
  const id = randomUUID();
  try {
    return await withAccount(core.db, [account.id], async (tx) => {
      const [row] = await tx
        .insert(automations)
        .values({
          id,
          webhookTokenHash: hashToken(webhookToken(core, { id, webhookGeneration: 1 })),
          tenantId: core.tenantId,
          accountId: account.id,
          name,
          description: input.description?.trim() ?? '',
          enabled: input.enabled ?? true,
          revision: 1,
          createdBy: input.createdBy,
        })
        .returning();
      const [revision] = await tx
        .insert(automationRevisions)
        .values({ automationId: row!.id, revision: 1, tenantId: core.tenantId, accountId: account.id, name, definition, note: 'created', createdBy: input.createdBy })
        .returning();
      await setUsage(tx, account, row!.id, connectionIds);
      return { row: row!, revision: revision! };
    });
  } catch (err) {
    uniqueName(err, account, name);
  }
}

export interface UpdateAutomationInput {
  name?: string | undefined;
  description?: string | undefined;
  /** the parts given replace the current revision's; the rest is kept */
  definition: Partial<Definition>;
  note?: string | undefined;
  by: string | null;
}

/**
 * A new revision from the current one and the parts given. The merge reads the current revision
 * before the transaction (validation resolves connections in scopes of its own); the write then
 * locks the row and checks that the revision is still the one merged onto — if a concurrent
 * update got there first, the merge is done again on top of it, so no update is lost.
 */
export async function updateAutomation(core: Core, account: Account, row: AutomationRow, input: UpdateAutomationInput): Promise<{ row: AutomationRow; revision: RevisionRow }> {
  let base = row;
  for (let tries = 0; ; tries++) {
    const current = await getRevision(core, account, base.id, base.revision);
    const merged: Definition = { ...(current.definition as Definition), ...stripUndefined(input.definition) };
    const name = input.name !== undefined ? cleanName(input.name) : base.name;
    const { definition, connectionIds } = await validateDefinition(core, account, merged);
    let result: { row: AutomationRow; revision: RevisionRow } | { moved: AutomationRow };
    try {
      result = await withAccount(core.db, [account.id], async (tx) => {
        const [locked] = await tx.select().from(automations).where(eq(automations.id, base.id)).for('update');
        if (!locked) throw new UserError(`The automation ${base.id} no longer exists.`, 'not_found');
        if (locked.revision !== base.revision) return { moved: locked };
        const next = locked.revision + 1;
        const [revision] = await tx
          .insert(automationRevisions)
          .values({ automationId: base.id, revision: next, tenantId: core.tenantId, accountId: account.id, name, definition, note: input.note?.trim() ?? '', createdBy: input.by })
          .returning();
        const [updated] = await tx
          .update(automations)
          .set({ name, revision: next, updatedAt: sql`now()`, ...(input.description !== undefined ? { description: input.description.trim() } : {}) })
          .where(eq(automations.id, base.id))
          .returning();
        await setUsage(tx, account, base.id, connectionIds);
        return { row: updated!, revision: revision! };
      });
    } catch (err) {
      uniqueName(err, account, name);
    }
    if (!('moved' in result)) return result;
    if (tries >= 20) throw new UserError(`The automation ${base.id} is being changed by others at the same time: try again.`, 'conflict');
    base = result.moved;
  }
}

const stripUndefined = <T extends object>(o: T): Partial<T> =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;

/** An automation of `account` by id or exact name (case-insensitive); a clear error when there is none. */
export async function resolveAutomation(core: Core, account: Account, key: string): Promise<AutomationRow> {
  const k = key.trim();
  const match = isUuid(k) ? eq(automations.id, k.toLowerCase()) : eq(sql`lower(${automations.name})`, k.toLowerCase());
  const [row] = await withAccount(core.db, [account.id], (tx) =>
    tx.select().from(automations).where(and(eq(automations.accountId, account.id), match)).limit(1),
  );
  if (!row) throw new UserError(`No automation '${k.slice(0, 100)}' in account '${account.slug}': list_automations shows them.`, 'not_found');
  return row;
}

export async function getRevision(core: Core, account: Account, automationId: string, revision: number): Promise<RevisionRow> {
  const [row] = await withAccount(core.db, [account.id], (tx) =>
    tx
      .select()
      .from(automationRevisions)
      .where(and(eq(automationRevisions.automationId, automationId), eq(automationRevisions.revision, revision), eq(automationRevisions.accountId, account.id))),
  );
  if (!row) throw new UserError(`The automation has no revision ${revision}.`, 'not_found');
  return row;
}

/** Definitions by automation and revision: a revision never changes, so it is read once per process (bounded). */
const definitions = new Map<string, Definition>();

/**
 * The definition of one revision, from the cache or read in the account's scope — through `tx`
 * when the caller is already inside that scope's transaction.
 */
export async function definitionOf(core: Core, accountId: string, automationId: string, revision: number, tx?: Tx): Promise<Definition> {
  const key = `${automationId}:${revision}`;
  const cached = definitions.get(key);
  if (cached) return cached;
  const read = (t: Tx) =>
    t
      .select({ definition: automationRevisions.definition })
      .from(automationRevisions)
      .where(and(eq(automationRevisions.automationId, automationId), eq(automationRevisions.revision, revision)));
  const [rev] = tx ? await read(tx) : await withAccount(core.db, [accountId], read);
  if (!rev) throw new Error(`revision ${revision} of automation ${automationId} is missing`);
  if (definitions.size > 10_000) definitions.clear();
  const def = rev.definition as Definition;
  definitions.set(key, def);
  return def;
}

/** The latest revisions of an automation, newest first (number, note, author, time). */
export async function revisionHistory(core: Core, account: Account, automationId: string, limit = 10) {
  return withAccount(core.db, [account.id], (tx) =>
    tx
      .select({ revision: automationRevisions.revision, note: automationRevisions.note, createdBy: automationRevisions.createdBy, createdAt: automationRevisions.createdAt })
      .from(automationRevisions)
      .where(and(eq(automationRevisions.automationId, automationId), eq(automationRevisions.accountId, account.id)))
      .orderBy(desc(automationRevisions.revision))
      .limit(limit),
  );
}

/**
 * The connections an automation uses and the account each belongs to, read in the account's
 * scope: a parent's or the system account's connection shows only while it is still shared.
 */
export async function usedConnections(core: Core, account: Account, automationId: string) {
  const sharedFrom = (await sharingAccounts(core, account)).ids;
  return withAccount(
    core.db,
    [account.id],
    (tx) =>
      tx
        .select({
          id: connections.id,
          app: connections.app,
          name: connections.name,
          status: connections.status,
          owner: { id: accounts.id, slug: accounts.slug, name: accounts.name },
        })
        .from(automationConnections)
        .innerJoin(connections, eq(connections.id, automationConnections.connectionId))
        .innerJoin(accounts, eq(accounts.id, connections.accountId))
        .where(and(eq(automationConnections.automationId, automationId), eq(automationConnections.accountId, account.id)))
        .orderBy(asc(connections.app), asc(connections.name)),
    sharedFrom,
  );
}

export type AutomationState = 'enabled' | 'disabled' | 'paused';
/** What the automation does with an event now: runs it, or records it without running (disabled by a person, paused by a connection). */
export const stateOf = (row: Pick<AutomationRow, 'enabled' | 'status'>): AutomationState =>
  !row.enabled ? 'disabled' : row.status === 'paused' ? 'paused' : 'enabled';

export interface ListAutomationsInput {
  query?: string | undefined;
  state?: AutomationState | undefined;
  limit: number;
  cursor?: string | undefined;
}

/** An account's automations by name, one keyset page. */
export async function listAutomations(
  core: Core,
  account: Account,
  input: ListAutomationsInput,
): Promise<{ items: { row: AutomationRow; definition: unknown }[]; nextCursor: string | null }> {
  const conds: (SQL | undefined)[] = [eq(automations.accountId, account.id)];
  const q = input.query?.trim();
  if (q) conds.push(ilike(automations.name, `%${likeEscape(q)}%`));
  if (input.state === 'disabled') conds.push(eq(automations.enabled, false));
  if (input.state === 'paused') conds.push(eq(automations.enabled, true), eq(automations.status, 'paused'));
  if (input.state === 'enabled') conds.push(eq(automations.enabled, true), eq(automations.status, 'active'));
  if (input.cursor) {
    const [lname, id] = decodeCursor(input.cursor, ['text', 'uuid']) as [string, string];
    conds.push(sql`(lower(${automations.name}), ${automations.id}) > (${lname}, ${id})`);
  }
  const rows = await withAccount(core.db, [account.id], (tx) =>
    tx
      .select({ row: automations, definition: automationRevisions.definition })
      .from(automations)
      .innerJoin(automationRevisions, and(eq(automationRevisions.automationId, automations.id), eq(automationRevisions.revision, automations.revision)))
      .where(and(...conds))
      .orderBy(sql`lower(${automations.name})`, asc(automations.id))
      .limit(input.limit + 1),
  );
  const page = rows.slice(0, input.limit);
  const last = page[page.length - 1];
  return { items: page, nextCursor: rows.length > input.limit && last ? encodeCursor([last.row.name.toLowerCase(), last.row.id]) : null };
}

export async function setAutomationEnabled(core: Core, account: Account, row: AutomationRow, enabled: boolean): Promise<{ row: AutomationRow; changed: boolean }> {
  const [updated] = await withAccount(core.db, [account.id], (tx) =>
    tx
      .update(automations)
      .set({ enabled, updatedAt: sql`now()` })
      .where(and(eq(automations.id, row.id), eq(automations.enabled, !enabled)))
      .returning(),
  );
  return updated ? { row: updated, changed: true } : { row, changed: false };
}

/** Delete an automation and its revisions. */
/**
 * What deleting an automation takes with it: its runs of the last 24 h and those queued or
 * running now, in every account it runs in (a routed automation's runs live in the children).
 * The confirm token names the automation as it is now (its revision and last change): an update
 * since the plan makes it stale.
 */
export async function deletionPlan(core: Core, row: AutomationRow): Promise<{ recent: number; inFlight: number; token: string }> {
  const rows = await core.db.execute(sql`
    select count(*) filter (where created_at > now() - interval '24 hours')::int as recent,
           count(*) filter (where status in ('queued', 'running'))::int as in_flight
    from executions where automation_id = ${row.id}`);
  const [c] = rowsOf<{ recent: number; in_flight: number }>(rows);
  const token = `del_${createHash('sha256').update(JSON.stringify([row.id, row.revision, row.updatedAt.toISOString()])).digest('hex').slice(0, 20)}`;
  return { recent: Number(c?.recent ?? 0), inFlight: Number(c?.in_flight ?? 0), token };
}

export async function deleteAutomation(core: Core, account: Account, row: AutomationRow): Promise<void> {
  await withAccount(core.db, [account.id], (tx) => tx.delete(automations).where(and(eq(automations.id, row.id), eq(automations.accountId, account.id))));
}
