import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { automationUsing, buildWorld, connect, data, text, type Persona, type Session, type World } from './helpers/world.js';
import { memberships, type Permission, type Role } from '../src/db/schema/index.js';
import { addConnection } from '../src/core/connections.js';
import type { Account } from '../src/core/accounts.js';
import { setPermissions } from '../src/core/users.js';
import { templatesAccount } from '../src/core/templates/account.js';
import { scheduleDeployments } from '../src/core/templates/runner.js';
import { getDeploymentRow } from '../src/core/templates/deployments.js';
import { withAccount } from '../src/db/scope.js';

/**
 * The isolation matrix: every account-taking tool × {a linked parent, a linked child, another
 * customer, the caller's own account} × every kind of caller. The expected roles are written out
 * here by hand from the rule in the foundation issue, independent of src/core/access.ts.
 */
type Target = 'acme' | 'studio1' | 'boring' | 'sandbox';
const TARGETS: Target[] = ['acme', 'studio1', 'boring', 'sandbox'];

// effective role of each caller in each account ('-' = no access)
const ROLE: Record<Persona, Record<Target, Role | '-'>> = {
  admin: { acme: 'admin', studio1: 'admin', boring: 'admin', sandbox: 'owner' },
  switcher: { acme: 'admin', studio1: 'admin', boring: 'admin', sandbox: 'admin' },
  acmeAdmin: { acme: 'admin', studio1: 'admin', boring: '-', sandbox: '-' },
  acmeMember: { acme: 'member', studio1: '-', boring: '-', sandbox: '-' },
  studioMember: { acme: '-', studio1: 'member', boring: '-', sandbox: '-' },
  boringAdmin: { acme: '-', studio1: '-', boring: 'admin', sandbox: '-' },
  boringViewer: { acme: '-', studio1: '-', boring: 'viewer', sandbox: '-' },
  tenantAdmin: { acme: '-', studio1: '-', boring: 'member', sandbox: '-' },
};
const PERSONAS = Object.keys(ROLE) as Persona[];
const TENANT_ADMINS: Persona[] = ['admin', 'tenantAdmin'];
const RANK = ['viewer', 'member', 'admin', 'owner'];
const atLeast = (r: Role | '-', need: Role) => r !== '-' && RANK.indexOf(r) >= RANK.indexOf(need);

/**
 * Templates (docs/templates.md): the template tools act in the tenant's templates account, which a
 * caller reaches by a membership there or with Switch Account; deploy_template, rollback_template
 * and cancel_deployment also need the deploy_automations permission, and a deploy or rollback the
 * member role in every account it reaches (children_of: admin of the parent). The describe 'templates' below grants these (after the
 * matrix above ran, whose list_accounts expectations know nothing of the templates account):
 */
const TEMPLATES_ROLE: Record<Persona, Role | '-'> = {
  admin: 'admin', // Switch Account
  switcher: 'admin', // Switch Account
  acmeAdmin: 'member',
  acmeMember: 'viewer',
  studioMember: 'viewer',
  boringAdmin: 'member', // … but not deploy_automations
  boringViewer: 'viewer',
  tenantAdmin: '-', // deploy_automations and the admin permission, no way into the templates account
};
const DEPLOYERS: Persona[] = ['admin', 'switcher', 'acmeAdmin', 'acmeMember', 'studioMember', 'boringViewer', 'tenantAdmin'];
const mayDeploy = (p: Persona) => DEPLOYERS.includes(p) && TEMPLATES_ROLE[p] !== '-';
const TEMPLATE = 'Matrix template';
const TEMPLATE_DEFINITION = {
  steps: [{ id: 'greet', kind: 'transform', value: '{{ vars.greeting }}' }],
  variables: [{ name: 'greeting', type: 'string', required: false, default: 'hello' }],
};
// the deployment every template test reads: applied (copies made) in acme, studio1 and boring
const DEPLOYED: Target[] = ['acme', 'studio1', 'boring'];
let deploymentId = '';
const NO_SUCH_DEPLOYMENT = '00000000-0000-4000-8000-000000000000';

let n = 0;
interface Case {
  tool: string;
  args: (slug: string) => Record<string, unknown>;
  need: Role;
  tenantAdmin?: boolean;
  /** also the deploy_automations permission and a way into the templates account (mayDeploy) */
  deploys?: boolean;
  /** what an allowed call answers, beyond getting past the guard */
  allowedCheck?: (r: CallToolResult, target: Target) => void;
}
const CASES: Case[] = [
  { tool: 'get_account', args: (s) => ({ account: s }), need: 'viewer' },
  { tool: 'switch_account', args: (s) => ({ account: s, reason: 'isolation matrix' }), need: 'viewer' },
  { tool: 'list_accounts', args: (s) => ({ parent: s }), need: 'viewer' },
  { tool: 'audit_log', args: (s) => ({ account: s }), need: 'admin' },
  { tool: 'list_switches', args: (s) => ({ account: s }), need: 'admin' },
  { tool: 'create_user', args: (s) => ({ account: s, email: `m${++n}@matrix.test`, name: 'Matrix', role: 'viewer' }), need: 'admin' },
  { tool: 'create_account', args: (s) => ({ name: `Matrix ${++n}`, parent: s, routing_key: `m-${n}` }), need: 'admin', tenantAdmin: true },
  // app connections: each target account holds a stripe connection (beforeAll)
  { tool: 'list_connections', args: (s) => ({ account: s }), need: 'viewer' },
  { tool: 'list_connection_usage', args: (s) => ({ account: s, connection: 'stripe' }), need: 'viewer' },
  { tool: 'add_connection', args: (s) => ({ account: s, app: 'stripe', name: `Matrix ${++n}`, credentials: { secret_key: MATRIX_KEY } }), need: 'member' },
  { tool: 'update_connection', args: (s) => ({ account: s, connection: 'stripe', notes: `matrix ${++n}` }), need: 'member' },
  { tool: 'reconnect_connection', args: (s) => ({ account: s, connection: 'stripe', credentials: { secret_key: MATRIX_KEY } }), need: 'member' },
  { tool: 'set_connection_rate_limit', args: (s) => ({ account: s, connection: 'stripe', per_minute: 100 }), need: 'admin' },
  { tool: 'share_connection', args: (s) => ({ account: s, connection: 'stripe', shared: false }), need: 'admin' },
  { tool: 'disconnect_connection', args: (s) => ({ account: s, connection: 'stripe' }), need: 'admin' },
  { tool: 'view_connection_info', args: (s) => ({ account: s, connection: 'stripe', password: 'not-anyones-password' }), need: 'admin' },
  // automations: each target account holds 'Matrix flow' (beforeAll)
  { tool: 'list_automations', args: (s) => ({ account: s }), need: 'viewer' },
  { tool: 'get_automation', args: (s) => ({ account: s, automation: 'Matrix flow' }), need: 'viewer' },
  { tool: 'create_automation', args: (s) => ({ account: s, name: `Matrix ${++n}`, steps: [{ id: 'one', kind: 'transform', value: '{{ trigger.body }}' }] }), need: 'member' },
  { tool: 'update_automation', args: (s) => ({ account: s, automation: 'Matrix flow', note: `matrix ${++n}` }), need: 'member' },
  { tool: 'set_automation_enabled', args: (s) => ({ account: s, automation: 'Matrix flow', enabled: true }), need: 'member' },
  { tool: 'delete_automation', args: (s) => ({ account: s, automation: 'No such flow' }), need: 'admin' },
  { tool: 'rotate_webhook_url', args: (s) => ({ account: s, automation: 'Matrix flow' }), need: 'member' },
  // executions: no worker runs in this file, so test runs stay queued
  { tool: 'run_automation', args: (s) => ({ account: s, automation: 'Matrix flow', wait_seconds: 0 }), need: 'member' },
  { tool: 'list_executions', args: (s) => ({ account: s }), need: 'viewer' },
  { tool: 'get_execution', args: (s) => ({ account: s, execution: '00000000-0000-4000-8000-000000000000' }), need: 'viewer' },
  { tool: 'get_delivery', args: (s) => ({ account: s, delivery: '00000000-0000-4000-8000-000000000000' }), need: 'viewer' },
  // account data: reading needs viewer, changing member
  { tool: 'account_data', args: (s) => ({ account: s, action: 'list' }), need: 'viewer' },
  { tool: 'account_data', args: (s) => ({ account: s, action: 'set', key: `matrix:${++n}`, value: n }), need: 'member' },
];
const MATRIX_KEY = 'sk_test_matrix_0123456789abcdef';

interface PlanData {
  applied: boolean;
  plan: { targets: { account: { id: string; slug: string } }[] };
  deployment: unknown;
}
const planned = (r: CallToolResult) => data<PlanData>(r);

// account-taking template tools, each × persona × target like CASES (run in the describe 'templates')
const TEMPLATE_CASES: Case[] = [
  // a dry run (no plan_hash): the plan, naming exactly the account deployed to
  {
    tool: 'deploy_template',
    args: (s) => ({ template: TEMPLATE, accounts: [s] }),
    need: 'member',
    deploys: true,
    allowedCheck: (r, t) => {
      const got = planned(r);
      expect(got.applied).toBe(false);
      expect(got.plan.targets.map((x) => x.account.id)).toEqual([w.accounts[t].id]);
    },
  },
  // every linked child of the account: admin of the parent (a dry run)
  {
    tool: 'deploy_template',
    args: (s) => ({ template: TEMPLATE, accounts: { children_of: s }, dry_run: true }),
    need: 'admin',
    deploys: true,
    allowedCheck: (r, t) => {
      const got = planned(r);
      expect(got.applied).toBe(false);
      for (const child of CHILDREN[t]()) expect(got.plan.targets.map((x) => x.account.id)).toContain(child.id);
    },
  },
  // rolling the deployment back in one account, or going back to version 1 there (dry runs)
  {
    tool: 'rollback_template',
    args: (s) => ({ template: TEMPLATE, deployment: deploymentId, accounts: [s], dry_run: true }),
    need: 'member',
    deploys: true,
    allowedCheck: (r, t) => expect(planned(r).plan.targets.map((x) => x.account.id)).toEqual(DEPLOYED.includes(t) ? [w.accounts[t].id] : []),
  },
  {
    tool: 'rollback_template',
    args: (s) => ({ template: TEMPLATE, to_version: 1, accounts: [s], dry_run: true }),
    need: 'member',
    deploys: true,
    allowedCheck: (r, t) => expect(planned(r).plan.targets.map((x) => x.account.id)).toEqual([w.accounts[t].id]),
  },
  // one copy's values: member of its account (no permission, no templates account needed)
  {
    tool: 'set_template_values',
    args: (s) => ({ template: TEMPLATE, account: s, values: { greeting: `hi ${++n}` } }),
    need: 'member',
    allowedCheck: (r, t) => (DEPLOYED.includes(t) ? expect(r.isError, text(r)).toBeFalsy() : expect(text(r)).toMatch(/has no copy of the template/)),
  },
  // last: the first allowed caller unlinks the copy, later ones find no copy to unlink
  {
    tool: 'unlink_deployed_copy',
    args: (s) => ({ account: s, automation: TEMPLATE }),
    need: 'member',
    allowedCheck: (r, t) => expect(text(r)).toMatch(DEPLOYED.includes(t) ? /independent now|not a deployed copy/ : /^No automation/),
  },
];

// the template tools that take no account: allowed by the role in the templates account (deploys: and deploy_automations)
const TEMPLATES_ACCOUNT_CASES: { tool: string; args: () => Record<string, unknown>; need: Role; deploys?: boolean }[] = [
  { tool: 'list_templates', args: () => ({}), need: 'viewer' },
  { tool: 'get_template', args: () => ({ template: TEMPLATE }), need: 'viewer' },
  { tool: 'create_template', args: () => ({ name: `Matrix extra ${++n}`, definition: TEMPLATE_DEFINITION }), need: 'member' },
  { tool: 'update_template', args: () => ({ template: TEMPLATE, definition: TEMPLATE_DEFINITION, note: `matrix ${++n}` }), need: 'member' },
  { tool: 'template_status', args: () => ({ template: TEMPLATE }), need: 'viewer' },
  { tool: 'list_deployments', args: () => ({}), need: 'viewer' },
  { tool: 'get_deployment', args: () => ({ deployment: NO_SUCH_DEPLOYMENT }), need: 'viewer' },
  { tool: 'cancel_deployment', args: () => ({ deployment: NO_SUCH_DEPLOYMENT }), need: 'viewer', deploys: true },
];

let w: World;
const sessions = new Map<Persona, Session>();
// the world's linked children of each target (the matrix adds more of its own)
const CHILDREN: Record<Target, () => Account[]> = { acme: () => [w.accounts.studio1, w.accounts.studio2], studio1: () => [], boring: () => [], sandbox: () => [] };

beforeAll(async () => {
  w = await buildWorld();
  for (const p of PERSONAS) sessions.set(p, await connect(w.core, w.tokens[p]));
  for (const t of TARGETS) {
    const { row } = await addConnection(w.core, w.accounts[t], { app: 'stripe', credentials: { secret_key: MATRIX_KEY }, createdBy: w.userIds.admin });
    await automationUsing(w.core, w.accounts[t], 'Matrix flow', [row.id]);
  }
});
afterAll(async () => {
  for (const s of sessions.values()) await s.close();
  await w.close();
});

const isDenied = (r: { isError?: boolean; content: unknown[] }) => r.isError === true && /^Access denied/.test(text(r as never));

/** A denied call shows nothing of these accounts: no structured result, neither their ids nor their names. */
function expectNothingOf(r: CallToolResult, hidden: Account[]) {
  expect(r.structuredContent).toBeUndefined();
  for (const a of hidden) {
    expect(text(r)).not.toContain(a.id);
    expect(text(r)).not.toContain(a.name);
  }
}

/** One test per case × persona × target: allowed exactly when the table says so. */
function matrix(cases: Case[]) {
  for (const c of cases) {
    for (const persona of PERSONAS) {
      for (const target of TARGETS) {
        const allowed =
          atLeast(ROLE[persona][target], c.need) && (!c.tenantAdmin || TENANT_ADMINS.includes(persona)) && (!c.deploys || mayDeploy(persona));
        it(`${c.tool} × ${persona} → ${target}: ${allowed ? 'allowed' : 'denied'}`, async () => {
          const account = w.accounts[target];
          const s = sessions.get(persona)!;
          const r = await s.call(c.tool, c.args(account.slug));
          if (c.tool === 'switch_account' && !r.isError) await s.call('switch_account', { account: 'home' });
          if (allowed) {
            expect(isDenied(r), text(r)).toBe(false);
            c.allowedCheck?.(r, target);
          } else {
            expect(isDenied(r), text(r)).toBe(true);
            // nothing of the target (nor of the children a children_of would reach)
            expectNothingOf(r, [account, ...CHILDREN[target]()]);
          }
          // no tool ever returns a stored secret in clear, allowed or not (view_connection_info needs a password)
          expect(JSON.stringify(r)).not.toContain(MATRIX_KEY);
        });
      }
    }
  }
}

describe('isolation matrix', () => {
  // first, before the matrix creates accounts of its own
  it('list_accounts shows each caller exactly the accounts they may see', async () => {
    const expected: Record<Persona, string[] | 'all'> = {
      admin: 'all',
      switcher: 'all',
      acmeAdmin: ['acme-fitness', 'acme-studio-01', 'acme-studio-02'],
      acmeMember: ['acme-fitness'],
      studioMember: ['acme-studio-01'],
      boringAdmin: ['boring-co'],
      boringViewer: ['boring-co'],
      tenantAdmin: ['boring-co'],
    };
    const everything = (await w.database.db.query.accounts.findMany()).map((a) => a.slug).sort();
    for (const p of PERSONAS) {
      const got = data<{ accounts: { slug: string }[] }>(await sessions.get(p)!.call('list_accounts', { limit: 200 }));
      const slugs = got.accounts.map((a) => a.slug).sort();
      const want = expected[p];
      expect(slugs, p).toEqual(want === 'all' ? everything : [...want].sort());
    }
  });

  matrix(CASES);

  it('a denial for an existing account and for a missing one read the same to a caller without Switch Account', async () => {
    const s = sessions.get('boringAdmin')!;
    const real = text(await s.call('get_account', { account: 'acme-fitness' }));
    const missing = text(await s.call('get_account', { account: 'no-such-account' }));
    expect(real.replace('acme-fitness', 'X')).toBe(missing.replace('no-such-account', 'X'));
  });

  it("another account's id is refused like its slug", async () => {
    const r = await sessions.get('studioMember')!.call('get_account', { account: w.accounts.boring.id });
    expect(isDenied(r)).toBe(true);
    expect(text(r)).not.toContain('Boring Co');
  });

  it('link_account and unlink_account need the admin permission and admin in both accounts', async () => {
    const loose = await connect(w.core, w.tokens.admin);
    const created = data<{ account: { slug: string } }>(await loose.call('create_account', { name: 'Loose Studio' }));
    const args = { child: created.account.slug, parent: 'acme-fitness', routing_key: 'studio-99' };
    // the parent's admin lacks the admin permission; the tenant admin lacks access to acme
    expect(text(await sessions.get('acmeAdmin')!.call('link_account', args))).toMatch(/^Access denied: link_account needs the admin permission/);
    expect(isDenied(await sessions.get('tenantAdmin')!.call('link_account', args))).toBe(true);
    const linked = data<{ account: { parent_id: string; routing_key: string } }>(await loose.call('link_account', args));
    expect(linked.account).toMatchObject({ parent_id: w.accounts.acme.id, routing_key: 'studio-99' });
    // the parent's admin now reaches the child through the link …
    expect(isDenied(await sessions.get('acmeAdmin')!.call('get_account', { account: created.account.slug }))).toBe(false);
    expect(isDenied(await sessions.get('studioMember')!.call('unlink_account', { child: created.account.slug }))).toBe(true);
    data(await loose.call('unlink_account', { child: created.account.slug }));
    // … and loses it when the link goes
    expect(isDenied(await sessions.get('acmeAdmin')!.call('get_account', { account: created.account.slug }))).toBe(true);
    await loose.close();
  });
});

/** Neither the id, the slug nor the name of any of `accounts` appears anywhere in the result. */
function expectUnnamed(r: CallToolResult, accounts: Account[], label: string) {
  const all = JSON.stringify(r);
  for (const a of accounts) for (const v of [a.id, a.slug, a.name]) expect(all, `${label}: ${v}`).not.toContain(v);
}

describe('templates', () => {
  // the world's personas, given what the tables TEMPLATES_ROLE and DEPLOYERS describe
  const TEMPLATE_MEMBERS: [Persona, Role][] = [
    ['acmeAdmin', 'member'],
    ['acmeMember', 'viewer'],
    ['studioMember', 'viewer'],
    ['boringAdmin', 'member'],
    ['boringViewer', 'viewer'],
  ];
  const PERMISSIONS: [Persona, Permission[]][] = [
    ['switcher', ['switch_account', 'deploy_automations']],
    ['acmeAdmin', ['deploy_automations']],
    ['acmeMember', ['deploy_automations']],
    ['studioMember', ['deploy_automations']],
    ['boringViewer', ['deploy_automations']],
    ['tenantAdmin', ['admin', 'deploy_automations']],
  ];

  beforeAll(async () => {
    const tpl = await templatesAccount(w.core);
    for (const [p, role] of TEMPLATE_MEMBERS) {
      await withAccount(w.core.db, [tpl.id], (tx) => tx.insert(memberships).values({ userId: w.userIds[p], accountId: tpl.id, role }));
    }
    for (const [p, permissions] of PERMISSIONS) await setPermissions(w.core, w.userIds[p], permissions);

    // the template, applied to acme, studio1 and boring by the init admin; no worker runs in this
    // file, so the deployment runner alone drives it, until it completes
    const admin = sessions.get('admin')!;
    data(await admin.call('create_template', { name: TEMPLATE, definition: TEMPLATE_DEFINITION }));
    const accounts = DEPLOYED.map((t) => w.accounts[t].slug);
    const plan = planned(await admin.call('deploy_template', { template: TEMPLATE, accounts })) as PlanData & { plan: { hash: string } };
    const applied = data<{ deployment: { id: string } }>(await admin.call('deploy_template', { template: TEMPLATE, accounts, plan_hash: plan.plan.hash, wait_seconds: 0 }));
    deploymentId = applied.deployment.id;
    const stop = scheduleDeployments(w.core, { pollMs: 50 });
    try {
      for (const until = Date.now() + 30_000; Date.now() < until; await new Promise((r) => setTimeout(r, 50))) {
        if ((await getDeploymentRow(w.core, tpl.id, deploymentId)).status !== 'running') break;
      }
    } finally {
      await stop();
    }
    const done = await getDeploymentRow(w.core, tpl.id, deploymentId);
    expect(done.status, done.message ?? '').toBe('completed');
  });

  // the accounts of the deployment each caller may see (any role there), and those they may not
  const seen = (p: Persona) => DEPLOYED.filter((t) => ROLE[p][t] !== '-');
  const unseen = (p: Persona) => DEPLOYED.filter((t) => ROLE[p][t] === '-').map((t) => w.accounts[t]);
  const slugs = (ts: Target[]) => ts.map((t) => w.accounts[t].slug).sort();

  for (const c of TEMPLATES_ACCOUNT_CASES) {
    for (const persona of PERSONAS) {
      const allowed = atLeast(TEMPLATES_ROLE[persona], c.need) && (!c.deploys || DEPLOYERS.includes(persona));
      it(`${c.tool} × ${persona} (templates account): ${allowed ? 'allowed' : 'denied'}`, async () => {
        const r = await sessions.get(persona)!.call(c.tool, c.args());
        expect(isDenied(r), text(r)).toBe(!allowed);
        if (!allowed) {
          expect(r.structuredContent).toBeUndefined();
          expect(text(r)).not.toContain(TEMPLATE);
        }
        // whatever a template tool answers, it names no account of a deployment the caller may not see
        expectUnnamed(r, unseen(persona), persona);
      });
    }
  }

  for (const persona of PERSONAS) {
    const allowed = TEMPLATES_ROLE[persona] !== '-';
    it(`get_deployment × ${persona}: ${allowed ? `shows ${seen(persona).join(', ') || 'no account'}, counts the rest hidden` : 'denied'}`, async () => {
      const r = await sessions.get(persona)!.call('get_deployment', { deployment: deploymentId });
      if (!allowed) {
        expect(isDenied(r), text(r)).toBe(true);
        expect(r.structuredContent).toBeUndefined();
        expectUnnamed(r, DEPLOYED.map((t) => w.accounts[t]), persona);
        return;
      }
      const got = data<{ deployment: { id: string; targets: Record<string, number> }; accounts: { account: { slug: string } }[]; hidden: number }>(r);
      expect(got.deployment.id).toBe(deploymentId);
      expect(got.deployment.targets).toEqual({ done: DEPLOYED.length });
      expect(got.accounts.map((a) => a.account.slug).sort()).toEqual(slugs(seen(persona)));
      expect(got.hidden).toBe(DEPLOYED.length - seen(persona).length);
      expectUnnamed(r, unseen(persona), persona);
    });

    it(`list_deployments × ${persona}: ${allowed ? 'lists the deployment, naming no account' : 'denied'}`, async () => {
      const r = await sessions.get(persona)!.call('list_deployments', { template: TEMPLATE });
      expect(isDenied(r), text(r)).toBe(!allowed);
      if (allowed) expect(data<{ deployments: { id: string }[] }>(r).deployments.map((d) => d.id)).toContain(deploymentId);
      else expect(r.structuredContent).toBeUndefined();
      expectUnnamed(r, allowed ? unseen(persona) : DEPLOYED.map((t) => w.accounts[t]), persona);
    });

    it(`template_status × ${persona}: ${allowed ? `shows the copies in ${seen(persona).join(', ') || 'no account'}, counts the rest hidden` : 'denied'}`, async () => {
      const r = await sessions.get(persona)!.call('template_status', { template: TEMPLATE });
      if (!allowed) {
        expect(isDenied(r), text(r)).toBe(true);
        expect(r.structuredContent).toBeUndefined();
        expectUnnamed(r, DEPLOYED.map((t) => w.accounts[t]), persona);
        return;
      }
      const got = data<{ copies: { account: { slug: string } }[]; hidden: number }>(r);
      expect(got.copies.map((c) => c.account.slug).sort()).toEqual(slugs(seen(persona)));
      expect(got.hidden).toBe(DEPLOYED.length - seen(persona).length);
      expectUnnamed(r, unseen(persona), persona);
    });

    // undoing the whole deployment reaches all its accounts: the member role in each of them
    const undoes = mayDeploy(persona) && DEPLOYED.every((t) => atLeast(ROLE[persona][t], 'member'));
    it(`rollback_template of the whole deployment × ${persona}: ${undoes ? 'allowed' : 'denied'}`, async () => {
      const r = await sessions.get(persona)!.call('rollback_template', { template: TEMPLATE, deployment: deploymentId, dry_run: true });
      if (undoes) {
        expect(planned(r).plan.targets.map((x) => x.account.slug).sort()).toEqual(slugs(DEPLOYED));
      } else {
        expect(isDenied(r), text(r)).toBe(true);
        expect(r.structuredContent).toBeUndefined();
        expectUnnamed(r, unseen(persona), persona);
      }
    });
  }

  // account-taking template tools, after the reading ones above (unlink_deployed_copy unlinks copies)
  matrix(TEMPLATE_CASES);
});

describe('tenant-wide tools', () => {
  it('set_user_permissions needs the admin permission, and keeps the last admin', async () => {
    for (const p of PERSONAS) {
      const r = await sessions.get(p)!.call('set_user_permissions', { user: 'boringviewer@switchboard.test', permissions: [] });
      expect(isDenied(r), `${p}: ${text(r)}`).toBe(!TENANT_ADMINS.includes(p));
    }
    // the tenant admin may not strip the init admin and then itself of admin: one must remain
    const t = sessions.get('tenantAdmin')!;
    data(await t.call('set_user_permissions', { user: 'admin@switchboard.test', permissions: ['switch_account'] }));
    const last = await t.call('set_user_permissions', { user: 'tenantadmin@switchboard.test', permissions: [] });
    expect(text(last)).toMatch(/last admin of the tenant/);
    data(await t.call('set_user_permissions', { user: 'admin@switchboard.test', permissions: ['switch_account', 'admin'] }));
  });

  it('whoami names the caller and the token in use, for every caller', async () => {
    for (const p of PERSONAS) {
      const who = data<{ user: { id: string }; token_id: string }>(await sessions.get(p)!.call('whoami'));
      expect(who.user.id).toBe(w.userIds[p]);
      expect(who.token_id).toMatch(/^[0-9a-f-]{36}$/);
    }
  });
});
