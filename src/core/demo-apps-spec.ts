import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * What the demo seed (src/core/demo.ts) and the demo apps' server (src/http/demo-apps.ts) agree
 * on: where the demo apps listen, their paths, and the prefixes that make a made-up key live or
 * revoked.
 */
export const DEMO_HOST = '127.0.0.1';
export const MINDBODY_LIVE_PREFIX = 'demo-mb-live-';
export const MINDBODY_REVOKED_PREFIX = 'demo-mb-revoked-';
export const LEDGER_PREFIX = 'demo-ledger-';
export const MINDBODY_PATH = '/mindbody/public/v6';
export const LEDGER_PATH = '/ledger/v1';

/** A port free on 127.0.0.1 right now: where the demo seed points the demo apps before they first run. */
export async function freeDemoPort(): Promise<number> {
  const s = createServer();
  const port = await new Promise<number>((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, DEMO_HOST, () => resolve((s.address() as AddressInfo).port));
  });
  await new Promise((r) => s.close(r));
  return port;
}
