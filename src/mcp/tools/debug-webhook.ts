import { z } from 'zod';
import { defineTool, type ToolDef } from '../define-tool.js';
import { accountArg, cursorArg, limitArg, timeArg } from './shapes.js';
import { executionOut, stepOut, stepView, view } from './executions.js';
import { resolveAutomation } from '../../core/automations.js';
import { debugDeliveries, DERIVED_STATUSES, type DeliveryItem } from '../../core/operations/deliveries.js';
import { DELIVERY_STATUSES, EXECUTION_STATUSES } from '../../db/schema/index.js';

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
  status: z.enum(DERIVED_STATUSES).describe("What became of it: the delivery's own status when it did not run, else its latest run's (the original or its latest replay)."),
  delivery_status: z.enum(DELIVERY_STATUSES),
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

const detailOut = z
  .object({
    request: z.object({
      method: z.string(),
      headers: z.record(z.string(), z.string()).describe('As recorded: secret headers redacted.'),
      query: z.record(z.string(), z.string()),
      content_type: z.string().nullable(),
      size: z.number().int(),
      body: z.json().nullable().describe('The payload as received (data).'),
    }),
    executions: z.array(z.object({ execution: executionOut, steps: z.array(stepOut) })).describe('The original run and every replay, oldest first.'),
  })
  .nullable();

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
    'the failing step with the upstream answer, and a diagnosis naming the tool to call. With delivery: that one in full, every attempt of every step.',
  input: {
    account: accountArg().optional(),
    automation: z.string().min(1).max(200).optional().describe('Only this automation (id or exact name).'),
    delivery: z.string().min(1).max(100).optional().describe('One delivery id: returns it in full.'),
    status: z.enum(DERIVED_STATUSES).optional().describe('Only deliveries that came to this status.'),
    since: timeArg('Only deliveries received at or after this ISO-8601 time.').optional(),
    limit: limitArg(100, 20),
    cursor: cursorArg,
  },
  output: { deliveries: z.array(deliveryOut), next_cursor: z.string().nullable(), delivery: detailOut },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: 'viewer' },
  async handler(ctx, args) {
    const automation = args.automation ? await resolveAutomation(ctx.core, ctx.account, args.automation) : undefined;
    const page = await debugDeliveries(ctx.core, ctx.caller, ctx.account, ctx.grant, {
      automationId: automation?.id,
      deliveryId: args.delivery,
      status: args.status,
      since: args.since ? new Date(args.since) : undefined,
      limit: args.limit ?? 20,
      cursor: args.cursor,
    });
    const detail = page.detail
      ? {
          request: page.detail.request as NonNullable<z.infer<typeof detailOut>>['request'],
          executions: page.detail.runs.map((r) => ({ execution: view(r.row, page.detail!.item.automation.name), steps: r.steps.map(stepView) })),
        }
      : null;
    const items = page.items as z.infer<typeof deliveryOut>[];
    const slug = ctx.account.slug;
    let text: string;
    if (page.detail) {
      const d = page.detail.item;
      const runs = page.detail.runs.length;
      text = `Delivery to ${slug}: ${d.status}${d.diagnosis && d.diagnosis.code !== d.status ? ` (${d.diagnosis.code})` : ''}, ${runs} run${runs === 1 ? '' : 's'}.`;
    } else if (!items.length) {
      text = `No deliveries to ${slug}'s automations${args.status ? ` with status ${args.status}` : ''}.`;
    } else {
      text = `${items.length} deliver${items.length === 1 ? 'y' : 'ies'} to ${slug}'s automations: ${tally(page.items)}${page.nextCursor ? '; more with next_cursor' : ''}.`;
    }
    return { data: { deliveries: items, next_cursor: page.nextCursor, delivery: detail }, text };
  },
});

export const debugWebhookTools: ToolDef[] = [debugWebhookTool];
