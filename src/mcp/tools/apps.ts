import { z } from 'zod';
import { defineTool, type ToolDef } from '../define-tool.js';
import { createApp, listApps, type App } from '../../core/apps.js';
import { AUTH_KINDS } from '../../db/schema/index.js';

const fieldShape = z.object({
  name: z.string().min(1).max(40).describe('Field name in credentials, e.g. api_key.'),
  label: z.string().min(1).max(200).describe('What the person is asked for.'),
  secret: z.boolean().describe('Whether the value is a secret (stored encrypted, shown masked).'),
  optional: z.boolean().optional().describe('Whether the field may be left out.'),
});
const authShape = z.object({
  kind: z.enum(AUTH_KINDS).describe('bearer, api_key or basic.'),
  header: z.string().min(1).max(100).optional().describe('api_key: the header the key is sent in, e.g. X-Api-Key.'),
  fields: z.array(fieldShape).min(1).max(10).describe('The credential fields this auth kind needs.'),
});

export const appOut = z.object({
  slug: z.string(),
  name: z.string(),
  description: z.string(),
  builtin: z.boolean(),
  base_url: z.string().nullable(),
  default_rate_per_minute: z.number().int(),
  auth: z.array(authShape),
});

export const appView = (a: App): z.infer<typeof appOut> => ({
  slug: a.slug,
  name: a.name,
  description: a.description,
  builtin: a.builtin,
  base_url: a.baseUrl,
  default_rate_per_minute: a.defaultPerMinute,
  auth: a.auth,
});

const listAppsTool = defineTool({
  name: 'list_apps',
  toolset: 'connections',
  title: 'List apps',
  description:
    'Lists the apps connections can be made to (built-in and added by admins), with their auth kinds, the credential fields ' +
    'each needs, base URL and default rate limit. query filters by slug, name or description.',
  input: { query: z.string().max(100).optional().describe('Part of an app slug, name or description (case-insensitive).') },
  output: { apps: z.array(appOut) },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: null, accountArg: null, tenant: true },
  async handler(ctx, args) {
    const found = await listApps(ctx.core, args.query);
    return { data: { apps: found.map(appView) }, text: `${found.length} app${found.length === 1 ? '' : 's'}.` };
  },
});

const createAppTool = defineTool({
  name: 'create_app',
  toolset: 'connections',
  title: 'Create app',
  description:
    'Adds a custom app to the catalog (admin permission): how it authenticates (bearer, api_key in a named header, basic), ' +
    'the credential fields, its base URL and default rate limit. Every account can then connect to it.',
  input: {
    slug: z.string().min(1).max(63).describe('Identifier, e.g. "acme-crm"; not one of the built-in apps.'),
    name: z.string().min(1).max(200).describe('Display name.'),
    description: z.string().max(500).optional().describe('One line about the app.'),
    auth: z.array(authShape).min(1).max(3).describe('The ways to authenticate, one per kind.'),
    base_url: z.string().url().max(500).optional().describe('Base URL of its API.'),
    default_rate_per_minute: z.number().int().min(1).max(1_000_000).describe('Default calls per minute per connection.'),
  },
  output: { app: appOut },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false },
  access: { role: null, accountArg: null, permission: 'admin', tenant: true },
  async handler(ctx, args) {
    const app = await createApp(ctx.core, {
      slug: args.slug,
      name: args.name,
      description: args.description,
      auth: args.auth,
      baseUrl: args.base_url,
      defaultPerMinute: args.default_rate_per_minute,
      createdBy: ctx.caller.user.id,
    });
    return { data: { app: appView(app) }, text: `Added the app ${app.slug} to the catalog.` };
  },
});

export const appTools: ToolDef[] = [listAppsTool, createAppTool];
