import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import {
  clientConfig,
  createTestDatabase,
  findTestServer,
  type TestDatabase,
  type TestServer,
} from '../fixtures/postgres.ts';
import { startWarden, type WardenHandle } from './support.ts';

describe('node-postgres through Warden (extended protocol)', { timeout: 120_000 }, () => {
  let upstream: TestServer;
  let database: TestDatabase;
  let warden: WardenHandle;
  const clients: pg.Client[] = [];

  async function connect(identity = 'etl'): Promise<pg.Client> {
    const client = new pg.Client(warden.pgConfig(identity));
    client.on('error', () => {});
    await client.connect();
    clients.push(client);
    return client;
  }

  before(async () => {
    upstream = await findTestServer();
    database = await createTestDatabase(upstream, 'node_pg');
    warden = await startWarden({ upstream, database: database.name });
    const setup = await connect();
    await setup.query('CREATE TABLE items (id int PRIMARY KEY, label text, payload bytea, price numeric)');
  });

  after(async () => {
    await Promise.all(clients.map((client) => client.end().catch(() => {})));
    await warden?.close();
    await database?.drop();
    await upstream?.close();
  });

  it('runs parameterised statements with text, binary and NULL parameters', async () => {
    const client = await connect();
    const payload = Buffer.from([0, 1, 2, 254, 255]);
    await client.query('INSERT INTO items VALUES ($1, $2, $3, $4)', [1, 'first', payload, '12.50']);
    await client.query('INSERT INTO items VALUES ($1, $2, $3, $4)', [2, null, null, null]);
    const result = await client.query(
      'SELECT id, label, payload, price FROM items WHERE id = ANY($1) ORDER BY id',
      [[1, 2]],
    );
    assert.deepEqual(result.rows, [
      { id: 1, label: 'first', payload, price: '12.50' },
      { id: 2, label: null, payload: null, price: null },
    ]);
  });

  it('asks for binary results and gets the same values as a direct connection', async () => {
    const viaWarden = await connect();
    const direct = new pg.Client(clientConfig(upstream, database.name));
    await direct.connect();
    try {
      const query = {
        text: 'SELECT $1::int4 AS n, now() - now() AS zero, $2::bytea AS b',
        values: [7, Buffer.from('ab')],
        binary: true,
      };
      const a = await viaWarden.query(query);
      const b = await direct.query(query);
      assert.deepEqual(a.rows, b.rows);
      assert.deepEqual(
        a.fields.map((field) => [field.name, field.dataTypeID, field.format]),
        b.fields.map((field) => [field.name, field.dataTypeID, field.format]),
      );
    } finally {
      await direct.end();
    }
  });

  it('reuses a named prepared statement across executions', async () => {
    const client = await connect();
    for (let i = 10; i < 20; i++) {
      await client.query({
        name: 'insert-item',
        text: 'INSERT INTO items (id, label) VALUES ($1, $2)',
        values: [i, `item ${i}`],
      });
    }
    const count = await client.query({
      name: 'count-items',
      text: 'SELECT count(*)::int AS n FROM items WHERE id >= $1',
      values: [10],
    });
    assert.equal(count.rows[0].n, 10);
  });

  it('reports a server error in the extended protocol and recovers at Sync', async () => {
    const client = await connect();
    await assert.rejects(client.query('SELECT $1::int / 0', [1]), { code: '22012' });
    await assert.rejects(client.query('SELECT * FROM no_such_table WHERE id = $1', [1]), { code: '42P01' });
    const after = await client.query('SELECT $1::text AS ok', ['still working']);
    assert.equal(after.rows[0].ok, 'still working');
  });

  it('keeps a transaction failed after an error until ROLLBACK, as the server does', async () => {
    const client = await connect();
    await client.query('BEGIN');
    await client.query('INSERT INTO items (id, label) VALUES ($1, $2)', [100, 'in tx']);
    await assert.rejects(client.query('SELECT 1/0'), { code: '22012' });
    await assert.rejects(client.query('SELECT 1'), { code: '25P02' });
    await client.query('ROLLBACK');
    const result = await client.query('SELECT count(*)::int AS n FROM items WHERE id = 100');
    assert.equal(result.rows[0].n, 0);
  });

  it('streams COPY FROM STDIN and COPY TO STDOUT with pg-copy-streams', async () => {
    const client = await connect();
    await client.query('CREATE TABLE copy_target (id int, body text)');
    const rows = Array.from({ length: 20_000 }, (_, i) => `${i}\tline ${i} ${'x'.repeat(i % 50)}\n`);
    await pipeline(Readable.from(rows), client.query(copyFrom('COPY copy_target FROM STDIN')));
    const count = await client.query('SELECT count(*)::int AS n, sum(id)::bigint AS s FROM copy_target');
    assert.deepEqual(count.rows[0], { n: 20_000, s: String((19_999 * 20_000) / 2) });
    const chunks: Buffer[] = [];
    await pipeline(
      client.query(copyTo('COPY (SELECT id, body FROM copy_target ORDER BY id) TO STDOUT')),
      new Writable({
        write(chunk, _encoding, callback) {
          chunks.push(chunk);
          callback();
        },
      }),
    );
    assert.equal(Buffer.concat(chunks).toString(), rows.join(''));
  });

  it('reports a failed COPY FROM STDIN and goes on', async () => {
    const client = await connect();
    await client.query('CREATE TABLE copy_strict (id int)');
    await assert.rejects(
      pipeline(
        Readable.from(['1\n', 'not a number\n']),
        client.query(copyFrom('COPY copy_strict FROM STDIN')),
      ),
      { code: '22P02' },
    );
    const result = await client.query('SELECT count(*)::int AS n FROM copy_strict');
    assert.equal(result.rows[0].n, 0);
  });

  it('delivers LISTEN/NOTIFY notifications between two Warden sessions', async () => {
    const listener = await connect('alice');
    const notifier = await connect('etl');
    await listener.query('LISTEN warden_channel');
    const received = new Promise<pg.Notification>((resolve) => listener.once('notification', resolve));
    await notifier.query("SELECT pg_notify('warden_channel', 'hello through warden')");
    const notification = await received;
    assert.equal(notification.channel, 'warden_channel');
    assert.equal(notification.payload, 'hello through warden');
  });

  it('forwards NoticeResponse messages', async () => {
    const client = await connect();
    const notice = new Promise<Error & { message: string }>((resolve) => client.once('notice', resolve));
    await client.query("DO $$ BEGIN RAISE NOTICE 'heads up'; END $$");
    assert.equal((await notice).message, 'heads up');
  });

  /**
   * Sends a CancelRequest with node-postgres' own Connection (Client.cancel
   * no longer cancels a query already on the wire in pg 8.23).
   */
  function sendCancel(processId: number, secretKey: number): Promise<void> {
    const PgConnection = (pg as unknown as { Connection: new () => CancelConnection }).Connection;
    const connection = new PgConnection();
    return new Promise((resolve, reject) => {
      connection.on('connect', () => {
        connection.cancel(processId, secretKey);
      });
      connection.on('end', () => resolve());
      connection.on('error', reject);
      connection.connect(warden.port, '127.0.0.1');
    });
  }

  interface CancelConnection {
    connect(port: number, host: string): void;
    cancel(processId: number, secretKey: number): void;
    on(event: string, listener: (...args: unknown[]) => void): void;
  }

  const keyOf = (client: pg.Client) => client as unknown as { processID: number; secretKey: number };

  it('cancels a running query with the cancel key Warden handed out', async () => {
    const client = await connect();
    const started = Date.now();
    const running = client.query('SELECT pg_sleep(30)');
    await new Promise((resolve) => setTimeout(resolve, 300));
    await sendCancel(keyOf(client).processID, keyOf(client).secretKey);
    await assert.rejects(running, { code: '57014' });
    assert.ok(Date.now() - started < 30_000, 'the sleep was interrupted');
    const after = await client.query('SELECT 1 AS still');
    assert.equal(after.rows[0].still, 1);
  });

  it("hands out its own cancel key, not the server's", async () => {
    const client = await connect();
    const serverPid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    const handedOut = keyOf(client).processID;
    assert.notEqual(handedOut, serverPid);
  });

  it('ignores a cancel request whose key matches no session', async () => {
    const client = await connect();
    const running = client.query('SELECT pg_sleep(0.5) AS slept');
    await new Promise((resolve) => setTimeout(resolve, 100));
    await sendCancel(keyOf(client).processID, keyOf(client).secretKey ^ 1);
    const result = await running;
    assert.equal(result.rowCount, 1);
  });
});
