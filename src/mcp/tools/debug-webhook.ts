import { z } from 'zod';
import { defineTool, type ToolDef } from '../define-tool.js';
import { accountArg, cursorArg, limitArg, timeArg } from './shapes.js';
import { executionOut, stepOut, stepView, view } from './executions.js';
import { resolveAutomation } from '../../core/automations.js';
import { debugDeliveries, DERIVED_STATUSES, type DeliveryItem } from '../../core/operations/deliveries.js';
import { EXECUTION_STATUSES } from '../../db/schema/index.js';

/**
 * debug_webhook: an account's recent deliveries with what became of them and a diagnosis of each
 * that did not succeed. Payload and upstream text (bodies, error messages, names, reasons) stays
 * in fields of its own; the sentence is built from counts and codes only.
 */

const diagnosisOut = z
  .object({
    code: z.string().describe('The failure code the diagnosis is about.'),
    cause: z.string().describe('What went wrong, in one sentence.'),
    next_action: z.string().describe('What to do next, in one sentence naming the tools.'),
    tools: z.array(z.string()).describe('The tools the next action names.'),
    subject: z
      .object({ step: z.string().optional(), connection: z.object({ id: z.string(), app: z.string(), name: z.string(), status: z.string() }).optional() })
      .nullable()
      .describe('What the sentences are about (data).'),
    data: z.record(z.string(), z.json()).nullable().describe('Figures and data behind the sentences.'),
  })
  .nullable();

const deliveryOut = z.object({
  id: z.string(),
  received_at: z.string(),
  automation: z.object({ id: z.string(), name: z.string().nullable() }),
  status: z.enum(DERIVED_STATUSES).describe("Its latest run's status (original or replay), else the delivery's own."),
  code: z.string().nullable().describe('Why it did not run, as a fixed code.'),
  reason: z.string().nullable().describe('The recorded reason (data).'),
  routing: z
    .object({ value: z.string().nullable().describe("The routing key's value for this event (data)."), account: z.object({ id: z.string(), slug: z.string() }).nullable() })
    .nullable(),
  execution: z
    .object({
      id: z.string(),
      account: z.object({ id: z.string(), slug: z.string() }).describe('Where it ran (the linked child for a routed delivery).'),
      status: z.enum(EXECUTION_STATUSES),
      failed_step: z.string().nullable(),
      error: z.object({ code: z.string(), message: z.string().describe('Data.'), target: z.string().nullable(), upstream_status: z.number().int().nullable() }).nullable(),
      created_at: z.string(),
      finished_at: z.string().nullable(),
    })
    .nullable(),
  execution_visible: z.boolean().describe('False for a run in a linked account you may not see.'),
  replays: z.number().int().describe('Times it was replayed; execution is the latest run.'),
  upstream: z.object({ status: z.number().int().nullable(), body_excerpt: z.string().nullable().describe("The app's answer, first 500 characters (data).") }).nullable(),
  diagnosis: diagnosisOut,
});

const requestOut = z.object({
  method: z.string(),
  headers: z.record(z.string(), z.string()).describe('As recorded: secret headers redacted.'),
  query: z.record(z.string(), z.string()),
  content_type: z.string().nullable(),
  size: z.number().int(),
  body: z.json().nullable().describe('The payload as received (data).'),
});

/** "14 failed (http_401 ×14), 6 succeeded": counts by status, failures by code, most first. */
function tally(items: DeliveryItem[]): string {
  const by = new Map<string, { n: number; codes: Map<string, number> }>();
  for (const i of items) {
    const s = by.get(i.status) ?? { n: 0, codes: new Map() };
    s.n++;
    const code = i.diagnosis?.code;
    if (code && i.status !== 'succeeded') s.codes.set(code, (s.codes.get(code) ?? 0) + 1);
    by.set(i.status, s);
  }
  return [...by.entries()]
    .sort((a, b) => b[1].n - a[1].n || a[0].localeCompare(b[0]))
    .map(([status, s]) => {
      const codes = [...s.codes.entries()].filter(([c]) => c !== status).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
      return `${s.n} ${status}${codes.length ? ` (${codes.map(([c, n]) => `${c} ×${n}`).join(', ')})` : ''}`;
    })
    .join(', ');
}

const debugWebhookTool = defineTool({
  name: 'debug_webhook',
  toolset: 'operations',
  title: 'Debug webhook',
  description:
    "Shows the account's recent webhook deliveries, newest first: what became of each (its run, in the linked account for routed ones), " +
    'the failing step with the upstream answer, and a diagnosis naming the tool to call. get_delivery shows one in full.',
  input: {
    account: accountArg().optional(),
    automation: z.string().min(1).max(200).optional().describe('Only this automation (id or exact name).'),
    status: z.enum(DERIVED_STATUSES).optional().describe('Only deliveries that came to this status.'),
    since: timeArg('Only deliveries received at or after this time.').optional(),
    limit: limitArg(100, 20),
    cursor: cursorArg,
  },
  output: { deliveries: z.array(deliveryOut), next_cursor: z.string().nullable() },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: 'viewer' },
  async handler(ctx, args) {
    const automation = args.automation ? await resolveAutomation(ctx.core, ctx.account, args.automation) : undefined;
    const page = await debugDeliveries(ctx.core, ctx.caller, ctx.account, ctx.grant, {
      automationId: automation?.id,
      status: args.status,
      since: args.since ? new Date(args.since) : undefined,
      limit: args.limit ?? 20,
      cursor: args.cursor,
    });
    const items = page.items as z.infer<typeof deliveryOut>[];
    const slug = ctx.account.slug;
    let text: string;
    if (!items.length) {
      text = `No deliveries to ${slug}'s automations${args.status ? ` with status ${args.status}` : ''}.`;
    } else {
      text = `${items.length} deliver${items.length === 1 ? 'y' : 'ies'} to ${slug}'s automations: ${tally(page.items)}${page.nextCursor ? '; more with next_cursor' : ''}.`;
    }
    return { data: { deliveries: items, next_cursor: page.nextCursor }, text };
  },
});

/**
 * get_delivery: one delivery in full. Apart from debug_webhook, whose listing every conversation
 * pays for (the default toolsets), and beside get_execution, whose step view it shares.
 */
const getDeliveryTool = defineTool({
  name: 'get_delivery',
  toolset: 'automations',
  title: 'Get delivery',
  description:
    'One webhook delivery in full (debug_webhook lists them): the request as recorded (secret headers redacted), what became of it ' +
    'with its diagnosis, and the original run and every replay with each attempt of each step.',
  input: {
    account: accountArg().optional(),
    delivery: z.string().min(1).max(100).describe('The delivery id.'),
  },
  output: {
    delivery: deliveryOut,
    request: requestOut,
    executions: z.array(z.object({ execution: executionOut, steps: z.array(stepOut) })).describe('The original run and every replay, oldest first.'),
  },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: 'viewer' },
  async handler(ctx, args) {
    const page = await debugDeliveries(ctx.core, ctx.caller, ctx.account, ctx.grant, { deliveryId: args.delivery, limit: 1 });
    const d = page.detail!;
    const runs = d.runs.length;
    return {
      data: {
        delivery: d.item as z.infer<typeof deliveryOut>,
        request: d.request as z.infer<typeof requestOut>,
        executions: d.runs.map((r) => ({ execution: view(r.row, d.item.automation.name), steps: r.steps.map(stepView) })),
      },
      text: `Delivery to ${ctx.account.slug}: ${d.item.status}${d.item.diagnosis && d.item.diagnosis.code !== d.item.status ? ` (${d.item.diagnosis.code})` : ''}, ${runs} run${runs === 1 ? '' : 's'}.`,
    };
  },
});

export const debugWebhookTools: ToolDef[] = [debugWebhookTool, getDeliveryTool];
