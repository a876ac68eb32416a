import { sql, type AnyColumn, type SQL } from 'drizzle-orm';
import { UserError } from './errors.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (s: string): boolean => UUID.test(s);

export const SLUG = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** "Acme Fitness — Studio 01" → "acme-fitness-studio-01" */
export function slugify(name: string): string {
  return name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/, '');
}

/** Opaque keyset cursors: base64url of a JSON array of the last row's sort key. */
export function encodeCursor(key: readonly (string | number)[]): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

type CursorPart = 'text' | 'uuid' | 'id' | 'time';
const CURSOR_CHECK: Record<CursorPart, (v: unknown) => boolean> = {
  // text PostgreSQL can store: a cursor is caller input like any other
  text: (v) => typeof v === 'string' && v.length <= 1000 && v.isWellFormed() && !v.includes('\0'),
  uuid: (v) => typeof v === 'string' && isUuid(v),
  id: (v) => typeof v === 'number' && Number.isSafeInteger(v) && v > 0,
  // a UTC time to the microsecond, as microTime writes it, on a real calendar day PostgreSQL takes
  time: (v) => {
    if (typeof v !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/.test(v) || v.startsWith('0000')) return false;
    const t = new Date(v);
    return !Number.isNaN(t.getTime()) && t.toISOString().slice(0, 19) === v.slice(0, 19);
  },
};

/** A timestamp column as a cursor's `time` part: to the microsecond, which a JS Date cannot keep. */
export const microTime = (column: SQL | AnyColumn): SQL<string> =>
  sql<string>`to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** The sort key of a cursor, each part checked against its kind, or a clear error. */
export function decodeCursor(cursor: string, shape: readonly CursorPart[]): (string | number)[] {
  try {
    const key: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(key) && key.length === shape.length && key.every((v, i) => CURSOR_CHECK[shape[i]!](v))) return key;
  } catch {
    /* fall through */
  }
  throw new UserError('The cursor is not valid: pass the next_cursor of a previous page, or omit it.');
}

/** Escape LIKE wildcards in user text. */
export const likeEscape = (s: string): string => s.replace(/[\\%_]/g, (c) => `\\${c}`);
