import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { CLI, cliEnv, repoRoot, runCli, tempDataDir, type CliResult } from './helpers/spawn.js';
import { testDatabase, testDbKind, type TestDatabase } from './helpers/db.js';

/**
 * A real client from outside the project: the MCP Inspector CLI (pinned in devDependencies, run
 * from node_modules, never fetched) drives `switchboard stdio` and `switchboard serve` with the
 * command lines the README shows. It asks for Node 22 and runs on Node 20 with an engine warning,
 * so its stderr is never asserted empty.
 */

const INSPECTOR = join(repoRoot, 'node_modules/.bin/mcp-inspector');

let db: TestDatabase | undefined;
let env: Record<string, string>;
let token: string;
/** the server's settings, passed with -e: the Inspector starts a stdio server without its own environment */
let serverEnv: Record<string, string>;
/** the Inspector's own state goes to a home of its own, never the user's ~/.mcp-inspector */
const inspectorHome = tempDataDir();

beforeAll(async () => {
  const where = testDbKind() === 'postgres' ? { DATABASE_URL: (db = await testDatabase()).url! } : { SWITCHBOARD_DATA_DIR: tempDataDir() };
  env = cliEnv({ ...where, SWITCHBOARD_WORKERS: '0' });
  const init = await runCli(['init', '--admin-email', 'admin@integrator.test', '--json'], env);
  expect(init.code, init.stderr).toBe(0);
  token = JSON.parse(init.stdout).token;
  serverEnv = { ...where, SWITCHBOARD_DATA_DIR: env.SWITCHBOARD_DATA_DIR!, SWITCHBOARD_TOKEN: token, SWITCHBOARD_WORKERS: '0', LOG_LEVEL: 'warn' };
}, 60_000);
afterAll(async () => {
  await db?.close();
});

function inspector(args: string[]): Promise<CliResult> {
  const inspectorEnv = { ...process.env, HOME: inspectorHome, MCP_CATALOG_PATH: join(inspectorHome, 'mcp.json') };
  return new Promise((resolve) => {
    execFile(INSPECTOR, ['--cli', '--format', 'json', '--connect-timeout', '60000', ...args], { env: inspectorEnv, cwd: repoRoot, timeout: 90_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** The Inspector's answer: `{"result": …}` on stdout with --format json. */
function result<T>(r: CliResult): T {
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { result: T }).result;
}

type ToolList = { tools: { name: string }[] };
type CallResult = { isError?: boolean; content: { type: string; text: string }[]; structuredContent: Record<string, unknown> };

describe('MCP Inspector CLI on switchboard stdio', () => {
  // mcp-inspector --cli -e K=V … --method … -- node src/cli.ts stdio
  const stdio = (method: string[]) => inspector([...Object.entries(serverEnv).flatMap(([k, v]) => ['-e', `${k}=${v}`]), ...method, '--', process.execPath, ...CLI, 'stdio']);

  it('lists the tools', async () => {
    const list = result<ToolList>(await stdio(['--method', 'tools/list']));
    const names = list.tools.map((t) => t.name);
    expect(names).toEqual(expect.arrayContaining(['whoami', 'switch_account', 'list_accounts', 'list_toolsets', 'check_health']));
  }, 120_000);

  it('calls whoami as the user of SWITCHBOARD_TOKEN', async () => {
    const who = result<CallResult>(await stdio(['--method', 'tools/call', '--tool-name', 'whoami']));
    expect(who.isError ?? false).toBe(false);
    expect(who.structuredContent).toMatchObject({ user: { email: 'admin@integrator.test' }, acting_account: { slug: 'system' } });
  }, 120_000);

  it('calls a tool with arguments', async () => {
    const got = result<CallResult>(await stdio(['--method', 'tools/call', '--tool-name', 'get_account', '--tool-arg', 'account=sandbox']));
    expect(got.structuredContent).toMatchObject({ account: { slug: 'sandbox', kind: 'sandbox' } });
    expect(got.content[0]!.text).toMatch(/^sandbox is a sandbox account/);
  }, 120_000);
});

describe('MCP Inspector CLI on switchboard serve', () => {
  let server: ChildProcess;
  let url: string;
  beforeAll(async () => {
    // PORT=0: a free port, read from the endpoint line serve prints
    server = spawn(process.execPath, [...CLI, 'serve'], { env: { ...env, PORT: '0', HOST: '127.0.0.1' }, cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    url = await new Promise<string>((resolve, reject) => {
      server.stderr!.on('data', (c: Buffer) => {
        stderr += c.toString();
        const m = /Switchboard MCP endpoint: (\S+)/.exec(stderr);
        if (m) resolve(m[1]!);
      });
      server.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
    });
  }, 60_000);
  afterAll(async () => {
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.kill('SIGTERM');
    await exited;
  });

  // mcp-inspector --cli http://127.0.0.1:PORT/mcp --transport http --header "Authorization: Bearer …" --method …
  const http = (method: string[], bearer = token) => inspector([url, '--transport', 'http', '--header', `Authorization: Bearer ${bearer}`, ...method]);

  it('lists the tools and calls whoami and a tool with arguments with the bearer token', async () => {
    const list = result<ToolList>(await http(['--method', 'tools/list']));
    expect(list.tools.map((t) => t.name)).toEqual(expect.arrayContaining(['whoami', 'switch_account', 'check_health']));

    const who = result<CallResult>(await http(['--method', 'tools/call', '--tool-name', 'whoami']));
    expect(who.structuredContent).toMatchObject({ user: { email: 'admin@integrator.test' } });

    const got = result<CallResult>(await http(['--method', 'tools/call', '--tool-name', 'get_account', '--tool-arg', 'account=sandbox']));
    expect(got.structuredContent).toMatchObject({ account: { slug: 'sandbox' } });
  }, 120_000);

  it('gets nothing without a valid token', async () => {
    const r = await http(['--method', 'tools/list', '--stored-auth-only'], 'sbt_not-a-real-token');
    expect(r.code).not.toBe(0);
    expect(r.stdout).not.toContain('"tools"');
    // the server's 401, passed on by the Inspector (which, told not to, tries no OAuth login)
    expect(r.stderr).toMatch(/"code":"auth_required".*Send Authorization: Bearer <API token>/);
  }, 60_000);
});
