import { z } from 'zod';
import { defineTool, type ToolDef, type ToolContext } from '../define-tool.js';
import { accountArg, cursorArg, limitArg } from './shapes.js';
import { connectionArg, connectionOut, connectionView, connectionWord, credentialsArg, maskedOut } from './connection-shapes.js';
import { askPerson, pageUnavailable } from '../human.js';
import {
  addConnection, listConnections, MAX_NOTES, nameFor, resolveConnection, resolveOwnConnection, setConnectionFields, updateConnection,
  type ConnectionRow,
} from '../../core/connections.js';
import { connectionUsage, shareConnection } from '../../core/connection-lifecycle.js';
import { getApp, validateCredentials } from '../../core/apps.js';
import { UserError } from '../../core/errors.js';
import { getAccountById } from '../../core/accounts.js';
import { hasPermission } from '../../core/users.js';
import { credentialTools } from './connection-credentials.js';

const notesArg = z.string().max(MAX_NOTES).describe(`Free-text notes for the people who maintain it (at most ${MAX_NOTES} characters).`);

/** The view of an own connection of the acting account. */
export async function ownView(ctx: ToolContext, row: ConnectionRow) {
  return connectionView(row, 'own', await getApp(ctx.core, row.app).catch(() => undefined), ctx.account);
}

/**
 * Credentials for add/reconnect: from the arguments when allowed, else from the person on a page.
 * Runs before the transaction (prepare): the person may take minutes.
 */
export async function obtainCredentials(
  ctx: ToolContext,
  given: Record<string, string> | undefined,
  subject: { app: string; connectionName: string | null; connectionId: string | null },
  message: string,
): Promise<{ credentials: Record<string, string>; via: 'arguments' | 'page' }> {
  if (given !== undefined) {
    if (!ctx.core.secretArgs) {
      throw new UserError('This server does not take credentials as arguments (SWITCHBOARD_SECRET_ARGS=off): leave credentials out, and the person gets a page to enter them.');
    }
    return { credentials: given, via: 'arguments' };
  }
  const why = pageUnavailable(ctx);
  if (why) throw new UserError(`No credentials were given, and they cannot be asked for on a page: ${why}. Pass credentials instead.`);
  const r = await askPerson(ctx, 'enter_credentials', { ...subject, authKind: null }, message);
  if (r.status !== 'submitted') throw new UserError('The page finished without credentials; nothing was done.');
  return { credentials: r.credentials, via: 'page' };
}

const listConnectionsTool = defineTool({
  name: 'list_connections',
  toolset: 'connections',
  title: 'List connections',
  description:
    "Lists the account's app connections, grouped: its own, shared by its parent account, shared by the system setup account. " +
    'Each with app, name, status, notes, rate limit and last use; never credentials. query searches app and connection names.',
  input: {
    account: accountArg().optional(),
    query: z.string().max(100).optional().describe('Part of an app or connection name (case-insensitive), e.g. "stri".'),
    include_shared: z.boolean().optional().describe('Include connections shared by the parent and system accounts (default true).'),
    limit: limitArg(),
    cursor: cursorArg,
  },
  output: {
    own: z.array(connectionOut),
    shared_from_parent: z.array(connectionOut),
    shared_from_system: z.array(connectionOut),
    next_cursor: z.string().nullable(),
  },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: 'viewer' },
  async handler(ctx, args) {
    const page = await listConnections(ctx.core, ctx.account, {
      query: args.query,
      includeShared: args.include_shared ?? true,
      limit: args.limit ?? 50,
      cursor: args.cursor,
    });
    const views = page.items.map((i) => connectionView(i.row, i.source, page.apps.get(i.row.app), page.owners.get(i.row.accountId)!));
    const data = {
      own: views.filter((v) => v.source === 'own'),
      shared_from_parent: views.filter((v) => v.source === 'parent'),
      shared_from_system: views.filter((v) => v.source === 'system'),
      next_cursor: page.nextCursor,
    };
    return {
      data,
      text:
        `${data.own.length} own connection${data.own.length === 1 ? '' : 's'}, ${data.shared_from_parent.length} shared by the parent, ` +
        `${data.shared_from_system.length} shared by the system account${page.nextCursor ? ' (more with next_cursor)' : ''}.`,
    };
  },
});

const addConnectionTool = defineTool({
  name: 'add_connection',
  toolset: 'connections',
  title: 'Add connection',
  description:
    "Connects the account to an app. The app's first connection is named Default; later ones need a name. Leave credentials out " +
    'and the person gets a one-time page to enter them (URL elicitation); the result shows only masked values.',
  input: {
    account: accountArg().optional(),
    app: z.string().min(1).max(63).describe('The app slug (list_apps), e.g. stripe.'),
    name: z.string().min(1).max(100).optional().describe('Connection name, unique per app in the account; required after the first.'),
    credentials: credentialsArg.optional(),
    notes: notesArg.optional(),
  },
  output: { connection: connectionOut, credentials: maskedOut, entered_via: z.enum(['arguments', 'page']) },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false },
  access: { role: 'member' },
  async prepare(ctx, args) {
    // fail before asking anyone: unknown app, taken name, bad credentials given as arguments
    const app = await getApp(ctx.core, args.app);
    const name = await nameFor(ctx.core, ctx.account, app, args.name);
    if (args.credentials) validateCredentials(app, args.credentials);
    return obtainCredentials(ctx, args.credentials, { app: app.slug, connectionName: name, connectionId: null }, `Enter the ${app.name} credentials for the connection '${name}' of ${ctx.account.name}.`);
  },
  async handler(ctx, args, got) {
    const { row, app } = await addConnection(ctx.core, ctx.account, {
      app: args.app,
      name: args.name,
      credentials: got.credentials,
      notes: args.notes,
      createdBy: ctx.caller.user.id,
    });
    return {
      data: { connection: await ownView(ctx, row), credentials: row.masked, entered_via: got.via },
      text: `Connected ${ctx.account.slug} to ${app.slug}: ${connectionWord(row)}.`,
    };
  },
});

const updateConnectionTool = defineTool({
  name: 'update_connection',
  toolset: 'connections',
  title: 'Update connection',
  description: "Renames a connection of the account or edits its notes (reference information, reminders about its setup).",
  input: {
    account: accountArg().optional(),
    connection: connectionArg,
    name: z.string().min(1).max(100).optional().describe('New name, unique per app in the account.'),
    notes: notesArg.optional(),
  },
  output: { connection: connectionOut },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true },
  access: { role: 'member' },
  async handler(ctx, args) {
    if (args.name === undefined && args.notes === undefined) throw new UserError('Nothing to change: pass name or notes.');
    const row = await resolveOwnConnection(ctx.core, ctx.account, args.connection);
    const updated = await updateConnection(ctx.core, row, { name: args.name, notes: args.notes });
    return { data: { connection: await ownView(ctx, updated) }, text: `Updated ${connectionWord(updated)}.` };
  },
});

const usageItemOut = z.object({
  id: z.string(),
  name: z.string(),
  status: z.enum(['active', 'paused']),
  paused_by_this_connection: z.boolean(),
  account: z.object({ id: z.string(), slug: z.string(), name: z.string() }),
});

const listUsageTool = defineTool({
  name: 'list_connection_usage',
  toolset: 'connections',
  title: 'List connection usage',
  description:
    'Lists the automations that use a connection (in this account and, for a connection it shares, in the accounts it is shared with), ' +
    'with their status. Check it before disconnecting.',
  input: {
    account: accountArg().optional(),
    connection: connectionArg,
  },
  output: {
    connection: connectionOut,
    automations: z.array(usageItemOut),
    total: z.number().int(),
    hidden: z.number().int().describe('How many of total are in accounts you may not see (listed to their admins only).'),
  },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: 'viewer' },
  async handler(ctx, args) {
    const found = await resolveConnection(ctx.core, ctx.account, args.connection);
    // a connection shared with this account: only this account's automations, not its siblings'
    const usage = await connectionUsage(ctx.core, found.row, {
      onlyAccountId: found.source === 'own' ? undefined : ctx.account.id,
      visibleTo: hasPermission(ctx.caller.user, 'switch_account') ? null : ctx.caller.user.id,
    });
    const owner = found.source === 'own' ? ctx.account : (await getAccountById(ctx.core, found.row.accountId))!;
    const view = connectionView(found.row, found.source, await getApp(ctx.core, found.row.app).catch(() => undefined), owner);
    return {
      data: {
        connection: view,
        automations: usage.items.map((u) => ({ id: u.id, name: u.name, status: u.status, paused_by_this_connection: u.pausedByThis, account: u.account })),
        total: usage.total,
        hidden: usage.hidden,
      },
      text: `${usage.total} automation${usage.total === 1 ? '' : 's'} use${usage.total === 1 ? 's' : ''} ${connectionWord(found.row)}.`,
    };
  },
});

const setRateLimitTool = defineTool({
  name: 'set_connection_rate_limit',
  toolset: 'connections',
  title: 'Set connection rate limit',
  description:
    "Overrides how many calls per minute automations may make through a connection (admins; e.g. a higher API plan). " +
    "per_minute null returns to the app's default.",
  input: {
    account: accountArg().optional(),
    connection: connectionArg,
    per_minute: z.number().int().min(1).max(1_000_000).nullable().describe("Calls per minute, or null for the app's default."),
  },
  output: { connection: connectionOut },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true },
  access: { role: 'admin' },
  async handler(ctx, args) {
    const row = await resolveOwnConnection(ctx.core, ctx.account, args.connection);
    const updated = await setConnectionFields(ctx.core, row, { ratePerMinute: args.per_minute });
    const view = await ownView(ctx, updated);
    return {
      data: { connection: view },
      text: `${connectionWord(updated, true)} is limited to ${view.rate_limit.per_minute} calls per minute (${view.rate_limit.source === 'app' ? "the app's default" : 'override'}).`,
    };
  },
});

const shareConnectionTool = defineTool({
  name: 'share_connection',
  toolset: 'connections',
  title: 'Share connection',
  description:
    "Shares a parent account's connection with all its linked child accounts (or stops sharing): they can see and use it, never " +
    'view its credentials or change it. Shared connections of the system setup account are visible to every account.',
  input: {
    account: accountArg().optional(),
    connection: connectionArg,
    shared: z.boolean().describe('true to share, false to stop sharing.'),
  },
  output: { connection: connectionOut },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true },
  access: { role: 'admin' },
  async handler(ctx, args) {
    const row = await resolveOwnConnection(ctx.core, ctx.account, args.connection);
    const updated = await shareConnection(ctx.core, ctx.account, row, args.shared);
    const whom = ctx.account.kind === 'system' ? 'every account' : 'its linked child accounts';
    return {
      data: { connection: await ownView(ctx, updated) },
      text: args.shared ? `${connectionWord(updated, true)} is now shared with ${whom}.` : `${connectionWord(updated, true)} is no longer shared.`,
    };
  },
});

export const connectionTools: ToolDef[] = [
  listConnectionsTool,
  addConnectionTool,
  updateConnectionTool,
  listUsageTool,
  setRateLimitTool,
  shareConnectionTool,
  ...credentialTools,
];
