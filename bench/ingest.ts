import { openDatabase } from '../src/db/client.js';
import { initialize } from '../src/core/tenants.js';
import { createAccount } from '../src/core/accounts.js';
import { createAutomation } from '../src/core/automations.js';
import { webhookPath, webhookToken } from '../src/core/webhooks.js';
import { Keyring, newMasterKey } from '../src/core/keyring.js';
import type { Core } from '../src/core/core.js';
import { startHttp } from '../src/http/server.js';
import { percentile } from './stats.js';

/**
 * Webhook ingest: deliveries durably recorded (delivery row + queued run, one transaction, then
 * 202) per second over HTTP on loopback, `clients` senders at once, for `seconds`. No worker
 * runs meanwhile: this is the intake alone.
 */
export interface IngestResult {
  clients: number;
  accepted: number;
  perSecond: number;
  other: number;
  p50: number;
  p99: number;
}

export async function ingestRate(opts: { url?: string; clients: number; seconds: number }): Promise<IngestResult> {
  const database = await openDatabase({ url: opts.url, max: opts.clients + 2 });
  await database.migrate();
  const init = await initialize(database.db, { adminEmail: 'ingest@switchboard.test', switchMinutes: 30 });
  const core: Core = { db: database.db, tenantId: init.tenant.id, switchMinutes: 30, keys: new Keyring(newMasterKey()), secretArgs: true };
  const http = await startHttp({ core, database, port: 0, host: '127.0.0.1' });
  try {
    const account = await createAccount(core, { name: 'Ingest Co', slug: 'ingest-co' });
    const { row } = await createAutomation(core, account, {
      name: 'Orders',
      createdBy: null,
      definition: { trigger: { type: 'webhook', dedupe: null }, routing: null, retries: { max: 3 }, steps: [{ id: 'shape', kind: 'transform', value: '{{ trigger.body }}' }] },
    });
    const url = `${new URL(http.url).origin}${webhookPath(webhookToken(core, row))}`;
    const body = JSON.stringify({ id: 'evt_1', type: 'order.created', data: { order: 'o-1', total: 1250, lines: [{ sku: 'a', qty: 2 }] } });
    const send = () => fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    for (let i = 0; i < 50; i++) await (await send()).arrayBuffer(); // warm-up
    let accepted = 0;
    let other = 0;
    const lat: number[] = [];
    const end = performance.now() + opts.seconds * 1000;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: opts.clients }, async () => {
        while (performance.now() < end) {
          const s = performance.now();
          const res = await send();
          await res.arrayBuffer();
          lat.push(performance.now() - s);
          if (res.status === 202) accepted += 1;
          else other += 1;
        }
      }),
    );
    const wall = performance.now() - t0;
    return { clients: opts.clients, accepted, perSecond: (accepted / wall) * 1000, other, p50: percentile(lat, 50), p99: percentile(lat, 99) };
  } finally {
    await http.close();
    await database.close();
  }
}
