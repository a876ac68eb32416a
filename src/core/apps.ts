import { and, asc, eq } from 'drizzle-orm';
import { apps, type AppAuth, type AppField, type AuthKind } from '../db/schema/index.js';
import type { Core } from './core.js';
import { UserError, sqlState, UNIQUE_VIOLATION } from './errors.js';
import { SLUG } from './ids.js';

/** An app connections can be made to: built in (code) or added by an admin (table apps). */
export interface App {
  slug: string;
  name: string;
  description: string;
  auth: AppAuth[];
  baseUrl: string | null;
  defaultPerMinute: number;
  builtin: boolean;
}

const secret = (name: string, label: string): AppField => ({ name, label, secret: true });
const plain = (name: string, label: string, optional = false): AppField => ({ name, label, secret: false, ...(optional ? { optional } : {}) });
const baseUrlField = plain('base_url', 'Base URL of the API (https://…)');

/**
 * The built-in catalog. Rate limits are the providers' documented defaults for an ordinary plan,
 * rounded down; admins override them per connection.
 */
export const BUILTIN_APPS: readonly App[] = [
  {
    slug: 'http',
    name: 'HTTP API',
    description: 'Any HTTP API: a bearer token, an API key in a header you name, or basic auth.',
    auth: [
      { kind: 'bearer', fields: [baseUrlField, secret('token', 'Bearer token')] },
      { kind: 'api_key', fields: [baseUrlField, plain('header_name', 'Header the key goes in, e.g. X-Api-Key'), secret('api_key', 'API key')] },
      { kind: 'basic', fields: [baseUrlField, plain('username', 'Username'), secret('password', 'Password')] },
    ],
    baseUrl: null,
    defaultPerMinute: 60,
    builtin: true,
  },
  {
    slug: 'stripe',
    name: 'Stripe',
    description: 'Payments, customers and subscriptions.',
    auth: [{ kind: 'bearer', fields: [secret('secret_key', 'Secret key (sk_live_… or sk_test_…)')] }],
    baseUrl: 'https://api.stripe.com',
    defaultPerMinute: 1500,
    builtin: true,
  },
  {
    slug: 'hubspot',
    name: 'HubSpot',
    description: 'CRM contacts, companies and deals.',
    auth: [{ kind: 'bearer', fields: [secret('access_token', 'Private app access token')] }],
    baseUrl: 'https://api.hubapi.com',
    defaultPerMinute: 600,
    builtin: true,
  },
  {
    slug: 'slack',
    name: 'Slack',
    description: 'Messages and channels.',
    auth: [{ kind: 'bearer', fields: [secret('bot_token', 'Bot token (xoxb-…)')] }],
    baseUrl: 'https://slack.com/api',
    defaultPerMinute: 50,
    builtin: true,
  },
  {
    slug: 'mindbody',
    name: 'Mindbody',
    description: 'Fitness studio clients, classes and bookings.',
    auth: [{ kind: 'api_key', header: 'Api-Key', fields: [secret('api_key', 'API key'), plain('site_id', 'Site id')] }],
    baseUrl: 'https://api.mindbodyonline.com/public/v6',
    defaultPerMinute: 120,
    builtin: true,
  },
  {
    slug: 'mailchimp',
    name: 'Mailchimp',
    description: 'Audiences and campaigns.',
    auth: [{ kind: 'basic', fields: [plain('username', 'Any username'), secret('password', 'API key')] }],
    baseUrl: 'https://us1.api.mailchimp.com/3.0',
    defaultPerMinute: 600,
    builtin: true,
  },
  {
    slug: 'webhook',
    name: 'Webhook signing secret',
    description:
      'The secret a provider signs its webhooks with (Stripe whsec_…, GitHub, Shopify, Slack, or your own): an automation names it in trigger.signature and every delivery is checked against it. Never sent anywhere.',
    auth: [{ kind: 'signing_secret', fields: [secret('signing_secret', 'Signing secret')] }],
    baseUrl: null,
    defaultPerMinute: 60,
    builtin: true,
  },
];

const BUILTIN = new Map(BUILTIN_APPS.map((a) => [a.slug, a]));

const fromRow = (r: typeof apps.$inferSelect): App => ({
  slug: r.slug,
  name: r.name,
  description: r.description,
  auth: r.auth,
  baseUrl: r.baseUrl,
  defaultPerMinute: r.defaultPerMinute,
  builtin: false,
});

/** An app by slug, or a clear error. */
export async function getApp(core: Core, slug: string): Promise<App> {
  const key = slug.trim().toLowerCase();
  const builtin = BUILTIN.get(key);
  if (builtin) return builtin;
  const [row] = await core.db.select().from(apps).where(and(eq(apps.tenantId, core.tenantId), eq(apps.slug, key)));
  if (!row) throw new UserError(`Unknown app '${slug}': list_apps shows the apps you can connect.`, 'not_found');
  return fromRow(row);
}

/** Built-in and custom apps whose slug, name or description contains `query` (case-insensitive). */
export async function listApps(core: Core, query?: string): Promise<App[]> {
  const custom = (await core.db.select().from(apps).where(eq(apps.tenantId, core.tenantId)).orderBy(asc(apps.slug))).map(fromRow);
  const q = query?.trim().toLowerCase();
  const all = [...BUILTIN_APPS, ...custom];
  const hits = q ? all.filter((a) => [a.slug, a.name, a.description].some((s) => s.toLowerCase().includes(q))) : all;
  return hits.sort((a, b) => a.slug.localeCompare(b.slug));
}

export interface CreateAppInput {
  slug: string;
  name: string;
  description?: string | undefined;
  auth: AppAuth[];
  baseUrl?: string | undefined;
  defaultPerMinute: number;
  createdBy: string;
}

const FIELD_NAME = /^[a-z][a-z0-9_]{0,39}$/;
/** names a field may not take: auth_kind chooses the auth kind; the rest are Object.prototype's */
const RESERVED_FIELDS = new Set(['auth_kind', ...Object.getOwnPropertyNames(Object.prototype)]);

export async function createApp(core: Core, input: CreateAppInput): Promise<App> {
  const slug = input.slug.trim().toLowerCase();
  if (!SLUG.test(slug)) throw new UserError(`'${input.slug}' is not a usable app slug: use lowercase letters, digits and dashes.`);
  if (BUILTIN.has(slug)) throw new UserError(`'${slug}' is a built-in app: pick another slug.`, 'conflict');
  const kinds = new Set<AuthKind>();
  for (const a of input.auth) {
    if (kinds.has(a.kind)) throw new UserError(`The auth kind '${a.kind}' is listed twice: list each kind once.`);
    kinds.add(a.kind);
    const names = new Set<string>();
    for (const f of a.fields) {
      if (!FIELD_NAME.test(f.name)) throw new UserError(`'${f.name}' is not a usable field name: use lowercase letters, digits and underscores.`);
      if (RESERVED_FIELDS.has(f.name)) throw new UserError(`'${f.name}' is reserved: pick another field name.`);
      if (names.has(f.name)) throw new UserError(`The field '${f.name}' is listed twice in auth kind '${a.kind}'.`);
      names.add(f.name);
    }
    if (!a.fields.some((f) => f.secret)) throw new UserError(`Auth kind '${a.kind}' needs at least one secret field (the credential itself).`);
    if (a.kind === 'api_key' && !a.header && !names.has('header_name')) {
      throw new UserError("An api_key auth kind needs a header (e.g. 'X-Api-Key') or a field named header_name.");
    }
  }
  try {
    const [row] = await core.db
      .insert(apps)
      .values({
        tenantId: core.tenantId,
        slug,
        name: input.name.trim(),
        description: input.description?.trim() ?? '',
        auth: input.auth,
        baseUrl: input.baseUrl ?? null,
        defaultPerMinute: input.defaultPerMinute,
        createdBy: input.createdBy,
      })
      .returning();
    return fromRow(row!);
  } catch (err) {
    if (sqlState(err) === UNIQUE_VIOLATION) throw new UserError(`An app with the slug '${slug}' already exists.`, 'conflict');
    throw err;
  }
}

export const MAX_CREDENTIAL_VALUE = 8192;

/**
 * Check credentials against an app: the auth kind (chosen with `auth_kind` when the app has
 * several), every required field present and non-empty, no unknown fields. Errors name fields,
 * never values. Returns the auth kind and the fields as given.
 */
export function validateCredentials(app: App, input: Record<string, unknown>): { authKind: AuthKind; values: Record<string, string> } {
  const { auth_kind: chosen, ...rest } = input;
  let auth: AppAuth | undefined;
  if (chosen === undefined) {
    if (app.auth.length > 1) {
      throw new UserError(`${app.name} connects with ${app.auth.map((a) => a.kind).join(', ')}: say which with credentials.auth_kind.`);
    }
    auth = app.auth[0];
  } else {
    auth = app.auth.find((a) => a.kind === chosen);
    if (!auth) throw new UserError(`${app.name} does not connect with '${String(chosen).slice(0, 40)}': use ${app.auth.map((a) => a.kind).join(', ')}.`);
  }
  const values: Record<string, string> = {};
  for (const f of auth!.fields) {
    const v = Object.hasOwn(rest, f.name) ? rest[f.name] : undefined;
    if (v === undefined || v === null || (typeof v === 'string' && v.trim() === '')) {
      if (f.optional) continue;
      throw new UserError(`The credentials for ${app.name} miss the field '${f.name}' (${f.label}).`);
    }
    if (typeof v !== 'string') throw new UserError(`The credential field '${f.name}' must be text.`);
    if (v.length > MAX_CREDENTIAL_VALUE) throw new UserError(`The credential field '${f.name}' is longer than ${MAX_CREDENTIAL_VALUE} characters.`);
    values[f.name] = f.secret ? v : v.trim();
  }
  const unknown = Object.keys(rest).filter((k) => !auth!.fields.some((f) => f.name === k));
  if (unknown.length) {
    throw new UserError(
      `Unknown credential field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `'${k.slice(0, 40)}'`).join(', ')} for ${app.name} (${auth!.kind}): ` +
        `it takes ${auth!.fields.map((f) => f.name).join(', ')}.`,
    );
  }
  if ('base_url' in values && !/^https?:\/\/[^\s]+$/i.test(values.base_url!)) {
    throw new UserError("The credential field 'base_url' must be an http:// or https:// URL.");
  }
  return { authKind: auth!.kind, values };
}

/**
 * Well-known prefixes that name a credential's kind, not its secret part (Stripe, Slack,
 * HubSpot, GitHub…): kept when masking so that a person recognises which key it is.
 */
const KNOWN_PREFIX = /^(?:(?:sk|pk|rk)_(?:live|test)_|whsec_|xox[abpers]-|pat-(?:na|eu)\d-|gh[pousr]_|glpat-|AKIA)/;

/**
 * A secret as it may be shown: a well-known prefix (sk_live_…) and, for values of 20 characters
 * or more, the last 4; anything shorter is hidden whole. Random keys that happen to contain a '_'
 * keep nothing of their random part but those 4 characters.
 */
export function maskValue(value: string): string {
  if (value.length < 20) return '••••••••';
  const prefix = KNOWN_PREFIX.exec(value)?.[0] ?? '';
  return `${prefix}…${value.slice(-4)}`;
}

export function maskCredentials(app: App, authKind: AuthKind, values: Record<string, string>): Record<string, string> {
  const auth = app.auth.find((a) => a.kind === authKind);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(values)) {
    const field = auth?.fields.find((f) => f.name === k);
    // a password keeps nothing, not even its last characters
    out[k] = field && !field.secret ? v : /password/i.test(k) ? '••••••••' : maskValue(v);
  }
  return out;
}
