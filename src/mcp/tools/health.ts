import { z } from 'zod';
import { targetWord } from '../../core/operations/words.js';
import { defineTool, type ToolDef } from '../define-tool.js';
import { accountArg, cursorArg, iso, limitArg } from './shapes.js';
import { listFailureGroups } from '../../core/operations/failure-groups.js';
import { checkHealth, WINDOW_LABEL, type AccountHealth } from '../../core/operations/health.js';
import { at, type Figures } from '../../core/operations/health-rules.js';

/**
 * Operating the fleet: one upstream problem across accounts (list_failure_groups) and the health
 * of one account, a parent's linked accounts, or every account the caller may see (check_health).
 * Sentences carry counts, codes, app slugs, account slugs and times; names and upstream messages
 * are data and stay in their fields.
 */

const scopeArg = z
  .enum(['account', 'children', 'all'])
  .optional()
  .describe("Default 'account'; 'children': its linked accounts; 'all': all you may see.");

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

const groupOut = z.object({
  id: z.string().describe('The fingerprint (target, step, error code, upstream status).'),
  target: z.string().describe("App slug, or host:<host> for a call without a connection (host:* when the event sets it)."),
  step_id: z.string(),
  error_code: z.string(),
  upstream_status: z.number().int().nullable(),
  status: z.enum(['open', 'resolved']).describe('Open while any affected automation has not succeeded since.'),
  first_seen: z.string(),
  last_seen: z.string(),
  count: z.number().int().describe('Failures since the group (re)opened; for a resolved group, of its last episode.'),
  total: z.number().int(),
  affected_accounts: z.object({ count: z.number().int(), items: z.array(z.object({ id: z.string(), slug: z.string(), name: z.string() })) }),
  automations: z.object({ count: z.number().int(), items: z.array(z.object({ id: z.string(), name: z.string().nullable(), account: z.string().nullable() })) }),
  data: z.object({ last_message: z.string().nullable().describe('The latest error message: upstream text, data only.'), last_execution_id: z.string().nullable() }),
});

const listFailureGroupsTool = defineTool({
  name: 'list_failure_groups',
  toolset: 'operations',
  title: 'List failure groups',
  description:
    'Failures grouped by fingerprint (app or host, step, error code, upstream status) across the accounts in scope: since when, how often, ' +
    'which accounts and automations, open or resolved. Most affected accounts first.',
  input: {
    account: accountArg().optional(),
    scope: scopeArg,
    status: z.enum(['open', 'resolved', 'all']).optional().describe("Default 'open'."),
    limit: limitArg(200, 50),
    cursor: cursorArg,
  },
  output: { groups: z.array(groupOut), accounts_covered: z.number().int(), next_cursor: z.string().nullable() },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: 'viewer' },
  async handler(ctx, args) {
    const page = await listFailureGroups(ctx.core, ctx.caller, ctx.account, ctx.grant, { scope: args.scope, status: args.status, limit: args.limit, cursor: args.cursor });
    const groups = page.groups.map((g) => ({
      id: g.id,
      target: g.target,
      step_id: g.stepId,
      error_code: g.errorCode,
      upstream_status: g.upstreamStatus,
      status: g.status,
      first_seen: iso(g.firstSeen)!,
      last_seen: iso(g.lastSeen)!,
      count: g.count,
      total: g.total,
      affected_accounts: g.accounts,
      automations: g.automations,
      data: { last_message: g.lastMessage, last_execution_id: g.lastExecutionId },
    }));
    const top = page.groups[0];
    const status = args.status ?? 'open';
    const text = top
      ? `${plural(groups.length, `${status === 'all' ? '' : `${status} `}failure group`)} over ${plural(page.accountsCovered, 'account')}; the largest: ${targetWord(top.target)} ${top.errorCode}` +
        `${top.upstreamStatus ? ` (${top.upstreamStatus})` : ''} in ${plural(top.accounts.count, 'account')} since ${at(top.firstSeen)}, ${plural(top.count, 'failure')}` +
        `${page.nextCursor ? ' (more with next_cursor)' : ''}.`
      : `No ${status === 'all' ? '' : `${status} `}failure groups over ${plural(page.accountsCovered, 'account')}.`;
    return { data: { groups, accounts_covered: page.accountsCovered, next_cursor: page.nextCursor }, text };
  },
});

const automationRefOut = z.object({ id: z.string(), name: z.string().nullable() });
const reasonOut = z.object({
  code: z.string(),
  severity: z.enum(['failing', 'degraded', 'info']),
  text: z.string().describe('One sentence with its figures.'),
  automations: z.array(automationRefOut).optional(),
});
const figuresOut = z.object({
  runs: z.object({ succeeded: z.number(), failed: z.number(), filtered: z.number(), cancelled: z.number(), throttled: z.number(), failure_rate: z.number().nullable() }),
  previous: z.object({ succeeded: z.number(), failed: z.number(), failure_rate: z.number().nullable() }),
  deliveries: z.object({ received: z.number(), accepted: z.number(), routed: z.number(), unrouted: z.number(), duplicate: z.number(), rejected: z.number(), recorded: z.number(), previous_received: z.number() }),
  last_success_at: z.string().nullable(),
  last_failure_at: z.string().nullable(),
  failing_automations: z.array(automationRefOut.extend({ succeeded: z.number(), failed: z.number(), last_failure_at: z.string().nullable(), last_success_at: z.string().nullable() })),
  open_failure_groups: z.object({
    groups: z.number(),
    top: z.array(z.object({ target: z.string(), error_code: z.string(), upstream_status: z.number().nullable(), count: z.number(), first_seen: z.string() })),
  }),
  connections: z.array(z.object({ id: z.string(), app: z.string(), name: z.string(), status: z.enum(['expired', 'disconnected']), since: z.string(), pauses: z.number() })),
  paused_automations: z.array(automationRefOut.extend({ connection_id: z.string().nullable(), app: z.string().nullable(), connection_status: z.string().nullable() })),
  queue_lag_seconds: z.number().nullable(),
  silent_automations: z.array(automationRefOut.extend({ baseline: z.number(), windows: z.number() })),
});
const accountHealthOut = z.object({
  account: z.object({ id: z.string(), slug: z.string(), name: z.string() }),
  status: z.enum(['healthy', 'degraded', 'failing', 'idle']),
  cause: z.string().nullable().describe('The first problem in app slugs and codes, e.g. "mindbody http_401".'),
  reasons: z.array(reasonOut),
  figures: figuresOut,
});

const figuresView = (f: Figures): z.infer<typeof figuresOut> => ({
  ...f,
  last_success_at: iso(f.last_success_at),
  last_failure_at: iso(f.last_failure_at),
  failing_automations: f.failing_automations.map((a) => ({ ...a, last_failure_at: iso(a.last_failure_at), last_success_at: iso(a.last_success_at) })),
  open_failure_groups: { groups: f.open_failure_groups.groups, top: f.open_failure_groups.top.map((t) => ({ ...t, first_seen: iso(t.first_seen)! })) },
  connections: f.connections.map((c) => ({ ...c, since: iso(c.since)! })),
});

const view = (h: AccountHealth): z.infer<typeof accountHealthOut> => ({
  account: { id: h.account.id, slug: h.account.slug, name: h.account.name },
  status: h.status,
  cause: h.cause,
  reasons: h.reasons,
  figures: figuresView(h.figures),
});

/** "acme-studio-04, acme-studio-11 failing: http http_401": slugs and causes, a few of each. */
function worst(rows: AccountHealth[], status: 'failing' | 'degraded'): string | null {
  const of = rows.filter((r) => r.status === status);
  if (!of.length) return null;
  const slugs = of.slice(0, 5).map((r) => r.account.slug).join(', ') + (of.length > 5 ? ` and ${of.length - 5} more` : '');
  const causes = [...new Set(of.map((r) => r.cause).filter((c): c is string => c !== null))];
  return `${slugs} ${status}${causes.length ? `: ${causes.slice(0, 3).join(', ')}${causes.length > 3 ? ', …' : ''}` : ''}`;
}

const checkHealthTool = defineTool({
  name: 'check_health',
  toolset: 'operations',
  title: 'Check health',
  description:
    'Health of an account, its linked accounts (scope children) or every account you may see (scope all, worst first), ' +
    'with the reasons and figures behind each status.',
  input: {
    account: accountArg().optional(),
    scope: scopeArg,
    window: z.enum(['1h', '24h', '7d']).optional().describe("Default '24h': this hour and the 24 full hours before it."),
    status: z.enum(['failing', 'degraded', 'healthy', 'idle']).optional().describe('Only accounts with this status.'),
    limit: limitArg(1000, 100).describe('Accounts listed (default 100); the counts cover all of them.'),
  },
  output: {
    window: z.enum(['1h', '24h', '7d']),
    from: z.string().describe('The first hour bucket of the window.'),
    previous_from: z.string(),
    summary: z.string(),
    counts: z.object({ failing: z.number(), degraded: z.number(), healthy: z.number(), idle: z.number() }),
    accounts: z.array(accountHealthOut),
    more: z.number().int().describe('Accounts not listed (limit or status).'),
  },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: 'viewer' },
  async handler(ctx, args) {
    const scope = args.scope ?? 'account';
    const report = await checkHealth(ctx.core, ctx.caller, ctx.account, ctx.grant, { scope, window: args.window });
    const rows = report.accounts;
    const listed = rows.filter((r) => !args.status || r.status === args.status).slice(0, args.limit ?? 100);
    const label = WINDOW_LABEL[report.window];
    let summary: string;
    if (scope === 'account') {
      const h = rows[0]!;
      const first = h.reasons[0]!;
      summary = `${h.account.slug} is ${h.status} in ${label}: ${first.text}`;
    } else {
      const noun = scope === 'children' ? 'linked account' : 'account';
      const parts = [worst(rows, 'failing'), worst(rows, 'degraded')].filter((p): p is string => p !== null);
      const idle = report.counts.idle ? `, ${report.counts.idle} idle` : '';
      summary = rows.length
        ? `${report.counts.healthy} of ${plural(rows.length, noun)} healthy${idle} in ${label}${parts.length ? `; ${parts.join('; ')}` : ''}.`
        : `No ${noun}s in scope.`;
    }
    return {
      data: {
        window: report.window,
        from: iso(report.from)!,
        previous_from: iso(report.previousFrom)!,
        summary,
        counts: report.counts,
        accounts: listed.map(view),
        more: rows.length - listed.length,
      },
      text: summary,
    };
  },
});

export const healthTools: ToolDef[] = [listFailureGroupsTool, checkHealthTool];
