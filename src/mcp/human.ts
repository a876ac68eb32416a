import type { ToolContext } from './define-tool.js';
import { createHumanRequest, finishHumanRequest, waitForHuman, type HumanSubject } from '../core/human-requests.js';
import type { HumanRequestKind } from '../db/schema/index.js';
import { UserError } from '../core/errors.js';

/**
 * Ask the person behind the client to act on one of our pages (URL-mode elicitation): enter
 * credentials, or re-verify their password and view them. The model sees only the link's
 * existence and the outcome; values go from the page to the server, never through the client.
 */

export const PAGE_PATHS: Record<HumanRequestKind, string> = {
  enter_credentials: '/connect/',
  view_credentials: '/verify/',
};

/** Whether this call can send the person to a page; otherwise why not, as one sentence. */
export function pageUnavailable(ctx: ToolContext): string | null {
  const i = ctx.interaction;
  if (!i?.pagesUrl) return 'this server was not started with its pages (run `switchboard serve` and connect over HTTP)';
  if (!i.urlElicitation) return 'your MCP client does not support URL-mode elicitation';
  return null;
}

export async function askPerson(
  ctx: ToolContext,
  kind: HumanRequestKind,
  subject: HumanSubject,
  message: string,
): Promise<{ status: 'submitted'; credentials: Record<string, string> } | { status: 'done' }> {
  const i = ctx.interaction!;
  const req = await createHumanRequest(ctx.core, { accountId: ctx.account.id, userId: ctx.caller.user.id, kind, subject });
  const url = new URL(PAGE_PATHS[kind] + req.token, i.pagesUrl!).toString();
  // the person may take minutes (the link lives 10): meanwhile the call holds no tool-call slot
  const outcome = await ctx.outsideGate(async () => {
    const answer = await i.elicitUrl({ message, url, elicitationId: req.id }).catch(async (err: unknown) => {
      // the client never got the link (timeout, transport gone): close it rather than leave it open
      await finishHumanRequest(ctx.core, req.id, 'cancelled');
      throw err;
    });
    if (answer !== 'accept') {
      await finishHumanRequest(ctx.core, req.id, 'cancelled');
      throw new UserError(`The person ${answer === 'decline' ? 'declined' : 'cancelled'} opening the page; nothing was done.`);
    }
    return waitForHuman(ctx.core, req.id, i.signal, { onWaiting: () => i.progress('Waiting for the person to finish on the page…') });
  });
  await i.complete(req.id).catch(() => {});
  if (outcome.status === 'expired') throw new UserError('The link expired before the person used it; nothing was done. Call the tool again for a new link.');
  if (outcome.status === 'cancelled') throw new UserError('The request was cancelled before the person finished; nothing was done.');
  return outcome as Exclude<typeof outcome, { status: 'cancelled' | 'expired' }>;
}
