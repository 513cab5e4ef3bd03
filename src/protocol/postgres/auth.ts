import { ProtocolViolation } from './errors.ts';
import { type Authentication, Code, type PasswordFamily } from './messages.ts';
import type { Reader } from './reader.ts';
import type { Writer } from './writer.ts';

const AUTH_CODES = {
  AuthenticationOk: 0,
  AuthenticationKerberosV5: 2,
  AuthenticationCleartextPassword: 3,
  AuthenticationMD5Password: 5,
  AuthenticationGSS: 7,
  AuthenticationGSSContinue: 8,
  AuthenticationSSPI: 9,
  AuthenticationSASL: 10,
  AuthenticationSASLContinue: 11,
  AuthenticationSASLFinal: 12,
} as const;

export function parseAuthentication(r: Reader): Authentication {
  const code = r.int32();
  let message: Authentication;
  switch (code) {
    case 0:
      message = { type: 'AuthenticationOk' };
      break;
    case 2:
      message = { type: 'AuthenticationKerberosV5' };
      break;
    case 3:
      message = { type: 'AuthenticationCleartextPassword' };
      break;
    case 5:
      message = { type: 'AuthenticationMD5Password', salt: r.bytes(4) };
      break;
    case 7:
      message = { type: 'AuthenticationGSS' };
      break;
    case 8:
      return { type: 'AuthenticationGSSContinue', data: r.rest() };
    case 9:
      message = { type: 'AuthenticationSSPI' };
      break;
    case 10: {
      const mechanisms: string[] = [];
      for (;;) {
        const mechanism = r.cstring();
        if (mechanism === '') break;
        mechanisms.push(mechanism);
      }
      message = { type: 'AuthenticationSASL', mechanisms };
      break;
    }
    case 11:
      return { type: 'AuthenticationSASLContinue', data: r.rest() };
    case 12:
      return { type: 'AuthenticationSASLFinal', data: r.rest() };
    default:
      throw new ProtocolViolation(`unknown authentication request ${code}`);
  }
  r.finish(message.type);
  return message;
}

export function writeAuthentication(w: Writer, m: Authentication): Writer {
  w.begin(Code.Authentication).int32(AUTH_CODES[m.type]);
  switch (m.type) {
    case 'AuthenticationMD5Password':
      w.bytes(m.salt);
      break;
    case 'AuthenticationSASL':
      for (const mechanism of m.mechanisms) w.cstring(mechanism);
      w.byte(0);
      break;
    case 'AuthenticationGSSContinue':
    case 'AuthenticationSASLContinue':
    case 'AuthenticationSASLFinal':
      w.bytes(m.data);
      break;
  }
  return w.end();
}

/**
 * The 'p' message carries a password, a SASL initial response or a SASL
 * response; only the authentication exchange in progress says which.
 */
export function parsePasswordFamily(r: Reader, expect: PasswordFamily['type']): PasswordFamily {
  switch (expect) {
    case 'PasswordMessage': {
      const password = r.cstring();
      r.finish('PasswordMessage');
      return { type: 'PasswordMessage', password };
    }
    case 'SASLInitialResponse': {
      const mechanism = r.cstring();
      const data = r.nullableBytes();
      r.finish('SASLInitialResponse');
      return { type: 'SASLInitialResponse', mechanism, data };
    }
    case 'SASLResponse':
      return { type: 'SASLResponse', data: r.rest() };
  }
}

export function writePasswordFamily(w: Writer, m: PasswordFamily): Writer {
  w.begin(Code.Password);
  switch (m.type) {
    case 'PasswordMessage':
      w.cstring(m.password);
      break;
    case 'SASLInitialResponse':
      w.cstring(m.mechanism).nullableBytes(m.data);
      break;
    case 'SASLResponse':
      w.bytes(m.data);
      break;
  }
  return w.end();
}
