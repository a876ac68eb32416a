import { createHash, randomBytes } from 'node:crypto';
import type sodiumType from 'libsodium-wrappers-sumo';

let sodiumPromise: Promise<typeof sodiumType> | undefined;

/** libsodium (sumo build: argon2id lives only there), loaded on first use to keep cold start short. */
export function sodium(): Promise<typeof sodiumType> {
  sodiumPromise ??= import('libsodium-wrappers-sumo').then(async (m) => {
    await m.default.ready;
    return m.default;
  });
  return sodiumPromise;
}

/** argon2id, libsodium's interactive limits. */
export async function hashPassword(password: string): Promise<string> {
  const s = await sodium();
  return s.crypto_pwhash_str(password, s.crypto_pwhash_OPSLIMIT_INTERACTIVE, s.crypto_pwhash_MEMLIMIT_INTERACTIVE);
}

export async function verifyPassword(hash: string, password: string): Promise<boolean> {
  const s = await sodium();
  return s.crypto_pwhash_str_verify(hash, password);
}

export const TOKEN_PREFIX = 'sbt_';

/** A new API token: 256 random bits. Only its SHA-256 is stored. */
export function newToken(): { token: string; hash: string; prefix: string } {
  const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  return { token, hash: hashToken(token), prefix: token.slice(0, 10) };
}

const TOKEN_LIKE = new RegExp(`${TOKEN_PREFIX}[A-Za-z0-9_-]*`, 'g');
export const REDACTED = '[redacted]';


/**
 * Names of HTTP headers and query parameters that carry credentials or signatures: refused as
 * written-out values in step definitions, redacted in recorded deliveries and step records.
 */
const CREDENTIAL_WORDS = 'authorization|cookie|token|secret|passw|api[-_]?key|apikey|signature|hmac|session|credential|access[-_]?key';
export const CREDENTIAL_NAME = new RegExp(`${CREDENTIAL_WORDS}|^key$|^x-.*-key$`, 'i');

const URL_USERINFO = /(\b[a-z][a-z0-9+.-]*:\/\/)[^/?#\s@]*@/gi;
const SECRET_PARAM = new RegExp(`([?&](?:[^=&#\\s]*(?:${CREDENTIAL_WORDS}|auth)[^=&#\\s]*)=)[^&#\\s]*`, 'gi');

/** Text with the user:password of URLs and the values of secret-named query parameters replaced. */
export const scrubUrl = (s: string): string => s.replace(URL_USERINFO, `$1${REDACTED}@`).replace(SECRET_PARAM, `$1${REDACTED}`);

/** Free text with anything shaped like an API token or a URL's credentials replaced (messages echo what callers typed). */
export const scrubText = (s: string): string => scrubUrl(s.replace(TOKEN_LIKE, REDACTED));

export const hashToken = (token: string): string => createHash('sha256').update(token).digest('hex');
