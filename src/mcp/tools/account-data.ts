import { z } from 'zod';
import { defineTool, type ToolDef } from '../define-tool.js';
import { accountArg, cursorArg, iso, limitArg } from './shapes.js';
import { deleteEntry, getEntry, LIST_VALUE_CHARS, listEntries, MAX_KEY_CHARS, setEntry } from '../../core/account-data.js';
import { UserError } from '../../core/errors.js';

const ACTIONS = ['list', 'get', 'set', 'delete'] as const;
const WRITES = new Set<string>(['set', 'delete']);

const entryOut = z.object({
  key: z.string(),
  value: z.json().describe(`The value; in list, null when larger than ${LIST_VALUE_CHARS} characters (get reads it).`),
  value_chars: z.number().int().describe('Size of the value as JSON.'),
  expires_at: z.string().nullable(),
  updated_at: z.string(),
});

const need = (what: string, args: Record<string, unknown>, ...fields: string[]) => {
  for (const f of fields) if (args[f] === undefined) throw new UserError(`${what} needs ${f}.`);
};

const accountDataTool = defineTool({
  name: 'account_data',
  toolset: 'automations',
  title: 'Account data',
  description:
    "Reads or changes the account's key-value data, which its automations use through store steps (de-duplication keys, id " +
    'mappings, cursors, counters). list (by prefix) and get need viewer; set (optionally with ttl_seconds) and delete need member.',
  input: {
    account: accountArg().optional(),
    action: z.enum(ACTIONS).describe('list and get read; set and delete change.'),
    key: z.string().min(1).max(MAX_KEY_CHARS).optional().describe('For get, set, delete.'),
    prefix: z.string().min(1).max(MAX_KEY_CHARS).optional().describe('For list: only keys starting with this.'),
    value: z.json().optional().describe('For set: any JSON value.'),
    ttl_seconds: z.number().int().min(1).max(31_536_000).optional().describe('For set: the entry expires after this many seconds.'),
    limit: limitArg(),
    cursor: cursorArg,
  },
  output: {
    entries: z.array(entryOut).describe('list: a page of entries; get and set: the one entry; delete: empty.'),
    found: z.boolean().describe('get and delete: whether the key existed.'),
    next_cursor: z.string().nullable(),
  },
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false },
  access: { role: 'viewer', writeRole: 'member', writes: (args) => WRITES.has(args.action as string) },
  async handler(ctx, args) {
    const a = ctx.account;
    const view = (e: { key: string; value: unknown; expiresAt: Date | null; updatedAt: Date }, chars?: number) => ({
      key: e.key,
      value: e.value as z.infer<typeof entryOut>['value'],
      value_chars: chars ?? JSON.stringify(e.value).length,
      expires_at: iso(e.expiresAt),
      updated_at: iso(e.updatedAt)!,
    });
    switch (args.action) {
      case 'list': {
        const page = await listEntries(ctx.core, a, { prefix: args.prefix, limit: args.limit ?? 50, cursor: args.cursor });
        const entries = page.items.map((i) => view(i, i.valueChars));
        return {
          data: { entries, found: entries.length > 0, next_cursor: page.nextCursor },
          text: `${entries.length} key${entries.length === 1 ? '' : 's'} in ${a.slug}'s data${args.prefix ? ' with that prefix' : ''}${page.nextCursor ? ' (more with next_cursor)' : ''}.`,
        };
      }
      case 'get': {
        need('get', args, 'key');
        const e = await getEntry(ctx.core, a, args.key!);
        return { data: { entries: e ? [view(e)] : [], found: e !== null, next_cursor: null }, text: e ? `The key was found in ${a.slug}'s data.` : `No such key in ${a.slug}'s data.` };
      }
      case 'set': {
        need('set', args, 'key', 'value');
        const e = await setEntry(ctx.core, a, args.key!, args.value, args.ttl_seconds);
        return { data: { entries: [view(e)], found: true, next_cursor: null }, text: `Set the key in ${a.slug}'s data${e.expiresAt ? `, expiring ${iso(e.expiresAt)}` : ''}.` };
      }
      case 'delete': {
        need('delete', args, 'key');
        const found = await deleteEntry(ctx.core, a, args.key!);
        return { data: { entries: [], found, next_cursor: null }, text: found ? `Deleted the key from ${a.slug}'s data.` : `No such key in ${a.slug}'s data; nothing deleted.` };
      }
    }
  },
});

export const accountDataTools: ToolDef[] = [accountDataTool];
