import { z } from 'zod';
import type { Account } from '../../core/accounts.js';
import { ACCOUNT_KINDS, ACCOUNT_STATUSES } from '../../db/schema/index.js';

/** Zod pieces shared by the tool groups. Limits keep oversized input a clear error, not a slow query. */

export const accountArg = (what = 'The account') =>
  z.string().min(1).max(200).describe(`${what}: id, slug or exact name.`);

export const limitArg = (max = 200, dflt = 50) =>
  z.number().int().min(1).max(max).optional().describe(`Page size (default ${dflt}).`);

/**
 * An ISO-8601 time with its offset, between the years 1970 and 9999: the database cannot store
 * every time the ISO format can write (there is no year 0), and no entry predates 1970.
 */
export const timeArg = (what: string) =>
  z.iso
    .datetime({ offset: true })
    .refine((t) => {
      const year = new Date(t).getUTCFullYear();
      return year >= 1970 && year <= 9999;
    }, 'must be a time between the years 1970 and 9999')
    .describe(what);

export const cursorArg = z.string().max(500).optional().describe('The next_cursor of the previous page.');

export const accountRefOut = z.object({ id: z.string(), slug: z.string(), name: z.string() });

export const accountSummaryOut = z.object({
  id: z.string(),
  slug: z.string(),
  name: z.string(),
  kind: z.enum(ACCOUNT_KINDS),
  parent_id: z.string().nullable(),
  routing_key: z.string().nullable(),
  status: z.enum(ACCOUNT_STATUSES),
});

export const summary = (a: Account): z.infer<typeof accountSummaryOut> => ({
  id: a.id,
  slug: a.slug,
  name: a.name,
  kind: a.kind,
  parent_id: a.parentAccountId,
  routing_key: a.routingKey,
  status: a.status,
});

export const refOf = (a: Pick<Account, 'id' | 'slug' | 'name'>) => ({ id: a.id, slug: a.slug, name: a.name });

export const iso = (d: Date | null): string | null => (d ? d.toISOString() : null);
