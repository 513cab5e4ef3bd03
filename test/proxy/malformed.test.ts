import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { Code } from '../../src/protocol/postgres/messages.ts';
import { writeStartupFamily } from '../../src/protocol/postgres/startup.ts';
import { Writer } from '../../src/protocol/postgres/writer.ts';
import {
  createTestDatabase,
  findTestServer,
  type TestDatabase,
  type TestServer,
} from '../fixtures/postgres.ts';
import { RawClient } from './raw-client.ts';
import { startWarden, type WardenHandle } from './support.ts';

describe('malformed input ends only the connection it came on', { timeout: 120_000 }, () => {
  let upstream: TestServer;
  let database: TestDatabase;
  let warden: WardenHandle;
  let bystander: pg.Client;

  const login = () => RawClient.login(warden.port, 'etl', database.name, warden.keys.etl!);

  async function expectFatal(client: RawClient, sqlstate: string, message: RegExp): Promise<void> {
    const messages = await client.drain();
    const error = messages.find((m) => m.type === 'ErrorResponse');
    assert.ok(
      error && error.type === 'ErrorResponse',
      `an ErrorResponse before close, got ${JSON.stringify(messages.map((m) => m.type))}`,
    );
    assert.equal(error.fields.S, 'FATAL');
    assert.equal(error.fields.C, sqlstate);
    assert.match(error.fields.M ?? '', message);
    await client.closed();
  }

  before(async () => {
    upstream = await findTestServer();
    database = await createTestDatabase(upstream, 'malformed');
    warden = await startWarden({ upstream, database: database.name, listenYaml: '  maxMessageSize: 64kB' });
    bystander = new pg.Client(warden.pgConfig('alice'));
    await bystander.connect();
  });

  after(async () => {
    // Every case above must have left the bystander's session untouched.
    await bystander?.end();
    await warden?.close();
    await database?.drop();
    await upstream?.close();
  });

  it('refuses an unknown message type after login with 08P01', async () => {
    const client = await login();
    client.write(Buffer.from([0x7a /* z */, 0, 0, 0, 4]));
    await expectFatal(client, '08P01', /unexpected message type 'z'/);
    assert.equal((await bystander.query('SELECT 1 AS ok')).rows[0].ok, 1);
  });

  it('refuses a length field below 4', async () => {
    const client = await login();
    client.write(Buffer.from([Code.Query, 0, 0, 0, 2]));
    await expectFatal(client, '08P01', /invalid length 2/);
  });

  it('refuses a message above listen.maxMessageSize before buffering it', async () => {
    const client = await login();
    const header = Buffer.from([Code.Query, 0, 0, 0, 0]);
    header.writeInt32BE(10_000_000, 1);
    client.write(header);
    await expectFatal(client, '08P01', /exceeds the limit of 65536 \(listen\.maxMessageSize\)/);
  });

  it('refuses a Query whose string has no terminating zero', async () => {
    const client = await login();
    const body = Buffer.from('SELECT 1');
    const frame = Buffer.concat([Buffer.from([Code.Query, 0, 0, 0, 0]), body]);
    frame.writeInt32BE(4 + body.length, 1);
    client.write(frame);
    await expectFatal(client, '08P01', /without terminating zero/);
  });

  it('refuses an absurd startup packet length', async () => {
    const client = await RawClient.connect(warden.port);
    client.reader.framer.typed = true;
    client.write(Buffer.from([0, 0, 0x4e, 0x20, 0, 3, 0, 0])); // 20000 bytes announced
    await expectFatal(client, '08P01', /invalid startup packet length 20000/);
  });

  it('refuses an HTTP request sent to the PostgreSQL port', async () => {
    const client = await RawClient.connect(warden.port);
    client.write(Buffer.from('GET / HTTP/1.1\r\nHost: warden\r\n\r\n'));
    await expectFatal(client, '08P01', /invalid startup packet length/);
  });

  it('refuses a protocol 2.0 startup packet', async () => {
    const client = await RawClient.connect(warden.port);
    const packet = writeStartupFamily(new Writer(), {
      type: 'StartupMessage',
      major: 3,
      minor: 0,
      parameters: [['user', 'etl']],
    }).flush();
    packet.writeInt32BE(2 << 16, 4);
    client.write(packet);
    await expectFatal(client, '08P01', /unsupported frontend protocol 2\.0/);
  });

  it('refuses a large message before login with the tighter pre-login limit', async () => {
    const client = await RawClient.start(warden.port, [
      ['user', 'etl'],
      ['database', database.name],
    ]);
    assert.equal((await client.next()).type, 'AuthenticationSASL');
    const header = Buffer.from([Code.Password, 0, 0, 0, 0]);
    header.writeInt32BE(40 * 1024 * 1024, 1);
    client.write(header);
    await expectFatal(client, '08P01', /exceeds the limit of 65536 \(the limit before login\)/);
  });

  it('refuses a Query sent where the SASL response belongs', async () => {
    const client = await RawClient.start(warden.port, [
      ['user', 'etl'],
      ['database', database.name],
    ]);
    assert.equal((await client.next()).type, 'AuthenticationSASL');
    client.send({ type: 'Query', sql: 'SELECT 1' });
    await expectFatal(client, '08P01', /expected a password message/);
  });

  it('refuses a replication connection', async () => {
    const client = await RawClient.start(warden.port, [
      ['user', 'etl'],
      ['database', database.name],
      ['replication', 'database'],
    ]);
    await expectFatal(client, '0A000', /replication connections are not supported/);
  });

  it('reassembles messages that arrive one byte at a time', async () => {
    const client = await login();
    const query = Buffer.from([Code.Query, 0, 0, 0, 0, ...Buffer.from("SELECT 'split' AS s\0")]);
    query.writeInt32BE(query.length - 1, 1);
    for (const byte of query) {
      client.write(Buffer.from([byte]));
      await new Promise((resolve) => setImmediate(resolve));
    }
    const messages = await client.untilReady();
    const row = messages.find((m) => m.type === 'DataRow');
    assert.ok(row && row.type === 'DataRow');
    assert.equal(row.values[0]?.toString(), 'split');
    client.close();
  });

  it('keeps other sessions working and leaks no session after all of the above', async () => {
    assert.equal((await bystander.query('SELECT 2 AS ok')).rows[0].ok, 2);
    // Only the bystander is left.
    for (let i = 0; i < 50 && warden.server.sessions.size > 1; i++)
      await new Promise((r) => setTimeout(r, 20));
    assert.equal(warden.server.sessions.size, 1);
  });
});
