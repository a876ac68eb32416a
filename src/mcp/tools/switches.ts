import { z } from 'zod';
import { defineTool, type ToolDef } from '../define-tool.js';
import { accountArg, accountRefOut, cursorArg, iso, limitArg, refOf, timeArg } from './shapes.js';
import { endSwitchFor, findSwitch, listSwitches } from '../../core/switches.js';
import { atLeast, grantIn } from '../../core/access.js';
import { findUser, hasPermission } from '../../core/users.js';
import { AccessDenied, UserError } from '../../core/errors.js';
import { isUuid } from '../../core/ids.js';

/** Matches no switch: the user filter for a user that does not exist. */
const NO_USER = '00000000-0000-0000-0000-000000000000';

/** `scope: "tenant"` on the review tools: the whole tenant instead of one account, for holders of the admin permission. */
export const scopeArg = z
  .enum(['account', 'tenant'])
  .optional()
  .describe('"tenant": every account of the tenant (needs the admin permission; do not pass account). Default: one account.');
export const tenantScope = { when: (args: Record<string, unknown>) => args.scope === 'tenant', permission: 'admin' as const };

const userRef = z.object({ id: z.string().nullable(), email: z.string().nullable() });

const listSwitchesTool = defineTool({
  name: 'list_switches',
  toolset: 'audit',
  title: 'List switches',
  description:
    'Who switched into which account, when and why: each switch with its user, home account, reason, start, end or expiry, and ' +
    'the number of calls made under it, newest first. Admins of an account see switches into it; scope "tenant" needs the admin permission.',
  input: {
    account: accountArg('The account whose switches to list (default: the account you act in)').optional(),
    scope: scopeArg,
    user: z.string().min(1).max(254).optional().describe('Only switches by this user (id or email).'),
    since: timeArg('Only switches open at or after this time, e.g. the start of the week.').optional(),
    active: z.boolean().optional().describe('true: only switches still in effect; false: only those that ended.'),
    limit: limitArg(),
    cursor: cursorArg,
  },
  output: {
    switches: z.array(
      z.object({
        id: z.string().describe('The switch id (for end_switch; audit_log entries carry it as switch_id).'),
        user: userRef,
        home_account_id: z.string(),
        home_account: accountRefOut.nullable().describe('Null when you may not see that account.'),
        account: accountRefOut.describe('The account switched into.'),
        session_id: z.string(),
        reason: z.string(),
        started_at: z.string(),
        expires_at: z.string(),
        ended_at: z.string().nullable().describe('Null while active; for a switch that lapsed, its expiry.'),
        active: z.boolean(),
        ended_by: z
          .object({ user: userRef, reason: z.string().nullable() })
          .nullable()
          .describe('Set when someone else ended it with end_switch.'),
        calls: z.number().int().describe('Tool calls made under the switch, allowed or not.'),
      }),
    ),
    next_cursor: z.string().nullable(),
  },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: 'admin', tenantScope },
  async handler(ctx, args) {
    const tenant = args.scope === 'tenant';
    // an unknown user reads exactly like one without switches (whether a user exists is not the account's business)
    const userId = args.user === undefined ? undefined : ((await findUser(ctx.core, args.user))?.id ?? NO_USER);
    const page = await listSwitches(ctx.core, {
      ...(tenant ? {} : { accountId: ctx.account.id }),
      ...(userId ? { userId } : {}),
      ...(args.since ? { since: new Date(args.since) } : {}),
      ...(args.active === undefined ? {} : { active: args.active }),
      limit: args.limit ?? 50,
      ...(args.cursor ? { cursor: args.cursor } : {}),
      reader: tenant || hasPermission(ctx.caller.user, 'switch_account') ? 'all' : { userId: ctx.caller.user.id },
    });
    const n = page.switches.length;
    return {
      data: {
        switches: page.switches.map((s) => ({
          id: s.id,
          user: s.user,
          home_account_id: s.homeAccountId,
          home_account: s.homeAccount && refOf(s.homeAccount),
          account: refOf(s.account),
          session_id: s.sessionId,
          reason: s.reason,
          started_at: s.startedAt.toISOString(),
          expires_at: s.expiresAt.toISOString(),
          ended_at: iso(s.endedAt),
          active: s.active,
          ended_by: s.endedBy ? { user: { id: s.endedBy.id, email: s.endedBy.email }, reason: s.endedBy.reason } : null,
          calls: s.calls,
        })),
        next_cursor: page.nextCursor,
      },
      text: `${n} switch${n === 1 ? '' : 'es'} ${tenant ? 'in the tenant' : `into ${ctx.account.slug}`}${page.nextCursor ? ' (more with next_cursor)' : ''}.`,
    };
  },
});

const endSwitchTool = defineTool({
  name: 'end_switch',
  toolset: 'audit',
  title: 'End switch',
  description:
    "Ends someone's active switch into an account (see list_switches): their session's next call is refused with the reason and acts " +
    'in their home account from then on. Needs the admin role in that account or the admin permission; anyone may end their own.',
  input: {
    switch: z.string().min(1).max(100).describe('The switch id, from list_switches.'),
    reason: z.string().min(3).max(500).optional().describe('Why, shown to the person whose switch ends and kept in the audit log.'),
  },
  output: { id: z.string(), account: accountRefOut, user_id: z.string(), ended_at: z.string() },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true },
  access: { role: null, accountArg: null },
  async handler(ctx, args) {
    // one answer whether the switch does not exist or is not the caller's to end: ids are not probed.
    // Recorded like any outsider's denial: in the caller's home log, the account it meant for tenant admins.
    const sw = isUuid(args.switch) ? await findSwitch(ctx.core, args.switch) : null;
    const refused = new AccessDenied(
      `Access denied: there is no switch '${args.switch}' that you may end; ending a switch needs the admin role in the account it entered, or the admin permission.`,
      { key: args.switch, accountId: sw?.account.id ?? null },
    );
    if (!sw) throw refused;
    const own = sw.userId === ctx.caller.user.id;
    if (!own && !hasPermission(ctx.caller.user, 'admin')) {
      const grant = await grantIn(ctx.core, ctx.caller, sw.account);
      if (!grant || !atLeast(grant.role, 'admin')) throw refused;
    }
    // the account's admins read in its log that a switch into it was ended
    ctx.auditAccount(sw.account.id);
    if (!sw.active) throw new UserError(`Switch '${sw.id}' is no longer active (it ended at ${(sw.endedAt ?? sw.expiresAt).toISOString()}).`);
    const at = await endSwitchFor(ctx.core, { id: sw.id, accountId: sw.account.id }, { userId: ctx.caller.user.id, reason: args.reason?.trim() || null });
    if (!at) throw new UserError(`Switch '${sw.id}' ended meanwhile; nothing was changed.`);
    return {
      data: { id: sw.id, account: refOf(sw.account), user_id: sw.userId, ended_at: at.toISOString() },
      text: `Ended switch ${sw.id} into ${sw.account.slug}; its session's next call acts in its home account.`,
    };
  },
});

export const switchTools: ToolDef[] = [listSwitchesTool, endSwitchTool];
