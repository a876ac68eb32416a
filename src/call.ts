import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { Config } from './config.js';
import { configuredToken, openApp } from './app.js';
import { authenticate } from './core/users.js';
import { UserError } from './core/errors.js';
import { createMcpServer, SERVER_VERSION } from './mcp/server.js';
import { newSession } from './mcp/session.js';
import { parseToolsets } from './mcp/toolsets.js';

/**
 * `switchboard call TOOL [JSON]` and `switchboard call --script FILE`: tool calls from a shell or
 * a CI script. They go through the MCP server `stdio` builds, connected to an SDK client in
 * memory, so the guard, the audit entries and the results are those of any MCP client; a script
 * is one session (switch, act, switch back).
 */

/** A mistake in how `call` was invoked: exit 2, and nothing was called. */
class UsageError extends Error {}

const ScriptLine = z.strictObject({
  tool: z.string().min(1),
  arguments: z.record(z.string(), z.unknown()).optional(),
  expect: z.strictObject({ isError: z.boolean().optional(), match: z.string().min(1).optional() }).optional(),
});

interface Expectation {
  isError?: boolean;
  match?: string;
}

interface Step {
  /** the line of the script (null: a single call) */
  line: number | null;
  tool: string;
  arguments: Record<string, unknown>;
  expect: Expectation;
}

interface Plan {
  steps: Step[];
  script: boolean;
  json: boolean;
  keepGoing: boolean;
  config: Config;
}

/** What one call answered: a tool result, or a refusal by the protocol (an unknown tool) read as an error result. */
interface Outcome {
  isError: boolean;
  text: string;
  structuredContent?: Record<string, unknown>;
}

export async function callCommand(config: Config, args: string[]): Promise<number> {
  let plan: Plan;
  try {
    plan = await planOf(config, args);
  } catch (err) {
    if (err instanceof UsageError || err instanceof UserError || String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS_')) {
      process.stderr.write(`switchboard: ${(err as Error).message}\n`);
      return 2;
    }
    throw err;
  }
  const app = await openApp(plan.config);
  try {
    // the same token, and the same refusal, as `switchboard stdio`
    const token = configuredToken(plan.config);
    if (!token || !(await authenticate(app.core, token))) {
      throw new UserError(
        token
          ? 'SWITCHBOARD_TOKEN is not a valid API token (unknown, expired or revoked).'
          : 'Set SWITCHBOARD_TOKEN to your API token (from `switchboard init` or the create_user tool).',
      );
    }
    const session = newSession(undefined, { toolsets: parseToolsets(plan.config.toolsets), readOnly: plan.config.readOnly });
    const server = createMcpServer({ core: app.core, session, authenticate: () => authenticate(app.core, token) });
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await server.connect(serverSide);
    const client = new Client({ name: 'switchboard-call', version: SERVER_VERSION });
    await client.connect(clientSide);
    try {
      // as clients do: the listing also lets the client check each result against its tool's outputSchema
      await client.listTools();
      return plan.script ? await runScript(client, plan) : await runOne(client, plan.steps[0]!, plan.json);
    } finally {
      await client.close();
      await server.close().catch(() => {});
    }
  } finally {
    await app.database.close();
  }
}

/**
 * The calls to make, checked before the database opens: a malformed script line stops the run
 * before its first call, so a script never stops half-way (switched into an account) over a typo.
 */
async function planOf(config: Config, args: string[]): Promise<Plan> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      script: { type: 'string' },
      json: { type: 'boolean', default: false },
      'keep-going': { type: 'boolean', default: false },
      toolsets: { type: 'string' },
      'read-only': { type: 'boolean', default: false },
    },
    allowPositionals: true,
    strict: true,
  });
  // a script names its tools, so every toolset is on unless --toolsets or SWITCHBOARD_TOOLSETS says otherwise
  const surface = { ...config, toolsets: values.toolsets ?? config.toolsets ?? 'all', readOnly: config.readOnly || values['read-only'] };
  parseToolsets(surface.toolsets); // an unknown toolset is a usage error here
  const common = { json: values.json, keepGoing: values['keep-going'], config: surface };
  if (values.script !== undefined) {
    if (positionals.length) throw new UsageError('Give either a tool (with its JSON arguments) or --script FILE, not both.');
    const name = values.script === '-' ? 'stdin' : values.script;
    return { ...common, script: true, steps: parseScript(await readScript(values.script), name) };
  }
  if (values['keep-going']) throw new UsageError('--keep-going goes with --script FILE.');
  const [tool, json, ...extra] = positionals;
  if (!tool) throw new UsageError('call needs a tool name (switchboard call TOOL [JSON]) or --script FILE.');
  if (extra.length) throw new UsageError(`call takes one JSON object of arguments; quote it as one word: switchboard call ${tool} '{"account": "…"}'.`);
  return { ...common, script: false, steps: [{ line: null, tool, arguments: json === undefined ? {} : argumentsOf(json), expect: {} }] };
}

function argumentsOf(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`The arguments are not valid JSON (${jsonFault(err)}); give one object, such as '{"account": "acme-fitness"}'.`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new UsageError('The arguments must be one JSON object, such as \'{"account": "acme-fitness"}\'.');
  }
  return value as Record<string, unknown>;
}

/**
 * Where JSON.parse gave up, without the excerpt of the text V8 quotes in its message: the text may
 * hold a credential (add_connection's arguments), and CI logs keep stderr.
 */
function jsonFault(err: unknown): string {
  const at = /position (\d+)/.exec((err as Error).message)?.[1];
  return at === undefined ? 'it does not parse' : `it stops parsing at character ${Number(at) + 1}`;
}

async function readScript(file: string): Promise<string> {
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`Cannot read the script ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}).`);
  }
}

/** One call per line: {"tool", "arguments"?, "expect"?}; blank lines and lines starting with # are skipped. */
function parseScript(text: string, name: string): Step[] {
  const steps: Step[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const source = raw.trim();
    if (!source || source.startsWith('#')) return;
    const line = i + 1;
    let value: unknown;
    try {
      value = JSON.parse(source);
    } catch (err) {
      throw new UsageError(`Line ${line} of ${name} is not valid JSON (${jsonFault(err)}).`);
    }
    const parsed = ScriptLine.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const where = issue.path.length ? `${issue.path.join('.')}: ` : '';
      throw new UsageError(`Line ${line} of ${name} is not a call (${where}${issue.message}); a line is {"tool": "…", "arguments": {…}, "expect": {"isError": false, "match": "…"}}.`);
    }
    // without expect the call must succeed; with it, exactly what it states is checked
    steps.push({ line, tool: parsed.data.tool, arguments: parsed.data.arguments ?? {}, expect: parsed.data.expect ?? { isError: false } });
  });
  if (!steps.length) throw new UsageError(`${name} has no calls: one JSON object per line, such as {"tool": "whoami"}.`);
  return steps;
}

async function call(client: Client, step: Step): Promise<Outcome> {
  try {
    const r = (await client.callTool(
      { name: step.tool, arguments: step.arguments },
      undefined,
      // long calls (a deploy to many accounts) report progress: each report restarts the SDK's timeout
      { onprogress: () => {}, resetTimeoutOnProgress: true },
    )) as CallToolResult;
    const text = r.content
      .filter((c) => c.type === 'text')
      .map((c) => c.text)
      .join(' ');
    return { isError: r.isError === true, text, ...(r.structuredContent ? { structuredContent: r.structuredContent } : {}) };
  } catch (err) {
    // refused before any tool ran (an unknown tool): an error result, with the server's sentence
    if (err instanceof McpError) return { isError: true, text: err.message.replace(/^MCP error -?\d+: /, '') };
    throw err;
  }
}

/** A single call: its text (or, with --json, its structuredContent) on stdout; an error result on stderr, exit 1. */
async function runOne(client: Client, step: Step, json: boolean): Promise<number> {
  const out = await call(client, step);
  if (out.isError) {
    process.stderr.write(`switchboard: ${step.tool}: ${oneLine(out.text)}\n`);
    return 1;
  }
  await print((json ? JSON.stringify(out.structuredContent ?? null) : out.text) + '\n');
  return 0;
}

/** A script: one line per call on stdout; exit 1 at the first unmet expectation (all of them with --keep-going). */
async function runScript(client: Client, plan: Plan): Promise<number> {
  const failed: number[] = [];
  let ran = 0;
  // whether the session is inside a switch, as the script's last switch_account left it
  let inside = false;
  for (const step of plan.steps) {
    const out = await call(client, step);
    ran++;
    if (step.tool === 'switch_account' && !out.isError) inside = Boolean((out.structuredContent as { switched?: unknown } | undefined)?.switched);
    const failure = unmet(step.expect, out);
    if (plan.json) {
      await print(
        JSON.stringify({ line: step.line, tool: step.tool, ok: failure === null, isError: out.isError, text: out.text, structuredContent: out.structuredContent ?? null, ...(failure ? { failure } : {}) }) + '\n',
      );
    } else {
      const said = (out.isError ? 'error: ' : '') + oneLine(out.text);
      await print(failure ? `FAIL line ${step.line}  ${step.tool}  ${failure}\n` : `ok   line ${step.line}  ${step.tool}  ${said}\n`);
    }
    if (failure) {
      failed.push(step.line!);
      if (!plan.keepGoing) break;
    }
  }
  if (inside) await leaveSwitch(client, plan);
  if (!failed.length) return 0;
  const rest = plan.steps.length - ran;
  process.stderr.write(
    plan.keepGoing
      ? `switchboard: ${failed.length} of ${plan.steps.length} calls did not meet their expectations (line${failed.length > 1 ? 's' : ''} ${failed.join(', ')}).\n`
      : `switchboard: line ${failed[0]} did not meet its expectation; stopped there${rest ? `, ${rest} call${rest > 1 ? 's' : ''} not made (--keep-going makes them)` : ''}.\n`,
  );
  return 1;
}

/**
 * A script's session ends with the process: a switch it left open (it stopped at an unmet
 * expectation before its switch_account home, or never had one) would stay active, for anyone
 * reviewing switches, until it times out. The script returns home itself, audited like any call.
 */
async function leaveSwitch(client: Client, plan: Plan): Promise<void> {
  const back = await call(client, { line: null, tool: 'switch_account', arguments: { account: 'home' }, expect: {} });
  const said = `${back.isError ? 'could not return home: ' : ''}${oneLine(back.text)}`;
  await print(plan.json ? JSON.stringify({ line: null, tool: 'switch_account', ok: !back.isError, isError: back.isError, text: back.text, cleanup: true }) + '\n' : `end  the script ended inside a switch: ${said}\n`);
}

/**
 * Why a call's outcome does not meet its expectation, or null. `match` holds when the result's
 * text or its structuredContent (as JSON) contains it, or when it is a regular expression that
 * matches one of them.
 */
function unmet(expect: Expectation, out: Outcome): string | null {
  const said = oneLine(out.text);
  if (expect.isError !== undefined && expect.isError !== out.isError) {
    return expect.isError ? `expected isError=true, got a result: ${said}` : `expected isError=false, got an error: ${said}`;
  }
  if (expect.match !== undefined) {
    const targets = [out.text, ...(out.structuredContent ? [JSON.stringify(out.structuredContent)] : [])];
    const pattern = regexOf(expect.match);
    if (!targets.some((t) => t.includes(expect.match!) || (pattern?.test(t) ?? false))) {
      return `expected a match for ${JSON.stringify(expect.match)}, got${out.isError ? ' an error' : ''}: ${said}`;
    }
  }
  return null;
}

function regexOf(source: string): RegExp | null {
  try {
    return new RegExp(source);
  } catch {
    return null; // not a regular expression: matched as text only
  }
}

/** Written before the process exits: stdout may be a pipe that drains asynchronously (macOS), and a result can be large. */
const print = (text: string): Promise<void> => new Promise((resolve) => process.stdout.write(text, () => resolve()));

const oneLine = (text: string): string => text.replace(/\s*\n\s*/g, ' ').trim();
