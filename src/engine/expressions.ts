import jsonata from 'jsonata';

/**
 * Expressions in automation definitions: JSONata (https://jsonata.org), a declarative JSON query
 * language with no access to JavaScript — nothing here uses eval, Function or vm.
 *
 * Where they appear:
 *   - a *template*: any JSON value of a step (URL, headers, query, body, transform value, store
 *     key and value). Strings may embed `{{ expression }}`; a string that is exactly one
 *     `{{ expression }}` keeps the expression's JSON type, otherwise the results are written into
 *     the text (objects as JSON, nothing for an empty result). `}}` ends an expression: write
 *     `} }` for nested object constructors.
 *   - a bare *expression*: a filter's condition, the routing key, the de-duplication key.
 *
 * Expressions read one document: `trigger` (body, headers, query, method), `steps.<id>.output`
 * and `account` (id, slug, routing_key). Every evaluation is bounded: time (checked at every
 * evaluation step), recursion depth, sequence length, the width `$pad` may build, and the size of
 * the result.
 */

export interface ExpressionLimits {
  /** evaluation time of one expression, ms */
  timeoutMs: number;
  /** characters of one result as JSON */
  maxResultChars: number;
}

export const DEFAULT_LIMITS: ExpressionLimits = { timeoutMs: 250, maxResultChars: 1024 * 1024 };
const STACK = 200;
const SEQUENCE = 100_000;

/** An expression that failed to parse or to evaluate; `expression` is the text as written. */
export class ExpressionError extends Error {
  constructor(
    readonly expression: string,
    readonly reason: string,
  ) {
    super(reason);
    this.name = 'ExpressionError';
  }
}

interface JsonataError {
  code?: string;
  position?: number;
  message?: string;
}

const TEMPLATE_PART = /\{\{([\s\S]*?)\}\}/g;
const WHOLE = /^\{\{([\s\S]*?)\}\}$/;

/** The expressions embedded in a template string, in order. */
export function embedded(text: string): string[] {
  return [...text.matchAll(TEMPLATE_PART)].map((m) => m[1]!.trim());
}

function describe(err: unknown): string {
  const e = err as JsonataError;
  const msg = e?.message ?? String(err);
  return e?.position !== undefined && e.code?.startsWith('S') ? `${msg} (at character ${e.position})` : msg;
}

/** Parse an expression; throws ExpressionError with JSONata's reason. */
export function compile(text: string): jsonata.Expression {
  if (!text.trim()) throw new ExpressionError(text, 'the expression is empty');
  return compiled(text.trim(), DEFAULT_LIMITS);
}

/**
 * The step ids an expression reads through `steps.<id>`; `steps` on its own (every step) gives
 * '*'. Read from the parsed tree, so text inside string literals does not count.
 */
export function stepReferences(expr: jsonata.Expression): Set<string> {
  const refs = new Set<string>();
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (!node || typeof node !== 'object') return;
    const n = node as { type?: string; value?: unknown; steps?: { type?: string; value?: unknown; stages?: unknown }[] };
    if (n.type === 'path' && Array.isArray(n.steps)) {
      const [first, second] = n.steps;
      if (first?.type === 'name' && first.value === 'steps') {
        if (second?.type === 'name' && typeof second.value === 'string' && !first.stages) refs.add(second.value);
        else refs.add('*');
        walk(first.stages);
        return walk(n.steps.slice(1));
      }
    }
    for (const v of Object.values(n)) if (v && typeof v === 'object') walk(v);
  };
  walk(expr.ast());
  return refs;
}

/** Every expression in a template value (strings with `{{ }}`, at any depth), with its JSON path. */
export function templateExpressions(value: unknown, path = ''): { path: string; text: string }[] {
  if (typeof value === 'string') return embedded(value).map((text) => ({ path, text }));
  if (Array.isArray(value)) return value.flatMap((v, i) => templateExpressions(v, `${path}[${i}]`));
  if (value && typeof value === 'object') {
    return Object.entries(value).flatMap(([k, v]) => templateExpressions(v, path ? `${path}.${k}` : k));
  }
  return [];
}

/** A bounded `$pad`: the built-in builds any width it is asked for. */
function boundedPad(maxChars: number) {
  return (str: unknown, width: unknown, char?: unknown): string | undefined => {
    if (str === undefined) return undefined;
    const s = String(str);
    const w = Math.trunc(Number(width));
    if (!Number.isFinite(w)) return s;
    if (Math.abs(w) > maxChars) throw new ExpressionError('$pad', `$pad would build ${Math.abs(w)} characters, more than the limit of ${maxChars}`);
    const c = char === undefined || char === '' ? ' ' : String(char);
    const fill = (n: number) => c.repeat(Math.ceil(n / c.length)).slice(0, n);
    const missing = Math.abs(w) - [...s].length;
    if (missing <= 0) return s;
    return w > 0 ? s + fill(missing) : fill(missing) + s;
  };
}

const cache = new Map<string, jsonata.Expression>();
const CACHE_MAX = 5000;

function compiled(text: string, limits: ExpressionLimits): jsonata.Expression {
  const key = `${limits.timeoutMs}|${limits.maxResultChars}|${text}`;
  let expr = cache.get(key);
  if (!expr) {
    try {
      expr = jsonata(text, { timeout: limits.timeoutMs, stack: STACK, sequence: SEQUENCE } as jsonata.JsonataOptions);
    } catch (err) {
      throw new ExpressionError(text, describe(err));
    }
    expr.registerFunction('pad', boundedPad(limits.maxResultChars), '<s-ns?:s>');
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
    cache.set(key, expr);
  }
  return expr;
}

/** JSONata returns its own sequence arrays and functions: keep plain JSON, drop what JSON cannot hold. */
function toJson(value: unknown, text: string, limits: ExpressionLimits): unknown {
  if (value === undefined) return undefined;
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (err) {
    throw new ExpressionError(text, `the result is not JSON (${(err as Error).message})`);
  }
  if (json === undefined) return undefined; // a function
  if (json.length > limits.maxResultChars) {
    throw new ExpressionError(text, `the result is ${json.length} characters, more than the limit of ${limits.maxResultChars}`);
  }
  return JSON.parse(json);
}

/** Evaluate one bare expression against the document; undefined when it selects nothing. */
export async function evaluate(text: string, doc: unknown, limits: ExpressionLimits = DEFAULT_LIMITS): Promise<unknown> {
  const expr = compiled(text.trim(), limits);
  let value: unknown;
  try {
    value = await expr.evaluate(doc);
  } catch (err) {
    if (err instanceof ExpressionError) throw new ExpressionError(text.trim(), err.reason);
    throw new ExpressionError(text.trim(), describe(err));
  }
  return toJson(value, text.trim(), limits);
}

/** Render a template value: every string with `{{ }}` at any depth, keeping JSON types for whole expressions. */
export async function render(value: unknown, doc: unknown, limits: ExpressionLimits = DEFAULT_LIMITS): Promise<unknown> {
  if (typeof value === 'string') {
    const whole = WHOLE.exec(value);
    if (whole && !whole[1]!.includes('}}')) {
      const v = await evaluate(whole[1]!, doc, limits);
      return v === undefined ? null : v;
    }
    if (!value.includes('{{')) return value;
    let out = '';
    let last = 0;
    for (const m of value.matchAll(TEMPLATE_PART)) {
      out += value.slice(last, m.index);
      const v = await evaluate(m[1]!, doc, limits);
      out += v === undefined || v === null ? '' : typeof v === 'string' ? v : JSON.stringify(v);
      last = m.index! + m[0].length;
      if (out.length > limits.maxResultChars) throw new ExpressionError(m[1]!.trim(), `the text built is more than ${limits.maxResultChars} characters`);
    }
    return out + value.slice(last);
  }
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    for (const v of value) out.push(await render(v, doc, limits));
    return out;
  }
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = await render(v, doc, limits);
    return out;
  }
  return value;
}
