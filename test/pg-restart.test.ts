import { describe, expect, it } from 'vitest';
import { testDbKind } from './helpers/db.js';
import { CLI, cliEnv, repoRoot } from './helpers/spawn.js';
import { passed } from '../bench/faults/harness.js';
import { pgRestart } from '../bench/faults/pg-restart.js';

/**
 * PostgreSQL restarted under load (the scenario of `npm run faults`, bench/faults/pg-restart.ts):
 * serve reconnects by itself, /readyz says not ready meanwhile, every webhook answered 2xx is in
 * the database with one finished run, and calls in flight fail with a sentence that says to try
 * again rather than hang or say "internal error".
 */

// the scenario brings its own PostgreSQL cluster (restarting the shared one would break the tests
// beside it), so it does not depend on the project's database; it runs once, in the PostgreSQL run
describe.runIf(testDbKind() === 'postgres')('PostgreSQL restarted under load (runs once, in the PostgreSQL project: it brings its own cluster)', { timeout: 180_000 }, () => {
  it('loses no acknowledged webhook, reconnects by itself, and answers every call in flight with a retryable sentence', async () => {
    const lines: string[] = [];
    const c = await pgRestart({ target: { kind: 'postgres', env: {}, open: () => Promise.reject(new Error('unused')) }, cli: CLI, cwd: repoRoot, env: cliEnv({ LOG_LEVEL: 'error' }), log: (l) => lines.push(l) });
    const story = [...lines, ...c.checks.map((x) => `${x.ok ? 'ok' : 'FAILED'}: ${x.line}`)].join('\n');
    expect(c.doneAtKill, story).toBeGreaterThan(0);
    expect(c.total, story).toBeGreaterThan(c.doneAtKill);
    expect(c, story).toMatchObject({ lost: 0, duplicates: 0 });
    expect(c.doneAfterRerun, story).toBe(c.total);
    // the outage was seen: readiness went down, and something was refused or failed as retryable
    expect(c.readyDuringOutage.length, story).toBeGreaterThan(0);
    expect(c.calls.retryable + Object.values(c.webhookRefusals).reduce((a, b) => a + b, 0), story).toBeGreaterThan(0);
    for (const x of c.checks) expect(x.ok, story).toBe(true);
    expect(passed(c)).toBe(true);
  });
});
