import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, cliEnv, repoRoot, runCli, tempDataDir, type CliResult } from './spawn.js';
import { testDatabase, testDbKind, type TestDatabase } from './db.js';

/**
 * A world made by the real CLI (`init --json`, then `demo --json`) on the test's kind of database,
 * and `switchboard call` run as its users: the admin, Sam Support (Switch Account) and Blair
 * Boring (admin of Boring Co only). Every output is kept, to check that no token is ever printed.
 */
export type CliUser = 'admin' | 'support' | 'boring';

export interface CliWorld {
  env: Record<string, string>;
  tokens: Record<CliUser, string>;
  outputs: string[];
  call(as: CliUser, args: string[], opts?: { input?: string; env?: Record<string, string> }): Promise<CliResult>;
  /** a script file of JSON lines (objects are written as JSON, strings as they are) */
  script(name: string, lines: (object | string)[]): string;
  close(): Promise<void>;
}

/** `switchboard ARGS` with `input` on its stdin. */
export function runCliWithInput(args: string[], env: Record<string, string>, input: string): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [...CLI, ...args], { env, cwd: repoRoot, timeout: 60_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
    child.stdin!.end(input);
  });
}

/** `ownToolsets`: leave SWITCHBOARD_TOOLSETS unset, so that `call` shows its own default surface. */
export async function cliWorld(opts: { ownToolsets?: boolean } = {}): Promise<CliWorld> {
  let db: TestDatabase | undefined;
  let env: Record<string, string>;
  if (testDbKind() === 'postgres') {
    db = await testDatabase(); // migrated, not initialized
    env = cliEnv({ DATABASE_URL: db.url, SWITCHBOARD_WORKERS: '0' });
  } else {
    env = cliEnv({ SWITCHBOARD_DATA_DIR: tempDataDir(), SWITCHBOARD_WORKERS: '0' });
  }
  if (opts.ownToolsets) delete env.SWITCHBOARD_TOOLSETS;
  const init = await runCli(['init', '--admin-email', 'admin@integrator.test', '--json'], env);
  if (init.code !== 0) throw new Error(`init failed: ${init.stderr}`);
  const demo = await runCli(['demo', '--json'], env);
  if (demo.code !== 0) throw new Error(`demo failed: ${demo.stderr}`);
  const users = JSON.parse(demo.stdout).users as { email: string; token: string }[];
  const tokens: Record<CliUser, string> = {
    admin: JSON.parse(init.stdout).token,
    support: users.find((u) => u.email === 'support@integrator.example')!.token,
    boring: users.find((u) => u.email === 'ops@boring.example')!.token,
  };
  const scripts = mkdtempSync(join(tmpdir(), 'switchboard-call-'));
  const outputs: string[] = [];
  return {
    env,
    tokens,
    outputs,
    async call(as, args, o = {}) {
      const e = o.env ?? { ...env, SWITCHBOARD_TOKEN: tokens[as] };
      const r = o.input === undefined ? await runCli(['call', ...args], e) : await runCliWithInput(['call', ...args], e, o.input);
      outputs.push(r.stdout, r.stderr);
      return r;
    },
    script(name, lines) {
      const file = join(scripts, name);
      writeFileSync(file, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n');
      return file;
    },
    close: async () => {
      await db?.close();
    },
  };
}
