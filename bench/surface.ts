import { allTools } from '../src/mcp/server.js';
import { parseToolsets, TOOLSET_NAMES } from '../src/mcp/toolsets.js';
import { fmt, line, verdictWord } from './stats.js';
import { record } from './results.js';

/**
 * The tool surface a conversation pays for before its first word (issue 11): the tools/list
 * result of each choice of toolsets, in bytes of compact JSON and in tokens estimated as bytes / 4.
 * Targets: the default listing under 6,000 tokens with at most 25 tools; every toolset on under
 * 12,000 tokens. Deterministic: no reference is needed beside it, but the figures of the tools
 * themselves are printed so the biggest are seen.
 */
export const DEFAULT_TOKENS_TARGET = 6_000;
export const DEFAULT_TOOLS_TARGET = 25;
export const ALL_TOKENS_TARGET = 12_000;

const sizeOf = (set: string, readOnly = false) => {
  const on = parseToolsets(set);
  const tools = allTools.filter((t) => (t.toolset === 'discovery' || on.has(t.toolset as never)) && (!readOnly || t.readOnly)).map((t) => t.listing());
  const bytes = Buffer.byteLength(JSON.stringify({ tools }));
  return { tools: tools.length, bytes, tokens: Math.round(bytes / 4) };
};

export const SURFACE_SECTION = '9. Tool surface';

export function surfaceSection(): void {
  line('9. The MCP tool surface: tools/list per choice of toolsets (compact JSON; tokens ≈ bytes / 4)');
  const row = (label: string, s: { tools: number; bytes: number; tokens: number }, target?: { text: string; met: boolean }) => {
    line(`  ${label.padEnd(34)}${String(s.tools).padStart(4)} tools ${fmt(s.bytes).padStart(9)} bytes ${fmt(s.tokens).padStart(7)} tokens${target ? `   target ${target.text}: ${verdictWord(target.met)}` : ''}`);
    record({
      section: SURFACE_SECTION, figure: `tools/list, ${label.trim()}`, value: `${fmt(s.tokens)} tokens · ${s.tools} tools · ${fmt(s.bytes)} bytes`,
      ...(target ? { target: target.text, met: target.met } : {}),
    });
  };
  const d = sizeOf('default');
  row('default (accounts, operations)', d, { text: `< ${fmt(DEFAULT_TOKENS_TARGET)} tokens and ≤ ${DEFAULT_TOOLS_TARGET} tools`, met: d.tokens < DEFAULT_TOKENS_TARGET && d.tools <= DEFAULT_TOOLS_TARGET });
  const all = sizeOf('all');
  row('all toolsets', all, { text: `< ${fmt(ALL_TOKENS_TARGET)} tokens`, met: all.tokens < ALL_TOKENS_TARGET });
  row('all toolsets, read-only', sizeOf('all', true));
  for (const t of TOOLSET_NAMES) row(`  ${t} (+ discovery)`, sizeOf(t));
  const biggest = allTools.map((t) => ({ name: t.name, bytes: Buffer.byteLength(JSON.stringify(t.listing())) })).sort((a, b) => b.bytes - a.bytes).slice(0, 8);
  const listed = biggest.map((b) => `${b.name} ${fmt(b.bytes)}`).join(', ');
  line(`  biggest listings: ${listed}`);
  record({ section: SURFACE_SECTION, figure: 'biggest listings', value: listed, unit: 'bytes' });
}
