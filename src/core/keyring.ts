import { createHmac, hkdfSync, randomBytes, randomUUID } from 'node:crypto';
import { and, eq, ne, sql } from 'drizzle-orm';
import { dataKeys } from '../db/schema/index.js';
import type { Db } from '../db/client.js';
import { sodium } from './crypto.js';

/**
 * Envelope encryption of credentials.
 *
 *   master key (SWITCHBOARD_MASTER_KEY, or the 0600 key file of the data directory)
 *     └ wraps data keys (table data_keys, XChaCha20-Poly1305, bound to tenant and key id)
 *         └ seal credentials (XChaCha20-Poly1305, bound to tenant + account + connection + key id)
 *
 * A sealed value is `sb1.<data key id>.<base64url(nonce ‖ ciphertext)>`: it names its key, so
 * rotation can move rows from key to key while both are readable. The additional data binds a
 * ciphertext to the row it was written for: copied onto another connection it does not open.
 * The master key never leaves this process; the database keeps only its fingerprint (an HMAC, not
 * the key) with every data key, so a wrong master key is refused at startup, not at a late decrypt.
 */

export const MASTER_KEY_BYTES = 32;
const SEALED_PREFIX = 'sb1';

/** Thrown when a sealed value does not open: wrong row, damaged, or a key that is gone. */
export class DecryptError extends Error {
  constructor() {
    super('The stored credentials could not be decrypted: they do not belong to this connection or were damaged.');
    this.name = 'DecryptError';
  }
}

/** The master key from base64 text: exactly 32 bytes, or a clear error naming where it came from. */
export function parseMasterKey(text: string, source: string): Buffer {
  const trimmed = text.trim();
  const key = /^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed) ? Buffer.from(trimmed, 'base64') : Buffer.alloc(0);
  if (key.length !== MASTER_KEY_BYTES) {
    throw new Error(
      `Invalid configuration: ${source} must be ${MASTER_KEY_BYTES} random bytes in base64 (44 characters); ` +
        'make one with: node -e "console.log(require(\'crypto\').randomBytes(32).toString(\'base64\'))"',
    );
  }
  return key;
}

export const newMasterKey = (): Buffer => randomBytes(MASTER_KEY_BYTES);

/** A stable, non-reversible name of a master key (HMAC-SHA256 under the key itself). */
export const masterFingerprint = (key: Uint8Array): string =>
  createHmac('sha256', key).update('switchboard master key fingerprint v1').digest('hex').slice(0, 32);

/** A fingerprint as shown in messages. */
export const shortFingerprint = (fp: string): string => fp.slice(0, 12);

/**
 * The fingerprints of master keys that wrapped this database's data keys, other than `fingerprint`.
 * Empty when the key fits (or nothing was encrypted yet).
 */
export async function foreignFingerprints(db: Db, fingerprint: string): Promise<string[]> {
  const rows = await db
    .selectDistinct({ fp: dataKeys.masterFingerprint })
    .from(dataKeys)
    .where(ne(dataKeys.masterFingerprint, fingerprint));
  return rows.map((r) => r.fp);
}

const dataKeyAad = (tenantId: string, keyId: string) => `switchboard/data-key/v1|tenant:${tenantId}|key:${keyId}`;

export interface ActiveKey {
  id: string;
  key: Uint8Array;
}

/** What callers of the keyring pass: the database handle to use and the tenant. */
export interface KeyScope {
  db: Db;
  tenantId: string;
}

export class Keyring {
  readonly fingerprint: string;
  /** unwrapped data keys by id; a data key never changes, so caching it is safe */
  private readonly cache = new Map<string, Uint8Array>();

  constructor(private readonly master: Uint8Array) {
    this.fingerprint = masterFingerprint(master);
  }

  /**
   * A keyed digest of `message` under a key derived from the master key for `purpose` (HKDF):
   * values the server can compute again whenever needed and nobody can guess, so they need not
   * be stored (webhook URLs). They change only if the master key does.
   */
  mac(purpose: string, message: string): Buffer {
    const key = Buffer.from(hkdfSync('sha256', this.master, Buffer.alloc(0), `switchboard/${purpose}`, 32));
    return createHmac('sha256', key).update(message).digest();
  }

  /**
   * The tenant's active data key (read on every call: another process may have rotated it).
   * The first call on a new database creates it.
   */
  async activeKey(scope: KeyScope): Promise<ActiveKey> {
    const [row] = await scope.db
      .select({ id: dataKeys.id, wrapped: dataKeys.wrappedKey })
      .from(dataKeys)
      .where(and(eq(dataKeys.tenantId, scope.tenantId), eq(dataKeys.status, 'active')));
    if (row) return { id: row.id, key: await this.unwrap(scope.tenantId, row.id, row.wrapped) };
    return this.createKey(scope, { ifNoneActive: true });
  }

  /**
   * A new data key. With `ifNoneActive` it only creates one when the tenant has none (first use);
   * otherwise the new key becomes active and the previous active key is marked retiring.
   * Serialized per tenant, so concurrent first uses make one key.
   */
  async createKey(scope: KeyScope, opts: { ifNoneActive?: boolean } = {}): Promise<ActiveKey> {
    const s = await sodium();
    return scope.db.transaction(async (tx) => {
      await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${'switchboard:data-keys:' + scope.tenantId}))`);
      const [current] = await tx
        .select({ id: dataKeys.id, wrapped: dataKeys.wrappedKey })
        .from(dataKeys)
        .where(and(eq(dataKeys.tenantId, scope.tenantId), eq(dataKeys.status, 'active')));
      if (current && opts.ifNoneActive) return { id: current.id, key: await this.unwrap(scope.tenantId, current.id, current.wrapped) };
      if (current) await tx.update(dataKeys).set({ status: 'retiring' }).where(eq(dataKeys.id, current.id));
      const id = randomUUID();
      const key = s.crypto_aead_xchacha20poly1305_ietf_keygen();
      const nonce = s.randombytes_buf(s.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
      const ct = s.crypto_aead_xchacha20poly1305_ietf_encrypt(key, dataKeyAad(scope.tenantId, id), null, nonce, this.master);
      await tx.insert(dataKeys).values({
        id,
        tenantId: scope.tenantId,
        wrappedKey: Buffer.concat([nonce, ct]).toString('base64url'),
        masterFingerprint: this.fingerprint,
        status: 'active',
      });
      this.cache.set(id, key);
      return { id, key };
    });
  }

  /** A data key by id (any status but retired-and-gone). */
  async keyById(scope: KeyScope, id: string): Promise<Uint8Array> {
    const cached = this.cache.get(id);
    if (cached) return cached;
    const [row] = await scope.db
      .select({ wrapped: dataKeys.wrappedKey })
      .from(dataKeys)
      .where(and(eq(dataKeys.tenantId, scope.tenantId), eq(dataKeys.id, id)));
    if (!row) throw new DecryptError();
    return this.unwrap(scope.tenantId, id, row.wrapped);
  }

  private async unwrap(tenantId: string, id: string, wrapped: string): Promise<Uint8Array> {
    const cached = this.cache.get(id);
    if (cached) return cached;
    const s = await sodium();
    const raw = Buffer.from(wrapped, 'base64url');
    const n = s.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
    let key: Uint8Array;
    try {
      key = s.crypto_aead_xchacha20poly1305_ietf_decrypt(null, raw.subarray(n), dataKeyAad(tenantId, id), raw.subarray(0, n), this.master);
    } catch {
      // the startup check makes this rare: a data key wrapped by another master key
      throw new Error('A data key could not be unwrapped with the configured master key: is SWITCHBOARD_MASTER_KEY the key this database was encrypted with?');
    }
    this.cache.set(id, key);
    return key;
  }

  /** Seal `plaintext` with `key`, bound to `aad` (and the key id). */
  async sealWith(key: ActiveKey, aad: string, plaintext: string): Promise<string> {
    const s = await sodium();
    // node's CSPRNG: the same quality as libsodium's randombytes_buf, a twentieth of its cost in WebAssembly
    const nonce = randomBytes(s.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    const ct = s.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, `${aad}|key:${key.id}`, null, nonce, key.key);
    return `${SEALED_PREFIX}.${key.id}.${Buffer.concat([nonce, ct]).toString('base64url')}`;
  }

  /** The data key id a sealed value names, or null when it is not a sealed value. */
  static keyIdOf(sealed: string): string | null {
    const parts = sealed.split('.');
    return parts.length === 3 && parts[0] === SEALED_PREFIX ? parts[1]! : null;
  }

  /** Open a sealed value; DecryptError when it was not sealed for `aad` or was damaged. */
  async open(scope: KeyScope, sealed: string, aad: string): Promise<string> {
    const keyId = Keyring.keyIdOf(sealed);
    if (!keyId) throw new DecryptError();
    const key = await this.keyById(scope, keyId);
    const s = await sodium();
    const raw = Buffer.from(sealed.split('.')[2]!, 'base64url');
    const n = s.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
    if (raw.length <= n) throw new DecryptError();
    try {
      return s.crypto_aead_xchacha20poly1305_ietf_decrypt(null, raw.subarray(n), `${aad}|key:${keyId}`, raw.subarray(0, n), key, 'text');
    } catch {
      throw new DecryptError();
    }
  }
}

/** A keyring for code paths that must never encrypt (tenant creation before any key exists). */
export const NO_KEYRING = new Proxy({} as Keyring, {
  get() {
    throw new Error('No keyring here: this code path must not encrypt or decrypt.');
  },
});
