import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { UserError } from '../core/errors.js';

/**
 * A backup file as `switchboard backup` writes it: PGlite's dump of its data directory, a tar
 * (gzipped) holding PG_VERSION and global/pg_control at its root. Read whole and checked here, so
 * that a file that is not one is refused with one sentence before anything is written.
 */
export function readSnapshotFile(file: string): Blob {
  let raw: Buffer;
  try {
    raw = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UserError(code === 'ENOENT' ? `There is no file ${file}.` : code === 'EISDIR' ? `${file} is a directory, not a backup file.` : `${file} cannot be read (${code}).`);
  }
  const notOne = `${file} is not a Switchboard backup (a file written by \`switchboard backup\`).`;
  let tar = raw;
  if (raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      tar = gunzipSync(raw);
    } catch {
      throw new UserError(`${file} is a damaged or incomplete backup: it does not decompress.`);
    }
  }
  const entries = tarEntries(tar);
  if (entries === 'not-tar') throw new UserError(notOne);
  if (entries === 'truncated') throw new UserError(`${file} is a damaged or incomplete backup: it ends in the middle of a file.`);
  const version = entries.get('PG_VERSION');
  if (!version || !/^\d+\n?$/.test(version) || !entries.has('global/pg_control')) throw new UserError(notOne);
  return new Blob([new Uint8Array(tar)], { type: 'application/x-tar' });
}

/**
 * The entries of a ustar archive: name (without a leading slash) → the content of small files
 * (PG_VERSION), '' for the others. 'not-tar' when the first header is not a tar header,
 * 'truncated' when an entry runs past the end or the end-of-archive block is missing.
 */
function tarEntries(tar: Buffer): Map<string, string> | 'not-tar' | 'truncated' {
  const entries = new Map<string, string>();
  const field = (h: Buffer, from: number, to: number) => h.subarray(from, to).toString('utf8').replace(/\0[\s\S]*$/, '');
  let offset = 0;
  for (;;) {
    if (offset + 512 > tar.length) return entries.size ? 'truncated' : 'not-tar';
    const header = tar.subarray(offset, offset + 512);
    if (header.every((b) => b === 0)) return entries.size ? entries : 'not-tar';
    if (!field(header, 257, 263).startsWith('ustar') || !validChecksum(header)) return entries.size ? 'truncated' : 'not-tar';
    const size = parseInt(field(header, 124, 136).trim() || '0', 8);
    const prefix = field(header, 345, 500);
    const name = (prefix ? `${prefix}/` : '') + field(header, 0, 100);
    const start = offset + 512;
    if (!Number.isFinite(size) || start + size > tar.length) return 'truncated';
    entries.set(name.replace(/^\.?\/+/, ''), size <= 64 ? tar.subarray(start, start + size).toString('utf8') : '');
    offset = start + Math.ceil(size / 512) * 512;
  }
}

/** The header checksum: the byte sum with the checksum field counted as spaces. */
function validChecksum(header: Buffer): boolean {
  const stored = parseInt(header.subarray(148, 156).toString('latin1').replace(/\0.*$/s, '').trim(), 8);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
  return sum === stored;
}
