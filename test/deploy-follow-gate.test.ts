import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildWorld, connect, data, type Session, type World } from './helpers/world.js';
import { createAccount } from '../src/core/accounts.js';
import { addConnection } from '../src/core/connections.js';
import { ToolGate } from '../src/mcp/tool-gate.js';

/**
 * deploy_template follows its deployment for up to wait_seconds (a minute at most) after it
 * applied. The pauses between its looks hold no tool-call slot (ctx.outsideGate): with one slot,
 * another caller's call made while it follows is served, not refused "busy" after the bound.
 * No worker runs here, so the deployment stays running and the call follows it the whole time.
 */
let w: World;
let admin: Session;
let other: Session;

beforeAll(async () => {
  w = await buildWorld();
  const shop = await createAccount(w.core, { name: 'Follow Shop', slug: 'follow-shop' });
  await addConnection(w.core, shop, { app: 'http', name: 'Default', credentials: { auth_kind: 'bearer', base_url: 'http://127.0.0.1:9', token: 'follow-token' }, createdBy: null });
  admin = await connect(w.core, w.tokens.admin);
  other = await connect(w.core, w.tokens.boringViewer);
  const made = await admin.call('create_template', {
    name: 'Follow sync',
    definition: { steps: [{ id: 'send', kind: 'http', method: 'POST', url: 'http://127.0.0.1:9/hook', connection: 'http', body: { event: '{{ trigger.body }}' } }] },
  });
  expect(made.isError).toBeFalsy();
});

afterAll(async () => {
  await admin?.close();
  await other?.close();
  await w?.close();
});

describe('deploy_template following its deployment', () => {
  it('holds no slot between its looks: another caller is served meanwhile', { timeout: 60_000 }, async () => {
    const plan = data<{ plan: { hash: string; counts: Record<string, number> } }>(await admin.call('deploy_template', { template: 'Follow sync', accounts: ['follow-shop'] }));
    expect(plan.plan.counts).toMatchObject({ create: 1 });
    // the bound is well above one look at the deployment (a few ms), well below the 5 s it follows
    const gate = (w.core.toolGate = new ToolGate(1, 1_000));
    let following = true;
    const applied = admin.call('deploy_template', { template: 'Follow sync', accounts: ['follow-shop'], plan_hash: plan.plan.hash, wait_seconds: 5 }).finally(() => (following = false));
    // the apply has committed and the call is following the deployment
    await expect.poll(async () => (await w.core.db.query.deployments.findMany()).length, { timeout: 10_000 }).toBe(1);
    const calls = [];
    for (let i = 0; i < 3; i++) {
      const r = await other.call('whoami');
      calls.push({ error: r.isError === true, whileFollowing: following });
      await new Promise((r) => setTimeout(r, 200));
    }
    const done = data<{ applied: boolean; deployment: { status: string } }>(await applied);
    expect(done.applied).toBe(true);
    expect(done.deployment.status).toBe('running');
    // answered while the deploy call still followed (it follows 5 s), and none refused busy
    expect(calls).toEqual([
      { error: false, whileFollowing: true },
      { error: false, whileFollowing: true },
      { error: false, whileFollowing: true },
    ]);
    expect(gate.refused).toBe(0);
    expect(gate.load).toEqual({ running: 0, waiting: 0 });
  });
});
