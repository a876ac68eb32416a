import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { sql } from 'drizzle-orm';
import { testDatabase, testDbKind, type TestDatabase } from './helpers/db.js';
import { rowsOf } from '../src/db/client.js';

/**
 * The database must leave the event loop turns while queries keep coming. PGlite runs each query
 * synchronously on this thread and hands its lock from query to query in promise callbacks; before
 * src/db/client.ts made every query wait one turn of the loop, a steady stream of queries (tool
 * calls, webhook ingest, workers) kept the loop in its promise callbacks, so the server accepted a
 * few connections a second, read requests tens of seconds late, and fired its busy timers late
 * (seen in the soak: calls timing out at 60 s while those admitted took 2 ms). PostgreSQL's round
 * trips are I/O, so it yields anyway; the test holds on both.
 *
 * Counted in queries, not in milliseconds: while 8 loops each run QUERIES queries back to back, a
 * timer set at the start and a request sent at the start must both be served long before the last
 * query. Without the yield, both came after every query.
 */
const LOOPS = 8;
const QUERIES = 60;

let database: TestDatabase;
let server: Server;
let port: number;
let done = 0;

beforeAll(async () => {
  database = await testDatabase();
  server = createServer((_req, res) => res.end(String(done)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as { port: number }).port;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await database.close();
});

describe(`the event loop under a stream of queries (${testDbKind()})`, () => {
  it('fires a timer and answers an HTTP request while the queries go on', async () => {
    done = 0;
    const total = LOOPS * QUERIES;
    const loops = Array.from({ length: LOOPS }, async () => {
      for (let i = 0; i < QUERIES; i++) {
        await database.db.transaction(async (tx) => {
          await tx.execute(sql`select ${i}::int as n`);
          await tx.execute(sql`select count(*) from accounts`);
        });
        done += 1;
      }
    });
    // both start once the first queries are under way
    const atTimer = new Promise<number>((resolve) => setTimeout(() => resolve(done), 0));
    const atRequest = fetch(`http://127.0.0.1:${port}/`).then(async (r) => Number(await r.text()));
    await Promise.all(loops);
    expect(done).toBe(total);
    // a timer is due at once, a request needs a few turns (connect, then read): each well before the end
    expect(await atTimer).toBeLessThan(total / 4);
    expect(await atRequest).toBeLessThan(total / 2);
  });

  // the yield (embedded database only) must not change what the queries do: their order, and that a
  // transaction has the one connection to itself. PostgreSQL spreads such statements over its pool.
  const embedded = testDbKind() === 'pglite';
  it.skipIf(!embedded)('keeps statements issued without waiting in their order, inside and outside a transaction (embedded database: one connection)', async () => {
    await database.db.execute(sql`create temp table fairness_order (seq serial primary key, v int not null)`);
    await database.db.transaction(async (tx) => {
      await Promise.all(Array.from({ length: 40 }, (_, i) => tx.execute(sql`insert into fairness_order (v) values (${i})`)));
    });
    await Promise.all(Array.from({ length: 40 }, (_, i) => database.db.execute(sql`insert into fairness_order (v) values (${40 + i})`)));
    const rows = rowsOf<{ v: number }>(await database.db.execute(sql`select v from fairness_order order by seq`));
    expect(rows.map((r) => Number(r.v))).toEqual(Array.from({ length: 80 }, (_, i) => i));
  });

  it.skipIf(!embedded)('lets no other statement into an open transaction (embedded database: one connection)', async () => {
    await database.db.execute(sql`create temp table fairness_iso (v int)`);
    let inside = -1;
    const tx = database.db.transaction(async (t) => {
      await t.execute(sql`insert into fairness_iso values (1)`);
      for (let i = 0; i < 10; i++) await t.execute(sql`select 1`);
      inside = Number(rowsOf<{ n: number }>(await t.execute(sql`select count(*)::int as n from fairness_iso`))[0]!.n);
      throw new Error('roll back');
    });
    const outside = database.db.execute(sql`insert into fairness_iso values (2)`);
    await expect(tx).rejects.toThrow('roll back');
    await outside;
    expect(inside).toBe(1);
    expect(rowsOf<{ v: number }>(await database.db.execute(sql`select v from fairness_iso`)).map((r) => Number(r.v))).toEqual([2]);
  });
});
