import { z } from 'zod';
import { defineTool, type ToolDef } from '../define-tool.js';
import { cursorArg, limitArg } from './shapes.js';
import { definitionOut, diffOut, diffView, templateArg, templateDefinitionIn, templateOut, templateView, toTemplateDefinition, variableOut, versionOut, versionView } from './template-shapes.js';
import { createTemplate, getVersion, listTemplates, MAX_TEMPLATE_NAME, resolveTemplate, updateTemplate, versionHistory, versionParts } from '../../core/templates/templates.js';
import { diffVersions, type Variable } from '../../core/templates/definition.js';

/**
 * Templates: one canonical automation kept in the tenant's templates account, in immutable
 * versions. These tools act in that account whatever the session switched into (access.templates).
 */

const createTemplateTool = defineTool({
  name: 'create_template',
  toolset: 'templates',
  title: 'Create template',
  description:
    'Creates a template in the templates account: an automation definition whose connections are named by app (each account binds its own ' +
    'when deployed) and which may declare variables its expressions read as vars.<name>. Validated whole; writes version 1.',
  input: {
    name: z.string().min(1).max(MAX_TEMPLATE_NAME).describe('Unique among templates; deployed copies take this name.'),
    description: z.string().max(2000).optional().describe('What it does, for the people who deploy it.'),
    definition: templateDefinitionIn,
  },
  output: { template: templateOut, version: versionOut },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false },
  access: { role: 'member', templates: true },
  async handler(ctx, args) {
    const { definition, variables } = toTemplateDefinition(args.definition);
    const { template, version } = await createTemplate(ctx.core, ctx.account, { name: args.name, description: args.description, definition, variables, by: ctx.caller.user.id });
    return {
      data: { template: templateView(template, version), version: versionView(version) },
      text: `Created the template ${template.id} (version 1, ${version.apps.length} app${version.apps.length === 1 ? '' : 's'}, ${variables.length} variable${variables.length === 1 ? '' : 's'}).`,
    };
  },
});

const updateTemplateTool = defineTool({
  name: 'update_template',
  toolset: 'templates',
  title: 'Update template',
  description:
    'Writes a new immutable version of a template (the whole definition) and classifies it against the latest: compatible, or breaking with ' +
    'the reasons. Deployed copies change only when it is deployed (deploy_template).',
  input: {
    template: templateArg,
    definition: templateDefinitionIn,
    note: z.string().min(1).max(500).describe('What changed and why; kept with the version.'),
    description: z.string().max(2000).optional().describe('What it does, for the people who deploy it.'),
  },
  output: { template: templateOut, version: versionOut, diff: diffOut },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false },
  access: { role: 'member', templates: true },
  async handler(ctx, args) {
    const row = await resolveTemplate(ctx.core, ctx.account, args.template);
    const { definition, variables } = toTemplateDefinition(args.definition);
    const { template, version, previous } = await updateTemplate(ctx.core, ctx.account, row, { definition, variables, note: args.note, description: args.description, by: ctx.caller.user.id });
    const diff = diffVersions(versionParts(previous), versionParts(version));
    return {
      data: { template: templateView(template, version), version: versionView(version), diff: diffView(previous.version, version.version, diff) },
      text:
        `The template ${template.id} is now at version ${version.version}: ${version.classification}` +
        `${version.reasons.length ? ` (${version.reasons.length} reason${version.reasons.length === 1 ? '' : 's'} in version.reasons)` : ''}. Deploy it with deploy_template.`,
    };
  },
});

const listTemplatesTool = defineTool({
  name: 'list_templates',
  toolset: 'templates',
  title: 'List templates',
  description: 'Lists the templates by name, with their latest version, apps and variables.',
  input: { query: z.string().max(100).optional().describe('Part of the name (case-insensitive).'), limit: limitArg(), cursor: cursorArg },
  output: { templates: z.array(templateOut), next_cursor: z.string().nullable() },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: 'viewer', templates: true },
  async handler(ctx, args) {
    const page = await listTemplates(ctx.core, ctx.account, { query: args.query, limit: args.limit ?? 50, cursor: args.cursor });
    const items = page.items.map((i) => templateView(i.template, i.version));
    return { data: { templates: items, next_cursor: page.nextCursor }, text: `${items.length} template${items.length === 1 ? '' : 's'}${page.nextCursor ? ' (more with next_cursor)' : ''}.` };
  },
});

const getTemplateTool = defineTool({
  name: 'get_template',
  toolset: 'templates',
  title: 'Get template',
  description: 'Shows a template: a version (default the latest) with its definition and variables, recent versions, and optionally the diff from another version.',
  input: {
    template: templateArg,
    version: z.number().int().min(1).max(2_147_483_647).optional().describe('The version to show (default: the latest).'),
    diff_from: z.number().int().min(1).max(2_147_483_647).optional().describe('Also show what changed from this version to the one shown.'),
  },
  output: {
    template: templateOut,
    version: versionOut,
    definition: definitionOut,
    variables: z.array(variableOut).describe('The variables of the version shown.'),
    versions: z.array(versionOut).describe('The latest 10, newest first.'),
    diff: diffOut.nullable(),
  },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: 'viewer', templates: true },
  async handler(ctx, args) {
    const row = await resolveTemplate(ctx.core, ctx.account, args.template);
    const [shown, latest, history, from] = await Promise.all([
      getVersion(ctx.core, ctx.account, row, args.version ?? row.latestVersion),
      getVersion(ctx.core, ctx.account, row),
      versionHistory(ctx.core, ctx.account, row.id),
      args.diff_from !== undefined ? getVersion(ctx.core, ctx.account, row, args.diff_from) : Promise.resolve(null),
    ]);
    const diff = from ? diffView(from.version, shown.version, diffVersions(versionParts(from), versionParts(shown))) : null;
    return {
      data: {
        template: templateView(row, latest),
        version: versionView(shown),
        definition: { ...(shown.definition as z.infer<typeof definitionOut>) },
        variables: shown.variables as Variable[],
        versions: history.map(versionView),
        diff,
      },
      text:
        `The template ${row.id}, version ${shown.version}${shown.version === row.latestVersion ? ' (latest)' : ` (latest: ${row.latestVersion})`}` +
        `${diff ? `; from version ${diff.from_version} it is ${diff.classification}` : ''}.`,
    };
  },
});

export const templateTools: ToolDef[] = [listTemplatesTool, getTemplateTool, createTemplateTool, updateTemplateTool];
