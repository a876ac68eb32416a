import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Webhook signature verification at ingress: HMAC-SHA256 of the raw body (bytes as received,
 * before any decoding) with the secret the provider signs with, held as a `webhook` connection
 * (auth kind signing_secret). Presets follow each provider's documented scheme; `generic` names
 * the header, the encoding and a prefix. Digests are compared in constant time.
 */

export const SIGNATURE_PRESETS = ['stripe', 'github', 'shopify', 'slack', 'generic'] as const;
export type SignaturePreset = (typeof SIGNATURE_PRESETS)[number];
export const DEFAULT_TOLERANCE_SECONDS = 300;

export interface SignatureSpec {
  preset: SignaturePreset;
  /** the signing secret's connection as the author named it (id, webhook/<name>) */
  connection: string;
  /** the connection it resolved to in the automation's account at save */
  connection_id?: string | null;
  /** generic: the header carrying the signature */
  header?: string;
  /** generic: how the digest is written (default hex) */
  encoding?: 'hex' | 'base64';
  /** generic: text before the digest, e.g. "sha256=" */
  prefix?: string;
  /** stripe, slack: how old a signed timestamp may be (default 300 s) */
  tolerance_seconds?: number;
}

const hmac = (secret: string, ...parts: (string | Buffer)[]): Buffer => {
  const h = createHmac('sha256', secret);
  for (const p of parts) h.update(p);
  return h.digest();
};

/** Equal digests, compared in constant time (a digest of the wrong length is simply unequal). */
function sameDigest(expected: Buffer, given: string, encoding: 'hex' | 'base64'): boolean {
  const text = given.trim();
  if (encoding === 'hex' && !/^[0-9a-fA-F]{64}$/.test(text)) return false;
  const got = Buffer.from(text, encoding);
  return got.length === expected.length && timingSafeEqual(got, expected);
}

/** A signed timestamp within the tolerance, or why not. */
function fresh(ts: string | undefined, nowMs: number, toleranceSeconds: number, header: string): string | null {
  if (!ts || !/^\d{1,12}$/.test(ts)) return `the ${header} timestamp is missing or not a number`;
  const age = Math.round(nowMs / 1000 - Number(ts));
  if (Math.abs(age) > toleranceSeconds) return `the signed timestamp is ${Math.abs(age)} s ${age >= 0 ? 'old' : 'in the future'}, past the ${toleranceSeconds} s tolerance (a replayed or delayed request)`;
  return null;
}

/**
 * Check a delivery's signature. `headers` have lower-case names (as Node gives them). Returns
 * null when it is valid, else the reason in a sentence fragment — never the expected digest.
 */
export function checkSignature(spec: SignatureSpec, secret: string, raw: Buffer, given: Record<string, string>, nowMs = Date.now()): string | null {
  // own names only: a header named like an Object.prototype member (constructor, toString) is just absent
  const headers: Record<string, string | undefined> = Object.assign(Object.create(null) as Record<string, string>, given);
  const tolerance = spec.tolerance_seconds ?? DEFAULT_TOLERANCE_SECONDS;
  switch (spec.preset) {
    case 'stripe': {
      const header = headers['stripe-signature'];
      if (!header) return 'the Stripe-Signature header is missing';
      const parts = header.split(',').map((p) => p.trim().split('='));
      const t = parts.find(([k]) => k === 't')?.[1];
      const late = fresh(t, nowMs, tolerance, 'Stripe-Signature');
      if (late) return late;
      const expected = hmac(secret, `${t}.`, raw);
      const given = parts.filter(([k]) => k === 'v1').map(([, v]) => v ?? '');
      if (!given.length) return 'the Stripe-Signature header has no v1 signature';
      return given.some((v) => sameDigest(expected, v, 'hex')) ? null : 'the Stripe-Signature does not match the body and the signing secret';
    }
    case 'github': {
      const header = headers['x-hub-signature-256'];
      if (!header) return 'the X-Hub-Signature-256 header is missing';
      if (!header.startsWith('sha256=')) return 'the X-Hub-Signature-256 header does not start with sha256=';
      return sameDigest(hmac(secret, raw), header.slice('sha256='.length), 'hex') ? null : 'the X-Hub-Signature-256 does not match the body and the signing secret';
    }
    case 'shopify': {
      const header = headers['x-shopify-hmac-sha256'];
      if (!header) return 'the X-Shopify-Hmac-Sha256 header is missing';
      return sameDigest(hmac(secret, raw), header, 'base64') ? null : 'the X-Shopify-Hmac-Sha256 does not match the body and the signing secret';
    }
    case 'slack': {
      const header = headers['x-slack-signature'];
      if (!header) return 'the X-Slack-Signature header is missing';
      const ts = headers['x-slack-request-timestamp'];
      const late = fresh(ts, nowMs, tolerance, 'X-Slack-Request-Timestamp');
      if (late) return late;
      if (!header.startsWith('v0=')) return 'the X-Slack-Signature header does not start with v0=';
      return sameDigest(hmac(secret, `v0:${ts}:`, raw), header.slice(3), 'hex') ? null : 'the X-Slack-Signature does not match the body and the signing secret';
    }
    case 'generic': {
      const name = (spec.header ?? '').toLowerCase();
      const header = headers[name];
      if (!header) return `the ${spec.header} header is missing`;
      const prefix = spec.prefix ?? '';
      if (!header.startsWith(prefix)) return `the ${spec.header} header does not start with ${prefix}`;
      return sameDigest(hmac(secret, raw), header.slice(prefix.length), spec.encoding ?? 'hex') ? null : `the ${spec.header} does not match the body and the signing secret`;
    }
  }
}

/** Sign as a provider would (tests and the benchmark use it; a person can check a secret with it). */
export function signFor(preset: Exclude<SignaturePreset, 'generic'>, secret: string, raw: Buffer | string, nowMs = Date.now()): Record<string, string> {
  const body = typeof raw === 'string' ? Buffer.from(raw) : raw;
  const t = String(Math.floor(nowMs / 1000));
  switch (preset) {
    case 'stripe':
      return { 'stripe-signature': `t=${t},v1=${hmac(secret, `${t}.`, body).toString('hex')}` };
    case 'github':
      return { 'x-hub-signature-256': `sha256=${hmac(secret, body).toString('hex')}` };
    case 'shopify':
      return { 'x-shopify-hmac-sha256': hmac(secret, body).toString('base64') };
    case 'slack':
      return { 'x-slack-request-timestamp': t, 'x-slack-signature': `v0=${hmac(secret, `v0:${t}:`, body).toString('hex')}` };
  }
}
