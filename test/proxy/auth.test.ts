import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createApiKey, revokeApiKey } from '../../src/identity/keys.ts';
import { openStore } from '../../src/store/store.ts';
import {
  createTestDatabase,
  findTestServer,
  type TestDatabase,
  type TestServer,
} from '../fixtures/postgres.ts';
import { connectError, startWarden, type WardenHandle } from './support.ts';

describe('who may connect', { timeout: 120_000 }, () => {
  let upstream: TestServer;
  let database: TestDatabase;
  let warden: WardenHandle;

  before(async () => {
    upstream = await findTestServer();
    database = await createTestDatabase(upstream, 'auth');
    warden = await startWarden({
      upstream,
      database: database.name,
      // Small back-off so the test stays quick; its growth is checked in the unit tests.
      extraYaml: 'auth:\n  backoff: { baseMs: 1, maxMs: 5 }',
    });
  });

  after(async () => {
    await warden?.close();
    await database?.drop();
    await upstream?.close();
  });

  it('logs an identity in with its API key over SCRAM; the server sees only the target role', async () => {
    const client = new pg.Client(warden.pgConfig('alice'));
    await client.connect();
    const row = (await client.query('SELECT current_user AS role')).rows[0];
    assert.equal(row.role, upstream.user);
    await client.end();
  });

  it('refuses a wrong key with 28P01 and a hint', async () => {
    const error = await connectError(warden.pgConfig('alice', { password: 'wdn_wrong_key' }));
    assert.equal(error.code, '28P01');
    assert.equal(error.message, 'password authentication failed for identity "alice"');
    assert.match(error.hint ?? '', /warden key create/);
  });

  it('answers an unknown identity exactly like a wrong key, so names cannot be probed', async () => {
    const unknown = await connectError(warden.pgConfig('mallory', { password: 'wdn_guess' }));
    const wrong = await connectError(warden.pgConfig('etl', { password: 'wdn_guess' }));
    assert.equal(unknown.code, '28P01');
    assert.equal(unknown.message.replace('mallory', 'NAME'), wrong.message.replace('etl', 'NAME'));
  });

  it("refuses one identity's key for another identity", async () => {
    const error = await connectError(warden.pgConfig('alice', { password: warden.keys.etl }));
    assert.equal(error.code, '28P01');
  });

  it('accepts any active key of an identity, and refuses a key once revoked', async () => {
    const store = openStore(warden.config.dataDir);
    try {
      const second = createApiKey(store, 'etl', 'second');
      const client = new pg.Client(warden.pgConfig('etl', { password: second.secret }));
      await client.connect();
      await client.end();
      assert.ok(revokeApiKey(store, second.keyId));
      const error = await connectError(warden.pgConfig('etl', { password: second.secret }));
      assert.equal(error.code, '28P01');
      // The first key still works.
      const first = new pg.Client(warden.pgConfig('etl'));
      await first.connect();
      await first.end();
    } finally {
      store.close();
    }
  });

  it('refuses an identity the target does not admit, naming the rule', async () => {
    const error = await connectError(warden.pgConfig('outsider'));
    assert.equal(error.code, '42501');
    assert.equal(error.message, `identity "outsider" may not connect to target "${database.name}"`);
    assert.match(error.hint ?? '', /targets\[\]\.access/);
  });

  it('refuses an unknown target with 3D000 and lists the targets the identity may use', async () => {
    const error = await connectError(warden.pgConfig('alice', { database: 'nope' }));
    assert.equal(error.code, '3D000');
    assert.equal(error.message, 'target "nope" does not exist');
    assert.match(error.hint ?? '', new RegExp(`Targets you may use: ${database.name}`));
  });

  it('refuses a startup parameter that is not a session setting', async () => {
    const error = await connectError({ ...warden.pgConfig('alice'), options: '-D /tmp' } as pg.ClientConfig);
    assert.equal(error.code, '42601');
    assert.match(error.message, /unsupported switch "-D"/);
  });

  it('keeps warden.* settings for Warden and never forwards them', async () => {
    const client = new pg.Client({
      ...warden.pgConfig('etl'),
      options: '-c warden.pipeline=nightly_etl',
    } as pg.ClientConfig);
    await client.connect();
    const result = await client.query("SELECT current_setting('warden.pipeline', true) AS value");
    assert.equal(result.rows[0].value, null);
    await client.end();
  });
});

describe('cleartext login (auth.method: password)', { timeout: 60_000 }, () => {
  let upstream: TestServer;
  let database: TestDatabase;
  let warden: WardenHandle;

  before(async () => {
    upstream = await findTestServer();
    database = await createTestDatabase(upstream, 'auth_cleartext');
    warden = await startWarden({ upstream, database: database.name, extraYaml: 'auth:\n  method: password' });
  });

  after(async () => {
    await warden?.close();
    await database?.drop();
    await upstream?.close();
  });

  it('accepts the key sent in cleartext over loopback, and refuses a wrong one', async () => {
    const client = new pg.Client(warden.pgConfig('agent'));
    await client.connect();
    assert.equal((await client.query('SELECT 1 AS ok')).rows[0].ok, 1);
    await client.end();
    const error = await connectError(warden.pgConfig('agent', { password: 'nope' }));
    assert.equal(error.code, '28P01');
  });
});
