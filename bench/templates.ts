import { sql } from 'drizzle-orm';
import { openDatabase, rowsOf, type Database } from '../src/db/client.js';
import { connections } from '../src/db/schema/index.js';
import { initialize } from '../src/core/tenants.js';
import { addConnection } from '../src/core/connections.js';
import { Keyring, newMasterKey } from '../src/core/keyring.js';
import type { Core } from '../src/core/core.js';
import type { Account } from '../src/core/accounts.js';
import { createTemplate, getVersion } from '../src/core/templates/templates.js';
import { planDeploy } from '../src/core/templates/plan.js';
import { createDeployment, getDeploymentRow } from '../src/core/templates/deployments.js';
import { rollbackTargets, scheduleDeployments } from '../src/core/templates/runner.js';
import { phase } from '../src/core/templates/apply.js';
import { seedAccounts } from './seed.js';
import { fmt, line, ms, note, verdictWord } from './stats.js';
import { record, versus } from './results.js';
import { createDatabase } from './postgres.js';

/**
 * Templates (issue 10): plan and apply of a deploy to 1,000 and to 10,000 accounts, and the
 * rollback of the same, on PostgreSQL and PGlite. Target: 10,000 accounts applied in under 10 s,
 * and time growing no faster than linearly (the ratio of the two sizes is printed). The apply is
 * measured as the workers run it: a deployment written as deploy_template writes it, driven by
 * the deployment runner (batches of 500 targets per transaction) until it completes.
 *
 * Each account's copy binds the system account's shared http connection and gets a variable
 * value: per account, the plan reads copies, connections and names in batched queries and
 * validates the bound definition; the apply writes the copy, its revision, its connection usage,
 * the target's outcome and the account's audit entry.
 */

export const TEMPLATE_TARGET_S = 10;
export const TEMPLATES_SECTION = '8. Templates';

interface Figures {
  accounts: number;
  planMs: number;
  applyMs: number;
  rollbackPlanMs: number;
  rollbackMs: number;
  /** milliseconds per phase of the apply */
  phases: Record<string, number>;
}

async function run(db: Database, accounts: number): Promise<Figures> {
  const init = await initialize(db.db, { adminEmail: 'bench@switchboard.test', switchMinutes: 30 });
  const core: Core = { db: db.db, tenantId: init.tenant.id, switchMinutes: 30, keys: new Keyring(newMasterKey()), secretArgs: false };
  await seedAccounts(db.db, init.tenant.id, accounts);
  const { row } = await addConnection(core, init.systemAccount, { app: 'http', name: 'Default', credentials: { auth_kind: 'bearer', base_url: 'https://api.example.test', token: 'bench-token-not-a-secret' }, createdBy: null });
  await db.db.update(connections).set({ shared: true }).where(sql`${connections.id} = ${row.id}`);
  await db.db.execute(sql`analyze`);
  const { template, version } = await createTemplate(core, init.templatesAccount, {
    name: 'Bench sync',
    definition: {
      trigger: { type: 'webhook', dedupe: { key: 'body.id' }, signature: null },
      routing: null,
      retries: { max: 3 },
      steps: [
        { id: 'pick', kind: 'filter', condition: 'trigger.body.type = "booking"' },
        { id: 'send', kind: 'http', method: 'POST', url: 'https://api.example.test/sites/{{ vars.site_id }}/events', connection: 'http', body: { event: '{{ trigger.body }}' } },
        { id: 'remember', kind: 'store', action: 'set', key: 'last:{{ trigger.body.id }}', value: '{{ steps.send.output.status }}' },
      ],
    },
    variables: [{ name: 'site_id', type: 'string', required: true }],
    by: null,
  });
  const targets = rowsOf<Account & { parent_account_id: string | null; routing_key: string | null }>(
    await db.db.execute(sql`select * from accounts where tenant_id = ${init.tenant.id}::uuid and kind = 'customer' order by slug`),
  ).map((a) => ({ ...a, id: String(a.id), parentAccountId: a.parent_account_id ? String(a.parent_account_id) : null, routingKey: a.routing_key }) as Account);
  const drive = async (d: { id: string }, phases?: Record<string, number>) => {
    const stop = scheduleDeployments(core, { pollMs: 5, leaseMs: 60_000, phases });
    for (;;) {
      const now = await getDeploymentRow(core, init.templatesAccount.id, d.id);
      if (now.status !== 'running') break;
      await new Promise((r) => setTimeout(r, 5));
    }
    await stop();
  };

  let t0 = performance.now();
  const plan = await planDeploy(core, template, await getVersion(core, init.templatesAccount, template), targets, { values: { site_id: 'site-1' }, connections: {}, overwriteDrift: false });
  const planMs = performance.now() - t0;
  if (plan.counts.create !== targets.length) throw new Error(`plan: ${JSON.stringify(plan.counts)} of ${targets.length}`);
  const phases: Record<string, number> = {};
  t0 = performance.now();
  const d = await phase(phases, 'write deployment and its targets', () => createDeployment(core, {
    accountId: init.templatesAccount.id, templateId: template.id, templateName: template.name, kind: 'deploy', version: version.version, rollbackOf: null, planHash: plan.hash,
    options: { waveEnds: [targets.length], bakeMs: 0, minExecutions: 0, maxFailureRateIncrease: 0.1, autoRollback: false }, createdBy: init.admin.id, // as deploy_template writes it: the deployer is checked again at each batch
    targets: plan.targets.map((t) => ({ accountId: t.account.id, action: 'create', automationId: null, expectedRevision: null, fromVersion: null, toVersion: t.toVersion, restoreRevision: null, bindings: t.bindings, values: t.values })),
  }));
  await drive(d, phases);
  const applyMs = performance.now() - t0;
  const [copies] = rowsOf<{ n: number }>(await db.db.execute(sql`select count(*)::int as n from automations where template_id = ${template.id}::uuid`));
  if (Number(copies!.n) !== targets.length) throw new Error(`apply made ${copies!.n} copies of ${targets.length}`);

  t0 = performance.now();
  const undo = await rollbackTargets(core, await getDeploymentRow(core, init.templatesAccount.id, d.id));
  const rollbackPlanMs = performance.now() - t0;
  t0 = performance.now();
  const r = await createDeployment(core, {
    accountId: init.templatesAccount.id, templateId: template.id, templateName: template.name, kind: 'rollback', version: null, rollbackOf: d.id, planHash: 'bench',
    options: { waveEnds: [undo.length], bakeMs: 0, minExecutions: 0, maxFailureRateIncrease: 1, autoRollback: false }, createdBy: null, targets: undo,
  });
  await drive(r);
  const rollbackMs = performance.now() - t0;
  const [done] = rowsOf<{ n: number }>(await db.db.execute(sql`select count(*)::int as n from deployment_targets where deployment_id = ${r.id}::uuid and status = 'done'`));
  if (Number(done!.n) !== targets.length) throw new Error(`rollback did ${done!.n} of ${targets.length}`);
  return { accounts: targets.length, planMs, applyMs, rollbackPlanMs, rollbackMs, phases };
}

/** Both sizes on one kind of database; `open` gives a fresh database per size. */
/** rows an applied create writes per account: the copy, its revision, its connection usage, the target's outcome, the audit entry */
const WRITES_PER_ACCOUNT = 5;

export async function templateBench(db: string, label: string, open: () => Promise<{ db: Database; close(): Promise<void> }>, insertRate: number | null = null): Promise<void> {
  const figures: Figures[] = [];
  for (const size of [1_000, 10_000]) {
    const h = await open();
    try {
      figures.push(await run(h.db, size));
    } finally {
      await h.close();
    }
  }
  line(`  ${label}`);
  const section = TEMPLATES_SECTION;
  for (const f of figures) {
    const perSecond = Math.round(f.accounts / (f.applyMs / 1000));
    line(`    ${String(f.accounts).padStart(6)} accounts: plan ${ms(f.planMs, 8)}  apply ${ms(f.applyMs, 8)} (${perSecond} accounts/s)  rollback plan ${ms(f.rollbackPlanMs, 7)}  rollback ${ms(f.rollbackMs, 8)}`);
    record({ section, figure: `deploy to ${fmt(f.accounts)} accounts · ${db}`, value: `plan ${ms(f.planMs)} · apply ${ms(f.applyMs)} (${fmt(perSecond)} accounts/s) · rollback plan ${ms(f.rollbackPlanMs)} · rollback ${ms(f.rollbackMs)}` });
  }
  const [a, b] = figures as [Figures, Figures];
  // where the 10,000-account apply's time goes: the batch transaction's phases, the runner's own
  // queries, and the rest (begin / scope / commit, and waiting for the runner to claim it)
  const p = b.phases;
  const outer = ['batch transaction (total)', 'write deployment and its targets', 'deployer still allowed'];
  const inner = Object.entries(p).filter(([k]) => !k.startsWith('runner') && !outer.includes(k));
  const innerSum = inner.reduce((s, [, v]) => s + v, 0);
  const rows: [string, number][] = [
    ...inner.sort((x, y) => y[1] - x[1]),
    ['begin, row-level scope, commit', (p['batch transaction (total)'] ?? 0) - innerSum - (p['deployer still allowed'] ?? 0)],
    ['deployer still allowed', p['deployer still allowed'] ?? 0],
    ['write deployment and its targets', p['write deployment and its targets'] ?? 0],
    ...Object.entries(p).filter(([k]) => k.startsWith('runner')),
  ];
  const accounted = rows.reduce((s, [, v]) => s + v, 0);
  rows.push(['other (claim, reading the version, polling)', b.applyMs - accounted]);
  line(`    where the 10,000-account apply's ${ms(b.applyMs)} goes:`);
  for (const [k, v] of rows) {
    const share = ((100 * v) / b.applyMs).toFixed(1);
    line(`      ${k.padEnd(44)} ${ms(v, 8)}  ${share.padStart(5)} %`);
    record({ section, figure: `extra: ${fmt(b.accounts)}-account apply, ${k} · ${db}`, value: `${ms(v)} (${share} %)` });
  }
  const big = b.applyMs / 1000;
  if (insertRate) {
    const writes = (b.accounts * WRITES_PER_ACCOUNT) / (b.applyMs / 1000);
    const ratio = writes / insertRate;
    line(`    ${fmt(Math.round(writes))} row writes/s in the apply (${WRITES_PER_ACCOUNT} per account) = ${ratio.toFixed(2)}× the raw single-row insert rate measured in this run (${fmt(Math.round(insertRate))} tx/s)`);
    record({ section, figure: `extra: row writes/s in the ${fmt(b.accounts)}-account apply · ${db}`, value: fmt(Math.round(writes)), unit: '/s', note: `${WRITES_PER_ACCOUNT} per account`, reference: versus(`raw insert rate ${fmt(Math.round(insertRate))} tx/s`, ratio) });
  }
  const met = big < TEMPLATE_TARGET_S;
  const growth = { apply: (b.applyMs / a.applyMs).toFixed(1), plan: (b.planMs / a.planMs).toFixed(1), rollback: (b.rollbackMs / a.rollbackMs).toFixed(1) };
  line(`    10,000 applied in ${big.toFixed(2)} s (target < ${TEMPLATE_TARGET_S} s: ${verdictWord(met)}); 10x the accounts took ${growth.apply}x the apply, ${growth.plan}x the plan, ${growth.rollback}x the rollback (linear: 10x)`);
  record({ section, figure: `${fmt(b.accounts)} accounts applied · ${db}`, value: `${big.toFixed(2)} s`, target: `< ${TEMPLATE_TARGET_S} s`, met });
  record({ section, figure: `extra: 10x the accounts took · ${db}`, value: `${growth.apply}x the apply · ${growth.plan}x the plan · ${growth.rollback}x the rollback`, note: 'linear: 10x' });
}

export async function templatesSection(pgOk: boolean, insertRate: number | null): Promise<void> {
  line('8. Templates: plan, apply and rollback of a deploy to 1,000 and 10,000 accounts (runner batches of 500)');
  if (pgOk) {
    await templateBench('PostgreSQL', 'PostgreSQL (fresh database per size)', async () => {
      const h = await createDatabase('tpl');
      const db = await openDatabase({ url: h.url });
      await db.migrate();
      return { db, close: async () => { await db.close(); await h.drop(); } };
    }, insertRate);
  } else note('PostgreSQL did not answer: its case is skipped');
  await templateBench('PGlite', 'PGlite (in memory)', async () => {
    const db = await openDatabase({});
    await db.migrate();
    return { db, close: () => db.close() };
  });
}
