import { z } from 'zod';
import type { Account } from '../../core/accounts.js';
import type { App } from '../../core/apps.js';
import { effectiveRate, type ListedConnection, type ConnectionSource } from '../../core/connections.js';
import { CONNECTION_STATUSES, AUTH_KINDS } from '../../db/schema/index.js';
import { accountRefOut, iso, refOf } from './shapes.js';

export const connectionArg = z
  .string()
  .min(1)
  .max(300)
  .describe("The connection: its id, app/name (e.g. stripe/Default), or an app's slug for its Default connection.");

export const credentialsArg = z
  .record(z.string().max(40), z.string().max(8192))
  .describe(
    "The app's credential fields (list_apps shows them), plus auth_kind when the app has several. Prefer leaving this out: " +
      'clients with URL elicitation send the person a page to enter them, so they never pass through the conversation.',
  );

export const connectionOut = z.object({
  id: z.string(),
  app: z.string(),
  app_name: z.string(),
  name: z.string(),
  auth_kind: z.enum(AUTH_KINDS),
  status: z.enum(CONNECTION_STATUSES),
  notes: z.string(),
  shared: z.boolean(),
  rate_limit: z.object({ per_minute: z.number().int(), source: z.enum(['connection', 'app']) }),
  last_used_at: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
  source: z.enum(['own', 'parent', 'system']).describe("own, or shared with this account by its parent or the system setup account."),
  owner: accountRefOut,
});

/**
 * A connection as a tool's sentence names it: its app's slug (a restricted format) and its id.
 * Its name and notes are customer text and stay in the data fields (`connection.name`).
 */
export const connectionWord = (row: { app: string; id: string }, start = false): string => `${start ? 'The' : 'the'} ${row.app} connection ${row.id}`;

export const maskedOut = z.record(z.string(), z.string()).describe('The credentials with secrets masked (e.g. sk_live_…4242).');

export function connectionView(
  row: ListedConnection,
  source: ConnectionSource,
  app: App | undefined,
  owner: Pick<Account, 'id' | 'slug' | 'name'>,
): z.infer<typeof connectionOut> {
  return {
    id: row.id,
    app: row.app,
    app_name: app?.name ?? row.app,
    name: row.name,
    auth_kind: row.authKind,
    status: row.status,
    notes: row.notes,
    shared: row.shared,
    rate_limit: (({ perMinute, source: s }) => ({ per_minute: perMinute, source: s }))(effectiveRate(row, app)),
    last_used_at: iso(row.lastUsedAt),
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
    source,
    owner: refOf(owner),
  };
}
