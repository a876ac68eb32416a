import { randomUUID } from 'node:crypto';
import { and, asc, eq, getTableColumns, ilike, inArray, or, sql, type SQL } from 'drizzle-orm';
import { accounts, apps, connections, type AuthKind } from '../db/schema/index.js';
import { withAccount, type Tx } from '../db/scope.js';
import type { Core } from './core.js';
import type { Account } from './accounts.js';
import { BUILTIN_APPS, getApp, listApps, maskCredentials, validateCredentials, type App } from './apps.js';
import { UserError, sqlState, UNIQUE_VIOLATION } from './errors.js';
import { decodeCursor, encodeCursor, isUuid, likeEscape } from './ids.js';

export type ConnectionRow = typeof connections.$inferSelect;
/** Where a connection visible in an account comes from. */
export type ConnectionSource = 'own' | 'parent' | 'system';
export interface VisibleConnection {
  row: ConnectionRow;
  source: ConnectionSource;
}

export const DEFAULT_CONNECTION_NAME = 'Default';
export const MAX_NOTES = 2000;

/** The additional data a connection's credentials are sealed with: a ciphertext opens only on its own row. */
export const connectionAad = (tenantId: string, accountId: string, connectionId: string): string =>
  `switchboard/connection/v1|tenant:${tenantId}|account:${accountId}|connection:${connectionId}`;

/** Credentials as sealed: the auth kind and the app's fields. */
interface CredentialPayload {
  auth_kind: AuthKind;
  values: Record<string, string>;
}

/** Seal validated credentials for one connection row with the tenant's active data key. */
export async function sealCredentials(core: Core, accountId: string, connectionId: string, authKind: AuthKind, values: Record<string, string>) {
  const key = await core.keys.activeKey(core);
  const payload: CredentialPayload = { auth_kind: authKind, values };
  const sealed = await core.keys.sealWith(key, connectionAad(core.tenantId, accountId, connectionId), JSON.stringify(payload));
  return { sealed, dataKeyId: key.id };
}

/** The decrypted credentials of a connection row (DecryptError when the ciphertext is not this row's). */
export async function openCredentials(core: Core, row: Pick<ConnectionRow, 'id' | 'accountId' | 'credentials'>): Promise<CredentialPayload> {
  const text = await core.keys.open(core, row.credentials, connectionAad(core.tenantId, row.accountId, row.id));
  return JSON.parse(text) as CredentialPayload;
}

/** The system setup account of each tenant: made with the tenant, never changed, so cached per process. */
const systemIds = new Map<string, string>();

/** The system setup account's id (its shared connections are visible to every account). */
export async function systemAccountId(core: Core): Promise<string | null> {
  const cached = systemIds.get(core.tenantId);
  if (cached) return cached;
  const [row] = await core.db
    .select({ id: accounts.id })
    .from(accounts)
    .where(and(eq(accounts.tenantId, core.tenantId), eq(accounts.kind, 'system')));
  if (row) systemIds.set(core.tenantId, row.id);
  return row?.id ?? null;
}

/** Accounts whose shared connections `account` may read: its parent and the system setup account (`ids`: both, as present). */
export async function sharingAccounts(core: Core, account: Account): Promise<{ parent: string | null; system: string | null; ids: string[] }> {
  const found = account.kind === 'system' ? null : await systemAccountId(core);
  const system = found === account.parentAccountId ? null : found;
  return { parent: account.parentAccountId, system, ids: [account.parentAccountId, system].filter((x): x is string => x !== null) };
}

function uniqueName(err: unknown, app: string, name: string): never {
  if (sqlState(err) === UNIQUE_VIOLATION) {
    throw new UserError(`This account already has a ${app} connection named '${name}': pick another name.`, 'conflict');
  }
  throw err;
}

function cleanName(name: string): string {
  const n = name.trim();
  if (!n) throw new UserError('The connection name must not be empty.');
  if (n.includes('/')) throw new UserError("A connection name cannot contain '/' (it separates app and name, as in stripe/Default).");
  return n;
}

export interface AddConnectionInput {
  app: string;
  name?: string | undefined;
  credentials: Record<string, unknown>;
  notes?: string | undefined;
  /** the user who added it; null for seeded data */
  createdBy: string | null;
}

/**
 * A new connection in `account`. The first connection of an app is named "Default"; later ones
 * need their own name (unique per account and app). Credentials are validated against the app
 * and stored sealed; the row keeps a masked view for display.
 */
export async function addConnection(core: Core, account: Account, input: AddConnectionInput): Promise<{ row: ConnectionRow; app: App }> {
  const app = await getApp(core, input.app);
  const { authKind, values } = validateCredentials(app, input.credentials);
  const name = await nameFor(core, account, app, input.name);
  const id = randomUUID();
  const { sealed, dataKeyId } = await sealCredentials(core, account.id, id, authKind, values);
  try {
    const [row] = await withAccount(core.db, [account.id], (tx) =>
      tx
        .insert(connections)
        .values({
          id,
          tenantId: core.tenantId,
          accountId: account.id,
          app: app.slug,
          name,
          authKind,
          notes: input.notes?.trim() ?? '',
          credentials: sealed,
          dataKeyId,
          masked: maskCredentials(app, authKind, values),
          createdBy: input.createdBy,
        })
        .returning(),
    );
    return { row: row!, app };
  } catch (err) {
    uniqueName(err, app.slug, name);
  }
}

/** The name a new connection gets: "Default" for an app's first, else the given name (required). */
export async function nameFor(core: Core, account: Account, app: App, given: string | undefined): Promise<string> {
  if (given !== undefined) return cleanName(given);
  const [existing] = await withAccount(core.db, [account.id], (tx) =>
    tx
      .select({ id: connections.id })
      .from(connections)
      .where(and(eq(connections.accountId, account.id), eq(connections.app, app.slug)))
      .limit(1),
  );
  if (existing) {
    throw new UserError(`This account already has a ${app.slug} connection (${existing.id}): give the new one a name.`, 'conflict');
  }
  return DEFAULT_CONNECTION_NAME;
}

/**
 * Resolve what a caller typed as a connection, among those visible in `account` (its own, plus
 * the shared ones of its parent and the system account): a connection id,
 * "app/name", an app slug (its Default, or its only connection), or a name that fits one.
 * A connection of any other account is not found, whatever the caller typed.
 */
export async function resolveConnection(core: Core, account: Account, key: string): Promise<VisibleConnection> {
  const k = key.trim();
  const sharing = await sharingAccounts(core, account);
  const sharedFrom = sharing.ids;
  const visible = sharedFrom.length
    ? or(eq(connections.accountId, account.id), and(eq(connections.shared, true), inArray(connections.accountId, sharedFrom)))!
    : eq(connections.accountId, account.id);
  let match: SQL;
  if (isUuid(k)) match = eq(connections.id, k.toLowerCase());
  else if (k.includes('/')) {
    const [app, ...rest] = k.split('/');
    match = and(eq(connections.app, app!.trim().toLowerCase()), eq(sql`lower(${connections.name})`, rest.join('/').trim().toLowerCase()))!;
  } else {
    match = or(eq(connections.app, k.toLowerCase()), eq(sql`lower(${connections.name})`, k.toLowerCase()))!;
  }
  const rows = await withAccount(
    core.db,
    [account.id],
    (tx) => tx.select().from(connections).where(and(eq(connections.tenantId, core.tenantId), visible, match)).limit(20),
    sharedFrom,
  );
  const rank = (r: ConnectionRow) => (r.accountId === account.id ? 0 : r.accountId === sharing.parent ? 1 : 2);
  let hits = rows.sort((a, b) => rank(a) - rank(b));
  // an app slug means its Default connection when there are several
  if (hits.length > 1 && !isUuid(k) && !k.includes('/')) {
    const own = hits.filter((r) => rank(r) === rank(hits[0]!));
    const defaults = own.filter((r) => r.app === k.toLowerCase() && r.name.toLowerCase() === DEFAULT_CONNECTION_NAME.toLowerCase());
    hits = defaults.length === 1 ? defaults : own;
  }
  if (hits.length === 0) {
    throw new UserError(
      `No connection '${k.slice(0, 100)}' in account '${account.slug}': list_connections shows them.`,
      'not_found',
    );
  }
  if (hits.length > 1) {
    throw new UserError(`'${k.slice(0, 100)}' fits several connections (${hits.map((r) => `${r.app} ${r.id}`).join(', ')}): pass app/name or the id.`, 'conflict');
  }
  const row = hits[0]!;
  return { row, source: rank(row) === 0 ? 'own' : rank(row) === 1 ? 'parent' : 'system' };
}

/** Resolve a connection the acting account owns, for changes: a shared one says where it belongs. */
export async function resolveOwnConnection(core: Core, account: Account, key: string): Promise<ConnectionRow> {
  const found = await resolveConnection(core, account, key);
  if (found.source !== 'own') {
    throw new UserError(
      `The connection ${found.row.app}/${found.row.name} is shared with this account by its ${found.source === 'parent' ? 'parent' : 'system setup'} account: ` +
        'it can be used here but only changed (or viewed) in the account that owns it.',
    );
  }
  return found.row;
}

export interface ListConnectionsInput {
  query?: string | undefined;
  includeShared: boolean;
  limit: number;
  cursor?: string | undefined;
}

/** A connection as listed: everything but its sealed credentials. */
export type ListedConnection = Omit<ConnectionRow, 'credentials'>;

export interface ConnectionPage {
  items: { row: ListedConnection; source: ConnectionSource }[];
  apps: Map<string, App>;
  owners: Map<string, Pick<Account, 'id' | 'slug' | 'name'>>;
  nextCursor: string | null;
}

/** Every column but the sealed credentials: listing never needs them. */
const { credentials: _sealed, ...listColumns } = getTableColumns(connections);
const SOURCES: ConnectionSource[] = ['own', 'parent', 'system'];

/**
 * The connections visible in an account, grouped (own, shared by the parent, shared by the
 * system account) and ordered by app and name within each group, with a keyset cursor
 * (group, app, lower(name)). `query` matches the app's slug or name, or the connection's name
 * (case-insensitive, partial). Each group is one index-ordered query on (account_id, app,
 * lower(name)) that stops at the page size, all in one scoped transaction.
 */
export async function listConnections(core: Core, account: Account, input: ListConnectionsInput): Promise<ConnectionPage> {
  const sharing = input.includeShared ? await sharingAccounts(core, account) : { parent: null, system: null, ids: [] };
  const groups = [account.id, sharing.parent, sharing.system];
  const sharedFrom = sharing.ids;
  const q = input.query?.trim().toLowerCase();
  let search: SQL | undefined;
  if (q) {
    // app names: the built-in catalog here, custom apps in the same query (no extra round trip)
    const like = `%${likeEscape(q)}%`;
    const builtin = BUILTIN_APPS.filter((a) => a.slug.includes(q) || a.name.toLowerCase().includes(q)).map((a) => a.slug);
    // cheapest first: PostgreSQL evaluates an OR's arms in order and stops at the first true one
    search = or(
      ...(builtin.length ? [inArray(connections.app, builtin)] : []),
      inArray(connections.app, sql`(select ${apps.slug} from ${apps} where ${apps.tenantId} = ${core.tenantId} and ${apps.name} ilike ${like})`),
      ilike(connections.name, like),
      ilike(connections.app, like),
    )!;
  }
  let from = 0;
  let after: [string, string] | null = null;
  if (input.cursor) {
    const [g, app, name] = decodeCursor(input.cursor, ['id', 'text', 'text']) as [number, string, string];
    if (g > SOURCES.length) throw new UserError('The cursor is not valid: pass the next_cursor of a previous page, or omit it.');
    from = g - 1;
    after = [app, name];
  }
  // the page, the app names and the sharing accounts' names at once (a pool runs them side by side)
  const [rows, catalog, sharers] = await Promise.all([
    withAccount(
      core.db,
      [account.id],
      async (tx: Tx) => {
        const out: { row: ListedConnection; group: number; lname: string }[] = [];
        for (let g = from; g < groups.length && out.length <= input.limit; g++) {
          const owner = groups[g];
          if (!owner) continue;
          const conds: (SQL | undefined)[] = [eq(connections.tenantId, core.tenantId), eq(connections.accountId, owner), search];
          if (g > 0) conds.push(eq(connections.shared, true));
          if (after && g === from) conds.push(sql`(${connections.app}, lower(${connections.name})) > (${after[0]}, ${after[1]})`);
          const found = await tx
            .select({ ...listColumns, lname: sql<string>`lower(${connections.name})` })
            .from(connections)
            .where(and(...conds))
            .orderBy(asc(connections.app), sql`lower(${connections.name})`)
            .limit(input.limit + 1 - out.length);
          for (const { lname, ...row } of found) out.push({ row, group: g, lname });
        }
        return out;
      },
      sharedFrom,
    ),
    listApps(core),
    sharedFrom.length
      ? core.db.select({ id: accounts.id, slug: accounts.slug, name: accounts.name }).from(accounts).where(inArray(accounts.id, sharedFrom))
      : Promise.resolve([]),
  ]);
  const page = rows.slice(0, input.limit);
  const last = page[page.length - 1];
  const owners = new Map<string, Pick<Account, 'id' | 'slug' | 'name'>>([[account.id, account], ...sharers.map((a) => [a.id, a] as const)]);
  return {
    items: page.map((r) => ({ row: r.row, source: SOURCES[r.group]! })),
    apps: new Map(catalog.map((a) => [a.slug, a])),
    owners,
    // the group is stored +1 so that the cursor's first part is a positive id
    nextCursor: rows.length > input.limit && last ? encodeCursor([last.group + 1, last.row.app, last.lname]) : null,
  };
}

/** Update an own connection's name or notes. */
export async function updateConnection(core: Core, row: ConnectionRow, input: { name?: string | undefined; notes?: string | undefined }): Promise<ConnectionRow> {
  const name = input.name === undefined ? undefined : cleanName(input.name);
  try {
    return await setConnectionFields(core, row, { ...(name !== undefined ? { name } : {}), ...(input.notes !== undefined ? { notes: input.notes.trim() } : {}) });
  } catch (err) {
    uniqueName(err, row.app, name ?? row.name);
  }
}

/** Change fields of an own connection (in its account's scope), stamping updated_at. */
export async function setConnectionFields(
  core: Core,
  row: ConnectionRow,
  set: Partial<Pick<ConnectionRow, 'name' | 'notes' | 'status' | 'shared' | 'ratePerMinute' | 'credentials' | 'dataKeyId' | 'masked' | 'authKind' | 'authFailures'>>,
): Promise<ConnectionRow> {
  const [updated] = await withAccount(core.db, [row.accountId], (tx) =>
    tx
      .update(connections)
      .set({ ...set, updatedAt: sql`now()` as unknown as Date })
      .where(and(eq(connections.id, row.id), eq(connections.accountId, row.accountId)))
      .returning(),
  );
  return updated!;
}

export const effectiveRate = (row: Pick<ConnectionRow, 'ratePerMinute'>, app: Pick<App, 'defaultPerMinute'> | undefined): { perMinute: number; source: 'connection' | 'app' } =>
  row.ratePerMinute !== null ? { perMinute: row.ratePerMinute, source: 'connection' } : { perMinute: app?.defaultPerMinute ?? 60, source: 'app' };
