import { and, desc, eq, sql } from 'drizzle-orm';
import { deployments, deploymentTargets, type DeploymentStatus, type TargetAction } from '../../db/schema/index.js';
import { uuidList } from '../../db/arrays.js';
import { rowsOf } from '../../db/client.js';
import type { Core } from '../core.js';
import { UserError, sqlState, UNIQUE_VIOLATION } from '../errors.js';
import { decodeCursor, encodeCursor } from '../ids.js';
import type { Binding } from './definition.js';
import type { VarValue } from '../automation-definition.js';

/**
 * Deployments as records: what deploy_template and rollback_template write (in the tool's
 * transaction, with its audit entry), what the workers drive (runner.ts), and what
 * get_deployment / list_deployments read.
 */

export type DeploymentRow = typeof deployments.$inferSelect;
export const DEPLOYMENT_CHANNEL = 'switchboard_deployments';

/** A wave's size: a count of accounts, a share of them ("10%"), or the accounts named. */
export type WaveSpec = number | string | { accounts: string[] };

export interface DeploymentOptions {
  /** cumulative wave ends, in targets (the last is every target) */
  waveEnds: number[];
  bakeMs: number;
  minExecutions: number;
  maxFailureRateIncrease: number;
  autoRollback: boolean;
}

export interface WaveReport {
  wave: number;
  targets: number;
  done: number;
  failed: number;
  started_at: string | null;
  applied_at: string | null;
  bake_until: string | null;
  bake_started_at: string | null;
  gate: GateReport | null;
  decision: 'pending' | 'applying' | 'baking' | 'passed' | 'regressed' | 'no_gate' | 'cancelled';
}

export interface GateReport {
  copies: number;
  copies_with_traffic: number;
  before: { executions: number; failed: number; failure_rate: number; error_codes: Record<string, number> };
  after: { executions: number; failed: number; failure_rate: number; error_codes: Record<string, number> };
  new_error_codes: string[];
  silent_copies: number;
  waited_for_traffic: boolean;
  reasons: string[];
}

export interface NewTarget {
  accountId: string;
  action: TargetAction;
  automationId: string | null;
  expectedRevision: number | null;
  fromVersion: number | null;
  toVersion: number | null;
  restoreRevision: number | null;
  bindings: Record<string, Binding>;
  values: Record<string, VarValue>;
  /** listed first (the first wave's chosen accounts) */
  first?: boolean;
}

/** Cumulative wave ends for `total` targets: [1, "10%", "100%"] → e.g. [1, 100, 1000]; always ends at total. */
export function waveEnds(total: number, spec: WaveSpec[] | undefined, firstCount: number): number[] {
  if (!spec || spec.length === 0 || total === 0) return [total];
  const ends: number[] = [];
  for (const w of spec) {
    let end: number;
    if (typeof w === 'object') end = firstCount;
    else if (typeof w === 'number') end = w;
    else end = Math.ceil((total * Number(w.slice(0, -1))) / 100);
    end = Math.min(total, Math.max(end, (ends[ends.length - 1] ?? 0) + 1));
    if (end > (ends[ends.length - 1] ?? 0)) ends.push(end);
    if (end === total) break;
  }
  if (ends[ends.length - 1] !== total) ends.push(total);
  return ends;
}

/** "15m", "30s", "1h", "2d" → milliseconds. */
export function durationMs(text: string): number {
  const m = /^\s*(\d{1,6})\s*(s|m|h|d)\s*$/i.exec(text);
  if (!m) throw new UserError(`'${text.slice(0, 40)}' is not a duration: write a number and s, m, h or d (e.g. "15m").`);
  const n = Number(m[1]);
  const ms = n * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2]!.toLowerCase() as 's' | 'm' | 'h' | 'd'];
  if (ms > 7 * 86_400_000) throw new UserError('A bake lasts at most 7 days.');
  return ms;
}

/**
 * Refuse, with its id, while a deployment of the template runs or bakes. Checked before an apply's
 * hash (a running deployment is what moved the plan, and the more useful answer) and again by the
 * unique index when two applies race.
 */
export async function refuseIfRunning(core: Core, templateId: string, fallback?: string): Promise<void> {
  const [running] = await core.db
    .select({ id: deployments.id })
    .from(deployments)
    .where(and(eq(deployments.templateId, templateId), sql`${deployments.status} in ('running', 'baking')`));
  const id = running?.id ?? fallback;
  if (id === undefined) return;
  throw new UserError(
    `A deployment of the template ${templateId} is already running (${id}): wait for it (get_deployment) or stop it (cancel_deployment), then plan again.`,
    'conflict',
  );
}

/**
 * Write a deployment and its targets (in the caller's transaction) and wake the workers. A second
 * deployment of a template while one runs is refused by the unique index, with its id.
 */
export async function createDeployment(
  core: Core,
  input: {
    accountId: string;
    templateId: string;
    templateName: string;
    kind: 'deploy' | 'rollback';
    version: number | null;
    rollbackOf: string | null;
    planHash: string;
    options: DeploymentOptions;
    targets: NewTarget[];
    createdBy: string | null;
  },
): Promise<DeploymentRow> {
  const ordered = [...input.targets.filter((t) => t.first), ...input.targets.filter((t) => !t.first)];
  const ends = input.options.waveEnds;
  const waveOf = (i: number) => ends.findIndex((e) => i < e);
  const waves: WaveReport[] = ends.map((end, w) => ({
    wave: w,
    targets: end - (w ? ends[w - 1]! : 0),
    done: 0,
    failed: 0,
    started_at: null,
    applied_at: null,
    bake_until: null,
    bake_started_at: null,
    gate: null,
    decision: 'pending',
  }));
  let row: DeploymentRow;
  try {
    // in a savepoint: the caller's transaction stays usable after a refusal
    [row] = (await core.db.transaction((tx) => tx
      .insert(deployments)
      .values({
        tenantId: core.tenantId,
        accountId: input.accountId,
        templateId: input.templateId,
        kind: input.kind,
        version: input.version,
        rollbackOf: input.rollbackOf,
        status: ordered.length ? 'running' : 'completed',
        planHash: input.planHash,
        options: input.options,
        waves,
        createdBy: input.createdBy,
        finishedAt: ordered.length ? null : sql`now()`,
      })
      .returning())) as [DeploymentRow];
  } catch (err) {
    if (sqlState(err) === UNIQUE_VIOLATION) await refuseIfRunning(core, input.templateId, 'another');
    throw err;
  }
  for (let i = 0; i < ordered.length; i += 1000) {
    await core.db.insert(deploymentTargets).values(
      ordered.slice(i, i + 1000).map((t, j) => ({
        deploymentId: row.id,
        accountId: t.accountId,
        tenantId: core.tenantId,
        seq: i + j,
        wave: waveOf(i + j),
        action: t.action,
        automationId: t.automationId,
        expectedRevision: t.expectedRevision,
        fromVersion: t.fromVersion,
        toVersion: t.toVersion,
        restoreRevision: t.restoreRevision,
        bindings: t.bindings,
        values: t.values,
      })),
    );
  }
  await core.db.execute(sql`select pg_notify(${DEPLOYMENT_CHANNEL}, ${row.id})`);
  return row;
}

export async function getDeploymentRow(core: Core, accountId: string, id: string): Promise<DeploymentRow> {
  const [row] = await core.db.select().from(deployments).where(and(eq(deployments.id, id), eq(deployments.accountId, accountId), eq(deployments.tenantId, core.tenantId)));
  if (!row) throw new UserError(`No deployment '${id.slice(0, 60)}': list_deployments shows them.`, 'not_found');
  return row;
}

/** Counts of deployments' targets by status, per deployment, in one query. */
export async function targetCounts(core: Core, deploymentIds: string[]): Promise<Map<string, Record<string, number>>> {
  const out = new Map<string, Record<string, number>>(deploymentIds.map((id) => [id, {}]));
  if (!deploymentIds.length) return out;
  const rows = rowsOf<{ deployment_id: string; status: string; n: number }>(
    await core.db.execute(sql`
      select deployment_id, status, count(*)::int as n from deployment_targets
      where deployment_id = any(${uuidList(deploymentIds)}::uuid[]) group by deployment_id, status`),
  );
  for (const r of rows) out.get(String(r.deployment_id))![r.status] = Number(r.n);
  return out;
}

/** A deployment's targets in rollout order, one keyset page (with each account's slug and name). */
export async function targetPage(core: Core, deploymentId: string, opts: { limit: number; cursor?: string | undefined; status?: string | undefined }) {
  // the cursor holds seq + 1 (cursor ids are positive)
  const after = opts.cursor ? Number((decodeCursor(opts.cursor, ['id']) as [number])[0]) - 1 : -1;
  const rows = rowsOf<{
    account_id: string; slug: string; name: string; seq: number; wave: number; action: string; status: string; automation_id: string | null;
    from_version: number | null; to_version: number | null; before_revision: number | null; after_revision: number | null; reason: string | null; applied_at: Date | string | null;
  }>(
    await core.db.execute(sql`
      select t.account_id, a.slug, a.name, t.seq, t.wave, t.action, t.status, t.automation_id, t.from_version, t.to_version,
             t.before_revision, t.after_revision, t.reason, t.applied_at
      from deployment_targets t join accounts a on a.id = t.account_id
      where t.deployment_id = ${deploymentId}::uuid and t.seq > ${after}::bigint${opts.status ? sql` and t.status = ${opts.status}` : sql``}
      order by t.seq limit ${opts.limit + 1}`),
  );
  const page = rows.slice(0, opts.limit);
  return { items: page, nextCursor: rows.length > opts.limit ? encodeCursor([Number(page[page.length - 1]!.seq) + 1]) : null };
}

export async function listDeploymentRows(core: Core, accountId: string, opts: { templateId?: string | undefined; limit: number; cursor?: string | undefined }) {
  const conds = [eq(deployments.accountId, accountId), eq(deployments.tenantId, core.tenantId)];
  if (opts.templateId) conds.push(eq(deployments.templateId, opts.templateId));
  if (opts.cursor) {
    const [at, id] = decodeCursor(opts.cursor, ['text', 'uuid']) as [string, string];
    if (Number.isNaN(Date.parse(at))) throw new UserError('The cursor is not valid: pass the next_cursor of a previous page, or omit it.');
    conds.push(sql`(${deployments.createdAt}, ${deployments.id}) < (${at}::timestamptz, ${id}::uuid)`);
  }
  const rows = await core.db.select().from(deployments).where(and(...conds)).orderBy(desc(deployments.createdAt), desc(deployments.id)).limit(opts.limit + 1);
  const page = rows.slice(0, opts.limit);
  const last = page[page.length - 1];
  return { items: page, nextCursor: rows.length > opts.limit && last ? encodeCursor([last.createdAt.toISOString(), last.id]) : null };
}

/** Ask the workers to stop a deployment between accounts. */
export async function requestCancel(core: Core, d: DeploymentRow): Promise<DeploymentRow> {
  if (d.status !== 'running' && d.status !== 'baking') {
    throw new UserError(`The deployment ${d.id} is ${d.status}: there is nothing to stop.`, 'conflict');
  }
  const [row] = await core.db.update(deployments).set({ cancelRequested: true, updatedAt: sql`now()` }).where(eq(deployments.id, d.id)).returning();
  await core.db.execute(sql`select pg_notify(${DEPLOYMENT_CHANNEL}, ${d.id})`);
  return row!;
}

export const FINISHED: DeploymentStatus[] = ['completed', 'halted', 'rolled_back', 'cancelled', 'failed'];
