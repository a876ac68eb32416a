import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { CLI, cliEnv, repoRoot, runCli, spawnStdio, tempDataDir } from './helpers/spawn.js';
import { testDbKind } from './helpers/db.js';

/**
 * The master key as an operator meets it, through the real CLI on the embedded database: a key
 * file made on first start (0600, with a loud note), a wrong or missing key refused at startup
 * with a message naming the expected key's fingerprint, and `rotate-key` re-encrypting with
 * progress. (The same code path runs on PostgreSQL; the embedded one needs no setup here.)
 */
const dir = tempDataDir();
const base = cliEnv({ SWITCHBOARD_DATA_DIR: dir });
const keyFile = join(dir, 'master.key');
const SECRET = `sk_live_${randomBytes(12).toString('hex')}`;
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.runIf(testDbKind() === 'pglite')('master key (embedded database, real CLI)', { timeout: 60_000 }, () => {
  it('first start generates a 0600 key file, says to back it up, and credentials are stored with it', async () => {
    const s = await spawnStdio(base);
    try {
      const r = await s.client.callTool({ name: 'add_connection', arguments: { account: 'boring-co', app: 'stripe', name: 'Test', credentials: { secret_key: SECRET } } });
      expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
      expect(JSON.stringify(r)).not.toContain(SECRET);
    } finally {
      await s.close();
    }
    expect(s.stderr()).toMatch(/Generated a new master key in .*master\.key.*BACK IT UP/s);
    expect(s.stderr()).not.toContain(readFileSync(keyFile, 'utf8').trim());
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(Buffer.from(readFileSync(keyFile, 'utf8').trim(), 'base64')).toHaveLength(32);
  });

  it('a different master key refuses to start, naming the expected fingerprint', async () => {
    const r = await runCli(['serve'], { ...base, PORT: '0', SWITCHBOARD_MASTER_KEY: randomBytes(32).toString('base64') });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/switchboard: The configured master key \(fingerprint [0-9a-f]{12}\) is not the one this database's credentials were encrypted with \(fingerprint [0-9a-f]{12}\)/);
  });

  it('a malformed master key is a configuration error, and so is a missing key file once data exists', async () => {
    const bad = await runCli(['serve'], { ...base, PORT: '0', SWITCHBOARD_MASTER_KEY: 'too-short' });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/Invalid configuration: SWITCHBOARD_MASTER_KEY: must be 32 random bytes in base64/);
    const saved = readFileSync(keyFile, 'utf8');
    rmSync(keyFile);
    const missing = await runCli(['serve'], { ...base, PORT: '0' });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/No master key: this database holds credentials encrypted with the master key of fingerprint [0-9a-f]{12}/);
    expect(existsSync(keyFile)).toBe(false); // not silently replaced by a new one
    writeFileSync(keyFile, saved, { mode: 0o600 });
  });

  it('the same key given in SWITCHBOARD_MASTER_KEY works as well as the file', async () => {
    const r = await runCli(['rotate-key', '--json'], { ...base, SWITCHBOARD_MASTER_KEY: readFileSync(keyFile, 'utf8').trim() });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ resumed: false, total: 8, rotated: 8, changed_meanwhile: 0, retired_keys: 1 }); // with the demo's seven
  });

  it('rotate-key reports progress, and the credentials still open afterwards', async () => {
    const r = await runCli(['rotate-key', '--batch-size', '1'], base);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/rotating to key [0-9a-f-]{36}: 8\/8/);
    expect(r.stdout).toMatch(/re-encrypted 8 of 8 connections/);
    expect(r.stdout + r.stderr).not.toContain(SECRET);
    const bad = await runCli(['rotate-key', '--batch-size', '0'], base);
    expect(bad.stderr).toMatch(/--batch-size must be a whole number/);
  });

  it('set-password reads the password from stdin; then the admin sees the credentials they stored, after all rotations', async () => {
    const PASSWORD = 'operator-chosen password';
    const child = spawn(process.execPath, [...CLI, 'set-password', '--email', 'admin@switchboard.local'], { env: base, cwd: repoRoot });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.stdin.end(PASSWORD + '\n');
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(/Password set for admin@switchboard.local/);
    const s = await spawnStdio(base);
    try {
      const r = await s.client.callTool({ name: 'view_connection_info', arguments: { account: 'boring-co', connection: 'stripe/Test', password: PASSWORD } });
      expect((r.structuredContent as { decrypted: Record<string, string> }).decrypted).toEqual({ secret_key: SECRET });
    } finally {
      await s.close();
    }
    expect(s.stderr()).not.toContain(SECRET);
    expect(s.stderr()).not.toContain(PASSWORD);
  });
});
