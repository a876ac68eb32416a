import { afterAll, describe, expect, it } from 'vitest';
import { faultRuns } from './helpers/faults.js';
import { testDbKind } from './helpers/db.js';
import { soak } from '../bench/soak.js';
import { soakSummary, soakTable } from '../bench/soak/report.js';
import { MIX } from '../bench/soak/sessions.js';

/**
 * The soak of `npm run soak` (bench/soak.ts), short: a spawned `switchboard serve` with its
 * workers, MCP sessions over Streamable HTTP looping the operator's mix, webhooks at a steady rate
 * whose runs call a local app. Asserted: no error at all, every kind of call in the mix made
 * (the expected refusals included), every webhook answered 2xx with exactly one run that finished,
 * and serve's resident memory not growing beyond a generous bound after warm-up — a leak, not
 * speed: nothing here looks at latency.
 *
 * PostgreSQL only, to keep CI time low: its test database is a template copy made in a moment
 * and serve's queries run in other processes, where the embedded database would first be migrated
 * into a data directory (seconds), then opened by serve, and opened again for the counts, with
 * every query on serve's one thread. 40 sessions rather than 200: the run shares a 2-core CI
 * machine with the rest of the suite; `npm run soak` runs 200.
 */

const SECONDS = Number(process.env.SOAK_TEST_SECONDS || 30);
const SESSIONS = 40;
const RATE = 20;
/** RSS may grow this much from the end of warm-up (half the run) to the end: a leak of a few KB per call over 30 s shows well above the sampling noise */
const RSS_BOUND = 0.5;

const runs = faultRuns();
afterAll(() => runs.close());

describe.skipIf(testDbKind() !== 'postgres')(
  `a ${SECONDS} s soak: ${SESSIONS} MCP sessions over HTTP and ${RATE} webhooks/s against a spawned serve (PostgreSQL only: no migration of a data directory, the queries out of serve's thread, so the least CI time)`,
  { timeout: (SECONDS + 120) * 1000 },
  () => {
    it("makes every kind of call without an error, runs every acknowledged webhook once to the end, and keeps serve's memory flat after warm-up", async () => {
      const r = await soak(await runs.context(), {
        seconds: SECONDS,
        sessions: SESSIONS,
        rate: RATE,
        thinkMs: 200,
        warmupSeconds: SECONDS / 2,
        drainMs: 30_000,
        // a refusal as busy is the gate's answer to slowness (src/mcp/tool-gate.ts), and this test
        // asserts no speed: on a loaded CI machine a call may wait longer than the default 5 s
        serveEnv: { SWITCHBOARD_BUSY_WAIT_MS: '30000' },
      });
      const story = `${soakTable(r)}\n${soakSummary(r, RSS_BOUND).text}\n${runs.lines.join('\n')}`;

      expect(r.errors, story).toBe(0);
      expect(r.errorSamples, story).toEqual([]);
      // nor did serve log an unexpected error meanwhile (its LOG_LEVEL here is error)
      expect(r.serveLog.errors, story).toBe(0);
      // every kind of call in the mix, and both kinds of expected refusal (support: no reason; franchise admin: another customer)
      for (const tool of MIX) expect(r.calls.byTool[tool]?.calls ?? 0, `${tool}\n${story}`).toBeGreaterThan(0);
      expect(r.calls.byTool.switch_account!.refused, story).toBeGreaterThan(0);
      expect(r.calls.byTool.check_health!.refused, story).toBeGreaterThan(0);

      // every webhook sent was answered 2xx, and each has exactly one run, finished
      expect(r.webhooks.acked, story).toBeGreaterThan(RATE * SECONDS * 0.5);
      expect(r.webhooks.acked, story).toBe(r.webhooks.sent);
      expect(r.webhooks.runs, story).toBe(r.webhooks.acked);
      expect(r.webhooks.finished, story).toBe(r.webhooks.acked);
      // as the world has it: most succeed, the ledger's are refused by the app, updates are filtered
      expect(Object.keys(r.webhooks.byStatus).sort(), story).toEqual(['failed', 'filtered', 'succeeded']);

      expect(r.intervals.every((i) => Number.isFinite(i.rssMb)), story).toBe(true);
      expect(r.rss.growth, story).toBeLessThanOrEqual(RSS_BOUND);
    });
  },
);
