import { SLUG } from '../ids.js';

/**
 * How a failure's target may appear inside a tool's sentence: an app slug (catalog apps and custom
 * apps made by tenant admins, a restricted format) is named; a host (`host:…`, written by whoever
 * wrote the definition or sent the event) never is — it stays in the `target` data field.
 */
export const targetWord = (target: string): string => (SLUG.test(target) ? target : 'an http call');
