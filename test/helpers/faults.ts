import { rmSync } from 'node:fs';
import { testDatabase, testDbKind, type TestDatabase } from './db.js';
import { CLI, cliEnv, repoRoot, tempDataDir } from './spawn.js';
import { pgliteTarget, postgresTarget, type FaultContext } from '../../bench/faults/harness.js';

/**
 * The fault scenarios of `npm run faults` (bench/faults/) run by tests: each on a fresh database
 * of the test's kind — an embedded PGlite data directory (the spawned CLI and the test take
 * turns on it), or a copy of the PostgreSQL template — with the CLI as the tests spawn it.
 */
export interface FaultRun {
  context(): Promise<FaultContext>;
  /** the scenarios' progress lines, to show with a failed expectation */
  lines: string[];
  close(): Promise<void>;
}

export function faultRuns(): FaultRun {
  const dirs: string[] = [];
  const dbs: TestDatabase[] = [];
  const lines: string[] = [];
  const env = cliEnv({ LOG_LEVEL: 'error' });
  const log = (l: string) => lines.push(l);
  return {
    lines,
    async context() {
      if (testDbKind() === 'pglite') {
        const dir = tempDataDir();
        dirs.push(dir);
        return { target: pgliteTarget(dir), cli: CLI, cwd: repoRoot, env, log };
      }
      const db = await testDatabase();
      dbs.push(db);
      return { target: postgresTarget(db.url!), cli: CLI, cwd: repoRoot, env, log };
    },
    async close() {
      for (const db of dbs) await db.close();
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    },
  };
}
