import { TOOLSET_NAMES } from '../../src/mcp/toolsets.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { initialize } from '../../src/core/tenants.js';
import { createAccount, type Account } from '../../src/core/accounts.js';
import { authenticate, createUser } from '../../src/core/users.js';
import type { Core } from '../../src/core/core.js';
import { createMcpServer } from '../../src/mcp/server.js';
import { newSession, type SessionState } from '../../src/mcp/session.js';
import type { Permission, Role } from '../../src/db/schema/index.js';
import { testDatabase, type TestDatabase } from './db.js';
import { Keyring, newMasterKey } from '../../src/core/keyring.js';

/** A keyring under a master key made for this test run (never a committed key). */
export const testKeyring = (): Keyring => new Keyring(newMasterKey());

/**
 * A small world for access tests:
 *
 *   acme (parent) ── studio1 (studio-01), studio2 (studio-02)      boring (another customer)
 *
 * and one user per kind of caller.
 */
export interface World {
  database: TestDatabase;
  core: Core;
  accounts: { system: Account; sandbox: Account; acme: Account; studio1: Account; studio2: Account; boring: Account };
  tokens: Record<Persona, string>;
  userIds: Record<Persona, string>;
  close(): Promise<void>;
}

export type Persona =
  | 'admin' // init admin: Switch Account + admin, home in the system account
  | 'switcher' // Switch Account only, home in the sandbox
  | 'acmeAdmin' // admin of the parent acme, no permissions
  | 'acmeMember' // member of the parent acme, no permissions
  | 'studioMember' // member of the child studio1
  | 'boringAdmin' // admin of boring, no permissions
  | 'boringViewer' // viewer of boring
  | 'tenantAdmin'; // the admin permission without Switch Account, member of boring

export async function buildWorld(): Promise<World> {
  const database = await testDatabase();
  const init = await initialize(database.db, { adminEmail: 'admin@switchboard.test', switchMinutes: 30 });
  const core: Core = { db: database.db, tenantId: init.tenant.id, switchMinutes: 30, keys: testKeyring(), secretArgs: true };
  const acme = await createAccount(core, { name: 'Acme Fitness', slug: 'acme-fitness' });
  const studio1 = await createAccount(core, { name: 'Acme Studio 01', slug: 'acme-studio-01', parent: acme, routingKey: 'studio-01' });
  const studio2 = await createAccount(core, { name: 'Acme Studio 02', slug: 'acme-studio-02', parent: acme, routingKey: 'studio-02' });
  const boring = await createAccount(core, { name: 'Boring Co', slug: 'boring-co' });
  const accounts = { system: init.systemAccount, sandbox: init.sandboxAccount, acme, studio1, studio2, boring };

  const people: [Persona, Account, Role, Permission[]][] = [
    ['switcher', init.sandboxAccount, 'member', ['switch_account']],
    ['acmeAdmin', acme, 'admin', []],
    ['acmeMember', acme, 'member', []],
    ['studioMember', studio1, 'member', []],
    ['boringAdmin', boring, 'admin', []],
    ['boringViewer', boring, 'viewer', []],
    ['tenantAdmin', boring, 'member', ['admin']],
  ];
  const tokens = { admin: init.token } as Record<Persona, string>;
  const userIds = { admin: init.admin.id } as Record<Persona, string>;
  for (const [persona, account, role, permissions] of people) {
    const r = await createUser(core, { email: `${persona.toLowerCase()}@switchboard.test`, name: persona, account, role, permissions });
    tokens[persona] = r.token;
    userIds[persona] = r.user.id;
  }
  return { database, core, accounts, tokens, userIds, close: () => database.close() };
}

export interface Session {
  client: Client;
  session: SessionState;
  call(name: string, args?: Record<string, unknown>): Promise<CallToolResult>;
  close(): Promise<void>;
}

/** A real MCP client talking to a server for `token` over an in-memory transport (every toolset on unless the session says otherwise). */
export async function connect(core: Core, token: string, session: SessionState = newSession(undefined, { toolsets: new Set(TOOLSET_NAMES) })): Promise<Session> {
  const server = createMcpServer({ core, session, authenticate: () => authenticate(core, token) });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  const client = new Client({ name: 'switchboard-test', version: '1.0.0' });
  await client.connect(clientSide);
  // as clients do: with the listing cached, the SDK client checks every result against its tool's
  // listed outputSchema, so every test that calls a tool also tests the listed schemas
  await client.listTools();
  return {
    client,
    session,
    call: async (name, args = {}) => (await client.callTool({ name, arguments: args })) as CallToolResult,
    async close() {
      await client.close();
      await server.close();
    },
  };
}

export const text = (r: CallToolResult): string => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('');
export const data = <T = Record<string, unknown>>(r: CallToolResult): T => {
  if (r.isError) throw new Error(`expected success, got error: ${text(r)}`);
  return r.structuredContent as T;
};

/** An automation in `account` whose steps call each of `connectionIds` (through the real core, validated like any other). */
export async function automationUsing(core: Core, account: Account, name: string, connectionIds: string[]): Promise<string> {
  const { createAutomation } = await import('../../src/core/automations.js');
  const { getApp } = await import('../../src/core/apps.js');
  const { connections } = await import('../../src/db/schema/index.js');
  const { inArray } = await import('drizzle-orm');
  const rows = connectionIds.length ? await core.db.select().from(connections).where(inArray(connections.id, connectionIds)) : [];
  const steps = [];
  for (const [i, connection] of connectionIds.entries()) {
    // credentials go only to the app's own address
    const row = rows.find((r) => r.id === connection)!;
    const base = (await getApp(core, row.app)).baseUrl ?? row.masked.base_url!;
    steps.push({ id: `call_${i}`, kind: 'http' as const, method: 'GET' as const, url: `${base}/ping`, connection });
  }
  const { row } = await createAutomation(core, account, {
    name,
    createdBy: null,
    definition: { trigger: { type: 'webhook', dedupe: null }, routing: null, retries: { max: 3 }, steps: steps.length ? steps : [{ id: 'noop', kind: 'transform', value: null }] },
  });
  return row.id;
}
