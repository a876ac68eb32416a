import { z } from 'zod';
import { defineTool, type ToolDef } from '../define-tool.js';
import { accountArg, accountRefOut, refOf } from './shapes.js';
import { createUser, findUser, getToken, hasPermission, revokeToken, setPermissions, MIN_PASSWORD_LENGTH } from '../../core/users.js';
import { atLeast, requirePermission } from '../../core/access.js';
import { AccessDenied, UserError } from '../../core/errors.js';
import { getAccountById } from '../../core/accounts.js';
import { PERMISSIONS, ROLES } from '../../db/schema/index.js';

const permissionsArg = z
  .array(z.enum(PERMISSIONS))
  .max(PERMISSIONS.length)
  .describe("Tenant-wide permissions: 'switch_account' (may act in any account; high trust) and 'admin' (manages accounts and users).");

const userOut = z.object({ id: z.string(), email: z.string(), name: z.string(), home_account: accountRefOut, permissions: z.array(z.enum(PERMISSIONS)) });

const createUserTool = defineTool({
  name: 'create_user',
  toolset: 'admin',
  title: 'Create user',
  description:
    'Creates a user at home in an account with a role there, and returns their first API token, shown only this once. ' +
    'Needs the admin role in that account; granting permissions needs the admin permission.',
  input: {
    email: z.string().email().max(254).describe('Email address; unique in the tenant.'),
    name: z.string().min(1).max(200).describe('Display name.'),
    account: accountArg('Home account of the new user'),
    role: z.enum(ROLES).describe('Role in the home account: viewer, member, admin or owner.'),
    permissions: permissionsArg.optional(),
    password: z.string().min(MIN_PASSWORD_LENGTH).max(1024).optional().describe('Optional password, used to re-verify before viewing secrets.'),
  },
  output: { user: userOut, token: z.string().describe('API token; shown once, store it now.'), token_id: z.string() },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false },
  access: { role: 'admin' },
  async handler(ctx, args) {
    const tenantAdmin = hasPermission(ctx.caller.user, 'admin');
    if (args.permissions?.length) requirePermission(ctx.caller, 'admin', 'granting permissions');
    if (ctx.account.kind === 'system') requirePermission(ctx.caller, 'admin', 'adding users to the system setup account');
    if (!tenantAdmin && !atLeast(ctx.grant!.role, args.role)) {
      throw new AccessDenied(`Access denied: you cannot grant the ${args.role} role, which is above your own in account '${ctx.account.slug}'.`);
    }
    const { user, token, tokenId } = await createUser(ctx.core, { ...args, account: ctx.account });
    return {
      data: { user: { id: user.id, email: user.email, name: user.name, home_account: refOf(ctx.account), permissions: user.permissions }, token, token_id: tokenId },
      text: `Created ${user.email} as ${args.role} of ${ctx.account.slug}; the token is shown only once.`,
    };
  },
});

const setPermissionsTool = defineTool({
  name: 'set_user_permissions',
  toolset: 'admin',
  title: 'Set user permissions',
  description: "Replaces a user's tenant-wide permissions (admin permission). Takes effect on that user's very next call.",
  input: {
    user: z.string().min(1).max(254).describe('The user: id or email.'),
    permissions: permissionsArg,
  },
  output: { user: userOut },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true },
  access: { role: null, accountArg: null, permission: 'admin', tenant: true },
  async handler(ctx, args) {
    const target = await findUser(ctx.core, args.user);
    if (!target) throw new UserError(`No user matches '${args.user}'.`, 'not_found');
    const u = await setPermissions(ctx.core, target.id, args.permissions);
    const home = await getAccountById(ctx.core, u.homeAccountId);
    return {
      data: { user: { id: u.id, email: u.email, name: u.name, home_account: refOf(home!), permissions: u.permissions } },
      text: `${u.email} now has ${u.permissions.length ? u.permissions.join(' and ') : 'no'} permission${u.permissions.length === 1 ? '' : 's'}.`,
    };
  },
});

const revokeTokenTool = defineTool({
  name: 'revoke_token',
  toolset: 'admin',
  title: 'Revoke API token',
  description: 'Revokes an API token at once: your own, or anyone\'s with the admin permission. The next call with it is refused.',
  input: { token_id: z.uuid().describe('The id of the token (not the token itself).') },
  output: { token: z.object({ id: z.string(), name: z.string(), prefix: z.string(), user_id: z.string() }) },
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true },
  access: { role: null, accountArg: null, tenant: true },
  async handler(ctx, args) {
    const t = await getToken(ctx.core, args.token_id);
    const mayRevoke = t && (t.userId === ctx.caller.user.id || hasPermission(ctx.caller.user, 'admin'));
    if (!mayRevoke) throw new UserError(`No token of yours has the id ${args.token_id}.`, 'not_found');
    await revokeToken(ctx.core, t.id);
    return { data: { token: { id: t.id, name: t.name, prefix: t.prefix, user_id: t.userId } }, text: `Revoked token ${t.prefix}….` };
  },
});

export const userTools: ToolDef[] = [createUserTool, setPermissionsTool, revokeTokenTool];
