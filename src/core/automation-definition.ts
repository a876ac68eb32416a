import type { Core } from './core.js';
import type { Account } from './accounts.js';
import { getApp, type App } from './apps.js';
import { resolveConnection, type VisibleConnection } from './connections.js';
import { UserError } from './errors.js';
import { compile, ExpressionError, rootReferences, stepReferences, templateExpressions } from '../engine/expressions.js';
import { CREDENTIAL_NAME, scrubUrl } from './crypto.js';
import type { SignatureSpec } from './signatures.js';

/**
 * What an automation does, as stored in an immutable revision, and its validation at save: every
 * problem found is one sentence, and all of them are returned together, so a model fixes a
 * definition in one round.
 */

export const HTTP_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;
export const STORE_ACTIONS = ['get', 'set', 'increment', 'delete'] as const;
export const MAX_STEPS = 50;
export const MAX_RETRIES = 10;
export const DEFAULT_RETRIES = 3;
export const MAX_DEFINITION_CHARS = 256 * 1024;

interface StepBase {
  /** letters, digits and _: expressions read the step's output as steps.<id>.output */
  id: string;
}
export interface HttpStep extends StepBase {
  kind: 'http';
  method: (typeof HTTP_METHODS)[number];
  url: string;
  headers?: Record<string, string>;
  query?: Record<string, string>;
  body?: unknown;
  /** what the author typed (id, app/name, app); resolved again where a routed event runs */
  connection?: string;
  /** the connection it resolved to in the automation's own account at save, when it did */
  connection_id?: string | null;
  timeout_ms?: number;
}
export interface TransformStep extends StepBase {
  kind: 'transform';
  value: unknown;
}
export interface FilterStep extends StepBase {
  kind: 'filter';
  condition: string;
}
export interface StoreStep extends StepBase {
  kind: 'store';
  action: (typeof STORE_ACTIONS)[number];
  key: string;
  value?: unknown;
  by?: number;
  ttl_seconds?: number;
  scope?: 'account' | 'parent';
}
export type Step = HttpStep | TransformStep | FilterStep | StoreStep;

export type VarValue = string | number | boolean;

export interface Definition {
  trigger: { type: 'webhook'; dedupe?: { key: string } | null; signature?: SignatureSpec | null };
  routing: { key: string } | null;
  steps: Step[];
  retries: { max: number };
  /** a deployed template copy's variable values: expressions read them as vars.<name> */
  vars?: Record<string, VarValue> | null;
}

export interface ValidateOptions {
  /** how a connection reference is found (default: resolveConnection in the account) */
  resolve?: (key: string) => Promise<VisibleConnection>;
  /** how an app is found (default: getApp) */
  app?: (slug: string) => Promise<App>;
  /** the variables expressions may read as vars.<name> (default: those of def.vars) */
  variables?: ReadonlySet<string>;
  /** what was not saved, for the message (default: the automation) */
  what?: string;
}

/** Headers the engine sets or that change where and how a request goes: never from a step. */
export const FORBIDDEN_HEADER = /^(host|content-length|transfer-encoding|connection|keep-alive|upgrade|te|trailer|expect|idempotency-key|proxy-.*|:.*)$/i;

/** What a credential value may say besides its expressions: the scheme, e.g. "Bearer {{ … }}" forwarding the caller's token. */
const SCHEME_ONLY = /^(bearer|basic|token)?$/i;
/** An expression reading a template variable (`{{ vars.x }}`). */
const READS_VARS = /\{\{[^}]*\bvars\b/;

/** A value written into the definition (its text outside any {{ }}), if any. */
const literalPart = (value: string): string => value.replace(/\{\{[\s\S]*?\}\}/g, '').trim();

interface Where {
  step?: Step;
  field: string;
}
const at = ({ step, field }: Where): string => (step ? `Step '${step.id}' (${field})` : `The ${field}`);

/**
 * Check a definition for `account` and resolve its connections. Returns the definition to store
 * (connection ids filled in) and the ids of the connections it uses; throws one UserError listing
 * every problem.
 */
export async function validateDefinition(
  core: Core,
  account: Account,
  def: Definition,
  opts: ValidateOptions = {},
): Promise<{ definition: Definition; connectionIds: string[] }> {
  const problems: string[] = [];
  const resolve = opts.resolve ?? ((key: string) => resolveConnection(core, account, key));
  const appOf = opts.app ?? ((slug: string) => getApp(core, slug));
  const variables = opts.variables ?? new Set(Object.keys(def.vars ?? {}));
  const order = new Map<string, number>();
  def.steps.forEach((s, i) => {
    if (order.has(s.id)) problems.push(`Two steps have the id '${s.id}': step ids must be unique.`);
    else order.set(s.id, i);
  });
  if (def.steps.length === 0) problems.push('An automation needs at least one step.');

  const expression = (text: string, where: Where, index: number): void => {
    try {
      const compiled = compile(text);
      for (const ref of rootReferences(compiled, 'vars')) {
        if (ref !== '*' && !variables.has(ref)) problems.push(`${at(where)} reads vars.${ref}, but no variable '${ref}' is declared.`);
      }
      const refs = stepReferences(compiled);
      for (const ref of refs) {
        if (ref === '*') continue;
        const pos = order.get(ref);
        if (pos === undefined) problems.push(`${at(where)} reads steps.${ref}, but there is no step '${ref}'.`);
        else if (pos >= index) problems.push(`${at(where)} reads steps.${ref}, which ${pos === index ? 'is this step itself' : 'runs after it'}: a step can read only earlier steps.`);
      }
    } catch (err) {
      if (!(err instanceof ExpressionError)) throw err;
      problems.push(`${at(where)}: the expression "${clip(text)}" does not parse: ${err.reason}.`);
    }
  };
  const template = (value: unknown, where: Where, index: number): void => {
    for (const e of templateExpressions(value)) expression(e.text, { step: where.step, field: e.path ? `${where.field}.${e.path}` : where.field }, index);
  };

  // trigger-level expressions see the event only: no step has run yet
  if (def.routing) {
    if (account.parentAccountId) problems.push(`Account '${account.slug}' is a linked child: only a parent account routes events to its children.`);
    expression(def.routing.key, { field: 'routing key' }, -1);
  }
  if (def.trigger.dedupe) expression(def.trigger.dedupe.key, { field: 'de-duplication key' }, -1);

  const connectionIds = new Set<string>();
  let trigger = def.trigger;
  const sig = def.trigger.signature;
  if (sig) {
    if (sig.preset === 'generic' && !sig.header) problems.push('The signature: the generic preset needs header (the header carrying the HMAC-SHA256 of the body).');
    if (sig.header && !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(sig.header)) problems.push(`The signature: '${clip(sig.header)}' is not a valid header name.`);
    if (sig.preset !== 'generic' && (sig.header || sig.encoding || sig.prefix !== undefined)) problems.push(`The signature: the ${sig.preset} preset fixes its header and encoding; header, encoding and prefix are for the generic preset.`);
    try {
      const { row } = await resolve(sig.connection);
      if (row.authKind !== 'signing_secret') problems.push(`The signature: ${row.app}/${row.name} is not a signing secret; add a webhook connection holding the provider's signing secret and name it here.`);
      else {
        connectionIds.add(row.id);
        trigger = { ...trigger, signature: { ...sig, connection_id: row.id } };
      }
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      problems.push(`The signature: ${err.message}`);
    }
  }
  const steps: Step[] = [];
  for (const [i, step] of def.steps.entries()) {
    switch (step.kind) {
      case 'http': {
        template(step.url, { step, field: 'url' }, i);
        const urlProblem = checkUrl(step.url);
        if (urlProblem) problems.push(`${at({ step, field: 'url' })}: ${urlProblem}`);
        const credentialsHere = (field: string) =>
          problems.push(`${at({ step, field })}: credentials do not go in a step; name a connection (connection) and its credentials are added to the request.`);
        for (const name of Object.keys(step.headers ?? {})) {
          if (FORBIDDEN_HEADER.test(name)) problems.push(`${at({ step, field: `headers.${name}` })}: the engine sets ${name.toLowerCase()}, not a step.`);
          else if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) problems.push(`${at({ step, field: 'headers' })}: '${clip(name)}' is not a valid header name.`);
        }
        for (const [name, value] of Object.entries(step.headers ?? {})) {
          // a template variable is a stored value like a literal: a credential in it would sit in every revision
          if (CREDENTIAL_NAME.test(name) && (!SCHEME_ONLY.test(literalPart(value)) || READS_VARS.test(value))) credentialsHere(`headers.${name}`);
        }
        for (const [name, value] of Object.entries(step.query ?? {})) {
          if (CREDENTIAL_NAME.test(name) && (literalPart(value) !== '' || READS_VARS.test(value))) credentialsHere(`query.${name}`);
        }
        for (const name of literalQueryNames(step.url)) if (CREDENTIAL_NAME.test(name)) credentialsHere('url');
        template(step.headers ?? {}, { step, field: 'headers' }, i);
        template(step.query ?? {}, { step, field: 'query' }, i);
        template(step.body, { step, field: 'body' }, i);
        let connectionId: string | null = null;
        if (step.connection !== undefined) {
          try {
            const { row } = await resolve(step.connection);
            if (row.authKind === 'signing_secret') problems.push(`${at({ step, field: 'connection' })}: ${row.app}/${row.name} is a webhook signing secret: it verifies deliveries (trigger.signature) and is never sent.`);
            connectionId = row.id;
            connectionIds.add(connectionId);
            const origin = literalOrigin(step.url);
            const base = (await appOf(row.app)).baseUrl ?? row.masked.base_url;
            if (origin && base && safeOrigin(base) !== origin) {
              problems.push(`${at({ step, field: 'url' })}: the credentials of ${row.app}/${row.name} are sent only to ${safeOrigin(base)}, not ${origin}.`);
            }
          } catch (err) {
            if (!(err instanceof UserError)) throw err;
            // a routed automation runs in each child, with the child's own connections: the app must exist
            const app = step.connection.split('/')[0]!.trim();
            const appKnown = def.routing ? await appOf(app).then(() => true, () => false) : false;
            if (!appKnown) problems.push(`${at({ step, field: 'connection' })}: ${err.message}`);
          }
        }
        steps.push({ ...step, connection_id: connectionId });
        break;
      }
      case 'transform':
        template(step.value, { step, field: 'value' }, i);
        steps.push(step);
        break;
      case 'filter':
        expression(step.condition, { step, field: 'condition' }, i);
        steps.push(step);
        break;
      case 'store':
        template(step.key, { step, field: 'key' }, i);
        if (step.action === 'set' && step.value === undefined) problems.push(`${at({ step, field: 'value' })}: a store set needs a value.`);
        if (step.action !== 'set' && step.value !== undefined) problems.push(`${at({ step, field: 'value' })}: only a store set takes a value (increment takes by).`);
        template(step.value, { step, field: 'value' }, i);
        if (step.scope === 'parent' && !account.parentAccountId && !def.routing) {
          problems.push(`${at({ step, field: 'scope' })}: scope "parent" reads the parent account's data, and '${account.slug}' has no parent (nor does it route events to children).`);
        }
        steps.push(step);
        break;
    }
  }
  const definition: Definition = { ...def, trigger, steps };
  if (JSON.stringify(definition).length > MAX_DEFINITION_CHARS) problems.push(`The definition is larger than ${MAX_DEFINITION_CHARS / 1024} KiB.`);
  if (problems.length) {
    const shown = problems.slice(0, 20);
    const more = problems.length > shown.length ? ` (and ${problems.length - shown.length} more)` : '';
    throw new UserError(`${opts.what ?? 'The automation'} was not saved: ${shown.length === 1 ? shown[0] : shown.map((p, n) => `(${n + 1}) ${p}`).join(' ')}${more}`);
  }
  return { definition, connectionIds: [...connectionIds] };
}

const clip = (s: string): string => (s.length > 120 ? `${s.slice(0, 120)}…` : s);

/**
 * A step URL: a literal one must be an absolute http(s) URL; a computed one must at least start
 * with its scheme or with an expression (checked again when it runs).
 */
function checkUrl(url: string): string | null {
  const literal = url.split('{{')[0]!;
  if (/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(literal)) return 'the URL must not carry a user name or password: name a connection instead.';
  if (url.includes('{{')) {
    if (literal === '' || /^https?:\/\//i.test(literal)) return null;
    return `the URL must start with http:// or https:// (or be computed whole by an expression), not '${clip(scrubUrl(literal))}'.`;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `'${clip(scrubUrl(url))}' is not a URL: give an absolute http:// or https:// URL.`;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return `the URL must be http:// or https://, not ${parsed.protocol}//.`;
  if (parsed.username || parsed.password) return 'the URL must not carry a user name or password: name a connection instead.';
  return null;
}

const safeOrigin = (url: string): string | null => {
  try {
    return new URL(url).origin;
  } catch {
    return null;
  }
};

/** The origin of a URL whose scheme and host are written out (not computed), else null. */
function literalOrigin(url: string): string | null {
  const literal = url.split('{{')[0]!;
  const m = /^https?:\/\/[^/?#]+/i.exec(literal);
  if (!m) return null;
  // the host is complete only when something other than an expression follows it
  const complete = literal.length > m[0].length || !url.includes('{{');
  return complete ? safeOrigin(m[0]) : null;
}

/** The names of the query parameters written out in a URL (before any expression). */
function literalQueryNames(url: string): string[] {
  const literal = url.split('{{')[0]!;
  const q = literal.indexOf('?');
  if (q < 0) return [];
  return literal
    .slice(q + 1)
    .split('#')[0]!
    .split('&')
    .map((kv) => decodeURIComponentSafe(kv.split('=')[0]!))
    .filter(Boolean);
}

const decodeURIComponentSafe = (s: string): string => {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
};
