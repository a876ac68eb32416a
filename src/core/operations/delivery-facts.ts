import { and, eq, inArray, sql } from 'drizzle-orm';
import { apps, failureGroups } from '../../db/schema/index.js';
import { withAccount } from '../../db/scope.js';
import type { Core } from '../core.js';
import type { Account } from '../accounts.js';
import type { Caller } from '../users.js';
import type { Grant } from '../access.js';
import { hasPermission } from '../users.js';
import { BUILTIN_APPS } from '../apps.js';
import type { Definition, Step } from '../automation-definition.js';
import { templateExpressions } from '../../engine/expressions.js';
import { accountsInScope } from './visibility.js';
import { missingBodyPath, type DiagnosisFacts } from './diagnosis.js';
import { connectionOf, fingerprintOf, type DerivedStatus, type PageRow } from './deliveries.js';

/**
 * The facts a page of deliveries is diagnosed on (src/core/operations/diagnosis.ts), gathered
 * for the whole page at once: never a query per delivery.
 */

export interface FactsContext {
  /** the failing attempt's record, by execution */
  steps: Map<string, { output: unknown }>;
  /** failures of a fingerprint while its group is open, by `account|automation|fingerprint` */
  groups: Map<string, number>;
  /** revisions by `automation:revision` */
  definitions: Map<string, Definition>;
  connections: Map<string, { id: string; app: string; name: string; status: string; ratePerMinute: number | null }>;
  /** open groups with the same target, code and upstream status, by `target|code|status`: accounts having one, the earliest first_seen */
  outage: Map<string, { accounts: number; own: Set<string>; since: string }>;
  /** unrouted: routing keys of the account's linked children (up to 50) */
  routingKeys: string[] | null;
  appDefaults: Map<string, number>;
}

const OUTAGE = new Set(['http_5xx', 'timeout', 'connection_refused', 'dns_failed', 'tls_failed']);
const ROUTING_KEYS = 50;
const outageKey = (target: string, code: string | null, status: number | null) => `${target}|${code ?? ''}|${status ?? ''}`;

export function diagnosisFacts(r: PageRow, status: DerivedStatus, excerpt: string | null, ctx: FactsContext): DiagnosisFacts {
  const e = r.e?.id ? r.e : null;
  const def = e ? ctx.definitions.get(`${r.d.automationId}:${e.revision}`) : undefined;
  const connId = connectionOf(r, ctx);
  const c = connId ? ctx.connections.get(connId) : undefined;
  const failedStep = e?.status === 'failed' ? def?.steps[e.nextStep] : undefined;
  const outage = e && OUTAGE.has(e.errorCode ?? '') ? ctx.outage.get(outageKey(e.errorTarget ?? '', e.errorCode, e.errorStatus)) : undefined;
  return {
    status,
    deliveryCode: r.d.code,
    execution: e
      ? {
          errorCode: e.errorCode,
          failedStep: e.failedStep,
          upstreamStatus: e.errorStatus,
          stoppedStep: e.status === 'filtered' ? (def?.steps[e.nextStep - 1]?.id ?? null) : null,
        }
      : null,
    connection: c ? { ...c, appDefaultPerMinute: ctx.appDefaults.get(c.app) ?? null } : null,
    failedCount: e?.status === 'failed' ? (ctx.groups.get(`${e.accountId}|${r.d.automationId}|${fingerprintOf(e)}`) ?? 1) : 0,
    outage: outage
      ? { otherAccounts: outage.accounts - (outage.own.has(e!.accountId) ? 1 : 0), since: outage.since }
      : e && OUTAGE.has(e.errorCode ?? '')
        ? { otherAccounts: 0, since: null }
        : null,
    expression: e?.errorCode === 'expression_error' && failedStep ? expressionAtFault(failedStep, r.body) : null,
    routing: status === 'unrouted' ? { value: r.d.routingValue, keys: ctx.routingKeys ?? [] } : null,
    upstreamExcerpt: excerpt,
  };
}

/** The step's expression that reads a trigger.body path this payload lacks; else its first expression. */
function expressionAtFault(step: Step, body: unknown): { expression: string; missingPath: string | null } | null {
  const fields: unknown[] =
    step.kind === 'http' ? [step.url, step.headers, step.query, step.body] : step.kind === 'transform' ? [step.value] : step.kind === 'store' ? [step.key, step.value] : [];
  const texts = fields.flatMap((f) => templateExpressions(f).map((x) => x.text));
  if (step.kind === 'filter') texts.push(step.condition);
  for (const t of texts) {
    const missing = missingBodyPath(t, body);
    if (missing) return { expression: t, missingPath: missing };
  }
  return texts[0] ? { expression: texts[0], missingPath: null } : null;
}

/** The apps' default rate budgets for the throttled diagnoses: built-in from code, custom in one query. */
export async function appDefaults(core: Core, ctx: FactsContext): Promise<void> {
  const slugs = [...new Set([...ctx.connections.values()].map((c) => c.app))];
  const custom: string[] = [];
  for (const s of slugs) {
    const builtin = BUILTIN_APPS.find((a) => a.slug === s);
    if (builtin) ctx.appDefaults.set(s, builtin.defaultPerMinute);
    else custom.push(s);
  }
  if (!custom.length) return;
  const rows = await core.db.select({ slug: apps.slug, perMinute: apps.defaultPerMinute }).from(apps).where(and(eq(apps.tenantId, core.tenantId), inArray(apps.slug, custom)));
  for (const r of rows) ctx.appDefaults.set(r.slug, r.perMinute);
}

/** For an unrouted delivery on the page: the routing keys that exist under the account (up to 50). */
export function routingKeysOf(visibleChildren: readonly Account[], page: PageRow[], ctx: FactsContext): void {
  if (!page.some((r) => r.d.status === 'unrouted')) return;
  // only the linked accounts the caller may see: a parent's member who is not its admin learns no studio's key
  ctx.routingKeys = visibleChildren
    .map((c) => c.routingKey)
    .filter((k): k is string => k !== null)
    .sort()
    .slice(0, ROUTING_KEYS);
}

/**
 * For the page's upstream failures (5xx, timeout, refused, DNS): the accounts with an open
 * failure group of the same target, code and upstream status, and since when — counted only
 * among the accounts the caller may see. A Switch Account holder sees the tenant: counted on the
 * privileged path (no account scope, filtered by tenant); anyone else in one account scope over
 * the accounts they may see, so nothing of another account is ever read for them.
 */
export async function outageCounts(core: Core, caller: Caller, acting: Account, grant: Grant | null, page: PageRow[], ctx: FactsContext): Promise<void> {
  const wanted = new Map<string, { target: string; code: string; status: number | null }>();
  const mine = new Set<string>();
  for (const r of page) {
    const e = r.e?.id ? r.e : null;
    if (e?.status !== 'failed' || !OUTAGE.has(e.errorCode ?? '')) continue;
    wanted.set(outageKey(e.errorTarget ?? '', e.errorCode, e.errorStatus), { target: e.errorTarget ?? '', code: e.errorCode!, status: e.errorStatus });
    mine.add(e.accountId);
  }
  if (!wanted.size) return;
  const triples = sql.join([...wanted.values()].map((t) => sql`(${t.target}, ${t.code}, ${t.status ?? -1}::int)`), sql`, `);
  const own = sql.join([...mine].map((id) => sql`${id}::uuid`), sql`, `);
  const conds = [
    eq(failureGroups.tenantId, core.tenantId),
    eq(failureGroups.status, 'open'),
    sql`(${failureGroups.target}, ${failureGroups.errorCode}, coalesce(${failureGroups.upstreamStatus}, -1)) in (${triples})`,
  ];
  // per fingerprint across accounts: how many accounts, since when, and which of the page's own accounts are among them
  const select = {
    target: failureGroups.target,
    code: failureGroups.errorCode,
    status: failureGroups.upstreamStatus,
    accounts: sql<number>`count(distinct ${failureGroups.accountId})::int`,
    since: sql<string>`to_char(min(${failureGroups.firstSeen}) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`,
    own: sql<string[] | null>`array_agg(distinct ${failureGroups.accountId}::text) filter (where ${failureGroups.accountId} in (${own}))`,
  };
  const group = [failureGroups.target, failureGroups.errorCode, failureGroups.upstreamStatus] as const;
  let rows: { target: string; code: string; status: number | null; accounts: number; since: string; own: string[] | null }[];
  if (hasPermission(caller.user, 'switch_account')) {
    rows = await core.db.select(select).from(failureGroups).where(and(...conds)).groupBy(...group);
  } else {
    const ids = [...new Set([acting.id, ...(await accountsInScope(core, caller, acting, grant, 'all')).map((a) => a.id)])];
    rows = await withAccount(core.db, ids, (tx) => tx.select(select).from(failureGroups).where(and(...conds, inArray(failureGroups.accountId, ids))).groupBy(...group));
  }
  for (const r of rows) ctx.outage.set(outageKey(r.target, r.code, r.status), { accounts: r.accounts, own: new Set(parseArray(r.own)), since: r.since });
}

/** A text[] as the driver returns it: an array (node-postgres) or its literal (some PGlite versions). */
const parseArray = (v: string[] | string | null): string[] =>
  v === null ? [] : Array.isArray(v) ? v : v.replace(/^\{|\}$/g, '').split(',').filter(Boolean);
