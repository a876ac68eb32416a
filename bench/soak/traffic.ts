import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { SoakHook } from './world.js';

/**
 * The soak's outside world: the third-party app the automations call, and the provider that
 * sends webhooks at a steady rate.
 */

/** The app on 127.0.0.1: answers at once; /ledger refuses with a validation error (422), the rest 200. */
export class SoakApp {
  calls = 0;
  private server: Server | null = null;
  base = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      this.calls++;
      req.resume();
      req.on('end', () => {
        if (req.url?.startsWith('/ledger')) {
          res.writeHead(422, { 'content-type': 'application/json' });
          res.end('{"error":"amount is required","field":"amount"}');
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"ok":true}');
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    this.server?.closeAllConnections();
    return new Promise((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

/** How long the sender waits for an answer, as providers do (Stripe waits 20 s, GitHub 10 s): longer is an error. */
const ANSWER_TIMEOUT_MS = 30_000;

/** Deliveries posted `rate` per second, spread evenly, to hooks chosen by weight; each answer is checked. */
export class WebhookSender {
  sent = 0;
  /** delivery ids answered 2xx */
  readonly acked: string[] = [];
  /** not answered 2xx (or not answered): each is an error */
  failed = 0;
  readonly failures: string[] = [];
  private inFlight = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | null = null;
  private intervalFailed = 0;
  private intervalSent = 0;

  constructor(
    private readonly origin: string,
    private readonly hooks: SoakHook[],
    private readonly rate: number,
  ) {}

  start(): void {
    if (this.rate <= 0) return;
    const t0 = performance.now();
    // a 20 ms tick sends what is due by now: the rate holds whatever each answer takes
    this.timer = setInterval(() => {
      const due = Math.floor(((performance.now() - t0) / 1000) * this.rate);
      while (this.sent < due) this.send(this.sent++);
    }, 20);
  }

  private send(i: number): void {
    const hook = this.pick(i);
    this.intervalSent++;
    const p = fetch(this.origin + hook.path, {
      method: 'POST',
      body: JSON.stringify(hook.body(i)),
      headers: { 'content-type': 'application/json' },
      signal: AbortSignal.timeout(ANSWER_TIMEOUT_MS),
    })
      .then(async (res) => {
        const body = (await res.json().catch(() => ({}))) as { delivery_id?: string; status?: string };
        if (res.status >= 200 && res.status < 300 && body.delivery_id) this.acked.push(body.delivery_id);
        else this.fail(`${hook.label} webhook answered ${res.status}: ${JSON.stringify(body).slice(0, 200)}`);
      })
      .catch((err: Error) => this.fail(`${hook.label} webhook not answered: ${err.message}`))
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  /** a hook by weight, spread evenly (deterministic in i: the low-discrepancy golden-ratio walk) */
  private pick(i: number): SoakHook {
    let x = (i * 0.6180339887498949) % 1;
    for (const h of this.hooks) {
      if (x < h.weight) return h;
      x -= h.weight;
    }
    return this.hooks[this.hooks.length - 1]!;
  }

  private fail(line: string): void {
    this.failed++;
    this.intervalFailed++;
    if (this.failures.length < 20) this.failures.push(line);
  }

  /** webhooks sent and failed since the last cut */
  cut(): { sent: number; failed: number } {
    const out = { sent: this.intervalSent, failed: this.intervalFailed };
    this.intervalSent = 0;
    this.intervalFailed = 0;
    return out;
  }

  /** stop sending; resolves when every delivery sent has been answered */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await Promise.allSettled([...this.inFlight]);
  }
}
