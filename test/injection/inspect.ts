import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { text, type Session } from '../helpers/world.js';
import { CORPUS, leaks, plantedPaths } from './corpus.js';
import { DATA_FIELDS } from './data-fields.js';

/**
 * Every call of the prompt-injection test goes through `Inspector.call`, which holds its answer to
 * the rules of issue 12, item 2:
 * - the tool's own sentence (the text content, error or not) carries no corpus entry, nor any
 *   recognisable piece of one (its marks);
 * - planted text shows in the structured result only at the data fields that tool lists in
 *   DATA_FIELDS, and there byte for byte (`exact`), or inside a larger text the platform builds
 *   around it or cuts on purpose (`embeds`: an engine error message, an excerpt, the audit log's
 *   redacted arguments).
 * It also keeps every leaf it saw, so a test can check that what was planted came back.
 */

export interface Leaf {
  tool: string;
  path: string;
  leaf: string;
}

const EXACT = new Set(CORPUS.map((c) => c.text));

const patternCache = new Map<string, RegExp>();
/** `a[].b.*` matches one key at `*`; `.**` at the end matches anything below. */
function matches(pattern: string, path: string): boolean {
  let re = patternCache.get(pattern);
  if (!re) {
    const src = pattern
      .split('**')
      .map((part) => part.split('*').map((s) => s.replace(/[.[\]{}()+?^$|\\]/g, '\\$&')).join('[^.]+'))
      .join('.*');
    re = new RegExp(`^${src}$`);
    patternCache.set(pattern, re);
  }
  return re.test(path);
}

export class Inspector {
  readonly violations: string[] = [];
  readonly called = new Set<string>();
  /** calls made, by tool */
  readonly count = new Map<string, number>();
  readonly leaves: Leaf[] = [];
  /** tool → path → how planted text was found there (for reading what a tool echoes) */
  readonly found = new Map<string, Map<string, 'exact' | 'embeds'>>();

  /** Call `tool` and inspect the answer; the answer is returned as it came. */
  async call(s: Session, tool: string, args: Record<string, unknown> = {}): Promise<CallToolResult> {
    const r = await s.call(tool, args);
    this.inspect(tool, r);
    return r;
  }

  /** As call, for a call that must succeed: its structured result. */
  async ok<T = Record<string, unknown>>(s: Session, tool: string, args: Record<string, unknown> = {}): Promise<T> {
    const r = await this.call(s, tool, args);
    if (r.isError) throw new Error(`${tool} failed: ${text(r)}`);
    return r.structuredContent as T;
  }

  inspect(tool: string, r: CallToolResult): void {
    this.called.add(tool);
    this.count.set(tool, (this.count.get(tool) ?? 0) + 1);
    const sentence = text(r);
    const inSentence = leaks(sentence);
    if (inSentence.length) this.violations.push(`${tool}: its sentence carries ${inSentence.join(', ')}: ${JSON.stringify(sentence.slice(0, 300))}`);
    if (r.isError || r.structuredContent === undefined) return;
    const allowed = DATA_FIELDS[tool] ?? {};
    for (const hit of plantedPaths(r.structuredContent)) {
      const how = EXACT.has(hit.leaf) ? 'exact' : 'embeds';
      const seen = this.found.get(tool) ?? new Map<string, 'exact' | 'embeds'>();
      if (seen.get(hit.path) !== 'embeds') seen.set(hit.path, how);
      this.found.set(tool, seen);
      this.leaves.push({ tool, path: hit.path, leaf: hit.leaf });
      const rule = Object.entries(allowed).find(([pattern]) => matches(pattern, hit.path))?.[1];
      if (!rule) this.violations.push(`${tool}: planted text (${hit.ids.join(', ')}) at ${hit.path}, which is not one of its data fields`);
      else if (rule === 'exact' && how !== 'exact') {
        this.violations.push(`${tool}: ${hit.path} should hold planted text byte for byte, holds ${JSON.stringify(hit.leaf.slice(0, 120))}`);
      }
    }
  }

  /** Whether `tool` returned exactly `value` at a path matching `pattern`. */
  returned(tool: string, pattern: string, value: string): boolean {
    return this.leaves.some((l) => l.tool === tool && l.leaf === value && matches(pattern, l.path));
  }
}
