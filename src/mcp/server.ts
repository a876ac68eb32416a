import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { z } from 'zod';
import { CompleteRequestSchema, ErrorCode, GetPromptRequestSchema, ListPromptsRequestSchema, ListToolsRequestSchema, RequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { Protocol, type RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js';
import type { Core } from '../core/core.js';
import type { Caller } from '../core/users.js';
import { auditRefusedCall, badText, type CallEnv, type ToolDef } from './define-tool.js';
import { log, errorFields } from '../log.js';
import type { SessionState } from './session.js';
import { accountTools } from './tools/accounts.js';
import { userTools } from './tools/users.js';
import { sessionTools } from './tools/session.js';
import { auditTools } from './tools/audit.js';
import { switchTools } from './tools/switches.js';
import { appTools } from './tools/apps.js';
import { connectionTools } from './tools/connections.js';
import { automationTools } from './tools/automations.js';
import { templateTools } from './tools/templates.js';
import { deployTools } from './tools/deploy.js';
import { deploymentTools } from './tools/deployments.js';
import { accountDataTools } from './tools/account-data.js';
import { executionTools } from './tools/executions.js';
import { debugWebhookTools } from './tools/debug-webhook.js';
import { healthTools } from './tools/health.js';
import { replayTools } from './tools/replay.js';
import { toolsetTools } from './tools/toolsets.js';
import { interactionFor } from './interaction.js';
import { DISCOVERY } from './toolsets.js';
import { completePromptArgument, promptListing, renderPrompt } from './prompts.js';
import { UserError } from '../core/errors.js';

export const SERVER_NAME = 'switchboard';
export const SERVER_VERSION = '0.1.0';

export const allTools: ToolDef[] = [...toolsetTools, ...sessionTools, ...accountTools, ...userTools, ...auditTools, ...switchTools, ...appTools, ...connectionTools, ...automationTools, ...executionTools, ...debugWebhookTools, ...replayTools, ...healthTools, ...accountDataTools, ...templateTools, ...deployTools, ...deploymentTools];

const INSTRUCTIONS =
  'Switchboard operates customer accounts of an integration platform. Every call acts in one account: the `account` ' +
  'argument when given, else the account this session switched into (switch_account, with a reason; time-boxed), else ' +
  'your home account. Use list_accounts to find accounts, switch_account to work inside one, and switch_account with ' +
  'account "home" when done. Access is checked on every call and every call is audited. Credentials of app connections ' +
  'never need to pass through the conversation: add_connection, reconnect_connection and view_connection_info send the ' +
  'person a link to a page when the client supports URL elicitation. Tools come in toolsets (accounts, operations, ' +
  'directory, automations, connections, templates, audit, admin); a tool you need but do not see is in one this session ' +
  'has not turned on: list_toolsets shows them, enable_toolset turns one on. In output schemas, an object without a ' +
  '`required` list has every field in every result (null when it has no value).';

export type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

export interface ServerOptions {
  core: Core;
  session: SessionState;
  /** Authenticate the caller of the request being served (stdio: the configured token; HTTP: the request's). */
  authenticate(extra: Extra, fresh?: boolean): Promise<Caller | null>;
  tools?: ToolDef[];
  /**
   * Whose share of the tool-call slots a request's call takes (src/mcp/tool-gate.ts), when the
   * transport knows its caller before the call (HTTP: the customer of the request's user, Caller.customerAccountId);
   * absent or undefined: the session.
   */
  gateKey?(extra: Extra): string | undefined;
  /** Base URL of the pages served beside this server (`switchboard serve`); null or absent for none. */
  pagesUrl?: string | null;
}

/**
 * One MCP server per session. Tools are registered only through defineTool(); this file wires
 * their listings and `run` into the protocol and nothing else.
 */
export function createMcpServer(opts: ServerOptions): Server {
  const tools = opts.tools ?? allTools;
  const byName = new Map(tools.map((t) => [t.name, t]));
  const session = opts.session;
  // what this session lists: its toolsets (discovery always), only read-only tools when it is read-only
  const listed = (t: ToolDef) => (t.toolset === DISCOVERY || session.toolsets.has(t.toolset)) && (!session.readOnly || t.readOnly);
  const server = new Server(
    { name: SERVER_NAME, version: SERVER_VERSION },
    // logging: the SDK answers logging/setLevel and keeps the session's level (sendLoggingMessage honours it)
    { capabilities: { tools: { listChanged: true }, logging: {}, prompts: {}, completions: {} }, instructions: INSTRUCTIONS },
  );
  // prompts (src/mcp/prompts.ts): the caller is authenticated like a tool call; a prompt's text holds
  // only what the caller typed, and completions offer only names the caller may see
  const caller = async (extra: Extra) => {
    const who = await opts.authenticate(extra);
    if (!who) throw protocolError(ErrorCode.InvalidRequest, 'Access denied: the API token is missing, unknown, expired or revoked.');
    return who;
  };
  server.setRequestHandler(ListPromptsRequestSchema, async (_req, extra) => {
    await caller(extra);
    return { prompts: promptListing() };
  });
  server.setRequestHandler(GetPromptRequestSchema, async (req, extra) => {
    await caller(extra);
    return oneSentence('prompts/get', req.params, () => renderPrompt(req.params.name, req.params.arguments, session));
  });
  server.setRequestHandler(CompleteRequestSchema, async (req, extra) => {
    const who = await caller(extra);
    const ref = req.params.ref;
    return oneSentence('completion/complete', req.params, async () => {
      const values = ref.type === 'ref/prompt' ? await completePromptArgument(opts.core, who, ref.name, req.params.argument, req.params.context?.arguments) : [];
      return { completion: { values, total: values.length, hasMore: false } };
    });
  });
  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: tools.filter(listed).map((t) => t.listing()) }));
  // Registered on the protocol layer with a loose schema: the SDK's Server would reject a call
  // whose arguments are not an object before any tool sees it, and so before it is audited.
  // Arguments go to the tool's own guard, which answers bad ones with one sentence (and audits).
  Protocol.prototype.setRequestHandler.call(server, LooseCallToolRequestSchema, async (req: LooseCallToolRequest, extra: Extra) => {
    const env: CallEnv = {
      core: opts.core,
      session: opts.session,
      authenticate: (fresh) => opts.authenticate(extra, fresh),
      interaction: interactionFor(server, extra, opts.pagesUrl ?? null),
      gateKey: opts.gateKey?.(extra),
    };
    const { name, arguments: args } = req.params ?? {};
    const tool = typeof name === 'string' ? byName.get(name) : undefined;
    if (!tool) {
      const typed = typeof name === 'string' ? name : '(not a string)';
      const message =
        typeof name === 'string'
          ? `Unknown tool '${name.slice(0, 100)}'; tools/list shows the tools.`
          : 'Invalid tools/call: params.name must be the name of a tool (a string).';
      await auditRefusedCall(env, typed, args, message);
      throw protocolError(ErrorCode.InvalidParams, message);
    }
    const before = session.toolsets.size;
    const result = await tool.run(args, env);
    // enable_toolset turned something on: the client lists again
    if (session.toolsets.size !== before) await server.sendToolListChanged().catch(() => {});
    return result;
  });
  return server;
}

/**
 * A prompt or completion request answered, or refused in one sentence: text PostgreSQL cannot
 * store is refused before any query (as tool arguments are), a UserError is InvalidParams, and
 * anything else is logged here and answered without its details (no query, no ids).
 */
async function oneSentence<T>(method: string, params: unknown, fn: () => Promise<T> | T): Promise<T> {
  const bad = badText(params);
  if (bad !== null) throw protocolError(ErrorCode.InvalidParams, `Invalid params.${bad}: text must be valid Unicode without NUL characters.`);
  try {
    return await fn();
  } catch (err) {
    if (err instanceof UserError) throw protocolError(ErrorCode.InvalidParams, err.message);
    log.error('request failed', { method, ...errorFields(err) });
    throw protocolError(ErrorCode.InternalError, `Internal error in ${method}; try again.`);
  }
}

/**
 * A JSON-RPC error with this code and exactly this message: McpError would put "MCP error -32602:"
 * in the message, and the client's McpError adds it again.
 */
const protocolError = (code: ErrorCode, message: string) => Object.assign(new Error(message), { code });

/** tools/call as it arrives, before any check of its params (see above). */
const LooseCallToolRequestSchema = RequestSchema.extend({
  method: z.literal('tools/call'),
  params: z.looseObject({ name: z.unknown().optional(), arguments: z.unknown().optional() }).optional(),
});
type LooseCallToolRequest = z.infer<typeof LooseCallToolRequestSchema>;
