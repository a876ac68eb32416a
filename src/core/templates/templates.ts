import { and, asc, desc, eq, ilike, sql, type SQL } from 'drizzle-orm';
import { templates, templateVersions } from '../../db/schema/index.js';
import { withAccount } from '../../db/scope.js';
import type { Core } from '../core.js';
import type { Account } from '../accounts.js';
import { UserError, sqlState, UNIQUE_VIOLATION } from '../errors.js';
import { decodeCursor, encodeCursor, isUuid, likeEscape } from '../ids.js';
import { diffVersions, validateTemplate, type TemplateDefinition, type Variable } from './definition.js';

/**
 * Templates and their immutable versions, in the tenant's templates account (RLS scope of that
 * account). A version records its classification against the one before it.
 */

export type TemplateRow = typeof templates.$inferSelect;
export type VersionRow = typeof templateVersions.$inferSelect;

export const MAX_TEMPLATE_NAME = 200;

function cleanName(name: string): string {
  const n = name.trim();
  if (!/[^\s\u200B-\u200F\u2060\uFEFF]/u.test(n)) throw new UserError('The template name must not be empty.');
  if (isUuid(n)) throw new UserError('A template name cannot be an id: templates are found by id or name.');
  return n;
}

export const versionParts = (v: VersionRow) => ({ definition: v.definition as TemplateDefinition, variables: v.variables as Variable[], apps: v.apps });

export async function createTemplate(
  core: Core,
  account: Account,
  input: { name: string; description?: string | undefined; definition: TemplateDefinition; variables: Variable[]; by: string | null },
): Promise<{ template: TemplateRow; version: VersionRow }> {
  const name = cleanName(input.name);
  const { definition, apps } = await validateTemplate(core, account, input.definition, input.variables);
  try {
    return await withAccount(core.db, [account.id], async (tx) => {
      const [template] = await tx
        .insert(templates)
        .values({ tenantId: core.tenantId, accountId: account.id, name, description: input.description?.trim() ?? '', latestVersion: 1, createdBy: input.by })
        .returning();
      const [version] = await tx
        .insert(templateVersions)
        .values({ templateId: template!.id, version: 1, tenantId: core.tenantId, accountId: account.id, definition, variables: input.variables, apps, classification: 'initial', note: 'created', createdBy: input.by })
        .returning();
      return { template: template!, version: version! };
    });
  } catch (err) {
    if (sqlState(err) === UNIQUE_VIOLATION) throw new UserError(`There is already a template named '${name}': pick another name, or update_template it.`, 'conflict');
    throw err;
  }
}

/** A new version on top of the latest (the row is locked: concurrent updates get consecutive numbers). */
export async function updateTemplate(
  core: Core,
  account: Account,
  template: TemplateRow,
  input: { definition: TemplateDefinition; variables: Variable[]; note: string; description?: string | undefined; by: string | null },
): Promise<{ template: TemplateRow; version: VersionRow; previous: VersionRow }> {
  const { definition, apps } = await validateTemplate(core, account, input.definition, input.variables);
  return withAccount(core.db, [account.id], async (tx) => {
    const [locked] = await tx.select().from(templates).where(eq(templates.id, template.id)).for('update');
    if (!locked) throw new UserError(`The template ${template.id} no longer exists.`, 'not_found');
    const [previous] = await tx
      .select()
      .from(templateVersions)
      .where(and(eq(templateVersions.templateId, locked.id), eq(templateVersions.version, locked.latestVersion)));
    const diff = diffVersions(versionParts(previous!), { definition, variables: input.variables, apps });
    const next = locked.latestVersion + 1;
    const [version] = await tx
      .insert(templateVersions)
      .values({
        templateId: locked.id,
        version: next,
        tenantId: core.tenantId,
        accountId: account.id,
        definition,
        variables: input.variables,
        apps,
        classification: diff.classification,
        reasons: diff.reasons,
        note: input.note.trim(),
        createdBy: input.by,
      })
      .returning();
    const [updated] = await tx
      .update(templates)
      .set({ latestVersion: next, updatedAt: sql`now()`, ...(input.description !== undefined ? { description: input.description.trim() } : {}) })
      .where(eq(templates.id, locked.id))
      .returning();
    return { template: updated!, version: version!, previous: previous! };
  });
}

/** A template by id or exact name (case-insensitive), or a clear error. */
export async function resolveTemplate(core: Core, account: Account, key: string): Promise<TemplateRow> {
  const k = key.trim();
  const match = isUuid(k) ? eq(templates.id, k.toLowerCase()) : eq(sql`lower(${templates.name})`, k.toLowerCase());
  const [row] = await withAccount(core.db, [account.id], (tx) => tx.select().from(templates).where(and(eq(templates.accountId, account.id), match)).limit(1));
  if (!row) throw new UserError(`No template '${k.slice(0, 100)}': list_templates shows them.`, 'not_found');
  return row;
}

export async function getVersion(core: Core, account: Account, template: TemplateRow, version = template.latestVersion): Promise<VersionRow> {
  if (version > template.latestVersion) throw new UserError(`The template ${template.id} has no version ${version} (latest: ${template.latestVersion}).`, 'not_found');
  const [row] = await withAccount(core.db, [account.id], (tx) =>
    tx.select().from(templateVersions).where(and(eq(templateVersions.templateId, template.id), eq(templateVersions.version, version))),
  );
  if (!row) throw new UserError(`The template ${template.id} has no version ${version}.`, 'not_found');
  return row;
}

/** The latest versions of a template, newest first. */
export async function versionHistory(core: Core, account: Account, templateId: string, limit = 10) {
  return withAccount(core.db, [account.id], (tx) =>
    tx
      .select({ version: templateVersions.version, classification: templateVersions.classification, reasons: templateVersions.reasons, note: templateVersions.note, createdAt: templateVersions.createdAt })
      .from(templateVersions)
      .where(eq(templateVersions.templateId, templateId))
      .orderBy(desc(templateVersions.version))
      .limit(limit),
  );
}

/** Templates by name, one keyset page, with their latest version's apps and variables. */
export async function listTemplates(core: Core, account: Account, input: { query?: string | undefined; limit: number; cursor?: string | undefined }) {
  const conds: (SQL | undefined)[] = [eq(templates.accountId, account.id)];
  const q = input.query?.trim();
  if (q) conds.push(ilike(templates.name, `%${likeEscape(q)}%`));
  if (input.cursor) {
    const [lname, id] = decodeCursor(input.cursor, ['text', 'uuid']) as [string, string];
    conds.push(sql`(lower(${templates.name}), ${templates.id}) > (${lname}, ${id})`);
  }
  const rows = await withAccount(core.db, [account.id], (tx) =>
    tx
      .select({ template: templates, version: templateVersions })
      .from(templates)
      .innerJoin(templateVersions, and(eq(templateVersions.templateId, templates.id), eq(templateVersions.version, templates.latestVersion)))
      .where(and(...conds))
      .orderBy(sql`lower(${templates.name})`, asc(templates.id))
      .limit(input.limit + 1),
  );
  const page = rows.slice(0, input.limit);
  const last = page[page.length - 1];
  return { items: page, nextCursor: rows.length > input.limit && last ? encodeCursor([last.template.name.toLowerCase(), last.template.id]) : null };
}
