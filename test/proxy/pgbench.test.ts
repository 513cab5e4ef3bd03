import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  createTestDatabase,
  findTestServer,
  type TestDatabase,
  type TestServer,
} from '../fixtures/postgres.ts';
import { hasBinary, run, startWarden, type WardenHandle } from './support.ts';

const hasPgbench = await hasBinary('pgbench');

describe('pgbench through Warden', {
  skip: hasPgbench ? false : 'pgbench is not installed (Debian postgresql-client)',
  timeout: 180_000,
}, () => {
  let upstream: TestServer;
  let database: TestDatabase;
  let warden: WardenHandle;

  const env = () => ({ PGPASSWORD: warden.keys.etl, PGSSLMODE: 'disable' });
  const target = () => ['-h', '127.0.0.1', '-p', String(warden.port), '-U', 'etl', database.name];

  before(async () => {
    upstream = await findTestServer();
    database = await createTestDatabase(upstream, 'pgbench');
    warden = await startWarden({ upstream, database: database.name });
  });

  after(async () => {
    await warden?.close();
    await database?.drop();
    await upstream?.close();
  });

  it('initialises its tables through Warden (COPY and DDL)', async () => {
    const result = await run('pgbench', ['-i', '-s', '1', '-q', ...target()], { env: env() });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /done/);
  });

  for (const mode of ['simple', 'extended', 'prepared'] as const) {
    it(`runs the TPC-B-like script with ${mode} protocol and 4 clients without a failed transaction`, async () => {
      const result = await run('pgbench', ['-n', '-c', '4', '-j', '2', '-t', '50', '-M', mode, ...target()], {
        env: env(),
      });
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /number of transactions actually processed: 200\/200/);
      assert.match(result.stdout, /number of failed transactions: 0 /);
    });
  }

  it('leaves balances consistent: the sum of branch balances equals the sum of history deltas', async () => {
    const check = await run('psql', [
      '-X',
      '-w',
      '-A',
      '-t',
      '-d',
      `host=127.0.0.1 port=${warden.port} user=etl dbname=${database.name} password=${warden.keys.etl}`,
      '-c',
      'SELECT (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT sum(delta) FROM pgbench_history)',
    ]);
    assert.equal(check.stdout.trim(), 't', check.stderr);
  });
});
