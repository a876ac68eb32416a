import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildWorld, connect, data, text, type Session, type World } from './helpers/world.js';

let w: World;
let s: Session;
beforeAll(async () => {
  w = await buildWorld();
  s = await connect(w.core, w.tokens.admin);
});
afterAll(async () => {
  await s.close();
  await w.close();
});

const HUGE = 'x'.repeat(10 * 1024);

/** Bad calls: each must be an isError result with one clear sentence, and the server must keep serving. */
const BAD: [string, string, Record<string, unknown>, RegExp][] = [
  ['wrong type', 'get_account', { account: 42 }, /Invalid argument 'account': .*expected string/],
  ['wrong type (number as string)', 'list_accounts', { limit: '10' }, /Invalid argument 'limit'/],
  ['out of range', 'list_accounts', { limit: 100000 }, /Invalid argument 'limit'/],
  ['unknown account', 'get_account', { account: 'no-such-account' }, /No account matches 'no-such-account'/],
  ['empty string', 'get_account', { account: '' }, /Invalid argument 'account'/],
  ['10 kB string', 'get_account', { account: HUGE }, /Invalid argument 'account': .*<=200/],
  ['10 kB name', 'create_account', { name: HUGE }, /Invalid argument 'name'/],
  ['10 kB reason', 'switch_account', { account: 'boring-co', reason: HUGE }, /Invalid argument 'reason'/],
  ['unknown field', 'whoami', { everything: true }, /Unknown argument 'everything'/],
  ['unknown fields', 'list_accounts', { a: 1, b: 2 }, /Unknown arguments 'a', 'b'/],
  ['missing field', 'link_account', { child: 'boring-co' }, /Missing required argument 'parent'/],
  ['bad enum', 'create_user', { account: 'boring-co', email: 'e@x.test', name: 'n', role: 'god' }, /Invalid argument 'role'/],
  ['bad email', 'create_user', { account: 'boring-co', email: 'nope', name: 'n', role: 'member' }, /Invalid argument 'email'/],
  ['bad cursor', 'list_accounts', { cursor: 'garbage' }, /cursor is not valid/],
  ['bad date', 'audit_log', { since: 'yesterday' }, /Invalid argument 'since'/],
  ['bad uuid', 'revoke_token', { token_id: 'abc' }, /Invalid argument 'token_id'/],
  ['duplicate slug', 'create_account', { name: 'Boring Co', slug: 'boring-co' }, /already exists/],
  ['reserved slug', 'create_account', { name: 'Home' }, /'home' is reserved/],
  ['bad slug', 'create_account', { name: 'X', slug: 'Not A Slug!' }, /not a usable slug/],
  ['routing key without parent', 'create_account', { name: 'Y', routing_key: 'studio-1' }, /only applies to a linked child/],
  ['child of a child', 'create_account', { name: 'Z', parent: 'acme-studio-01', routing_key: 'z' }, /itself a linked child/],
  ['duplicate routing key', 'link_account', { child: 'boring-co', parent: 'acme-fitness', routing_key: 'studio-01' }, /already has a child with the routing key/],
  ['link to itself', 'link_account', { child: 'acme-fitness', parent: 'acme-fitness', routing_key: 'self' }, /cannot be linked to itself/],
  ['unlink an unlinked account', 'unlink_account', { child: 'boring-co' }, /not linked/],
  ['duplicate email', 'create_user', { account: 'boring-co', email: 'BoringAdmin@switchboard.test', name: 'n', role: 'member' }, /already exists/],
  ['short password', 'create_user', { account: 'boring-co', email: 'pw2@x.test', name: 'n', role: 'member', password: 'short' }, /Invalid argument 'password'/],
  ['unknown user', 'set_user_permissions', { user: 'ghost@x.test', permissions: [] }, /No user matches/],
  ['unknown permission', 'set_user_permissions', { user: 'boringadmin@switchboard.test', permissions: ['root'] }, /Invalid argument 'permissions.0'/],
];

describe('bad input', () => {
  for (const [what, tool, args, message] of BAD) {
    it(`${what}: ${tool} answers with a clear isError`, async () => {
      const r = await s.call(tool, args);
      expect(r.isError, text(r)).toBe(true);
      expect(text(r)).toMatch(message);
      expect(text(r).length).toBeLessThan(400);
      expect(text(r)).not.toContain(HUGE);
    });
  }

  it('an unknown tool is a protocol error, and the server keeps serving', async () => {
    // one protocol prefix, the client's own: the server's message does not carry another
    await expect(s.client.callTool({ name: 'drop_everything', arguments: {} })).rejects.toThrow(/^MCP error -32602: Unknown tool 'drop_everything'; tools\/list shows the tools\.$/);
    expect(data<{ user: { email: string } }>(await s.call('whoami')).user.email).toBe('admin@switchboard.test');
  });

  it('a cursor that decodes to text PostgreSQL cannot store is a clear error', async () => {
    const cursor = (key: unknown[]) => Buffer.from(JSON.stringify(key)).toString('base64url');
    const bad: [string, string][] = [
      ['list_accounts', cursor(['a\u0000b', '00000000-0000-4000-8000-000000000000'])],
      ['list_accounts', cursor(['\ud800', '00000000-0000-4000-8000-000000000000'])],
      ['list_connections', cursor([0, 'stripe\u0000', 'x'])],
      ['list_connections', cursor([1, 'stripe', '\udfff'])],
    ];
    for (const [tool, c] of bad) {
      const r = await s.call(tool, { cursor: c });
      expect(r.isError, tool).toBe(true);
      expect(text(r)).toMatch(/^The cursor is not valid/);
    }
  });

  it('arguments nested far too deep are one clear sentence, not a crash', async () => {
    for (const depth of [33, 10_000, 100_000]) {
      let deep: unknown = 'bottom';
      for (let i = 0; i < depth; i++) deep = { a: deep };
      const r = await s.call('get_account', { account: 'boring-co', deep } as Record<string, unknown>);
      expect(r.isError).toBe(true);
      expect(text(r)).toMatch(/^Invalid arguments: nested more than 32 levels deep/);
      let list: unknown = [];
      for (let i = 0; i < depth; i++) list = [list];
      const viaAccount = await s.call('get_account', { account: list } as Record<string, unknown>);
      expect(text(viaAccount)).toMatch(/^Invalid arguments: nested more than 32 levels deep/);
    }
    // within the bound, the usual answer
    expect(text(await s.call('get_account', { account: 'boring-co', x: { y: { z: 1 } } }))).toMatch(/Unknown argument 'x'/);
  });

  it('keeps serving after every bad call above', async () => {
    const who = data<{ acting_account: { slug: string } }>(await s.call('whoami'));
    expect(who.acting_account.slug).toBe('system');
    const list = data<{ accounts: unknown[] }>(await s.call('list_accounts', { limit: 2 }));
    expect(list.accounts).toHaveLength(2);
  });
});
