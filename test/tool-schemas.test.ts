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
});
