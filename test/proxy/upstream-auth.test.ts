/**
 * Warden ↔ server: Warden's own login to real PostgreSQL servers (embedded,
 * one per authentication method) with SCRAM-SHA-256 (and -PLUS over TLS),
 * md5 and cleartext passwords, under every upstream TLS mode; and what the
 * client sees when that login cannot happen: wrong CA, no TLS, wrong
 * password, nobody listening.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import pg from 'pg';
import { loadConfig } from '../../src/config/index.ts';
import { generateCa, generateLocalServerCertificate, type Pem } from '../../src/demo/certs.ts';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../src/demo/embedded.ts';
import { createApiKey } from '../../src/identity/keys.ts';
import { startServer, type WardenServer } from '../../src/proxy/server.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import { connectError } from './support.ts';

type PgError = Error & { code?: string; severity?: string; detail?: string; hint?: string };

interface TargetSpec {
  readonly name: string;
  readonly port: number;
  /** Name of the environment variable holding the password. */
  readonly passwordEnv: string;
  /** YAML for the target's tls: mapping. */
  readonly tls: string;
}

interface Warden {
  readonly server: WardenServer;
  readonly key: string;
  close(): Promise<void>;
}

/** A Warden with one identity (etl) and the given targets, each logging in as the server's superuser. */
async function startWarden(
  targets: readonly TargetSpec[],
  files: Readonly<Record<string, string>>,
  env: NodeJS.ProcessEnv,
): Promise<Warden> {
  const dir = mkdtempSync(join(tmpdir(), 'warden-upstream-auth-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  const targetYaml = targets
    .map(
      (target) => `
  - name: ${target.name}
    host: 127.0.0.1
    port: ${target.port}
    database: postgres
    user: postgres
    password: \${${target.passwordEnv}}
    tls: ${target.tls}
    connectTimeoutMs: 5000
    access: { groups: [pipelines] }`,
    )
    .join('');
  const yaml = `
listen:
  host: 127.0.0.1
  port: 0
dataDir: ./data
identities:
  - { name: etl, kind: service, groups: [pipelines] }
targets:${targetYaml}
`;
  writeFileSync(join(dir, 'warden.yaml'), yaml);
  let store: Store | undefined;
  try {
    const config = await loadConfig(join(dir, 'warden.yaml'), env);
    store = openStore(config.dataDir);
    const key = createApiKey(store, 'etl').secret;
    const server = await startServer(config, { store });
    const opened = store;
    return {
      server,
      key,
      async close() {
        await server.close();
        opened.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    store?.close();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

/**
 * A man in the middle that terminates the client's TLS with its own
 * certificate and opens its own TLS to the server: invisible to a client
 * that does not verify certificates (tls mode require), but not to SCRAM
 * channel binding.
 */
async function startTlsInterceptor(
  upstreamPort: number,
  certificate: Pem,
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => sockets.delete(socket));
    return socket;
  };
  const context = tls.createSecureContext({ cert: certificate.cert, key: certificate.key });
  const server = net.createServer((client) => {
    track(client);
    client.once('data', (request) => {
      // The client's SSLRequest (8 bytes): accept it, and do the same towards the server.
      if (request.length !== 8) return client.destroy();
      client.pause();
      const upstream = track(net.connect({ host: '127.0.0.1', port: upstreamPort }));
      upstream.once('connect', () => upstream.write(request));
      upstream.once('data', (answer) => {
        if (answer.toString() !== 'S') return client.destroy();
        const toServer = track(tls.connect({ socket: upstream, rejectUnauthorized: false }));
        toServer.once('secureConnect', () => {
          client.write('S');
          const toClient = track(new tls.TLSSocket(client, { isServer: true, secureContext: context }));
          toClient.pipe(toServer).pipe(toClient);
        });
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port on 127.0.0.1 that nothing listens on (just released). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('Warden logs in to upstream servers', { timeout: 120_000 }, () => {
  const passwords = {
    SCRAM_PASSWORD: `scram-${randomBytes(9).toString('hex')}`,
    MD5_PASSWORD: `md5-${randomBytes(9).toString('hex')}`,
    CLEARTEXT_PASSWORD: `clear-${randomBytes(9).toString('hex')}`,
    WRONG_PASSWORD: `wrong-${randomBytes(9).toString('hex')}`,
  };
  let ca: Pem;
  let servers: { scram?: EmbeddedPostgres; md5?: EmbeddedPostgres; cleartext?: EmbeddedPostgres } = {};
  let interceptor: Awaited<ReturnType<typeof startTlsInterceptor>> | undefined;
  let warden: Warden | undefined;
  let unreachablePort: number;
  const clients: pg.Client[] = [];

  function config(target: string): pg.ClientConfig {
    return {
      host: '127.0.0.1',
      port: warden!.server.port,
      user: 'etl',
      database: target,
      password: warden!.key,
      connectionTimeoutMillis: 20_000,
    };
  }

  async function connect(target: string): Promise<pg.Client> {
    const client = new pg.Client(config(target));
    client.on('error', () => {});
    clients.push(client);
    await client.connect();
    return client;
  }

  const refusal = (target: string): Promise<PgError> => connectError(config(target));

  /** Whether the session's own backend runs on TLS, as the server sees it. */
  async function upstreamSsl(target: string): Promise<boolean> {
    const client = await connect(target);
    const result = await client.query(
      'SELECT ssl, current_user AS role FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
    );
    assert.equal(result.rows[0].role, 'postgres');
    return result.rows[0].ssl;
  }

  before(async () => {
    ca = await generateCa('Upstream test CA');
    const [serverCertificate, otherCa] = await Promise.all([
      generateLocalServerCertificate(ca),
      generateCa('Not the upstream CA'),
    ]);
    const interceptorCertificate = await generateLocalServerCertificate(otherCa);
    servers.scram = await startEmbeddedPostgres({
      authMethod: 'scram-sha-256',
      superuserPassword: passwords.SCRAM_PASSWORD,
      ssl: serverCertificate,
    });
    servers.md5 = await startEmbeddedPostgres({
      authMethod: 'md5',
      superuserPassword: passwords.MD5_PASSWORD,
    });
    servers.cleartext = await startEmbeddedPostgres({
      authMethod: 'password',
      superuserPassword: passwords.CLEARTEXT_PASSWORD,
    });
    interceptor = await startTlsInterceptor(servers.scram.port, interceptorCertificate);
    unreachablePort = await closedPort();
    const scram = servers.scram.port;
    const md5 = servers.md5.port;
    const cleartext = servers.cleartext.port;
    warden = await startWarden(
      [
        { name: 'scram_disable', port: scram, passwordEnv: 'SCRAM_PASSWORD', tls: '{ mode: disable }' },
        { name: 'scram_prefer', port: scram, passwordEnv: 'SCRAM_PASSWORD', tls: '{ mode: prefer }' },
        { name: 'scram_require', port: scram, passwordEnv: 'SCRAM_PASSWORD', tls: '{ mode: require }' },
        {
          name: 'scram_verify_ca',
          port: scram,
          passwordEnv: 'SCRAM_PASSWORD',
          tls: '{ mode: verify-ca, ca: ./ca.crt }',
        },
        {
          name: 'scram_verify_full',
          port: scram,
          passwordEnv: 'SCRAM_PASSWORD',
          tls: '{ mode: verify-full, ca: ./ca.crt, serverName: 127.0.0.1 }',
        },
        {
          name: 'scram_verify_full_wrong_ca',
          port: scram,
          passwordEnv: 'SCRAM_PASSWORD',
          tls: '{ mode: verify-full, ca: ./other-ca.crt, serverName: 127.0.0.1 }',
        },
        {
          name: 'scram_verify_ca_wrong_ca',
          port: scram,
          passwordEnv: 'SCRAM_PASSWORD',
          tls: '{ mode: verify-ca, ca: ./other-ca.crt }',
        },
        {
          name: 'scram_verify_full_wrong_name',
          port: scram,
          passwordEnv: 'SCRAM_PASSWORD',
          tls: '{ mode: verify-full, ca: ./ca.crt, serverName: db.example.com }',
        },
        {
          name: 'scram_intercepted',
          port: interceptor.port,
          passwordEnv: 'SCRAM_PASSWORD',
          tls: '{ mode: require }',
        },
        {
          name: 'scram_wrong_password',
          port: scram,
          passwordEnv: 'WRONG_PASSWORD',
          tls: '{ mode: require }',
        },
        { name: 'md5', port: md5, passwordEnv: 'MD5_PASSWORD', tls: '{ mode: disable }' },
        { name: 'md5_prefer', port: md5, passwordEnv: 'MD5_PASSWORD', tls: '{ mode: prefer }' },
        { name: 'md5_require', port: md5, passwordEnv: 'MD5_PASSWORD', tls: '{ mode: require }' },
        { name: 'md5_wrong_password', port: md5, passwordEnv: 'WRONG_PASSWORD', tls: '{ mode: disable }' },
        { name: 'cleartext', port: cleartext, passwordEnv: 'CLEARTEXT_PASSWORD', tls: '{ mode: disable }' },
        {
          name: 'cleartext_wrong_password',
          port: cleartext,
          passwordEnv: 'WRONG_PASSWORD',
          tls: '{ mode: disable }',
        },
        {
          name: 'unreachable',
          port: unreachablePort,
          passwordEnv: 'SCRAM_PASSWORD',
          tls: '{ mode: prefer }',
        },
      ],
      { 'ca.crt': ca.cert, 'other-ca.crt': otherCa.cert },
      { ...process.env, ...passwords },
    );
  });

  after(async () => {
    await Promise.all(clients.map((client) => client.end().catch(() => {})));
    await warden?.close();
    await interceptor?.close();
    await Promise.all(Object.values(servers).map((server) => server?.stop()));
    servers = {};
  });

  describe('each authentication method', () => {
    it('SCRAM-SHA-256: runs queries as the server superuser for identity etl', async () => {
      const client = await connect('scram_disable');
      const hba = await client.query(
        "SELECT DISTINCT auth_method FROM pg_hba_file_rules WHERE type = 'host'",
      );
      assert.deepEqual(
        hba.rows.map((row) => row.auth_method),
        ['scram-sha-256'],
      );
      const role = await client.query(
        "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' AS scram FROM pg_authid WHERE rolname = 'postgres'",
      );
      assert.equal(role.rows[0].scram, true);
    });

    it('md5: runs queries, against a server that really stores an md5 verifier', async () => {
      const client = await connect('md5');
      const hba = await client.query(
        "SELECT DISTINCT auth_method FROM pg_hba_file_rules WHERE type = 'host'",
      );
      assert.deepEqual(
        hba.rows.map((row) => row.auth_method),
        ['md5'],
      );
      const role = await client.query(
        "SELECT rolpassword LIKE 'md5%' AS md5 FROM pg_authid WHERE rolname = 'postgres'",
      );
      assert.equal(
        role.rows[0].md5,
        true,
        'with a SCRAM verifier stored, the server would silently run SCRAM',
      );
    });

    it('cleartext password: runs queries', async () => {
      const client = await connect('cleartext');
      const hba = await client.query(
        "SELECT DISTINCT auth_method FROM pg_hba_file_rules WHERE type = 'host'",
      );
      assert.deepEqual(
        hba.rows.map((row) => row.auth_method),
        ['password'],
      );
      const result = await client.query('SELECT current_user AS role, 6 * 7 AS answer');
      assert.deepEqual(result.rows[0], { role: 'postgres', answer: 42 });
    });
  });

  describe('TLS modes against a server with TLS', () => {
    it('disable: the upstream session is not encrypted', async () => {
      assert.equal(await upstreamSsl('scram_disable'), false);
    });

    it('prefer: the upstream session is encrypted', async () => {
      assert.equal(await upstreamSsl('scram_prefer'), true);
    });

    it('require: the upstream session is encrypted', async () => {
      assert.equal(await upstreamSsl('scram_require'), true);
    });

    it('verify-ca with the right CA: the upstream session is encrypted', async () => {
      assert.equal(await upstreamSsl('scram_verify_ca'), true);
    });

    it('verify-full with the right CA and serverName 127.0.0.1: the upstream session is encrypted', async () => {
      assert.equal(await upstreamSsl('scram_verify_full'), true);
    });

    for (const target of ['scram_verify_full_wrong_ca', 'scram_verify_ca_wrong_ca']) {
      it(`${target.replace('scram_', '').replaceAll('_', ' ')}: the client gets FATAL 08006 naming the target`, async () => {
        const error = await refusal(target);
        assert.equal(error.code, '08006');
        assert.equal(error.severity, 'FATAL');
        assert.match(error.message, new RegExp(`target "${target}"`));
        assert.match(error.message, /TLS/);
      });
    }

    it('verify-full with a serverName the certificate does not name: FATAL 08006 naming the target', async () => {
      const error = await refusal('scram_verify_full_wrong_name');
      assert.equal(error.code, '08006');
      assert.match(error.message, /target "scram_verify_full_wrong_name"/);
      assert.match(error.message, /db\.example\.com/);
    });

    it('SCRAM-SHA-256-PLUS: a TLS-terminating man in the middle is refused even in require mode', async () => {
      // require does not check the certificate, so the TLS handshake with the interceptor succeeds;
      // the channel binding Warden sends is for the interceptor's certificate, which the server rejects.
      const error = await refusal('scram_intercepted');
      assert.equal(error.code, '08004');
      assert.match(error.message, /target "scram_intercepted"/);
      assert.match(error.message, /channel binding/i);
    });
  });

  describe('TLS modes against a server without TLS', () => {
    it('prefer: falls back to an unencrypted session', async () => {
      assert.equal(await upstreamSsl('md5_prefer'), false);
    });

    it('require: FATAL 08006 naming the target', async () => {
      const error = await refusal('md5_require');
      assert.equal(error.code, '08006');
      assert.equal(error.severity, 'FATAL');
      assert.match(error.message, /target "md5_require"/);
      assert.match(error.message, /does not accept TLS/);
    });
  });

  describe('failures', () => {
    for (const target of ['scram_wrong_password', 'md5_wrong_password', 'cleartext_wrong_password']) {
      it(`${target.replaceAll('_', ' ')}: 08004 naming the target, without any password in the error`, async () => {
        const error = await refusal(target);
        assert.equal(error.code, '08004');
        assert.match(error.message, new RegExp(`target "${target}"`));
        assert.match(error.message, /password authentication failed/);
        // The server's own message names the upstream role; clients must not learn it.
        assert.ok(!error.message.includes('postgres'), error.message);
        const everything = `${error.message} ${error.detail ?? ''} ${error.hint ?? ''} ${JSON.stringify(error)}`;
        for (const secret of Object.values(passwords))
          assert.ok(!everything.includes(secret), 'a password leaked into the error');
      });
    }

    it('a target nobody listens on: 08006 naming the target, promptly', async () => {
      const started = Date.now();
      const error = await refusal('unreachable');
      const elapsed = Date.now() - started;
      assert.equal(error.code, '08006');
      assert.match(error.message, /target "unreachable"/);
      assert.match(error.message, /ECONNREFUSED/);
      assert.ok(elapsed < 3000, `refused after ${elapsed} ms`);
    });

    it('keeps serving working targets after the failures', async () => {
      assert.equal(await upstreamSsl('scram_verify_full'), true);
      assert.equal(await upstreamSsl('md5'), false);
    });
  });
});
