import { ProtocolViolation } from './errors.ts';
import {
  type BackendKeyData,
  CANCEL_REQUEST_CODE,
  Code,
  GSSENC_REQUEST_CODE,
  type NegotiateProtocolVersion,
  type ParameterStatus,
  SSL_REQUEST_CODE,
  type StartupFamily,
} from './messages.ts';
import { Reader } from './reader.ts';
import type { Writer } from './writer.ts';

/** PostgreSQL refuses startup packets above this size (MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP_PACKET = 10000;
/** Protocol 3.2 allows cancel keys up to 256 bytes. */
export const MAX_CANCEL_KEY = 256;

/** Decodes the body (after the length) of an untyped startup-phase packet. */
export function parseStartupFamily(body: Buffer): StartupFamily {
  const reader = new Reader(body);
  const code = reader.int32();
  if (code === SSL_REQUEST_CODE) {
    reader.finish('SSLRequest');
    return { type: 'SSLRequest' };
  }
  if (code === GSSENC_REQUEST_CODE) {
    reader.finish('GSSENCRequest');
    return { type: 'GSSENCRequest' };
  }
  if (code === CANCEL_REQUEST_CODE) {
    const processId = reader.int32();
    if (reader.remaining < 4 || reader.remaining > MAX_CANCEL_KEY) {
      throw new ProtocolViolation(`CancelRequest key of ${reader.remaining} bytes (4 to 256 allowed)`);
    }
    return { type: 'CancelRequest', processId, secretKey: reader.rest() };
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== 3) throw new ProtocolViolation(`unsupported frontend protocol ${major}.${minor}`);
  const parameters: [string, string][] = [];
  for (;;) {
    const name = reader.cstring();
    if (name === '') break;
    parameters.push([name, reader.cstring()]);
  }
  reader.finish('StartupMessage');
  return { type: 'StartupMessage', major, minor, parameters };
}

export function writeStartupFamily(w: Writer, message: StartupFamily): Writer {
  w.begin(0);
  switch (message.type) {
    case 'SSLRequest':
      w.int32(SSL_REQUEST_CODE);
      break;
    case 'GSSENCRequest':
      w.int32(GSSENC_REQUEST_CODE);
      break;
    case 'CancelRequest':
      w.int32(CANCEL_REQUEST_CODE).int32(message.processId).bytes(message.secretKey);
      break;
    case 'StartupMessage':
      w.int32((message.major << 16) | message.minor);
      for (const [name, value] of message.parameters) w.cstring(name).cstring(value);
      w.byte(0);
      break;
  }
  return w.end();
}

export function parseBackendKeyData(r: Reader): BackendKeyData {
  const processId = r.int32();
  if (r.remaining < 4 || r.remaining > MAX_CANCEL_KEY) {
    throw new ProtocolViolation(`BackendKeyData key of ${r.remaining} bytes (4 to 256 allowed)`);
  }
  return { type: 'BackendKeyData', processId, secretKey: r.rest() };
}

export function writeBackendKeyData(w: Writer, m: BackendKeyData): Writer {
  return w.begin(Code.BackendKeyData).int32(m.processId).bytes(m.secretKey).end();
}

export function parseNegotiateProtocolVersion(r: Reader): NegotiateProtocolVersion {
  const newestMinor = r.int32();
  const count = r.int32();
  if (count < 0) throw new ProtocolViolation('negative option count');
  const unrecognized: string[] = [];
  for (let i = 0; i < count; i++) unrecognized.push(r.cstring());
  r.finish('NegotiateProtocolVersion');
  return { type: 'NegotiateProtocolVersion', newestMinor, unrecognized };
}

export function writeNegotiateProtocolVersion(w: Writer, m: NegotiateProtocolVersion): Writer {
  w.begin(Code.NegotiateProtocolVersion).int32(m.newestMinor).int32(m.unrecognized.length);
  for (const option of m.unrecognized) w.cstring(option);
  return w.end();
}

export function parseParameterStatus(r: Reader): ParameterStatus {
  const name = r.cstring();
  const value = r.cstring();
  r.finish('ParameterStatus');
  return { type: 'ParameterStatus', name, value };
}

export function writeParameterStatus(w: Writer, m: ParameterStatus): Writer {
  return w.begin(Code.ParameterStatus).cstring(m.name).cstring(m.value).end();
}
