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

type CursorPart = 'text' | 'uuid' | 'id';
const CURSOR_CHECK: Record<CursorPart, (v: unknown) => boolean> = {
  // text PostgreSQL can store: a cursor is caller input like any other
  text: (v) => typeof v === 'string' && v.length <= 1000 && v.isWellFormed() && !v.includes('\0'),
  uuid: (v) => typeof v === 'string' && isUuid(v),
  id: (v) => typeof v === 'number' && Number.isSafeInteger(v) && v > 0,
};

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
