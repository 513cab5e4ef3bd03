import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  createTestDatabase,
  findTestServer,
  type TestDatabase,
  type TestServer,
} from '../fixtures/postgres.ts';
import { directConninfo, hasBinary, psql, startWarden, type WardenHandle } from './support.ts';

const hasPsql = await hasBinary('psql');

describe('psql through Warden (simple protocol)', {
  skip: hasPsql ? false : 'psql is not installed (Debian postgresql-client)',
  timeout: 120_000,
}, () => {
  let upstream: TestServer;
  let direct: TestDatabase;
  let proxied: TestDatabase;
  let warden: WardenHandle;

  before(async () => {
    upstream = await findTestServer();
    // Two databases so that the corpus starts from the same empty state on both paths.
    direct = await createTestDatabase(upstream, 'psql_direct');
    proxied = await createTestDatabase(upstream, 'psql_proxied');
    warden = await startWarden({ upstream, database: proxied.name });
  });

  after(async () => {
    await warden?.close();
    await direct?.drop();
    await proxied?.drop();
    await upstream?.close();
  });

  it('runs a SQL corpus with output identical to a direct connection', async () => {
    const file = 'test/proxy/corpus/basic.sql';
    const viaDirect = await psql(directConninfo(upstream, direct.name), ['-f', file]);
    const viaWarden = await psql(warden.conninfo('alice'), ['-f', file]);
    assert.equal(viaWarden.stdout, viaDirect.stdout);
    assert.equal(viaWarden.stderr, viaDirect.stderr);
    assert.match(viaDirect.stderr, /division by zero/, 'the corpus exercises errors');
    assert.match(viaDirect.stdout, /three, with comma/, 'the corpus exercises \\copy');
  });

  it('sends a multi-statement -c as one Query and returns every result', async () => {
    const sql =
      "SELECT 1; SELECT 'two'; CREATE TEMP TABLE x (a int); INSERT INTO x VALUES (3); SELECT a FROM x";
    const viaWarden = await psql(warden.conninfo('etl'), ['-c', sql]);
    const viaDirect = await psql(directConninfo(upstream, direct.name), ['-c', sql]);
    assert.equal(viaWarden.code, 0, viaWarden.stderr);
    assert.equal(viaWarden.stdout, viaDirect.stdout);
    // psql 15+ prints the result of every statement in the Query.
    assert.equal(viaWarden.stdout, '1\ntwo\nCREATE TABLE\nINSERT 0 1\n3\n');
  });

  it('leaves a multi-statement Query with an error as the server does (implicit transaction rolled back)', async () => {
    const setup = await psql(warden.conninfo('alice'), ['-c', 'CREATE TABLE implicit_tx (a int)']);
    assert.equal(setup.code, 0, setup.stderr);
    const failed = await psql(warden.conninfo('alice'), [
      '-c',
      'INSERT INTO implicit_tx VALUES (1); SELECT 1/0',
    ]);
    assert.match(failed.stderr, /division by zero/);
    const count = await psql(warden.conninfo('alice'), ['-c', 'SELECT count(*) FROM implicit_tx']);
    assert.equal(count.stdout, '0\n');
  });

  it('answers an empty query as the server does', async () => {
    const viaWarden = await psql(warden.conninfo('alice'), [
      '-c',
      ' ',
      '-c',
      '-- only a comment',
      '-c',
      'SELECT 1',
    ]);
    assert.equal(viaWarden.code, 0, viaWarden.stderr);
    assert.equal(viaWarden.stdout, '1\n');
  });

  it('reports the identity-aware session settings: application_name and options reach the server', async () => {
    const result = await psql(
      warden.conninfo(
        'alice',
        "application_name=reporting options='-c search_path=pg_catalog -c statement_timeout=1234'",
      ),
      ['-c', 'SHOW application_name', '-c', 'SHOW search_path', '-c', 'SHOW statement_timeout'],
    );
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'reporting\npg_catalog\n1234ms\n');
  });

  it('passes FunctionCall messages (large objects through the fastpath interface) and their results', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'warden-lo-'));
    try {
      const original = join(dir, 'original.bin');
      const exported = join(dir, 'exported.bin');
      writeFileSync(original, randomBytes(300_000));
      const imported = await psql(warden.conninfo('etl'), ['-c', `\\lo_import ${original}`]);
      assert.equal(imported.code, 0, imported.stderr);
      const oid = imported.stdout.match(/lo_import (\d+)/)?.[1];
      assert.ok(oid, imported.stdout);
      const done = await psql(warden.conninfo('etl'), [
        '-c',
        `\\lo_export ${oid} ${exported}`,
        '-c',
        `\\lo_unlink ${oid}`,
      ]);
      assert.equal(done.code, 0, done.stderr);
      assert.deepEqual(readFileSync(exported), readFileSync(original));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
