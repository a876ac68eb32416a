import { createHash } from 'node:crypto';
import { and, asc, desc, eq, gte, inArray, isNotNull, isNull, notInArray, or, sql, type SQL } from 'drizzle-orm';
import { automationRevisions, automations, connections, executions, executionSteps, failureGroups, webhookDeliveries, type DeliveryStatus } from '../../db/schema/index.js';
import { withAccount, type Tx } from '../../db/scope.js';
import type { Core } from '../core.js';
import type { Account } from '../accounts.js';
import type { Caller } from '../users.js';
import type { Grant } from '../access.js';
import type { Definition } from '../automation-definition.js';
import type { ExecutionRow, StepRow } from '../executions.js';
import { UserError } from '../errors.js';
import { decodeCursor, encodeCursor, isUuid } from '../ids.js';
import { accountsInScope } from './visibility.js';
import { diagnose, type Diagnosis } from './diagnosis.js';
import { diagnosisFacts, outageCounts, appDefaults, routingKeysOf, type FactsContext } from './delivery-facts.js';
import { alias } from 'drizzle-orm/pg-core';
import { derive, derivedStatus, latestRunColumn, NOT_RUN, type DerivedStatus } from './latest-run.js';

/**
 * An account's webhook deliveries as debug_webhook reads them: a keyset page, newest first, each
 * with the status it came to and its latest run (the original, or its latest replay: the rule of
 * latest-run.ts, which replay_webhook matches on too) in the account it ran in (a routed run lives
 * in the linked child: shown only when the caller may see that child), the failing step with the
 * upstream answer, and a diagnosis of that run.
 *
 * A page is a fixed handful of queries whatever its size: the visible children, then in one
 * account scope (the account and those children) the page with its runs, the failing attempts,
 * the failure groups, the revisions and the connections involved; then, only when the page needs
 * them, app defaults, routing keys and the outage counts across accounts.
 */

export { DERIVED_STATUSES, type DerivedStatus } from './latest-run.js';

export interface DebugOptions {
  automationId?: string | undefined;
  deliveryId?: string | undefined;
  status?: DerivedStatus | undefined;
  since?: Date | undefined;
  limit: number;
  cursor?: string | undefined;
}

export interface DeliveryItem {
  id: string;
  received_at: string;
  automation: { id: string; name: string | null };
  status: DerivedStatus;
  code: string | null;
  /** the recorded reason (data: it may quote the payload's routing value) */
  reason: string | null;
  routing: { value: string | null; account: { id: string; slug: string } | null } | null;
  execution: {
    id: string;
    account: { id: string; slug: string };
    status: ExecutionRow['status'];
    failed_step: string | null;
    error: { code: string; message: string; target: string | null; upstream_status: number | null } | null;
    created_at: string;
    finished_at: string | null;
  } | null;
  /** false for a routed run in a linked account the caller may not see (or a run pruned since) */
  execution_visible: boolean;
  /** replays of it the caller may see (replay_webhook); `execution` is the latest run */
  replays: number;
  upstream: { status: number | null; body_excerpt: string | null } | null;
  diagnosis: Diagnosis | null;
}

export interface DeliveryDetail {
  item: DeliveryItem;
  request: { method: string; headers: Record<string, string>; query: Record<string, string>; content_type: string | null; size: number; body: unknown };
  /** the original run and every replay, oldest first, each with every attempt of every step */
  runs: { row: ExecutionRow; steps: StepRow[] }[];
}

export interface DebugPage {
  items: DeliveryItem[];
  nextCursor: string | null;
  detail: DeliveryDetail | null;
}

const EXCERPT = 500;
/** The first EXCERPT characters of an upstream answer, never ending inside a surrogate pair (half of one is no text a client can decode). */
const excerptOf = (s: string): string => {
  const cut = s.slice(0, EXCERPT);
  return /[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut;
};
const AT = (col: SQL | typeof webhookDeliveries.receivedAt) => sql<string>`to_char(${col} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** The fingerprint failure_groups keys on (drizzle/0018), for one failed run. */
export const fingerprintOf = (e: { errorTarget: string | null; failedStep: string | null; errorCode: string | null; errorStatus: number | null }): string =>
  createHash('md5')
    .update([e.errorTarget ?? '', e.failedStep ?? '', e.errorCode ?? '', e.errorStatus === null ? '' : String(e.errorStatus)].join('\x1f'))
    .digest('hex');

export async function debugDeliveries(core: Core, caller: Caller, account: Account, grant: Grant | null, opts: DebugOptions): Promise<DebugPage> {
  if (opts.deliveryId !== undefined && !isUuid(opts.deliveryId)) throw new UserError('The delivery must be given by its id (debug_webhook lists them).');
  // the linked children whose runs the caller may see: one query (none for a child account)
  const children = account.parentAccountId ? [] : await accountsInScope(core, caller, account, grant, 'children');
  const scope = new Map<string, Account>([[account.id, account], ...children.map((c) => [c.id, c] as const)]);
  const scopeIds = [...scope.keys()];

  const read = await withAccount(core.db, scopeIds, async (tx) => {
    const rows = await pageRows(tx, account, scopeIds, opts);
    const page = opts.deliveryId ? rows : rows.slice(0, opts.limit);
    const ctx = await factsContext(tx, page);
    const detail = opts.deliveryId && page[0] ? await detailOf(tx, page[0].d.id, scopeIds) : null;
    return { rows, page, ctx, detail };
  });
  const { rows, page, ctx } = read;
  if (opts.deliveryId && !page[0]) throw new UserError(`No delivery ${opts.deliveryId} in account '${account.slug}'.`, 'not_found');

  // what only some pages need, outside the account scope (tenant tables, and the outage across accounts)
  await appDefaults(core, ctx);
  routingKeysOf(children, page, ctx);
  await outageCounts(core, caller, account, grant, page, ctx);

  const items = page.map((r): DeliveryItem => {
    const e = r.e?.id ? r.e : null;
    const status = derive(r.d.status, e?.status ?? null);
    const step = e ? ctx.steps.get(e.id) : undefined;
    const out = step?.output as { status?: unknown; body?: unknown } | null | undefined;
    const upstream =
      e?.status === 'failed'
        ? { status: typeof out?.status === 'number' ? out.status : e.errorStatus, body_excerpt: typeof out?.body === 'string' ? excerptOf(out.body) : null }
        : null;
    const routedTo = r.d.routedAccountId ? scope.get(r.d.routedAccountId) : undefined;
    return {
      id: r.d.id,
      received_at: r.at,
      automation: { id: r.d.automationId, name: r.a?.name ?? null },
      status,
      code: r.d.code,
      reason: r.d.reason,
      routing: r.d.routingValue !== null || r.d.routedAccountId ? { value: r.d.routingValue, account: routedTo ? { id: routedTo.id, slug: routedTo.slug } : null } : null,
      execution: e
        ? {
            id: e.id,
            account: { id: e.accountId, slug: scope.get(e.accountId)?.slug ?? account.slug },
            status: e.status,
            failed_step: e.failedStep,
            error: e.errorCode ? { code: e.errorCode, message: e.errorMessage ?? '', target: e.errorTarget, upstream_status: e.errorStatus } : null,
            created_at: e.createdAt.toISOString(),
            finished_at: e.finishedAt?.toISOString() ?? null,
          }
        : null,
      execution_visible: e !== null,
      replays: Number(r.replays ?? 0),
      upstream,
      diagnosis: diagnose(diagnosisFacts(r, status, upstream?.body_excerpt ?? null, ctx)),
    };
  });
  const last = page[page.length - 1];
  const walk = opts.status === 'failed' ? FAILED_WALK : DELIVERY_WALK;
  const nextCursor = !opts.deliveryId && rows.length > opts.limit && last ? encodeCursor([walk, last.key, last.d.id]) : null;
  const detail = read.detail && items[0] ? { item: items[0], ...read.detail } : null;
  return { items, nextCursor, detail };
}

export type PageRow = Awaited<ReturnType<typeof pageRows>>[number];

const deliveryCols = {
  id: webhookDeliveries.id,
  accountId: webhookDeliveries.accountId,
  automationId: webhookDeliveries.automationId,
  status: webhookDeliveries.status,
  code: webhookDeliveries.code,
  reason: webhookDeliveries.reason,
  routingValue: webhookDeliveries.routingValue,
  routedAccountId: webhookDeliveries.routedAccountId,
  executionId: webhookDeliveries.executionId,
};
/** a delivery's latest replay and its original run (latest-run.ts), each joined by its primary key (one type for both aliases) */
const replayRun = alias(executions, 'r' as string);
const originalRun = alias(executions, 'o' as string);
const runColsOf = (t: typeof executions | typeof replayRun) => ({
  id: t.id,
  accountId: t.accountId,
  revision: t.revision,
  status: t.status,
  nextStep: t.nextStep,
  attempt: t.attempt,
  errorCode: t.errorCode,
  errorMessage: t.errorMessage,
  failedStep: t.failedStep,
  errorTarget: t.errorTarget,
  errorStatus: t.errorStatus,
  createdAt: t.createdAt,
  finishedAt: t.finishedAt,
});
const runCols = runColsOf(executions);
type RunColumn = keyof typeof runCols;
const automationCols = { name: automations.name, revision: automations.revision, pausedBy: automations.pausedByConnectionId };

/** Replays of the page's delivery in the caller's accounts (`scope`: their ids as a SQL list), by executions_replays. */
const replayCount = (scope: SQL) =>
  sql<number>`(select count(*)::int from ${executions} x where x.delivery_id = ${webhookDeliveries.id} and x.source = 'replay' and x.account_id in (${scope}))`;

/** The two walks a cursor can belong to: a cursor of one is refused by the other. */
const DELIVERY_WALK = 'd';
const FAILED_WALK = 'f';

/** A cursor's time: an ISO-8601 UTC time PostgreSQL takes (years 1 to 9999, a real calendar day). */
function cursorTime(at: string): boolean {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/.test(at) || at.startsWith('0000')) return false;
  const t = new Date(at);
  return !Number.isNaN(t.getTime()) && t.toISOString().slice(0, 19) === at.slice(0, 19);
}

/**
 * One page of rows (limit + 1, to know whether there is more), each with the delivery's latest
 * run (latest-run.ts) when the caller may see it. `status: failed` walks the failed webhook and
 * replay runs by the automation's account (executions_failed_deliveries), keeping each that is its
 * delivery's latest run, newest failure first: a delivery replayed while a caller pages through
 * it moves to the front. The statuses of deliveries that did not run walk
 * webhook_deliveries_not_run; the others the account's deliveries newest first
 * (webhook_deliveries_account). `key` is the keyset's time: the failed run's for the first, the
 * delivery's for the others. `since` is on the delivery's arrival in both, as replay_webhook's.
 */
async function pageRows(tx: Tx, account: Account, scopeIds: string[], opts: DebugOptions) {
  const walk = opts.status === 'failed' && !opts.deliveryId ? FAILED_WALK : DELIVERY_WALK;
  let cursor: [string, string] | null = null;
  if (opts.cursor) {
    const [kind, at, id] = decodeCursor(opts.cursor, ['text', 'text', 'uuid']) as [string, string, string];
    if (kind !== walk || !cursorTime(at)) throw new UserError('The cursor is not valid: pass the next_cursor of a previous page of the same query, or omit it.');
    cursor = [at, id];
  }
  const scope = sql.join(scopeIds.map((id) => sql`${id}::uuid`), sql`, `);
  // a delivery's body is read only where a diagnosis needs it: an expression that reads a missing field
  const bodyIf = (errorCode: SQL) => sql<unknown>`case when ${errorCode} = 'expression_error' then ${webhookDeliveries.body} end`;

  if (walk === FAILED_WALK) {
    const conds: (SQL | undefined)[] = [
      eq(executions.automationOwnerId, account.id),
      eq(executions.status, 'failed'),
      isNotNull(executions.deliveryId),
      inArray(executions.accountId, scopeIds),
    ];
    if (opts.automationId) conds.push(eq(executions.automationId, opts.automationId));
    // runs are created no earlier than their delivery arrived: the run's time narrows the walk
    if (opts.since) conds.push(gte(webhookDeliveries.receivedAt, opts.since), gte(executions.createdAt, opts.since));
    if (cursor) conds.push(sql`(${executions.createdAt}, ${executions.deliveryId}) < (${cursor[0]}::timestamptz, ${cursor[1]}::uuid)`);
    return tx
      .select({
        d: deliveryCols,
        at: AT(webhookDeliveries.receivedAt),
        key: AT(sql`${executions.createdAt}`),
        e: runCols,
        a: automationCols,
        body: bodyIf(sql`${executions.errorCode}`),
        replays: replayCount(scope),
      })
      .from(executions)
      // the run is its delivery's latest: its latest replay, or, never replayed, its original (the
      // only webhook run of the delivery). Spelled so that the planner sees most runs pass (an
      // execution_id = id here made it expect none and sort every failed run of the account)
      .innerJoin(
        webhookDeliveries,
        and(
          eq(webhookDeliveries.id, executions.deliveryId),
          eq(webhookDeliveries.accountId, account.id),
          or(and(isNull(webhookDeliveries.latestReplayId), eq(executions.source, 'webhook')), eq(webhookDeliveries.latestReplayId, executions.id)),
        ),
      )
      .leftJoin(automations, eq(automations.id, webhookDeliveries.automationId))
      .where(and(...conds))
      .orderBy(sql`${executions.createdAt} desc`, desc(executions.deliveryId))
      .limit(opts.limit + 1);
  }

  // the latest run's columns: the replay's when there is one, else the original's
  const pick = (col: RunColumn) => latestRunColumn(sql`${webhookDeliveries.latestReplayId}`, sql`${originalRun[col]}`, sql`${replayRun[col]}`);
  const conds: (SQL | undefined)[] = [eq(webhookDeliveries.accountId, account.id)];
  if (opts.deliveryId) conds.push(eq(webhookDeliveries.id, opts.deliveryId.toLowerCase()));
  if (opts.automationId) conds.push(eq(webhookDeliveries.automationId, opts.automationId));
  if (opts.since) conds.push(gte(webhookDeliveries.receivedAt, opts.since));
  if (cursor) conds.push(sql`(${webhookDeliveries.receivedAt}, ${webhookDeliveries.id}) < (${cursor[0]}::timestamptz, ${cursor[1]}::uuid)`);
  const s = opts.deliveryId ? undefined : opts.status;
  if (s) {
    conds.push(sql`${derivedStatus(sql`${webhookDeliveries.status}`, pick('id'), pick('status'))} = ${s}`);
    // what the status implies, for the planner (the derived status is a CASE it cannot look into):
    // such a delivery has no visible run (spelled like webhook_deliveries_not_run's predicate)
    if (NOT_RUN.includes(s)) conds.push(notInArray(webhookDeliveries.status, ['accepted', 'routed']), eq(webhookDeliveries.status, s as DeliveryStatus));
    // only a routed delivery comes to 'routed'
    if (s === 'routed') conds.push(eq(webhookDeliveries.status, 'routed'));
    // a running one has a running run (few: executions_running); an accepted one a queued run
    // (executions_queued), or a latest replay the caller may not see (a delivery of this account
    // whose runs were all pruned is pruned with them)
    if (s === 'running' || s === 'accepted') {
      const has = sql`${webhookDeliveries.id} in (select x.delivery_id from ${executions} x where x.status = ${s === 'running' ? 'running' : 'queued'}
        and x.delivery_id is not null and x.account_id in (${scope}))`;
      conds.push(s === 'running' ? has : or(has, and(isNotNull(webhookDeliveries.latestReplayId), eq(webhookDeliveries.status, 'accepted'))));
    }
  }
  const at = AT(webhookDeliveries.receivedAt);
  const rows = await tx
    .select({
      d: { ...deliveryCols, latestReplayId: webhookDeliveries.latestReplayId },
      at,
      key: at,
      r: runColsOf(replayRun),
      o: runColsOf(originalRun),
      a: automationCols,
      body: bodyIf(pick('errorCode')),
      replays: replayCount(scope),
    })
    .from(webhookDeliveries)
    // each by its primary key; a run in a linked account the caller may not see stays out (row-level security says the same)
    .leftJoin(replayRun, and(eq(replayRun.id, webhookDeliveries.latestReplayId), inArray(replayRun.accountId, scopeIds)))
    .leftJoin(originalRun, and(eq(originalRun.id, webhookDeliveries.executionId), inArray(originalRun.accountId, scopeIds)))
    .leftJoin(automations, eq(automations.id, webhookDeliveries.automationId))
    .where(and(...conds))
    .orderBy(desc(webhookDeliveries.receivedAt), desc(webhookDeliveries.id))
    .limit(opts.deliveryId ? 1 : opts.limit + 1);
  return rows.map(({ r, o, ...row }) => ({ ...row, e: row.d.latestReplayId ? r : o }));
}

/**
 * What the page's diagnoses read, each in one query for the whole page: the failing attempt of
 * every failed run, their failure groups, the revisions they ran (steps, expressions,
 * connections), and the connections involved.
 */
async function factsContext(tx: Tx, page: PageRow[]): Promise<FactsContext> {
  const failed = page.filter((r) => r.e?.id && r.e.status === 'failed').map((r) => r.e!);
  const ctx: FactsContext = { steps: new Map(), groups: new Map(), definitions: new Map(), connections: new Map(), outage: new Map(), routingKeys: null, appDefaults: new Map() };

  if (failed.length) {
    const steps = await tx
      .select({ executionId: executionSteps.executionId, output: executionSteps.output })
      .from(executionSteps)
      .where(sql`(${executionSteps.executionId}, ${executionSteps.stepIndex}, ${executionSteps.attempt}) in (${sql.join(failed.map((e) => sql`(${e.id}::uuid, ${e.nextStep}::int, ${e.attempt}::int)`), sql`, `)})`);
    for (const s of steps) ctx.steps.set(s.executionId, { output: s.output });

    const keys = page.filter((r) => r.e?.id && r.e.status === 'failed').map((r) => ({ account: r.e!.accountId, automation: r.d.automationId, fp: fingerprintOf(r.e!) }));
    const groups = await tx
      .select({ accountId: failureGroups.accountId, automationId: failureGroups.automationId, fingerprint: failureGroups.fingerprint, status: failureGroups.status, count: failureGroups.count })
      .from(failureGroups)
      .where(sql`(${failureGroups.fingerprint}, ${failureGroups.accountId}, ${failureGroups.automationId}) in (${sql.join(keys.map((k) => sql`(${k.fp}, ${k.account}::uuid, ${k.automation}::uuid)`), sql`, `)})`);
    for (const g of groups) ctx.groups.set(`${g.accountId}|${g.automationId}|${g.fingerprint}`, g.status === 'open' ? g.count : 1);
  }

  // the revisions that say which step, expression or connection a diagnosis is about
  const revs = new Map<string, [string, number]>();
  for (const r of page) {
    if (r.e?.id && (r.e.status === 'failed' || r.e.status === 'filtered')) revs.set(`${r.d.automationId}:${r.e.revision}`, [r.d.automationId, r.e.revision]);
    if (r.d.code === 'signature_invalid' && r.a) revs.set(`${r.d.automationId}:${r.a.revision}`, [r.d.automationId, r.a.revision]);
  }
  if (revs.size) {
    const defs = await tx
      .select({ automationId: automationRevisions.automationId, revision: automationRevisions.revision, definition: automationRevisions.definition })
      .from(automationRevisions)
      .where(sql`(${automationRevisions.automationId}, ${automationRevisions.revision}) in (${sql.join([...revs.values()].map(([a, n]) => sql`(${a}::uuid, ${n}::int)`), sql`, `)})`);
    for (const d of defs) ctx.definitions.set(`${d.automationId}:${d.revision}`, d.definition as Definition);
  }

  const connIds = new Set<string>();
  for (const r of page) {
    const id = connectionOf(r, ctx);
    if (id) connIds.add(id);
  }
  if (connIds.size) {
    const rows = await tx
      .select({ id: connections.id, app: connections.app, name: connections.name, status: connections.status, ratePerMinute: connections.ratePerMinute })
      .from(connections)
      .where(inArray(connections.id, [...connIds]));
    for (const c of rows) ctx.connections.set(c.id, c);
  }
  return ctx;
}

/** The connection a row's diagnosis is about: the one that paused the automation, the signing secret, or the failing step's. */
export function connectionOf(r: PageRow, ctx: FactsContext): string | null {
  if (r.d.code === 'automation_paused') return r.a?.pausedBy ?? null;
  if (r.d.code === 'signature_invalid' && r.a) return ctx.definitions.get(`${r.d.automationId}:${r.a.revision}`)?.trigger.signature?.connection_id ?? null;
  if (r.e?.id && r.e.status === 'failed') {
    const step = ctx.definitions.get(`${r.d.automationId}:${r.e.revision}`)?.steps[r.e.nextStep];
    return step?.kind === 'http' ? (step.connection_id ?? null) : null;
  }
  return null;
}

/** The delivery in full, and every run of it (the original and its replays) with every attempt of every step. */
async function detailOf(tx: Tx, deliveryId: string, scopeIds: string[]): Promise<Omit<DeliveryDetail, 'item'>> {
  const [d] = await tx.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, deliveryId));
  const runs = await tx
    .select()
    .from(executions)
    .where(
      and(
        or(eq(executions.id, sql`${d!.executionId ?? '00000000-0000-0000-0000-000000000000'}::uuid`), and(eq(executions.source, 'replay'), eq(executions.deliveryId, deliveryId))),
        inArray(executions.accountId, scopeIds),
      ),
    )
    .orderBy(asc(executions.createdAt), asc(executions.id));
  const steps = runs.length
    ? await tx
        .select()
        .from(executionSteps)
        .where(inArray(executionSteps.executionId, runs.map((r) => r.id)))
        .orderBy(asc(executionSteps.stepIndex), asc(executionSteps.attempt))
    : [];
  return {
    request: { method: d!.method, headers: d!.headers, query: d!.query, content_type: d!.contentType, size: d!.size, body: d!.body ?? null },
    runs: runs.map((row) => ({ row, steps: steps.filter((s) => s.executionId === row.id) })),
  };
}
