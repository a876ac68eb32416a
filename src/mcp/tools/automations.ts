import { z } from 'zod';
import { defineTool, type ToolDef } from '../define-tool.js';
import { accountArg, cursorArg, iso, limitArg } from './shapes.js';
import { automationOut, automationStates, automationView, definitionIn, definitionOut, toDefinition } from './automation-shapes.js';
import {
  createAutomation, deleteAutomation, deletionPlan, getRevision, listAutomations, MAX_DESCRIPTION, MAX_NAME, resolveAutomation, revisionHistory,
  setAutomationEnabled, updateAutomation, usedConnections,
} from '../../core/automations.js';
import type { Definition } from '../../core/automation-definition.js';
import { rotateWebhook, webhookPath, webhookToken } from '../../core/webhooks.js';
import { atLeast } from '../../core/access.js';
import type { Core } from '../../core/core.js';
import { UserError } from '../../core/errors.js';

const webhookOut = z.object({
  url: z.string().nullable().describe('The URL apps send events to (null when this server does not know its public address; then use path).'),
  path: z.string().describe('/hooks/<token>: the token is a secret capability, anyone holding it can send events.'),
});
const webhookOf = (core: Core, row: Parameters<typeof webhookToken>[1]) => {
  const path = webhookPath(webhookToken(core, row));
  return { url: core.publicBaseUrl ? `${core.publicBaseUrl}${path}` : null, path };
};

const automationArg = z.string().min(1).max(MAX_NAME).describe('The automation: its id or exact name.');
const nameArg = z.string().min(1).max(MAX_NAME).describe('Unique in the account.');
const descriptionArg = z.string().max(MAX_DESCRIPTION).describe('What it does, for the people who maintain it.');

const createAutomationTool = defineTool({
  name: 'create_automation',
  toolset: 'automations',
  title: 'Create automation',
  description:
    'Creates an automation in the account: a trigger (its webhook), optional routing to linked children, and steps ' +
    '(http, transform, filter, store) whose values may embed JSONata {{ expressions }}. Validated whole at save: every ' +
    'problem is reported at once. Writes revision 1.',
  input: { account: accountArg().optional(), name: nameArg, description: descriptionArg.optional(), enabled: z.boolean().optional().describe('Default true.'), ...definitionIn },
  output: { automation: automationOut },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false },
  access: { role: 'member' },
  async handler(ctx, args) {
    const { row, revision } = await createAutomation(ctx.core, ctx.account, {
      name: args.name,
      description: args.description,
      enabled: args.enabled,
      definition: toDefinition(args),
      createdBy: ctx.caller.user.id,
    });
    return { data: { automation: automationView(row, revision) }, text: `Created the automation ${row.id} in ${ctx.account.slug} (revision 1).` };
  },
});

const updateAutomationTool = defineTool({
  name: 'update_automation',
  toolset: 'automations',
  title: 'Update automation',
  description:
    'Changes an automation: the parts given (name, description, trigger, routing, steps, retries) replace the current ones and a new ' +
    'immutable revision is written; runs already started keep theirs. steps replaces the whole list.',
  input: {
    account: accountArg().optional(),
    automation: automationArg,
    name: nameArg.optional(),
    description: descriptionArg.optional(),
    ...definitionIn,
    steps: definitionIn.steps.optional(),
    note: z.string().max(500).optional().describe('Why it changed; kept with the revision.'),
  },
  output: { automation: automationOut },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false },
  access: { role: 'member' },
  async handler(ctx, args) {
    const row = await resolveAutomation(ctx.core, ctx.account, args.automation);
    const parts: Partial<Definition> = {};
    if (args.steps !== undefined) parts.steps = args.steps;
    if (args.trigger !== undefined) parts.trigger = toDefinition({ trigger: args.trigger, steps: [] }).trigger;
    if (args.routing !== undefined) parts.routing = args.routing;
    if (args.retries !== undefined) parts.retries = { max: args.retries };
    const updated = await updateAutomation(ctx.core, ctx.account, row, {
      name: args.name,
      description: args.description,
      definition: parts,
      note: args.note,
      by: ctx.caller.user.id,
    });
    return {
      data: { automation: automationView(updated.row, updated.revision) },
      text: `Updated the automation ${updated.row.id} in ${ctx.account.slug}: now revision ${updated.row.revision}.`,
    };
  },
});

const getAutomationTool = defineTool({
  name: 'get_automation',
  toolset: 'automations',
  title: 'Get automation',
  description: 'Shows an automation: its webhook URL, state, current (or a given) revision with the full definition, recent revisions, and the connections it uses.',
  input: {
    account: accountArg().optional(),
    automation: automationArg,
    revision: z.number().int().min(1).max(2_147_483_647).optional().describe('A past revision to show (default: the current one).'),
  },
  output: {
    automation: automationOut,
    webhook: webhookOut.nullable().describe('Shown to members and above (anyone holding the URL can start runs); null for viewers.'),
    shown_revision: z.object({ revision: z.number().int(), note: z.string(), created_at: z.string() }),
    definition: definitionOut,
    revisions: z.array(z.object({ revision: z.number().int(), note: z.string(), created_at: z.string() })).describe('The latest 10, newest first.'),
    connections: z.array(
      z.object({
        id: z.string(),
        app: z.string(),
        name: z.string(),
        status: z.string(),
        source: z.enum(['own', 'parent', 'system']),
        owner: z.object({ id: z.string(), slug: z.string(), name: z.string() }),
      }),
    ),
  },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: 'viewer' },
  async handler(ctx, args) {
    const row = await resolveAutomation(ctx.core, ctx.account, args.automation);
    const shownRevision = getRevision(ctx.core, ctx.account, row.id, args.revision ?? row.revision);
    const [current, shown, history, used] = await Promise.all([
      args.revision === undefined || args.revision === row.revision ? shownRevision : getRevision(ctx.core, ctx.account, row.id, row.revision),
      shownRevision,
      revisionHistory(ctx.core, ctx.account, row.id),
      usedConnections(ctx.core, ctx.account, row.id),
    ]);
    const source = (ownerId: string) => (ownerId === ctx.account.id ? 'own' : ownerId === ctx.account.parentAccountId ? 'parent' : 'system') as 'own' | 'parent' | 'system';
    return {
      data: {
        automation: automationView(row, current),
        webhook: ctx.grant && atLeast(ctx.grant.role, 'member') ? webhookOf(ctx.core, row) : null,
        shown_revision: { revision: shown.revision, note: shown.note, created_at: iso(shown.createdAt)! },
        definition: shown.definition as z.infer<typeof definitionOut>,
        revisions: history.map((h) => ({ revision: h.revision, note: h.note, created_at: iso(h.createdAt)! })),
        connections: used.map((c) => ({ id: c.id, app: c.app, name: c.name, status: c.status, source: source(c.owner.id), owner: c.owner })),
      },
      text: `The automation ${row.id} in ${ctx.account.slug}, revision ${shown.revision}${shown.revision === row.revision ? ' (current)' : ` (current: ${row.revision})`}.`,
    };
  },
});

const listAutomationsTool = defineTool({
  name: 'list_automations',
  toolset: 'automations',
  title: 'List automations',
  description: "Lists the account's automations by name, with state (enabled, disabled, paused), current revision and step count.",
  input: {
    account: accountArg().optional(),
    query: z.string().max(100).optional().describe('Part of the name (case-insensitive).'),
    state: z.enum(automationStates).optional().describe('Only automations in this state.'),
    limit: limitArg(),
    cursor: cursorArg,
  },
  output: { automations: z.array(automationOut), next_cursor: z.string().nullable() },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: 'viewer' },
  async handler(ctx, args) {
    const page = await listAutomations(ctx.core, ctx.account, { query: args.query, state: args.state, limit: args.limit ?? 50, cursor: args.cursor });
    const items = page.items.map((i) => automationView(i.row, { definition: i.definition }));
    return {
      data: { automations: items, next_cursor: page.nextCursor },
      text: `${items.length} automation${items.length === 1 ? '' : 's'} in ${ctx.account.slug}${page.nextCursor ? ' (more with next_cursor)' : ''}.`,
    };
  },
});

const setAutomationEnabledTool = defineTool({
  name: 'set_automation_enabled',
  toolset: 'automations',
  title: 'Enable or disable automation',
  description: 'Turns an automation on or off. A disabled automation still records its webhooks but runs nothing; no new revision is written.',
  input: { account: accountArg().optional(), automation: automationArg, enabled: z.boolean().describe('true to run events, false to record them only.') },
  output: { automation: automationOut, changed: z.boolean().describe('false when it already was.') },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true },
  access: { role: 'member' },
  async handler(ctx, args) {
    const row = await resolveAutomation(ctx.core, ctx.account, args.automation);
    const { row: updated, changed } = await setAutomationEnabled(ctx.core, ctx.account, row, args.enabled);
    const revision = await getRevision(ctx.core, ctx.account, updated.id, updated.revision);
    const word = args.enabled ? 'enabled' : 'disabled';
    return { data: { automation: automationView(updated, revision), changed }, text: changed ? `The automation ${updated.id} is now ${word}.` : `The automation ${updated.id} was already ${word}.` };
  },
});

const deleteAutomationTool = defineTool({
  name: 'delete_automation',
  toolset: 'automations',
  title: 'Delete automation',
  description:
    'Deletes an automation with all its revisions and run history (admin role); its webhook URL stops answering. When it ran in the ' +
    'last 24 h, the first call only returns what would go and a confirm_token; call again with confirm to delete.',
  input: {
    account: accountArg().optional(),
    automation: automationArg,
    confirm: z.string().max(100).optional().describe('The confirm_token of the plan, to carry it out.'),
  },
  output: {
    applied: z.boolean(),
    deleted: z.object({ id: z.string(), name: z.string(), revisions: z.number().int() }).nullable(),
    confirm_token: z.string().nullable().describe('Pass as confirm to delete (plan only).'),
    executions_last_24h: z.number().int().describe('Runs in the last 24 h, in every account it runs in; deleted with it.'),
    in_flight: z.number().int().describe('Runs queued or running now: they stop.'),
  },
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false },
  access: { role: 'admin' },
  async handler(ctx, args) {
    const row = await resolveAutomation(ctx.core, ctx.account, args.automation);
    const plan = await deletionPlan(ctx.core, row);
    const counts = { executions_last_24h: plan.recent, in_flight: plan.inFlight };
    if (args.confirm === undefined && (plan.recent > 0 || plan.inFlight > 0)) {
      return {
        data: { applied: false, deleted: null, confirm_token: plan.token, ...counts },
        text:
          `The automation ${row.id} ran ${plan.recent} time${plan.recent === 1 ? '' : 's'} in the last 24 h` +
          `${plan.inFlight ? ` and has ${plan.inFlight} run${plan.inFlight === 1 ? '' : 's'} queued or running` : ''}; deleting it deletes that history ` +
          'and stops its webhook URL. Call again with confirm set to confirm_token to delete it (set_automation_enabled pauses it instead).',
      };
    }
    if (args.confirm !== undefined && args.confirm !== plan.token) {
      throw new UserError('The confirm token does not match the automation as it is now (it changed since the plan): call delete_automation without confirm to see the plan again.', 'conflict');
    }
    await deleteAutomation(ctx.core, ctx.account, row);
    return {
      data: { applied: true, deleted: { id: row.id, name: row.name, revisions: row.revision }, confirm_token: null, ...counts },
      text: `Deleted the automation ${row.id} from ${ctx.account.slug}.`,
    };
  },
});

const rotateWebhookUrlTool = defineTool({
  name: 'rotate_webhook_url',
  toolset: 'automations',
  title: 'Rotate webhook URL',
  description: "Gives an automation a new webhook URL; the old one answers 404 at once (when it leaked). Update the app's webhook settings.",
  input: { account: accountArg().optional(), automation: automationArg },
  output: { automation: automationOut, webhook: webhookOut },
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false },
  access: { role: 'member' },
  async handler(ctx, args) {
    const row = await resolveAutomation(ctx.core, ctx.account, args.automation);
    const { row: updated } = await rotateWebhook(ctx.core, ctx.account, row);
    const revision = await getRevision(ctx.core, ctx.account, updated.id, updated.revision);
    return {
      data: { automation: automationView(updated, revision), webhook: webhookOf(ctx.core, updated) },
      text: `The automation ${updated.id} has a new webhook URL; the old one no longer answers.`,
    };
  },
});

export const automationTools: ToolDef[] = [
  listAutomationsTool,
  getAutomationTool,
  createAutomationTool,
  updateAutomationTool,
  setAutomationEnabledTool,
  deleteAutomationTool,
  rotateWebhookUrlTool,
];
