/**
 * PostgreSQL array literals passed as one parameter (`= any($1::uuid[])`, `unnest($1::int[])`):
 * drizzle's sql template would otherwise expand a JS array into one parameter per element.
 */

/** Uuids (they need no quoting). */
export const uuidList = (ids: readonly string[]): string => `{${ids.join(',')}}`;

/** Texts, each quoted; null as NULL. */
export const textList = (xs: readonly (string | null)[]): string =>
  `{${xs.map((x) => (x === null ? 'NULL' : `"${x.replace(/["\\]/g, (c) => `\\${c}`)}"`)).join(',')}}`;

/** Integers or booleans; null as NULL. */
export const scalarList = (xs: readonly (number | boolean | null)[]): string => `{${xs.map((x) => (x === null ? 'NULL' : String(x))).join(',')}}`;
