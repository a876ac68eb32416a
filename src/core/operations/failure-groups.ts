import { sql } from 'drizzle-orm';
import type { Core } from '../core.js';
import type { Account } from '../accounts.js';
import type { Caller } from '../users.js';
import type { Grant } from '../access.js';
import { UserError } from '../errors.js';
import type { OperationsScope } from './visibility.js';
import { coverage, date, num } from './coverage.js';
import { textList } from '../../db/arrays.js';

/**
 * One upstream problem across accounts: the failure_groups rows (one per fingerprint × account ×
 * automation, kept by the trigger of drizzle/0018) of the accounts in scope, added up by
 * fingerprint. A group is open while any of its rows is open; its figures (count, first_seen,
 * affected accounts and automations) are those of its open rows then, of all its rows once
 * every row is resolved. Newest problems that hit the most accounts come first.
 */

export type GroupStatusFilter = 'open' | 'resolved' | 'all';

export interface ListFailureGroupsInput {
  scope?: OperationsScope;
  status?: GroupStatusFilter;
  limit?: number;
  cursor?: string;
}

export interface FailureGroup {
  id: string;
  target: string;
  stepId: string;
  errorCode: string;
  upstreamStatus: number | null;
  status: 'open' | 'resolved';
  firstSeen: Date;
  lastSeen: Date;
  /** failures of the counted rows since they (last) opened, and ever */
  count: number;
  total: number;
  accounts: { count: number; items: { id: string; slug: string; name: string }[] };
  automations: { count: number; items: { id: string; name: string | null; account: string | null }[] };
  lastMessage: string | null;
  lastExecutionId: string | null;
}

export const LISTED_PER_GROUP = 50;

/** where the next page starts: affected accounts, last_seen in microseconds since 1970, fingerprint */
interface Cursor {
  a: number;
  l: string;
  f: string;
}

const encodeCursor = (c: Cursor): string => Buffer.from(JSON.stringify(c)).toString('base64url');
function decodeCursor(raw: string): Cursor {
  try {
    const c = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as Cursor;
    if (typeof c.a === 'number' && typeof c.l === 'string' && /^\d{1,20}$/.test(c.l) && typeof c.f === 'string' && /^[0-9a-f]{32}$/.test(c.f)) return c;
  } catch {
    // fall through
  }
  throw new UserError('The cursor is not one list_failure_groups returned: call it again without cursor.');
}

export async function listFailureGroups(
  core: Core,
  caller: Caller,
  account: Account,
  grant: Grant | null,
  input: ListFailureGroupsInput = {},
): Promise<{ groups: FailureGroup[]; nextCursor: string | null; accountsCovered: number }> {
  const cov = await coverage(core, caller, account, grant, input.scope ?? 'account');
  const limit = input.limit ?? 50;
  const status = input.status ?? 'open';
  const after = input.cursor ? decodeCursor(input.cursor) : null;
  if (cov.accounts.length === 0) return { groups: [], nextCursor: null, accountsCovered: 0 };

  return cov.read(async (q) => {
    // the counted rows of each fingerprint: its open rows while it has any, else all of them
    const page = await q<Record<string, unknown>>(sql`
      with g as (
        select fingerprint, bool_or(status = 'open') as open from failure_groups f
        where ${cov.where('f')} group by fingerprint),
      agg as (
        select f.fingerprint, g.open,
          min(f.target) as target, min(f.step_id) as step_id, min(f.error_code) as error_code, min(f.upstream_status) as upstream_status,
          min(f.first_seen) as first_seen, max(f.last_seen) as last_seen,
          (extract(epoch from max(f.last_seen)) * 1000000)::bigint as last_us,
          sum(f.count)::int as count, sum(f.total)::int as total,
          count(distinct f.account_id)::int as accounts, count(distinct f.automation_id)::int as automations,
          (array_agg(f.last_message order by f.last_seen desc))[1] as last_message,
          (array_agg(f.last_execution_id::text order by f.last_seen desc))[1] as last_execution_id
        from failure_groups f join g using (fingerprint)
        where ${cov.where('f')} and (not g.open or f.status = 'open')
          ${status === 'open' ? sql`and g.open` : status === 'resolved' ? sql`and not g.open` : sql``}
        group by f.fingerprint, g.open)
      select * from agg
      ${after ? sql`where (accounts, last_us, ${after.f}::text) < (${after.a}::int, ${after.l}::bigint, fingerprint)` : sql``}
      order by accounts desc, last_us desc, fingerprint asc
      limit ${limit + 1}`);
    const more = page.length > limit;
    const rows = page.slice(0, limit);
    if (rows.length === 0) return { groups: [], nextCursor: null, accountsCovered: cov.accounts.length };
    const fingerprints = textList(rows.map((r) => String(r.fingerprint)));
    const onlyOpen = rows.filter((r) => r.open).map((r) => String(r.fingerprint));

    // up to LISTED_PER_GROUP affected accounts and automations of each group on the page, most recent first
    const counted = sql`f.fingerprint = any(${fingerprints}::text[]) and ${cov.where('f')} and (f.status = 'open' or not (f.fingerprint = any(${textList(onlyOpen)}::text[])))`;
    const accountRows = await q<{ fingerprint: string; account_id: string }>(sql`
      select fingerprint, account_id from (
        select fingerprint, account_id, row_number() over (partition by fingerprint order by max(last_seen) desc, account_id) as n
        from failure_groups f where ${counted} group by fingerprint, account_id) x
      where n <= ${LISTED_PER_GROUP}`);
    const automationRows = await q<{ fingerprint: string; automation_id: string; name: string | null; account_id: string | null }>(sql`
      select x.fingerprint, x.automation_id, a.name, a.account_id from (
        select fingerprint, automation_id, row_number() over (partition by fingerprint order by max(last_seen) desc, automation_id) as n
        from failure_groups f where ${counted} group by fingerprint, automation_id) x
      left join automations a on a.id = x.automation_id
      where n <= ${LISTED_PER_GROUP}`);

    const groups: FailureGroup[] = rows.map((r) => {
      const fp = String(r.fingerprint);
      return {
        id: fp,
        target: String(r.target),
        stepId: String(r.step_id),
        errorCode: String(r.error_code),
        upstreamStatus: r.upstream_status === null ? null : num(r.upstream_status),
        status: r.open ? 'open' : 'resolved',
        firstSeen: date(r.first_seen)!,
        lastSeen: date(r.last_seen)!,
        count: num(r.count),
        total: num(r.total),
        accounts: {
          count: num(r.accounts),
          items: accountRows
            .filter((a) => a.fingerprint === fp)
            .map((a) => cov.byId.get(a.account_id))
            .filter((a): a is Account => a !== undefined)
            .map((a) => ({ id: a.id, slug: a.slug, name: a.name })),
        },
        automations: {
          count: num(r.automations),
          items: automationRows
            .filter((a) => a.fingerprint === fp)
            .map((a) => ({ id: a.automation_id, name: a.name, account: a.account_id ? (cov.byId.get(a.account_id)?.slug ?? (a.account_id === account.id ? account.slug : null)) : null })),
        },
        lastMessage: (r.last_message as string | null) ?? null,
        lastExecutionId: (r.last_execution_id as string | null) ?? null,
      };
    });
    const last = rows[rows.length - 1]!;
    const nextCursor = more ? encodeCursor({ a: num(last.accounts), l: String(last.last_us), f: String(last.fingerprint) }) : null;
    return { groups, nextCursor, accountsCovered: cov.accounts.length };
  });
}

