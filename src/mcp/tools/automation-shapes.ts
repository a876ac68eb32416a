import { z } from 'zod';
import { HTTP_METHODS, MAX_RETRIES, MAX_STEPS, STORE_ACTIONS, type Definition } from '../../core/automation-definition.js';
import { stateOf, type AutomationRow, type RevisionRow } from '../../core/automations.js';
import { iso } from './shapes.js';
import { SIGNATURE_PRESETS } from '../../core/signatures.js';

/** Zod shapes of automation definitions, shared by the automation tools' input and output. */

const RESERVED = new Set(['and', 'or', 'in', 'true', 'false', 'null', 'function', '__proto__', 'constructor', 'prototype']);
const stepId = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,39}$/, 'must be letters, digits and _ (not starting with a digit), at most 40')
  .refine((s) => !RESERVED.has(s), 'must not be a reserved word (and, or, in, true, false, null, function, __proto__, constructor, prototype)')
  .describe('Unique in the automation; later steps read its result as steps.<id>.output.');
const expr = (what: string) => z.string().min(1).max(4000).describe(`${what}: a JSONata expression (no {{ }}).`);
const template = z.string().max(4000);
const json = z.json();
const TEMPLATE_NOTE = 'Strings may embed {{ expression }}; a string that is one expression keeps its JSON type.';

export const httpStepIn = z.strictObject({
  id: stepId,
  kind: z.literal('http'),
  method: z.enum(HTTP_METHODS),
  url: template.min(1).describe('Absolute http(s) URL; may embed {{ expression }}.'),
  headers: z.record(z.string().min(1).max(100), template).optional().describe('Request headers. Credentials come from connection, never here.'),
  query: z.record(z.string().min(1).max(100), template).optional().describe('Query parameters.'),
  body: json.optional().describe(`JSON body. ${TEMPLATE_NOTE}`),
  connection: z.string().min(1).max(300).optional().describe('Connection whose credentials authenticate the request: id, app/name, or app slug.'),
  timeout_ms: z.number().int().min(100).max(120_000).optional().describe('Per-attempt timeout (default 30000).'),
});
export const transformStepIn = z.strictObject({
  id: stepId,
  kind: z.literal('transform'),
  value: json.describe(`The output value. ${TEMPLATE_NOTE}`),
});
export const filterStepIn = z.strictObject({
  id: stepId,
  kind: z.literal('filter'),
  condition: expr('Continue when true; false ends the run as filtered'),
});
export const storeStepIn = z.strictObject({
  id: stepId,
  kind: z.literal('store'),
  action: z.enum(STORE_ACTIONS),
  key: template.min(1).describe('The key; may embed {{ expression }}.'),
  value: json.optional().describe(`For set. ${TEMPLATE_NOTE}`),
  by: z.number().optional().describe('For increment (default 1).'),
  ttl_seconds: z.number().int().min(1).max(31_536_000).optional().describe('For set: expire after this many seconds.'),
  scope: z.enum(['account', 'parent']).optional().describe('parent: the linked parent account\'s data (default account).'),
});
export const stepIn = z.discriminatedUnion('kind', [httpStepIn, transformStepIn, filterStepIn, storeStepIn]);

export const signatureIn = z.strictObject({
  preset: z.enum(SIGNATURE_PRESETS).describe('stripe (Stripe-Signature, timestamp checked), github (X-Hub-Signature-256), shopify (X-Shopify-Hmac-Sha256), slack (X-Slack-Signature, timestamp checked), or generic.'),
  connection: z.string().min(1).max(300).describe('The signing secret: a webhook connection (id or webhook/<name>).'),
  header: z.string().min(1).max(100).optional().describe('generic: the header carrying the HMAC-SHA256 of the body.'),
  encoding: z.enum(['hex', 'base64']).optional().describe('generic: how the digest is written (default hex).'),
  prefix: z.string().max(40).optional().describe('generic: text before the digest, e.g. sha256=.'),
  tolerance_seconds: z.number().int().min(1).max(86_400).optional().describe('stripe, slack: how old a signed timestamp may be (default 300).'),
});

export const definitionIn = {
  trigger: z
    .object({
      type: z.literal('webhook').optional().describe('webhook (the only trigger for now).'),
      dedupe: z.object({ key: expr('The event\'s identity, e.g. body.id') }).nullable().optional().describe('Skip repeats of the same key within 24 h.'),
      signature: signatureIn.nullable().optional().describe('Refuse deliveries not signed with the secret (401, recorded as rejected: signature_invalid).'),
    })
    .optional()
    .describe('What starts a run (default: its webhook).'),
  routing: z
    .object({ key: expr('The routing key, e.g. body.location_id') })
    .nullable()
    .optional()
    .describe('Parent accounts: run each event in the linked child whose routing_key matches.'),
  steps: z.array(stepIn).min(1).max(MAX_STEPS).describe('Run in order; expressions see trigger, steps.<id>.output and account.'),
  retries: z.number().int().min(0).max(MAX_RETRIES).optional().describe('Retries of a failing step (default 3).'),
};

/** The definition as given to a tool → as stored (defaults filled in). */
export function toDefinition(args: {
  trigger?: { type?: 'webhook' | undefined; dedupe?: { key: string } | null | undefined; signature?: z.infer<typeof signatureIn> | null | undefined } | undefined;
  routing?: { key: string } | null | undefined;
  steps: z.infer<typeof stepIn>[];
  retries?: number | undefined;
}): Definition {
  return {
    trigger: { type: 'webhook', dedupe: args.trigger?.dedupe ?? null, signature: args.trigger?.signature ?? null },
    routing: args.routing ?? null,
    steps: args.steps,
    retries: { max: args.retries ?? 3 },
  };
}

export const automationStates = ['enabled', 'disabled', 'paused'] as const;

export const automationOut = z.object({
  id: z.string(),
  name: z.string(),
  description: z.string(),
  state: z.enum(automationStates).describe('enabled runs events; disabled and paused (by a disconnected connection) record them only.'),
  paused_by_connection_id: z.string().nullable(),
  revision: z.number().int(),
  routed: z.boolean().describe('true when events run in linked child accounts.'),
  steps: z.number().int(),
  created_at: z.string(),
  updated_at: z.string(),
});

export const automationView = (row: AutomationRow, revision: Pick<RevisionRow, 'definition'>): z.infer<typeof automationOut> => {
  const def = revision.definition as Definition;
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    state: stateOf(row),
    paused_by_connection_id: row.pausedByConnectionId,
    revision: row.revision,
    routed: def.routing !== null,
    steps: def.steps.length,
    created_at: iso(row.createdAt)!,
    updated_at: iso(row.updatedAt)!,
  };
};

/** The stored definition, described once: its steps are as create_automation takes them. */
export const definitionOut = z.object({
  trigger: z.object({
    type: z.literal('webhook'),
    dedupe: z.object({ key: z.string() }).nullable(),
    signature: z.looseObject({ preset: z.enum(SIGNATURE_PRESETS), connection: z.string(), connection_id: z.string().nullable().optional() }).nullable().optional(),
  }),
  routing: z.object({ key: z.string() }).nullable(),
  steps: z
    .array(z.looseObject({ id: z.string(), kind: z.enum(['http', 'transform', 'filter', 'store']), connection_id: z.string().nullable().optional() }))
    .describe('Each step as create_automation takes it; http steps add connection_id, the connection resolved at save.'),
  retries: z.object({ max: z.number().int() }),
});
