import assert from 'node:assert/strict';
import net from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import {
  clientConfig,
  createTestDatabase,
  findTestServer,
  type TestDatabase,
  type TestServer,
} from '../fixtures/postgres.ts';
import { RawClient } from './raw-client.ts';
import { startWarden, type WardenHandle, waitFor } from './support.ts';

/** A TCP relay in front of the real server whose connections a test can cut at any byte. */
async function startCuttableRelay(
  upstream: TestServer,
): Promise<{ port: number; cutAll(): void; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const server = net.connect({ host: upstream.host, port: upstream.port });
    for (const socket of [client, server]) {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => sockets.delete(socket));
    }
    client.pipe(server).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    cutAll: () => {
      for (const socket of sockets) socket.destroy();
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe('when the upstream fails', { timeout: 120_000 }, () => {
  let upstream: TestServer;
  let database: TestDatabase;
  let warden: WardenHandle;
  let relay: Awaited<ReturnType<typeof startCuttableRelay>>;
  let viaRelay: WardenHandle;
  let admin: pg.Client;

  before(async () => {
    upstream = await findTestServer();
    database = await createTestDatabase(upstream, 'upstream_failure');
    warden = await startWarden({ upstream, database: database.name });
    relay = await startCuttableRelay(upstream);
    viaRelay = await startWarden({ upstream: { ...upstream, port: relay.port }, database: database.name });
    admin = new pg.Client(clientConfig(upstream, database.name));
    await admin.connect();
    await admin.query('CREATE TABLE sink (line text)');
  });

  after(async () => {
    await admin?.end();
    await viaRelay?.close();
    await relay?.close();
    await warden?.close();
    await database?.drop();
    await upstream?.close();
  });

  it("passes the server's FATAL on when its backend is terminated mid-query, and other sessions go on", async () => {
    const victim = new pg.Client(warden.pgConfig('etl'));
    victim.on('error', () => {});
    const other = new pg.Client(warden.pgConfig('alice'));
    await victim.connect();
    await other.connect();
    const pid = (await victim.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    // Expected before the backend goes: its error may arrive before the terminating query returns.
    const refused = assert.rejects(victim.query('SELECT pg_sleep(20)'), { code: '57P01' });
    await new Promise((resolve) => setTimeout(resolve, 200));
    await admin.query('SELECT pg_terminate_backend($1)', [pid]);
    await refused;
    assert.equal((await other.query('SELECT 1 AS ok')).rows[0].ok, 1);
    await other.end();
    await waitFor(() => warden.server.sessions.size === 0, 'both sessions to be released');
  });

  it('tells the client 08006 naming the target when the server connection drops between messages', async () => {
    const client = await RawClient.login(viaRelay.port, 'etl', database.name, viaRelay.keys.etl!);
    client.send({ type: 'Query', sql: 'SELECT pg_sleep(20)' });
    await waitFor(() => viaRelay.server.sessions.size === 1, 'the session');
    await new Promise((resolve) => setTimeout(resolve, 200));
    relay.cutAll();
    const messages = await client.drain();
    const error = messages.find((m) => m.type === 'ErrorResponse');
    assert.ok(error && error.type === 'ErrorResponse');
    assert.equal(error.fields.C, '08006');
    assert.match(error.fields.M ?? '', new RegExp(`target "${database.name}" was lost`));
    await waitFor(() => viaRelay.server.sessions.size === 0, 'the session to be released');
  });

  it('closes the client connection when the server connection drops in the middle of a result', async () => {
    const client = await RawClient.login(viaRelay.port, 'etl', database.name, viaRelay.keys.etl!);
    client.send({ type: 'Query', sql: "SELECT repeat('z', 100000) FROM generate_series(1, 100000)" });
    const first = await client.next();
    assert.equal(first.type, 'RowDescription');
    relay.cutAll();
    const rest = await client.drain();
    // No ErrorResponse can be inserted inside a half-sent DataRow: the close is the signal.
    assert.ok(!rest.some((m) => m.type === 'ReadyForQuery'), 'the result did not complete');
    await client.closed();
    await waitFor(() => viaRelay.server.sessions.size === 0, 'the session to be released');
  });

  it('fails a COPY FROM STDIN whose server connection drops, without disturbing Warden', async () => {
    const client = new pg.Client(viaRelay.pgConfig('etl'));
    client.on('error', () => {});
    await client.connect();
    const endless = new Readable({
      read() {
        setTimeout(() => this.push('a line of copy data\n'.repeat(100)), 5);
      },
    });
    const copying = pipeline(endless, client.query(copyFrom('COPY sink FROM STDIN')));
    await new Promise((resolve) => setTimeout(resolve, 300));
    relay.cutAll();
    await assert.rejects(copying);
    await waitFor(() => viaRelay.server.sessions.size === 0, 'the session to be released');
    const fresh = new pg.Client(viaRelay.pgConfig('etl'));
    await fresh.connect();
    assert.equal((await fresh.query('SELECT 3 AS ok')).rows[0].ok, 3);
    await fresh.end();
  });

  it('refuses the login with 08006 naming the target when the server is unreachable', async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const nowhere = await startWarden({
      upstream: { ...upstream, port: closedPort },
      database: database.name,
    });
    try {
      const client = new pg.Client(nowhere.pgConfig('etl'));
      await assert.rejects(client.connect(), (error: Error & { code?: string }) => {
        assert.equal(error.code, '08006');
        assert.match(
          error.message,
          new RegExp(
            `cannot reach target "${database.name}" \\(127\\.0\\.0\\.1:${closedPort}\\): ECONNREFUSED`,
          ),
        );
        return true;
      });
    } finally {
      await nowhere.close();
    }
  });

  it('releases the server backend when the client leaves while Warden is still logging in upstream', async () => {
    // A relay that takes its time to connect, so the client can leave during the upstream login.
    const slow = net.createServer((client) => {
      client.on('error', () => {});
      setTimeout(() => {
        const server = net.connect({ host: upstream.host, port: upstream.port });
        server.on('error', () => client.destroy());
        client.on('close', () => server.destroy());
        client.pipe(server).pipe(client);
      }, 400);
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    const port = (slow.address() as net.AddressInfo).port;
    const behindSlow = await startWarden({ upstream: { ...upstream, port }, database: database.name });
    try {
      const count = async () =>
        (
          await admin.query(
            "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'leaver'",
            [database.name],
          )
        ).rows[0].n;
      for (let i = 0; i < 3; i++) {
        const client = new pg.Client({
          ...behindSlow.pgConfig('etl'),
          application_name: 'leaver',
        } as pg.ClientConfig);
        client.on('error', () => {});
        const connecting = client.connect().catch(() => {});
        // Leave once the SCRAM exchange is over, while Warden waits for the slow upstream.
        await new Promise((resolve) => setTimeout(resolve, 150));
        (client as unknown as { connection: { stream: net.Socket } }).connection.stream.destroy();
        await connecting;
      }
      await new Promise((resolve) => setTimeout(resolve, 1500));
      assert.equal(behindSlow.server.sessions.size, 0);
      assert.equal(await count(), 0, 'no backend is left behind');
    } finally {
      await behindSlow.close();
      await new Promise((resolve) => slow.close(() => resolve(undefined)));
    }
  });
});
