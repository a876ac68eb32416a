import { resolve } from 'node:path';
import { z } from 'zod';
import { parseAllow } from './engine/outbound.js';
import { MAX_SWITCH_MINUTES } from './core/switches.js';

/** The one place that reads process.env. Every variable is documented in README.md. */
const schema = z.object({
  DATABASE_URL: z.string().url().optional(),
  SWITCHBOARD_DATA_DIR: z.string().default('./.switchboard'),
  SWITCHBOARD_TOKEN: z.string().optional(),
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  HOST: z.string().default('127.0.0.1'),
  SWITCHBOARD_PUBLIC_URL: z.string().url().optional(),
  SWITCHBOARD_ADMIN_EMAIL: z.string().email().default('admin@switchboard.local'),
  SWITCHBOARD_SWITCH_MINUTES: z.coerce.number().int().min(1).max(MAX_SWITCH_MINUTES).default(30),
  LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
  SWITCHBOARD_MASTER_KEY: z
    .string()
    .regex(/^[A-Za-z0-9+/]{43}=$/, 'must be 32 random bytes in base64 (44 characters); make one with: openssl rand -base64 32')
    .optional(),
  SWITCHBOARD_SECRET_ARGS: z.enum(['on', 'off']).default('on'),
  SWITCHBOARD_WORKERS: z.coerce.number().int().min(0).max(256).default(4),
  SWITCHBOARD_OUTBOUND_ALLOW: z.string().optional(),
  SWITCHBOARD_LEASE_SECONDS: z.coerce.number().int().min(2).max(3600).default(30),
  SWITCHBOARD_ACCOUNT_CONCURRENCY: z.coerce.number().int().min(1).max(10_000).default(16),
  SWITCHBOARD_EXPIRE_AFTER_401: z.coerce.number().int().min(1).max(1000).default(3),
  SWITCHBOARD_EXECUTION_RETENTION_DAYS: z.coerce.number().int().min(1).max(3650).default(30),
  SWITCHBOARD_WEBHOOK_MAX_BYTES: z.coerce.number().int().min(1024).max(64 * 1024 * 1024).default(1024 * 1024),
  SWITCHBOARD_ALLOWED_HOSTS: z.string().optional(),
  SWITCHBOARD_REPLAY_MAX: z.coerce.number().int().min(1).max(100_000).default(1000),
  SWITCHBOARD_READY_STALL_SECONDS: z.coerce.number().int().min(5).max(86_400).default(120),
  SWITCHBOARD_DB_POOL: z.coerce.number().int().min(2).max(1000).default(10),
  SWITCHBOARD_TOOL_SLOTS: z.coerce.number().int().min(1).max(1000).optional(),
  SWITCHBOARD_BUSY_WAIT_MS: z.coerce.number().int().min(10).max(600_000).default(5000),
  SWITCHBOARD_TOOLSETS: z.string().max(500).optional(),
  SWITCHBOARD_READ_ONLY: z.enum(['on', 'off', 'true', 'false', '1', '0']).default('off'),
  SWITCHBOARD_ALLOWED_ORIGINS: z
    .string()
    .optional()
    .refine((v) => v === undefined || list(v).every((o) => /^https?:\/\/[^/\s]+$/i.test(o)), 'must be a comma-separated list of origins such as https://console.example.com'),
});

const list = (v: string | undefined): string[] => (v ?? '').split(',').map((s) => s.trim()).filter(Boolean);

export type Config = {
  databaseUrl: string | undefined;
  dataDir: string;
  token: string | undefined;
  port: number;
  host: string;
  publicUrl: string | undefined;
  adminEmail: string;
  switchMinutes: number;
  logLevel: z.infer<typeof schema>['LOG_LEVEL'];
  /** base64 of 32 bytes; unset → the key file in the data directory (src/app.ts) */
  masterKey: string | undefined;
  /** whether credentials and passwords may be passed as tool arguments */
  secretArgs: boolean;
  /** executions run at once by the in-process worker of serve and stdio (0: none; `switchboard worker` runs them) */
  workers: number;
  /** addresses and CIDR ranges http steps may call although loopback or private */
  outboundAllow: string[];
  /** how long a claimed run is a worker's without a heartbeat: a crashed worker's runs are taken back after it */
  leaseMs: number;
  /** runs of one account at once, across all workers */
  accountConcurrency: number;
  /** 401s in a row after which a connection is marked expired */
  expireAfter401: number;
  /** days executions and deliveries are kept */
  retentionDays: number;
  /** largest webhook body accepted, in bytes */
  webhookMaxBytes: number;
  /** Host headers `serve` answers (empty: loopback names on a loopback address, else unchecked) */
  allowedHosts: string[];
  /** browser origins besides the server's own that may call /mcp and the pages */
  allowedOrigins: string[];
  /** deliveries one replay_webhook call replays at most */
  replayMax: number;
  /** /readyz fails when work is due and none was claimed for this many seconds (a stalled queue) */
  readyStallSeconds: number;
  /** the toolsets sessions list unless they ask for others (src/mcp/toolsets.ts); undefined: the default */
  toolsets: string | undefined;
  /** every session read-only (a session may also ask to be) */
  readOnly: boolean;
  /** PostgreSQL connections this process opens at most */
  dbPool: number;
  /** tool calls that run at once in this process (default: the pool less 2, left to ingest, workers and /readyz) */
  toolSlots: number;
  /** how long a tool call waits for a slot before it is refused as busy */
  busyWaitMs: number;
};

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = schema.safeParse(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== '')));
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`Invalid configuration: ${String(issue.path[0])}: ${issue.message}`);
  }
  const e = parsed.data;
  return {
    databaseUrl: e.DATABASE_URL,
    dataDir: resolve(e.SWITCHBOARD_DATA_DIR),
    token: e.SWITCHBOARD_TOKEN,
    port: e.PORT,
    host: e.HOST,
    publicUrl: e.SWITCHBOARD_PUBLIC_URL,
    adminEmail: e.SWITCHBOARD_ADMIN_EMAIL,
    switchMinutes: e.SWITCHBOARD_SWITCH_MINUTES,
    logLevel: e.LOG_LEVEL,
    masterKey: e.SWITCHBOARD_MASTER_KEY,
    secretArgs: e.SWITCHBOARD_SECRET_ARGS === 'on',
    workers: e.SWITCHBOARD_WORKERS,
    outboundAllow: parseAllow(e.SWITCHBOARD_OUTBOUND_ALLOW),
    accountConcurrency: e.SWITCHBOARD_ACCOUNT_CONCURRENCY,
    leaseMs: e.SWITCHBOARD_LEASE_SECONDS * 1000,
    expireAfter401: e.SWITCHBOARD_EXPIRE_AFTER_401,
    retentionDays: e.SWITCHBOARD_EXECUTION_RETENTION_DAYS,
    webhookMaxBytes: e.SWITCHBOARD_WEBHOOK_MAX_BYTES,
    allowedHosts: list(e.SWITCHBOARD_ALLOWED_HOSTS),
    allowedOrigins: list(e.SWITCHBOARD_ALLOWED_ORIGINS),
    replayMax: e.SWITCHBOARD_REPLAY_MAX,
    readyStallSeconds: e.SWITCHBOARD_READY_STALL_SECONDS,
    toolsets: e.SWITCHBOARD_TOOLSETS,
    readOnly: ['on', 'true', '1'].includes(e.SWITCHBOARD_READ_ONLY),
    dbPool: e.SWITCHBOARD_DB_POOL,
    toolSlots: e.SWITCHBOARD_TOOL_SLOTS ?? Math.max(1, e.SWITCHBOARD_DB_POOL - 2),
    busyWaitMs: e.SWITCHBOARD_BUSY_WAIT_MS,
  };
}
