import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { buildWorld, type World } from './world.js';
import { startHttp, type HttpHandle } from '../../src/http/server.js';
import { Worker, type WorkerOptions } from '../../src/engine/worker.js';

/**
 * What the engine's tests share: real HTTP servers on 127.0.0.1 standing in for third-party apps,
 * a world whose http steps may call them and whose webhooks arrive through the real ingress, and
 * a real worker over the test database.
 */

export interface LocalApp {
  server: Server;
  /** http://127.0.0.1:<port> */
  base: string;
  port: number;
  close(): Promise<void>;
}

/** A stand-in for a third-party app: `handler` answers on a port of its own on 127.0.0.1. */
export async function localApp(handler: RequestListener): Promise<LocalApp> {
  const server = createServer(handler);
  const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
  return { server, base: `http://127.0.0.1:${port}`, port, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** A port on 127.0.0.1 that nothing listens on: a call to it is refused. */
export async function closedPort(): Promise<number> {
  const probe = await localApp(() => {});
  await probe.close();
  return probe.port;
}

export interface EngineWorld {
  w: World;
  /** the server's HTTP face: /hooks/ (webhook ingress), /metrics, /readyz */
  http: HttpHandle;
  close(): Promise<void>;
}

/**
 * buildWorld, with http steps allowed to call loopback (the local apps) and the HTTP server
 * started on 127.0.0.1, its origin the public base URL of the webhook URLs tools show.
 */
export async function engineWorld(httpOptions: { readyStallMs?: number } = {}): Promise<EngineWorld> {
  const w = await buildWorld();
  w.core.outbound = { allow: ['127.0.0.1'] };
  const http = await startHttp({ core: w.core, database: w.database, port: 0, host: '127.0.0.1', ...httpOptions });
  w.core.publicBaseUrl = new URL(http.url).origin;
  return {
    w,
    http,
    async close() {
      await http.close();
      await w.close();
    },
  };
}

/** A worker over the world's database, woken by LISTEN; started. */
export async function startWorker(w: World, opts: Partial<WorkerOptions> = {}): Promise<Worker> {
  const worker = new Worker(w.core, { concurrency: 4, leaseMs: 5_000, pollMs: 50, listen: (c, fn) => w.database.listen(c, fn), ...opts });
  await worker.start();
  return worker;
}
