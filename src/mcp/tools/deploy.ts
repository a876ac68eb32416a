import { z } from 'zod';
import { inArray, sql } from 'drizzle-orm';
import { defineTool, type ToolContext, type ToolDef } from '../define-tool.js';
import { accountRefOut, refOf } from './shapes.js';
import { templateArg, varValue } from './template-shapes.js';
import { rowsOf } from '../../db/client.js';
import { requirePermission } from '../../core/access.js';
import { AccessDenied, UserError } from '../../core/errors.js';
import { onTx } from '../../core/core.js';
import type { Account } from '../../core/accounts.js';
import { accounts } from '../../db/schema/index.js';
import { uuidList } from '../../db/arrays.js';
import { getVersion, resolveTemplate, type TemplateRow } from '../../core/templates/templates.js';
import { BLOCK_CODES, planDeploy, type DeployPlan, type TargetPlan } from '../../core/templates/plan.js';
import { accountsRunning, childrenOf, MAX_LISTED_ACCOUNTS, resolveListed, rolesIn } from '../../core/templates/targets.js';
import {
  createDeployment, durationMs, refuseIfRunning, getDeploymentRow, targetCounts, waveEnds, FINISHED, type DeploymentOptions, type DeploymentRow, type NewTarget, type WaveReport,
} from '../../core/templates/deployments.js';
import { rollbackTargets } from '../../core/templates/runner.js';
import { atLeast } from '../../core/access.js';

/**
 * deploy_template and rollback_template: a plan (dry run) with its hash, then an apply with that
 * hash, which writes a deployment the workers drive; the call follows it for up to wait_seconds.
 * Sentences carry counts and codes; account and template names are data, in fields of their own.
 */

const SHOWN = 200;

const accountsIn = z
  .union([
    z.array(z.string().min(1).max(200)).min(1).max(MAX_LISTED_ACCOUNTS),
    z.strictObject({ children_of: z.string().min(1).max(200).describe('A parent account: every linked child.') }),
    z.literal('all'),
  ])
  .describe('Account ids/slugs/names, {children_of: parent}, or "all" (every account running the template; needs Switch Account).');

const perAccount = <T extends z.ZodType>(v: T) => z.union([v, z.strictObject({ by_account: z.record(z.string().max(200), v) })]);

const waveIn = z.union([
  z.number().int().min(1).max(1_000_000),
  z.string().regex(/^(100|[1-9]?[0-9])%$/, 'a share such as "10%"'),
  z.strictObject({ accounts: z.array(z.string().min(1).max(200)).min(1).max(1000) }),
]);

const targetOut = z.object({
  account: accountRefOut,
  action: z.enum(['create', 'update', 'current', 'blocked', 'restore', 'disable']),
  code: z.string().nullable().describe(`blocked: ${BLOCK_CODES.join(', ')}, changed_since.`),
  reason: z.string().nullable(),
  needs: z.array(z.string()).describe('What a blocked account needs first.'),
  from_version: z.number().int().nullable(),
  to_version: z.number().int().nullable(),
  steps_changed: z.array(z.string()),
});

const planOut = z.object({
  hash: z.string().describe('Pass as plan_hash to apply exactly this plan.'),
  template: z.object({ id: z.string(), name: z.string() }),
  version: z.number().int().nullable(),
  classification: z.string().nullable(),
  counts: z.record(z.string(), z.number().int()).describe('Accounts by action.'),
  blocked_by: z.record(z.string(), z.number().int()),
  waves: z.array(z.number().int()).describe('Accounts in each wave.'),
  targets: z.array(targetOut).describe(`Blocked accounts first, then the rest; up to ${SHOWN}.`),
});

export const deploymentOut = z.object({
  id: z.string(),
  kind: z.enum(['deploy', 'rollback']),
  status: z.string().describe('running, baking (a wave waits for its gate), completed, halted, rolled_back, cancelled, failed.'),
  version: z.number().int().nullable(),
  rollback_of: z.string().nullable(),
  targets: z.record(z.string(), z.number().int()).describe('Targets by status: pending, done, failed, cancelled, rolled_back.'),
  current_wave: z.number().int(),
  waves: z.array(z.looseObject({ wave: z.number().int(), targets: z.number().int(), decision: z.string() })).describe('Per wave: counts, the gate\'s figures and decision.'),
  message: z.string().nullable(),
  created_at: z.string(),
  finished_at: z.string().nullable(),
});

/** A deployment read under row-level security in the templates account the call acts in. */
export const deploymentIn = (ctx: ToolContext, id: string): Promise<DeploymentRow> =>
  ctx.scoped((tx) => getDeploymentRow(onTx(ctx.core, tx), ctx.account.id, id));

/** Deployments as tools show them, their target counts read in one query. */
export async function deploymentViews(ctx: ToolContext, ds: DeploymentRow[]): Promise<z.infer<typeof deploymentOut>[]> {
  const counts = await targetCounts(ctx.core, ds.map((d) => d.id));
  return ds.map((d) => viewOf(d, counts.get(d.id) ?? {}));
}

export async function deploymentView(ctx: ToolContext, d: DeploymentRow): Promise<z.infer<typeof deploymentOut>> {
  return (await deploymentViews(ctx, [d]))[0]!;
}

function viewOf(d: DeploymentRow, targets: Record<string, number>): z.infer<typeof deploymentOut> {
  return {
    id: d.id,
    kind: d.kind,
    status: d.status,
    version: d.version,
    rollback_of: d.rollbackOf,
    targets,
    current_wave: d.currentWave,
    waves: d.waves as (WaveReport & Record<string, unknown>)[],
    message: d.message,
    created_at: d.createdAt.toISOString(),
    finished_at: d.finishedAt?.toISOString() ?? null,
  };
}

interface PlanSummary {
  hash: string;
  dry_run: boolean;
  version: number | null;
  counts: Record<string, number>;
  accounts: number;
}

async function dryRunSummary(ctx: ToolContext, tool: string, hash: string): Promise<PlanSummary | null> {
  const [row] = rowsOf<{ plan: PlanSummary }>(
    await ctx.core.db.execute(sql`
      select arguments->'plan' as plan from audit_log
      where account_id = ${ctx.account.id}::uuid and tool = ${tool} and outcome = 'ok' and at > now() - interval '1 day'
        and arguments->'plan'->>'hash' = ${hash} and arguments->'plan'->>'dry_run' = 'true'
      order by id desc limit 1`),
  );
  return row?.plan ?? null;
}

function whatChanged(old: PlanSummary | null, now: PlanSummary): string {
  if (!old) return 'the plan_hash is not that of a dry run of this call';
  if (old.version !== now.version) return `version ${now.version} now instead of ${old.version}`;
  if (old.accounts !== now.accounts) return `${now.accounts} accounts now instead of ${old.accounts}`;
  const moved = Object.keys({ ...old.counts, ...now.counts })
    .filter((k) => (old.counts[k] ?? 0) !== (now.counts[k] ?? 0))
    .map((k) => `${k} ${old.counts[k] ?? 0} → ${now.counts[k] ?? 0}`);
  return moved.length ? `the accounts' actions moved (${moved.join(', ')})` : 'the same counts, but copies, connections, values or options differ';
}

const ORDER: Record<string, number> = { blocked: 0, create: 1, update: 2, restore: 2, disable: 2, current: 3 };
const targetView = (t: RollbackPlan['targets'][number]): z.infer<typeof targetOut> => ({
  account: refOf(t.account),
  action: t.action,
  code: t.code,
  reason: t.reason,
  needs: t.needs,
  from_version: t.fromVersion,
  to_version: t.toVersion,
  steps_changed: t.stepsChanged,
});

/** The accounts a call names, each one the caller may deploy into (member there, or admin of its parent, or Switch Account). */
async function targetAccounts(ctx: ToolContext, template: TemplateRow, spec: z.infer<typeof accountsIn>): Promise<Account[]> {
  if (spec === 'all') {
    requirePermission(ctx.caller, 'switch_account', 'deploying to "all" accounts');
    return accountsRunning(ctx.core, template.id);
  }
  if (Array.isArray(spec)) return resolveListed(ctx.core, ctx.caller, spec, 'member');
  const { account: parent } = await ctx.authorizeAccount(spec.children_of, 'admin', false);
  ctx.auditAccount(ctx.account.id);
  return childrenOf(ctx.core, parent);
}

function options(args: { waves?: z.infer<typeof waveIn>[] | undefined; bake?: string | undefined; min_executions?: number | undefined; max_failure_rate_increase?: number | undefined; auto_rollback?: boolean | undefined }, total: number, firstCount: number): DeploymentOptions {
  const waves = args.waves ?? [];
  if (waves.slice(1).some((w) => typeof w === 'object')) throw new UserError('Only the first wave may name its accounts; later waves are counts or shares ("10%").');
  const ends = waveEnds(total, waves, firstCount);
  return {
    waveEnds: ends,
    // waves are gated: without a bake given, each bakes 15 minutes
    bakeMs: args.bake !== undefined ? durationMs(args.bake) : waves.length > 1 ? 15 * 60_000 : 0,
    minExecutions: args.min_executions ?? 1,
    maxFailureRateIncrease: args.max_failure_rate_increase ?? 0.1,
    autoRollback: args.auto_rollback ?? false,
  };
}

/** Wait for the workers (up to `seconds`) while the deployment applies, reporting progress; the deployment as it is then. */
async function follow(ctx: ToolContext, id: string, seconds: number): Promise<DeploymentRow> {
  const until = Date.now() + seconds * 1000;
  let d = await deploymentIn(ctx, id);
  let last = -1;
  while (d.status === 'running' && Date.now() < until && !ctx.interaction?.signal.aborted) {
    // the pause between two looks holds no tool-call slot: a call following a deployment for a minute
    // would otherwise keep one from every other caller all that time
    await ctx.outsideGate(() => new Promise((r) => setTimeout(r, 200)));
    d = await deploymentIn(ctx, id);
    const counts = (await targetCounts(ctx.core, [id])).get(id)!;
    const done = (counts.done ?? 0) + (counts.failed ?? 0);
    const total = Object.values(counts).reduce((s, x) => s + x, 0);
    if (done !== last) {
      last = done;
      await ctx.interaction?.progress(`${done} of ${total} accounts applied`, done, total).catch(() => {});
    }
  }
  return d;
}

const appliedText = (d: z.infer<typeof deploymentOut>) => {
  const t = d.targets;
  return `deployment ${d.id} is ${d.status}: ${t.done ?? 0} done, ${t.failed ?? 0} failed, ${t.pending ?? 0} pending` +
    `${d.status === 'running' || d.status === 'baking' ? ' (get_deployment follows it; it goes on without this call)' : ''}.`;
};

const commonIn = {
  dry_run: z.boolean().optional().describe('Only plan (also the default without plan_hash).'),
  plan_hash: z.string().max(100).optional().describe('The hash of the dry run being applied: a plan that changed since is refused.'),
  wait_seconds: z.number().int().min(0).max(60).optional().describe('How long the call follows the deployment before returning (default 10); it goes on either way.'),
};

const deployTemplateTool = defineTool({
  name: 'deploy_template',
  toolset: 'templates',
  title: 'Deploy template',
  description:
    'Deploys a template version to many accounts at once: each gets its own copy (connections, webhook URL, history). First call ' +
    'plans per account (create / update / current / blocked and why) and returns a hash; call again with plan_hash to apply. Optional ' +
    'waves, each baked and gated on the copies\' failure rate and silence, with auto_rollback. Needs deploy_automations.',
  input: {
    template: templateArg,
    version: z.number().int().min(1).max(2_147_483_647).optional().describe('Default: the latest.'),
    accounts: accountsIn,
    values: z.record(z.string().max(40), perAccount(varValue)).optional().describe('Variable values: one for all, or {by_account: {<account>: value}}. Else what a copy has, else the default.'),
    connections: z.record(z.string().max(100), perAccount(z.string().min(1).max(200))).optional().describe('Per app, the connection name to bind (default "Default", or the one the parent shares).'),
    waves: z.array(waveIn).max(10).optional().describe('Cumulative wave sizes, e.g. [1, "10%", "100%"]; the first may be {accounts: [...]}.'),
    bake: z.string().max(10).optional().describe('How long each wave bakes before its gate, e.g. "15m" (default 15m with waves).'),
    min_executions: z.number().int().min(0).max(10_000).optional().describe('Runs per updated copy the gate waits for, where the copy had that traffic before (default 1).'),
    max_failure_rate_increase: z.number().min(0).max(1).optional().describe('Regression threshold on the failure rate, absolute (default 0.1).'),
    auto_rollback: z.boolean().optional().describe('Roll a regressed wave back by itself (default false: stop only).'),
    overwrite_drift: z.boolean().optional().describe('Replace copies changed by hand (default false: they are blocked).'),
    ...commonIn,
  },
  output: { applied: z.boolean(), plan: planOut, deployment: deploymentOut.nullable() },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false },
  access: { role: 'viewer', templates: true, permission: 'deploy_automations' },
  async handler(ctx, args) {
    const template = await resolveTemplate(ctx.core, ctx.account, args.template);
    const version = await getVersion(ctx.core, ctx.account, template, args.version ?? template.latestVersion);
    const targets = await targetAccounts(ctx, template, args.accounts);
    const first = args.waves?.[0];
    const firstIds = typeof first === 'object' ? new Set((await resolveListed(ctx.core, ctx.caller, first.accounts, 'member')).map((a) => a.id)) : new Set<string>();
    for (const id of firstIds) if (!targets.some((t) => t.id === id)) throw new UserError('waves[0].accounts names an account that is not among the accounts deployed to.');
    const extra = { waves: args.waves ?? null, bake: args.bake ?? null, min: args.min_executions ?? null, max: args.max_failure_rate_increase ?? null, auto: args.auto_rollback ?? false, drift: args.overwrite_drift ?? false };
    const plan = await planDeploy(ctx.core, template, version, targets, { values: args.values ?? {}, connections: args.connections ?? {}, overwriteDrift: args.overwrite_drift ?? false }, extra);
    const actionable = plan.targets.filter((t) => t.action === 'create' || t.action === 'update');
    const opts = options(args, actionable.length, actionable.filter((t) => firstIds.has(t.account.id)).length);
    return respond(ctx, args, likeOf(plan), opts, 'deploy_template', async () =>
      createDeployment(ctx.core, {
        accountId: ctx.account.id,
        templateId: template.id,
        templateName: template.name,
        kind: 'deploy',
        version: version.version,
        rollbackOf: null,
        planHash: plan.hash,
        options: opts,
        createdBy: ctx.caller.user.id,
        targets: actionable.map((t) => ({
          accountId: t.account.id,
          action: t.action as 'create' | 'update',
          automationId: t.copy?.id ?? null,
          expectedRevision: t.copy?.revision ?? null,
          fromVersion: t.fromVersion,
          toVersion: t.toVersion,
          restoreRevision: null,
          bindings: t.bindings,
          values: t.values,
          first: firstIds.has(t.account.id),
        })),
      }),
    );
  },
  after: followUp,
});

async function followUp(ctx: ToolContext, args: { wait_seconds?: number | undefined }, data: { applied: boolean; plan: z.infer<typeof planOut>; deployment: z.infer<typeof deploymentOut> | null }) {
  if (!data.deployment || FINISHED.includes(data.deployment.status as DeploymentRow['status'])) return { data, text: resultText(data) };
  const d = await follow(ctx, data.deployment.id, args.wait_seconds ?? 10);
  const next = { ...data, deployment: await deploymentView(ctx, d) };
  return { data: next, text: resultText(next) };
}

const resultText = (data: { applied: boolean; plan: z.infer<typeof planOut>; deployment: z.infer<typeof deploymentOut> | null }): string => {
  const c = data.plan.counts;
  const counts = Object.entries(c).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ') || 'no accounts';
  if (!data.applied) return `Plan (nothing applied): ${counts}. To apply it, call again with plan_hash "${data.plan.hash}".`;
  if (!data.deployment) return `Nothing to apply (${counts}).`;
  return `Applying: ${appliedText(data.deployment)}`;
};

async function respond(
  ctx: ToolContext,
  args: { dry_run?: boolean | undefined; plan_hash?: string | undefined },
  plan: RollbackPlan,
  opts: DeploymentOptions,
  tool: string,
  start: () => Promise<DeploymentRow>,
) {
  const dryRun = args.dry_run === true || args.plan_hash === undefined;
  const summary: PlanSummary = { hash: plan.hash, dry_run: dryRun, version: plan.version, counts: plan.counts, accounts: plan.targets.length };
  ctx.auditDetail({ plan: summary });
  const waves = opts.waveEnds.map((e, i) => e - (i ? opts.waveEnds[i - 1]! : 0)).filter((n) => n > 0);
  const planView: z.infer<typeof planOut> = {
    hash: plan.hash,
    template: { id: plan.template.id, name: plan.template.name },
    version: plan.version,
    classification: plan.classification,
    counts: plan.counts,
    blocked_by: plan.blockedBy,
    waves,
    targets: [...plan.targets].sort((a, b) => ORDER[a.action]! - ORDER[b.action]!).slice(0, SHOWN).map(targetView),
  };
  if (dryRun) return { data: { applied: false, plan: planView, deployment: null }, text: resultText({ applied: false, plan: planView, deployment: null }) };
  await refuseIfRunning(ctx.core, plan.template.id);
  if (args.plan_hash !== plan.hash) {
    const old = await dryRunSummary(ctx, tool, args.plan_hash!);
    throw new UserError(`The plan changed since the dry run: ${whatChanged(old, summary)}; nothing was applied, plan again.`, 'conflict');
  }
  const actionable = plan.targets.some((t) => t.action !== 'current' && t.action !== 'blocked');
  if (!actionable) return { data: { applied: true, plan: planView, deployment: null }, text: resultText({ applied: true, plan: planView, deployment: null }) };
  const d = await start();
  const deployment = await deploymentView(ctx, d);
  return { data: { applied: true, plan: planView, deployment }, text: resultText({ applied: true, plan: planView, deployment }) };
}

const likeOf = (plan: DeployPlan): RollbackPlan => ({ ...plan, version: plan.version.version, classification: plan.version.classification, blockedBy: plan.blockedBy as Record<string, number> });

/** The shape respond() needs of a plan. */
interface RollbackPlan {
  hash: string;
  template: TemplateRow;
  version: number | null;
  classification: string | null;
  counts: Record<string, number>;
  blockedBy: Record<string, number>;
  targets: (TargetPlan | (Omit<TargetPlan, 'action'> & { action: 'restore' | 'disable' }))[];
}

const rollbackTemplateTool = defineTool({
  name: 'rollback_template',
  toolset: 'templates',
  title: 'Roll back template',
  description:
    'Rolls a template back, with the same plan and plan_hash flow as deploy_template: deployment restores, per account, exactly the revision ' +
    'it ran before that deployment (a copy it created is disabled); to_version deploys that older version instead. Needs deploy_automations.',
  input: {
    template: templateArg,
    deployment: z.string().uuid().optional().describe('The deployment to undo.'),
    to_version: z.number().int().min(1).max(2_147_483_647).optional().describe('Or: the version every copy goes back to.'),
    accounts: z.array(z.string().min(1).max(200)).min(1).max(MAX_LISTED_ACCOUNTS).optional().describe('Only these accounts (default: all the deployment reached, or all running the template).'),
    ...commonIn,
  },
  output: { applied: z.boolean(), plan: planOut, deployment: deploymentOut.nullable() },
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false },
  access: { role: 'viewer', templates: true, permission: 'deploy_automations' },
  async handler(ctx, args) {
    if ((args.deployment === undefined) === (args.to_version === undefined)) throw new UserError('Pass either deployment (undo it) or to_version (go back to that version).');
    const template = await resolveTemplate(ctx.core, ctx.account, args.template);
    if (args.to_version !== undefined) {
      const version = await getVersion(ctx.core, ctx.account, template, args.to_version);
      const targets = args.accounts ? await resolveListed(ctx.core, ctx.caller, args.accounts, 'member') : await targetAccounts(ctx, template, 'all');
      const plan = await planDeploy(ctx.core, template, version, targets, { values: {}, connections: {}, overwriteDrift: false }, { rollback: true });
      const actionable = plan.targets.filter((t) => t.action === 'create' || t.action === 'update');
      const opts = options({}, actionable.length, 0);
      return respond(ctx, args, likeOf(plan), opts, 'rollback_template', () =>
        createDeployment(ctx.core, {
          accountId: ctx.account.id, templateId: template.id, templateName: template.name, kind: 'rollback', version: version.version, rollbackOf: null,
          planHash: plan.hash, options: opts, createdBy: ctx.caller.user.id,
          targets: actionable.map((t) => ({ accountId: t.account.id, action: t.action as 'create' | 'update', automationId: t.copy?.id ?? null, expectedRevision: t.copy?.revision ?? null, fromVersion: t.fromVersion, toVersion: t.toVersion, restoreRevision: null, bindings: t.bindings, values: t.values })),
        }),
      );
    }
    const d = await deploymentIn(ctx, args.deployment!);
    if (d.templateId !== template.id) throw new UserError(`The deployment ${d.id} is not one of the template ${template.id}.`);
    let undo = await rollbackTargets(ctx.core, d);
    const reached = undo.length ? await ctx.core.db.select().from(accounts).where(inArray(accounts.id, undo.map((t) => t.accountId))) : [];
    const byId = new Map(reached.map((a) => [a.id, a]));
    if (args.accounts) {
      const only = new Set((await resolveListed(ctx.core, ctx.caller, args.accounts, 'member')).map((a) => a.id));
      undo = undo.filter((t) => only.has(t.accountId));
    }
    const roles = await rolesIn(ctx.core, ctx.caller, [...byId.values()]);
    const outside = undo.filter((t) => {
      const role = roles.get(t.accountId);
      return !role || !atLeast(role, 'member');
    });
    if (outside.length) throw new AccessDenied(`Access denied: rolling back needs the member role in every account the deployment reached, and you lack it in ${outside.length}; pass accounts with those you may act in.`);
    const now = new Map(
      rowsOf<{ id: string; revision: number; template_id: string | null }>(
        undo.length ? await ctx.core.db.execute(sql`select id, revision, template_id from automations where id = any(${uuidList(undo.map((t) => t.automationId!))}::uuid[])`) : [],
      ).map((r) => [String(r.id), r]),
    );
    const targets = undo.map((t) => {
      const copy = now.get(t.automationId!);
      const changed = !copy || copy.template_id !== template.id || Number(copy.revision) !== t.expectedRevision;
      const account = byId.get(t.accountId)!;
      return {
        account,
        action: changed || account.status === 'suspended' ? ('blocked' as const) : t.action as 'restore' | 'disable',
        code: changed ? 'changed_since' : account.status === 'suspended' ? 'suspended' : null,
        reason: changed ? 'its copy changed since that deployment (by hand or by a later deployment)' : account.status === 'suspended' ? 'the account is suspended' : null,
        needs: [],
        copy: null,
        fromVersion: null,
        toVersion: t.toVersion ?? 0,
        stepsChanged: [],
        bindings: {},
        values: {},
        t,
      };
    });
    const counts: Record<string, number> = {};
    const blockedBy: Record<string, number> = {};
    for (const t of targets) {
      counts[t.action] = (counts[t.action] ?? 0) + 1;
      if (t.code) blockedBy[t.code] = (blockedBy[t.code] ?? 0) + 1;
    }
    const { createHash } = await import('node:crypto');
    const hash = `rp_${createHash('sha256').update(JSON.stringify([d.id, targets.map((t) => [t.account.id, t.action, t.t.expectedRevision, t.t.restoreRevision])])).digest('hex').slice(0, 24)}`;
    const go = targets.filter((t) => t.action !== 'blocked');
    const opts = options({}, go.length, 0);
    const plan: RollbackPlan = { hash, template, version: null, classification: null, counts, blockedBy, targets: targets as unknown as RollbackPlan['targets'] };
    return respond(ctx, args, plan, opts, 'rollback_template', () =>
      createDeployment(ctx.core, {
        accountId: ctx.account.id, templateId: template.id, templateName: template.name, kind: 'rollback', version: null, rollbackOf: d.id,
        planHash: hash, options: opts, createdBy: ctx.caller.user.id, targets: go.map((t) => t.t as NewTarget),
      }),
    );
  },
  after: followUp,
});

export const deployTools: ToolDef[] = [deployTemplateTool, rollbackTemplateTool];
