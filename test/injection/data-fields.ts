/**
 * Where each tool may echo stored text a customer, a sender or an upstream controls: its data
 * fields, as paths into structuredContent (`[]` any element, `*` one key, `.**` anything below).
 * `exact`: the stored text byte for byte. `embeds`: inside a text the platform builds or cuts on
 * purpose — an engine error message, an upstream excerpt (first 500 characters), a routing value
 * (trimmed, first 200), a recorded step body (first 8 KiB), the audit log's redacted arguments,
 * the `[credentials of app/name]` marker that stands for a credential header in a step's input,
 * a delivery's recorded reason (a parser's message quoting the body it could not read).
 *
 * Everything else — the text content, summaries, diagnoses' cause and next_action, health
 * reasons, plan targets' reason and needs, deployment messages, audit entries' messages — is
 * written by the tool, and no planted text may reach it.
 */

type Fields = Record<string, 'exact' | 'embeds'>;

const account = (at: string): Fields => ({ [`${at}.name`]: 'exact', [`${at}.routing_key`]: 'exact' });
const connection = (at: string): Fields => ({ [`${at}.name`]: 'exact', [`${at}.notes`]: 'exact', [`${at}.owner.name`]: 'exact' });
const automation = (at: string): Fields => ({ [`${at}.name`]: 'exact', [`${at}.description`]: 'exact' });
const template = (at: string): Fields => ({
  [`${at}.name`]: 'exact',
  [`${at}.description`]: 'exact',
  [`${at}.variables[].default`]: 'exact',
  [`${at}.variables[].description`]: 'exact',
});
const user = (at: string): Fields => ({ [`${at}.name`]: 'exact' });
/** one delivery as debug_webhook and get_delivery show it */
const delivery = (at: string): Fields => ({
  [`${at}.automation.name`]: 'exact',
  [`${at}.reason`]: 'embeds',
  [`${at}.routing.value`]: 'embeds',
  [`${at}.execution.error.message`]: 'embeds',
  [`${at}.upstream.body_excerpt`]: 'embeds',
  [`${at}.diagnosis.subject.connection.name`]: 'exact',
  [`${at}.diagnosis.data.routing_value`]: 'embeds',
  [`${at}.diagnosis.data.routing_keys[]`]: 'exact',
  [`${at}.diagnosis.data.upstream_body_excerpt`]: 'embeds',
  [`${at}.diagnosis.data.expression`]: 'exact',
});
/** one run with its step attempts */
const run = (execution: string, steps: string): Fields => ({
  [`${execution}.automation.name`]: 'exact',
  [`${execution}.error.message`]: 'embeds',
  [`${steps}[].error.message`]: 'embeds',
  [`${steps}[].input.body.**`]: 'exact',
  [`${steps}[].input.headers.authorization`]: 'embeds',
  [`${steps}[].input.headers.*`]: 'exact',
  [`${steps}[].input.query.*`]: 'exact',
  [`${steps}[].output`]: 'exact',
  [`${steps}[].output.body`]: 'embeds',
  [`${steps}[].output.**`]: 'exact',
});

export const DATA_FIELDS: Record<string, Fields> = {
  whoami: { ...user('user'), 'switched.reason': 'exact', ...account('home_account'), ...account('acting_account') },
  switch_account: { 'switched.reason': 'exact', ...account('home_account'), ...account('acting_account') },
  list_accounts: account('accounts[]'),
  get_account: {
    ...account('account'),
    'account.suspended_reason': 'exact',
    ...account('account.parent'),
    ...account('account.children[]'),
  },
  create_account: account('account'),
  link_account: { ...account('account'), ...account('parent') },
  unlink_account: account('account'),
  set_account_status: account('account'),
  create_user: { ...user('user'), ...account('user.home_account') },
  set_user_permissions: { ...user('user'), ...account('user.home_account') },
  list_switches: { 'switches[].reason': 'exact', 'switches[].ended_by.reason': 'exact', ...account('switches[].account'), ...account('switches[].home_account') },
  end_switch: account('account'),
  audit_log: { 'entries[].arguments.**': 'embeds' },
  list_apps: { 'apps[].name': 'exact', 'apps[].description': 'exact', 'apps[].auth[].fields[].label': 'exact' },
  create_app: { 'app.name': 'exact', 'app.description': 'exact', 'app.auth[].fields[].label': 'exact' },
  list_connections: { ...connection('own[]'), ...connection('shared_from_parent[]'), ...connection('shared_from_system[]') },
  add_connection: connection('connection'),
  update_connection: connection('connection'),
  share_connection: connection('connection'),
  set_connection_rate_limit: connection('connection'),
  reconnect_connection: connection('connection'),
  view_connection_info: connection('connection'),
  disconnect_connection: { ...connection('connection'), 'automations_to_pause[].name': 'exact', ...account('automations_to_pause[].account') },
  list_connection_usage: { ...connection('connection'), 'automations[].name': 'exact', ...account('automations[].account') },
  list_automations: automation('automations[]'),
  create_automation: automation('automation'),
  update_automation: automation('automation'),
  set_automation_enabled: automation('automation'),
  rotate_webhook_url: automation('automation'),
  delete_automation: { 'deleted.name': 'exact' },
  get_automation: {
    ...automation('automation'),
    'definition.steps[].**': 'exact',
    'shown_revision.note': 'exact',
    'revisions[].note': 'exact',
    'connections[].name': 'exact',
    'connections[].owner.name': 'exact',
  },
  run_automation: run('execution', 'steps'),
  get_execution: run('execution', 'steps'),
  list_executions: { 'executions[].automation.name': 'exact', 'executions[].error.message': 'embeds' },
  debug_webhook: delivery('deliveries[]'),
  get_delivery: {
    ...delivery('delivery'),
    ...run('executions[].execution', 'executions[].steps'),
    'request.body': 'exact',
    'request.body.**': 'exact',
    'request.headers.*': 'exact',
    'request.query.*': 'exact',
  },
  check_health: {
    'accounts[].account.name': 'exact',
    'accounts[].reasons[].automations[].name': 'exact',
    'accounts[].figures.failing_automations[].name': 'exact',
    'accounts[].figures.paused_automations[].name': 'exact',
    'accounts[].figures.silent_automations[].name': 'exact',
    'accounts[].figures.connections[].name': 'exact',
  },
  list_failure_groups: {
    'groups[].affected_accounts.items[].name': 'exact',
    'groups[].automations.items[].name': 'exact',
    'groups[].data.last_message': 'embeds',
  },
  replay_webhook: { 'plan.revisions[].automation.name': 'exact', ...account('plan.accounts[].account') },
  account_data: { 'entries[].key': 'exact', 'entries[].value': 'exact', 'entries[].value.**': 'exact' },
  list_templates: template('templates[]'),
  get_template: { ...template('template'), 'variables[].default': 'exact', 'variables[].description': 'exact', 'version.note': 'exact', 'versions[].note': 'exact' },
  create_template: { ...template('template'), 'version.note': 'exact' },
  update_template: { ...template('template'), 'version.note': 'exact' },
  deploy_template: { 'plan.template.name': 'exact', ...account('plan.targets[].account') },
  rollback_template: { 'plan.template.name': 'exact', ...account('plan.targets[].account') },
  get_deployment: account('accounts[].account'),
  template_status: account('copies[].account'),
  set_template_values: { 'values.*': 'exact' },
};
