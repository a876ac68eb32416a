import { z } from 'zod';
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import type { Core } from '../core/core.js';
import type { Account } from '../core/accounts.js';
import { getAccountById } from '../core/accounts.js';
import type { Caller } from '../core/users.js';
import { authorize, grantIn, requirePermission, resolveAccountFor, type Grant } from '../core/access.js';
import { scrubText, writeAudit } from '../core/audit.js';
import { endSwitch } from '../core/switches.js';
import { AccessDenied, UserError } from '../core/errors.js';
import { withAccount, type Tx } from '../db/scope.js';
import type { Permission, Role, AuditOutcome } from '../db/schema/index.js';
import type { SessionState } from './session.js';
import { log, errorFields } from '../log.js';

/**
 * The registration wrapper: the only way a tool exists. Every call goes through `run` below:
 *
 *   authenticate the token (fresh, every call) → validate arguments (strict) → resolve the acting
 *   account (explicit argument > switched account > home) → check permission and role (core/access)
 *   → handler → audit entry (always, allowed or not) → tool result (errors become isError).
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
}

export interface ToolContext {
  core: Core;
  caller: Caller;
  session: SessionState;
  /** The acting account: resolved and, unless access.role is null, authorized. */
  account: Account;
  /** The caller's grant in the acting account (null when access.role is null). */
  grant: Grant | null;
  /** Accounts named by `access.also` arguments, by argument name. */
  named: Record<string, Account>;
  /** Run account-scoped queries under row-level security for the acting account. */
  scoped<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  /** Resolve and authorize another account named by an argument (for tools with custom rules). */
  authorizeAccount(key: string, role: Role): Promise<{ account: Account; grant: Grant }>;
  /** Record a different acting account in the audit entry (e.g. the account just created). */
  auditAccount(accountId: string | null): void;
}

export interface ToolOutput<O> {
  data: O;
  /** one sentence for humans and models */
  text: string;
}

export interface ToolSpec<I extends z.ZodRawShape, O extends z.ZodRawShape> {
  name: string;
  title: string;
  description: string;
  input: I;
  output: O;
  annotations: { readOnlyHint: boolean; destructiveHint?: boolean; idempotentHint?: boolean; openWorldHint?: boolean };
  access: AccessSpec;
  handler(ctx: ToolContext, args: z.infer<z.ZodObject<I>>): Promise<ToolOutput<z.infer<z.ZodObject<O>>>>;
}

/** What a call needs from its transport: the core, the session, and who is calling. */
export interface CallEnv {
  core: Core;
  session: SessionState;
  /**
   * The caller of this call, read fresh from the database: the HTTP transport authenticates each
   * request (and hands over that result); stdio and in-memory transports authenticate per call.
   */
  authenticate(): Promise<Caller | null>;
}

export interface ToolDef {
  name: string;
  /** the tools/list entry */
  listing(): Tool;
  run(rawArgs: unknown, env: CallEnv): Promise<CallToolResult>;
}

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Tool['inputSchema'] {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Record<string, unknown>;
  return rest as Tool['inputSchema'];
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

export function defineTool<I extends z.ZodRawShape, O extends z.ZodRawShape>(spec: ToolSpec<I, O>): ToolDef {
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
      annotations: { title: spec.title, openWorldHint: false, ...spec.annotations },
    });

  async function run(rawArgs: unknown, env: CallEnv): Promise<CallToolResult> {
    const started = performance.now();
    const { core, session } = env;
    let caller: Caller | null = null;
    let auditAccountId: string | null = null;
    let outcome: AuditOutcome = 'ok';
    let message: string | null = null;
    let result: CallToolResult;
    try {
      caller = await env.authenticate();
      if (!caller) {
        throw new AccessDenied('Access denied: the API token is missing, unknown, expired or revoked; ask an admin for a new token.');
      }
      const who = caller;
      auditAccountId = session.switch?.accountId ?? who.user.homeAccountId;

      const parsed = input.safeParse(rawArgs ?? {});
      if (!parsed.success) throw new UserError(describeZodError(parsed.error));
      const args = parsed.data as Record<string, unknown>;

      // the acting account: the explicit argument, else the session's (switch re-validated now), else home
      const explicit = accountArg ? (args[accountArg] as string | undefined) : undefined;
      const { account, grant: known } =
        explicit !== undefined
          ? { account: await resolveAccountFor(core, who, explicit), grant: undefined }
          : await defaultAccount(core, who, session, spec.access.role !== null);
      auditAccountId = account.id;
      if (spec.access.permission) requirePermission(who, spec.access.permission, spec.name);
      const grant =
        spec.access.role === null ? null : await authorize(core, who, account, spec.access.role, explicit ?? account.slug, known);

      const named: Record<string, Account> = {};
      for (const { arg, role } of spec.access.also ?? []) {
        const key = args[arg];
        if (typeof key !== 'string') continue;
        const other = await resolveAccountFor(core, who, key);
        await authorize(core, who, other, role, key);
        named[arg] = other;
      }

      const ctx: ToolContext = {
        core,
        caller: who,
        session,
        account,
        grant,
        named,
        scoped: (fn) => withAccount(core.db, [account.id], fn),
        async authorizeAccount(key, role) {
          const target = await resolveAccountFor(core, who, key);
          auditAccountId = target.id;
          return { account: target, grant: await authorize(core, who, target, role, key) };
        },
        auditAccount(id) {
          auditAccountId = id;
        },
      };
      const out = await spec.handler(ctx, parsed.data as z.infer<z.ZodObject<I>>);
      result = { content: [{ type: 'text', text: out.text }], structuredContent: out.data as Record<string, unknown> };
    } catch (err) {
      // messages may echo what the caller typed: never echo anything shaped like a secret
      if (err instanceof AccessDenied) {
        outcome = 'denied';
        message = scrubText(err.message);
      } else if (err instanceof UserError) {
        outcome = 'error';
        message = scrubText(err.message);
      } else {
        outcome = 'error';
        message = null;
        log.error('tool failed', { tool: spec.name, session: session.id, ...errorFields(err) });
      }
      result = { content: [{ type: 'text', text: message ?? '' }], isError: true };
    }

    try {
      const id = await writeAudit(core, {
        actorUserId: caller?.user.id ?? null,
        actorEmail: caller?.user.email ?? null,
        homeAccountId: caller?.user.homeAccountId ?? null,
        accountId: auditAccountId,
        switchId: session.switch?.id ?? null,
        sessionId: session.id,
        tool: spec.name,
        arguments: rawArgs ?? {},
        outcome,
        message: message ?? (outcome === 'error' ? 'internal error' : null),
        durationMs: Math.round(performance.now() - started),
      });
      if (outcome === 'error' && message === null) {
        result.content = [{ type: 'text', text: `Internal error in ${spec.name} (audit entry ${id}); it may not have completed: check its effect before retrying, or report the entry number.` }];
      }
    } catch (err) {
      // an action that cannot be audited is not acknowledged
      log.error('audit write failed', { tool: spec.name, session: session.id, ...errorFields(err) });
      result = { content: [{ type: 'text', text: `The call to ${spec.name} could not be recorded in the audit log; treat it as failed and retry.` }], isError: true };
    }
    return result;
  }

  return { name: spec.name, listing: list, run };
}

/**
 * The account a call acts in when it names none: the switched-into account while the switch is
 * valid, else home. A switch that expired, or whose access was revoked, is ended here; for a tool
 * that acts in an account this is an error (never a silent fall back to home).
 */
async function defaultAccount(
  core: Core,
  caller: Caller,
  session: SessionState,
  actsInAccount: boolean,
): Promise<{ account: Account; grant?: Grant }> {
  const sw = session.switch;
  if (sw) {
    const expired = sw.until.getTime() <= Date.now();
    const account = expired ? null : await getAccountById(core, sw.accountId);
    const grant = account ? await grantIn(core, caller, account) : null;
    if (account && grant) return { account, grant };
    session.switch = null;
    await endSwitch(core, sw);
    if (actsInAccount) {
      throw new AccessDenied(
        expired
          ? `Your switch into account '${sw.slug}' expired at ${sw.until.toISOString()}; call switch_account again with a reason, or pass account explicitly.`
          : `Access denied: you may no longer act in account '${sw.slug}', so the switch into it has ended; you are back in your home account.`,
      );
    }
  }
  const home = await getAccountById(core, caller.user.homeAccountId);
  if (!home) throw new UserError('Your home account no longer exists; ask an admin to move you to another account.');
  return { account: home };
}
