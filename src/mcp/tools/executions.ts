import { z } from 'zod';
import { defineTool, type ToolDef } from '../define-tool.js';
import { accountArg, cursorArg, iso, limitArg, timeArg } from './shapes.js';
import { resolveAutomation } from '../../core/automations.js';
import { awaitExecution, enqueueExecution, FINAL, getExecution, listExecutions, type ExecutionRow, type StepRow } from '../../core/executions.js';
import { EXECUTION_STATUSES } from '../../db/schema/index.js';

/** Running an automation by hand, and reading what runs did. Payload text stays in data fields, never in the sentence. */

export const executionOut = z.object({
  id: z.string(),
  automation: z.object({ id: z.string(), name: z.string().nullable() }),
  revision: z.number().int(),
  source: z.enum(['test', 'webhook', 'replay']),
  status: z.enum(EXECUTION_STATUSES),
  attempt: z.number().int().describe('Attempts of the current step so far.'),
  next_step: z.number().int(),
  failed_step: z.string().nullable(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  created_at: z.string(),
  started_at: z.string().nullable(),
  finished_at: z.string().nullable(),
  run_at: z.string().describe('When a queued execution is due (after a retry backoff, later than created_at).'),
});

export const stepOut = z.object({
  index: z.number().int(),
  id: z.string(),
  kind: z.string(),
  attempt: z.number().int(),
  status: z.enum(['succeeded', 'failed', 'filtered', 'retrying']),
  input: z.json().nullable(),
  output: z.json().nullable(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  started_at: z.string(),
  duration_ms: z.number().int(),
});

export const view = (row: ExecutionRow, name: string | null): z.infer<typeof executionOut> => ({
  id: row.id,
  automation: { id: row.automationId, name },
  revision: row.revision,
  source: row.source,
  status: row.status,
  attempt: row.attempt,
  next_step: row.nextStep,
  failed_step: row.failedStep,
  error: row.errorCode ? { code: row.errorCode, message: row.errorMessage ?? '' } : null,
  created_at: iso(row.createdAt)!,
  started_at: iso(row.startedAt),
  finished_at: iso(row.finishedAt),
  run_at: iso(row.runAt)!,
});

export const stepView = (s: StepRow): z.infer<typeof stepOut> => ({
  index: s.stepIndex,
  id: s.stepId,
  kind: s.kind,
  attempt: s.attempt,
  status: s.status,
  input: (s.input ?? null) as z.infer<typeof stepOut>['input'],
  output: (s.output ?? null) as z.infer<typeof stepOut>['output'],
  error: s.errorCode ? { code: s.errorCode, message: s.errorMessage ?? '' } : null,
  started_at: iso(s.startedAt)!,
  duration_ms: s.durationMs,
});

const runAutomationTool = defineTool({
  name: 'run_automation',
  toolset: 'automations',
  title: 'Run automation',
  description:
    "Runs an automation's current revision now with a test event, through the same engine as its webhook (its steps really run), " +
    'and waits up to wait_seconds for it to end. Returns the execution with its steps; a run still going can be read with get_execution.',
  input: {
    account: accountArg().optional(),
    automation: z.string().min(1).max(200).describe('The automation: its id or exact name.'),
    input: z
      .strictObject({
        body: z.json().optional().describe('The event body (default {}).'),
        headers: z.record(z.string().max(100), z.string().max(4000)).optional(),
        query: z.record(z.string().max(100), z.string().max(4000)).optional(),
        method: z.enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']).optional().describe('Default POST.'),
      })
      .optional()
      .describe('The test event as expressions see it under trigger.'),
    wait_seconds: z.number().min(0).max(60).optional().describe('How long to wait for the run to end (default 10).'),
  },
  output: { execution: executionOut, steps: z.array(stepOut) },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  access: { role: 'member' },
  // the run happens in a worker while this call waits: the queued row must be committed first
  transactional: false,
  async handler(ctx, args) {
    const automation = await resolveAutomation(ctx.core, ctx.account, args.automation);
    const trigger = {
      body: args.input?.body ?? {},
      headers: Object.fromEntries(Object.entries(args.input?.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
      query: args.input?.query ?? {},
      method: args.input?.method ?? 'POST',
    };
    const queued = await enqueueExecution(ctx.core, ctx.account, automation, trigger, 'test', ctx.caller.user.id);
    await awaitExecution(ctx.core, ctx.account, queued.id, (args.wait_seconds ?? 10) * 1000);
    const { row, steps, automationName } = await getExecution(ctx.core, ctx.account, queued.id);
    const done = FINAL.includes(row.status);
    return {
      data: { execution: view(row, automationName), steps: steps.map(stepView) },
      text: done
        ? `The test run of the automation ${automation.id} ${row.status}${row.failedStep ? ` at step '${row.failedStep}' (${row.errorCode})` : ''}.`
        : `The test run of the automation ${automation.id} is still ${row.status}: get_execution reads it later.`,
    };
  },
});

const listExecutionsTool = defineTool({
  name: 'list_executions',
  toolset: 'automations',
  title: 'List executions',
  description: "Lists the account's executions, newest first: status, automation, revision, the failing step and its error code.",
  input: {
    account: accountArg().optional(),
    automation: z.string().min(1).max(200).optional().describe('Only this automation (id or exact name).'),
    status: z.enum(EXECUTION_STATUSES).optional().describe('Only executions with this status.'),
    since: timeArg('Only executions created at or after this time.').optional(),
    limit: limitArg(),
    cursor: cursorArg,
  },
  output: { executions: z.array(executionOut), next_cursor: z.string().nullable() },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: 'viewer' },
  async handler(ctx, args) {
    const automationId = args.automation ? (await resolveAutomation(ctx.core, ctx.account, args.automation)).id : undefined;
    const page = await listExecutions(ctx.core, ctx.account, {
      automationId,
      status: args.status,
      since: args.since ? new Date(args.since) : undefined,
      limit: args.limit ?? 50,
      cursor: args.cursor,
    });
    const items = page.items.map((i) => view(i.row, i.name));
    return {
      data: { executions: items, next_cursor: page.nextCursor },
      text: `${items.length} execution${items.length === 1 ? '' : 's'} in ${ctx.account.slug}${page.nextCursor ? ' (more with next_cursor)' : ''}.`,
    };
  },
});

const getExecutionTool = defineTool({
  name: 'get_execution',
  toolset: 'automations',
  title: 'Get execution',
  description: 'Shows one execution with every attempt of every step: input, output, error code and message, timing.',
  input: { account: accountArg().optional(), execution: z.string().min(1).max(100).describe('The execution id.') },
  output: { execution: executionOut, steps: z.array(stepOut) },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: 'viewer' },
  async handler(ctx, args) {
    const { row, steps, automationName } = await getExecution(ctx.core, ctx.account, args.execution);
    return {
      data: { execution: view(row, automationName), steps: steps.map(stepView) },
      text: `Execution ${row.id} of ${automationName === null ? 'a deleted automation' : `the automation ${row.automationId}`} in ${ctx.account.slug}: ${row.status}, ${steps.length} step attempt${steps.length === 1 ? '' : 's'}.`,
    };
  },
});

export const executionTools: ToolDef[] = [runAutomationTool, listExecutionsTool, getExecutionTool];
