/**
 * A small cache of values read from the database that may be a little old (a second, say): what
 * a hot path reads on every request or run but changes rarely. Bounded: past `max` entries it
 * starts afresh rather than grow.
 */
export class TtlCache<V> {
  private readonly entries = new Map<string, { at: number; value: V }>();

  constructor(
    private readonly ttlMs: number,
    private readonly max = 10_000,
  ) {}

  /** The value, when it was stored less than ttlMs ago. */
  get(key: string): V | undefined {
    const hit = this.entries.get(key);
    return hit && Date.now() - hit.at < this.ttlMs ? hit.value : undefined;
  }

  set(key: string, value: V): void {
    if (this.entries.size >= this.max) this.entries.clear();
    this.entries.set(key, { at: Date.now(), value });
  }

  delete(key: string): void {
    this.entries.delete(key);
  }
}

/** One cache per core (tests run several cores in one process; each has its own database). */
export function perCore<K extends object, V>(make: (key: K) => V): (key: K) => V {
  const all = new WeakMap<K, V>();
  return (key) => {
    let v = all.get(key);
    if (!v) all.set(key, (v = make(key)));
    return v;
  };
}
