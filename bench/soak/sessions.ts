import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { textOf, type CallLog } from './calls.js';
import type { SoakUserKind, SoakWorld } from './world.js';

/**
 * One MCP session of the soak over Streamable HTTP (the SDK's client, as an assistant's host
 * would use it), looping what an operator's assistant does in a customer's account, with a short
 * think time before each call:
 *
 *   list_accounts {query} → switch_account {account, reason} → check_health (a parent: also its
 *   children) → debug_webhook → get_delivery (of one it listed) → list_connections →
 *   list_connection_usage (a connection read) → switch_account home → an expected refusal
 *
 * A support session (Switch Account) goes into any customer; its expected refusal is a switch
 * without a reason. A franchise admin's session goes into the parent's studios; its expected
 * refusal is check_health on a customer that is not theirs. The session lists the default
 * toolsets, `connections` and `automations` (get_delivery), and lists its tools first, so the client checks every structured
 * result against the tool's listed output schema.
 */

export const SOAK_TOOLSETS = 'default,connections,automations';

/** The kinds of call in the mix (the test checks each was made). */
export const MIX = ['list_accounts', 'switch_account', 'check_health', 'debug_webhook', 'get_delivery', 'list_connections', 'list_connection_usage'] as const;

export async function openSession(mcpUrl: string, token: string): Promise<Client> {
  const url = new URL(mcpUrl);
  url.searchParams.set('toolsets', SOAK_TOOLSETS);
  const client = new Client({ name: 'switchboard-soak', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(url, { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
  await client.listTools();
  return client;
}

export interface SessionLoop {
  client: Client;
  kind: SoakUserKind;
  world: SoakWorld;
  log: CallLog;
  /** mean pause before each call; each pause is 0.5–1.5 times it */
  thinkMs: number;
  /** true once the run is over: the loop ends after its current call */
  stopped(): boolean;
}

const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runSession(s: SessionLoop): Promise<void> {
  let n = 0;
  /** one call: its outcome recorded; null when the run ended before it */
  const call = async (tool: string, args: Record<string, unknown>, expect: RegExp | null = null): Promise<CallToolResult | null> => {
    await sleep(s.thinkMs * (0.5 + Math.random()));
    if (s.stopped()) return null;
    const t0 = performance.now();
    let r: CallToolResult;
    try {
      r = (await s.client.callTool({ name: tool, arguments: args })) as CallToolResult;
    } catch (err) {
      s.log.record(tool, performance.now() - t0, 'error', (err as Error).message);
      return null;
    }
    const ms = performance.now() - t0;
    if (expect) {
      if (r.isError && expect.test(textOf(r))) s.log.record(tool, ms, 'refused');
      else s.log.record(tool, ms, 'error', r.isError ? textOf(r) : `expected a refusal matching ${expect}, got: ${textOf(r)}`);
      return r;
    }
    s.log.record(tool, ms, r.isError ? 'error' : 'ok', r.isError ? textOf(r) : undefined);
    return r.isError ? null : r;
  };

  while (!s.stopped()) {
    n++;
    const target = s.kind === 'support' ? pick(s.world.customers) : pick(s.world.studios);
    await call('list_accounts', { query: target.split('-')[0]!, limit: 20 });
    const switched = await call('switch_account', { account: target, reason: `soak: checking ${target}, ticket ${n}` });
    if (!switched) continue; // an error (recorded) or the end: nothing below would act where it should
    await call('check_health', {});
    if (target === s.world.parent) await call('check_health', { scope: 'children' });
    const debug = await call('debug_webhook', { limit: 5, ...(n % 2 ? { status: 'failed' } : {}) });
    const first = (debug?.structuredContent as { deliveries?: { id: string }[] } | undefined)?.deliveries?.[0];
    if (first) await call('get_delivery', { delivery: first.id });
    await call('list_connections', {});
    await call('list_connection_usage', { connection: s.world.connectionOf[target]! });
    await call('switch_account', { account: 'home' });
    if (s.kind === 'support') await call('switch_account', { account: target }, /reason is required/);
    else await call('check_health', { account: pick(s.world.foreign) }, /^Access denied/);
  }
}
