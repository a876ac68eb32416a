import { openDatabase } from '../src/db/client.js';
import { initialize } from '../src/core/tenants.js';
import { createAccount } from '../src/core/accounts.js';
import { createAutomation } from '../src/core/automations.js';
import { webhookPath, webhookToken } from '../src/core/webhooks.js';
import { Keyring, newMasterKey } from '../src/core/keyring.js';
import type { Core } from '../src/core/core.js';
import { startHttp } from '../src/http/server.js';
import { execFile } from 'node:child_process';
import { join } from 'node:path';

/**
 * Webhook ingest: deliveries durably recorded (delivery row + queued run, one transaction, then
 * 202) per second over HTTP on loopback, `clients` senders at once (in a process of their own:
 * bench/ingest-sender.mjs), for `seconds`. No worker runs meanwhile: this is the intake alone.
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
    // the senders run in a process of their own, as a provider does: their HTTP client's work is not the server's
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, [join(import.meta.dirname, 'ingest-sender.mjs'), url, String(opts.clients), String(opts.seconds)], { timeout: (opts.seconds + 60) * 1000 }, (err, stdout) =>
        err ? reject(err) : resolve(stdout),
      );
    });
    const { accepted, other, wall, p50, p99 } = JSON.parse(out.trim().split('\n').pop()!) as { accepted: number; other: number; wall: number; p50: number; p99: number };
    return { clients: opts.clients, accepted, perSecond: (accepted / wall) * 1000, other, p50, p99 };
  } finally {
    await http.close();
    await database.close();
  }
}
