/**
 * How check_health turns one account's figures into a status and its reasons (the figures are
 * read by src/core/operations/health.ts). The thresholds:
 *
 *   failing   any of
 *             - failure rate ≥ 50 % with ≥ 3 failed runs in the window
 *             - an automation whose runs in the window all failed, at least 3 of them
 *             - an expired or disconnected connection that pauses automations (they run nothing)
 *   degraded  any of
 *             - failure rate ≥ 5 % (at least one failure)
 *             - failure rate at least twice the previous window's, with ≥ 3 failed runs (a
 *               previous window with runs and no failure counts as rate 0)
 *             - a failing automation: failures in the window and no success since the last one,
 *               or a failure rate of its own ≥ 50 %
 *             - open failure groups
 *             - an expired or disconnected connection (pausing nothing)
 *             - unrouted or rejected deliveries in the window
 *             - throttled step attempts in the window (the connection's budget or the app's 429)
 *             - queue lag: the oldest due queued execution has waited > 60 s
 *             - silence: an automation that usually receives deliveries received none (below)
 *   idle      nothing received and no run ended in the window, and none of the above
 *   healthy   otherwise
 *
 * The failure rate is failed / (succeeded + failed): filtered and cancelled runs are neither.
 *
 * Silence: an automation's baseline is the mean of the deliveries it received in each of the 4
 * windows before the current one (a window with none counts as 0); it is silent when at least 3
 * of those windows had ≥ 5 deliveries and the current window has none. A schedule that sends
 * nothing at night is not silent in a 24h or 7d window; in a 1h window it needs a steady stream.
 *
 * Reason sentences carry figures, error codes, app slugs and times only: names, messages and
 * payload text are data and stay in fields.
 */

import { targetWord } from './words.js';

export const FAILING_RATE = 0.5;
export const FAILING_MIN_FAILURES = 3;
export const DEGRADED_RATE = 0.05;
export const RISING_FACTOR = 2;
export const RISING_MIN_FAILURES = 3;
export const QUEUE_LAG_SECONDS = 60;
export const SILENCE_WINDOWS = 4;
export const SILENCE_MIN_PER_WINDOW = 5;
export const SILENCE_MIN_WINDOWS = 3;

export type HealthStatus = 'healthy' | 'degraded' | 'failing' | 'idle';
export type Severity = 'failing' | 'degraded' | 'info';

export interface AutomationRef {
  id: string;
  name: string | null;
}

export interface Reason {
  code: string;
  severity: Severity;
  text: string;
  automations?: AutomationRef[];
}

export interface Figures {
  runs: { succeeded: number; failed: number; filtered: number; cancelled: number; throttled: number; failure_rate: number | null };
  previous: { succeeded: number; failed: number; failure_rate: number | null };
  deliveries: { received: number; accepted: number; routed: number; unrouted: number; duplicate: number; rejected: number; recorded: number; previous_received: number };
  last_success_at: Date | null;
  last_failure_at: Date | null;
  failing_automations: (AutomationRef & { succeeded: number; failed: number; last_failure_at: Date | null; last_success_at: Date | null })[];
  open_failure_groups: { groups: number; top: { target: string; error_code: string; upstream_status: number | null; count: number; first_seen: Date }[] };
  connections: { id: string; app: string; name: string; status: 'expired' | 'disconnected'; since: Date; pauses: number }[];
  paused_automations: (AutomationRef & { connection_id: string | null; app: string | null; connection_status: string | null })[];
  queue_lag_seconds: number | null;
  silent_automations: (AutomationRef & { baseline: number; windows: number })[];
}

export const rateOf = (succeeded: number, failed: number): number | null => (succeeded + failed === 0 ? null : failed / (succeeded + failed));

const pct = (r: number): string => `${Math.round(r * 1000) / 10} %`;
const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;
export const at = (d: Date): string => `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC`;

/** The status and reasons of one account, worst reasons first. `label` names the window ("the last 24h"). */
export function judge(f: Figures, label: string): { status: HealthStatus; reasons: Reason[] } {
  const reasons: Reason[] = [];
  const add = (code: string, severity: Severity, text: string, automations?: AutomationRef[]) =>
    reasons.push(automations ? { code, severity, text, automations } : { code, severity, text });
  const { runs, previous } = f;
  const total = runs.succeeded + runs.failed;
  const rate = runs.failure_rate;

  if (rate !== null && runs.failed > 0) {
    const sentence = `${runs.failed} of ${total} runs failed (${pct(rate)}) in ${label}.`;
    if (rate >= FAILING_RATE && runs.failed >= FAILING_MIN_FAILURES) add('failure_rate', 'failing', sentence);
    else if (rate >= DEGRADED_RATE) add('failure_rate', 'degraded', sentence);
    const prevRate = previous.failure_rate;
    if (prevRate !== null && rate >= RISING_FACTOR * prevRate && runs.failed >= RISING_MIN_FAILURES && rate > prevRate) {
      add('failure_rate_rising', 'degraded', `The failure rate rose to ${pct(rate)} from ${pct(prevRate)} in the window before (${previous.failed} of ${previous.succeeded + previous.failed} runs).`);
    }
  }

  const allFailed = f.failing_automations.filter((a) => a.succeeded === 0 && a.failed >= FAILING_MIN_FAILURES);
  if (allFailed.length) {
    const n = allFailed.reduce((s, a) => s + a.failed, 0);
    add('automations_all_failed', 'failing', `${plural(allFailed.length, 'automation')} failed every run in ${label} (${plural(n, 'failure')}).`, allFailed.map(ref));
  }
  const otherFailing = f.failing_automations.filter((a) => !allFailed.includes(a));
  if (otherFailing.length) {
    add('failing_automations', 'degraded', `${plural(otherFailing.length, 'automation')} failing in ${label}: failures with no success since, or half their runs failed.`, otherFailing.map(ref));
  }

  const pausing = f.paused_automations.filter((a) => a.connection_id !== null);
  if (pausing.length) {
    const apps = [...new Set(pausing.map((a) => (a.app ? `${a.app} ${a.connection_status ?? 'inactive'}` : 'a connection not active')))];
    add('automations_paused', 'failing', `${plural(pausing.length, 'automation')} paused by ${apps.join(', ')}: reconnect the connection (reconnect_connection).`, pausing.map(ref));
  }
  for (const c of f.connections) {
    if (c.pauses > 0 && pausing.some((a) => a.connection_id === c.id)) continue;
    add(`connection_${c.status}`, 'degraded', `A ${c.app} connection is ${c.status} since ${at(c.since)}${c.pauses ? `, pausing ${plural(c.pauses, 'automation')}` : ''}.`);
  }

  const g = f.open_failure_groups;
  if (g.groups > 0) {
    const top = g.top[0]!;
    add(
      'failure_groups',
      'degraded',
      `${plural(g.groups, 'open failure group')}; the largest: ${targetWord(top.target)} ${top.error_code}${top.upstream_status ? ` (${top.upstream_status})` : ''}, ${plural(top.count, 'failure')} since ${at(top.first_seen)}.`,
    );
  }

  const d = f.deliveries;
  if (d.unrouted > 0) add('unrouted', 'degraded', `${d.unrouted} of ${plural(d.received, 'delivery', 'deliveries')} unrouted in ${label} (no linked account has their routing key).`);
  if (d.rejected > 0) add('rejected', 'degraded', `${d.rejected} of ${plural(d.received, 'delivery', 'deliveries')} rejected in ${label} (malformed or failing signature checks).`);
  if (runs.throttled > 0) add('throttled', 'degraded', `${plural(runs.throttled, 'step attempt')} throttled by a rate limit in ${label}.`);
  if (f.queue_lag_seconds !== null && f.queue_lag_seconds > QUEUE_LAG_SECONDS) {
    add('queue_lag', 'degraded', `The oldest due queued execution has waited ${Math.round(f.queue_lag_seconds)} s (more than ${QUEUE_LAG_SECONDS} s).`);
  }
  for (const s of f.silent_automations) {
    add('silence', 'degraded', `An automation that usually receives ${Math.round(s.baseline * 10) / 10} deliveries in such a window received none in ${label}.`, [ref(s)]);
  }

  const problems = reasons.length;
  const ended = total + runs.filtered + runs.cancelled;
  const prevTotal = previous.succeeded + previous.failed;
  add(
    'activity',
    'info',
    `${plural(d.received, 'delivery', 'deliveries')} and ${plural(ended, 'finished run')} in ${label} (${runs.failed} failed); the window before: ${plural(d.previous_received, 'delivery', 'deliveries')}, ${prevTotal} runs (${previous.failed} failed).`,
  );
  if (f.last_success_at) add('last_success', 'info', `The last successful run ended at ${at(f.last_success_at)}.`);
  else if (total > 0 || prevTotal > 0) add('last_success', 'info', `No successful run in ${label} or the window before.`);

  const rank: Record<Severity, number> = { failing: 0, degraded: 1, info: 2 };
  reasons.sort((a, b) => rank[a.severity] - rank[b.severity]);
  const status: HealthStatus = reasons.some((r) => r.severity === 'failing')
    ? 'failing'
    : problems > 0
      ? 'degraded'
      : d.received === 0 && ended === 0
        ? 'idle'
        : 'healthy';
  return { status, reasons };
}

const ref = (a: AutomationRef): AutomationRef => ({ id: a.id, name: a.name });

/** The first problem's cause in slugs and codes, for roll-up sentences: "http http_401", "http connection_expired", "silence". */
export function causeOf(f: Figures, reasons: Reason[]): string | null {
  const top = f.open_failure_groups.top[0];
  if (top) return `${targetWord(top.target)} ${top.error_code}`;
  const c = f.connections[0];
  if (c) return `${c.app} connection_${c.status}`;
  const first = reasons.find((r) => r.severity !== 'info');
  return first ? first.code : null;
}
