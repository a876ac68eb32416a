import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Core } from '../core/core.js';
import { getApp, validateCredentials, type App } from '../core/apps.js';
import { finishHumanRequest, openHumanRequest, submitCredentials, type HumanRequest } from '../core/human-requests.js';
import { reverifyPassword } from '../core/reverify.js';
import { openCredentials, type ConnectionRow } from '../core/connections.js';
import { writeAudit } from '../core/audit.js';
import { findUser } from '../core/users.js';
import { AccessDenied, UserError } from '../core/errors.js';
import { connections } from '../db/schema/index.js';
import { getAccountById } from '../core/accounts.js';
import { atLeast, grantIn } from '../core/access.js';
import { and, eq } from 'drizzle-orm';
import { log, errorFields } from '../log.js';
import { readBody } from './body.js';

/**
 * The pages a person opens from a URL-mode elicitation link (src/mcp/human.ts):
 *
 *   GET/POST /connect/<token>   a form for an app's credentials (adding or reconnecting)
 *   GET/POST /verify/<token>    a password prompt; on success, the decrypted credentials
 *
 * Server-rendered HTML without scripts, with a strict Content-Security-Policy, no caching and no
 * referrer to other sites. A link works once and for a few minutes; an unknown, used and expired link all get
 * the same answer. Every outcome is audited under the requesting user.
 */

const MAX_FORM = 64 * 1024;
const HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  // the link's token is in the URL: no Referer leaves the server. Not 'no-referrer', under which a
  // browser sends `Origin: null` with the form's POST, which the Origin check must refuse
  'referrer-policy': 'same-origin',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
};

const esc = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

function page(res: ServerResponse, status: number, title: string, body: string): void {
  res.writeHead(status, HEADERS);
  res.end(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>${esc(title)} · Switchboard</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1d2330}
h1{font-size:1.35rem}label{display:block;margin:.9rem 0 .2rem;font-weight:600}
input{width:100%;box-sizing:border-box;padding:.5rem;font:inherit;border:1px solid #9aa3b5;border-radius:4px}
button{margin-top:1.2rem;padding:.55rem 1.2rem;font:inherit;background:#2747d8;color:#fff;border:0;border-radius:4px;cursor:pointer}
.error{background:#fdecec;border:1px solid #e0a3a3;padding:.6rem .8rem;border-radius:4px}
.note{color:#596277;font-size:.9rem}table{border-collapse:collapse;width:100%}td{border-bottom:1px solid #e3e6ee;padding:.4rem;word-break:break-all}
code{font-family:ui-monospace,monospace}
</style></head><body>${body}</body></html>`);
}

const invalid = (res: ServerResponse) =>
  page(res, 404, 'Link not valid', '<h1>This link is no longer valid</h1><p>It was used already, has expired, or never existed. Ask the assistant for a new one.</p>');

async function readForm(req: IncomingMessage): Promise<URLSearchParams | null> {
  const raw = await readBody(req, MAX_FORM);
  return raw === null ? null : new URLSearchParams(raw);
}

async function audit(core: Core, hr: HumanRequest, tool: string, outcome: 'ok' | 'denied' | 'error', message: string): Promise<void> {
  const user = await findUser(core, hr.userId);
  await writeAudit(core, {
    actorUserId: hr.userId,
    actorEmail: user?.email ?? null,
    homeAccountId: user?.homeAccountId ?? null,
    accountId: hr.accountId,
    targetAccountId: null,
    switchId: null,
    sessionId: null,
    tool,
    arguments: { app: hr.subject.app, connection: hr.subject.connectionName, request_id: hr.id },
    outcome,
    message,
    durationMs: 0,
  });
}

/**
 * Handles every path under /connect and /verify, and answers every one: a path that is not
 * `/<kind>/<token>` reads like an unknown link (a request left unanswered would hold its socket).
 */
export async function handlePage(core: Core, req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'POST') {
    res.writeHead(405, { allow: 'GET, POST' }).end();
    return;
  }
  const m = /^\/(connect|verify)\/([^/]+)$/.exec(path);
  if (!m) return invalid(res);
  const kind = m[1] === 'connect' ? 'enter_credentials' : 'view_credentials';
  const hr = await openHumanRequest(core, m[2]!, kind);
  if (!hr) return invalid(res);
  try {
    if (kind === 'enter_credentials') await connectPage(core, req, res, hr);
    else await verifyPage(core, req, res, hr);
  } catch (err) {
    log.error('page failed', { page: m[1], ...errorFields(err) });
    if (!res.headersSent) page(res, 500, 'Something went wrong', '<h1>Something went wrong</h1><p>Nothing was saved. Ask the assistant for a new link.</p>');
  }
}

function credentialForm(app: App, hr: HumanRequest, accountName: string, kind: string | null, error: string | null, kept: Record<string, string>): string {
  // already HTML: every piece escaped here (a custom app's name is free text an admin typed)
  const title = `${esc(app.name)} credentials${hr.subject.connectionName ? ` for “${esc(hr.subject.connectionName)}”` : ''}`;
  const auth = kind ? app.auth.find((a) => a.kind === kind) : app.auth.length === 1 ? app.auth[0] : undefined;
  if (!auth) {
    const choices = app.auth.map((a) => `<li><a href="?kind=${esc(a.kind)}">${esc(a.kind.replace('_', ' '))}</a></li>`).join('');
    return `<h1>${title}</h1><p class="note">Account: ${esc(accountName)}</p><p>How does this ${esc(app.name)} connection authenticate?</p><ul>${choices}</ul>`;
  }
  const fields = auth.fields
    .map((f) => {
      const value = !f.secret && Object.hasOwn(kept, f.name) ? ` value="${esc(kept[f.name]!)}"` : '';
      const type = f.secret ? 'password' : f.name === 'base_url' ? 'url' : 'text';
      return `<label for="f_${esc(f.name)}">${esc(f.label)}</label><input id="f_${esc(f.name)}" name="${esc(f.name)}" type="${type}" autocomplete="off"${f.optional ? '' : ' required'}${value}>`;
    })
    .join('');
  return (
    `<h1>${title}</h1><p class="note">Account: ${esc(accountName)}</p>` +
    (error ? `<p class="error" role="alert">${esc(error)}</p>` : '') +
    `<form method="post" autocomplete="off"><input type="hidden" name="auth_kind" value="${esc(auth.kind)}">${fields}` +
    `<button type="submit">Save credentials</button></form>` +
    '<p class="note">The values go straight to Switchboard, encrypted at rest; the assistant only sees masked values.</p>'
  );
}

async function connectPage(core: Core, req: IncomingMessage, res: ServerResponse, hr: HumanRequest): Promise<void> {
  const app = await getApp(core, hr.subject.app);
  const accountName = (await getAccountById(core, hr.accountId))?.name ?? '';
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (req.method === 'GET') return page(res, 200, `${app.name} credentials`, credentialForm(app, hr, accountName, url.searchParams.get('kind'), null, {}));
  const form = await readForm(req);
  if (!form) return page(res, 413, 'Too large', '<h1>The form was too large</h1>');
  const input: Record<string, string> = {};
  for (const [k, v] of form) if (v !== '') input[k] = v;
  try {
    const { authKind, values } = validateCredentials(app, input);
    if (!(await submitCredentials(core, hr, { auth_kind: authKind, ...values }))) return invalid(res);
    await audit(core, hr, 'page:enter_credentials', 'ok', 'credentials entered on the page');
    page(res, 200, 'Saved', `<h1>Credentials received</h1><p>Switchboard is saving the ${esc(app.name)} connection. You can close this page and go back to the assistant.</p>`);
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    const kept = Object.fromEntries(Object.entries(input).filter(([k]) => k !== 'auth_kind'));
    page(res, 400, `${app.name} credentials`, credentialForm(app, hr, accountName, input.auth_kind ?? null, err.message, kept));
  }
}

function passwordForm(hr: HumanRequest, error: string | null): string {
  return (
    `<h1>View ${esc(hr.subject.app)}/${esc(hr.subject.connectionName ?? '')}</h1>` +
    (error ? `<p class="error" role="alert">${esc(error)}</p>` : '') +
    '<p>Confirm your Switchboard password to see the decrypted credentials. This is recorded in the audit log.</p>' +
    '<form method="post"><label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>' +
    '<button type="submit">Show credentials</button></form>'
  );
}

async function verifyPage(core: Core, req: IncomingMessage, res: ServerResponse, hr: HumanRequest): Promise<void> {
  if (req.method === 'GET') return page(res, 200, 'Verify your password', passwordForm(hr, null));
  const form = await readForm(req);
  if (!form) return page(res, 413, 'Too large', '<h1>The form was too large</h1>');
  try {
    await reverifyPassword(core, hr.userId, form.get('password') ?? '');
  } catch (err) {
    if (!(err instanceof AccessDenied || err instanceof UserError)) throw err;
    await audit(core, hr, 'page:view_connection_info', err instanceof AccessDenied ? 'denied' : 'error', err.message);
    return page(res, 403, 'Verify your password', passwordForm(hr, err.message.replace(/^Access denied: /, '')));
  }
  // the link outlives the call's own checks: the user must still be active and an admin of the account
  const user = await findUser(core, hr.userId);
  const account = await getAccountById(core, hr.accountId);
  const grant = user && user.status === 'active' && account ? await grantIn(core, { user, tokenId: '' }, account) : null;
  if (!grant || !atLeast(grant.role, 'admin')) {
    await finishHumanRequest(core, hr.id, 'cancelled');
    await audit(core, hr, 'page:view_connection_info', 'denied', 'the user may no longer view credentials in this account');
    return page(res, 403, 'Not allowed', '<h1>You may no longer view these credentials</h1><p>Your access to this account changed since the link was made.</p>');
  }
  const [row] = await core.db
    .select()
    .from(connections)
    .where(and(eq(connections.id, hr.subject.connectionId ?? ''), eq(connections.accountId, hr.accountId), eq(connections.tenantId, core.tenantId)));
  if (!row || !(await finishHumanRequest(core, hr.id, 'done'))) return invalid(res);
  const creds = await openCredentials(core, row as ConnectionRow);
  await audit(core, hr, 'page:view_connection_info', 'ok', 'decrypted credentials shown on the page after password re-verification');
  const rows = Object.entries(creds.values)
    .map(([k, v]) => `<tr><td>${esc(k)}</td><td><code>${esc(v)}</code></td></tr>`)
    .join('');
  page(
    res,
    200,
    'Connection info',
    `<h1>${esc(row.app)}/${esc(row.name)}</h1><p class="note">Auth: ${esc(creds.auth_kind)}. Shown once; close this page when done.</p>` +
      `<table><tbody>${rows}</tbody></table>`,
  );
}
