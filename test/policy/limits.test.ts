import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import {
  createTestDatabase,
  findTestServer,
  type TestDatabase,
  type TestServer,
} from '../fixtures/postgres.ts';
import { startWarden, type WardenHandle } from '../proxy/support.ts';

describe('limit rules', { timeout: 120_000 }, () => {
  let upstream: TestServer;
  let database: TestDatabase;
  let warden: WardenHandle;

  before(async () => {
    upstream = await findTestServer();
    database = await createTestDatabase(upstream, 'limits');
    warden = await startWarden({
      upstream,
      database: database.name,
      policy: `
policy:
  rules:
    - name: pages-of-five
      match: { identities: [etl], statementKinds: [read, copy] }
      action: limit
      maxRows: 5
    - name: quick-agents
      match: { identityKinds: [agent] }
      action: limit
      statementTimeoutMs: 300
    - name: agents-may-read
      match: { identityKinds: [agent], statementKinds: [read] }
      action: allow
`,
    });
  });

  after(async () => {
    await warden?.close();
    await database?.drop();
    await upstream?.close();
  });

  it('caps the rows of each result, says so in a notice, and counts only what was delivered', async () => {
    const client = new pg.Client(warden.pgConfig('etl'));
    const notices: string[] = [];
    client.on('notice', (notice) => notices.push(notice.message ?? ''));
    await client.connect();
    const simple = await client.query('SELECT g FROM generate_series(1, 50) g');
    assert.deepEqual(
      simple.rows.map((r) => r.g),
      [1, 2, 3, 4, 5],
    );
    assert.equal(simple.rowCount, 5);
    const extended = await client.query('SELECT g FROM generate_series(1, $1::int) g', [50]);
    assert.equal(extended.rows.length, 5);
    const small = await client.query('SELECT g FROM generate_series(1, 3) g');
    assert.equal(small.rows.length, 3);
    assert.deepEqual(notices, [
      'Warden returned the first 5 of 50 rows (rule "pages-of-five" limits results to 5 rows)',
      'Warden returned the first 5 of 50 rows (rule "pages-of-five" limits results to 5 rows)',
    ]);
    await client.end();
  });

  it('caps COPY TO STDOUT alike, refuses a cursor that would read past the cap, and judges EXECUTE of a batch PREPARE', async () => {
    const client = new pg.Client(warden.pgConfig('etl'));
    client.on('notice', () => {});
    await client.connect();
    const copied = await client.query('COPY (SELECT g FROM generate_series(1, 50) g) TO STDOUT');
    assert.equal(copied.rowCount, 5);
    await client.query('BEGIN');
    await assert.rejects(client.query('DECLARE c CURSOR FOR SELECT g FROM generate_series(1, 50) g'), {
      code: '42501',
    });
    await client.query('ROLLBACK');
    const results = (await client.query(
      'PREPARE p AS SELECT g FROM generate_series(1, 50) g; EXECUTE p',
    )) as unknown as pg.QueryResult[];
    assert.equal(results[1]!.rows.length, 5);
    await client.end();
  });

  it('cancels a statement that outruns its timeout, and the session goes on', async () => {
    const client = new pg.Client(warden.pgConfig('agent'));
    await client.connect();
    await assert.rejects(client.query('SELECT pg_sleep(5)'), (error: Error & { code?: string }) => {
      assert.equal(error.code, '57014');
      assert.match(error.message, /statement timeout \(300 ms, set by a Warden limit rule\)/);
      return true;
    });
    assert.deepEqual((await client.query('SELECT pg_sleep(0.01), 1 AS ok')).rows[0].ok, 1);
    await client.end();
  });
});
