/**
 * Each guardrail and each way of hiding a statement, through real clients
 * (node-postgres in both protocols, postgres.js with cached statements and
 * pipelining, psql), against a real PostgreSQL. The policy refuses the
 * table `secrets`; everything else is the built-in guardrails.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type postgres from 'postgres';
import {
  clientConfig,
  createTestDatabase,
  findTestServer,
  type TestDatabase,
  type TestServer,
} from '../fixtures/postgres.ts';
import { hasBinary, psql, startWarden, type WardenHandle } from '../proxy/support.ts';

const hasPsql = await hasBinary('psql');

const POLICY = `
policy:
  rules:
    - name: no-secrets
      match: { tables: ['public.secrets'] }
      action: deny
      message: secrets are off limits
`;

describe('guardrails and evasions through real clients', { timeout: 120_000 }, () => {
  let upstream: TestServer;
  let database: TestDatabase;
  let warden: WardenHandle;
  let admin: pg.Client;
  let client: pg.Client;

  before(async () => {
    upstream = await findTestServer();
    database = await createTestDatabase(upstream, 'evasion');
    admin = new pg.Client(clientConfig(upstream, database.name));
    await admin.connect();
    await admin.query(`CREATE TABLE secrets (x int, ssn text);
      INSERT INTO secrets VALUES (1, '078-05-1120');
      CREATE TABLE t (id int);
      INSERT INTO t VALUES (1), (2)`);
    warden = await startWarden({ upstream, database: database.name, policy: POLICY });
    client = new pg.Client(warden.pgConfig('alice'));
    client.on('notice', () => {});
    await client.connect();
  });

  after(async () => {
    await client?.end();
    await admin?.end();
    await warden?.close();
    await database?.drop();
    await upstream?.close();
  });

  /** Asserts `sql` is refused with 42501 by `rule`, and that the session still answers afterwards. */
  async function refused(sql: string, rule: string, values?: unknown[]) {
    await assert.rejects(
      client.query(sql, values),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, '42501', `${sql}: ${error.message}`);
        assert.ok(
          error.message.includes(`"${rule}"`),
          `${sql}: expected rule ${rule}, got: ${error.message}`,
        );
        return true;
      },
      sql,
    );
    assert.equal((await client.query('SELECT 1 AS ok')).rows[0].ok, 1);
  }

  it('refuses each built-in guardrail', async () => {
    const cases: [string, string][] = [
      ['DELETE FROM t', 'guardrail:write-without-where'],
      ['UPDATE t SET id = 0 WHERE 1 = 1', 'guardrail:write-without-where'],
      ["UPDATE t SET id = 0 WHERE 'a' <> 'b' OR id = 1", 'guardrail:write-without-where'],
      ['DELETE FROM t WHERE EXISTS (SELECT 1)', 'guardrail:write-without-where'],
      ['DROP TABLE t', 'guardrail:destructive-ddl'],
      ['TRUNCATE t', 'guardrail:destructive-ddl'],
      ['ALTER TABLE t ADD COLUMN y int', 'guardrail:destructive-ddl'],
      ['GRANT SELECT ON t TO PUBLIC', 'guardrail:role-management'],
      ['CREATE ROLE sneaky LOGIN SUPERUSER', 'guardrail:role-management'],
      ["COPY t TO PROGRAM 'id'", 'guardrail:copy-program-or-server-file'],
      ["COPY t FROM '/etc/passwd'", 'guardrail:copy-program-or-server-file'],
      ["SELECT pg_read_file('/etc/passwd')", 'guardrail:dangerous-functions'],
      ["SELECT lo_import('/etc/passwd')", 'guardrail:dangerous-functions'],
      ['SELECT pg_terminate_backend(pg_backend_pid())', 'guardrail:dangerous-functions'],
      ["SELECT set_config('role', 'postgres', false)", 'guardrail:dangerous-functions'],
      ["SELECT query_to_xml('SELECT * FROM secrets', true, true, '')", 'guardrail:dangerous-functions'],
      ['SELECT public.anything_at_all()', 'guardrail:opaque-functions'],
      ['DO $$ BEGIN DELETE FROM t; END $$', 'guardrail:opaque-functions'],
      ["ALTER SYSTEM SET log_statement = 'none'", 'guardrail:alter-system'],
      ['SET ROLE postgres', 'guardrail:set-role'],
      ['SET SESSION AUTHORIZATION postgres', 'guardrail:set-role'],
      ['EXPLAIN ANALYZE DELETE FROM t', 'guardrail:write-without-where'],
      ['WITH gone AS (DELETE FROM t RETURNING *) SELECT count(*) FROM gone', 'guardrail:write-without-where'],
    ];
    for (const [sql, rule] of cases) await refused(sql, rule);
    // Nothing ran: the rows are all there.
    assert.equal((await admin.query('SELECT count(*)::int AS n FROM t')).rows[0].n, 2);
  });

  it('sees the table however it is written', async () => {
    for (const sql of [
      'select * from SECRETS',
      'SELECT * FROM "secrets"',
      'SELECT * FROM public."secrets"',
      'SELECT/**/x/* a comment */FROM/**/secrets',
      '-- a comment\nSELECT x FROM secrets',
      'SELECT * FROM U&"\\0073ecrets"',
      'SELECT (SELECT x FROM secrets LIMIT 1)',
      'SELECT 1 WHERE EXISTS (SELECT 1 FROM secrets)',
      'WITH s AS (SELECT * FROM secrets) SELECT count(*) FROM s',
      'SELECT t.id FROM t JOIN secrets s ON s.x = t.id',
      'SELECT 1; SELECT ssn FROM secrets',
      'SELECT * INTO stolen FROM secrets',
      'CREATE TABLE stolen AS SELECT * FROM secrets',
      'COPY secrets TO STDOUT',
      'COPY (SELECT ssn FROM secrets) TO STDOUT',
      'PREPARE steal AS SELECT * FROM secrets',
      'EXPLAIN ANALYZE SELECT * FROM secrets',
    ]) {
      await refused(sql, 'no-secrets');
    }
    // A string that merely mentions the table is just a string.
    assert.equal((await client.query('SELECT $$ SELECT * FROM secrets $$ AS s')).rows.length, 1);
  });

  it('follows search_path: an unqualified name is judged in every schema the session has named', async () => {
    await admin.query(
      'CREATE SCHEMA vault; CREATE TABLE vault.secrets (x int); CREATE TABLE vault.open (x int)',
    );
    // A deny rule on vault.* that a path change undone by ROLLBACK or SET LOCAL must not slip past.
    const vaulted = await startWarden({
      upstream,
      database: database.name,
      policy: `${POLICY}    - name: no-vault\n      match: { tables: ['vault.*'] }\n      action: deny\n`,
    });
    try {
      const other = new pg.Client(vaulted.pgConfig('alice'));
      await other.connect();
      await assert.rejects(other.query('SELECT * FROM vault.open'), { code: '42501' });
      assert.equal((await other.query('SELECT count(*)::int AS n FROM t')).rows[0].n, 2);
      await other.query('SET search_path = vault, public');
      await assert.rejects(other.query('SELECT * FROM open'), { code: '42501' });
      for (const undo of [
        'BEGIN; SET LOCAL search_path = public; COMMIT',
        'BEGIN; SET search_path = public; ROLLBACK',
      ]) {
        await other.query(undo);
        // The server is back on vault, public (or never left it): "open" is still vault.open.
        await assert.rejects(other.query('SELECT * FROM open'), { code: '42501' }, undo);
      }
      await other.end();
      // Every search_path of the startup packet counts, whichever one PostgreSQL applies.
      const sneaky = new pg.Client({
        ...vaulted.pgConfig('alice'),
        options: '-c search_path=vault',
      } as pg.ClientConfig);
      await sneaky.connect();
      await assert.rejects(sneaky.query('SELECT * FROM open'), { code: '42501' });
      await sneaky.end();
    } finally {
      await vaulted.close();
    }
  });

  it('judges the extended protocol: a refused Parse, then the session goes on', async () => {
    await refused('SELECT ssn FROM secrets WHERE x = $1', 'no-secrets', [1]);
    await refused('DELETE FROM t WHERE $1::int IS NOT NULL', 'guardrail:write-without-where', [1]);
    const rows = await client.query('SELECT id FROM t WHERE id = $1', [2]);
    assert.deepEqual(rows.rows, [{ id: 2 }]);
  });

  it('judges EXECUTE as what it runs, and forgets a DEALLOCATEd name', async () => {
    await client.query('PREPARE fine (int) AS SELECT id FROM t WHERE id = $1');
    assert.deepEqual((await client.query('EXECUTE fine(1)')).rows, [{ id: 1 }]);
    await client.query('DEALLOCATE fine');
    await assert.rejects(client.query('EXECUTE fine(1)'), { code: '26000' });
    await assert.rejects(client.query('EXECUTE never_prepared'), { code: '26000' });
  });

  it('refuses a role in the startup options, judged as SET', async () => {
    const sneaky = new pg.Client({
      ...warden.pgConfig('alice'),
      options: '-c role=postgres',
    } as pg.ClientConfig);
    await assert.rejects(sneaky.connect(), (error: Error & { code?: string }) => {
      assert.equal(error.code, '42501');
      assert.match(error.message, /guardrail:set-role/);
      return true;
    });
  });

  it('postgres.js: cached statements and pipelined queries, one refused, the others answered', async () => {
    const sql = warden.postgresJs('etl');
    try {
      const results = await Promise.allSettled([
        sql`SELECT id FROM t WHERE id = ${1}`,
        sql`SELECT ssn FROM secrets WHERE x = ${1}`,
        sql`SELECT id FROM t WHERE id = ${2}`,
      ]);
      assert.equal(results[0].status, 'fulfilled');
      assert.equal(results[1].status, 'rejected');
      assert.equal(results[2].status, 'fulfilled');
      assert.equal((results[1] as PromiseRejectedResult).reason.code, '42501');
      assert.deepEqual(
        [...(results[2] as PromiseFulfilledResult<postgres.RowList<postgres.Row[]>>).value],
        [{ id: 2 }],
      );
      // The same statement again (postgres.js reuses its prepared statement): same answers.
      await assert.rejects(sql`SELECT ssn FROM secrets WHERE x = ${1}`, { code: '42501' });
      assert.deepEqual([...(await sql`SELECT id FROM t WHERE id = ${1}`)], [{ id: 1 }]);
      const inTransaction = sql.begin(async (tx) => {
        await tx`INSERT INTO t VALUES (${99})`;
        await tx`SELECT ssn FROM secrets`;
      });
      await assert.rejects(inTransaction, { code: '42501' });
      assert.equal((await admin.query('SELECT count(*)::int AS n FROM t WHERE id = 99')).rows[0].n, 0);
    } finally {
      await sql.end({ timeout: 5 });
    }
  });

  it('psql: a refusal inside a transaction fails it; COMMIT rolls back; \\copy is judged', {
    skip: !hasPsql && 'psql is not installed (Debian package postgresql-client)',
  }, async () => {
    const result = await psql(warden.conninfo('alice'), [], {
      input: [
        'BEGIN;',
        'INSERT INTO t VALUES (42);',
        'SELECT ssn FROM secrets;',
        'COMMIT;',
        'SELECT count(*) FROM t WHERE id = 42;',
        '\\copy secrets to stdout',
        'SELECT 7;',
      ].join('\n'),
    });
    assert.match(result.stderr, /Warden refused this statement by rule "no-secrets"/);
    assert.deepEqual(result.stdout.trim().split('\n'), ['BEGIN', 'INSERT 0 1', 'ROLLBACK', '0', '7']);
    assert.equal((result.stderr.match(/no-secrets/g) ?? []).length, 2);
  });
});
