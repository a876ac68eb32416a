import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { percentile } from '../stats.js';

/**
 * What the soak's sessions did: every tool call's latency and outcome, by tool and by interval.
 * An error is a call that threw (transport, protocol, an answer that does not match the tool's
 * listed output schema), an isError result where success was expected, or success where a
 * refusal was expected. A "busy" refusal by the tool-call gate is an error too, also counted apart.
 */

export type Outcome = 'ok' | 'refused' | 'error';

export interface ToolTally {
  calls: number;
  refused: number;
  errors: number;
  p50: number;
  p99: number;
}

export interface IntervalCalls {
  calls: number;
  errors: number;
  busy: number;
  p50: number;
  p99: number;
}

/** How often an error message is kept as a sample (they repeat; the report shows a few). */
const SAMPLES = 20;

export class CallLog {
  private interval: number[] = [];
  private intervalErrors = 0;
  private intervalBusy = 0;
  private readonly byTool = new Map<string, { ms: number[]; refused: number; errors: number }>();
  readonly errorSamples: string[] = [];
  busy = 0;
  errors = 0;

  record(tool: string, ms: number, outcome: Outcome, message?: string): void {
    const t = this.byTool.get(tool) ?? { ms: [], refused: 0, errors: 0 };
    this.byTool.set(tool, t);
    t.ms.push(ms);
    this.interval.push(ms);
    if (outcome === 'refused') t.refused++;
    if (outcome !== 'error') return;
    t.errors++;
    this.errors++;
    this.intervalErrors++;
    if (message && /server is busy/i.test(message)) {
      this.busy++;
      this.intervalBusy++;
    }
    if (this.errorSamples.length < SAMPLES) this.errorSamples.push(`${tool}: ${(message ?? '').slice(0, 300)}`);
  }

  /** The calls since the last cut, and a new interval. */
  cut(): IntervalCalls {
    const out = { calls: this.interval.length, errors: this.intervalErrors, busy: this.intervalBusy, p50: percentile(this.interval, 50), p99: percentile(this.interval, 99) };
    this.interval = [];
    this.intervalErrors = 0;
    this.intervalBusy = 0;
    return out;
  }

  tools(): Record<string, ToolTally> {
    return Object.fromEntries(
      [...this.byTool.entries()]
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([tool, t]) => [tool, { calls: t.ms.length, refused: t.refused, errors: t.errors, p50: percentile(t.ms, 50), p99: percentile(t.ms, 99) }]),
    );
  }

  get calls(): number {
    let n = 0;
    for (const t of this.byTool.values()) n += t.ms.length;
    return n;
  }
}

export const textOf = (r: CallToolResult): string => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('');
