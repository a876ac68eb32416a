import jsonata from 'jsonata';
import { LinearRegExp, unsupportedRegex } from './safe-regex.js';

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

/** Longest expression text accepted (inside {{ }} or bare). */
export const MAX_EXPRESSION_CHARS = 4000;

/**
 * The parts of a template string: literal text and `{{ expression }}`s, in one linear pass (a
 * backtracking regular expression is quadratic on text full of braces).
 */
function* parts(text: string): Generator<{ literal: string } | { expression: string }> {
  let pos = 0;
  while (pos < text.length) {
    const open = text.indexOf('{{', pos);
    const close = open < 0 ? -1 : text.indexOf('}}', open + 2);
    if (open < 0 || close < 0) break;
    if (open > pos) yield { literal: text.slice(pos, open) };
    yield { expression: text.slice(open + 2, close) };
    pos = close + 2;
  }
  if (pos < text.length) yield { literal: text.slice(pos) };
}

/** The expression of a string that is exactly one `{{ expression }}`, else null. */
function whole(text: string): string | null {
  if (!text.startsWith('{{') || !text.endsWith('}}') || text.length < 4) return null;
  return text.indexOf('}}', 2) === text.length - 2 ? text.slice(2, -2) : null;
}

/** The expressions embedded in a template string, in order. */
export function embedded(text: string): string[] {
  const out: string[] = [];
  for (const p of parts(text)) if ('expression' in p) out.push(p.expression.trim());
  return out;
}

function describe(err: unknown): string {
  const e = err as JsonataError;
  const msg = e?.message ?? String(err);
  return e?.position !== undefined && e.code?.startsWith('S') ? `${msg} (at character ${e.position})` : msg;
}

/** A regular expression literal of the expression that RE2 cannot run (src/engine/safe-regex.ts), said in a sentence fragment. */
function unsafeRegexIn(expr: jsonata.Expression): string | null {
  const todo: unknown[] = [expr.ast()];
  while (todo.length) {
    const node = todo.pop();
    if (!node || typeof node !== 'object') continue;
    const n = node as { type?: string; value?: unknown };
    if (n.type === 'regex' && n.value instanceof RegExp) {
      const why = unsupportedRegex(n.value.source, n.value.flags);
      if (why) return `the regular expression /${n.value.source.slice(0, 60)}/ cannot be used: ${why}`;
    }
    for (const v of Object.values(node)) if (v && typeof v === 'object') todo.push(v);
  }
  return null;
}

/** Parse an expression; throws ExpressionError with JSONata's reason. */
export function compile(text: string): jsonata.Expression {
  if (!text.trim()) throw new ExpressionError(text, 'the expression is empty');
  if (text.length > MAX_EXPRESSION_CHARS) throw new ExpressionError(text.slice(0, 60), `the expression is longer than ${MAX_EXPRESSION_CHARS} characters`);
  return compiled(text.trim(), DEFAULT_LIMITS);
}

/**
 * The step ids an expression reads through `steps.<id>`; `steps` on its own (every step) gives
 * '*'. Read from the parsed tree, so text inside string literals does not count.
 */
export const stepReferences = (expr: jsonata.Expression): Set<string> => rootReferences(expr, 'steps');

/**
 * The names an expression reads under the document root `root` (`steps.<id>`, `vars.<name>`);
 * `root` on its own gives '*'. Read from the parsed tree, so text inside string literals does not
 * count.
 */
export function rootReferences(expr: jsonata.Expression, root: string): Set<string> {
  const refs = new Set<string>();
  // iterative: a long expression parses into a deep tree
  const todo: unknown[] = [expr.ast()];
  while (todo.length) {
    const node = todo.pop();
    if (Array.isArray(node)) {
      todo.push(...node);
      continue;
    }
    if (!node || typeof node !== 'object') continue;
    const n = node as { type?: string; value?: unknown; steps?: { type?: string; value?: unknown; stages?: unknown }[] };
    if (n.type === 'path' && Array.isArray(n.steps)) {
      const [first, second] = n.steps;
      if (first?.type === 'name' && first.value === root) {
        if (second?.type === 'name' && typeof second.value === 'string' && !first.stages) refs.add(second.value);
        else refs.add('*');
        todo.push(first.stages, n.steps.slice(1));
        continue;
      }
    }
    for (const v of Object.values(n)) if (v && typeof v === 'object') todo.push(v);
  }
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

/** Parsed expressions, bounded by their total text (the parse tree is proportional to it). */
const cache = new Map<string, jsonata.Expression>();
const CACHE_MAX_CHARS = 2_000_000;
let cacheChars = 0;

/**
 * What one evaluation may build: the characters of every string and the items of every array
 * it produces along the way, summed. JSONata's time guard runs between evaluation steps, so a
 * string doubled by `&` in a loop would otherwise grow without bound inside one step.
 */
const BUILD_BUDGET = 16 * 1024 * 1024;
const built = new WeakMap<object, number>();
const EXIT = Symbol.for('jsonata.__evaluate_exit');

function budgetHook(maxResultChars: number) {
  return (_expr: unknown, _input: unknown, environment: { base?: object }, result: unknown) => {
    const size = typeof result === 'string' ? result.length : Array.isArray(result) ? result.length : 0;
    if (!size || !environment.base) return;
    if (typeof result === 'string' && size > maxResultChars) {
      throw new ExpressionError('', `it builds a text of ${size} characters, more than the limit of ${maxResultChars}`);
    }
    const total = (built.get(environment.base) ?? 0) + size;
    if (total > BUILD_BUDGET) throw new ExpressionError('', `it builds more than ${BUILD_BUDGET} characters and items in all`);
    built.set(environment.base, total);
  };
}

/**
 * $toMillis: with a picture, JSONata parses the timestamp with a JavaScript RegExp it builds
 * itself (not through RegexEngine), which backtracks on long inputs; a timestamp is short, so a
 * long one is refused before it is parsed.
 */
const MAX_TIMESTAMP_CHARS = 64;
const toMillisPlain = jsonata('$toMillis(t)');
const toMillisPicture = jsonata('$toMillis(t, p)');
async function boundedToMillis(timestamp: string | undefined, picture?: string): Promise<number | undefined> {
  if (timestamp === undefined) return undefined;
  if (picture !== undefined && timestamp.length > MAX_TIMESTAMP_CHARS) {
    throw Object.assign(new Error(`$toMillis was given a timestamp of ${timestamp.length} characters to read with a picture; at most ${MAX_TIMESTAMP_CHARS} are read`), { code: 'SB003' });
  }
  return (picture === undefined ? toMillisPlain.evaluate({ t: timestamp }) : toMillisPicture.evaluate({ t: timestamp, p: picture })) as Promise<number | undefined>;
}

function compiled(text: string, limits: ExpressionLimits): jsonata.Expression {
  const key = `${limits.timeoutMs}|${limits.maxResultChars}|${text}`;
  let expr = cache.get(key);
  if (!expr) {
    if (text.length > MAX_EXPRESSION_CHARS) throw new ExpressionError(text.slice(0, 60), `the expression is longer than ${MAX_EXPRESSION_CHARS} characters`);
    try {
      expr = jsonata(text, { timeout: limits.timeoutMs, stack: STACK, sequence: SEQUENCE, RegexEngine: LinearRegExp } as unknown as jsonata.JsonataOptions);
    } catch (err) {
      throw new ExpressionError(text, err instanceof RangeError ? 'it is nested too deeply' : describe(err));
    }
    const badRegex = unsafeRegexIn(expr);
    if (badRegex) throw new ExpressionError(text, badRegex);
    expr.registerFunction('pad', boundedPad(limits.maxResultChars), '<s-ns?:s>');
    expr.registerFunction('toMillis', boundedToMillis, '<s-s?:n>');
    expr.assign(EXIT as unknown as string, budgetHook(limits.maxResultChars));
    while (cache.size && cacheChars + key.length > CACHE_MAX_CHARS) {
      const oldest = cache.keys().next().value!;
      cache.delete(oldest);
      cacheChars -= oldest.length;
    }
    cache.set(key, expr);
    cacheChars += key.length;
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
    throw new ExpressionError(text.trim(), err instanceof RangeError ? `it ran out of room (${err.message})` : describe(err));
  }
  return toJson(value, text.trim(), limits);
}

/** Render a template value: every string with `{{ }}` at any depth, keeping JSON types for whole expressions. */
export async function render(value: unknown, doc: unknown, limits: ExpressionLimits = DEFAULT_LIMITS): Promise<unknown> {
  if (typeof value === 'string') {
    const one = whole(value);
    if (one !== null) {
      const v = await evaluate(one, doc, limits);
      return v === undefined ? null : v;
    }
    if (!value.includes('{{')) return value;
    let out = '';
    for (const p of parts(value)) {
      if ('literal' in p) {
        out += p.literal;
        continue;
      }
      const v = await evaluate(p.expression, doc, limits);
      out += v === undefined || v === null ? '' : typeof v === 'string' ? v : JSON.stringify(v);
      if (out.length > limits.maxResultChars) throw new ExpressionError(p.expression.trim(), `the text built is more than ${limits.maxResultChars} characters`);
    }
    return out;
  }
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    for (const v of value) out.push(await render(v, doc, limits));
    return out;
  }
  if (value && typeof value === 'object') {
    // own properties only, whatever the key (a "__proto__" key stays a key)
    const out: [string, unknown][] = [];
    for (const [k, v] of Object.entries(value)) out.push([k, await render(v, doc, limits)]);
    return Object.fromEntries(out);
  }
  return value;
}
