/** Text PostgreSQL can store: NUL and lone surrogates replaced (jsonb and text refuse both). */
export const storableText = (s: string): string => s.toWellFormed().replaceAll('\0', '\uFFFD');

/** A JSON value PostgreSQL can store, keys included. */
export function storable(value: unknown): unknown {
  if (typeof value === 'string') return storableText(value);
  if (Array.isArray(value)) return value.map(storable);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [storableText(k), storable(v)]));
  return value;
}
