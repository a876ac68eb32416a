// `npm test`'s pretest step: makes sure the browser tests (test/pages.test.ts) have a browser.
// The browser is CHROMIUM_PATH when set, else Debian's /usr/bin/chromium. When there is none and
// the machine allows it (root, apt-get), it installs Debian's chromium package. It never fails
// `npm test`: without a browser it says why, and the browser tests are skipped (or, under
// SWITCHBOARD_REQUIRE_BROWSER=1 as in .ci/run, fail).
//   SWITCHBOARD_NO_BROWSER_INSTALL=1   never install anything
// test/global-setup.ts imports findBrowser() so that the tests look for the browser the same way.
import { spawnSync } from 'node:child_process';
import { accessSync, closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';

export const DEBIAN_CHROMIUM = '/usr/bin/chromium';

const isExecutableFile = (p) => {
  try {
    accessSync(p, constants.X_OK);
    return statSync(p).isFile();
  } catch {
    return false;
  }
};

/**
 * The browser the tests launch: `{ path }`, or `{ path: null, reason }` saying why there is none.
 * @returns {{ path: string, reason: null } | { path: null, reason: string }}
 */
export function findBrowser(env = process.env) {
  const chosen = env.CHROMIUM_PATH;
  if (chosen) {
    return isExecutableFile(chosen) ? { path: chosen, reason: null } : { path: null, reason: `CHROMIUM_PATH=${chosen} is not an executable file` };
  }
  if (isExecutableFile(DEBIAN_CHROMIUM)) return { path: DEBIAN_CHROMIUM, reason: null };
  return { path: null, reason: `${DEBIAN_CHROMIUM} is not installed and CHROMIUM_PATH is unset` };
}

const say = (line) => process.stderr.write(`ensure-browser: ${line}\n`);
const onPath = (cmd) => (process.env.PATH ?? '').split(delimiter).some((dir) => dir && isExecutableFile(join(dir, cmd)));

/** Runs one apt-get step with its output appended to `log`; null when it succeeded, else what went wrong. */
function aptGet(args, log) {
  const fd = openSync(log, 'a');
  try {
    const r = spawnSync('apt-get', args, {
      stdio: ['ignore', fd, fd],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      timeout: 20 * 60_000,
    });
    if (r.error) writeSync(fd, `\n${r.error.message}\n`);
    return r.status === 0 ? null : `apt-get ${args[0]} ${r.error ? `failed: ${r.error.message}` : r.signal ? `was killed (${r.signal})` : `exited with ${r.status}`}`;
  } finally {
    closeSync(fd);
  }
}

function tail(file, lines = 15) {
  try {
    const text = readFileSync(file, 'utf8').trimEnd();
    if (text) return text.split('\n').slice(-lines).map((l) => `  | ${l}`).join('\n');
    return '  | (no output)';
  } catch {
    return '  | (no output)';
  }
}

const outcome = (env) =>
  env.SWITCHBOARD_REQUIRE_BROWSER === '1' ? 'the browser tests will fail (SWITCHBOARD_REQUIRE_BROWSER=1)' : 'the browser tests will be skipped';

export function ensureBrowser(env = process.env) {
  const found = findBrowser(env);
  if (found.path) return;
  const skipped = outcome(env);
  if (env.CHROMIUM_PATH) return say(`${found.reason}; nothing is installed when CHROMIUM_PATH is set: ${skipped}`);
  if (env.SWITCHBOARD_NO_BROWSER_INSTALL === '1') return say(`${found.reason}; not installing it (SWITCHBOARD_NO_BROWSER_INSTALL=1): ${skipped}`);
  if (process.getuid?.() !== 0) return say(`${found.reason}; installing Debian's chromium needs root (sudo apt-get install chromium, or set CHROMIUM_PATH): ${skipped}`);
  if (!onPath('apt-get')) return say(`${found.reason}; there is no apt-get to install it with (set CHROMIUM_PATH to a Chromium): ${skipped}`);

  say(`${DEBIAN_CHROMIUM} is missing: installing Debian's chromium package for the browser tests (apt-get update && apt-get install -y chromium)…`);
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-apt-'));
  const log = join(dir, 'apt.log');
  const failed = aptGet(['update'], log) ?? aptGet(['install', '-y', 'chromium'], log);
  const after = findBrowser(env);
  if (!failed && after.path) {
    const version = spawnSync(after.path, ['--version'], { encoding: 'utf8', timeout: 30_000 }).stdout?.trim();
    say(`installed ${after.path}${version ? ` (${version})` : ''}`);
    rmSync(dir, { recursive: true, force: true });
    return;
  }
  say(`installing chromium failed (${failed ?? after.reason}): ${skipped}. The end of apt-get's output (all of it in ${log}):\n${tail(log)}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    ensureBrowser();
  } catch (err) {
    say(`could not make sure of a browser (${err instanceof Error ? err.message : String(err)}): ${outcome(process.env)}`);
  }
}
