/**
 * Opens the server side of a session: TCP, TLS as the target's mode asks,
 * the startup packet, and the login with Warden's own credentials for the
 * target. Everything the server says before ReadyForQuery comes back to the
 * caller to replay to the client; nothing here knows the client.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { TargetConfig } from '../config/index.ts';
import { writePasswordFamily } from '../protocol/postgres/auth.ts';
import { decodeBackend } from '../protocol/postgres/codec.ts';
import { type BackendKeyData, Code, type NoticeFields, PROTOCOL_3_0 } from '../protocol/postgres/messages.ts';
import { parseErrorResponse } from '../protocol/postgres/query.ts';
import { Reader } from '../protocol/postgres/reader.ts';
import { ScramClient, serverEndPoint } from '../protocol/postgres/scram.ts';
import { writeStartupFamily } from '../protocol/postgres/startup.ts';
import { Writer } from '../protocol/postgres/writer.ts';
import { FrameReader, readOneByte } from './frames.ts';

/** Why the upstream could not be reached or logged in to; carries what the client should see. */
export class UpstreamError extends Error {
  override readonly name = 'UpstreamError';
  constructor(
    readonly sqlstate: string,
    message: string,
    readonly serverFields?: NoticeFields,
  ) {
    super(message);
  }
}

export interface Upstream {
  readonly socket: Duplex;
  readonly tls: boolean;
  /** The server's own cancel key: never shown to the client. */
  readonly key: BackendKeyData;
  /** ParameterStatus and NoticeResponse frames to replay to the client, in order. */
  readonly greeting: readonly Buffer[];
  /** Bytes that arrived after ReadyForQuery (none from a well-behaved server). */
  readonly leftover: Buffer;
}

const MAX_STARTUP_MESSAGE = 1 << 20;

export async function connectUpstream(
  target: TargetConfig,
  parameters: ReadonlyArray<readonly [string, string]>,
): Promise<Upstream> {
  const where = `target "${target.name}" (${target.host}:${target.port})`;
  const deadline = AbortSignal.timeout(target.connectTimeoutMs);
  let socket: Duplex = await openTcp(target, where, deadline);
  let onTls = false;
  try {
    if (target.tls.mode !== 'disable') {
      socket.write(writeStartupFamily(new Writer(), { type: 'SSLRequest' }).flush());
      const answer = await readOneByte(socket, target.connectTimeoutMs);
      if (answer.byte === 0x53 /* S */) {
        // CVE-2021-23222: bytes after 'S' but before the handshake were not encrypted.
        if (answer.extra > 0)
          throw new UpstreamError('08P01', `${where} sent unencrypted data after accepting TLS`);
        socket = await startTls(socket as net.Socket, target, where, deadline);
        onTls = true;
      } else if (answer.byte === 0x4e /* N */) {
        if (target.tls.mode !== 'prefer') {
          throw new UpstreamError(
            '08006',
            `${where} does not accept TLS, but its tls.mode is ${target.tls.mode}`,
          );
        }
      } else {
        throw new UpstreamError(
          '08P01',
          `${where} answered SSLRequest with an unexpected byte ${answer.byte}`,
        );
      }
    }
    const reader = new FrameReader(socket, MAX_STARTUP_MESSAGE, true);
    socket.write(
      writeStartupFamily(new Writer(), {
        type: 'StartupMessage',
        major: PROTOCOL_3_0 >>> 16,
        minor: 0,
        parameters: [['user', target.user], ['database', target.database], ...parameters],
      }).flush(),
    );
    const result = await login(reader, socket, target, where, onTls, deadline);
    return { ...result, socket, tls: onTls, leftover: reader.detach() };
  } catch (error) {
    socket.destroy();
    if (error instanceof UpstreamError) throw error;
    if (deadline.aborted)
      throw new UpstreamError(
        '08006',
        `${where} did not complete the login within ${target.connectTimeoutMs} ms`,
      );
    throw new UpstreamError('08006', `lost ${where} during login: ${(error as Error).message}`);
  }
}

function openTcp(target: TargetConfig, where: string, deadline: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: target.host, port: target.port });
    socket.setNoDelay(true);
    const onAbort = () => {
      socket.destroy();
      reject(
        new UpstreamError(
          '08006',
          `cannot reach ${where}: no connection within ${target.connectTimeoutMs} ms`,
        ),
      );
    };
    deadline.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => {
      deadline.removeEventListener('abort', onAbort);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      deadline.removeEventListener('abort', onAbort);
      reject(new UpstreamError('08006', `cannot reach ${where}: ${error.code ?? error.message}`));
    });
  });
}

function startTls(
  socket: net.Socket,
  target: TargetConfig,
  where: string,
  deadline: AbortSignal,
): Promise<tls.TLSSocket> {
  const verify = target.tls.mode === 'verify-ca' || target.tls.mode === 'verify-full';
  const serverName = target.tls.serverName ?? target.host;
  return new Promise((resolve, reject) => {
    const secure = tls.connect({
      socket,
      ca: target.tls.ca,
      // SNI must be a host name, not an IP address.
      servername: net.isIP(serverName) ? undefined : serverName,
      rejectUnauthorized: verify,
      checkServerIdentity:
        target.tls.mode === 'verify-full'
          ? (_host, cert) => tls.checkServerIdentity(serverName, cert)
          : () => undefined,
    });
    // A server that answers 'S' and then stays silent must not hold the login past its deadline.
    const onAbort = () => {
      secure.destroy();
      reject(
        new UpstreamError('08006', `TLS with ${where} did not complete within ${target.connectTimeoutMs} ms`),
      );
    };
    deadline.addEventListener('abort', onAbort, { once: true });
    secure.once('secureConnect', () => {
      deadline.removeEventListener('abort', onAbort);
      secure.removeAllListeners('error');
      resolve(secure);
    });
    secure.once('error', (error) => {
      deadline.removeEventListener('abort', onAbort);
      reject(new UpstreamError('08006', `TLS with ${where} failed: ${error.message}`));
    });
  });
}

async function login(
  reader: FrameReader,
  socket: Duplex,
  target: TargetConfig,
  where: string,
  onTls: boolean,
  deadline: AbortSignal,
): Promise<{ key: BackendKeyData; greeting: Buffer[] }> {
  const greeting: Buffer[] = [];
  let key: BackendKeyData | undefined;
  let scram: ScramClient | undefined;
  const send = (buffer: Buffer) => socket.write(buffer);
  const aborted = new Promise<never>((_, reject) => {
    deadline.addEventListener('abort', () => reject(new Error('timeout')), { once: true });
  });
  aborted.catch(() => {});
  const password = (): string => {
    if (target.password === undefined) {
      throw new UpstreamError(
        '08004',
        `${where} asks for a password, but the target has none (set password or passwordFile)`,
      );
    }
    return target.password;
  };
  for (;;) {
    const frame = await Promise.race([reader.next(), aborted]);
    switch (frame.type) {
      case Code.Authentication: {
        const message = decodeBackend(frame.type, frame.body);
        switch (message.type) {
          case 'AuthenticationOk':
            break;
          case 'AuthenticationCleartextPassword':
            send(
              writePasswordFamily(new Writer(), { type: 'PasswordMessage', password: password() }).flush(),
            );
            break;
          case 'AuthenticationMD5Password': {
            const md5 = (data: string | Buffer) => createHash('md5').update(data).digest('hex');
            const hashed = `md5${md5(Buffer.concat([Buffer.from(md5(password() + target.user)), message.salt]))}`;
            send(writePasswordFamily(new Writer(), { type: 'PasswordMessage', password: hashed }).flush());
            break;
          }
          case 'AuthenticationSASL': {
            const binding = onTls ? endPointOf(socket as tls.TLSSocket) : undefined;
            const mechanism = ScramClient.choose(message.mechanisms, binding);
            scram = new ScramClient(
              password(),
              mechanism,
              binding,
              message.mechanisms.includes('SCRAM-SHA-256-PLUS'),
            );
            const data = Buffer.from(scram.first());
            send(writePasswordFamily(new Writer(), { type: 'SASLInitialResponse', mechanism, data }).flush());
            break;
          }
          case 'AuthenticationSASLContinue': {
            if (!scram) throw new UpstreamError('08P01', `${where} sent SASLContinue without SASL`);
            const data = Buffer.from(scram.final(message.data.toString()));
            send(writePasswordFamily(new Writer(), { type: 'SASLResponse', data }).flush());
            break;
          }
          case 'AuthenticationSASLFinal':
            if (!scram) throw new UpstreamError('08P01', `${where} sent SASLFinal without SASL`);
            try {
              scram.verify(message.data.toString());
            } catch (error) {
              throw new UpstreamError('08004', `${where}: ${(error as Error).message}`);
            }
            break;
          default:
            throw new UpstreamError(
              '08004',
              `${where} asks for ${message.type}, which Warden does not support`,
            );
        }
        break;
      }
      case Code.ParameterStatus:
      case Code.NoticeResponse:
        greeting.push(frame.raw);
        break;
      case Code.BackendKeyData: {
        const message = decodeBackend(frame.type, frame.body);
        if (message.type === 'BackendKeyData') key = message;
        break;
      }
      case Code.NegotiateProtocolVersion:
        break; // We ask for 3.0 without options: nothing to negotiate.
      case Code.ErrorResponse: {
        const fields = parseErrorResponse(new Reader(frame.body)).fields;
        // The server's own text can name the upstream role, which clients must never learn: say what it means instead.
        throw new UpstreamError(
          '08004',
          `${where} refused Warden's login: ${loginRefusal(fields.C)}`,
          fields,
        );
      }
      case Code.ReadyForQuery:
        if (!key) key = { type: 'BackendKeyData', processId: 0, secretKey: Buffer.alloc(4) };
        return { key, greeting };
      default:
        throw new UpstreamError('08P01', `${where} sent an unexpected message during login`);
    }
  }
}

/** What a login refusal means, by SQLSTATE, in words that name no upstream role. */
function loginRefusal(sqlstate: string | undefined): string {
  switch (sqlstate) {
    case '28P01':
      return "password authentication failed (check the target's password)";
    case '28000':
      // Also what a failed SCRAM channel binding check reports.
      return "the server does not admit Warden's login (check the target's user and the server's pg_hba.conf; over TLS, a failed channel binding check means something intercepts the connection)";
    case '3D000':
      return "the upstream database does not exist (check the target's database)";
    case '08P01':
      return 'protocol violation during login, such as a failed SCRAM channel binding check (is something intercepting TLS?)';
    case '53300':
      return 'the server has no free connection slots';
    case '57P03':
      return 'the server is starting up or shutting down';
    default:
      return `SQLSTATE ${sqlstate ?? 'unknown'}`;
  }
}

function endPointOf(socket: tls.TLSSocket): Buffer | undefined {
  const certificate = socket.getPeerCertificate();
  return certificate?.raw ? serverEndPoint(certificate.raw) : undefined;
}

/** Sends a CancelRequest for the server's backend on a fresh connection; best effort, as in PostgreSQL. */
export function cancelUpstream(target: TargetConfig, key: BackendKeyData): void {
  const socket = net.connect({ host: target.host, port: target.port });
  const packet = writeStartupFamily(new Writer(), {
    type: 'CancelRequest',
    processId: key.processId,
    secretKey: key.secretKey,
  }).flush();
  socket.setTimeout(target.connectTimeoutMs, () => socket.destroy());
  socket.on('error', () => socket.destroy());
  socket.on('connect', () => socket.end(packet));
}
