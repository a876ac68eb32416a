import { createHash, randomUUID } from 'node:crypto';
import { and, eq, sql } from 'drizzle-orm';
import { accounts, memberships, type Role } from '../../db/schema/index.js';
import { withAccount, type Tx } from '../../db/scope.js';
import { rowsOf } from '../../db/client.js';
import type { Core } from '../core.js';
import type { Account } from '../accounts.js';
import type { Caller } from '../users.js';
import { atLeast, type Grant } from '../access.js';
import { definitionOf } from '../automations.js';
import type { Definition } from '../automation-definition.js';
import { notifyWorkers } from '../executions.js';
import { isUuid } from '../ids.js';
import { UserError } from '../errors.js';
import { routingValue } from '../webhooks.js';
import { countDeliveries, deliveryEvents, matchDeliveries, type Matched, type ReplayFilter } from './replay-plan.js';

/**
 * replay_webhook: recorded deliveries run again as new executions (source 'replay', delivery_id
 * the original delivery), each in the account its event belongs in — the linked child it was
 * routed to (while still linked), a child the routing finds now for one that was not routed, else
 * the automation's own account. With reuse, a replay's http steps send the original run's
 * Idempotency-Keys (executions.idempotency_of), so apps that honour them apply a write once.
 *
 * A plan says which deliveries replay where, with which revision, which not and why, and which
 * side effects (http calls, account data writes) each revision repeats — marked with how many of
 * the original runs had already done them. Its hash covers what is decided, so an apply can check
 * that it does what the dry run showed.
 */

export const DEFAULT_REPLAY_MAX = 1000;

export interface ReplayOptions {
  revision: 'original' | 'current';
  reuse: boolean;
}

export interface Decision {
  delivery: Matched;
  /** where it runs; null: not replayable (code and reason say why) */
  target: Account | null;
  revision: number | null;
  idempotencyOf: string | null;
  code: string | null;
  reason: string | null;
}

export interface SideEffect {
  step: string;
  kind: 'http' | 'store';
  method: string | null;
  /** the app of the step's connection, and the host its URL names (when written out) */
  app: string | null;
  host: string | null;
  action: string | null;
  scope: 'account' | 'parent' | null;
  /** of the deliveries this revision replays, how many had this step done by an earlier run */
  doneBefore: number;
}

export interface RevisionPlan {
  automationId: string;
  automationName: string;
  revision: number;
  deliveries: number;
  sideEffects: SideEffect[];
}

export interface Plan {
  options: ReplayOptions;
  matched: number;
  decisions: Decision[];
  replayable: Decision[];
  accounts: { account: Account; deliveries: number }[];
  revisions: RevisionPlan[];
  hash: string;
}

interface Child {
  account: Account;
  /** whether the caller may act in it as member */
  allowed: boolean;
}

/**
 * The acting account's linked children and whether the caller may act in each as member, in one
 * query: all of them for its admins (parent admin) and Switch Account holders (both have an
 * admin grant here), otherwise those where the caller is a member or above.
 */
async function childrenOf(core: Core, caller: Caller, acting: Account, grant: Grant | null): Promise<Child[]> {
  const all = grant !== null && atLeast(grant.role, 'admin');
  const rows = await core.db
    .select({ account: accounts, role: memberships.role })
    .from(accounts)
    .leftJoin(memberships, and(eq(memberships.accountId, accounts.id), eq(memberships.userId, caller.user.id)))
    .where(and(eq(accounts.tenantId, core.tenantId), eq(accounts.parentAccountId, acting.id)));
  return rows.map((r) => ({ account: r.account, allowed: all || (r.role !== null && atLeast(r.role as Role, 'member')) }));
}

const pairKey = (automationId: string, revision: number) => `${automationId}:${revision}`;

/** Plan a replay: match, decide each delivery, list the side effects, hash it. */
export async function planReplay(
  core: Core,
  caller: Caller,
  acting: Account,
  grant: Grant | null,
  by: { delivery: string } | { filter: ReplayFilter },
  options: ReplayOptions,
): Promise<Plan> {
  const max = core.replayMax ?? DEFAULT_REPLAY_MAX;
  const children = await childrenOf(core, caller, acting, grant);
  const scope = [acting.id, ...children.filter((c) => c.allowed).map((c) => c.account.id)];
  return withAccount(core.db, scope, async (tx) => {
    const { rows, more } = await matchDeliveries(tx, core.tenantId, acting.id, by, max);
    if (more && 'filter' in by) {
      const n = await countDeliveries(tx, core.tenantId, acting.id, by.filter);
      throw new UserError(`${n} deliveries match this filter, more than the ${max} one call replays: narrow it (automation, status, error, since, until, group).`);
    }
    if ('delivery' in by && !rows.length) throw new UserError(`No delivery ${by.delivery} in this account: debug_webhook lists its deliveries.`, 'not_found');

    const revisionOf = (m: Matched) => (options.revision === 'current' ? m.currentRevision : (m.originalRevision ?? m.revisionAtReceipt ?? m.currentRevision));
    const defs = new Map<string, Definition>();
    for (const m of rows) {
      const k = pairKey(m.automationId, revisionOf(m));
      if (!defs.has(k)) defs.set(k, await definitionOf(core, acting.id, m.automationId, revisionOf(m), tx));
    }
    // deliveries that ran nowhere in particular, of a revision that routes: routed again now, as ingress routes
    const toRoute = rows.filter((m) => !m.routedAccountId && m.status !== 'rejected' && defs.get(pairKey(m.automationId, revisionOf(m)))!.routing);
    const events = await deliveryEvents(tx, toRoute.map((m) => m.id));
    const byId = new Map(children.map((c) => [c.account.id, c]));
    const byKey = new Map(children.filter((c) => c.account.routingKey !== null).map((c) => [c.account.routingKey!, c]));

    const decisions: Decision[] = [];
    for (const m of rows) {
      const revision = revisionOf(m);
      const skip = (code: string, reason: string) => decisions.push({ delivery: m, target: null, revision: null, idempotencyOf: null, code, reason });
      const run = (target: Account) =>
        decisions.push({ delivery: m, target, revision, idempotencyOf: options.reuse ? m.executionId : null, code: null, reason: null });
      const inChild = (child: Child | undefined) => {
        if (!child) return skip('unlinked', 'the account this event was routed to is no longer linked to this account');
        if (!child.allowed) return skip('routed_account_denied', 'replaying it needs the member role in the account it was routed to');
        if (child.account.status === 'suspended') return skip('account_suspended', 'the account this event was routed to is suspended');
        return run(child.account);
      };
      // a routed delivery in a linked account the caller may not act in says so (inChild), whatever ran there
      const deniedChild = m.routedAccountId !== null && byId.get(m.routedAccountId)?.allowed === false;
      if (m.replayHidden && !deniedChild) skip('replayed_elsewhere', 'its latest run is a replay you may not see (in a linked account you may not act in, or pruned): it is not replayed again from here');
      else if (m.latestStatus === 'queued' || m.latestStatus === 'running') skip('in_flight', 'a run of this delivery is queued or running: wait for it to end');
      else if (m.status === 'rejected' && m.code === 'signature_invalid') skip('signature_invalid', 'its signature did not verify, so its body was not kept: there is no event to run');
      else if (m.status === 'rejected') skip(m.code ?? 'rejected', 'its body could not be read, so there is no event to run');
      else if (!m.enabled) skip('automation_disabled', 'the automation is disabled: enable it first (set_automation_enabled)');
      else if (m.automationStatus === 'paused') skip('automation_paused', 'the automation is paused because a connection it uses is disconnected: reconnect it first (reconnect_connection)');
      else if (m.routedAccountId) inChild(byId.get(m.routedAccountId));
      else if (events.has(m.id)) {
        // the reasons say what happened without quoting the event (its routing value is payload: data)
        const { value } = await routingValue(defs.get(pairKey(m.automationId, revision))!, acting, events.get(m.id)!);
        if (value === null) skip('unrouted', 'no routing key can be computed from this event (empty, not a string or number, or the expression failed)');
        else if (!byKey.has(value)) skip('unrouted', "no linked account has this event's routing key now");
        else inChild(byKey.get(value));
      } else run(acting);
    }

    const replayable = decisions.filter((d) => d.target !== null);
    const perAccount = new Map<string, { account: Account; deliveries: number }>();
    for (const d of replayable) {
      const a = perAccount.get(d.target!.id) ?? { account: d.target!, deliveries: 0 };
      a.deliveries++;
      perAccount.set(d.target!.id, a);
    }
    const revisions = await sideEffects(tx, replayable, defs);
    return {
      options,
      matched: rows.length,
      decisions,
      replayable,
      accounts: [...perAccount.values()].sort((a, b) => b.deliveries - a.deliveries || a.account.slug.localeCompare(b.account.slug)),
      revisions,
      hash: planHash(decisions, options),
    };
  });
}

/**
 * sha256 over a canonical JSON of what the plan decides: each delivery's target account and
 * revision (or why not), the run it replays from (its latest replay, if any), and the flags. An
 * applied plan gives each delivery a new latest run, so its hash never matches again: the same
 * apply sent twice (a client retrying after a lost answer, or a server killed meanwhile) replays once.
 */
export function planHash(decisions: Decision[], options: ReplayOptions): string {
  const items = decisions
    .map((d) => [d.delivery.id, d.target?.id ?? null, d.revision, d.code, d.delivery.latestReplayId] as const)
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return createHash('sha256').update(JSON.stringify({ v: 2, revision: options.revision, reuse_idempotency_keys: options.reuse, deliveries: items })).digest('hex');
}

/** What the host of a written-out URL is (null when the host itself is computed). */
function hostOf(url: string): string | null {
  const m = /^https?:\/\/([^/?#]+)/i.exec(url.trim());
  if (!m || m[1]!.includes('{{')) return null;
  try {
    return new URL(`http://${m[1]!.split('@').pop()}`).host;
  } catch {
    return null;
  }
}

/**
 * Per automation revision replayed: its http steps and account data writes, each with how many
 * of the deliveries it replays already had that step succeed in an earlier run (the original or a
 * replay): those the replay repeats. One grouped query over the step records.
 */
async function sideEffects(tx: Tx, replayable: Decision[], defs: Map<string, Definition>): Promise<RevisionPlan[]> {
  const groups = new Map<string, RevisionPlan & { index: number }>();
  for (const d of replayable) {
    const k = pairKey(d.delivery.automationId, d.revision!);
    let g = groups.get(k);
    if (!g) {
      const def = defs.get(k)!;
      const sideEffects = def.steps.flatMap((s): SideEffect[] => {
        if (s.kind === 'http') {
          const ref = s.connection ?? null;
          const app = ref === null ? null : isUuid(ref) ? null : ref.split('/')[0]!;
          return [{ step: s.id, kind: 'http', method: s.method, app, host: hostOf(s.url), action: null, scope: null, doneBefore: 0 }];
        }
        if (s.kind === 'store' && s.action !== 'get') return [{ step: s.id, kind: 'store', method: null, app: null, host: null, action: s.action, scope: s.scope ?? 'account', doneBefore: 0 }];
        return [];
      });
      g = { index: groups.size, automationId: d.delivery.automationId, automationName: d.delivery.automationName, revision: d.revision!, deliveries: 0, sideEffects };
      groups.set(k, g);
    }
    g.deliveries++;
  }
  const list = [...groups.values()];
  await connectionApps(tx, list, defs);
  const withEffects = replayable.filter((d) => groups.get(pairKey(d.delivery.automationId, d.revision!))!.sideEffects.length);
  if (withEffects.length) {
    const arr = (xs: (string | number)[]) => `{${xs.join(',')}}`;
    const done = rowsOf<{ g: number; step_id: string; n: number }>(
      await tx.execute(sql`
        select v.g, s.step_id, count(distinct v.did)::int as n
        from unnest(${arr(withEffects.map((d) => d.delivery.id))}::uuid[], ${arr(withEffects.map((d) => groups.get(pairKey(d.delivery.automationId, d.revision!))!.index))}::int[]) as v(did, g)
        join webhook_deliveries d on d.id = v.did
        join executions e on e.id = d.execution_id or (e.delivery_id = d.id and e.source = 'replay')
        join execution_steps s on s.execution_id = e.id and s.status = 'succeeded'
        group by 1, 2`),
    );
    for (const r of done) {
      const effect = list[Number(r.g)]?.sideEffects.find((s) => s.step === r.step_id);
      if (effect) effect.doneBefore = Number(r.n);
    }
  }
  return list.map(({ index: _i, ...g }) => g);
}

/** The app of http steps whose connection is given by id (one query for all of them, in the caller's scope). */
async function connectionApps(tx: Tx, list: RevisionPlan[], defs: Map<string, Definition>): Promise<void> {
  const wanted: { effect: SideEffect; id: string }[] = [];
  for (const g of list) {
    const def = defs.get(pairKey(g.automationId, g.revision))!;
    for (const effect of g.sideEffects) {
      const step = def.steps.find((s) => s.id === effect.step);
      const id = step?.kind === 'http' ? (step.connection_id ?? (step.connection && isUuid(step.connection) ? step.connection : null)) : null;
      if (effect.kind === 'http' && effect.app === null && id) wanted.push({ effect, id: id.toLowerCase() });
    }
  }
  if (!wanted.length) return;
  const rows = rowsOf<{ id: string; app: string }>(
    await tx.execute(sql`select id, app from connections where id = any(${`{${[...new Set(wanted.map((w) => w.id))].join(',')}}`}::uuid[])`),
  );
  const apps = new Map(rows.map((r) => [r.id, r.app]));
  for (const w of wanted) w.effect.app = apps.get(w.id) ?? null;
}

export interface Created {
  id: string;
  deliveryId: string;
  accountId: string;
  revision: number;
  idempotencyOf: string | null;
}

/**
 * Queue the plan's replays: one insert per target account, in that account's scope (and the
 * automation's, where the delivery is read), the run's trigger being the original run's or, for a
 * delivery that never ran, rebuilt from what was recorded; then one NOTIFY for the workers.
 * Given the call's transaction (core.db), everything commits with its audit entry.
 */
export async function applyReplay(core: Core, caller: Caller, acting: Account, plan: Plan): Promise<Created[]> {
  const byTarget = new Map<string, Decision[]>();
  for (const d of plan.replayable) byTarget.set(d.target!.id, [...(byTarget.get(d.target!.id) ?? []), d]);
  const created: Created[] = [];
  const arr = (xs: (string | number | null)[]) => `{${xs.map((x) => (x === null ? 'NULL' : x)).join(',')}}`;
  for (const [targetId, items] of byTarget) {
    const made = items.map((d) => ({ id: randomUUID(), d }));
    const owner = targetId === acting.id ? null : acting.id;
    await withAccount(core.db, [...new Set([acting.id, targetId])], async (tx) => {
      await tx.execute(sql`
        insert into executions (id, tenant_id, account_id, automation_account_id, automation_id, revision, source, trigger, delivery_id, idempotency_of, created_by)
        select v.id, d.tenant_id, ${targetId}::uuid, ${owner}::uuid, d.automation_id, v.rev, 'replay',
               coalesce(o.trigger, jsonb_build_object('body', d.body, 'headers', d.headers, 'query', d.query, 'method', d.method)),
               d.id, v.io, ${caller.user.id}::uuid
        from unnest(${arr(made.map((m) => m.id))}::uuid[], ${arr(made.map((m) => m.d.delivery.id))}::uuid[], ${arr(made.map((m) => m.d.revision))}::int[], ${arr(made.map((m) => m.d.idempotencyOf))}::uuid[]) as v(id, did, rev, io)
        join webhook_deliveries d on d.id = v.did
        left join executions o on o.id = d.execution_id`);
      // each delivery's latest run is now its replay (latest-run.ts), if it still is what the plan
      // replayed from: an apply of the same plan committed meanwhile (its row lock is waited for)
      // leaves this one nothing to swap, and it is undone whole rather than replayed twice
      const swapped = rowsOf<{ id: string }>(
        await tx.execute(sql`
          update webhook_deliveries d set latest_replay_id = v.id
          from unnest(${arr(made.map((m) => m.id))}::uuid[], ${arr(made.map((m) => m.d.delivery.id))}::uuid[], ${arr(made.map((m) => m.d.delivery.latestReplayId))}::uuid[]) as v(id, did, prev)
          where d.id = v.did and d.latest_replay_id is not distinct from v.prev
          returning d.id`),
      );
      if (swapped.length !== made.length) {
        throw new UserError(`The plan changed since dry_run: ${made.length - swapped.length} of its deliveries were replayed meanwhile; nothing was replayed, run dry_run again.`, 'conflict');
      }
    });
    for (const m of made) created.push({ id: m.id, deliveryId: m.d.delivery.id, accountId: targetId, revision: m.d.revision!, idempotencyOf: m.d.idempotencyOf });
  }
  if (created.length) await notifyWorkers(core.db);
  return created;
}
