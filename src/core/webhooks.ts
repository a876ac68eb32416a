import { randomUUID } from 'node:crypto';
import { and, eq, isNull, sql } from 'drizzle-orm';
import { accounts, automations, executions, webhookDedupeKeys, webhookDeliveries, type DeliveryStatus } from '../db/schema/index.js';
import { withAccount } from '../db/scope.js';
import type { Core } from './core.js';
import type { Account } from './accounts.js';
import { definitionOf, type AutomationRow } from './automations.js';
import { CREDENTIAL_NAME, hashToken, REDACTED } from './crypto.js';
import { notifyWorkers, type TriggerEvent } from './executions.js';
import { storable } from './storable.js';
import { UserError } from './errors.js';
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
    if (!now) throw new UserError(`The automation '${row.name}' no longer exists.`, 'not_found');
    return rotateWebhook(core, account, now);
  }
  return { row: updated, token };
}

/**
 * Headers and query parameters as recorded and as expressions see them: names that carry secrets
 * (the provider's token, shared secret or signature; cookies) are redacted — a delivery is
 * readable by the account's viewers.
 */
const redacted = (o: Record<string, string>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k.toLowerCase(), CREDENTIAL_NAME.test(k) ? REDACTED : v]));

export interface IncomingDelivery {
  method: string;
  headers: Record<string, string>;
  query: Record<string, string>;
  contentType: string | null;
  /** the raw body as text */
  raw: string;
  size: number;
  sourceIp: string | null;
}

export type DeliveryOutcome =
  | { status: 404 }
  | { status: 400 | 202; deliveryId: string; delivery: DeliveryStatus; reason: string | null; executionId: string | null };

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

function parseBody(d: IncomingDelivery): { ok: true; body: unknown } | { ok: false; reason: string } {
  const type = (d.contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (d.raw === '') return { ok: true, body: null };
  if (type === 'application/json' || type.endsWith('+json')) {
    let body: unknown;
    try {
      body = JSON.parse(d.raw);
    } catch (err) {
      return { ok: false, reason: `malformed JSON: ${(err as Error).message.slice(0, 200)}` };
    }
    if (deeperThan(body, MAX_BODY_DEPTH)) return { ok: false, reason: `the JSON is nested more than ${MAX_BODY_DEPTH} levels deep` };
    return { ok: true, body };
  }
  if (type === 'application/x-www-form-urlencoded') return { ok: true, body: Object.fromEntries(new URLSearchParams(d.raw)) };
  return { ok: true, body: d.raw };
}

const DEDUPE_HOURS = 24;

/**
 * The automation's de-duplication, when its revision declares one: the key is evaluated on the
 * event and claimed for 24 h in the same transaction as the delivery. A live key means the event
 * was seen: the delivery is a duplicate. A key that cannot be computed runs the event anyway —
 * losing an event is worse than running one twice — and the reason says so.
 */
async function dedupe(
  core: Core,
  tx: Tx,
  row: AutomationRow,
  account: Account,
  deliveryId: string,
  trigger: TriggerEvent,
): Promise<[DeliveryStatus, string] | null> {
  const def = await definitionOf(core, account.id, row.id, row.revision, tx);
  const expr = def.trigger.dedupe?.key;
  if (!expr) return null;
  let value: unknown;
  try {
    value = await evaluate(expr, { trigger, steps: {}, account: { id: account.id, slug: account.slug, routing_key: account.routingKey } });
  } catch (err) {
    if (!(err instanceof ExpressionError)) throw err;
    return ['accepted', `the de-duplication key could not be computed (${err.reason}); run without de-duplication`];
  }
  if (value === undefined || value === null || value === '') return ['accepted', 'the de-duplication key is empty for this event; run without de-duplication'];
  const key = hashToken(typeof value === 'string' ? value : JSON.stringify(value));
  const claimed = await tx
    .insert(webhookDedupeKeys)
    .values({ automationId: row.id, key, tenantId: core.tenantId, accountId: account.id, deliveryId, expiresAt: sql`now() + ${DEDUPE_HOURS} * interval '1 hour'` })
    .onConflictDoUpdate({
      target: [webhookDedupeKeys.automationId, webhookDedupeKeys.key],
      set: { deliveryId, expiresAt: sql`now() + ${DEDUPE_HOURS} * interval '1 hour'` },
      setWhere: sql`${webhookDedupeKeys.expiresAt} <= now()`,
    })
    .returning({ key: webhookDedupeKeys.key });
  return claimed.length ? null : ['duplicate', `an event with the same de-duplication key arrived within ${DEDUPE_HOURS} h: not run again`];
}

/**
 * Receive a request to `/hooks/<token>`: find the automation by the token's hash (the privileged
 * path: the token is the only credential), then record the delivery — and queue its run when
 * the automation runs events now — in one transaction in the automation's account scope.
 */
export async function receiveDelivery(core: Core, token: string, d: IncomingDelivery): Promise<DeliveryOutcome> {
  if (!/^[A-Za-z0-9_-]{43}$/.test(token)) return { status: 404 };
  // the automation and its account in one query
  const [found] = await core.db
    .select({ row: automations, account: accounts })
    .from(automations)
    .innerJoin(accounts, eq(accounts.id, automations.accountId))
    .where(and(eq(automations.tenantId, core.tenantId), eq(automations.webhookTokenHash, hashToken(token))));
  if (!found) return { status: 404 };
  const { row, account } = found;
  const headers = storable(redacted(d.headers)) as Record<string, string>;
  const query = storable(Object.fromEntries(Object.entries(d.query).map(([k, v]) => [k, CREDENTIAL_NAME.test(k) ? REDACTED : v]))) as Record<string, string>;
  const parsed = parseBody(d);
  const body = storable(parsed.ok ? parsed.body : d.raw);
  let delivery = 'accepted' as DeliveryStatus;
  let reason: string | null = null;
  const recorded = await withAccount(core.db, [account.id], async (tx) => {
    // decided on the row as it is now, locked against a concurrent rotate, disable or update
    const [locked] = await tx
      .select()
      .from(automations)
      .where(and(eq(automations.id, row.id), eq(automations.webhookTokenHash, hashToken(token))))
      .for('share');
    if (!locked) return null;
    const deliveryId = randomUUID();
    if (!parsed.ok) [delivery, reason] = ['rejected', parsed.reason];
    else if (account.status === 'suspended') [delivery, reason] = ['recorded', 'the account is suspended'];
    else if (!locked.enabled) [delivery, reason] = ['recorded', 'the automation is disabled'];
    else if (locked.status === 'paused') [delivery, reason] = ['recorded', 'the automation is paused: a connection it uses is disconnected'];
    else {
      const seen = await dedupe(core, tx, locked, account, deliveryId, { body, headers, query, method: d.method });
      if (seen) [delivery, reason] = seen;
    }
    const executionId = delivery === 'accepted' ? randomUUID() : null;
    await tx.insert(webhookDeliveries).values({
      id: deliveryId, tenantId: core.tenantId, accountId: account.id, automationId: row.id, status: delivery, reason, method: d.method, headers, query,
      contentType: d.contentType, body, size: d.size, sourceIp: d.sourceIp, executionId,
    });
    if (!executionId) return { deliveryId, executionId };
    const trigger: TriggerEvent = { body: parsed.ok ? body : null, headers, query, method: d.method };
    await tx
      .insert(executions)
      .values({ id: executionId, tenantId: core.tenantId, accountId: account.id, automationId: row.id, revision: locked.revision, source: 'webhook', trigger, deliveryId });
    await notifyWorkers(tx);
    return { deliveryId, executionId };
  });
  if (!recorded) return { status: 404 };
  return { status: delivery === 'rejected' ? 400 : 202, delivery, reason, ...recorded };
}
