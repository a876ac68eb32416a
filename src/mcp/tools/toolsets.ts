import { z } from 'zod';
import { defineTool, type ToolDef } from '../define-tool.js';
import { parseToolsets, TOOLSET_NAMES, TOOLSETS, type Toolset } from '../toolsets.js';

/**
 * Dynamic discovery: the model sees the toolsets it has not turned on, and turns one on for the
 * rest of its session; the server then sends notifications/tools/list_changed (src/mcp/server.ts).
 * Both change nothing but this session's listing, so both are callable in read-only sessions.
 */

const toolsetOut = z.object({
  name: z.enum(TOOLSET_NAMES as [Toolset, ...Toolset[]]),
  description: z.string(),
  enabled: z.boolean(),
  tools: z.array(z.string()).describe('Its tools (those a read-only session may call, in one).'),
});

async function toolsetsOf(enabled: Set<Toolset>, readOnly: boolean) {
  // the registry imports every tool module, this one included: read it when called, not at load
  const { allTools } = await import('../server.js');
  return TOOLSET_NAMES.map((name) => ({
    name,
    description: TOOLSETS[name],
    enabled: enabled.has(name),
    tools: allTools.filter((t) => t.toolset === name && (!readOnly || t.readOnly)).map((t) => t.name),
  }));
}

const listToolsetsTool = defineTool({
  name: 'list_toolsets',
  toolset: 'discovery',
  title: 'List toolsets',
  description: 'Lists the toolsets, which of them this session has on, and their tools.',
  input: {},
  output: { toolsets: z.array(toolsetOut), read_only: z.boolean().describe('Whether this session may only read.') },
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: null },
  async handler(ctx) {
    const toolsets = await toolsetsOf(ctx.session.toolsets, ctx.session.readOnly);
    const off = toolsets.filter((t) => !t.enabled).map((t) => t.name);
    return {
      data: { toolsets, read_only: ctx.session.readOnly },
      text: `On: ${toolsets.filter((t) => t.enabled).map((t) => t.name).join(', ') || 'none'}. Off: ${off.join(', ') || 'none'}${off.length ? ' (enable_toolset turns one on)' : ''}.`,
    };
  },
});

const enableToolsetTool = defineTool({
  name: 'enable_toolset',
  toolset: 'discovery',
  title: 'Enable toolset',
  description: 'Turns a toolset on for the rest of this session: its tools are listed from then on.',
  input: { toolset: z.string().min(1).max(100).describe('A toolset from list_toolsets, or "all".') },
  output: { enabled: z.array(z.string()).describe('The toolsets on now.'), added: z.array(z.string()).describe('Those this call turned on.') },
  // it changes this session's listing, nothing else: a read-only session may call it too
  annotations: { readOnlyHint: true, idempotentHint: true },
  access: { role: null },
  async handler(ctx, args) {
    const wanted = parseToolsets(args.toolset);
    const added = [...wanted].filter((t) => !ctx.session.toolsets.has(t));
    for (const t of added) ctx.session.toolsets.add(t);
    const enabled = TOOLSET_NAMES.filter((t) => ctx.session.toolsets.has(t));
    return {
      data: { enabled, added },
      text: added.length ? `Turned on ${added.join(', ')}: their tools are listed now.` : `Already on: ${[...wanted].join(', ')}.`,
    };
  },
});

export const toolsetTools: ToolDef[] = [listToolsetsTool, enableToolsetTool];
