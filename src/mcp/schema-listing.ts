/**
 * A tool's JSON Schema as tools/list gives it: what zod writes, made lean and portable. Every
 * conversation pays for the listing before its first word, and some model providers accept only a
 * portable subset of JSON Schema (MCP Inspector's `--strict` lint). Nothing here changes what a
 * schema accepts, except where noted; arguments are still checked by zod, in full.
 *
 * - the safe-integer bounds zod puts on every `.int()` go (they say nothing a model needs);
 * - `propertyNames: {type: "string"}` goes (JSON object keys are strings);
 * - `type: ["string", "null"]` becomes `anyOf: [{type: "string", …}, {type: "null"}]` (the portable
 *   spelling);
 * - `additionalProperties: {}` (any value) goes: absent means the same;
 * - an output schema loses `additionalProperties: false`: the server writes its results, and a
 *   client's validation of them gains nothing from it (inputs keep it: unknown arguments are refused);
 * - an output object whose fields are all required loses `required`: the server instructions tell
 *   the model that an object without it has every field in every result (null when it has no
 *   value, which the schema says); a tenth of the listing went to restating that. An object with
 *   optional fields keeps its `required` list, and one whose fields are all optional gets
 *   `required: []`, so that the rule holds for every object listed;
 * - `format: "date-time"`: zod's 400-character `pattern` becomes one of 55 for the shape the format
 *   alone lets vary (a space or a lower-case `t`, `+0200`); a validator of the format checks the
 *   ranges and the calendar. Only a leap second (23:59:60) passes both and is refused by the
 *   server, in one sentence;
 * - identical `$defs` (zod writes one per use of the same JSON-value schema) are merged into one.
 */

type Schema = Record<string, unknown>;

const SAFE = Number.MAX_SAFE_INTEGER;
/**
 * The shape of an ISO-8601 time as zod's `z.iso.datetime({offset: true})` takes it: a `T`, seconds,
 * `Z` or `±hh:mm`. The ranges and the calendar are the format's to check.
 */
const DATE_TIME_SHAPE = '^\\d{4}(-\\d\\d){2}T(\\d\\d:){2}\\d\\d(\\.\\d+)?(Z|[+-]\\d\\d:\\d\\d)$';
const isSchema = (v: unknown): v is Schema => v !== null && typeof v === 'object' && !Array.isArray(v);
const isEmpty = (v: unknown) => isSchema(v) && Object.keys(v).length === 0;

/** Keywords whose value is one schema, a list of schemas, or a map of them. */
const ONE = ['items', 'additionalProperties', 'not', 'contains', 'if', 'then', 'else', 'propertyNames'];
const MANY = ['anyOf', 'oneOf', 'allOf', 'prefixItems'];
const MAP = ['properties', '$defs', 'definitions', 'patternProperties'];

export function listedSchema(schema: Schema, io: 'input' | 'output'): Schema {
  return mergeDefs(lean(schema, io));
}

function lean(s: Schema, io: 'input' | 'output'): Schema {
  const out: Schema = {};
  for (const [k, v] of Object.entries(s)) {
    if (ONE.includes(k) && isSchema(v)) out[k] = lean(v, io);
    else if (MANY.includes(k) && Array.isArray(v)) out[k] = v.map((x) => (isSchema(x) ? lean(x, io) : x));
    else if (MAP.includes(k) && isSchema(v)) out[k] = Object.fromEntries(Object.entries(v).map(([n, x]) => [n, isSchema(x) ? lean(x, io) : x]));
    else out[k] = v;
  }
  if (out.minimum === -SAFE) delete out.minimum;
  if (out.maximum === SAFE) delete out.maximum;
  if (isSchema(out.propertyNames) && out.propertyNames.type === 'string' && Object.keys(out.propertyNames).length === 1) delete out.propertyNames;
  if (isEmpty(out.additionalProperties)) delete out.additionalProperties;
  if (io === 'output' && out.additionalProperties === false) delete out.additionalProperties;
  if (io === 'output' && isSchema(out.properties)) {
    const required = Array.isArray(out.required) ? (out.required as string[]) : [];
    if (Object.keys(out.properties).every((k) => required.includes(k))) delete out.required;
    else out.required = required;
  }
  if (out.format === 'date-time' && typeof out.pattern === 'string') out.pattern = DATE_TIME_SHAPE;
  if (Array.isArray(out.type)) return nullableAsAnyOf(out);
  return out;
}

/** `{type: [a, "null"], …}` → `{anyOf: [{type: a, …constraints}, {type: "null"}], description}`. */
function nullableAsAnyOf(s: Schema): Schema {
  const { type, description, title, default: dflt, ...constraints } = s as Schema & { type: string[] };
  const branches = type.map((t) => (t === 'null' ? { type: 'null' } : { type: t, ...constraints }));
  const out: Schema = { anyOf: branches };
  if (description !== undefined) out.description = description;
  if (title !== undefined) out.title = title;
  if (dflt !== undefined) out.default = dflt;
  return out;
}

/** Keywords whose values are data, not schemas: a `$ref` inside them is text. */
const DATA = new Set(['const', 'enum', 'default', 'examples']);

/** A `$defs` pointer's definition name and the rest of the pointer, or null for any other reference. */
function defPointer(ref: string): [string, string] | null {
  if (!ref.startsWith('#/$defs/')) return null;
  const rest = ref.slice('#/$defs/'.length);
  const slash = rest.indexOf('/');
  return slash < 0 ? [rest, ''] : [rest.slice(0, slash), rest.slice(slash)];
}

/** A schema with every `$defs` reference (never data) passed through `rename`. */
function renameRefs(v: unknown, rename: (name: string) => string): unknown {
  if (Array.isArray(v)) return v.map((x) => renameRefs(x, rename));
  if (!isSchema(v)) return v;
  const out: Schema = {};
  for (const [k, x] of Object.entries(v)) {
    const ptr = k === '$ref' && typeof x === 'string' ? defPointer(x) : null;
    out[k] = ptr ? `#/$defs/${rename(ptr[0])}${ptr[1]}` : DATA.has(k) ? x : renameRefs(x, rename);
  }
  return out;
}

/**
 * One `$defs` entry per distinct schema: references to a duplicate (also pointers into it) go to
 * the first of its kind. zod names its definitions `__schemaN`; a definition's own references are
 * to itself, so two definitions are the same when they are equal once each is read with its own
 * name (in `$ref`s only, never in data) replaced by the same placeholder.
 */
function mergeDefs(s: Schema): Schema {
  const defs = s.$defs;
  if (!isSchema(defs) || Object.keys(defs).length < 2) return s;
  const canonical = new Map<string, string>(); // a definition, self-references neutral → its name
  const renamed = new Map<string, string>();
  for (const [name, def] of Object.entries(defs)) {
    const key = JSON.stringify(renameRefs(def, (n) => (n === name ? '~self' : n)));
    const first = canonical.get(key);
    if (first === undefined) canonical.set(key, name);
    else renamed.set(name, first);
  }
  if (renamed.size === 0) return s;
  const rename = (n: string) => renamed.get(n) ?? n;
  const { $defs: _all, ...rest } = s;
  const kept = Object.fromEntries(Object.entries(defs).filter(([name]) => !renamed.has(name)));
  return { ...(renameRefs(rest, rename) as Schema), $defs: renameRefs(kept, rename) };
}
