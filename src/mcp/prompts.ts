import type { Core } from '../core/core.js';
import type { Caller } from '../core/users.js';
import { hasPermission } from '../core/users.js';
import { listAccounts } from '../core/accounts.js';
import { grantIn, resolveAccountFor, suspensionDenial } from '../core/access.js';
import { listAutomations } from '../core/automations.js';
import { listConnections } from '../core/connections.js';
import type { Account } from '../core/accounts.js';
import { listTemplates } from '../core/templates/templates.js';
import { templatesAccount } from '../core/templates/account.js';
import { UserError } from '../core/errors.js';

/**
 * MCP prompts: the workflows an integrator runs most, as slash commands in clients that show
 * prompts. Each one's text tells the model which tools to call, in which order, what to ask the
 * person before changing anything, and to switch back. Arguments are completed
 * (`completion/complete`) from what the caller may see: accounts they have a role in (all of them
 * with Switch Account), automations and connections of an account they may see, templates when
 * they may reach the templates account. A prompt reveals nothing: its text holds only what the caller typed.
 */

type Completion = 'account' | 'automation' | 'connection' | 'template';

interface PromptArg {
  name: string;
  description: string;
  required: boolean;
  complete?: Completion;
}

interface PromptDef {
  name: string;
  title: string;
  description: string;
  arguments: PromptArg[];
  text(args: Record<string, string>): string;
}

/** What the caller typed, quoted as data inside the prompt. */
const q = (v: string | undefined) => JSON.stringify(v ?? '');

const BACK = 'If you switched into an account (switch_account), switch back with switch_account {account: "home"} when done.';
const ENABLE = (toolset: string, tool: string) => `If ${tool} is not among your tools, call enable_toolset {toolset: "${toolset}"} first.`;

export const PROMPTS: PromptDef[] = [
  {
    name: 'health_check',
    title: 'Health check of an account',
    description: "Checks one account's health: failure rates, failing groups and their diagnoses, and what to do next.",
    arguments: [{ name: 'account', description: 'The account: id, slug or name.', required: true, complete: 'account' }],
    text: (a) =>
      [
        `Check the health of the account ${q(a.account)}. Change nothing unless the person asks.`,
        `1. check_health {account: ${q(a.account)}}: read its figures, its failure groups and its diagnoses.`,
        `2. For each failing group, debug_webhook {account: ${q(a.account)}, status: "failed"} to see its latest failing deliveries and their diagnosis.`,
        '3. Summarize: what is healthy, what fails and why, and for each problem the next action (naming the tool).',
        `Pass account on each call rather than switching. ${BACK}`,
      ].join('\n'),
  },
  {
    name: 'debug_webhook',
    title: 'Debug a failing webhook',
    description: "Finds an account's failing webhook deliveries, their diagnosis, a fix, and replays them once the person agrees.",
    arguments: [
      { name: 'account', description: 'The account: id, slug or name.', required: true, complete: 'account' },
      { name: 'automation', description: 'Only this automation (its name).', required: false, complete: 'automation' },
    ],
    text: (a) =>
      [
        `Debug the failing webhook deliveries of the account ${q(a.account)}${a.automation ? ` for the automation ${q(a.automation)}` : ''}.`,
        `1. debug_webhook {account: ${q(a.account)}${a.automation ? `, automation: ${q(a.automation)}` : ''}, status: "failed"}: take the latest failing delivery and read its diagnosis (cause, next_action, tools).`,
        `2. Follow the diagnosis: for a connection problem, list_connections {account: ${q(a.account)}} (${ENABLE('connections', 'list_connections')}); for the automation, get_delivery {account: ${q(a.account)}, delivery} shows the payload and each step's input and output, and get_automation its definition (${ENABLE('automations', 'get_delivery')}).`,
        '3. Tell the person the cause and the fix you propose; change nothing before they agree.',
        '4. Once fixed: replay_webhook without plan_hash (a dry run), show the plan, and replay with its plan_hash only when the person approves.',
        BACK,
      ].join('\n'),
  },
  {
    name: 'fix_connection',
    title: 'Fix a failing connection',
    description: "Checks one of an account's connections and what its failure broke, has the person re-enter its credentials on a page, and replays what failed once they agree.",
    arguments: [
      { name: 'account', description: 'The account: id, slug or name.', required: true, complete: 'account' },
      { name: 'connection', description: 'The connection: app/name, or an app slug for its Default connection.', required: true, complete: 'connection' },
    ],
    text: (a) =>
      [
        `Fix the connection ${q(a.connection)} of the account ${q(a.account)}. ${ENABLE('connections', 'list_connections')}`,
        `1. list_connections {account: ${q(a.account)}}: its status (active, expired, disconnected) and since when.`,
        `2. list_connection_usage {account: ${q(a.account)}, connection: ${q(a.connection)}}: the automations that use it; those paused wait for it.`,
        `3. debug_webhook {account: ${q(a.account)}, status: "failed"}: the deliveries its failure broke, with their diagnosis and error code.`,
        `4. Tell the person what you found. With their agreement, reconnect_connection {account: ${q(a.account)}, connection: ${q(a.connection)}}: they enter the credentials on the page it links to, never in the conversation.`,
        `5. replay_webhook {account: ${q(a.account)}, filter: {error: <the code>, since: <when it began>}, dry_run: true}: show the plan, and replay with its plan_hash only when the person approves.`,
        BACK,
      ].join('\n'),
  },
  {
    name: 'roll_out_template',
    title: 'Roll out a template',
    description: 'Plans the latest version of a template to every account running it, in health-gated waves, and applies it once approved.',
    arguments: [{ name: 'template', description: 'The template: id or name.', required: true, complete: 'template' }],
    text: (a) =>
      [
        `Roll out the template ${q(a.template)}. ${ENABLE('templates', 'deploy_template')}`,
        `1. get_template {template: ${q(a.template)}}: the latest version, compatible or breaking and why.`,
        `2. template_status {template: ${q(a.template)}}: which account runs which version, drift, blocked accounts and why.`,
        `3. deploy_template {template: ${q(a.template)}, accounts: "all", waves: [1, "10%", "100%"], auto_rollback: true} without plan_hash: a dry run. Show the person the plan: counts, blocked accounts and what they need.`,
        '4. Only when the person approves, call deploy_template again with the same arguments and the plan_hash. Follow it with get_deployment and report each wave\'s gate decision.',
        '5. If a wave regressed, explain the figures and offer rollback_template (dry run first).',
      ].join('\n'),
  },
  {
    name: 'onboard_customer',
    title: 'Onboard a customer',
    description: 'Creates a customer account (optionally under a parent), connects its apps on pages the person fills in, and deploys templates.',
    arguments: [
      { name: 'name', description: "The customer's name.", required: true },
      { name: 'parent', description: 'A parent account to link it under (id, slug or name).', required: false, complete: 'account' },
    ],
    text: (a) =>
      [
        `Onboard the customer ${q(a.name)}${a.parent ? ` under the parent account ${q(a.parent)}` : ''}.`,
        `1. list_accounts {query: ${q(a.name)}}: make sure it does not exist yet.`,
        `2. create_account {name: ${q(a.name)}${a.parent ? `, parent: ${q(a.parent)}, routing_key: <ask the person>` : ''}}. ${ENABLE('directory', 'create_account')}`,
        '3. switch_account into it with a reason ("onboarding").',
        `4. list_apps, then add_connection for each app the customer uses: the person enters credentials on the page it links to, never in the conversation. ${ENABLE('connections', 'add_connection')}`,
        '5. If templates should run there: deploy_template {template, accounts: [the new account]} as a dry run, then with plan_hash once approved.',
        '6. check_health to confirm, then switch_account {account: "home"}.',
      ].join('\n'),
  },
  {
    name: 'audit_switches',
    title: 'Audit account switches',
    description: 'Reviews who entered which customer account, when and why, and the calls that were denied.',
    arguments: [{ name: 'since', description: 'From when, ISO 8601 (default: the last 7 days).', required: false }],
    text: (a) =>
      [
        `Review account switches${a.since ? ` since ${q(a.since)}` : ' over the last 7 days'}. ${ENABLE('audit', 'list_switches')}`,
        `1. list_switches {scope: "tenant", since: ${a.since ? q(a.since) : '<7 days ago, ISO 8601>'}}: who entered which account, when, until when, why, and how many calls each made. Without the admin permission, pass account instead of scope, once per account you administer.`,
        `2. audit_log {scope: "tenant", outcome: "denied"${a.since ? `, since: ${q(a.since)}` : ''}}: calls refused, and by whom (per account without the admin permission).`,
        '3. Summarize per person; flag switches without a clear reason, unusually long ones, many calls, and repeated denials. Change nothing: if a switch still active should end, say so and let the person decide on end_switch.',
      ].join('\n'),
  },
];

const byName = new Map(PROMPTS.map((p) => [p.name, p]));

export function promptListing() {
  return PROMPTS.map((p) => ({
    name: p.name,
    title: p.title,
    description: p.description,
    arguments: p.arguments.map(({ name, description, required }) => ({ name, description, required })),
  }));
}

/** Said to a read-only session, whose changing tools are refused: the model reports instead of trying them. */
const READ_ONLY_NOTE = 'This session is read-only: tools that change things are refused. Report what you find and the fix you would make, and call none of them.';

export function renderPrompt(name: string, args: Record<string, string> | undefined, session: { readOnly: boolean } = { readOnly: false }) {
  const p = byName.get(name);
  if (!p) throw new UserError(`Unknown prompt '${name.slice(0, 100)}'; prompts/list shows the prompts.`);
  const given = args ?? {};
  for (const a of p.arguments) {
    const v = given[a.name];
    if (a.required && (v === undefined || v.trim() === '')) throw new UserError(`The prompt ${p.name} needs the argument '${a.name}'.`);
    if (v !== undefined && v.length > 200) throw new UserError(`The argument '${a.name}' is longer than 200 characters.`);
  }
  const unknown = Object.keys(given).filter((k) => !p.arguments.some((a) => a.name === k));
  if (unknown.length) throw new UserError(`The prompt ${p.name} takes no argument '${unknown[0]!.slice(0, 40)}'.`);
  const text = session.readOnly ? `${p.text(given)}\n${READ_ONLY_NOTE}` : p.text(given);
  return { description: p.description, messages: [{ role: 'user' as const, content: { type: 'text' as const, text } }] };
}

const MAX_VALUES = 20;

/** Completion values for a prompt argument: only names the caller may see. */
export async function completePromptArgument(
  core: Core,
  caller: Caller,
  prompt: string,
  argument: { name: string; value: string },
  context: Record<string, string> | undefined,
): Promise<string[]> {
  const kind = byName.get(prompt)?.arguments.find((a) => a.name === argument.name)?.complete;
  const typed = argument.value.slice(0, 100);
  if (kind === 'account') {
    const all = hasPermission(caller.user, 'switch_account');
    const page = await listAccounts(core, { visibleTo: all ? null : caller.user.id, query: typed || undefined, limit: MAX_VALUES });
    return page.accounts.filter((a) => a.kind !== 'templates').map((a) => a.slug);
  }
  if (kind === 'automation') {
    const account = await readableAccount(core, caller, context?.account);
    if (!account) return [];
    const page = await listAutomations(core, account, { query: typed || undefined, limit: MAX_VALUES });
    return page.items.map((i) => i.row.name);
  }
  if (kind === 'connection') {
    const account = await readableAccount(core, caller, context?.account);
    if (!account) return [];
    // the account's own connections, as the connection tools name them (app/name)
    const page = await listConnections(core, account, { query: typed || undefined, includeShared: false, limit: MAX_VALUES });
    return page.items.map((i) => `${i.row.app}/${i.row.name}`);
  }
  if (kind === 'template') {
    const account = await templatesAccount(core);
    if (!(await grantIn(core, caller, account))) return [];
    const page = await listTemplates(core, account, { query: typed || undefined, limit: MAX_VALUES });
    return page.items.map((t) => t.template.name);
  }
  return [];
}

/**
 * The account named in a completion's context, when the caller may read it (as the list tools:
 * a viewer role, and a suspended account is read by its admins only); null otherwise, with
 * nothing said about why.
 */
async function readableAccount(core: Core, caller: Caller, key: string | undefined): Promise<Account | null> {
  if (!key) return null;
  try {
    const { account } = await resolveAccountFor(core, caller, key);
    const grant = await grantIn(core, caller, account);
    return !grant || suspensionDenial(account, grant, false) ? null : account;
  } catch {
    return null;
  }
}
