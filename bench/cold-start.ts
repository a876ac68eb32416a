import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { now } from './stats.js';

const run = promisify(execFile);

/**
 * Every spawned process gets the same small environment the MCP SDK gives a stdio server
 * (HOME, PATH, …) plus what the case needs, so the reference and the server start alike.
 */
const baseEnv = (): Record<string, string> => ({ ...getDefaultEnvironment() });

/** Bare Node startup: spawn `node -e "0"` to its exit. */
export async function nodeStartupOnce(): Promise<number> {
  const t0 = now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', '0'], { env: baseEnv(), stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`node -e "0" exited with ${code}`))));
  });
  return now() - t0;
}

export interface StdioStart {
  /** spawn → first tools/list answer, ms */
  ms: number;
  tools: number;
}

/**
 * Spawn `node <cli> stdio` through a real MCP client, and time from the spawn to the answer of
 * the first tools/list (which includes the initialize handshake). Waits for the process to exit
 * afterwards, so the next start finds the PGlite data directory unlocked.
 */
export async function stdioStartOnce(cli: string, env: Record<string, string>, cwd: string): Promise<StdioStart> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [cli, 'stdio'],
    env: { ...baseEnv(), ...env },
    cwd,
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (c: Buffer) => {
    if (stderr.length < 20_000) stderr += c.toString('utf8');
  });
  const client = new Client({ name: 'switchboard-bench', version: '1.0.0' });
  const t0 = now();
  try {
    await client.connect(transport);
    const { tools } = await client.listTools();
    const ms = now() - t0;
    if (tools.length === 0) throw new Error('tools/list answered with no tools');
    return { ms, tools: tools.length };
  } catch (err) {
    throw new Error(`switchboard stdio did not answer tools/list: ${(err as Error).message}${stderr ? `\n--- its stderr ---\n${stderr.trim()}` : ''}`);
  } finally {
    await client.close().catch(() => {});
  }
}

/** `switchboard init --json` against `env`; returns the admin token. */
export async function cliInit(cli: string, env: Record<string, string>, cwd: string): Promise<string> {
  try {
    const { stdout } = await run(process.execPath, [cli, 'init', '--admin-email', 'bench@switchboard.test', '--json'], {
      env: { ...baseEnv(), ...env },
      cwd,
    });
    const token = (JSON.parse(stdout) as { token?: unknown }).token;
    if (typeof token !== 'string') throw new Error(`no token in ${stdout.slice(0, 200)}`);
    return token;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`switchboard init failed: ${e.message}${e.stderr ? `\n${e.stderr.trim()}` : ''}`);
  }
}
