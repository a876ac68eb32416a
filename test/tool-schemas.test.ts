import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildWorld, connect, type Session, type World } from './helpers/world.js';

/**
 * The whole tool surface as the client sees it, kept in a file: any change to a name, a
 * description, a schema or an annotation is a visible diff in review (update with `vitest -u`).
 */
let w: World;
let s: Session;
beforeAll(async () => {
  w = await buildWorld();
  s = await connect(w.core, w.tokens.boringViewer);
});
afterAll(async () => {
  await s.close();
  await w.close();
});

describe('tools/list', () => {
  it('matches the committed tool surface', async () => {
    const { tools } = await s.client.listTools();
    await expect(JSON.stringify(tools, null, 2) + '\n').toMatchFileSnapshot('./__snapshots__/tools.json');
  });

  it('gives every tool a description, annotations, a strict object input and an output schema', async () => {
    const { tools } = await s.client.listTools();
    for (const t of tools) {
      expect(t.name).toMatch(/^[a-z]+(_[a-z]+)*$/);
      expect(t.description!.length, t.name).toBeGreaterThan(40);
      expect(t.description!.length, t.name).toBeLessThan(400);
      expect(t.inputSchema.type).toBe('object');
      expect((t.inputSchema as { additionalProperties?: boolean }).additionalProperties, t.name).toBe(false);
      expect(t.outputSchema?.type).toBe('object');
      expect(typeof t.annotations?.readOnlyHint, t.name).toBe('boolean');
      for (const [arg, schema] of Object.entries(t.inputSchema.properties ?? {})) {
        expect((schema as { description?: string }).description, `${t.name}.${arg}`).toBeTruthy();
      }
    }
  });

  // the four rules of MCP Inspector 2.12's --strict schema lint (core/json/schemaLint.ts), which
  // some model providers' JSON Schema subsets share: zero findings for every listed schema
  it('lists only portable schemas: no type unions, no untyped or boolean subschemas, no remote refs', async () => {
    const { tools } = await s.client.listTools();
    const findings: string[] = [];
    const KEYWORDS = ['type', 'enum', 'const', 'anyOf', 'oneOf', 'allOf', 'not', '$ref', 'properties', 'items', 'additionalProperties', 'required', 'minimum', 'maximum', 'minLength', 'maxLength', 'pattern', 'format', 'minItems', 'maxItems', 'prefixItems', 'patternProperties', 'propertyNames', '$defs'];
    const BOOLEAN_OK = ['additionalProperties', 'unevaluatedProperties', 'additionalItems', 'unevaluatedItems'];
    const walk = (v: unknown, path: string, key: string) => {
      if (typeof v === 'boolean') {
        if (!BOOLEAN_OK.includes(key)) findings.push(`${path}: a boolean schema`);
        return;
      }
      if (v === null || typeof v !== 'object' || Array.isArray(v)) return;
      const o = v as Record<string, unknown>;
      if (Array.isArray(o.type)) findings.push(`${path}: type is an array`);
      if (typeof o.$ref === 'string' && !o.$ref.startsWith('#')) findings.push(`${path}: remote $ref`);
      if (!Object.keys(o).some((k) => KEYWORDS.includes(k))) findings.push(`${path}: no validation keyword`);
      for (const k of ['items', 'additionalProperties', 'not', 'propertyNames', 'contains']) if (k in o) walk(o[k], `${path}.${k}`, k);
      for (const k of ['anyOf', 'oneOf', 'allOf', 'prefixItems']) if (Array.isArray(o[k])) (o[k] as unknown[]).forEach((x, i) => walk(x, `${path}.${k}[${i}]`, k));
      for (const k of ['properties', '$defs', 'patternProperties']) if (o[k] && typeof o[k] === 'object') for (const [n, x] of Object.entries(o[k] as object)) walk(x, `${path}.${k}.${n}`, k);
    };
    for (const t of tools) {
      walk(t.inputSchema, `${t.name}.inputSchema`, '');
      walk(t.outputSchema, `${t.name}.outputSchema`, '');
    }
    expect(findings).toEqual([]);
  });
});

