import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';

export const repoRoot = resolve(import.meta.dirname, '../..');
/**
 * In CI (which builds first) the shipped bundle dist/cli.js; elsewhere the CLI from source
 * (node --import tsx src/cli.ts), so that a stale dist/ never answers for the code under test.
 */
const built = join(repoRoot, 'dist/cli.js');
export const CLI = process.env.CI && existsSync(built) ? [built] : ['--import', 'tsx', join(repoRoot, 'src/cli.ts')];

/** Environment for a spawned CLI: the parent's, less anything that would point it at another database. */
export function cliEnv(extra: Record<string, string | undefined>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !/^(DATABASE_URL|SWITCHBOARD_|PORT$)/.test(k)) env[k] = v;
  }
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  env.LOG_LEVEL ??= 'warn';
  // these tests exercise tools of every toolset; the default surface has its own tests (toolsets.test.ts)
  env.SWITCHBOARD_TOOLSETS ??= 'all';
  // never the repository's own ./.switchboard (the master key file lives there)
  env.SWITCHBOARD_DATA_DIR ??= tempDataDir();
  return env;
}

export const tempDataDir = (): string => mkdtempSync(join(tmpdir(), 'switchboard-cli-'));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runCli(args: string[], env: Record<string, string>): Promise<CliResult> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [...CLI, ...args], { env, cwd: repoRoot, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** A real MCP client on a spawned `switchboard stdio`. */
export async function spawnStdio(env: Record<string, string>): Promise<{ client: Client; stderr: () => string; close(): Promise<void> }> {
  const transport = new StdioClientTransport({ command: process.execPath, args: [...CLI, 'stdio'], env, cwd: repoRoot, stderr: 'pipe' });
  let err = '';
  transport.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const client = new Client({ name: 'switchboard-test', version: '1.0.0' });
  await client.connect(transport);
  return { client, stderr: () => err, close: () => client.close() };
}

/**
 * A spawned `switchboard serve`, resolved once it prints its MCP endpoint (PORT=0: a free port);
 * `stderr()` is everything it wrote so far. Rejects when it exits before.
 */
export async function spawnServe(env: Record<string, string>): Promise<{ child: ChildProcess; url: string; stderr: () => string }> {
  const child = spawn(process.execPath, [...CLI, 'serve'], { env, cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (c: Buffer) => {
      err += c.toString();
      const m = /Switchboard MCP endpoint: (\S+)/.exec(err);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${err}`)));
  });
  return { child, url, stderr: () => err };
}
