import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Core } from '../core/core.js';
import { BUILTIN_APPS } from '../core/apps.js';
import { perCore } from '../core/ttl-cache.js';
import { queueState } from './readiness.js';

/**
 * What `/metrics` exposes, in the Prometheus text format: counters kept by the parts that know
 * the outcome (webhook ingress, the worker, the http step) and gauges read from the database at
 * scrape time. Each core has its own registry (tests, and several servers in one process, never
 * mix their counts); the process metrics (CPU, memory, event loop) are one registry per process.
 *
 * Labels are low-cardinality by construction: statuses, error codes, HTTP status classes and
 * app slugs of the built-in catalogue — never an account, a name, a host or a URL. A tenant's
 * own apps are counted as `custom` (their slugs are names its people chose).
 *
 * `/metrics` is not authenticated, like `/healthz` and `/readyz`: it exposes counts only.
 */
export interface Metrics {
  registry: Registry;
  /** webhook requests by outcome: the delivery's status, not_found (no automation has that URL), too_large */
  deliveries: Counter<'status'>;
  /** executions that reached a final state, by that state */
  executions: Counter<'status'>;
  /** the claim statement of the worker, in seconds */
  claimSeconds: Histogram;
  /** requests sent by http steps, by app and HTTP status class or outbound error code */
  outbound: Counter<'app' | 'status'>;
  /** workers running in this process */
  workers: Gauge;
}

/** The queue gauges, set from one query right before each scrape (metricsText). */
interface QueueGauges {
  depth: Gauge;
  oldest: Gauge;
  accounts: Gauge;
  running: Gauge;
  leaseholders: Gauge;
  /** whether the queue query answered this scrape */
  database: Gauge;
}

const gaugesOf = new WeakMap<Registry, QueueGauges>();

export const metricsOf = perCore<Core, Metrics>((core) => {
  const registry = new Registry();
  const registers = [registry];
  gaugesOf.set(registry, {
    depth: new Gauge({ name: 'switchboard_queue_depth', help: `Queued executions, due or waiting for a retry (counted up to ${QUEUE_COUNT_CAP}: at the cap, at least that many)`, registers }),
    oldest: new Gauge({ name: 'switchboard_queue_oldest_due_seconds', help: 'Age of the oldest due queued execution (0 when none is due)', registers }),
    accounts: new Gauge({ name: 'switchboard_queue_accounts', help: 'Accounts with queued executions', registers }),
    running: new Gauge({ name: 'switchboard_executions_running', help: 'Executions held by a live worker lease, in every process', registers }),
    leaseholders: new Gauge({ name: 'switchboard_workers_leasing', help: 'Distinct workers, in every process, holding a live lease on an execution', registers }),
    database: new Gauge({ name: 'switchboard_database_up', help: 'Whether the database answered the queue query of this scrape (1) or not (0: the queue gauges are NaN)', registers }),
  });
  gateMetrics(core, registers);
  return {
    registry,
    deliveries: new Counter({ name: 'switchboard_webhook_deliveries_total', help: 'Webhook requests by outcome', labelNames: ['status'], registers }),
    executions: new Counter({ name: 'switchboard_executions_finished_total', help: 'Executions that reached a final state, by state', labelNames: ['status'], registers }),
    claimSeconds: new Histogram({
      name: 'switchboard_claim_duration_seconds',
      help: 'Duration of the worker claim statement',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    outbound: new Counter({ name: 'switchboard_outbound_requests_total', help: 'Requests sent by http steps, by app and status class or error code', labelNames: ['app', 'status'], registers }),
    workers: new Gauge({ name: 'switchboard_workers_running', help: 'Workers running in this process', registers }),
  };
});

/** The tool-call gate's gauges (src/mcp/tool-gate.ts), read at each scrape. */
function gateMetrics(core: Core, registers: Registry[]): void {
  const gate = core.toolGate;
  if (!gate) return;
  new Gauge({ name: 'switchboard_tool_calls_running', help: 'Tool calls running in this process', registers, collect() { this.set(gate.load.running); } });
  new Gauge({ name: 'switchboard_tool_calls_waiting', help: 'Tool calls waiting for a slot in this process', registers, collect() { this.set(gate.load.waiting); } });
  new Counter({ name: 'switchboard_tool_calls_busy_total', help: 'Tool calls refused as busy: every slot stayed taken for the wait bound', registers, collect() { this.reset(); this.inc(gate.refused); } });
}

/** What the queue depth counts at most (a backlog of a million costs no more to scrape than one of ten thousand). */
export const QUEUE_COUNT_CAP = 10_000;

const BUILTIN = new Set(BUILTIN_APPS.map((a) => a.slug));

/** The `app` label of a request: a built-in app's slug, `custom` for a tenant's own app, `http` without a connection. */
export const appLabel = (slug: string | null | undefined): string => (!slug ? 'http' : BUILTIN.has(slug) ? slug : 'custom');

/** The `status` label of an answer: its class (2xx … 5xx). */
export const statusClass = (status: number): string => `${Math.floor(status / 100)}xx`;

let processRegistry: Registry | null = null;

/** The text of a scrape: the process metrics, then this core's, its queue gauges read now. */
export async function metricsText(core: Core): Promise<{ contentType: string; text: string }> {
  const m = metricsOf(core);
  const gauges = gaugesOf.get(m.registry)!;
  const { database, ...queue } = gauges;
  try {
    const q = await queueState(core.db, { countCap: QUEUE_COUNT_CAP });
    queue.depth.set(q.depth);
    queue.oldest.set(q.oldestDueSeconds);
    queue.accounts.set(q.accounts);
    queue.running.set(q.running);
    queue.leaseholders.set(q.leaseholders);
    database.set(1);
  } catch {
    // no stale queue figures (and no reassuring zeros): NaN, with database_up 0
    for (const g of Object.values(queue)) g.set(Number.NaN);
    database.set(0);
  }
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  const text = (await processRegistry.metrics()) + '\n' + (await m.registry.metrics());
  return { contentType: m.registry.contentType, text };
}
