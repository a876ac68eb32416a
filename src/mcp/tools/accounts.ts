import { z } from 'zod';
import { defineTool, type ToolDef } from '../define-tool.js';
import { accountArg, accountRefOut, accountSummaryOut, cursorArg, limitArg, refOf, summary } from './shapes.js';
import {
  childrenOf, createAccount, getAccountById, linkAccount, listAccounts, setAccountStatus, unlinkAccount,
} from '../../core/accounts.js';
import { ACCOUNT_STATUSES } from '../../db/schema/index.js';
import { atLeast, authorize, resolveAccountFor, suspensionDenial } from '../../core/access.js';
import { hasPermission } from '../../core/users.js';
import { UserError } from '../../core/errors.js';

const routingKeyArg = z
  .string()
  .min(1)
  .max(100)
  .describe("How events address this child within its parent, e.g. the source system's location id 'studio-12'.");

const listAccountsTool = defineTool({
  name: 'list_accounts',
  toolset: 'accounts',
  title: 'List accounts',
  description:
    'Lists the accounts you can see (all of them with the Switch Account permission), ordered by name; query searches, ' +
    "parent lists a parent account's linked children.",
  input: {
    query: z.string().max(200).optional().describe('Part of an account name, slug or routing key (case-insensitive).'),
    parent: accountArg('Only the linked children of this parent account').optional(),
    limit: limitArg(),
    cursor: cursorArg,
  },
  output: { accounts: z.array(accountSummaryOut), next_cursor: z.string().nullable() },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: null, accountArg: null, tenant: true },
  async handler(ctx, args) {
    const all = hasPermission(ctx.caller.user, 'switch_account');
    // without Switch Account, only an account the caller has a grant in resolves
    const parentId = args.parent === undefined ? undefined : (await resolveAccountFor(ctx.core, ctx.caller, args.parent)).account.id;
    const page = await listAccounts(ctx.core, {
      visibleTo: all ? null : ctx.caller.user.id,
      query: args.query,
      parentId,
      limit: args.limit ?? 50,
      cursor: args.cursor,
    });
    const n = page.accounts.length;
    return {
      data: { accounts: page.accounts.map(summary), next_cursor: page.nextCursor },
      text: `${n} account${n === 1 ? '' : 's'}${page.nextCursor ? ' (more with next_cursor)' : ''}.`,
    };
  },
});

const getAccountTool = defineTool({
  name: 'get_account',
  toolset: 'accounts',
  title: 'Get account',
  description:
    'Shows one account (default: the account you act in): its kind, status, linked parent and linked children ' +
    '(with their routing keys), and your access to it.',
  input: { account: accountArg().optional() },
  output: {
    account: accountSummaryOut.extend({
      suspended_reason: z.string().nullable().describe('Why it is suspended, while it is.'),
      created_at: z.string(),
      parent: accountRefOut.extend({ routing_key: z.string().nullable() }).nullable(),
      children: z.array(accountRefOut.extend({ routing_key: z.string().nullable() })),
      children_total: z.number().int(),
    }),
    your_access: z.object({ role: z.enum(['viewer', 'member', 'admin', 'owner']), via: z.enum(['membership', 'parent_admin', 'switch_account']) }),
  },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: 'viewer' },
  async handler(ctx) {
    const a = ctx.account;
    // children are listed to those who may act in them (admins of this account); others get the count
    const seesChildren = atLeast(ctx.grant!.role, 'admin');
    const parent = a.parentAccountId ? await getAccountById(ctx.core, a.parentAccountId) : null;
    const kids = await childrenOf(ctx.core, a.id, seesChildren);
    return {
      data: {
        account: {
          ...summary(a),
          suspended_reason: a.status === 'suspended' ? a.statusReason : null,
          created_at: a.createdAt.toISOString(),
          parent: parent ? { ...refOf(parent), routing_key: a.routingKey } : null,
          children: kids.children.map((c) => ({ ...refOf(c), routing_key: c.routingKey })),
          children_total: kids.total,
        },
        your_access: ctx.grant!,
      },
      text:
        `${a.slug} is a ${a.status === 'suspended' ? 'suspended ' : ''}${a.kind} account` +
        (parent ? ` linked to ${parent.slug} (routing key in account.parent.routing_key)` : '') +
        (kids.total ? ` with ${kids.total} linked child account${kids.total === 1 ? '' : 's'}` : '') +
        '.',
    };
  },
});

const createAccountTool = defineTool({
  name: 'create_account',
  toolset: 'directory',
  title: 'Create account',
  description:
    'Creates a customer or sandbox account (admin permission). With parent and routing_key it is created as a linked child ' +
    "of that parent, e.g. one studio of a fitness chain addressed by its location id.",
  input: {
    name: z.string().min(1).max(200).describe('Display name, e.g. "Acme Fitness".'),
    slug: z.string().min(1).max(63).optional().describe('URL-safe identifier; derived from the name when omitted.'),
    kind: z.enum(['customer', 'sandbox']).optional().describe('customer (default) or sandbox.'),
    parent: accountArg('Create as a linked child of this parent account').optional(),
    routing_key: routingKeyArg.optional(),
  },
  output: { account: accountSummaryOut },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false },
  access: { role: null, accountArg: null, permission: 'admin', also: [{ arg: 'parent', role: 'admin' }], tenant: true },
  async handler(ctx, args) {
    if (args.parent !== undefined && args.routing_key === undefined) {
      throw new UserError('A linked child account needs a routing_key: how events find this location within its parent.');
    }
    const a = await createAccount(ctx.core, {
      name: args.name,
      slug: args.slug,
      kind: args.kind,
      parent: ctx.named.parent,
      routingKey: args.routing_key,
    });
    return { data: { account: summary(a) }, text: `Created account ${a.slug}${ctx.named.parent ? ` under ${ctx.named.parent.slug}` : ''}.` };
  },
});

const linkAccountTool = defineTool({
  name: 'link_account',
  toolset: 'directory',
  title: 'Link account',
  description:
    'Links an unlinked account as a child of a parent account (admin permission), addressed within the parent by routing_key. ' +
    'Admins of the parent then act as admins of the child. One level only.',
  input: {
    child: accountArg('The account to link'),
    parent: accountArg('The parent account'),
    routing_key: routingKeyArg,
  },
  output: { account: accountSummaryOut, parent: accountRefOut },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true },
  access: { role: 'admin', accountArg: 'child', permission: 'admin', also: [{ arg: 'parent', role: 'admin' }] },
  async handler(ctx, args) {
    const parent = ctx.named.parent!;
    const a = await linkAccount(ctx.core, ctx.account, parent, args.routing_key);
    return { data: { account: summary(a), parent: refOf(parent) }, text: `Linked ${a.slug} under ${parent.slug} (routing key in account.routing_key).` };
  },
});

const unlinkAccountTool = defineTool({
  name: 'unlink_account',
  toolset: 'directory',
  title: 'Unlink account',
  description: 'Removes the link between a child account and its parent (admin permission). Nothing is deleted; the parent\'s admins lose access through the link.',
  input: { child: accountArg('The linked child account') },
  output: { account: accountSummaryOut, former_parent_id: z.string() },
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false },
  access: { role: 'admin', accountArg: 'child', permission: 'admin' },
  async handler(ctx) {
    const formerParent = ctx.account.parentAccountId;
    if (!formerParent) throw new UserError(`'${ctx.account.slug}' is not linked to a parent account.`);
    // admin of both sides, like link_account, and neither side suspended
    const parent = (await getAccountById(ctx.core, formerParent))!;
    const denied = suspensionDenial(parent, await authorize(ctx.core, ctx.caller, parent, 'admin'), true);
    if (denied) throw denied;
    const a = await unlinkAccount(ctx.core, ctx.account);
    return { data: { account: summary(a), former_parent_id: formerParent! }, text: `Unlinked ${a.slug} from its parent.` };
  },
});

const setAccountStatusTool = defineTool({
  name: 'set_account_status',
  toolset: 'directory',
  title: 'Set account status',
  description:
    'Suspends an account, or lifts its suspension (admin permission). While suspended nothing can be changed in it, only its ' +
    'admins can read it and its automations do not run; lifting restores everything. The reason is recorded.',
  input: {
    account: accountArg(),
    status: z.enum(ACCOUNT_STATUSES).describe('suspended, or active to lift a suspension.'),
    reason: z.string().min(3).max(500).describe('Why, e.g. "invoice 2211 unpaid"; recorded with the change.'),
  },
  output: { account: accountSummaryOut, changed: z.boolean().describe('false when the account already had that status.') },
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true },
  access: { role: 'admin', permission: 'admin', whileSuspended: true },
  async handler(ctx, args) {
    const { account: a, changed } = await setAccountStatus(ctx.core, ctx.account, args.status, args.reason, ctx.caller.user.id);
    const what = a.status === 'suspended' ? 'suspended: nothing changes or runs there until it is lifted' : 'active';
    return { data: { account: summary(a), changed }, text: changed ? `${a.slug} is now ${what}.` : `${a.slug} was already ${a.status}; nothing changed.` };
  },
});

export const accountTools: ToolDef[] = [listAccountsTool, getAccountTool, createAccountTool, linkAccountTool, unlinkAccountTool, setAccountStatusTool];
