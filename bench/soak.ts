import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { loadConfig } from '../src/config.js';
import { freePort, sleep, startCli, stop, until, withDatabase, type FaultContext, type Spawned } from './faults/harness.js';
import { CallLog, type ToolTally } from './soak/calls.js';
import { openSession, runSession } from './soak/sessions.js';
import { cpuSeconds, deliveryOutcomes, loggedProblems, rssMb, scrape, type ServeLog } from './soak/probes.js';
import { SoakApp, WebhookSender } from './soak/traffic.js';
import { seedSoakWorld } from './soak/world.js';

/**
 * The soak under load (issue 12, item 4; `npm run soak`, test/soak.test.ts): a real `switchboard
 * serve` with its workers on, `sessions` MCP sessions over Streamable HTTP each looping an
 * operator's mix (bench/soak/sessions.ts), and webhooks arriving at `rate` per second whose runs
 * call a local app (bench/soak/traffic.ts), for `seconds`. The world is seeded first through the
 * core functions (bench/soak/world.ts) on the target database — an embedded PGlite data directory
 * or a PostgreSQL database (bench/faults/harness.ts FaultTarget) — which is not touched again
 * while serve holds it.
 *
 * Sampled every `seconds / intervals`: the tool calls of that interval (count, p50, p99, errors),
 * executions finished per second (serve's /metrics), serve's resident memory (/proc/<pid>/status
 * VmRSS) and V8 heap, serve's CPU and this process's (the clients: is the load generator the
 * limit?), the webhooks sent. After the run: the sessions end, the queue drains, serve stops, and
 * every delivery answered 2xx is looked up: it must have exactly one run, in a final state.
 * Nothing here asserts: the caller judges the report (bench/soak-main.ts, test/soak.test.ts).
 */

export type SoakContext = Pick<FaultContext, 'target' | 'cli' | 'cwd' | 'env' | 'log'>;

export interface SoakOptions {
  seconds: number;
  sessions: number;
  /** webhooks per second */
  rate: number;
  /** mean think time of a session before each call, ms (default 200) */
  thinkMs?: number;
  /** samples over the run (default 10) */
  intervals?: number;
  /**
   * how long the warm-up lasts: RSS is compared from the sample that ends it to the last one.
   * Default: a fifth of the run, at least 90 s (resumable streams keep a minute of answers per
   * session, src/http/event-store.ts: memory settles once that has filled), at most half the run.
   */
  warmupSeconds?: number;
  /** settings for serve beside the database's (SWITCHBOARD_DB_POOL, SWITCHBOARD_TOOL_SLOTS, …) */
  serveEnv?: Record<string, string>;
  /** how long the queue may take to drain after the run (default: as long as the run, at least 120 s) */
  drainMs?: number;
}

export interface SoakInterval {
  /** seconds since the run started, at the end of the interval */
  at: number;
  calls: number;
  p50: number;
  p99: number;
  errors: number;
  busy: number;
  webhooks: number;
  executionsPerSecond: number;
  queueDepth: number;
  rssMb: number;
  /** serve's V8 heap in use at the sample (its /metrics): what RSS holds that is live objects */
  heapMb: number;
  /** CPU time over the interval, in % of one core: serve's, and this process's (the sessions' clients and the sender) */
  serveCpu: number;
  clientCpu: number;
}

export interface SoakReport {
  settings: {
    seconds: number;
    sessions: number;
    users: number;
    rate: number;
    thinkMs: number;
    /** intervals counted as warm-up */
    warmupIntervals: number;
    database: 'pglite' | 'postgres';
    serve: string;
    workers: number;
    dbPool: number;
    toolSlots: number;
    busyWaitMs: number;
  };
  intervals: SoakInterval[];
  calls: { total: number; errors: number; busy: number; refused: number; byTool: Record<string, ToolTally> };
  webhooks: {
    sent: number;
    acked: number;
    failed: number;
    /** acknowledged deliveries with a run in a final state */
    finished: number;
    /** runs of acknowledged deliveries (one each when nothing ran twice) */
    runs: number;
    byStatus: Record<string, number>;
  };
  /** seconds the queue took to drain after the run */
  drainSeconds: number;
  rss: { startMb: number; warmupMb: number; endMb: number; peakMb: number; growth: number };
  /** call errors plus webhooks not answered 2xx */
  errors: number;
  errorSamples: string[];
  /** what serve logged at level warn and error (LOG_LEVEL of the context's env), and the first few such lines */
  serveLog: ServeLog;
}

export async function soak(ctx: SoakContext, opts: SoakOptions): Promise<SoakReport> {
  const log = ctx.log ?? (() => {});
  const intervals = opts.intervals ?? 10;
  const warmupSeconds = opts.warmupSeconds ?? Math.min(Math.max(opts.seconds / 5, 90), opts.seconds / 2);
  const warmupIntervals = Math.min(Math.max(1, Math.ceil((warmupSeconds * intervals) / opts.seconds - 1e-9)), intervals - 1);
  const thinkMs = opts.thinkMs ?? 200;
  const app = new SoakApp();
  await app.start();
  let serve: Spawned | null = null;
  const clients: Client[] = [];
  try {
    const world = await withDatabase(ctx.target, (database) => seedSoakWorld(database, { appBase: app.base, sessions: opts.sessions }));
    log(`seeded ${world.customers.length} customer accounts, ${world.users.length} users, ${world.hooks.length} webhook targets (${ctx.target.kind})`);

    const port = await freePort();
    const env = {
      ...ctx.env,
      ...ctx.target.env,
      SWITCHBOARD_MASTER_KEY: world.master.toString('base64'),
      SWITCHBOARD_OUTBOUND_ALLOW: '127.0.0.1',
      PORT: String(port),
      HOST: '127.0.0.1',
      ...opts.serveEnv,
    };
    const config = loadConfig(env);
    const origin = `http://127.0.0.1:${port}`;
    serve = startCli(ctx, ['serve'], env);
    const s = serve;
    await until(
      'serve to answer /healthz',
      async () => {
        if (s.child.exitCode !== null) throw new Error(`serve exited (${s.child.exitCode}): ${s.stderr().slice(-2000)}`);
        return fetch(`${origin}/healthz`).then((r) => r.ok, () => false);
      },
      (ok) => ok,
      60_000,
      100,
    );
    const rssStart = rssMb(s.child.pid!);

    const calls = new CallLog();
    const t0Open = performance.now();
    for (let i = 0; i < opts.sessions; i += 20) {
      const batch = Array.from({ length: Math.min(20, opts.sessions - i) }, (_, j) => openSession(`${origin}/mcp`, world.users[(i + j) % world.users.length]!.token));
      clients.push(...(await Promise.all(batch)));
    }
    log(`opened ${clients.length} MCP sessions in ${Math.round(performance.now() - t0Open)} ms; serve RSS ${rssStart.toFixed(0)} MB; running ${opts.seconds} s at ${opts.rate} webhooks/s`);

    const sender = new WebhookSender(origin, world.hooks, opts.rate);
    let stopped = false;
    const t0 = performance.now();
    sender.start();
    const loops = clients.map((client, i) =>
      runSession({ client, kind: world.users[i % world.users.length]!.kind, world, log: calls, thinkMs, stopped: () => stopped }),
    );

    const rows: SoakInterval[] = [];
    // executions finished, and when, at the last sample that read them
    let finishedBefore = { n: (await scrape(origin)).finished, at: 0 };
    let peak = rssStart;
    let serveCpuBefore = cpuSeconds(s.child.pid!);
    let clientCpuBefore = process.cpuUsage();
    const every = (opts.seconds * 1000) / intervals;
    for (let k = 1; k <= intervals; k++) {
      await sleep(Math.max(0, t0 + k * every - performance.now()));
      const at = (performance.now() - t0) / 1000;
      const c = calls.cut();
      const w = sender.cut();
      const m = await scrape(origin);
      const rss = rssMb(s.child.pid!);
      if (Number.isFinite(rss)) peak = Math.max(peak, rss);
      const prevAt = rows.length ? rows[rows.length - 1]!.at : 0;
      const serveCpu = cpuSeconds(s.child.pid!);
      const clientCpu = process.cpuUsage(clientCpuBefore);
      rows.push({
        at,
        calls: c.calls,
        p50: c.p50,
        p99: c.p99,
        errors: c.errors + w.failed,
        busy: c.busy,
        webhooks: w.sent,
        executionsPerSecond: (m.finished - finishedBefore.n) / (at - finishedBefore.at),
        queueDepth: m.queueDepth,
        rssMb: rss,
        heapMb: m.heapMb,
        serveCpu: ((serveCpu - serveCpuBefore) / (at - prevAt)) * 100,
        clientCpu: ((clientCpu.user + clientCpu.system) / 1e6 / (at - prevAt)) * 100,
      });
      if (Number.isFinite(m.finished)) finishedBefore = { n: m.finished, at };
      serveCpuBefore = serveCpu;
      clientCpuBefore = process.cpuUsage();
      log(`${at.toFixed(0)} s: ${c.calls} calls, p99 ${c.p99.toFixed(0)} ms, ${c.errors + w.failed} errors, RSS ${rss.toFixed(0)} MB`);
    }
    stopped = true;
    await Promise.all(loops);
    await sender.stop();
    await Promise.allSettled(clients.map(closeSession));
    clients.length = 0;

    const t0Drain = performance.now();
    const drainMs = opts.drainMs ?? Math.max(120_000, opts.seconds * 1000);
    const drained = await until('the queue to drain', () => scrape(origin), (m) => m.finished >= sender.acked.length, drainMs, 250).catch(
      (err: Error) => (log(err.message), null),
    );
    const drainSeconds = (performance.now() - t0Drain) / 1000;
    log(drained ? `queue drained in ${drainSeconds.toFixed(1)} s` : 'the queue did not drain');
    await stop(s);
    serve = null;
    const serveLog = loggedProblems(s.stderr());

    const outcome = await withDatabase(ctx.target, (database) => deliveryOutcomes(database, sender.acked));
    const tally = calls.tools();
    return {
      settings: {
        seconds: opts.seconds,
        sessions: opts.sessions,
        users: world.users.length,
        rate: opts.rate,
        thinkMs,
        warmupIntervals,
        database: ctx.target.kind,
        serve: ctx.cli.some((a) => a.endsWith('.ts')) ? 'tsx src/cli.ts' : ctx.cli.join(' '),
        workers: config.workers,
        dbPool: config.dbPool,
        toolSlots: config.toolSlots,
        busyWaitMs: config.busyWaitMs,
      },
      intervals: rows,
      calls: {
        total: calls.calls,
        errors: calls.errors,
        busy: calls.busy,
        refused: Object.values(tally).reduce((n, t) => n + t.refused, 0),
        byTool: tally,
      },
      webhooks: { sent: sender.sent, acked: sender.acked.length, failed: sender.failed, ...outcome },
      drainSeconds,
      rss: {
        startMb: rssStart,
        warmupMb: rows[warmupIntervals - 1]?.rssMb ?? rssStart,
        endMb: rows[rows.length - 1]!.rssMb,
        peakMb: peak,
        growth: rows[rows.length - 1]!.rssMb / (rows[warmupIntervals - 1]?.rssMb ?? rssStart) - 1,
      },
      errors: calls.errors + sender.failed,
      errorSamples: [...calls.errorSamples, ...sender.failures],
      serveLog,
    };
  } finally {
    await Promise.allSettled(clients.map(closeSession));
    if (serve) {
      serve.child.kill('SIGKILL');
      await serve.exited;
    }
    await app.close();
  }
}

/** The session ended as a client ends it (DELETE), then the client closed. */
async function closeSession(client: Client): Promise<void> {
  const transport = client.transport as { terminateSession?: () => Promise<void> } | undefined;
  await transport?.terminateSession?.().catch(() => {});
  await client.close();
}
