/**
 * The client side of a connection, from the first byte to a running
 * session: SSL/GSS negotiation (and direct TLS), the startup packet, the
 * login as a Warden identity, the choice of target and its access rule,
 * then the upstream connection. Every refusal is a FATAL ErrorResponse with
 * a real SQLSTATE and a message that says what to do.
 */

import type net from 'node:net';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { ApprovalService } from '../approvals/service.ts';
import { sessionPipeline } from '../audit/statement.ts';
import type { AuditSink } from '../audit/writer.ts';
import type { IdentityConfig, TargetConfig, WardenConfig } from '../config/index.ts';
import { mayConnect } from '../identity/access.ts';
import type { Authenticator } from '../identity/authenticator.ts';
import type { LoginBackoff } from '../identity/backoff.ts';
import type { Decide, SessionInfo } from '../policy/decision.ts';
import { parsePasswordFamily, writeAuthentication } from '../protocol/postgres/auth.ts';
import { ProtocolViolation } from '../protocol/postgres/errors.ts';
import { Code, type PasswordFamily } from '../protocol/postgres/messages.ts';
import { writeReadyForQuery } from '../protocol/postgres/query.ts';
import { Reader } from '../protocol/postgres/reader.ts';
import { ScramError, ScramServer } from '../protocol/postgres/scram.ts';
import {
  parseStartupFamily,
  writeBackendKeyData,
  writeNegotiateProtocolVersion,
} from '../protocol/postgres/startup.ts';
import { Writer } from '../protocol/postgres/writer.ts';
import { CancelRegistry } from './cancel.ts';
import { FrameReader } from './frames.ts';
import { type ErrorDetails, errorResponse } from './replies.ts';
import { Session, type SessionObserver } from './session.ts';
import { readStartupParameters, StartupRefusal } from './startup-parameters.ts';
import { cancelUpstream, connectUpstream, UpstreamError } from './upstream.ts';

/** What a listener shares with every connection it accepts. */
export interface ListenerContext {
  config(): WardenConfig;
  /** TLS for clients, when configured: context and our certificate's end-point hash for SCRAM-PLUS. */
  tls(): { context: tls.SecureContext; endPoint: Buffer } | undefined;
  readonly authenticator: Authenticator;
  readonly backoff: LoginBackoff;
  readonly cancels: CancelRegistry<Session>;
  /** Hands a cancel key issued by another worker to that worker (only when running as one of several). */
  readonly routeCancel?: (processId: number, secret: Buffer) => void;
  readonly decide: Decide;
  /** Made ready before a target's first session (masking reads its catalog); rejects with an UpstreamError. */
  readonly prepareTarget?: (target: TargetConfig) => Promise<void>;
  readonly sessions: Set<Session>;
  nextSessionId(): number;
  /** The audit trail, and the name of this instance's chain (sessions are named after it). */
  readonly audit?: AuditSink;
  /** Told what only the data path sees (metrics). */
  readonly observer?: SessionObserver;
  readonly chain: string;
  /** Where statements held for review wait (none: they are refused). */
  readonly approvals?: ApprovalService;
}

/** Newest protocol minor version Warden speaks (3.2, PostgreSQL 18). */
const NEWEST_MINOR = 2;
const STARTUP_TIMEOUT_MS = 60_000;
/** Before login a client sends only small messages (SASL, a token as password): bound them tightly. */
const PRE_AUTH_MAX_MESSAGE = 64 * 1024;
const TLS_RECORD_HANDSHAKE = 0x16;

class Refusal extends Error {
  constructor(readonly details: ErrorDetails) {
    super(details.message);
  }
}

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

export async function serveClient(raw: net.Socket, context: ListenerContext): Promise<void> {
  raw.setNoDelay(true);
  raw.on('error', () => raw.destroy());
  const timer = setTimeout(() => raw.destroy(), STARTUP_TIMEOUT_MS);
  // The socket to answer on: the TLS one once negotiated, never plaintext inside TLS.
  const current: Current = { socket: raw };
  try {
    await negotiateAndLogin(raw, context, current);
  } catch (error) {
    const details = refusalDetails(error);
    if (details && current.user !== undefined) {
      context.audit?.record({
        type: 'login.failed',
        at: new Date().toISOString(),
        identity: current.user,
        client: raw.remoteAddress ?? 'unknown',
        target: current.database ?? '',
        sqlstate: details.sqlstate,
        reason: details.message,
      });
    }
    if (details && !current.socket.destroyed) {
      // A refused login ends here: one FATAL message, then close.
      current.socket.end(errorResponse('FATAL', details));
      setTimeout(() => current.socket.destroy(), 1000).unref();
    } else {
      current.socket.destroy();
    }
  } finally {
    clearTimeout(timer);
  }
}

/** Cancels what the session owning this key runs now; a key that matches nothing does nothing. */
export function cancelSession(context: ListenerContext, processId: number, secret: Buffer): void {
  const session = context.cancels.find(processId, secret);
  session?.cancel((key) => cancelUpstream(session.info.target, key));
}

function refusalDetails(error: unknown): ErrorDetails | undefined {
  if (error instanceof Refusal) return error.details;
  if (error instanceof StartupRefusal)
    return { sqlstate: error.sqlstate, message: error.message, hint: error.hint };
  if (error instanceof UpstreamError) return { sqlstate: error.sqlstate, message: error.message };
  if (error instanceof ProtocolViolation)
    return { sqlstate: '08P01', message: `protocol violation: ${error.message}` };
  if (error instanceof ScramError) return { sqlstate: '08P01', message: error.message };
  return undefined; // connection closed or reset: nobody to tell
}

async function firstChunk(raw: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      raw.pause();
      raw.off('close', onClose);
      resolve(chunk);
    };
    const onClose = () => reject(new Error('closed before the startup packet'));
    raw.once('data', onData);
    raw.once('close', onClose);
  });
}

/** What the login has reached: the socket to answer on, and who the client said it is. */
interface Current {
  socket: Duplex;
  user?: string;
  database?: string;
}

async function negotiateAndLogin(raw: net.Socket, context: ListenerContext, current: Current): Promise<void> {
  const config = context.config();
  const clientAddress = raw.remoteAddress ?? 'unknown';
  let socket: Duplex = raw;
  let onTls = false;
  const first = await firstChunk(raw);

  if (first[0] === TLS_RECORD_HANDSHAKE) {
    // PostgreSQL 17 direct TLS: the handshake comes first, with ALPN "postgresql".
    socket = await acceptTls(prefixed(raw, first), context, true);
    current.socket = socket;
    onTls = true;
  }
  let reader = new FrameReader(socket, PRE_AUTH_MAX_MESSAGE, false, 'the limit before login');
  if (!onTls) reader.feed(first);
  else socket.resume();

  // SSL / GSS negotiation and cancel requests, until the startup packet.
  let startup: ReturnType<typeof parseStartupFamily>;
  for (;;) {
    const frame = await reader.next();
    startup = parseStartupFamily(frame.body);
    if (startup.type === 'StartupMessage') break;
    if (startup.type === 'CancelRequest') {
      // PostgreSQL answers a cancel request with nothing but closing the connection.
      const owner = CancelRegistry.workerOf(startup.processId);
      if (owner !== context.cancels.workerId && context.routeCancel)
        context.routeCancel(startup.processId, startup.secretKey);
      else cancelSession(context, startup.processId, startup.secretKey);
      socket.end();
      throw new Error('cancel request handled');
    }
    if (startup.type === 'GSSENCRequest') {
      socket.write('N');
      continue;
    }
    // SSLRequest
    const tlsSetup = context.tls();
    if (onTls || !tlsSetup) {
      if (onTls) throw new ProtocolViolation('SSLRequest inside TLS');
      socket.write('N');
      continue;
    }
    if (reader.queued > 0 || reader.framer.buffered > 0) {
      // CVE-2021-23214: bytes sent before the handshake could be injected by a man in the middle.
      throw new ProtocolViolation('received unencrypted data after SSLRequest');
    }
    reader.detach();
    raw.pause();
    raw.write('S');
    socket = await acceptTls(raw, context, false);
    current.socket = socket;
    onTls = true;
    reader = new FrameReader(socket, PRE_AUTH_MAX_MESSAGE, false, 'the limit before login');
    socket.resume();
  }

  const request = readStartupParameters(startup.parameters);
  current.user = request.user;
  current.database = request.database;
  const minor = Math.min(startup.minor, NEWEST_MINOR);
  if (startup.minor > NEWEST_MINOR || request.protocolOptions.length > 0) {
    socket.write(
      writeNegotiateProtocolVersion(new Writer(), {
        type: 'NegotiateProtocolVersion',
        newestMinor: (3 << 16) | minor,
        unrecognized: request.protocolOptions,
      }).flush(),
    );
  }
  if (
    !onTls &&
    config.listen.requireTls !== 'never' &&
    (config.listen.requireTls === 'always' || !isLoopback(clientAddress))
  ) {
    throw new Refusal({
      sqlstate: '28000',
      message: 'Warden requires TLS for this connection',
      hint: "Connect with sslmode=require (or verify-full with Warden's CA certificate).",
    });
  }
  reader.framer.typed = true;

  const identity = config.identities.find((candidate) => candidate.name === request.user);
  const authenticated = await authenticate(reader, socket, context, request.user, onTls, clientAddress);
  if (!authenticated || !identity) {
    await new Promise((resolve) => setTimeout(resolve, context.backoff.delayMs(request.user, clientAddress)));
    context.backoff.recordFailure(request.user, clientAddress);
    throw new Refusal({
      sqlstate: '28P01',
      message: `password authentication failed for identity "${request.user}"`,
      hint: 'Use an API key from `warden key create --identity NAME` as the password.',
    });
  }
  context.backoff.recordSuccess(identity.name);
  const target = chooseTarget(config, identity, request.database);

  const id = context.nextSessionId();
  const applicationName = setting(request.settings, 'application_name') ?? '';
  const pipelineOption = request.wardenSettings.get('warden.pipeline');
  const info: SessionInfo = {
    id,
    identity,
    target,
    clientAddress,
    tls: onTls,
    applicationName,
    pipeline: sessionPipeline(pipelineOption, applicationName),
    pipelineFixed: Boolean(pipelineOption),
    tag: `${context.chain}/${id}`,
    searchPath: startupSearchPath(request.settings),
  };
  const refusal = context.audit?.refusal;
  if (refusal) throw new Refusal(refusal);
  for (const [name, value] of request.settings) {
    const decision = context.decide({
      session: info,
      source: 'startup-option',
      sql: `SET ${name} = '${value.replaceAll("'", "''")}'`,
      prepared: () => undefined,
    });
    if (decision.action === 'deny') throw new Refusal(decision);
  }

  socket.write(writeAuthentication(new Writer(), { type: 'AuthenticationOk' }).flush());
  // Fail closed: a session whose results cannot be masked correctly does not start.
  await context.prepareTarget?.(target);
  const upstream = await connectUpstream(target, request.settings);
  if (socket.destroyed || !socket.readable) {
    // The client left while Warden logged in upstream: no session will ever close this backend.
    upstream.socket.destroy();
    return;
  }
  const { audit } = context;
  const openedAt = Date.now();
  const session = new Session(info, socket, upstream, {
    maxMessageSize: config.listen.maxMessageSize,
    decide: context.decide,
    audit,
    observer: context.observer,
    approvals: context.approvals,
    onClose: (closed) => {
      context.sessions.delete(closed);
      context.cancels.release(key.processId);
      audit?.record({
        type: 'connection.close',
        at: new Date().toISOString(),
        identity: identity.name,
        session: info.tag,
        target: target.name,
        pipeline: info.pipeline,
        durationMs: Date.now() - openedAt,
        statements: closed.statementCount,
      });
    },
  });
  const key = context.cancels.issue(session, minor >= 2);
  const w = new Writer();
  for (const frame of upstream.greeting) w.bytes(frame);
  writeBackendKeyData(w, { type: 'BackendKeyData', processId: key.processId, secretKey: key.secret });
  writeReadyForQuery(w, { type: 'ReadyForQuery', status: 'I' });
  socket.write(w.flush());
  context.sessions.add(session);
  audit?.record({
    type: 'connection.open',
    at: new Date(openedAt).toISOString(),
    identity: identity.name,
    session: info.tag,
    kind: identity.kind,
    groups: identity.groups,
    client: clientAddress,
    applicationName,
    pipeline: info.pipeline,
    tls: onTls,
    target: target.name,
  });
  session.start(reader.detach());
}

async function authenticate(
  reader: FrameReader,
  socket: Duplex,
  context: ListenerContext,
  user: string,
  onTls: boolean,
  clientAddress: string,
): Promise<boolean> {
  const config = context.config();
  const send = (message: Parameters<typeof writeAuthentication>[1]) =>
    socket.write(writeAuthentication(new Writer(), message).flush());
  const readPassword = async (expect: PasswordFamily['type']): Promise<PasswordFamily> => {
    const frame = await reader.next();
    if (frame.type !== Code.Password) throw new ProtocolViolation('expected a password message');
    return parsePasswordFamily(new Reader(frame.body), expect);
  };
  const cleartextAllowed =
    config.auth.cleartext === 'tls-or-loopback' && (onTls || isLoopback(clientAddress));
  if (config.auth.method === 'password' && cleartextAllowed) {
    send({ type: 'AuthenticationCleartextPassword' });
    const message = await readPassword('PasswordMessage');
    return message.type === 'PasswordMessage' && context.authenticator.verifySecret(user, message.password);
  }
  const endPoint = onTls ? context.tls()?.endPoint : undefined;
  const scram = new ScramServer(context.authenticator.scramCredentials(user), endPoint);
  send({ type: 'AuthenticationSASL', mechanisms: ScramServer.mechanisms(endPoint !== undefined) });
  const initial = await readPassword('SASLInitialResponse');
  if (initial.type !== 'SASLInitialResponse' || !initial.data)
    throw new ScramError('SASL initial response without data');
  send({
    type: 'AuthenticationSASLContinue',
    data: Buffer.from(scram.start(initial.mechanism, initial.data.toString())),
  });
  const response = await readPassword('SASLResponse');
  if (response.type !== 'SASLResponse') throw new ScramError('expected a SASL response');
  const serverFinal = scram.finish(response.data.toString());
  if (serverFinal === undefined) return false;
  send({ type: 'AuthenticationSASLFinal', data: Buffer.from(serverFinal) });
  return true;
}

function chooseTarget(config: WardenConfig, identity: IdentityConfig, name: string): TargetConfig {
  const target = config.targets.find((candidate) => candidate.name === name);
  const allowed = (t: TargetConfig) => mayConnect(identity, t);
  if (!target || !allowed(target)) {
    const usable = config.targets.filter(allowed).map((t) => t.name);
    const hint =
      usable.length > 0
        ? `Targets you may use: ${usable.join(', ')}.`
        : 'You may use no target; ask an administrator.';
    if (!target) throw new Refusal({ sqlstate: '3D000', message: `target "${name}" does not exist`, hint });
    throw new Refusal({
      sqlstate: '42501',
      message: `identity "${identity.name}" may not connect to target "${name}"`,
      hint: `${hint} Access is set in warden.yaml under targets[].access.`,
    });
  }
  return target;
}

function acceptTls(socket: Duplex, context: ListenerContext, direct: boolean): Promise<tls.TLSSocket> {
  const setup = context.tls();
  if (!setup) return Promise.reject(new ProtocolViolation('TLS is not configured on this listener'));
  return new Promise((resolve, reject) => {
    const secure = new tls.TLSSocket(socket as net.Socket, {
      isServer: true,
      secureContext: setup.context,
      ALPNProtocols: ['postgresql'],
    });
    // A client that gives up mid-handshake (e.g. it does not trust our certificate) only closes:
    // neither 'secure' nor 'error' follows, and the login would stay pending until the startup timeout.
    const onClose = () => reject(new Error('connection closed during the TLS handshake'));
    secure.once('close', onClose);
    secure.once('secure', () => {
      secure.removeListener('error', reject);
      secure.removeListener('close', onClose);
      secure.on('error', () => secure.destroy());
      // Direct TLS is only for clients that say they speak PostgreSQL.
      if (direct && secure.alpnProtocol !== 'postgresql') {
        secure.destroy();
        reject(new Error('direct TLS without ALPN "postgresql"'));
        return;
      }
      secure.pause();
      resolve(secure);
    });
    secure.once('error', reject);
  });
}

/** A duplex that yields `first` and then the socket's bytes (for TLS after peeking at the first chunk). */
function prefixed(raw: net.Socket, first: Buffer): Duplex {
  const duplex = new Duplex({
    read() {
      raw.resume();
    },
    write(chunk, _encoding, callback) {
      raw.write(chunk, callback);
    },
    final(callback) {
      raw.end(callback);
    },
    destroy(error, callback) {
      raw.destroy();
      callback(error);
    },
  });
  duplex.push(first);
  raw.on('data', (chunk: Buffer) => {
    if (!duplex.push(chunk)) raw.pause();
  });
  raw.on('end', () => duplex.push(null));
  raw.on('close', () => duplex.destroy());
  return duplex;
}

function setting(settings: readonly (readonly [string, string])[], wanted: string): string | undefined {
  return settings.find(([name]) => name.toLowerCase() === wanted)?.[1];
}

/**
 * Every schema any search_path in the startup packet names: PostgreSQL
 * applies them in an order (options before parameters, the last one wins)
 * that Warden need not reproduce if it keeps them all.
 */
function startupSearchPath(settings: readonly (readonly [string, string])[]): string[] | undefined {
  const schemas = settings
    .filter(([name]) => name.toLowerCase() === 'search_path')
    .flatMap(([, value]) => value.split(',').map((schema) => schema.trim().replace(/^"(.*)"$/, '$1')));
  return schemas.length > 0
    ? ['public', ...new Set(schemas)].filter((s, i, all) => all.indexOf(s) === i)
    : undefined;
}
