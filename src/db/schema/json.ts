import { customType } from 'drizzle-orm/pg-core';

/**
 * jsonb whose values come back exactly as stored. Drizzle's own jsonb parses a value that reads
 * back as a string once more, so the stored text "42" came back as the number 42 and a stored
 * '{"a":1}' as an object; both drivers (postgres.js, PGlite) already hand over jsonb parsed.
 * For columns that hold any JSON value, strings included.
 */
export const jsonValue = <T = unknown>(name: string) =>
  customType<{ data: T; driverData: unknown }>({
    dataType: () => 'jsonb',
    toDriver: (value) => JSON.stringify(value),
    fromDriver: (value) => value as T,
  })(name);
