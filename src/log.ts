import { scrubText } from './core/crypto.js';

/**
 * Structured logs: one JSON object per line on stderr (stdout belongs to the stdio protocol).
 * Callers pass fields, never secrets: tokens, passwords and tool arguments are not logged.
 */
const LEVELS = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const;
export type LogLevel = keyof typeof LEVELS;

let threshold: number = LEVELS[(process.env.LOG_LEVEL as LogLevel) ?? 'info'] ?? LEVELS.info;

export function setLogLevel(level: LogLevel): void {
  threshold = LEVELS[level];
}

function emit(level: Exclude<LogLevel, 'silent'>, msg: string, fields?: Record<string, unknown>): void {
  if (LEVELS[level] < threshold) return;
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }) + '\n');
}

export const log = {
  debug: (msg: string, fields?: Record<string, unknown>) => emit('debug', msg, fields),
  info: (msg: string, fields?: Record<string, unknown>) => emit('info', msg, fields),
  warn: (msg: string, fields?: Record<string, unknown>) => emit('warn', msg, fields),
  error: (msg: string, fields?: Record<string, unknown>) => emit('error', msg, fields),
};

/** The message and code of an error, without the query parameters drivers attach to it. */
export function errorFields(err: unknown): Record<string, unknown> {
  // Drizzle wraps driver errors in "Failed query: <sql> params: <values>": the values may be
  // secrets, so only the driver's own error (message and SQLSTATE) is kept.
  if (err instanceof Error && err.message.startsWith('Failed query') && err.cause instanceof Error) {
    return errorFields(err.cause);
  }
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return { error: scrubText(err.message), ...(typeof code === 'string' ? { code } : {}) };
  }
  return { error: String(err) };
}
