import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { mkdirSync } from 'node:fs';
import { getEventListeners } from 'node:events';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { and, eq, sql } from 'drizzle-orm';
import { chromium, type Browser, type BrowserContext, type Page, type Response } from 'playwright-core';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitationCompleteNotificationSchema, ElicitRequestSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { buildWorld, data, text, type World } from './helpers/world.js';
import { testDbKind } from './helpers/db.js';
import { startHttp, type HttpHandle } from '../src/http/server.js';
import { createUser } from '../src/core/users.js';
import { createHumanRequest, waitForHuman } from '../src/core/human-requests.js';
import { createApp } from '../src/core/apps.js';
import { addConnection } from '../src/core/connections.js';
import { auditLog, connections, humanRequests, memberships } from '../src/db/schema/index.js';

/**
 * The credential pages end to end: a real MCP client over Streamable HTTP that supports URL-mode
 * elicitation, and a real headless Chromium (playwright-core, Debian's /usr/bin/chromium) playing
 * the person who opens the link. Every credential here is made up per run; none is a real key.
 */

/**
 * The browser: CHROMIUM_PATH, else /usr/bin/chromium (found by test/global-setup.ts the way `npm
 * test`'s pretest step scripts/ensure-browser.mjs looks for it, which installs it when it can).
 * Without one these tests are skipped, saying why, or fail under SWITCHBOARD_REQUIRE_BROWSER=1
 * (.ci/run: CI must run them).
 */
const testBrowser = inject('browser');
const noBrowser = testBrowser.path ? null : (testBrowser.reason ?? 'no browser');
if (noBrowser && process.env.SWITCHBOARD_REQUIRE_BROWSER === '1') {
  it('has a browser to run the page tests in (SWITCHBOARD_REQUIRE_BROWSER=1)', () => {
    expect.fail(`${noBrowser}: install Debian's chromium (npm test does, as root) or set CHROMIUM_PATH`);
  });
} else if (noBrowser) {
  console.warn(`the page tests are skipped: ${noBrowser} (see README, "Test it")`);
  it.skip(`(skipped: ${noBrowser})`, () => {});
}
const describeInBrowser = describe.skipIf(noBrowser !== null);

let w: World;
let http: HttpHandle;
let browser: Browser;
let context: BrowserContext;
/** where the screenshots go: a temp dir, never the repo */
const SHOTS = join(tmpdir(), 'switchboard-pages-screens');

beforeAll(async () => {
  if (noBrowser) return; // every test below is skipped (or the one above fails): nothing to set up
  w = await buildWorld();
  http = await startHttp({ core: w.core, database: w.database, port: 0, host: '127.0.0.1' });
  browser = await chromium.launch({
    executablePath: testBrowser.path!,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  mkdirSync(SHOTS, { recursive: true });
});
afterAll(async () => {
  await browser?.close();
  await http?.close();
  await w?.close();
});
afterEach(async () => {
  await context?.close();
});
/** A fresh browser context (no cookies, no history) for each test. */
async function newPage(): Promise<Page> {
  context = await browser.newContext();
  return context.newPage();
}

interface Elicited {
  mode: string;
  url: string;
  elicitationId: string;
  message: string;
}

interface Person {
  /** the answer to opening the link (default accept) */
  answer?: 'accept' | 'decline' | 'cancel';
  /** what the person does on the page; runs while the tool call waits */
  drive?: (page: Page, e: Elicited, callSettled: () => boolean) => Promise<void>;
}

/** A client that supports URL-mode elicitation, for the user of `token`. */
async function urlClient(token: string, person: () => Person) {
  const transport = new StreamableHTTPClientTransport(new URL(`${http.url}?toolsets=all`), { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
  const client = new Client({ name: 'switchboard-pages-test', version: '1.0.0' }, { capabilities: { elicitation: { url: {} } } });
  const elicited: Elicited[] = [];
  const completed: string[] = [];
  let driving: Promise<void> | null = null;
  let driveFailed: (err: unknown) => void = () => {};
  let settled = false;

  client.setRequestHandler(ElicitRequestSchema, async (req) => {
    const p = req.params as Elicited;
    elicited.push({ mode: p.mode, url: p.url, elicitationId: p.elicitationId, message: p.message });
    const who = person();
    if (who.drive) {
      // the browser works on its own; the answer to the elicitation goes back at once
      const drive = who.drive;
      driving = newPage().then((page) => drive(page, p, () => settled));
      driving.catch((err: unknown) => driveFailed(err));
    }
    return { action: who.answer ?? 'accept' };
  });
  client.setNotificationHandler(ElicitationCompleteNotificationSchema, (n) => {
    completed.push(n.params.elicitationId);
  });
  await client.connect(transport);

  return {
    client,
    elicited,
    completed,
    /** Call a tool; fails fast when the browser part fails instead of waiting for the link to expire. */
    async call(name: string, args: Record<string, unknown> = {}): Promise<CallToolResult> {
      settled = false;
      driving = null;
      const failed = new Promise<never>((_, reject) => {
        driveFailed = reject;
      });
      const r = (await Promise.race([client.callTool({ name, arguments: args }), failed])) as CallToolResult;
      settled = true;
      if (driving) await driving;
      return r;
    },
    close: () => client.close(),
  };
}

/** Submit the page's form by clicking its button, as a person would; the response to the POST. */
async function submit(page: Page): Promise<Response> {
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && r.request().frame() === page.mainFrame()),
    page.waitForEvent('load'),
    page.click('button[type=submit]'),
  ]);
  return resp;
}

const bodyText = (page: Page) => page.innerText('body');
const hex = (n: number) => randomBytes(n).toString('hex');
const LINK = /^http:\/\/127\.0\.0\.1:\d+\/(connect|verify)\/[A-Za-z0-9_-]{43}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

type Conn = { id: string; app: string; name: string; status: string; source: string };
type Added = { connection: Conn; credentials: Record<string, string>; entered_via: string };

async function humanRequest(id: string): Promise<{ status: string; sealed: string | null }> {
  const [row] = await w.database.db.select({ status: humanRequests.status, sealed: humanRequests.sealed }).from(humanRequests).where(eq(humanRequests.id, id));
  return row!;
}

/** the stripe link of the first test, opened again by the second */
let stripeLink: string;

describeInBrowser('the credential page (/connect/…)', () => {
  it('takes a Stripe key on the page; the model, the audit log and the tables never see it', async () => {
    const KEY = `sk_live_${hex(12)}4242`;
    const c = await urlClient(w.tokens.boringAdmin, () => ({
      async drive(page, e) {
        const resp = await page.goto(e.url);
        expect(resp!.status()).toBe(200);
        expect(await page.innerText('h1')).toBe('Stripe credentials for “Default”');
        const input = page.locator('input[name=secret_key]');
        expect(await input.getAttribute('type')).toBe('password');
        expect(await page.locator('label[for=f_secret_key]').innerText()).toBe('Secret key (sk_live_… or sk_test_…)');
        await input.fill(KEY);
        await page.screenshot({ path: join(SHOTS, `stripe-connect-form-${testDbKind()}.png`), fullPage: true });
        const done = await submit(page);
        expect(done.status()).toBe(200);
        expect(await page.innerText('h1')).toBe('Credentials received');
        expect(await bodyText(page)).toMatch(/saving the Stripe connection/);
        expect(await page.content()).not.toContain(KEY);
      },
    }));
    const r = await c.call('add_connection', { app: 'stripe' });
    const got = data<Added>(r);
    expect(got.entered_via).toBe('page');
    expect(got.credentials).toEqual({ secret_key: 'sk_live_…4242' });
    expect(got.connection).toMatchObject({ app: 'stripe', name: 'Default', status: 'active', source: 'own' });
    expect(text(r)).toBe(`Connected boring-co to stripe: the stripe connection ${got.connection.id}.`);
    expect(JSON.stringify(r)).not.toContain(KEY);

    // exactly one URL-mode elicitation, for a one-time /connect/ link, then its completion
    expect(c.elicited).toHaveLength(1);
    const e = c.elicited[0]!;
    expect(e.mode).toBe('url');
    expect(e.url).toMatch(LINK);
    expect(new URL(e.url).pathname).toMatch(/^\/connect\//);
    expect(e.elicitationId).toMatch(UUID);
    expect(e.message).toBe("Enter the Stripe credentials for the connection 'Default' of Boring Co.");
    expect(JSON.stringify(c.elicited)).not.toContain(KEY);
    await expect.poll(() => c.completed).toEqual([e.elicitationId]);
    stripeLink = e.url;

    // the request row gave up its sealed copy when the call took it
    expect(await humanRequest(e.elicitationId)).toEqual({ status: 'done', sealed: null });

    const audit = await w.database.db.select().from(auditLog);
    expect(audit.find((a) => a.tool === 'add_connection' && a.outcome === 'ok')).toBeDefined();
    const pageEntry = audit.find((a) => a.tool === 'page:enter_credentials');
    expect(pageEntry).toMatchObject({ outcome: 'ok', actorUserId: w.userIds.boringAdmin, accountId: w.accounts.boring.id });
    expect(pageEntry!.arguments).toEqual({ app: 'stripe', connection: 'Default', request_id: e.elicitationId });
    expect(JSON.stringify(audit)).not.toContain(KEY);

    for (const table of ['connections', 'human_requests']) {
      const dump = JSON.stringify(await w.database.db.execute(sql.raw(`select * from ${table}`)));
      expect(dump, table).not.toContain(KEY);
      expect(dump, table).not.toContain(KEY.slice(8, 28)); // no long piece of it either
    }
    await c.close();
  });

  it('works once: the used link, any other token, and the other page kind all say the link is not valid', async () => {
    expect(stripeLink).toMatch(LINK);
    const page = await newPage();
    const again = await page.goto(stripeLink);
    expect(again!.status()).toBe(404);
    expect(await page.innerText('h1')).toBe('This link is no longer valid');
    expect(await page.locator('form').count()).toBe(0);

    // posting to it (a replayed form) changes nothing
    const post = await fetch(stripeLink, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'secret_key=sk_live_replayed0000000000' });
    expect(post.status).toBe(404);
    expect(await post.text()).toContain('This link is no longer valid');

    const base = new URL(stripeLink);
    for (const path of [`/connect/${'A'.repeat(43)}`, '/connect/short', base.pathname.replace('/connect/', '/verify/')]) {
      const r = await page.goto(new URL(path, base).toString());
      expect(r!.status(), path).toBe(404);
      expect(await page.innerText('h1'), path).toBe('This link is no longer valid');
    }
  });

  it('names the missing field when the form comes back incomplete, without echoing the secret, then accepts the fix', async () => {
    const SECRET = `mb-key-${hex(12)}7777`;
    const c = await urlClient(w.tokens.boringAdmin, () => ({
      async drive(page, e, callSettled) {
        await page.goto(e.url);
        expect(await page.innerText('h1')).toBe('Mindbody credentials for “Default”');
        expect(await page.locator('form label').allInnerTexts()).toEqual(['API key', 'Site id']);
        expect(await page.getAttribute('#f_api_key', 'type')).toBe('password');
        expect(await page.getAttribute('#f_site_id', 'type')).toBe('text');
        await page.fill('#f_api_key', SECRET);
        // the browser would refuse to send an empty required field: take that away to reach the server's check
        await page.$eval('#f_site_id', (el) => el.removeAttribute('required'));
        const bad = await submit(page);
        expect(bad.status()).toBe(400);
        expect(await page.innerText('[role=alert]')).toBe("The credentials for Mindbody miss the field 'site_id' (Site id).");
        expect(await page.content()).not.toContain(SECRET);
        expect(await page.inputValue('#f_api_key')).toBe('');
        expect(await page.getAttribute('#f_site_id', 'required')).toBe(''); // the form is whole again
        expect(callSettled()).toBe(false);

        await page.fill('#f_api_key', SECRET);
        await page.fill('#f_site_id', '-99');
        const ok = await submit(page);
        expect(ok.status()).toBe(200);
        expect(await page.innerText('h1')).toBe('Credentials received');
      },
    }));
    const r = await c.call('add_connection', { app: 'mindbody' });
    const got = data<Added>(r);
    expect(got).toMatchObject({ entered_via: 'page', credentials: { api_key: '…7777', site_id: '-99' } });
    expect(JSON.stringify(r)).not.toContain(SECRET);
    await expect.poll(() => c.completed).toEqual([c.elicited[0]!.elicitationId]);
    await c.close();
  });

  it('for an app with several auth kinds, asks which first, then shows that kind’s fields', async () => {
    const KEY = `key-${hex(12)}MNOP`;
    const c = await urlClient(w.tokens.boringAdmin, () => ({
      async drive(page, e) {
        await page.goto(e.url);
        expect(await bodyText(page)).toContain('How does this HTTP API connection authenticate?');
        expect(await page.locator('form').count()).toBe(0);
        const links = page.locator('li a');
        expect(await links.allInnerTexts()).toEqual(['bearer', 'api key', 'basic']);
        expect(await links.evaluateAll((as) => as.map((a) => a.getAttribute('href')))).toEqual(['?kind=bearer', '?kind=api_key', '?kind=basic']);

        await Promise.all([page.waitForEvent('load'), page.click('text=api key')]);
        expect(new URL(page.url()).search).toBe('?kind=api_key');
        expect(await page.inputValue('input[name=auth_kind]')).toBe('api_key');
        const types = await page.locator('form input:not([type=hidden])').evaluateAll((is) => is.map((i) => `${i.getAttribute('name')}:${i.getAttribute('type')}`));
        expect(types).toEqual(['base_url:url', 'header_name:text', 'api_key:password']);
        await page.fill('#f_base_url', 'https://api.example.test');
        await page.fill('#f_header_name', 'X-Key');
        await page.fill('#f_api_key', KEY);
        const done = await submit(page);
        expect(done.status()).toBe(200);
        expect(await page.innerText('h1')).toBe('Credentials received');
      },
    }));
    const r = await c.call('add_connection', { app: 'http' });
    expect(data<Added>(r)).toMatchObject({
      entered_via: 'page',
      connection: { app: 'http', name: 'Default' },
      credentials: { base_url: 'https://api.example.test', header_name: 'X-Key', api_key: '…MNOP' },
    });
    expect(JSON.stringify(r)).not.toContain(KEY);
    await c.close();
  });

  it('a person who declines (or cancels) the link gets nothing done, and the link dies', async () => {
    for (const [answer, app, said] of [
      ['decline', 'slack', /^The person declined opening the page; nothing was done\.$/],
      ['cancel', 'hubspot', /^The person cancelled opening the page; nothing was done\.$/],
    ] as const) {
      const c = await urlClient(w.tokens.boringAdmin, () => ({ answer }));
      const r = await c.call('add_connection', { app });
      expect(r.isError, answer).toBe(true);
      expect(text(r), answer).toMatch(said);
      expect(c.elicited, answer).toHaveLength(1);
      expect(await humanRequest(c.elicited[0]!.elicitationId)).toMatchObject({ status: 'cancelled' });
      expect((await fetch(c.elicited[0]!.url)).status, answer).toBe(404);
      const list = data<{ own: Conn[] }>(await c.call('list_connections', { query: app }));
      expect(list.own, answer).toEqual([]);
      await c.close();
    }
  });

  it('a client that cancels the call, or ends its session, closes the link', async () => {
    // cancelling the call: the SDK sends notifications/cancelled, which aborts the waiting tool
    const a = await urlClient(w.tokens.boringAdmin, () => ({}));
    const abort = new AbortController();
    const call = a.client.callTool({ name: 'add_connection', arguments: { app: 'mailchimp' } }, undefined, { signal: abort.signal }).then(
      () => 'resolved',
      () => 'rejected',
    );
    await expect.poll(() => a.elicited.length).toBe(1);
    abort.abort();
    expect(await call).toBe('rejected');
    await expect.poll(async () => (await humanRequest(a.elicited[0]!.elicitationId)).status).toBe('cancelled');
    expect((await fetch(a.elicited[0]!.url)).status).toBe(404);
    await a.close();

    // ending the session (HTTP DELETE) aborts what it still has running
    const b = await urlClient(w.tokens.boringAdmin, () => ({}));
    const transport = b.client.transport as StreamableHTTPClientTransport;
    const pending = b.client.callTool({ name: 'add_connection', arguments: { app: 'mailchimp' } }).catch(() => 'rejected');
    await expect.poll(() => b.elicited.length).toBe(1);
    await transport.terminateSession();
    await expect.poll(async () => (await humanRequest(b.elicited[0]!.elicitationId)).status).toBe('cancelled');
    expect((await fetch(b.elicited[0]!.url)).status).toBe(404);
    await b.close();
    await pending;
    expect(await w.database.db.select().from(connections).where(eq(connections.app, 'mailchimp'))).toEqual([]);
  });

  // A custom app's name is free text (create_app): unescaped it could inject markup into the page
  // where people type secrets; the CSP stops scripts, not e.g. <meta http-equiv="refresh">.
  it('escapes a custom app’s name on the credential page', async () => {
    const name = 'Evil <i id="injected">CRM</i>';
    await createApp(w.core, {
      slug: 'evil-crm',
      name,
      auth: [{ kind: 'bearer', fields: [{ name: 'token', label: 'Token', secret: true }] }],
      defaultPerMinute: 30,
      createdBy: w.userIds.admin,
    });
    const req = await createHumanRequest(w.core, {
      accountId: w.accounts.boring.id,
      userId: w.userIds.boringAdmin,
      kind: 'enter_credentials',
      subject: { app: 'evil-crm', authKind: null, connectionName: 'Default', connectionId: null },
    });
    const page = await newPage();
    expect((await page.goto(new URL(`/connect/${req.token}`, http.url).toString()))!.status()).toBe(200);
    expect(await page.locator('#f_token').count()).toBe(1); // the form itself is there
    expect(await page.locator('#injected').count()).toBe(0);
    expect(await page.innerText('h1')).toBe(`${name} credentials for “Default”`);
  });

  it('sends pages with a strict CSP, no caching and no referrer, and the browser enforces the CSP', async () => {
    const req = await createHumanRequest(w.core, {
      accountId: w.accounts.boring.id,
      userId: w.userIds.boringAdmin,
      kind: 'enter_credentials',
      subject: { app: 'slack', authKind: null, connectionName: 'Ops', connectionId: null },
    });
    const base = new URL(http.url);
    const page = await newPage();
    for (const [path, status] of [[`/connect/${req.token}`, 200], [`/connect/${'B'.repeat(43)}`, 404]] as const) {
      const resp = (await page.goto(new URL(path, base).toString()))!;
      expect(resp.status(), path).toBe(status);
      const h = await resp.allHeaders();
      expect(h['content-type'], path).toBe('text/html; charset=utf-8');
      expect(h['cache-control'], path).toBe('no-store');
      expect(h['referrer-policy'], path).toBe('same-origin');
      expect(h['x-content-type-options'], path).toBe('nosniff');
      expect(h['x-frame-options'], path).toBe('DENY');
      const csp = h['content-security-policy']!;
      for (const directive of ["default-src 'none'", "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'"]) expect(csp, path).toContain(directive);
    }
    // the live page in Chromium: no script may run or connect anywhere, not even to its own origin
    await page.goto(new URL(`/connect/${req.token}`, base).toString());
    expect(await page.innerText('h1')).toBe('Slack credentials for “Ops”');
    const fetched = await page.evaluate(() => fetch('/healthz').then(() => 'fetched', () => 'blocked'));
    expect(fetched).toBe('blocked');
    const ran = await page.evaluate(() => {
      const s = document.createElement('script');
      s.textContent = 'document.body.dataset.ran = "yes"';
      document.body.append(s);
      return document.body.dataset.ran ?? 'no';
    });
    expect(ran).toBe('no');
  });
});

describeInBrowser('the password page (/verify/…)', () => {
  const PASSWORD = `pw-${hex(8)}-correct`;
  const SECRET = `sk_test_${hex(12)}9999`;
  let token: string;
  let userId: string;
  beforeAll(async () => {
    const u = await createUser(w.core, { email: 'pages-viewer@acme.test', name: 'Pages Viewer', account: w.accounts.acme, role: 'admin', password: PASSWORD });
    token = u.token;
    userId = u.user.id;
    const c = await urlClient(token, () => ({}));
    data(await c.call('add_connection', { app: 'stripe', credentials: { secret_key: SECRET } }));
    await c.close();
  });

  it('shows the decrypted values on the page after the password, never in the result; a wrong password is refused and audited', async () => {
    const c = await urlClient(token, () => ({
      async drive(page, e, callSettled) {
        const first = await page.goto(e.url);
        expect(first!.status()).toBe(200);
        expect(await page.innerText('h1')).toBe('View stripe/Default');
        expect(await page.getAttribute('#password', 'type')).toBe('password');
        expect(await page.content()).not.toContain(SECRET);

        await page.fill('#password', 'not-the-password');
        const wrong = await submit(page);
        expect(wrong.status()).toBe(403);
        expect(await page.innerText('[role=alert]')).toBe('the password is not correct (4 attempts left in the next 15 minutes).');
        expect(await page.content()).not.toContain(SECRET);
        // still waiting for the person: longer than the call's poll interval, and the link still open
        await new Promise((r) => setTimeout(r, 600));
        expect(callSettled()).toBe(false);
        expect(await humanRequest(e.elicitationId)).toMatchObject({ status: 'pending' });

        await page.fill('#password', PASSWORD);
        const ok = await submit(page);
        expect(ok.status()).toBe(200);
        expect(await page.innerText('h1')).toBe('stripe/Default');
        expect(await bodyText(page)).toContain(SECRET);
        expect(await page.locator('td').allInnerTexts()).toEqual(['secret_key', SECRET]);
        expect(await page.content()).not.toContain(PASSWORD);

        // shown once: reloading the link does not show them again
        const reload = await page.goto(e.url);
        expect(reload!.status()).toBe(404);
        expect(await page.content()).not.toContain(SECRET);
      },
    }));
    const r = await c.call('view_connection_info', { connection: 'stripe' });
    const got = data<{ shown_on: string; decrypted: unknown; credentials: Record<string, string> }>(r);
    expect(got).toMatchObject({ shown_on: 'page', decrypted: null, credentials: { secret_key: 'sk_test_…9999' } });
    expect(text(r)).toMatch(/shown to the person on the page after password re-verification/);
    expect(JSON.stringify(r)).not.toContain(SECRET);

    const e = c.elicited[0]!;
    expect(c.elicited).toHaveLength(1);
    expect(e.url).toMatch(LINK);
    expect(new URL(e.url).pathname).toMatch(/^\/verify\//);
    expect(e.message).toBe('Verify your password to view the credentials of stripe/Default.');
    await expect.poll(() => c.completed).toEqual([e.elicitationId]);

    const entries = await w.database.db.select().from(auditLog).where(sql`${auditLog.tool} = 'page:view_connection_info' and ${auditLog.actorUserId} = ${userId}`);
    expect(entries.map((a) => a.outcome).sort()).toEqual(['denied', 'ok']);
    for (const a of entries) expect(a.arguments).toEqual({ app: 'stripe', connection: 'Default', request_id: e.elicitationId });
    expect(entries.find((a) => a.outcome === 'denied')!.message).toMatch(/the password is not correct/);
    const all = JSON.stringify(await w.database.db.select().from(auditLog));
    expect(all).not.toContain(SECRET);
    expect(all).not.toContain(PASSWORD);
    expect(all).not.toContain('not-the-password');
    await c.close();
  });
});

describeInBrowser('waiting for the person', () => {
  // each poll's sleep listens for the call's abort and must stop listening when it wakes: a
  // 10-minute wait polls ~3000 times
  it('does not pile up abort listeners on the call’s signal while polling', async () => {
    const req = await createHumanRequest(w.core, {
      accountId: w.accounts.boring.id,
      userId: w.userIds.boringAdmin,
      kind: 'enter_credentials',
      subject: { app: 'slack', authKind: null, connectionName: 'Listeners', connectionId: null },
    });
    const abort = new AbortController();
    // the default poll interval (200 ms), so this holds whatever the options argument looks like
    const waiting = waitForHuman(w.core, req.id, abort.signal);
    try {
      await new Promise((r) => setTimeout(r, 700));
      expect(getEventListeners(abort.signal, 'abort').length).toBeLessThanOrEqual(1);
    } finally {
      abort.abort();
      expect(await waiting).toEqual({ status: 'cancelled' });
    }
  });
});

describeInBrowser('access that changes while the page is open', () => {
  it('a user removed from the account meanwhile saves nothing, and a demoted admin sees nothing', async () => {
    const u = await createUser(w.core, { email: `leaver-${hex(3)}@boring.test`, name: 'Leaver', account: w.accounts.boring, role: 'admin', password: 'leaver password 123' });
    const removeFromBoring = () =>
      w.database.db.delete(memberships).where(and(eq(memberships.userId, u.user.id), eq(memberships.accountId, w.accounts.boring.id)));
    const KEY = `sk_live_${hex(12)}0001`;
    const c = await urlClient(u.token, () => ({
      async drive(page, e) {
        await page.goto(e.url);
        await page.locator('input[name=secret_key]').fill(KEY);
        await removeFromBoring(); // while the person types
        expect((await submit(page)).status()).toBe(200);
      },
    }));
    const r = await c.call('add_connection', { account: 'boring-co', app: 'stripe', name: `Leaver ${hex(2)}` });
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/^Access denied/);
    expect(await w.database.db.select().from(connections).where(sql`${connections.name} like 'Leaver %'`)).toEqual([]);
    await c.close();

    // viewing: demoted between the link and the password
    const viewMe = `View ${hex(2)}`;
    await addConnection(w.core, w.accounts.boring, { app: 'stripe', name: viewMe, credentials: { secret_key: `sk_live_${hex(12)}` }, createdBy: null });
    await w.database.db.insert(memberships).values({ userId: u.user.id, accountId: w.accounts.boring.id, role: 'admin' });
    const v = await urlClient(u.token, () => ({
      async drive(page, e) {
        await page.goto(e.url);
        await w.database.db.update(memberships).set({ role: 'viewer' }).where(eq(memberships.userId, u.user.id));
        await page.fill('input[name=password]', 'leaver password 123');
        const resp = await submit(page);
        expect(resp.status()).toBe(403);
        expect(await page.innerText('h1')).toBe('You may no longer view these credentials');
      },
    }));
    const shown = await v.call('view_connection_info', { account: 'boring-co', connection: `stripe/${viewMe}` });
    expect(v.elicited).toHaveLength(1); // the person did reach the page
    expect(shown.isError).toBe(true);
    expect(JSON.stringify(shown)).not.toContain('sk_live_');
    await v.close();
  });
});
