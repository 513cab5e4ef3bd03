import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type postgres from 'postgres';
import {
  createTestDatabase,
  findTestServer,
  type TestDatabase,
  type TestServer,
} from '../fixtures/postgres.ts';
import { startWarden, type WardenHandle } from './support.ts';

describe('postgres.js through Warden (pipelining, cached prepared statements)', { timeout: 120_000 }, () => {
  let upstream: TestServer;
  let database: TestDatabase;
  let warden: WardenHandle;
  let sql: postgres.Sql;

  before(async () => {
    upstream = await findTestServer();
    database = await createTestDatabase(upstream, 'postgres_js');
    warden = await startWarden({ upstream, database: database.name });
    sql = warden.postgresJs('agent', 4);
    await sql`CREATE TABLE events (id serial PRIMARY KEY, kind text NOT NULL, at timestamptz DEFAULT now(), data jsonb)`;
  });

  after(async () => {
    await sql?.end({ timeout: 5 });
    await warden?.close();
    await database?.drop();
    await upstream?.close();
  });

  it('pipelines many statements on one connection and returns each result to its caller', async () => {
    const results = await sql.begin((tx) =>
      Array.from(
        { length: 200 },
        (_, i) => tx`INSERT INTO events (kind, data) VALUES (${`k${i % 7}`}, ${tx.json({ i })}) RETURNING id`,
      ),
    );
    assert.equal(results.length, 200);
    const ids = results.map((rows) => rows[0]!.id as number);
    assert.equal(new Set(ids).size, 200);
    const [row] = await sql`SELECT count(*)::int AS n, count(DISTINCT kind)::int AS kinds FROM events`;
    assert.deepEqual({ ...row }, { n: 200, kinds: 7 });
  });

  it('runs concurrent queries over a pool, each answered correctly', async () => {
    const answers = await Promise.all(
      Array.from({ length: 100 }, (_, i) => sql`SELECT ${i}::int * 2 AS doubled`),
    );
    assert.deepEqual(
      answers.map((rows) => rows[0]!.doubled),
      answers.map((_, i) => i * 2),
    );
  });

  it('re-executes cached named statements without a new Parse', async () => {
    for (let i = 0; i < 50; i++) {
      const rows =
        await sql`SELECT kind, count(*)::int AS n FROM events WHERE kind = ${`k${i % 7}`} GROUP BY kind`;
      assert.equal(rows[0]!.kind, `k${i % 7}`);
    }
    const [prepared] = await sql`SELECT count(*)::int AS n FROM pg_prepared_statements`;
    assert.ok(prepared!.n >= 1, 'postgres.js named its statements on the server');
  });

  it('surfaces an error inside a pipeline and keeps the connection usable', async () => {
    await assert.rejects(
      sql.begin((tx) => [tx`SELECT 1`, tx`SELECT 1/0`, tx`SELECT 2`]),
      (error: Error & { code?: string }) => error.code === '22012',
    );
    const [row] = await sql`SELECT 'alive' AS state`;
    assert.equal(row!.state, 'alive');
  });

  it('streams a large result in batches with a cursor', async () => {
    let seen = 0;
    await sql`SELECT g AS n, repeat('y', 200) AS pad FROM generate_series(1, 50000) g`.cursor(
      1000,
      (rows) => {
        seen += rows.length;
      },
    );
    assert.equal(seen, 50_000);
  });
});
