import { z } from 'zod';
import { defineTool, type ToolDef } from '../define-tool.js';
import { accountArg } from './shapes.js';
import { connectionArg, connectionOut, connectionWord, credentialsArg, maskedOut } from './connection-shapes.js';
import { ownView, obtainCredentials } from './connections.js';
import { askPerson, pageUnavailable } from '../human.js';
import { openCredentials, resolveOwnConnection } from '../../core/connections.js';
import { connectionUsage, disconnect, disconnectPlan, reconnect } from '../../core/connection-lifecycle.js';
import { getApp, validateCredentials } from '../../core/apps.js';
import { reverifyPassword } from '../../core/reverify.js';
import { rotateDataKey } from '../../core/rotation.js';
import { UserError } from '../../core/errors.js';
import { hasPermission } from '../../core/users.js';
import { DecryptError } from '../../core/keyring.js';
import { log } from '../../log.js';


const disconnectTool = defineTool({
  name: 'disconnect_connection',
  toolset: 'connections',
  title: 'Disconnect connection',
  description:
    'Disconnects a connection of the account. Without confirm it only returns the impact (the automations that would be paused) ' +
    'and a confirm token; call again with that token to disconnect. Those automations are paused, not deleted.',
  input: {
    account: accountArg().optional(),
    connection: connectionArg,
    confirm: z.string().max(100).optional().describe('The confirm_token of the plan, to carry it out.'),
  },
  output: {
    connection: connectionOut,
    applied: z.boolean(),
    confirm_token: z.string().nullable().describe('Pass as confirm to disconnect (plan only).'),
    automations_to_pause: z
      .array(z.object({ id: z.string(), name: z.string(), account: z.object({ id: z.string(), slug: z.string(), name: z.string() }) }))
      .describe('Those in accounts you may see; automations_paused / the text count them all.'),
    automations_to_pause_total: z.number().int(),
    automations_paused: z.number().int(),
  },
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false },
  access: { role: 'admin' },
  async handler(ctx, args) {
    const row = await resolveOwnConnection(ctx.core, ctx.account, args.connection);
    if (args.confirm === undefined) {
      if (row.status === 'disconnected') throw new UserError(`${connectionWord(row, true)} is already disconnected; reconnect_connection brings it back.`);
      const plan = await disconnectPlan(ctx.core, row);
      const usage = await connectionUsage(ctx.core, row, { visibleTo: hasPermission(ctx.caller.user, 'switch_account') ? null : ctx.caller.user.id });
      const pausing = usage.items.filter((u) => plan.pauses.includes(u.id)).map((u) => ({ id: u.id, name: u.name, account: u.account }));
      return {
        data: {
          connection: await ownView(ctx, row),
          applied: false,
          confirm_token: plan.token,
          automations_to_pause: pausing,
          automations_to_pause_total: plan.pauses.length,
          automations_paused: 0,
        },
        text:
          `Disconnecting ${connectionWord(row)} would pause ${plan.pauses.length} automation${plan.pauses.length === 1 ? '' : 's'}; ` +
          'call again with confirm set to confirm_token to do it.',
      };
    }
    const done = await disconnect(ctx.core, row, args.confirm);
    return {
      data: {
        connection: await ownView(ctx, done.row),
        applied: true,
        confirm_token: null,
        automations_to_pause: [],
        automations_to_pause_total: 0,
        automations_paused: done.paused,
      },
      text: `Disconnected ${connectionWord(row)}; paused ${done.paused} automation${done.paused === 1 ? '' : 's'} (reconnecting resumes them).`,
    };
  },
});

const reconnectTool = defineTool({
  name: 'reconnect_connection',
  toolset: 'connections',
  title: 'Reconnect connection',
  description:
    'Gives a connection new credentials (expired, disconnected, or a rotated secret): its status returns to active and the ' +
    'automations its disconnect paused resume. Leave credentials out and the person enters them on a one-time page.',
  input: { account: accountArg().optional(), connection: connectionArg, credentials: credentialsArg.optional() },
  output: { connection: connectionOut, credentials: maskedOut, automations_resumed: z.number().int(), entered_via: z.enum(['arguments', 'page']) },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false },
  access: { role: 'member' },
  async prepare(ctx, args) {
    const row = await resolveOwnConnection(ctx.core, ctx.account, args.connection);
    if (args.credentials) validateCredentials(await getApp(ctx.core, row.app), { auth_kind: row.authKind, ...args.credentials });
    const got = await obtainCredentials(
      ctx,
      args.credentials,
      { app: row.app, connectionName: row.name, connectionId: row.id },
      `Enter new credentials for the connection ${row.app}/${row.name} of ${ctx.account.name}.`,
    );
    return { ...got, connectionId: row.id };
  },
  async handler(ctx, _args, got) {
    // the connection the person entered credentials for, by id (it may have been renamed meanwhile)
    const row = await resolveOwnConnection(ctx.core, ctx.account, got.connectionId);
    const done = await reconnect(ctx.core, row, got.credentials);
    return {
      data: { connection: await ownView(ctx, done.row), credentials: done.row.masked, automations_resumed: done.resumed, entered_via: got.via },
      text: `Reconnected ${connectionWord(done.row)}; ${done.resumed} paused automation${done.resumed === 1 ? '' : 's'} resumed.`,
    };
  },
});

const viewInfoTool = defineTool({
  name: 'view_connection_info',
  toolset: 'connections',
  title: 'View connection info',
  description:
    "Shows a connection's decrypted credentials to a person who re-verifies their password, for troubleshooting (admins; audited). " +
    'Leave password out: the person gets a one-time page, and the values are shown there, not in this conversation.',
  input: {
    account: accountArg().optional(),
    connection: connectionArg,
    password: z.string().min(1).max(1024).optional().describe('Your password, only for clients without URL elicitation; the values then come back in the result.'),
  },
  output: {
    connection: connectionOut,
    credentials: maskedOut,
    decrypted: z.record(z.string(), z.string()).nullable().describe('The decrypted values (password mode only); null when shown on the page.'),
    shown_on: z.enum(['page', 'result']),
  },
  // reads, and its password failures must commit on their own: no call-wide transaction
  annotations: { readOnlyHint: true, idempotentHint: false },
  notInReadOnly: 'records what it asks the person (a page request, password attempts)',
  access: { role: 'admin' },
  async handler(ctx, args) {
    const row = await resolveOwnConnection(ctx.core, ctx.account, args.connection);
    const view = await ownView(ctx, row);
    if (args.password !== undefined) {
      if (!ctx.core.secretArgs) {
        throw new UserError('This server does not take passwords as arguments (SWITCHBOARD_SECRET_ARGS=off): leave password out to get a page.');
      }
      await reverifyPassword(ctx.core, ctx.caller.user.id, args.password);
      const creds = await openCredentials(ctx.core, row).catch((err: unknown) => {
        if (!(err instanceof DecryptError)) throw err;
        // a ciphertext that is not this row's: damage or tampering, worth an operator's look
        log.warn('credentials did not decrypt', { connection: row.id, account: row.accountId });
        throw new UserError(
          `The stored credentials of ${connectionWord(row)} could not be decrypted (they were not written for this connection, or are damaged): give it new ones with reconnect_connection.`,
        );
      });
      return {
        data: { connection: view, credentials: row.masked, decrypted: creds.values, shown_on: 'result' as const },
        text: `Decrypted credentials of ${connectionWord(row)}, after password re-verification (audited).`,
      };
    }
    const why = pageUnavailable(ctx);
    if (why) throw new UserError(`The credentials can only be shown after password re-verification on a page, and ${why}. Pass password instead.`);
    await askPerson(ctx, 'view_credentials', { app: row.app, authKind: row.authKind, connectionName: row.name, connectionId: row.id }, `Verify your password to view the credentials of ${row.app}/${row.name}.`);
    return {
      data: { connection: view, credentials: row.masked, decrypted: null, shown_on: 'page' as const },
      text: `The credentials of ${connectionWord(row)} were shown to the person on the page after password re-verification.`,
    };
  },
});

const rotateTool = defineTool({
  name: 'rotate_encryption_key',
  toolset: 'admin',
  title: 'Rotate encryption key',
  description:
    'Creates a new data key and re-encrypts every connection of the tenant with it, in batches (admin permission). ' +
    'Safe under concurrent writes; if it stops, calling it again resumes instead of starting over.',
  input: {},
  output: {
    key_id: z.string(),
    resumed: z.boolean(),
    total: z.number().int(),
    rotated: z.number().int(),
    changed_meanwhile: z.number().int().describe('Rows rewritten by someone else during the run (already on the new key).'),
    unreadable: z.number().int().describe('Connections whose credentials do not decrypt: left on their old key; reconnect them, then rotate again.'),
    retired_keys: z.number().int(),
  },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true },
  access: { role: null, accountArg: null, permission: 'admin', tenant: true },
  transactional: false,
  async handler(ctx) {
    // batch by batch, to a client that sent a progress token (a long rotation keeps its request alive)
    const p = await rotateDataKey(ctx.core, {
      onProgress: (q) => void ctx.interaction?.progress(`${q.rotated} of ${q.total} connections re-encrypted`, q.rotated, q.total).catch(() => {}),
    });
    return {
      data: { key_id: p.keyId, resumed: p.resumed, total: p.total, rotated: p.rotated, changed_meanwhile: p.skipped, unreadable: p.unreadable, retired_keys: p.retiredKeys },
      text:
        `${p.resumed ? 'Resumed the rotation' : 'Rotated to a new data key'}: re-encrypted ${p.rotated} of ${p.total} connection${p.total === 1 ? '' : 's'}` +
        (p.unreadable ? `; ${p.unreadable} do not decrypt and were left as they are (reconnect them, then rotate again).` : '.'),
    };
  },
});

export const credentialTools: ToolDef[] = [disconnectTool, reconnectTool, viewInfoTool, rotateTool];
