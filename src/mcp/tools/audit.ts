import { z } from 'zod';
import { defineTool, type ToolDef } from '../define-tool.js';
import { accountArg, cursorArg, limitArg, timeArg } from './shapes.js';
import { listAudit } from '../../core/audit.js';
import { findUser, hasPermission } from '../../core/users.js';
import { AUDIT_OUTCOMES } from '../../db/schema/index.js';
import { scopeArg, tenantScope } from './switches.js';

/** Matches no entry: the actor filter for a user that does not exist. */
const NO_USER = '00000000-0000-0000-0000-000000000000';

const auditLogTool = defineTool({
  name: 'audit_log',
  toolset: 'audit',
  title: 'Audit log',
  description:
    'Lists the audit entries of an account, newest first: every tool call made in it, allowed, denied or failed, with its actor ' +
    'and arguments (secrets redacted). Needs the admin role in the account; tenant admins also see calls from outside ' +
    'the account that were denied there. Scope "tenant" lists every account\'s entries and the tenant\'s own (admin permission).',
  input: {
    account: accountArg('The account whose entries to list (default: the account you act in)').optional(),
    scope: scopeArg,
    actor: z.string().min(1).max(254).optional().describe('Only calls by this user (id or email).'),
    tool: z.string().min(1).max(100).optional().describe('Only calls of this tool, e.g. "switch_account".'),
    outcome: z.enum(AUDIT_OUTCOMES).optional().describe('Only calls with this outcome.'),
    since: timeArg('Only entries at or after this time.').optional(),
    limit: limitArg(),
    cursor: cursorArg,
  },
  output: {
    entries: z.array(
      z.object({
        id: z.number().int(),
        at: z.string(),
        actor: z.object({ id: z.string().nullable(), email: z.string().nullable() }),
        home_account_id: z.string().nullable(),
        account_id: z.string().nullable(),
        target_account_id: z
          .string()
          .nullable()
          .describe('For a call denied to a caller without access: the account it tried to reach (shown to tenant admins and Switch Account holders only).'),
        switch_id: z.string().nullable(),
        session_id: z.string().nullable(),
        tool: z.string(),
        arguments: z.json().describe("As the call sent them, secrets redacted."),
        outcome: z.enum(AUDIT_OUTCOMES),
        message: z.string().nullable(),
        duration_ms: z.number().int().nullable(),
      }),
    ),
    next_cursor: z.string().nullable(),
  },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: 'admin', tenantScope },
  async handler(ctx, args) {
    // an unknown actor reads exactly like one with no entries here (same queries, same answer):
    // whether a user exists is not this account's business
    const actorUserId = args.actor === undefined ? undefined : ((await findUser(ctx.core, args.actor))?.id ?? NO_USER);
    // which account a denied outsider meant is for those who may know every account exists
    const tenantWide = hasPermission(ctx.caller.user, 'admin') || hasPermission(ctx.caller.user, 'switch_account');
    const tenant = args.scope === 'tenant';
    const page = await listAudit(ctx.core, {
      accountId: tenant ? null : ctx.account.id,
      includeTargeted: hasPermission(ctx.caller.user, 'admin'),
      actorUserId,
      tool: args.tool,
      outcome: args.outcome,
      since: args.since ? new Date(args.since) : undefined,
      limit: args.limit ?? 50,
      cursor: args.cursor,
    });
    return {
      data: {
        entries: page.entries.map((e) => ({
          id: e.id,
          at: e.at.toISOString(),
          actor: { id: e.actorUserId, email: e.actorEmail },
          home_account_id: e.homeAccountId,
          account_id: e.accountId,
          target_account_id: tenantWide ? e.targetAccountId : null,
          switch_id: e.switchId,
          session_id: e.sessionId,
          tool: e.tool,
          arguments: e.arguments as z.infer<ReturnType<typeof z.json>>,
          outcome: e.outcome,
          message: e.message,
          duration_ms: e.durationMs,
        })),
        next_cursor: page.nextCursor,
      },
      text: `${page.entries.length} audit entr${page.entries.length === 1 ? 'y' : 'ies'} ${tenant ? 'in the tenant' : `for ${ctx.account.slug}`}${page.nextCursor ? ' (more with next_cursor)' : ''}.`,
    };
  },
});

export const auditTools: ToolDef[] = [auditLogTool];
