import { z } from 'zod';
import { definitionIn, definitionOut, toDefinition } from './automation-shapes.js';
import { iso } from './shapes.js';
import { VAR_TYPES, type TemplateDefinition, type Variable, type VersionDiff } from '../../core/templates/definition.js';
import type { TemplateRow, VersionRow } from '../../core/templates/templates.js';
import { MAX_TEMPLATE_NAME } from '../../core/templates/templates.js';

/** Zod shapes shared by the template and deployment tools. */

export const templateArg = z.string().min(1).max(MAX_TEMPLATE_NAME).describe('The template: its id or exact name.');
export const varValue = z.union([z.string().max(4000), z.number(), z.boolean()]);

export const variableIn = z.strictObject({
  name: z.string().min(1).max(40).describe('Read by expressions as vars.<name>.'),
  type: z.enum(VAR_TYPES),
  required: z.boolean().optional().describe('Default true: a copy needs a value (or the default).'),
  default: varValue.optional(),
  description: z.string().max(500).optional(),
});

export const templateDefinitionIn = z
  .strictObject({
    ...definitionIn,
    variables: z.array(variableIn).max(50).optional().describe('Per-account values the steps read as vars.<name>.'),
  })
  .describe('An automation definition whose http steps and signature name a connection by app slug (e.g. "slack"); each account binds its own.');

export const toTemplateDefinition = (d: z.infer<typeof templateDefinitionIn>): { definition: TemplateDefinition; variables: Variable[] } => {
  const { vars: _none, ...definition } = toDefinition(d);
  const variables = (d.variables ?? []).map((v) => ({
    name: v.name,
    type: v.type,
    required: v.required ?? true,
    ...(v.default !== undefined ? { default: v.default } : {}),
    ...(v.description !== undefined ? { description: v.description } : {}),
  }));
  return { definition, variables };
};

export const variableOut = z.object({
  name: z.string(),
  type: z.enum(VAR_TYPES),
  required: z.boolean(),
  default: varValue.optional(),
  description: z.string().optional(),
});

export const templateOut = z.object({
  id: z.string(),
  name: z.string(),
  description: z.string(),
  latest_version: z.number().int(),
  apps: z.array(z.string()).describe('Apps of the latest version: every account needs a connection of each.'),
  variables: z.array(variableOut),
  created_at: z.string(),
  updated_at: z.string(),
});

export const templateView = (t: TemplateRow, v: Pick<VersionRow, 'apps' | 'variables'>): z.infer<typeof templateOut> => ({
  id: t.id,
  name: t.name,
  description: t.description,
  latest_version: t.latestVersion,
  apps: v.apps,
  variables: v.variables as Variable[],
  created_at: iso(t.createdAt)!,
  updated_at: iso(t.updatedAt)!,
});

export const classificationOut = z.enum(['initial', 'compatible', 'breaking']);

export const versionOut = z.object({
  version: z.number().int(),
  classification: classificationOut.describe('Against the version before: breaking needs something of the accounts first.'),
  reasons: z.array(z.string()),
  note: z.string(),
  created_at: z.string(),
});

export const versionView = (v: Pick<VersionRow, 'version' | 'classification' | 'reasons' | 'note' | 'createdAt'>): z.infer<typeof versionOut> => ({
  version: v.version,
  classification: v.classification,
  reasons: v.reasons,
  note: v.note,
  created_at: iso(v.createdAt)!,
});

export const diffOut = z.object({
  from_version: z.number().int(),
  to_version: z.number().int(),
  classification: z.enum(['compatible', 'breaking']),
  reasons: z.array(z.string()).describe('Why breaking: what an account needs first.'),
  steps: z.object({
    added: z.array(z.string()),
    removed: z.array(z.string()),
    changed: z.array(z.object({ id: z.string(), fields: z.array(z.string()) })),
  }),
  variables: z.object({ added: z.array(z.string()), removed: z.array(z.string()), changed: z.array(z.string()) }),
  apps: z.object({ added: z.array(z.string()), removed: z.array(z.string()) }),
  trigger_changed: z.boolean(),
  routing_changed: z.boolean(),
  retries_changed: z.boolean(),
});

export const diffView = (from: number, to: number, d: VersionDiff): z.infer<typeof diffOut> => ({ from_version: from, to_version: to, ...d });

export { definitionOut };
