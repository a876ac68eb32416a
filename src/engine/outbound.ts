import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import http from 'node:http';
import https from 'node:https';

/**
 * Outbound HTTP for http steps, guarded: the address a request connects to is checked after DNS
 * resolution (the connection goes to exactly the address checked, so a rebinding DNS answer
 * cannot slip through) and again on every redirect; loopback, private, link-local (cloud
 * metadata at 169.254.169.254), carrier-grade NAT, multicast and unspecified addresses are
 * refused unless the policy allows them (SWITCHBOARD_OUTBOUND_ALLOW). Every request has a
 * deadline and a cap on the size of the answer.
 */

export type OutboundErrorCode = 'blocked_address' | 'dns_failed' | 'connection_refused' | 'timeout' | 'tls_failed' | 'response_too_large';

export class OutboundError extends Error {
  constructor(
    readonly code: OutboundErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'OutboundError';
  }
}

const BLOCKED = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) BLOCKED.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['64:ff9b::', 96]] as const) BLOCKED.addSubnet(net, bits, 'ipv6');

export interface OutboundPolicy {
  /** addresses or CIDR ranges that are allowed although blocked by default, e.g. 127.0.0.1 in tests */
  allow: string[];
  /**
   * single ports allowed although their address is blocked, as `address:port` (`[v6]:port`): the
   * demo apps in demo mode, so that demo mode opens exactly their port and not all of loopback
   */
  allowEndpoints?: string[];
}

function allowList(policy: OutboundPolicy): BlockList {
  const list = new BlockList();
  for (const entry of policy.allow) {
    const [addr, bits] = entry.split('/');
    const family = isIP(addr!) === 6 ? 'ipv6' : 'ipv4';
    if (bits !== undefined) list.addSubnet(addr!, Number(bits), family);
    else list.addAddress(addr!, family);
  }
  return list;
}

/** Parse SWITCHBOARD_OUTBOUND_ALLOW: addresses and CIDR ranges, comma-separated; a clear error for anything else. */
export function parseAllow(text: string | undefined): string[] {
  const items = (text ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  for (const item of items) {
    const [addr, bits, extra] = item.split('/');
    const v = isIP(addr ?? '');
    const max = v === 6 ? 128 : 32;
    if (!v || extra !== undefined || (bits !== undefined && !(/^\d+$/.test(bits) && Number(bits) <= max))) {
      throw new Error(`SWITCHBOARD_OUTBOUND_ALLOW: '${item}' is not an IP address or CIDR range (e.g. 127.0.0.1, 10.0.0.0/8).`);
    }
  }
  return items;
}

/** Why an address (on `port`, when known) may not be called, or null when it may. */
export function addressRefusal(address: string, policy: OutboundPolicy, allowed = allowList(policy), port?: number): string | null {
  let addr = address;
  let family: 'ipv4' | 'ipv6' = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
  // an IPv4 address written as IPv6 (::ffff:127.0.0.1) is the IPv4 address
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr);
  if (mapped) {
    addr = mapped[1]!;
    family = 'ipv4';
  }
  if (allowed.check(addr, family)) return null;
  if (port !== undefined && policy.allowEndpoints?.includes(`${family === 'ipv6' ? `[${addr}]` : addr}:${port}`)) return null;
  return BLOCKED.check(addr, family) ? `${address} is a loopback, private, link-local or reserved address` : null;
}

export interface OutboundRequest {
  method: string;
  url: URL;
  headers: Record<string, string>;
  body?: Buffer | undefined;
  timeoutMs: number;
  maxBytes: number;
  /** redirects followed at most (each one checked like the first request) */
  maxRedirects?: number;
  /** headers dropped when a redirect leaves the first request's origin (credentials) */
  credentialHeaders?: string[];
}

export interface OutboundResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** the URL that answered, after redirects */
  url: URL;
}

function classify(err: NodeJS.ErrnoException, url: URL): OutboundError {
  if (err instanceof OutboundError) return err;
  const code = err.code ?? '';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'ENODATA') return new OutboundError('dns_failed', `${url.hostname} could not be resolved (${code}).`);
  if (code === 'ECONNREFUSED') return new OutboundError('connection_refused', `${url.host} refused the connection.`);
  if (/CERT|TLS|SSL|EPROTO/.test(code) || /certificate|tls|ssl/i.test(err.message)) return new OutboundError('tls_failed', `TLS with ${url.host} failed (${code || 'handshake'}).`);
  if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') {
    return new OutboundError('connection_refused', `The connection to ${url.host} failed (${code}).`);
  }
  return new OutboundError('connection_refused', `The request to ${url.host} failed (${code || err.message.slice(0, 80)}).`);
}

/** One request, no redirects: connect only to an allowed address, honour the deadline and the size cap. */
function once(req: OutboundRequest, url: URL, policy: OutboundPolicy, allowed: BlockList, signal: AbortSignal): Promise<OutboundResponse> {
  return new Promise((resolve, reject) => {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    if (isIP(host)) {
      const why = addressRefusal(host, policy, allowed, port);
      if (why) return reject(new OutboundError('blocked_address', `Calling ${url.host} is refused: ${why}.`));
    }
    const lookup: LookupFunction = (hostname, options, cb) => {
      dnsLookup(hostname, { all: true }, (err, addresses: LookupAddress[]) => {
        if (err) return cb(err, '', 0);
        const ok = addresses.find((a) => addressRefusal(a.address, policy, allowed, port) === null);
        if (!ok) {
          const why = addressRefusal(addresses[0]!.address, policy, allowed, port);
          return cb(new OutboundError('blocked_address', `Calling ${hostname} is refused: it resolves to ${why}.`) as NodeJS.ErrnoException, '', 0);
        }
        if ((options as { all?: boolean }).all) return (cb as unknown as (e: null, a: LookupAddress[]) => void)(null, [ok]);
        cb(null, ok.address, ok.family);
      });
    };
    const mod = url.protocol === 'https:' ? https : http;
    // a socket of its own per request (measured: faster here than a kept-alive pool, and no pooled
    // socket can outlive the check that made it)
    const r = mod.request(url, { method: req.method, headers: req.headers, lookup, signal, agent: false }, (res) => {
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > req.maxBytes) {
        res.destroy();
        return reject(new OutboundError('response_too_large', `The answer of ${url.host} is ${declared} bytes, more than the limit of ${req.maxBytes}.`));
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > req.maxBytes) {
          res.destroy();
          reject(new OutboundError('response_too_large', `The answer of ${url.host} is more than the limit of ${req.maxBytes} bytes.`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
        resolve({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks), url });
      });
      res.on('error', (err) => reject(signal.aborted ? timeoutError(req, url) : classify(err, url)));
    });
    r.on('error', (err: NodeJS.ErrnoException) => reject(signal.aborted ? timeoutError(req, url) : classify(err, url)));
    if (req.body) r.end(req.body);
    else r.end();
  });
}

const timeoutError = (req: OutboundRequest, url: URL) => new OutboundError('timeout', `${url.host} did not answer within ${req.timeoutMs} ms.`);

/** The request, following redirects (each checked again); credential headers never leave the first origin. */
export async function send(req: OutboundRequest, policy: OutboundPolicy): Promise<OutboundResponse> {
  const allowed = allowList(policy);
  const signal = AbortSignal.timeout(req.timeoutMs);
  let url = req.url;
  let method = req.method;
  let body = req.body;
  let headers = { ...req.headers };
  for (let hop = 0; ; hop++) {
    const res = await once({ ...req, method, headers, body }, url, policy, allowed, signal);
    const location = res.headers.location;
    if (![301, 302, 303, 307, 308].includes(res.status) || !location || hop >= (req.maxRedirects ?? 5)) return res;
    const next = new URL(location, url);
    if (next.protocol !== 'http:' && next.protocol !== 'https:') return res;
    if (next.origin !== req.url.origin) {
      const drop = new Set((req.credentialHeaders ?? []).map((h) => h.toLowerCase()));
      headers = Object.fromEntries(Object.entries(headers).filter(([k]) => !drop.has(k.toLowerCase())));
    }
    if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === 'POST')) {
      method = 'GET';
      body = undefined;
      headers = Object.fromEntries(Object.entries(headers).filter(([k]) => !/^content-(type|length)$/i.test(k)));
    }
    url = next;
  }
}
