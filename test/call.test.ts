import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliWorld, type CliWorld } from './helpers/cli-world.js';

/**
 * `switchboard call` through the real CLI process, on a database made by `init` and `demo` (the
 * same world on both kinds of database): Sam Support has Switch Account, Blair Boring is admin of
 * Boring Co only. Each spawn costs seconds, so each test makes few and batches calls in scripts.
 */

let cw: CliWorld;
let base: Record<string, string>;
const tokens = {} as CliWorld['tokens'];

beforeAll(async () => {
  cw = await cliWorld();
  base = cw.env;
  Object.assign(tokens, cw.tokens);
}, 120_000);
afterAll(async () => {
  await cw?.close();
});

const call: CliWorld['call'] = (...a) => cw.call(...a);
const script: CliWorld['script'] = (...a) => cw.script(...a);

const jsonLines = (stdout: string) => stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

describe('switchboard call TOOL [JSON]', () => {
  it("runs one call as the token's user: its text, or with --json its structuredContent", async () => {
    const text = await call('support', ['whoami']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toBe('You are support@integrator.example, acting in sandbox (home).\n');

    const json = await call('support', ['--json', 'get_account', '{"account": "acme-fitness"}']);
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ account: { slug: 'acme-fitness', children_total: 30 } });
  }, 60_000);

  it('returns the denial of a call the user may not make, and exits 1', async () => {
    const r = await call('boring', ['get_account', '{"account": "acme-fitness"}']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^switchboard: get_account: Access denied: acting in account 'acme-fitness' needs the Switch Account permission/);
  }, 60_000);

  it('refuses an unknown tool in one sentence (exit 1), and bad JSON arguments before opening the database (exit 2)', async () => {
    const unknown = await call('support', ['whoamii']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe("switchboard: whoamii: Unknown tool 'whoamii'; tools/list shows the tools.\n");

    const bad = await call('support', ['get_account', '{account: acme}']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^switchboard: The arguments are not valid JSON \(.*\); give one object, such as/);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
  }, 60_000);
});

describe('switchboard call --script FILE', () => {
  it('switches into an account, acts there and switches back in one session, audited as that session', async () => {
    const since = new Date().toISOString();
    const file = script('switch.jsonl', [
      '# switch into Acme, look around, come back',
      { tool: 'whoami', expect: { match: 'acting in sandbox (home)' } },
      { tool: 'switch_account', arguments: { account: 'acme-fitness', reason: 'scripted check, ticket 11' } },
      '',
      { tool: 'get_account', expect: { isError: false, match: '"slug":"acme-fitness"' } },
      { tool: 'whoami', expect: { match: 'acting in acme-fitness \\(switched until' } },
      { tool: 'switch_account', arguments: { account: 'home' } },
      { tool: 'whoami', expect: { match: '(home)' } },
    ]);
    const r = await call('support', ['--script', file]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.map((l) => /^(ok|FAIL) +line (\d+) +(\w+)/.exec(l)?.slice(1))).toEqual([
      ['ok', '2', 'whoami'],
      ['ok', '3', 'switch_account'],
      ['ok', '5', 'get_account'],
      ['ok', '6', 'whoami'],
      ['ok', '7', 'switch_account'],
      ['ok', '8', 'whoami'],
    ]);
    expect(lines[3]).toContain('You are support@integrator.example, acting in acme-fitness (switched until');
    expect(lines[4]).toContain('Returned from acme-fitness to sandbox.');

    const audit = await call('admin', ['--json', 'audit_log', JSON.stringify({ scope: 'tenant', actor: 'support@integrator.example', since })]);
    expect(audit.code, audit.stderr).toBe(0);
    type Entry = { tool: string; session_id: string | null; switch_id: string | null; outcome: string; account_id: string | null };
    const entries = (JSON.parse(audit.stdout) as { entries: Entry[] }).entries.reverse();
    expect(entries.map((e) => e.tool)).toEqual(['whoami', 'switch_account', 'get_account', 'whoami', 'switch_account', 'whoami']);
    expect(entries.every((e) => e.outcome === 'ok')).toBe(true);
    const sessions = new Set(entries.map((e) => e.session_id));
    expect(sessions.size).toBe(1);
    expect([...sessions][0]).toMatch(/^[0-9a-f-]{36}$/);
    // the calls between the switches ran under it, in Acme; the first and the last did not
    const [first, , acting, switched, , last] = entries;
    expect(acting!.switch_id).not.toBeNull();
    expect(switched!.switch_id).toBe(acting!.switch_id);
    expect(acting!.account_id).not.toBe(first!.account_id);
    expect(first!.switch_id).toBeNull();
    expect(last!.switch_id).toBeNull();
    expect(last!.account_id).toBe(first!.account_id);
  }, 90_000);

  it('stops at the first unmet expectation naming its line (exit 1); --keep-going makes the rest', async () => {
    const file = script('expect.jsonl', [
      { tool: 'get_account', arguments: { account: 'acme-fitness' }, expect: { isError: true, match: '^Access denied' } },
      { tool: 'whoami', expect: { match: 'nobody@' } },
      { tool: 'get_account', arguments: { account: 'boring-co' } },
      { tool: 'get_account', arguments: { account: 'boring-co' }, expect: { isError: true } },
    ]);
    const stop = await call('boring', ['--script', file]);
    expect(stop.code).toBe(1);
    expect(stop.stdout).toMatch(/^ok   line 1  get_account  error: Access denied: /);
    expect(stop.stdout.trim().split('\n')[1]).toBe('FAIL line 2  whoami  expected a match for "nobody@", got: You are ops@boring.example, acting in boring-co (home).');
    expect(stop.stdout.trim().split('\n')).toHaveLength(2);
    expect(stop.stderr).toBe('switchboard: line 2 did not meet its expectation; stopped there, 2 calls not made (--keep-going makes them).\n');

    const all = await call('boring', ['--script', file, '--keep-going', '--json']);
    expect(all.code).toBe(1);
    const results = jsonLines(all.stdout);
    expect(results.map((x) => [x.line, x.ok, x.isError])).toEqual([
      [1, true, true],
      [2, false, false],
      [3, true, false],
      [4, false, false],
    ]);
    expect(results[2]!.structuredContent).toMatchObject({ account: { slug: 'boring-co' } });
    expect(results[3]!.failure).toMatch(/^expected isError=true, got a result: boring-co is a customer account/);
    expect(all.stderr).toBe('switchboard: 2 of 4 calls did not meet their expectations (lines 2, 4).\n');
  }, 90_000);

  it('refuses a malformed line by its number before making any call (exit 2)', async () => {
    const notJson = script('broken.jsonl', [{ tool: 'switch_account', arguments: { account: 'acme-fitness', reason: 'must not happen' } }, '{"tool": "whoami"']);
    const r = await call('support', ['--script', notJson]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe(''); // its valid first line (a switch) was not made either
    expect(r.stderr).toMatch(/^switchboard: Line 2 of .*broken\.jsonl is not valid JSON \(/);

    const notCall = script('typo.jsonl', ['# a comment', { tool: 'whoami' }, { tool: 'whoami', args: {} }]);
    const t = await call('support', ['--script', notCall]);
    expect(t.code).toBe(2);
    expect(t.stdout).toBe('');
    expect(t.stderr).toMatch(/^switchboard: Line 3 of .*typo\.jsonl is not a call \(Unrecognized key: "args"\); a line is \{"tool"/);
  }, 60_000);

  it('reads a script from stdin; has every toolset on by default, and honours --read-only', async () => {
    const env = { ...base, SWITCHBOARD_TOKEN: tokens.support };
    delete env.SWITCHBOARD_TOOLSETS; // the default surface of `call`, not the test helper's
    const input = [
      { tool: 'audit_log', arguments: { limit: 1 } }, // the audit toolset is not in stdio's default
      { tool: 'switch_account', arguments: { account: 'acme-fitness', reason: 'read-only check' }, expect: { isError: true, match: 'this session is read-only' } },
    ]
      .map((l) => JSON.stringify(l))
      .join('\n');
    const r = await call('support', ['--script', '-', '--read-only'], { input, env });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ok   line 1  audit_log  /m);
    expect(r.stdout).toMatch(/^ok   line 2  switch_account  error: Access denied: this session is read-only, and switch_account changes things\.$/m);
  }, 60_000);

  it('never printed a token', () => {
    expect(cw.outputs.length).toBeGreaterThan(10);
    for (const out of cw.outputs) for (const token of Object.values(tokens)) expect(out).not.toContain(token);
  });
});
