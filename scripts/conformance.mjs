#!/usr/bin/env node
// The official MCP conformance suite against `switchboard serve --conformance` (a loopback,
// read-only server on a throwaway embedded database; src/cli.ts). Scenarios that cannot apply are
// listed, with their reasons, in .ci/conformance-baseline.yml; the suite fails on any other
// failure and on a listed scenario that passes. Exit code: the suite's. `npm run conformance`.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// pinned in devDependencies (0.1.13: later versions need Node 22), so the lockfile fixes what runs
const SUITE = join(root, 'node_modules', '.bin', 'conformance');

const port = await new Promise((resolve) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
const built = join(root, 'dist', 'cli.js');
// CI builds first (.ci/run); elsewhere dist/ may be stale: run the sources
const cli = process.env.CI && existsSync(built) ? [built] : ['--import', 'tsx', join(root, 'src', 'cli.ts')];
const env = { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' };
for (const k of Object.keys(env)) if (/^(DATABASE_URL|SWITCHBOARD_)/.test(k)) delete env[k];
const server = spawn(process.execPath, [...cli, 'serve', '--conformance'], { cwd: root, env, stdio: ['ignore', 'inherit', 'inherit'] });
const exited = new Promise((resolve) => server.once('exit', resolve));

let code = 1;
try {
  const base = `http://127.0.0.1:${port}`;
  const until = Date.now() + 90_000;
  for (;;) {
    const ok = await fetch(`${base}/healthz`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > until || server.exitCode !== null) throw new Error('the conformance server did not start');
    await new Promise((r) => setTimeout(r, 250));
  }
  const suite = spawn(SUITE, ['server', '--url', `${base}/mcp`, '--expected-failures', join(root, '.ci', 'conformance-baseline.yml')], { cwd: root, stdio: 'inherit' });
  code = await new Promise((resolve) => suite.once('exit', (c) => resolve(c ?? 1)));
} catch (err) {
  console.error(`conformance: ${err.message}`);
} finally {
  server.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
}
process.exit(code);
