import { z } from 'zod';
import { and, eq, inArray, sql } from 'drizzle-orm';
import { rowsOf } from '../../db/client.js';
import { onTx, type Core } from '../../core/core.js';
import type { Caller } from '../../core/users.js';
import { defineTool, type ToolContext, type ToolDef } from '../define-tool.js';
import { accountArg, accountRefOut, cursorArg, limitArg, refOf } from './shapes.js';
import { templateArg, varValue } from './template-shapes.js';
import { deploymentIn, deploymentOut, deploymentView, deploymentViews } from './deploy.js';
import { accounts, automations } from '../../db/schema/index.js';
import { UserError } from '../../core/errors.js';
import { listDeploymentRows, requestCancel, targetPage } from '../../core/templates/deployments.js';
import { getVersion, resolveTemplate } from '../../core/templates/templates.js';
import { accountsRunning, visibleAccounts } from '../../core/templates/targets.js';
import { planDeploy } from '../../core/templates/plan.js';
import { templatesAccount } from '../../core/templates/account.js';
import { fitsType, type Variable } from '../../core/templates/definition.js';
import { resolveAutomation, updateAutomation } from '../../core/automations.js';
import type { Definition } from '../../core/automation-definition.js';
import { hasPermission } from '../../core/users.js';

/** Following deployments, a template's copies across accounts, and a copy's own values and link. */

const deploymentArg = z.string().uuid().describe('The deployment id.');

const targetRowOut = z.object({
  account: accountRefOut,
  wave: z.number().int(),
  action: z.string(),
  status: z.string().describe('pending, done, failed, cancelled, rolled_back.'),
  automation_id: z.string().nullable(),
  from_version: z.number().int().nullable(),
  to_version: z.number().int().nullable(),
  before_revision: z.number().int().nullable().describe('The revision a rollback restores.'),
  after_revision: z.number().int().nullable(),
  reason: z.string().nullable(),
});

const getDeploymentTool = defineTool({
  name: 'get_deployment',
  toolset: 'templates',
  title: 'Get deployment',
  description: "Follows a deployment: its status, per wave the gate's figures and decision, and its accounts with their outcome (those you may see).",
  input: {
    deployment: deploymentArg,
    status: z.enum(['pending', 'done', 'failed', 'cancelled', 'rolled_back']).optional().describe('Only accounts with this outcome.'),
    limit: limitArg(),
    cursor: cursorArg,
  },
  output: { deployment: deploymentOut, accounts: z.array(targetRowOut), hidden: z.number().int().describe('Accounts on this page you may not see.'), next_cursor: z.string().nullable() },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: 'viewer', templates: true },
  async handler(ctx, args) {
    const d = await deploymentIn(ctx, args.deployment);
    const page = await targetPage(ctx.core, d.id, { limit: args.limit ?? 50, cursor: args.cursor, status: args.status });
    const visible = await visibleWithParents(ctx, page.items.map((r) => String(r.account_id)));
    const shown = page.items.filter((r) => visible === null || visible.has(String(r.account_id)));
    const view = await deploymentView(ctx, d);
    return {
      data: {
        deployment: view,
        accounts: shown.map((r) => ({
          account: { id: String(r.account_id), slug: r.slug, name: r.name },
          wave: Number(r.wave),
          action: r.action,
          status: r.status,
          automation_id: r.automation_id ? String(r.automation_id) : null,
          from_version: r.from_version === null ? null : Number(r.from_version),
          to_version: r.to_version === null ? null : Number(r.to_version),
          before_revision: r.before_revision === null ? null : Number(r.before_revision),
          after_revision: r.after_revision === null ? null : Number(r.after_revision),
          reason: r.reason,
        })),
        hidden: page.items.length - shown.length,
        next_cursor: page.nextCursor,
      },
      text: `Deployment ${d.id} is ${d.status}: ${view.targets.done ?? 0} done, ${view.targets.failed ?? 0} failed, ${view.targets.pending ?? 0} pending.`,
    };
  },
});

/** A page of the templates account's deployments, read under row-level security. */
const deploymentRowsIn = (ctx: ToolContext, opts: Parameters<typeof listDeploymentRows>[2]) =>
  ctx.scoped((tx) => listDeploymentRows(onTx(ctx.core, tx), ctx.account.id, opts));

/** Of `ids`, the accounts the caller may see (null: all, with Switch Account). */
async function visibleWithParents(ctx: { core: Core; caller: Caller }, ids: string[]): Promise<Set<string> | null> {
  if (hasPermission(ctx.caller.user, 'switch_account') || ids.length === 0) return visibleAccounts(ctx.core, ctx.caller, []);
  const list = await ctx.core.db.select().from(accounts).where(inArray(accounts.id, [...new Set(ids)]));
  return visibleAccounts(ctx.core, ctx.caller, list);
}

const listDeploymentsTool = defineTool({
  name: 'list_deployments',
  toolset: 'templates',
  title: 'List deployments',
  description: 'Lists deployments, newest first (of one template, or all), with their status and counts.',
  input: { template: templateArg.optional(), limit: limitArg(), cursor: cursorArg },
  output: { deployments: z.array(deploymentOut.extend({ template_id: z.string() })), next_cursor: z.string().nullable() },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: 'viewer', templates: true },
  async handler(ctx, args) {
    const template = args.template ? await resolveTemplate(ctx.core, ctx.account, args.template) : null;
    const page = await deploymentRowsIn(ctx, { templateId: template?.id, limit: args.limit ?? 20, cursor: args.cursor });
    const items = (await deploymentViews(ctx, page.items)).map((v, i) => ({ ...v, template_id: page.items[i]!.templateId }));
    return { data: { deployments: items, next_cursor: page.nextCursor }, text: `${items.length} deployment${items.length === 1 ? '' : 's'}${page.nextCursor ? ' (more with next_cursor)' : ''}.` };
  },
});

const cancelDeploymentTool = defineTool({
  name: 'cancel_deployment',
  toolset: 'templates',
  title: 'Cancel deployment',
  description: 'Stops a running or baking deployment between accounts: what is applied stays (rollback_template undoes it), the rest is cancelled.',
  input: { deployment: deploymentArg },
  output: { deployment: deploymentOut },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true },
  access: { role: 'viewer', templates: true, permission: 'deploy_automations' },
  async handler(ctx, args) {
    const d = await requestCancel(ctx.core, await deploymentIn(ctx, args.deployment));
    return { data: { deployment: await deploymentView(ctx, d) }, text: `Deployment ${d.id} stops after the account it is applying now.` };
  },
});

const copyOut = z.object({
  account: accountRefOut,
  automation_id: z.string(),
  version: z.number().int().nullable(),
  revision: z.number().int(),
  drift: z.boolean().describe('Changed by hand since its last deploy: later deploys skip it (overwrite_drift replaces it).'),
  latest: z.enum(['current', 'update', 'blocked']).describe('What deploying the latest version would do.'),
  code: z.string().nullable(),
  reason: z.string().nullable(),
  needs: z.array(z.string()),
});

const templateStatusTool = defineTool({
  name: 'template_status',
  toolset: 'templates',
  title: 'Template status',
  description: 'Which accounts run which version of a template, drift, accounts blocked from the latest version and why, and the last deployment.',
  input: { template: templateArg },
  output: {
    latest_version: z.number().int(),
    by_version: z.record(z.string(), z.number().int()).describe('Copies per version.'),
    copies: z.array(copyOut).describe('Those in accounts you may see.'),
    hidden: z.number().int().describe('Copies in accounts you may not see (counted only).'),
    last_deployment: deploymentOut.nullable(),
  },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: 'viewer', templates: true },
  async handler(ctx, args) {
    const template = await resolveTemplate(ctx.core, ctx.account, args.template);
    const all = await accountsRunning(ctx.core, template.id);
    const visible = await visibleAccounts(ctx.core, ctx.caller, all);
    const shown = visible === null ? all : all.filter((a) => visible.has(a.id));
    const latest = await getVersion(ctx.core, ctx.account, template);
    const plan = await planDeploy(ctx.core, template, latest, shown, { values: {}, connections: {}, overwriteDrift: false });
    const byVersion: Record<string, number> = {};
    for (const t of plan.targets) {
      const v = String(t.copy?.templateVersion ?? 'none');
      byVersion[v] = (byVersion[v] ?? 0) + 1;
    }
    const [last] = (await deploymentRowsIn(ctx, { templateId: template.id, limit: 1 })).items;
    const copies = plan.targets.map((t) => ({
      account: refOf(t.account),
      automation_id: t.copy!.id,
      version: t.copy!.templateVersion,
      revision: t.copy!.revision,
      drift: t.copy!.templateRevision !== t.copy!.revision,
      latest: t.action === 'create' ? ('update' as const) : (t.action as 'current' | 'update' | 'blocked'),
      code: t.code,
      reason: t.reason,
      needs: t.needs,
    }));
    return {
      data: { latest_version: template.latestVersion, by_version: byVersion, copies, hidden: all.length - shown.length, last_deployment: last ? await deploymentView(ctx, last) : null },
      text: `${all.length} cop${all.length === 1 ? 'y' : 'ies'} of the template: ${copies.filter((c) => c.latest === 'current').length} current, ${copies.filter((c) => c.drift).length} drifted, ${plan.counts.blocked} blocked from version ${template.latestVersion}.`,
    };
  },
});

const setTemplateValuesTool = defineTool({
  name: 'set_template_values',
  toolset: 'templates',
  title: 'Set template values',
  description: "Sets variable values of one account's copy of a template: a new revision of the copy, kept by later deploys (not drift).",
  input: {
    template: templateArg,
    account: accountArg(),
    values: z.record(z.string().max(40), varValue).describe('Variable name → value; the others keep theirs.'),
  },
  output: { automation_id: z.string(), revision: z.number().int(), values: z.record(z.string(), varValue) },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false },
  access: { role: 'member', accountArg: 'account' },
  async handler(ctx, args) {
    const template = await resolveTemplate(ctx.core, await templatesAccount(ctx.core), args.template);
    // locked until the call commits: a deploy batch writing this copy meanwhile waits, so the values
    // merged below are those of the revision replaced
    const [copy] = await ctx.scoped((tx) => tx.select().from(automations).where(and(eq(automations.accountId, ctx.account.id), eq(automations.templateId, template.id))).for('no key update'));
    if (!copy) throw new UserError(`Account '${ctx.account.slug}' has no copy of the template: deploy_template makes one.`, 'not_found');
    const [version] = rowsOf<{ variables: Variable[] }>(await ctx.core.db.execute(sql`select variables from template_versions where template_id = ${template.id}::uuid and version = ${copy.templateVersion}`));
    const variables = version?.variables ?? [];
    for (const [name, value] of Object.entries(args.values)) {
      const v = variables.find((x) => x.name === name);
      if (!v) throw new UserError(`The copy's version declares no variable '${name.slice(0, 40)}'${variables.length ? ` (it has ${variables.map((x) => x.name).join(', ')})` : ''}.`);
      if (!fitsType(value, v.type)) throw new UserError(`values.${name} must be a ${v.type}.`);
    }
    const [current] = rowsOf<{ definition: Definition }>(await ctx.scoped((tx) => tx.execute(sql`select definition from automation_revisions where automation_id = ${copy.id}::uuid and revision = ${copy.revision}`)));
    const vars = { ...(current?.definition.vars ?? {}), ...args.values };
    const updated = await updateAutomation(ctx.core, ctx.account, copy, { definition: { vars }, note: `template values: ${Object.keys(args.values).join(', ')}`, by: ctx.caller.user.id });
    // values set this way are the template's, not a change by hand: a copy that was in step stays so
    if (copy.templateRevision === copy.revision) {
      await ctx.scoped((tx) => tx.update(automations).set({ templateRevision: updated.row.revision }).where(eq(automations.id, copy.id)));
    }
    return { data: { automation_id: copy.id, revision: updated.row.revision, values: vars }, text: `Set ${Object.keys(args.values).length} value(s) on the copy in ${ctx.account.slug}: now revision ${updated.row.revision}.` };
  },
});

const unlinkCopyTool = defineTool({
  name: 'unlink_deployed_copy',
  toolset: 'templates',
  title: 'Unlink deployed copy',
  description: 'Makes a deployed copy of a template an independent automation: later deployments and rollbacks leave it alone.',
  input: { account: accountArg().optional(), automation: z.string().min(1).max(200).describe('The copy: its id or name.') },
  output: { automation_id: z.string(), template_id: z.string(), version: z.number().int().nullable() },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false },
  access: { role: 'member' },
  async handler(ctx, args) {
    const row = await resolveAutomation(ctx.core, ctx.account, args.automation);
    if (!row.templateId) throw new UserError(`The automation ${row.id} is not a deployed copy of a template.`);
    await ctx.scoped((tx) => tx.update(automations).set({ templateId: null, templateVersion: null, templateRevision: null, updatedAt: sql`now()` }).where(eq(automations.id, row.id)));
    return { data: { automation_id: row.id, template_id: row.templateId, version: row.templateVersion }, text: `The automation ${row.id} in ${ctx.account.slug} is independent now: deployments leave it alone.` };
  },
});

export const deploymentTools: ToolDef[] = [getDeploymentTool, listDeploymentsTool, cancelDeploymentTool, templateStatusTool, setTemplateValuesTool, unlinkCopyTool];
