import { z } from 'zod';
import { defineTool, type ToolDef } from '../define-tool.js';
import { accountArg, accountRefOut, refOf } from './shapes.js';
import { getAccountById } from '../../core/accounts.js';
import { endSessionSwitches, startSwitch } from '../../core/switches.js';
import { UserError } from '../../core/errors.js';
import { PERMISSIONS } from '../../db/schema/index.js';

const switchedOut = z.object({ until: z.string(), reason: z.string() }).nullable();

const whoamiTool = defineTool({
  name: 'whoami',
  toolset: 'accounts',
  title: 'Who am I',
  description: 'Shows who you are, your home account, the account your calls act in now (and any active switch), and your permissions.',
  input: {},
  output: {
    user: z.object({ id: z.string(), email: z.string(), name: z.string() }),
    token_id: z.string().describe('The API token this call used (for revoke_token).'),
    home_account: accountRefOut,
    acting_account: accountRefOut,
    switched: switchedOut,
    permissions: z.array(z.enum(PERMISSIONS)),
  },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: null },
  async handler(ctx) {
    const u = ctx.caller.user;
    const home = u.homeAccountId === ctx.account.id ? ctx.account : await getAccountById(ctx.core, u.homeAccountId);
    const sw = ctx.switch;
    return {
      data: {
        user: { id: u.id, email: u.email, name: u.name },
        token_id: ctx.caller.tokenId,
        home_account: refOf(home!),
        acting_account: refOf(ctx.account),
        switched: sw ? { until: sw.until.toISOString(), reason: sw.reason } : null,
        permissions: u.permissions,
      },
      text: `You are ${u.email}, acting in ${ctx.account.slug}${sw ? ` (switched until ${sw.until.toISOString()})` : ' (home)'}.`,
    };
  },
});

const switchAccountTool = defineTool({
  name: 'switch_account',
  toolset: 'accounts',
  title: 'Switch account',
  description:
    'Enters another account for the rest of this session: later calls act there until you return ' +
    "with account \"home\" or the time box ends. Needs a reason (it is audited) and the Switch Account permission unless you belong to that account.",
  input: {
    account: accountArg('The account to enter, or "home" to return'),
    reason: z.string().min(3).max(500).optional().describe('Why you are entering (required unless returning home), e.g. "ticket 4411: failing webhook".'),
    minutes: z.number().int().min(1).max(480).optional().describe('How long the switch lasts (default 30 minutes).'),
  },
  output: { home_account: accountRefOut, acting_account: accountRefOut, switched: switchedOut },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false },
  access: { role: null, accountArg: null },
  async handler(ctx, args) {
    const u = ctx.caller.user;
    const home = (await getAccountById(ctx.core, u.homeAccountId))!;
    const previous = ctx.switch;
    if (args.account.trim().toLowerCase() === 'home') {
      await endSessionSwitches(ctx.core, ctx.session.id);
      ctx.auditAccount(previous?.accountId ?? home.id);
      return {
        data: { home_account: refOf(home), acting_account: refOf(home), switched: null },
        text: previous ? `Returned from ${previous.slug} to ${home.slug}.` : `You are already in your home account ${home.slug}.`,
      };
    }
    if (!args.reason?.trim()) throw new UserError('A reason is required to enter an account: say why (it goes into the audit log).');
    // entering a suspended account is reading it: its admins may
    const { account } = await ctx.authorizeAccount(args.account, 'viewer', false);
    // from now on every call of this session reads its switch from the database
    ctx.session.switched = true;
    const sw = await startSwitch(ctx.core, {
      userId: u.id,
      homeAccountId: home.id,
      accountId: account.id,
      sessionId: ctx.session.id,
      reason: args.reason.trim(),
      minutes: args.minutes ?? ctx.core.switchMinutes,
    });
    return {
      data: { home_account: refOf(home), acting_account: refOf(account), switched: { until: sw.until.toISOString(), reason: sw.reason } },
      text: `Now acting in ${account.slug} until ${sw.until.toISOString()}; switch_account with account "home" returns.`,
    };
  },
});

export const sessionTools: ToolDef[] = [whoamiTool, switchAccountTool];
