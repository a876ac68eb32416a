import type { Account } from '../core/accounts.js';
import { getAccountById } from '../core/accounts.js';
import type { FilterStep, HttpStep, Step, StoreStep, TransformStep } from '../core/automation-definition.js';
import { deleteEntry, getEntry, incrementEntry, setEntry } from '../core/account-data.js';
import { UserError } from '../core/errors.js';
import { evaluate, render } from './expressions.js';
import { runHttpStep } from './http-step.js';
import { expressionGuard, StepError, type StepContext, type StepResult } from './step-context.js';

export { StepError, STEP_ERROR_CODES, type ExpressionDoc, type StepContext, type StepResult } from './step-context.js';

/**
 * What one step does, given the expression document of its execution. A step either returns its
 * output (and its rendered input, for the record) or throws a StepError with a code from the
 * fixed list that records, diagnoses and health key on.
 */

async function transform(ctx: StepContext, step: TransformStep): Promise<StepResult> {
  const output = await expressionGuard(step, () => render(step.value, ctx.doc));
  return { input: null, output };
}

async function filter(ctx: StepContext, step: FilterStep): Promise<StepResult> {
  const value = await expressionGuard(step, () => evaluate(step.condition, ctx.doc));
  // JSONata's truthiness: empty, false, 0, '' and null are false
  const pass = Array.isArray(value) ? value.length > 0 : Boolean(value);
  return { input: null, output: pass, stop: !pass };
}

async function store(ctx: StepContext, step: StoreStep): Promise<StepResult> {
  const key = await expressionGuard(step, () => render(step.key, ctx.doc));
  if (typeof key !== 'string' || key === '') throw new StepError('expression_error', `Step '${step.id}': the key must be a non-empty text, not ${JSON.stringify(key)?.slice(0, 60)}.`);
  const value = step.value === undefined ? undefined : await expressionGuard(step, () => render(step.value, ctx.doc));
  let owner: Pick<Account, 'id' | 'slug'> = ctx.account;
  if (step.scope === 'parent') {
    const parent = ctx.account.parentAccountId ? await getAccountById(ctx.core, ctx.account.parentAccountId) : null;
    if (!parent) throw new StepError('store_error', `Step '${step.id}': scope "parent" needs a linked parent account, and '${ctx.account.slug}' has none.`);
    if (parent.status === 'suspended') throw new StepError('store_error', `Step '${step.id}': the parent account '${parent.slug}' is suspended: its data cannot be used until the suspension is lifted.`);
    owner = parent;
  }
  const input = { action: step.action, key, ...(value !== undefined ? { value } : {}), scope: step.scope ?? 'account' };
  try {
    switch (step.action) {
      case 'get': {
        const e = await getEntry(ctx.core, owner, key);
        return { input, output: e ? e.value : null };
      }
      case 'set': {
        const e = await setEntry(ctx.core, owner, key, value, step.ttl_seconds);
        return { input, output: e.value };
      }
      case 'increment': {
        const e = await incrementEntry(ctx.core, owner, key, step.by ?? 1);
        return { input, output: e.value };
      }
      case 'delete':
        return { input, output: await deleteEntry(ctx.core, owner, key) };
    }
  } catch (err) {
    if (err instanceof UserError) throw new StepError('store_error', `Step '${step.id}': ${err.message}`);
    throw err;
  }
}

export async function runStep(ctx: StepContext, step: Step): Promise<StepResult> {
  switch (step.kind) {
    case 'transform':
      return transform(ctx, step);
    case 'filter':
      return filter(ctx, step);
    case 'store':
      return store(ctx, step);
    case 'http':
      return runHttpStep(ctx, step as HttpStep);
  }
}
