import { createHash, randomUUID } from 'node:crypto';
import { and, eq, inArray, isNull, sql } from 'drizzle-orm';
import { accounts, automations, executions, webhookDedupeKeys, webhookDeliveries, type DeliveryStatus } from '../db/schema/index.js';
import { withAccount } from '../db/scope.js';
import type { Core } from './core.js';
import type { Account } from './accounts.js';
import { definitionOf, type AutomationRow } from './automations.js';
import type { Definition } from './automation-definition.js';
import { openCredentials, resolveConnection } from './connections.js';
import { checkSignature, type SignatureSpec } from './signatures.js';
import { CREDENTIAL_NAME, hashToken, REDACTED } from './crypto.js';
import { EXECUTION_CHANNEL, type TriggerEvent } from './executions.js';
import { storable } from './storable.js';
import { UserError } from './errors.js';
import { GroupCommit } from './group-commit.js';
import { perCore, TtlCache } from './ttl-cache.js';
import { evaluate, ExpressionError } from '../engine/expressions.js';
import type { Tx } from '../db/scope.js';

/**
 * Webhook URLs and deliveries. An automation's URL is `/hooks/<token>`: a 256-bit capability
 * computed from the master key, the tenant, the automation and its URL generation (Keyring.mac),
 * so it is never stored — only its SHA-256, which is how a delivery finds its automation.
 * rotate_webhook_url moves to the next generation: the old URL stops answering at once.
 *
 * A delivery is recorded, and its run queued, in one transaction in the automation's account
 * scope before the request is answered: nothing answered 2xx is lost.
 */

export const webhookToken = (core: Core, row: Pick<AutomationRow, 'id' | 'webhookGeneration'>): string =>
  core.keys.mac('webhook-url/v1', `${core.tenantId}:${row.id}:${row.webhookGeneration}`).toString('base64url');

export const webhookPath = (token: string): string => `/hooks/${token}`;

/** Record the token hash of automations that have none (made before webhook URLs existed), in batches. */
export async function backfillWebhookHashes(core: Core): Promise<number> {
  let done = 0;
  for (;;) {
    const rows = await core.db
      .select({ id: automations.id, webhookGeneration: automations.webhookGeneration })
      .from(automations)
      .where(and(eq(automations.tenantId, core.tenantId), isNull(automations.webhookTokenHash)))
      .limit(500);
    if (!rows.length) return done;
    for (const r of rows) {
      await core.db.update(automations).set({ webhookTokenHash: hashToken(webhookToken(core, r)) }).where(and(eq(automations.id, r.id), isNull(automations.webhookTokenHash)));
    }
    done += rows.length;
  }
}

/** A new URL for the automation; the old one answers 404 from now on. */
export async function rotateWebhook(core: Core, account: Account, row: AutomationRow): Promise<{ row: AutomationRow; token: string }> {
  const next = { id: row.id, webhookGeneration: row.webhookGeneration + 1 };
  const token = webhookToken(core, next);
  const [updated] = await withAccount(core.db, [account.id], (tx) =>
    tx
      .update(automations)
      .set({ webhookGeneration: sql`${automations.webhookGeneration} + 1`, webhookTokenHash: hashToken(token), updatedAt: sql`now()` })
      .where(and(eq(automations.id, row.id), eq(automations.webhookGeneration, row.webhookGeneration)))
      .returning(),
  );
  if (!updated) {
    // rotated by someone else meanwhile, or deleted
    const [now] = await withAccount(core.db, [account.id], (tx) => tx.select().from(automations).where(eq(automations.id, row.id)));
    if (!now) throw new UserError(`The automation ${row.id} no longer exists.`, 'not_found');
    return rotateWebhook(core, account, now);
  }
  return { row: updated, token };
}

/**
 * Headers and query parameters as recorded and as expressions see them: names that carry secrets
 * (the provider's token, shared secret or signature; cookies) are redacted — a delivery is
 * readable by the account's viewers.
 */
const redacted = (o: Record<string, string>, also?: string) =>
  Object.fromEntries(Object.entries(o).map(([k, v]) => [k.toLowerCase(), CREDENTIAL_NAME.test(k) || k.toLowerCase() === also ? REDACTED : v]));

export interface IncomingDelivery {
  method: string;
  /** as received, names in lower case (signatures are checked on these, before redaction) */
  headers: Record<string, string>;
  query: Record<string, string>;
  contentType: string | null;
  /** the raw body, bytes as received: signatures are computed on them */
  raw: Buffer;
  sourceIp: string | null;
}

export type DeliveryOutcome =
  | { status: 404 }
  | { status: 400 | 401 | 202; deliveryId: string; delivery: DeliveryStatus; reason: string | null; executionId: string | null };

/** Nesting a body may have (what walks it — storing, expressions — must not run out of stack). */
const MAX_BODY_DEPTH = 64;

function deeperThan(value: unknown, max: number): boolean {
  const todo: [unknown, number][] = [[value, 0]];
  while (todo.length) {
    const [v, depth] = todo.pop()!;
    if (!v || typeof v !== 'object') continue;
    if (depth >= max) return true;
    for (const child of Object.values(v)) if (child && typeof child === 'object') todo.push([child, depth + 1]);
  }
  return false;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A body that is not UTF-8 text (an image, a protobuf): kept as base64 with its size, the way expressions see it. */
export interface BinaryBody {
  encoding: 'base64';
  data: string;
  size: number;
}

type Parsed = { ok: true; body: unknown } | { ok: false; reason: string; body: unknown };

function parseBody(d: IncomingDelivery): Parsed {
  const type = (d.contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (d.raw.length === 0) return { ok: true, body: null };
  let text: string;
  try {
    text = utf8.decode(d.raw);
  } catch {
    const binary: BinaryBody = { encoding: 'base64', data: d.raw.toString('base64'), size: d.raw.length };
    if (type === 'application/json' || type.endsWith('+json') || type === 'application/x-www-form-urlencoded') {
      return { ok: false, reason: `the body is not UTF-8 text, as ${type} must be`, body: binary };
    }
    return { ok: true, body: binary };
  }
  if (type === 'application/json' || type.endsWith('+json')) {
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (err) {
      return { ok: false, reason: `malformed JSON: ${(err as Error).message.slice(0, 200)}`, body: text };
    }
    if (deeperThan(body, MAX_BODY_DEPTH)) return { ok: false, reason: `the JSON is nested more than ${MAX_BODY_DEPTH} levels deep`, body: text };
    return { ok: true, body };
  }
  if (type === 'application/x-www-form-urlencoded') return { ok: true, body: Object.fromEntries(new URLSearchParams(text)) };
  return { ok: true, body: text };
}

const DEDUPE_HOURS = 24;

/**
 * The automation's de-duplication, when its revision declares one: the key is evaluated on the
 * event and claimed for 24 h in the same transaction as the delivery. A live key means the event
 * was seen: the delivery is a duplicate. A key that cannot be computed runs the event anyway —
 * losing an event is worse than running one twice — and the reason says so.
 */
async function dedupe(core: Core, tx: Tx, def: Definition, row: AutomationRow, account: Account, deliveryId: string, trigger: TriggerEvent): Promise<Decision | null> {
  const expr = def.trigger.dedupe?.key;
  if (!expr) return null;
  let value: unknown;
  try {
    value = await evaluate(expr, eventDoc(trigger, account, def));
  } catch (err) {
    if (!(err instanceof ExpressionError)) throw err;
    return { status: 'accepted', code: null, reason: `the de-duplication key could not be computed (${err.reason}); run without de-duplication` };
  }
  if (value === undefined || value === null || value === '') return { status: 'accepted', code: null, reason: 'the de-duplication key is empty for this event; run without de-duplication' };
  const key = hashToken(typeof value === 'string' ? value : JSON.stringify(value));
  const claimed = await tx
    .insert(webhookDedupeKeys)
    .values({ automationId: row.id, key, tenantId: core.tenantId, accountId: account.id, deliveryId, expiresAt: sql`now() + ${DEDUPE_HOURS} * interval '1 hour'` })
    .onConflictDoUpdate({
      target: [webhookDedupeKeys.automationId, webhookDedupeKeys.key],
      set: { deliveryId, expiresAt: sql`now() + ${DEDUPE_HOURS} * interval '1 hour'` },
      // expired, or claimed by this very delivery (a batch written again)
      setWhere: sql`${webhookDedupeKeys.expiresAt} <= now() or ${webhookDedupeKeys.deliveryId} = ${deliveryId}`,
    })
    .returning({ key: webhookDedupeKeys.key });
  return claimed.length ? null : { status: 'duplicate', code: 'duplicate', reason: `an event with the same de-duplication key arrived within ${DEDUPE_HOURS} h: not run again` };
}

interface Decision {
  status: DeliveryStatus;
  code: string | null;
  /** recorded with the delivery, for the account's members */
  reason: string | null;
  /** what the sender is told, when it differs: never the names of connections or accounts */
  answer?: string;
}

const accountView = (a: Account) => ({ id: a.id, slug: a.slug, routing_key: a.routingKey });

/**
 * What the event-level keys (routing, de-duplication) see: the event under `trigger`, as steps
 * see it, and its parts at the top as well, so `body.location_id` and `trigger.body.location_id`
 * both work.
 */
const eventDoc = (trigger: TriggerEvent, account: Account, def: Definition) => ({ ...trigger, trigger, steps: {}, account: accountView(account), vars: def.vars ?? {} });

/** Signing secrets read in the last second, by automation account and connection (decrypted in memory only). */
const secretsOf = perCore<Core, TtlCache<{ secret: string | null; why: string }>>(() => new TtlCache(1000));

async function signingSecret(core: Core, account: Account, sig: SignatureSpec): Promise<{ secret: string | null; why: string }> {
  const cache = secretsOf(core);
  const key = `${account.id}|${sig.connection_id ?? sig.connection}`;
  const hit = cache.get(key);
  if (hit) return hit;
  let found: { secret: string | null; why: string };
  try {
    const { row } = await resolveConnection(core, account, sig.connection_id ?? sig.connection);
    const opened = row.authKind === 'signing_secret' && row.status !== 'disconnected' ? await openCredentials(core, row).catch(() => null) : null;
    found = opened?.values.signing_secret
      ? { secret: opened.values.signing_secret, why: '' }
      : { secret: null, why: `the signing secret ${row.app}/${row.name} cannot be read: reconnect it (reconnect_connection)` };
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    found = { secret: null, why: `the signing secret is not available (${err.message.replace(/\.$/, '')})` };
  }
  cache.set(key, found);
  return found;
}

/** Why an event with routing key `key` runs nowhere. */
export const noChildFor = (key: string): string => `no linked account has routing key ${key}`;

/**
 * The routing key's value for an event (what linked children's routing_key is compared with:
 * numbers match their text), or why it has none.
 */
export async function routingValue(def: Definition, parent: Account, trigger: TriggerEvent): Promise<{ value: string | null; reason: string | null }> {
  let value: unknown;
  try {
    value = await evaluate(def.routing!.key, eventDoc(trigger, parent, def));
  } catch (err) {
    if (!(err instanceof ExpressionError)) throw err;
    return { value: null, reason: `the routing key could not be computed: ${err.reason}` };
  }
  if (value === undefined || value === null || value === '') return { value: null, reason: 'the routing key is empty for this event' };
  if (typeof value !== 'string' && typeof value !== 'number') return { value: null, reason: 'the routing key is not a string or a number for this event' };
  const key = String(value).trim().slice(0, 200);
  if (key === '') return { value: null, reason: 'the routing key is empty for this event' };
  return { value: key, reason: null };
}

/**
 * Where a routed automation's event runs: the linked child of `parent` whose routing_key is the
 * value of the routing key expression, or why none.
 */
async function route(core: Core, def: Definition, parent: Account, trigger: TriggerEvent): Promise<{ value: string | null; child: Account | null; reason: string | null }> {
  const { value: key, reason } = await routingValue(def, parent, trigger);
  if (key === null) return { value: null, child: null, reason };
  const [child] = await core.db
    .select()
    .from(accounts)
    .where(and(eq(accounts.tenantId, core.tenantId), eq(accounts.parentAccountId, parent.id), eq(accounts.routingKey, key)));
  return child ? { value: key, child, reason: null } : { value: key, child: null, reason: noChildFor(key) };
}

/**
 * Receive a request to `/hooks/<token>`: find the automation by the token's hash (the privileged
 * path: the token is the only credential), check its signature and find where it runs (routing),
 * then record the delivery — and queue its run when the automation runs events now — in one
 * transaction in the automation's account scope (and the routed child's).
 *
 * Signature, routing and de-duplication follow the revision current when the request is looked
 * up, and the run is queued with that same revision, so the decision and the run agree.
 */
export async function receiveDelivery(core: Core, token: string, d: IncomingDelivery, fresh = false): Promise<DeliveryOutcome> {
  if (!/^[A-Za-z0-9_-]{43}$/.test(token)) return { status: 404 };
  const tokenHash = hashToken(token);
  const found = await lookup(core, tokenHash, fresh);
  if (!found) return { status: 404 };
  const { row, account } = found;
  const def = await definitionOf(core, account.id, row.id, row.revision);
  const sigHeader = def.trigger.signature?.header?.toLowerCase();
  const headers = storable(redacted(d.headers, sigHeader)) as Record<string, string>;
  const query = storable(Object.fromEntries(Object.entries(d.query).map(([k, v]) => [k, CREDENTIAL_NAME.test(k) ? REDACTED : v]))) as Record<string, string>;
  const parsed = parseBody(d);
  const body = storable(parsed.body);
  const trigger: TriggerEvent = { body: parsed.ok ? body : null, headers, query, method: d.method };

  // decided before the transaction: what only the request and the revision say
  let early: Decision | null = null;
  if (def.trigger.signature) {
    const { secret, why } = await signingSecret(core, account, def.trigger.signature);
    const bad = secret === null ? why : checkSignature(def.trigger.signature, secret, d.raw, d.headers);
    if (bad) {
      early = {
        status: 'rejected',
        code: 'signature_invalid',
        reason: `signature_invalid: ${bad}`,
        answer: secret === null ? 'signature_invalid: the signature cannot be verified now' : `signature_invalid: ${bad}`,
      };
    }
  }
  if (!early && !parsed.ok) early = { status: 'rejected', code: 'malformed_body', reason: parsed.reason };
  let routed: Awaited<ReturnType<typeof route>> | null = null;
  if (!early && def.routing) {
    routed = await route(core, def, account, trigger);
    if (!routed.child) early = { status: 'unrouted', code: 'unrouted', reason: routed.reason };
  }
  const child = routed?.child ?? null;

  // the ids are made here, not in the batch: a batch written again (its COMMIT's answer lost) repeats the same rows
  const made = { deliveryId: randomUUID(), executionId: randomUUID() };
  const recorded = await batcherOf(core).submit(`${account.id}|${child?.id ?? ''}`, { row, account, tokenHash, def, d, headers, query, body, trigger, early, routed, child, ...made });
  if (recorded === 'stale') {
    // the automation changed since the lookup (a new revision): decide again on what it is now
    lookupsOf(core).delete(tokenHash);
    if (fresh) throw new Error('webhook delivery: the automation kept changing while it was recorded');
    return receiveDelivery(core, token, d, true);
  }
  if (!recorded) return { status: 404 };
  const { decision, ...ids } = recorded;
  const status = decision.code === 'signature_invalid' ? 401 : decision.status === 'rejected' ? 400 : 202;
  return { status, delivery: decision.status, reason: decision.answer ?? decision.reason, ...ids };
}

/**
 * The automation a token names, and its account: read at most once a second per token (a burst
 * to one URL looks it up once). Only a hint: the transaction that records a delivery reads both
 * again, locked, and a token rotated, an automation disabled or changed, an account suspended
 * since is seen there.
 */
const lookupsOf = perCore<Core, TtlCache<{ row: AutomationRow; account: Account }>>(() => new TtlCache(1000));

async function lookup(core: Core, tokenHash: string, fresh: boolean): Promise<{ row: AutomationRow; account: Account } | null> {
  const cache = lookupsOf(core);
  const hit = fresh ? undefined : cache.get(tokenHash);
  if (hit) return hit;
  const [found] = await core.db
    .select({ row: automations, account: accounts })
    .from(automations)
    .innerJoin(accounts, eq(accounts.id, automations.accountId))
    .where(and(eq(automations.tenantId, core.tenantId), eq(automations.webhookTokenHash, tokenHash)));
  // unknown tokens are not cached: guessing must not fill memory
  if (found) cache.set(tokenHash, found);
  return found ?? null;
}

/** A delivery looked up and checked, waiting to be recorded with others of the same scope. */
interface Pending {
  row: AutomationRow;
  account: Account;
  tokenHash: string;
  def: Definition;
  d: IncomingDelivery;
  headers: Record<string, string>;
  query: Record<string, string>;
  body: unknown;
  trigger: TriggerEvent;
  early: Decision | null;
  routed: Awaited<ReturnType<typeof route>> | null;
  child: Account | null;
  deliveryId: string;
  /** used when the delivery runs */
  executionId: string;
}
/** null: the token no longer names the automation (404); 'stale': the automation changed since it was looked up */
type Recorded = { deliveryId: string; executionId: string | null; decision: Decision } | null | 'stale';

// a body is written twice (the delivery and its run's trigger): batches hold at most 16 MiB of them
const batcherOf = perCore<Core, GroupCommit<Pending, Recorded>>(
  (core) => new GroupCommit((_key, items) => recordBatch(core, items), { maxBatch: 200, maxInFlight: 1, weigh: (p) => 2 * p.d.raw.length + 1024, maxWeight: 16 * 1024 * 1024 }),
);

/**
 * Record deliveries of one scope (an automation account, and the child they are routed to) in
 * one transaction: their automations locked FOR SHARE and each decided on the row as it is now
 * (a rotate, disable or update that committed first is seen), then all deliveries and all runs
 * in one insert each and one NOTIFY. Requests that arrive while a transaction of their scope is
 * in flight are written by the next one (src/core/group-commit.ts): one commit for a burst.
 */
async function recordBatch(core: Core, items: Pending[]): Promise<Recorded[]> {
  const first = items[0]!;
  const scope = [first.account.id, ...(first.child ? [first.child.id] : [])];
  return withAccount(core.db, scope, async (tx) => {
    const ids = [...new Set(items.map((i) => i.row.id))];
    const locked = new Map(
      (
        await tx
          .select({ row: automations, account: accounts })
          .from(automations)
          .innerJoin(accounts, eq(accounts.id, automations.accountId))
          .where(inArray(automations.id, ids))
          .for('share', { of: automations })
      ).map((r) => [r.row.id, r]),
    );
    // the child as it is now: unlinked or re-keyed since the lookup, the event is not routed to it
    const childNow = first.child ? (await tx.select().from(accounts).where(eq(accounts.id, first.child.id)))[0] : undefined;
    const deliveries: (typeof webhookDeliveries.$inferInsert)[] = [];
    const runs: (typeof executions.$inferInsert)[] = [];
    const out: Recorded[] = [];
    for (const it of items) {
      const now = locked.get(it.row.id);
      if (!now || now.row.webhookTokenHash !== it.tokenHash) {
        out.push(null);
        continue;
      }
      if (now.row.revision !== it.row.revision) {
        out.push('stale');
        continue;
      }
      const { row, account } = now;
      const { child, routed } = it;
      const { deliveryId } = it;
      let decision: Decision = it.early ?? { status: child ? 'routed' : 'accepted', code: null, reason: null };
      if (!it.early) {
        if (account.status === 'suspended') decision = { status: 'recorded', code: 'account_suspended', reason: 'the account is suspended' };
        else if (!row.enabled) decision = { status: 'recorded', code: 'automation_disabled', reason: 'the automation is disabled' };
        else if (row.status === 'paused') decision = { status: 'recorded', code: 'automation_paused', reason: 'the automation is paused: a connection it uses is disconnected' };
        else if (child && (childNow?.parentAccountId !== account.id || childNow.routingKey !== routed!.value)) {
          decision = { status: 'unrouted', code: 'unrouted', reason: `no linked account has routing key ${routed!.value}` };
        } else if (child && childNow?.status === 'suspended') {
          decision = { status: 'recorded', code: 'account_suspended', reason: 'the linked account this event is routed to is suspended', answer: 'the account this event is routed to is suspended' };
        } else decision = (await dedupe(core, tx, it.def, row, account, deliveryId, it.trigger)) ?? decision;
      }
      const executionId = decision.status === 'accepted' || decision.status === 'routed' ? it.executionId : null;
      const routedTo = decision.status === 'unrouted' ? null : (child?.id ?? null);
      deliveries.push({
        id: deliveryId, tenantId: core.tenantId, accountId: account.id, automationId: row.id, status: decision.status, code: decision.code, reason: decision.reason,
        method: it.d.method, headers: it.headers, query: it.query, contentType: it.d.contentType, sourceIp: it.d.sourceIp, executionId, size: it.d.raw.length,
        // a request that fails its signature is not the provider's: its body is not kept (whoever holds a
        // leaked URL could otherwise store megabytes at will), only what identifies it
        body: decision.code === 'signature_invalid' ? { withheld: 'signature_invalid', size: it.d.raw.length, sha256: createHash('sha256').update(it.d.raw).digest('hex') } : it.body,
        routingValue: routed?.value ?? null, routedAccountId: routedTo,
      });
      if (executionId) {
        runs.push({
          id: executionId, tenantId: core.tenantId, accountId: routedTo ?? account.id, automationAccountId: routedTo ? account.id : null,
          automationId: row.id, revision: it.row.revision, source: 'webhook', trigger: it.trigger, deliveryId,
        });
      }
      out.push({ deliveryId, executionId, decision });
    }
    // one statement: the deliveries, their runs and the workers' wake-up
    // (rows already there are a batch written again after its COMMIT's answer was lost: kept as they are)
    const delivered = () => tx.insert(webhookDeliveries).values(deliveries).onConflictDoNothing();
    if (runs.length) await tx.execute(sql`with d as ${delivered()}, e as ${tx.insert(executions).values(runs).onConflictDoNothing()} select pg_notify(${EXECUTION_CHANNEL}, '')`);
    else if (deliveries.length) await delivered();
    return out;
  });
}
