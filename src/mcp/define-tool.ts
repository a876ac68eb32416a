import { z } from 'zod';
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import { onTx, type Core } from '../core/core.js';
import type { Account } from '../core/accounts.js';
import { findAccounts, getAccountById } from '../core/accounts.js';
import type { Caller } from '../core/users.js';
import { authorize, grantIn, requirePermission, resolveAccountFor, suspensionDenial, type Grant, type Resolved } from '../core/access.js';
import { TENANT_LOG, writeAudit, type AuditEntryInput } from '../core/audit.js';
import { scrubText } from '../core/crypto.js';
import { endSwitch, openSwitchOf, type ActiveSwitch } from '../core/switches.js';
import { templatesAccount } from '../core/templates/account.js';
import { AccessDenied, UserError, transientDbError } from '../core/errors.js';
import { busyMessage } from './tool-gate.js';
import { withAccount, type Tx } from '../db/scope.js';
import type { Permission, Role, AuditOutcome } from '../db/schema/index.js';
import type { SessionState } from './session.js';
import type { Interaction } from './interaction.js';
import { log, errorFields } from '../log.js';
import { listedSchema } from './schema-listing.js';
import { DISCOVERY, type Toolset } from './toolsets.js';
import { sql } from 'drizzle-orm';

/**
 * The registration wrapper: the only way a tool exists. Every call goes through `run` below:
 *
 *   authenticate the token (fresh, every call) → validate arguments (strict) → check the tenant
 *   permission → resolve the acting account (explicit argument > switched account > home) → check
 *   the role there and in any other named account (core/access) → handler → audit entry (always,
 *   allowed or not) → tool result (errors become isError).
 *
 * A tool that changes something runs its handler and its audit entry in one transaction: a change
 * is never committed without its entry. Read-only tools write the entry after the handler.
 *
 * Handlers receive a ToolContext, never the SDK server, so none can skip the guard.
 */

export interface AccessSpec {
  /** Least role needed in the acting account; null for tools that act on the caller alone. */
  role: Role | null;
  /** The argument naming the acting account. Defaults to `account` when the input has it; null for none. */
  accountArg?: string | null;
  /** Further arguments naming accounts, each needing a role there (checked when given). */
  also?: { arg: string; role: Role }[];
  /** A tenant-wide permission the tool needs. */
  permission?: Permission;
  /**
   * The tool acts on the tenant (its users, apps, keys, the account directory), not in one
   * account: its audit entries go to the tenant's log (the system setup account), never to the
   * account the session switched into, whose admins must not read calls about other accounts.
   */
  tenant?: true;
  /**
   * The tool acts in the tenant's templates account (src/core/templates/), whatever account the
   * session switched into: the role is checked there, and its log keeps the entry.
   */
  templates?: true;
  /**
   * For a tool that reads one account or the whole tenant (`scope: "tenant"`): when `when` holds
   * for the arguments, the call needs the tenant permission instead of a role in an account,
   * names no account, and its audit entry goes to the tenant's log.
   */
  tenantScope?: { when: (args: Record<string, unknown>) => boolean; permission: Permission };
  /** The tool works in a suspended account (set_account_status, which lifts the suspension). */
  whileSuspended?: true;
  /**
   * For a tool whose calls either read or change (account_data: list/get or set/delete): whether
   * this call changes something. A changing call needs `writeRole` (default: `role`) and is
   * refused in a suspended account; a reading one needs `role`. Default: !readOnlyHint.
   */
  writes?: (args: Record<string, unknown>) => boolean;
  writeRole?: Role;
}

/** A session's switch as one call sees it. */
export type CallSwitch = ActiveSwitch & { slug: string };

export interface ToolContext {
  core: Core;
  caller: Caller;
  session: SessionState;
  /** The session's valid switch as this call found it in the database (null: none, or the call named its account). */
  switch: CallSwitch | null;
  /** The acting account: resolved and, unless access.role is null, authorized. */
  account: Account;
  /** The caller's grant in the acting account (null when access.role is null). */
  grant: Grant | null;
  /** Accounts named by `access.also` arguments, by argument name. */
  named: Record<string, Account>;
  /** Run account-scoped queries under row-level security for the acting account. */
  scoped<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  /**
   * Resolve and authorize another account named by an argument (for tools with custom rules);
   * `write` says whether the tool will change something there (a suspended account refuses).
   */
  authorizeAccount(key: string, role: Role, write: boolean): Promise<{ account: Account; grant: Grant }>;
  /** Record a different acting account in the audit entry (e.g. the account just created). */
  auditAccount(accountId: string | null): void;
  /**
   * Add what the call decided to its audit entry, beside the arguments (e.g. a replay's plan
   * summary): redacted like them; never overrides an argument the caller gave.
   */
  auditDetail(detail: Record<string, unknown>): void;
  /** The client and transport, for asking the person (URL-mode elicitation); null when there is none. */
  interaction: Interaction | null;
  /**
   * Run `wait`, which waits on a person rather than the database (a page they fill in), without
   * holding one of the process's tool-call slots (src/mcp/tool-gate.ts); the call takes one again
   * after it, ahead of new calls.
   */
  outsideGate<T>(wait: () => Promise<T>): Promise<T>;
}

export interface ToolOutput<O> {
  data: O;
  /** one sentence for humans and models */
  text: string;
}

export interface ToolSpec<I extends z.ZodRawShape, O extends z.ZodRawShape, P = undefined> {
  name: string;
  /** The toolset it is listed in (src/mcp/toolsets.ts); a session lists and calls only those it has on. */
  toolset: Toolset | typeof DISCOVERY;
  title: string;
  description: string;
  input: I;
  output: O;
  annotations: { readOnlyHint: boolean; destructiveHint?: boolean; idempotentHint?: boolean; openWorldHint?: boolean };
  /**
   * For a read-only tool that still writes records of its own (a page request, password
   * attempts): why it is not offered to read-only sessions, whose calls run in read-only
   * transactions.
   */
  notInReadOnly?: string;
  access: AccessSpec;
  /**
   * Optional first step, after the guard and outside any transaction: for work that waits on a
   * person (a page they fill in) and must not hold a transaction open meanwhile. What it returns
   * is handed to the handler.
   */
  prepare?(ctx: ToolContext, args: z.infer<z.ZodObject<I>>): Promise<P>;
  /**
   * Whether handler and audit entry run in one transaction. Default: tools that change something
   * (readOnlyHint false). A tool that commits in steps of its own (a batched re-encryption) sets
   * false; its audit entry is written when it ends.
   */
  transactional?: boolean;
  handler(ctx: ToolContext, args: z.infer<z.ZodObject<I>>, prepared: P): Promise<ToolOutput<z.infer<z.ZodObject<O>>>>;
  /**
   * Optional follow-up once the handler's change and its audit entry committed: following work the
   * change started elsewhere (a deployment the workers drive), reporting progress meanwhile. What
   * it returns replaces the result; if it fails, the committed result stands.
   */
  after?(ctx: ToolContext, args: z.infer<z.ZodObject<I>>, data: z.infer<z.ZodObject<O>>): Promise<ToolOutput<z.infer<z.ZodObject<O>>>>;
}

/** What a call needs from its transport: the core, the session, and who is calling. */
export interface CallEnv {
  core: Core;
  session: SessionState;
  /**
   * The caller of this call, read fresh from the database: the HTTP transport authenticates each
   * request (and hands over that result, or reads it again when `fresh`); stdio and in-memory
   * transports authenticate per call.
   */
  authenticate(fresh?: boolean): Promise<Caller | null>;
  /** The client and transport, for asking the person; absent for transports that cannot. */
  interaction?: Interaction;
  /**
   * Whose share of the tool-call slots this call counts against (src/mcp/tool-gate.ts): over HTTP
   * the customer of the request's user (its home account, or that account's parent); absent, the session (stdio and in-memory sessions are
   * one caller each).
   */
  gateKey?: string | undefined;
}

export interface ToolDef {
  name: string;
  toolset: Toolset | typeof DISCOVERY;
  /** listed and callable in read-only sessions: readOnlyHint, and no records of its own (notInReadOnly) */
  readOnly: boolean;
  /** the tools/list entry */
  listing(): Tool;
  run(rawArgs: unknown, env: CallEnv): Promise<CallToolResult>;
}

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Tool['inputSchema'] {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Record<string, unknown>;
  return listedSchema(rest, io) as Tool['inputSchema'];
}

/** How deeply tool arguments may nest; no tool's input comes near it. */
export const MAX_ARG_DEPTH = 32;

/** Whether `value` nests deeper than `max` levels, found without recursion (it may be 100,000 deep). */
export function nestedDeeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth >= max) return true;
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}

/** The path of the first string (value or key) PostgreSQL could not store: lone surrogates, NUL. */
export function badText(value: unknown, path = ''): string | null {
  const bad = (s: string) => !s.isWellFormed() || s.includes('\0');
  if (typeof value === 'string') return bad(value) ? path || '(value)' : null;
  if (value === null || typeof value !== 'object') return null;
  for (const [k, v] of Object.entries(value)) {
    const p = path ? `${path}.${k}` : k;
    if (bad(k)) return p;
    const found = badText(v, p);
    if (found !== null) return found;
  }
  return null;
}

/** One readable sentence for the first problem zod found. */
export function describeZodError(err: z.ZodError): string {
  const issue = err.issues[0]!;
  if (issue.code === 'unrecognized_keys') {
    return `Unknown argument${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')}: remove ${issue.keys.length > 1 ? 'them' : 'it'} (see the tool's input schema).`;
  }
  const path = issue.path.join('.');
  if (path && issue.code === 'invalid_type' && issue.message.endsWith('received undefined')) {
    return `Missing required argument '${path}' (${issue.expected}).`;
  }
  return path ? `Invalid argument '${path}': ${issue.message}.` : `Invalid arguments: ${issue.message}.`;
}

export function defineTool<I extends z.ZodRawShape, O extends z.ZodRawShape, P = undefined>(spec: ToolSpec<I, O, P>): ToolDef {
  const input = z.strictObject(spec.input);
  const output = z.object(spec.output);
  const accountArg = spec.access.accountArg === undefined ? ('account' in spec.input ? 'account' : null) : spec.access.accountArg;
  // built on the first tools/list, not at import: it is a noticeable part of a cold start
  let listing: Tool | undefined;
  const list = (): Tool =>
    (listing ??= {
      name: spec.name,
      title: spec.title,
      description: spec.description,
      inputSchema: jsonSchema(input, 'input'),
      outputSchema: jsonSchema(output, 'output') as Tool['outputSchema'],
      // the title once, at the top (annotations.title is its older place, which clients fall back from)
      annotations: { openWorldHint: false, ...spec.annotations },
    });

  const atomic = spec.transactional ?? !spec.annotations.readOnlyHint;

  /** Every call passes the process's gate (src/mcp/tool-gate.ts) first: a bounded wait, never an unbounded queue. */
  async function run(rawArgs: unknown, env: CallEnv): Promise<CallToolResult> {
    const gate = env.core.toolGate;
    if (!gate) return admitted(rawArgs, env, (wait) => wait());
    const signal = env.interaction?.signal;
    const key = env.gateKey ?? `session:${env.session.id}`;
    let release = await gate.enter(signal, key);
    if (!release) {
      // nothing ran and nothing of any account was read, so no audit write: the client cancelled the
      // call while it waited (no one reads the answer), or the database is what is busy
      if (signal?.aborted) return { content: [{ type: 'text', text: `The call to ${spec.name} was cancelled before it started; nothing was done.` }], isError: true };
      log.warn('tool call refused: every slot stayed taken', { tool: spec.name, session: env.session.id, slots: gate.slots, wait_ms: gate.maxWaitMs });
      return { content: [{ type: 'text', text: busyMessage(spec.name, gate) }], isError: true };
    }
    const outsideGate = async <T>(wait: () => Promise<T>): Promise<T> => {
      release!();
      try {
        return await wait();
      } finally {
        release = await gate.resume(key);
      }
    };
    try {
      return await admitted(rawArgs, env, outsideGate);
    } finally {
      release();
    }
  }

  async function admitted(rawArgs: unknown, env: CallEnv, outsideGate: ToolContext['outsideGate']): Promise<CallToolResult> {
    const started = performance.now();
    const { core, session } = env;
    let write = !spec.annotations.readOnlyHint;
    let caller: Caller | null = null;
    let outcome: AuditOutcome = 'ok';
    let message: string | null = null;
    let result: CallToolResult;
    let audited = false;
    let unavailable = false;
    let callSwitch: CallSwitch | null = null;
    let tenantWide = spec.access.tenant === true;
    // what the audit entry records; filled in as the call is resolved
    const entry = { accountId: null as string | null, targetAccountId: null as string | null, switchId: null as string | null };
    let detail: Record<string, unknown> | null = null;
    const recordedArgs = (): unknown =>
      detail && rawArgs !== null && typeof rawArgs === 'object' && !Array.isArray(rawArgs) ? { ...detail, ...rawArgs } : (rawArgs ?? {});
    const auditEntry = (): AuditEntryInput => ({
      actorUserId: caller?.user.id ?? null,
      actorEmail: caller?.user.email ?? null,
      homeAccountId: caller?.user.homeAccountId ?? null,
      ...entry,
      accountId: tenantWide ? TENANT_LOG : entry.accountId,
      sessionId: session.id,
      tool: spec.name,
      arguments: recordedArgs(),
      outcome,
      message: message ?? (outcome === 'error' ? 'internal error' : null),
      durationMs: Math.round(performance.now() - started),
    });

    try {
      caller = await env.authenticate();
      if (!caller) {
        throw new AccessDenied('Access denied: the API token is missing, unknown, expired or revoked; ask an admin for a new token.');
      }
      const who = caller;
      entry.accountId = who.user.homeAccountId;

      // the session's surface: a tool it does not list is refused, whatever the client remembers
      if (spec.toolset !== DISCOVERY && !session.toolsets.has(spec.toolset)) {
        throw new UserError(`${spec.name} is in the toolset '${spec.toolset}', which this session has not turned on: call enable_toolset with toolset '${spec.toolset}' first.`);
      }
      if (session.readOnly && !spec.annotations.readOnlyHint) {
        throw new AccessDenied(`Access denied: this session is read-only, and ${spec.name} changes things.`);
      }
      if (session.readOnly && spec.notInReadOnly) {
        throw new AccessDenied(`Access denied: this session is read-only, and ${spec.name} ${spec.notInReadOnly}.`);
      }
      checkShape(rawArgs);
      const parsed = input.safeParse(rawArgs ?? {});
      if (!parsed.success) throw new UserError(describeZodError(parsed.error));
      const args = parsed.data as Record<string, unknown>;
      if (spec.access.writes) write = spec.access.writes(args);
      const scope = spec.access.tenantScope;
      const wholeTenant = scope !== undefined && scope.when(args);
      const role = wholeTenant ? null : write && spec.access.writeRole ? spec.access.writeRole : spec.access.role;
      // the acting account: the explicit argument, else the session's switch (read and re-validated now), else home
      const explicit = accountArg ? (args[accountArg] as string | undefined) : undefined;
      if (wholeTenant) {
        tenantWide = true;
        if (explicit !== undefined) throw new UserError(`Give either ${accountArg} or scope "tenant", not both.`);
        requirePermission(who, scope.permission, `${spec.name} with scope "tenant"`);
      }
      // a missing permission is decided before any account is looked up: the answer must not depend on what exists
      if (spec.access.permission) requirePermission(who, spec.access.permission, spec.name);

      const acting: Resolved & { switch?: CallSwitch | null } = spec.access.templates
        ? { account: await templatesAccount(core) }
        : explicit === undefined
          ? await sessionAccount(core, who, session, role !== null)
          : await resolveAccountFor(core, who, explicit);
      const account = acting.account;
      callSwitch = acting.switch ?? null;
      entry.accountId = account.id;
      entry.switchId = callSwitch?.id ?? null;
      let grant: Grant | null = null;
      if (role !== null) {
        grant = await authorize(core, who, account, role, explicit ?? account.slug, acting.grant);
        if (!spec.access.whileSuspended) throwIf(suspensionDenial(account, grant, write));
      }

      const named: Record<string, Account> = {};
      for (const { arg, role } of spec.access.also ?? []) {
        const key = args[arg];
        if (typeof key !== 'string') continue;
        const other = await resolveAccountFor(core, who, key);
        throwIf(suspensionDenial(other.account, await authorize(core, who, other.account, role, key, other.grant), write));
        named[arg] = other.account;
      }

      const contextOn = (c: Core): ToolContext => ({
        core: c,
        caller: who,
        session,
        switch: callSwitch,
        account,
        grant,
        named,
        scoped: (fn) => withAccount(c.db, [account.id], fn),
        async authorizeAccount(key, role, writes) {
          const target = await resolveAccountFor(c, who, key);
          entry.accountId = target.account.id;
          const g = await authorize(c, who, target.account, role, key, target.grant);
          throwIf(suspensionDenial(target.account, g, writes));
          return { account: target.account, grant: g };
        },
        auditAccount(id) {
          entry.accountId = id;
        },
        auditDetail(d) {
          detail = { ...detail, ...d };
        },
        interaction: env.interaction ?? null,
        outsideGate,
      });
      const typed = parsed.data as z.infer<z.ZodObject<I>>;
      // a person may take minutes on a page: that wait happens here, never inside the transaction
      const prepared = spec.prepare ? await spec.prepare(contextOn(core), typed) : (undefined as P);
      if (spec.prepare) {
        // minutes may have passed: the caller's token, permission and role are checked again
        const again = await env.authenticate(true);
        if (!again || again.user.id !== who.user.id) {
          throw new AccessDenied('Access denied: your API token was revoked or expired while the page was open; nothing was saved.');
        }
        if (spec.access.permission) requirePermission(again, spec.access.permission, spec.name);
        if (role !== null) {
          const current = (await getAccountById(core, account.id)) ?? account;
          const g = await authorize(core, again, current, role, explicit ?? account.slug);
          if (!spec.access.whileSuspended) throwIf(suspensionDenial(current, g, write));
        }
      }
      const handle = async (c: Core): Promise<CallToolResult> => {
        const out = await spec.handler(contextOn(c), typed, prepared);
        return { content: [{ type: 'text', text: out.text }], structuredContent: out.data as Record<string, unknown> };
      };
      if (atomic) {
        // everything inside uses the transaction: on PGlite a query outside it would wait for it forever
        result = await core.db.transaction(async (tx) => {
          const c = onTx(core, tx);
          const r = await handle(c);
          await writeAudit(c, auditEntry());
          return r;
        });
        audited = true;
        if (spec.after && !result.isError) {
          try {
            const out = await spec.after(contextOn(core), typed, result.structuredContent as z.infer<z.ZodObject<O>>);
            result = { content: [{ type: 'text', text: out.text }], structuredContent: out.data as Record<string, unknown> };
          } catch (err) {
            log.warn('tool follow-up failed; the committed result stands', { tool: spec.name, session: session.id, ...errorFields(err) });
          }
        }
      } else if (session.readOnly) {
        // a read-only session's handler runs in a read-only transaction: even a bug cannot write
        result = await core.db.transaction(async (tx) => {
          await tx.execute(sql`set transaction read only`);
          return handle(onTx(core, tx));
        });
      } else {
        result = await handle(core);
      }
    } catch (err) {
      // messages may echo what the caller typed: never echo anything shaped like a secret
      if (err instanceof AccessDenied) {
        outcome = 'denied';
        message = scrubText(err.message);
        if (err.outsider) {
          // no access at all to the target: the entry stays with the caller's own account and says
          // what was typed (its arguments); the target it means is recorded for tenant admins only
          entry.accountId = caller?.user.homeAccountId ?? null;
          entry.switchId = null;
          entry.targetAccountId = err.outsider.accountId !== undefined ? err.outsider.accountId : await outsiderTarget(core, err.outsider.key);
        }
      } else if (err instanceof UserError) {
        outcome = 'error';
        message = scrubText(err.message);
      } else if (transientDbError(err)) {
        // a restart, a lost connection, a failover: retryable, and said so rather than "internal error"
        outcome = 'error';
        unavailable = true;
        message = unavailableMessage(spec.name, write);
        log.warn('tool call failed: the database is unavailable', { tool: spec.name, session: session.id, ...errorFields(err) });
      } else {
        outcome = 'error';
        message = null;
        log.error('tool failed', { tool: spec.name, session: session.id, ...errorFields(err) });
      }
      result = { content: [{ type: 'text', text: message ?? '' }], isError: true };
    }

    if (!audited) {
      try {
        const id = await writeAudit(core, auditEntry());
        if (outcome === 'error' && message === null) {
          result.content = [{ type: 'text', text: `Internal error in ${spec.name} (audit entry ${id}); nothing was changed. Try again, or report the entry number.` }];
        }
      } catch (err) {
        // a call that cannot be audited is not acknowledged (a changing tool's work was rolled back with it)
        log.error('audit write failed', { tool: spec.name, session: session.id, ...errorFields(err) });
        // the database being down already has its sentence, which says to try again
        if (!unavailable) {
          result = transientDbError(err)
            ? { content: [{ type: 'text', text: unavailableMessage(spec.name, write) }], isError: true }
            : { content: [{ type: 'text', text: `The call to ${spec.name} could not be recorded in the audit log, so it was not done; try again.` }], isError: true };
        }
      }
    }
    return result;
  }

  return { name: spec.name, toolset: spec.toolset, readOnly: spec.annotations.readOnlyHint && !spec.notInReadOnly, listing: list, run };
}

/** A call the database could not serve (a restart, a lost connection): retryable, and said so. */
const unavailableMessage = (tool: string, write: boolean): string =>
  `The database is not answering right now (it may be restarting), so ${tool} did not finish; try again in a few seconds${write ? ', after checking whether its change was made' : ''}.`;

function throwIf(denial: AccessDenied | null): void {
  if (denial) throw denial;
}

/** Arguments the guard refuses before parsing: too deeply nested to walk, or text PostgreSQL cannot store. */
function checkShape(rawArgs: unknown): void {
  if (nestedDeeperThan(rawArgs, MAX_ARG_DEPTH)) {
    throw new UserError(`Invalid arguments: nested more than ${MAX_ARG_DEPTH} levels deep; no tool takes anything like that.`);
  }
  const unstorable = badText(rawArgs);
  if (unstorable !== null) {
    throw new UserError(`Invalid argument '${unstorable}': text must be valid Unicode without NUL characters.`);
  }
}

/**
 * The account an outsider's denied call meant, for the tenant admins' view of that account's log:
 * one lookup whether or not it exists, after the answer was decided. Unknown or ambiguous: null.
 */
async function outsiderTarget(core: Core, key: string): Promise<string | null> {
  try {
    const found = await findAccounts(core, key);
    return found.length === 1 ? found[0]!.id : null;
  } catch {
    return null;
  }
}

/**
 * The account a call acts in when it names none: the switched-into account while the session's
 * open switch (read from the database now) is valid, else home. A switch that expired, or whose
 * access was revoked, is ended here; for a tool that acts in an account this is an error (never
 * a silent fall back to home).
 */
async function sessionAccount(
  core: Core,
  caller: Caller,
  session: SessionState,
  actsInAccount: boolean,
): Promise<{ account: Account; grant?: Grant; switch: CallSwitch | null }> {
  const sw = session.switched ? await openSwitchOf(core, session.id, caller.user.id) : null;
  if (sw) {
    // ended by someone else (end_switch): over whatever this process's clock says
    const expired = sw.endedBy !== null || sw.until.getTime() <= Date.now();
    const grant = expired ? null : await grantIn(core, caller, sw.account);
    if (grant) return { account: sw.account, grant, switch: { id: sw.id, accountId: sw.accountId, reason: sw.reason, until: sw.until, slug: sw.account.slug } };
    // The switch is over. It is closed, with the reason told, by the next call that acts in an
    // account: a call that acts in none (whoami, list_toolsets, a tenant-wide read) passes the
    // news on, so the model never goes on to act at home believing it is still in the customer's
    // account. What someone else wrote (their reason) stays out of the sentence: list_switches
    // has it, as data.
    if (actsInAccount) {
      await endSwitch(core, sw);
      throw new AccessDenied(
        sw.endedBy
          ? `Your switch into account '${sw.account.slug}' was ended by ${sw.endedBy.email ?? 'an admin'}; you are back in your home account, and nothing was done. Call switch_account again only if you still need to act there.`
          : expired
            ? `Your switch into account '${sw.account.slug}' expired at ${sw.until.toISOString()}; call switch_account again with a reason, or pass account explicitly.`
            : `Access denied: you may no longer act in account '${sw.account.slug}', so the switch into it has ended; you are back in your home account.`,
      );
    }
  }
  const home = await getAccountById(core, caller.user.homeAccountId);
  if (!home) throw new UserError('Your home account no longer exists; ask an admin to move you to another account.');
  return { account: home, switch: null };
}

/**
 * Record a tools/call the protocol layer refuses before any tool runs (an unknown tool name, a
 * name that is not text), so that a probe leaves a trace like every other call: outcome `error`,
 * the name as typed, in the caller's home account (nothing was resolved).
 */
export async function auditRefusedCall(env: CallEnv, name: string, rawArgs: unknown, message: string): Promise<void> {
  const caller = await env.authenticate().catch(() => null);
  try {
    await writeAudit(env.core, {
      actorUserId: caller?.user.id ?? null,
      actorEmail: caller?.user.email ?? null,
      homeAccountId: caller?.user.homeAccountId ?? null,
      accountId: caller?.user.homeAccountId ?? null,
      targetAccountId: null,
      switchId: null,
      sessionId: env.session.id,
      tool: name,
      arguments: nestedDeeperThan(rawArgs, MAX_ARG_DEPTH) ? '[…]' : (rawArgs ?? {}),
      outcome: 'error',
      message,
      durationMs: 0,
    });
  } catch (err) {
    log.error('audit write failed', { tool: '(refused call)', session: env.session.id, ...errorFields(err) });
  }
}
