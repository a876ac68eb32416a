import type { IncomingMessage } from 'node:http';

/**
 * Which Host and Origin headers `switchboard serve` answers: the DNS-rebinding defence of the
 * Streamable HTTP transport rules ("servers MUST validate the Origin header"), for /mcp and the
 * pages alike.
 *
 *   Host    SWITCHBOARD_ALLOWED_HOSTS when set; else, on a loopback address, only loopback names
 *           (and the public URL's host); else not checked (a warning at start says so).
 *   Origin  absent: allowed (not a browser). Present: allowed when it is listed in
 *           SWITCHBOARD_ALLOWED_ORIGINS, is the public URL's origin, or is this server's own
 *           origin (the request's Host, which passed the check above). Anything else, "null"
 *           included, gets 403.
 */
export interface RequestGuardOptions {
  /** the address the server listens on */
  listenHost: string;
  publicUrl?: string | undefined;
  allowedHosts?: readonly string[] | undefined;
  allowedOrigins?: readonly string[] | undefined;
}

export interface Refusal {
  error: 'forbidden_host' | 'forbidden_origin';
  message: string;
}

export const isLoopback = (host: string): boolean => /^(127\.\d+\.\d+\.\d+|::1|\[::1\]|localhost)$/i.test(host);

/** The host name of a Host header ("[::1]:3000" → "[::1]", "Example.com:80" → "example.com"). */
const hostName = (host: string): string => host.trim().toLowerCase().replace(/:\d+$/, '');

/** An origin in its one canonical form, or null for text that is not one. */
function canonicalOrigin(o: string): string | null {
  try {
    const u = new URL(o);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.origin : null;
  } catch {
    return null;
  }
}

export class RequestGuard {
  private readonly hosts: Set<string> | null;
  /** the default loopback list, which also takes any 127.x.y.z */
  private readonly loopbackOnly: boolean;
  private readonly origins: Set<string>;

  constructor(opts: RequestGuardOptions) {
    const publicUrl = opts.publicUrl ? new URL(opts.publicUrl) : null;
    if (opts.allowedHosts?.length) this.hosts = new Set(opts.allowedHosts.map(hostName));
    else if (isLoopback(opts.listenHost)) this.hosts = new Set(['localhost', '[::1]', ...(publicUrl ? [publicUrl.hostname.toLowerCase()] : [])]);
    else this.hosts = null;
    this.origins = new Set(
      [...(opts.allowedOrigins ?? []), ...(publicUrl ? [publicUrl.origin] : [])].map(canonicalOrigin).filter((o): o is string => o !== null),
    );
    this.loopbackOnly = this.hosts !== null && !opts.allowedHosts?.length;
  }

  /** Whether Host headers go unchecked (a non-loopback address without SWITCHBOARD_ALLOWED_HOSTS). */
  get checksHost(): boolean {
    return this.hosts !== null;
  }

  private hostAllowed(host: string): boolean {
    if (this.hosts === null) return true;
    const name = hostName(host);
    return this.hosts.has(name) || (this.loopbackOnly && /^127\.\d+\.\d+\.\d+$/.test(name));
  }

  /** Why this request is refused, or null to serve it. */
  check(req: IncomingMessage): Refusal | null {
    const host = req.headers.host ?? '';
    if (!this.hostAllowed(host)) {
      return { error: 'forbidden_host', message: 'This server does not answer requests addressed to that host (SWITCHBOARD_ALLOWED_HOSTS).' };
    }
    const origin = req.headers.origin;
    if (origin === undefined) return null;
    const canonical = canonicalOrigin(origin);
    if (canonical !== null && (this.origins.has(canonical) || this.ownOrigin(canonical, host))) return null;
    return { error: 'forbidden_origin', message: 'Requests from that web origin are not allowed (SWITCHBOARD_ALLOWED_ORIGINS).' };
  }

  /** The server's own origin: a page it served, posting back to the host it was loaded from. */
  private ownOrigin(origin: string, host: string): boolean {
    if (!host) return false;
    const u = new URL(origin);
    return u.host === host.trim().toLowerCase() || u.host === host.trim().toLowerCase().replace(/:(80|443)$/, '');
  }
}
