/** Small statistics and formatting helpers for the benchmark report. Nothing here asserts. */

export function sorted(samples: readonly number[]): number[] {
  return [...samples].sort((a, b) => a - b);
}

/** Nearest-rank percentile (p in 0..100) of the samples. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const s = sorted(samples);
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[Math.min(rank, s.length) - 1]!;
}

export function median(samples: readonly number[]): number {
  if (samples.length === 0) return NaN;
  const s = sorted(samples);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export const max = (samples: readonly number[]): number => (samples.length ? Math.max(...samples) : NaN);

/** Milliseconds with a precision that suits the magnitude: "1180 ms", "12.3 ms", "0.42 ms". */
/** A count with thousands separators. */
export const fmt = (n: number): string => n.toLocaleString('en-US');

export function ms(v: number, width = 0): string {
  const text = !Number.isFinite(v) ? 'n/a' : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  return `${text.padStart(width)} ms`;
}

/** Microseconds, same precision rules as ms(): "412 µs", "23.5 µs", "0.84 µs". */
export function us(v: number, width = 0): string {
  const text = !Number.isFinite(v) ? 'n/a' : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  return `${text.padStart(width)} µs`;
}

/**
 * "met" / "MISSED" beside a target; a figure, not a test. The verdict is computed once by the
 * caller and given both to its console line (this word) and to record() (bench/results.ts).
 */
export const verdictWord = (met: boolean): string => (met ? 'met' : 'MISSED');

export const now = (): number => performance.now();

/** Time `fn` `n` times in sequence; returns the samples in milliseconds. */
export async function timeEach(n: number, fn: () => Promise<unknown>): Promise<number[]> {
  const out: number[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    out[i] = performance.now() - t0;
  }
  return out;
}

export function line(text = ''): void {
  process.stdout.write(text + '\n');
}

/** Progress notes go to stderr so stdout stays a clean report. */
export function note(text: string): void {
  process.stderr.write(`  … ${text}\n`);
}
