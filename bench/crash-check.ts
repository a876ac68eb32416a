/**
 * The engine's crash check (`npm run crash-test`): `kill -9` of `switchboard serve` during a burst
 * of webhook deliveries, a restart, and the counts that show nothing acknowledged was lost:
 *   - every delivery answered 2xx is in the database, with its run;
 *   - every run reaches exactly one final state (none left queued or running, none twice);
 *   - calls to the app repeated after the crash carry the same Idempotency-Key as the first.
 *
 * Runs on PostgreSQL (a database made for the run and dropped after): CRASH_DATABASE_URL, else
 * postgres://postgres@127.0.0.1:5432. Options: --deliveries N (default 5000), --kill-after N
 * (acknowledged deliveries before the kill, default 40 % of them), --senders N (default 32). Like
 * a provider, a sender sends a delivery again until it is answered 2xx.
 * Exits non-zero when a count is wrong.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { sql as dsql } from 'drizzle-orm';
import { openDatabase } from '../src/db/client.js';
import { initialize } from '../src/core/tenants.js';
import { createAccount } from '../src/core/accounts.js';
import { addConnection } from '../src/core/connections.js';
import { createAutomation } from '../src/core/automations.js';
import { webhookPath, webhookToken } from '../src/core/webhooks.js';
import { Keyring, newMasterKey } from '../src/core/keyring.js';
import type { Core } from '../src/core/core.js';

const { values } = parseArgs({
  options: { deliveries: { type: 'string', default: '5000' }, 'kill-after': { type: 'string' }, senders: { type: 'string', default: '32' } },
});
const TOTAL = Number(values.deliveries);
const KILL_AFTER = Number(values['kill-after'] ?? Math.floor(TOTAL * 0.4));
const SENDERS = Number(values.senders);
const root = resolve(import.meta.dirname, '..');
const base = process.env.CRASH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432';
const dbName = `switchboard_crash_${Date.now()}`;

const admin = postgres(`${base}/postgres`, { max: 1, onnotice: () => {} });
await admin.unsafe(`create database ${dbName}`);
const url = `${base}/${dbName}`;

// the third-party app: answers 200 after a moment, remembering every Idempotency-Key it saw
const seen = new Map<string, number>();
const app = createServer((req, res) => {
  const key = String(req.headers['idempotency-key'] ?? '');
  seen.set(key, (seen.get(key) ?? 0) + 1);
  req.resume();
  setTimeout(() => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  }, 5);
});
await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
const appBase = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;

const master = newMasterKey();
const database = await openDatabase({ url, max: 4 });
let serve: ChildProcess | null = null;
let failed = false;
try {
  await database.migrate();
  const init = await initialize(database.db, { adminEmail: 'crash@switchboard.test', switchMinutes: 30 });
  const core: Core = { db: database.db, tenantId: init.tenant.id, switchMinutes: 30, keys: new Keyring(master), secretArgs: true };
  const account = await createAccount(core, { name: 'Crash Co', slug: 'crash-co' });
  const conn = await addConnection(core, account, { app: 'http', credentials: { auth_kind: 'bearer', base_url: appBase, token: 'crash-token-0123456789' }, createdBy: null });
  await database.db.execute(dsql`update connections set rate_per_minute = 100000000 where id = ${conn.row.id}`);
  const { row } = await createAutomation(core, account, {
    name: 'Orders',
    createdBy: null,
    definition: {
      trigger: { type: 'webhook', dedupe: null },
      routing: null,
      retries: { max: 5 },
      steps: [
        { id: 'shape', kind: 'transform', value: { order: '{{ trigger.body.i }}' } },
        { id: 'send', kind: 'http', method: 'POST', url: `${appBase}/orders`, body: '{{ steps.shape.output }}', connection: conn.row.id },
        { id: 'done', kind: 'transform', value: '{{ steps.send.output.status }}' },
      ],
    },
  });
  const port = await freePort();
  const env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(DATABASE_URL|SWITCHBOARD_|PORT$)/.test(k))),
    DATABASE_URL: url,
    SWITCHBOARD_MASTER_KEY: master.toString('base64'),
    SWITCHBOARD_OUTBOUND_ALLOW: '127.0.0.1',
    SWITCHBOARD_DATA_DIR: mkdtempSync(join(tmpdir(), 'switchboard-crash-')),
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'error',
  } as Record<string, string>;
  const hook = `http://127.0.0.1:${port}${webhookPath(webhookToken(core, row))}`;

  const start = async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'src/cli.ts'), 'serve'], { env, cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
    for (let i = 0; i < 300; i++) {
      if (await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false)) return child;
      await sleep(100);
    }
    throw new Error('serve did not start');
  };

  serve = await start();
  const acked = new Set<string>();
  let refused = 0;
  let sent = 0;
  let killedAt = -1;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: SENDERS }, async () => {
      while (sent < TOTAL) {
        const i = sent++;
        // as providers do: a delivery not answered 2xx is sent again until it is
        for (;;) {
          try {
            const res = await fetch(hook, { method: 'POST', body: JSON.stringify({ i }), headers: { 'content-type': 'application/json' } });
            const body = (await res.json()) as { delivery_id?: string };
            if (res.status >= 200 && res.status < 300 && body.delivery_id) {
              acked.add(body.delivery_id);
              break;
            }
          } catch {
            // not answered (serve is down): nothing was promised
          }
          refused += 1;
          await sleep(100);
        }
        if (killedAt < 0 && acked.size >= KILL_AFTER) {
          killedAt = acked.size;
          serve!.kill('SIGKILL');
          console.log(`killed serve (SIGKILL) after ${killedAt} acknowledged deliveries, ${Math.round(performance.now() - t0)} ms into the burst`);
          await sleep(300);
          serve = await start();
          console.log('restarted serve');
        }
      }
    }),
  );
  console.log(`sent ${TOTAL} deliveries: ${acked.size} acknowledged (2xx); ${refused} attempts not answered while serve was down, each sent again`);

  // wait for every run to end: runs the killed process held come back when their lease lapses (30 s)
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  let open = -1;
  for (let i = 0; i < 240; i++) {
    open = (await sql<{ open: number }[]>`select count(*)::int as open from executions where status in ('queued', 'running')`)[0]!.open;
    if (open === 0) break;
    await sleep(500);
  }
  const ids = [...acked];
  const { stored } = (await sql<{ stored: number }[]>`select count(*)::int as stored from webhook_deliveries where id = any(${ids}::uuid[])`)[0]!;
  const { runs, distinctRuns } = (await sql<{ runs: number; distinctRuns: number }[]>`
    select count(*)::int as runs, count(distinct delivery_id)::int as "distinctRuns" from executions where delivery_id = any(${ids}::uuid[])`)[0]!;
  const finals = await sql<{ status: string; n: number }[]>`select status, count(*)::int as n from executions group by status order by status`;
  const { allDeliveries, allRuns } = (await sql<{ allDeliveries: number; allRuns: number }[]>`
    select (select count(*)::int from webhook_deliveries) as "allDeliveries", (select count(*)::int from executions) as "allRuns"`)[0]!;
  await sql.end();
  const repeated = [...seen.values()].filter((n) => n > 1).length;
  const calls = [...seen.values()].reduce((a, b) => a + b, 0);
  const malformed = [...seen.keys()].filter((k) => !/^[0-9a-f-]{36}:send$/.test(k)).length;

  const check = (ok: boolean, line: string) => {
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${line}`);
    if (!ok) failed = true;
  };
  check(stored === acked.size, `acknowledged deliveries in the database: ${stored} of ${acked.size}`);
  check(runs === acked.size && distinctRuns === acked.size, `runs of acknowledged deliveries: ${runs} (one each: ${distinctRuns} distinct)`);
  check(open === 0, `runs still queued or running: ${open}`);
  check(finals.every((f) => f.status === 'succeeded'), `final states: ${finals.map((f) => `${f.status} ${f.n}`).join(', ')}`);
  check(seen.size === allRuns, `runs that called the app: ${seen.size} distinct Idempotency-Keys for ${allRuns} runs`);
  console.log(
    `     recorded but never answered (serve died between commit and answer; the sender sent them again): ${allDeliveries - acked.size} — ` +
      'a provider\'s resend runs again unless the automation de-duplicates (trigger.dedupe)',
  );
  check(malformed === 0, `calls without an <execution>:<step> Idempotency-Key: ${malformed}`);
  console.log(`     calls to the app: ${calls}; repeated after the crash with the same Idempotency-Key: ${repeated} runs (${calls - seen.size} extra calls)`);
} finally {
  serve?.kill('SIGKILL');
  await database.close();
  app.close();
  await admin.unsafe(`drop database if exists ${dbName} with (force)`).catch(() => {});
  await admin.end();
}
process.exit(failed ? 1 : 0);

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function freePort(): Promise<number> {
  return new Promise((resolvePort) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolvePort(port));
    });
  });
}
