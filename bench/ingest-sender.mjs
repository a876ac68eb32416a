// The webhook provider of the ingest benchmark, in a process of its own (as a provider is):
// `clients` senders POST the same JSON event to `url` for `seconds`, after a warm-up, and print
// one JSON line: accepted (202), other, wall time and each request's latency summary.
// Usage: node bench/ingest-sender.mjs <url> <clients> <seconds>
const [url, clientsArg, secondsArg] = process.argv.slice(2);
const clients = Number(clientsArg);
const seconds = Number(secondsArg);
const body = JSON.stringify({ id: 'evt_1', type: 'order.created', data: { order: 'o-1', total: 1250, lines: [{ sku: 'a', qty: 2 }] } });
const send = () => fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
for (let i = 0; i < 50; i++) await (await send()).arrayBuffer();
let accepted = 0;
let other = 0;
const lat = [];
const t0 = performance.now();
const end = t0 + seconds * 1000;
await Promise.all(
  Array.from({ length: clients }, async () => {
    while (performance.now() < end) {
      const s = performance.now();
      const res = await send();
      await res.arrayBuffer();
      lat.push(performance.now() - s);
      if (res.status === 202) accepted += 1;
      else other += 1;
    }
  }),
);
const wall = performance.now() - t0;
lat.sort((a, b) => a - b);
const pct = (p) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] ?? 0;
process.stdout.write(JSON.stringify({ accepted, other, wall, p50: pct(50), p99: pct(99) }) + '\n');
