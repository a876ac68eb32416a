import { z } from 'zod';
import { defineTool, type ToolDef } from '../define-tool.js';
import { accountArg, accountRefOut, refOf, timeArg } from './shapes.js';
import { resolveAutomation } from '../../core/automations.js';
import { UserError } from '../../core/errors.js';
import { isUuid } from '../../core/ids.js';
import { withAccount } from '../../db/scope.js';
import { applyReplay, planReplay, type Plan } from '../../core/operations/replay.js';
import { DERIVED_STATUSES, recordedPlan, type PlanSummary, type ReplayFilter } from '../../core/operations/replay-plan.js';

/**
 * replay_webhook: recorded deliveries run again as new executions linked to the originals.
 * One delivery replays at once; a filter takes two calls (dry_run, then apply with the plan's
 * hash). Its sentences carry counts, codes and revision numbers only: payload text and names are
 * data, in fields of their own.
 */

const NOT_SHOWN = 100;

const sideEffectOut = z.object({
  step: z.string(),
  kind: z.enum(['http', 'store']),
  method: z.string().nullable(),
  app: z.string().nullable().describe("The app of the step's connection."),
  host: z.string().nullable().describe('The host its URL names, when written out.'),
  action: z.string().nullable().describe('store: set, increment or delete.'),
  scope: z.enum(['account', 'parent']).nullable(),
  done_before: z.number().int().describe('How many of its deliveries had this step succeed in an earlier run.'),
  repeated: z.boolean().describe('It happens again for at least one delivery.'),
});

const planOut = z.object({
  hash: z.string().describe('Pass as plan_hash to apply this plan.'),
  dry_run: z.boolean(),
  revision: z.enum(['original', 'current']),
  reuse_idempotency_keys: z.boolean(),
  deliveries: z.number().int().describe('Deliveries matched.'),
  replayable: z.number().int(),
  accounts: z.array(z.object({ account: accountRefOut, deliveries: z.number().int() })).describe('Where the replays run, with counts.'),
  revisions: z.array(
    z.object({
      automation: z.object({ id: z.string(), name: z.string() }),
      revision: z.number().int(),
      deliveries: z.number().int(),
      side_effects: z.array(sideEffectOut).describe('Its http steps (external calls) and account data writes.'),
    }),
  ),
  not_replayable: z.array(z.object({ delivery_id: z.string(), code: z.string(), reason: z.string() })).describe(`Up to ${NOT_SHOWN}.`),
  not_replayable_by_code: z.record(z.string(), z.number().int()),
});

const executionOut = z.object({ id: z.string(), delivery_id: z.string(), account_id: z.string(), revision: z.number().int(), idempotency_of: z.string().nullable() });

const byCode = (plan: Plan): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const d of plan.decisions) if (d.code) out[d.code] = (out[d.code] ?? 0) + 1;
  return out;
};

const planView = (plan: Plan, dryRun: boolean): z.infer<typeof planOut> => ({
  hash: plan.hash,
  dry_run: dryRun,
  revision: plan.options.revision,
  reuse_idempotency_keys: plan.options.reuse,
  deliveries: plan.matched,
  replayable: plan.replayable.length,
  accounts: plan.accounts.map((a) => ({ account: refOf(a.account), deliveries: a.deliveries })),
  revisions: plan.revisions.map((r) => ({
    automation: { id: r.automationId, name: r.automationName },
    revision: r.revision,
    deliveries: r.deliveries,
    side_effects: r.sideEffects.map((s) => ({ step: s.step, kind: s.kind, method: s.method, app: s.app, host: s.host, action: s.action, scope: s.scope, done_before: s.doneBefore, repeated: s.doneBefore > 0 })),
  })),
  not_replayable: plan.decisions.filter((d) => d.code).slice(0, NOT_SHOWN).map((d) => ({ delivery_id: d.delivery.id, code: d.code!, reason: d.reason ?? '' })),
  not_replayable_by_code: byCode(plan),
});

const summaryOf = (plan: Plan, dryRun: boolean): PlanSummary => ({
  hash: plan.hash,
  dry_run: dryRun,
  revision: plan.options.revision,
  reuse_idempotency_keys: plan.options.reuse,
  deliveries: plan.matched,
  replayable: plan.replayable.length,
  not_replayable: byCode(plan),
  accounts: plan.accounts.map((a) => ({ id: a.account.id, deliveries: a.deliveries })),
  revisions: plan.revisions.map((r) => ({ automation_id: r.automationId, revision: r.revision, deliveries: r.deliveries })),
});

const n = (count: number, one: string, many = `${one}s`) => `${count} ${count === 1 ? one : many}`;

/** What a plan_hash that no longer matches missed, as one clause (counts and flags only). */
function whatChanged(old: PlanSummary | null, now: PlanSummary): string {
  if (!old) return 'the plan_hash is not that of a dry run of this plan';
  if (old.revision !== now.revision) return `revision ${now.revision} now instead of ${old.revision}`;
  if (old.reuse_idempotency_keys !== now.reuse_idempotency_keys) return `reuse_idempotency_keys is ${now.reuse_idempotency_keys} now`;
  if (old.deliveries !== now.deliveries) return `${n(now.deliveries, 'delivery', 'deliveries')} now instead of ${old.deliveries}`;
  if (old.replayable !== now.replayable) return `${now.replayable} replayable now instead of ${old.replayable}`;
  if (old.accounts.length !== now.accounts.length) return `${n(now.accounts.length, 'account')} now instead of ${old.accounts.length}`;
  return 'the same number of deliveries, but not the same ones, accounts or revisions, or some were replayed since';
}

const revisionsText = (plan: Plan) => {
  const nums = [...new Set(plan.revisions.map((r) => r.revision))].sort((a, b) => a - b);
  return nums.length ? `${nums.length === 1 ? 'revision' : 'revisions'} ${nums.join(', ')}` : `the ${plan.options.revision} revision`;
};

const skippedText = (plan: Plan) => {
  const codes = Object.entries(byCode(plan));
  return codes.length ? `; ${plan.decisions.length - plan.replayable.length} not replayable (${codes.map(([c, k]) => `${c}: ${k}`).join(', ')})` : '';
};

const repeatsText = (plan: Plan) => {
  const repeated = plan.revisions.reduce((sum, r) => sum + r.sideEffects.filter((s) => s.doneBefore > 0).length, 0);
  return `${n(repeated, 'side effect')} the earlier runs had already done`;
};

const replayTool = defineTool({
  name: 'replay_webhook',
  toolset: 'operations',
  title: 'Replay webhook deliveries',
  description:
    'Re-runs recorded webhook deliveries as new executions linked to the originals. One `delivery` replays at once. A `filter` takes two calls: ' +
    '`dry_run: true` returns the plan (where, which revision, which side effects repeat) and its hash; then call again with `plan_hash` to apply it.',
  input: {
    account: accountArg("The automation's account (routed events replay in their linked account)").optional(),
    delivery: z.string().min(1).max(100).optional().describe('One delivery id (from debug_webhook): replayed at once.'),
    filter: z
      .strictObject({
        automation: z.string().min(1).max(200).optional().describe('Only this automation (id or exact name).'),
        status: z.enum(DERIVED_STATUSES).optional().describe("Only deliveries with this status, as debug_webhook shows it."),
        error: z.string().min(1).max(64).optional().describe("Only this error code: the latest run's failure, or why the delivery was not run."),
        since: timeArg('Only deliveries received at or after this time.').optional(),
        until: timeArg('Only deliveries received before this time.').optional(),
        group: z.string().regex(/^[0-9a-f]{32}$/, 'must be a failure group fingerprint').optional().describe('Only deliveries whose latest run failed in this failure group (list_failure_groups).'),
      })
      .optional()
      .describe('Which deliveries: at least one field.'),
    revision: z.enum(['original', 'current']).optional().describe("The automation revision that runs: the original run's or the current one (default)."),
    reuse_idempotency_keys: z.boolean().optional().describe("Send the original runs' Idempotency-Keys so apps that honour them do not write twice (default true)."),
    dry_run: z.boolean().optional().describe('Return the plan and its hash; replay nothing.'),
    plan_hash: z.string().regex(/^[0-9a-f]{64}$/, 'must be the hash of a dry run').optional().describe("The dry run's plan hash: required to apply a filter."),
  },
  output: { plan: planOut, executions: z.array(executionOut).describe('The new executions (none for a dry run).') },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  access: { role: 'member' },
  async handler(ctx, args) {
    if (args.delivery !== undefined && args.filter !== undefined) throw new UserError('Give either delivery or filter, not both.');
    if (args.delivery === undefined && args.filter === undefined) throw new UserError('Give the delivery to replay, or a filter choosing deliveries (dry_run first).');
    let by: { delivery: string } | { filter: ReplayFilter };
    if (args.delivery !== undefined) {
      if (!isUuid(args.delivery)) throw new UserError('The delivery must be given by its id (debug_webhook lists them).');
      by = { delivery: args.delivery.toLowerCase() };
    } else {
      const f = args.filter!;
      if (!Object.values(f).some((v) => v !== undefined)) {
        throw new UserError('An empty filter would replay every delivery: give at least one of automation, status, error, since, until or group.');
      }
      by = {
        filter: {
          automationId: f.automation ? (await resolveAutomation(ctx.core, ctx.account, f.automation)).id : undefined,
          status: f.status,
          error: f.error,
          since: f.since ? new Date(f.since) : undefined,
          until: f.until ? new Date(f.until) : undefined,
          group: f.group,
        },
      };
    }
    const options = { revision: args.revision ?? 'current', reuse: args.reuse_idempotency_keys ?? true } as const;
    const dryRun = args.dry_run === true;
    const plan = await planReplay(ctx.core, ctx.caller, ctx.account, ctx.grant, by, options);
    const summary = summaryOf(plan, dryRun);
    ctx.auditDetail({ plan: summary });

    if (dryRun) {
      return {
        data: { plan: planView(plan, true), executions: [] },
        text:
          `Plan: ${n(plan.replayable.length, 'delivery', 'deliveries')} of ${plan.matched} would replay in ${n(plan.accounts.length, 'account')} ` +
          `(${revisionsText(plan)}, idempotency keys ${options.reuse ? 'reused' : 'new'}), repeating ${repeatsText(plan)}${skippedText(plan)}; apply it with plan_hash.`,
      };
    }
    if ('filter' in by && args.plan_hash === undefined) {
      throw new UserError('A filter replays in two calls: call with dry_run: true, check the plan, then call again with its plan_hash.');
    }
    if (args.plan_hash !== undefined && args.plan_hash !== plan.hash) {
      const old = await withAccount(ctx.core.db, [ctx.account.id], (tx) => recordedPlan(tx, ctx.account.id, args.plan_hash!));
      if (old && !old.plan.dry_run) {
        // the same apply sent again (an answer lost, a server restarted): its replays exist, none is made twice
        throw new UserError(
          `This plan was already applied at ${old.at.toISOString()} (${n(old.plan.replayable, 'delivery', 'deliveries')} replayed); nothing was replayed again: debug_webhook shows how those replays went, and a new dry_run plans replaying them once more.`,
          'conflict',
        );
      }
      throw new UserError(`The plan changed since dry_run: ${whatChanged(old?.plan ?? null, summary)}; nothing was replayed, run dry_run again.`, 'conflict');
    }
    if ('delivery' in by && !plan.replayable.length) {
      const d = plan.decisions[0]!;
      // the unrouted reason names the event's routing key (payload): not in the sentence
      const why = d.code === 'unrouted' ? 'no linked account has its routing key now' : d.reason;
      throw new UserError(`The delivery ${d.delivery.id} cannot be replayed (${d.code}): ${why}.`);
    }
    const created = await applyReplay(ctx.core, ctx.caller, ctx.account, plan);
    const executions = created.map((c) => ({ id: c.id, delivery_id: c.deliveryId, account_id: c.accountId, revision: c.revision, idempotency_of: c.idempotencyOf }));
    const text =
      'delivery' in by
        ? `The delivery ${created[0]!.deliveryId} replays as execution ${created[0]!.id} (revision ${created[0]!.revision}, idempotency keys ${options.reuse ? 'reused' : 'new'}), repeating ${repeatsText(plan)}.`
        : `${n(created.length, 'delivery', 'deliveries')} of ${plan.matched} replay as new executions in ${n(plan.accounts.length, 'account')} ` +
          `(${revisionsText(plan)}, idempotency keys ${options.reuse ? 'reused' : 'new'}), repeating ${repeatsText(plan)}${skippedText(plan)}.`;
    return { data: { plan: planView(plan, false), executions }, text };
  },
});

export const replayTools: ToolDef[] = [replayTool];
