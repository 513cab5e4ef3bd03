/**
 * SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL uses it: both sides of
 * the exchange, plus the tls-server-end-point channel binding (RFC 5929).
 * Pure functions over strings and buffers; no sockets here.
 */
import {
  createHash,
  createHmac,
  pbkdf2Sync,
  randomBytes,
  timingSafeEqual,
  X509Certificate,
} from 'node:crypto';

export const SCRAM_ITERATIONS = 4096;
export const MECHANISM = 'SCRAM-SHA-256';
export const MECHANISM_PLUS = 'SCRAM-SHA-256-PLUS';

export class ScramError extends Error {
  override readonly name = 'ScramError';
}

const hmac = (key: Buffer, data: string | Buffer): Buffer => createHmac('sha256', key).update(data).digest();
const sha256 = (data: Buffer): Buffer => createHash('sha256').update(data).digest();

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** What a server keeps instead of a password. */
export interface ScramVerifier {
  readonly storedKey: Buffer;
  readonly serverKey: Buffer;
}

export function saltedPassword(password: string, salt: Buffer, iterations: number): Buffer {
  // SASLprep is omitted: our secrets are ASCII; PostgreSQL also falls back to raw bytes.
  return pbkdf2Sync(password, salt, iterations, 32, 'sha256');
}

export function makeVerifier(password: string, salt: Buffer, iterations: number): ScramVerifier {
  const salted = saltedPassword(password, salt, iterations);
  return { storedKey: sha256(hmac(salted, 'Client Key')), serverKey: hmac(salted, 'Server Key') };
}

export function nonce(): string {
  return randomBytes(18).toString('base64');
}

function attributes(message: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const part of message.split(',')) {
    const eq = part.indexOf('=');
    if (eq === 1) map.set(part[0]!, part.slice(2));
  }
  return map;
}

function required(attrs: Map<string, string>, key: string, what: string): string {
  const value = attrs.get(key);
  if (value === undefined || value === '') throw new ScramError(`malformed SCRAM ${what}: missing ${key}=`);
  return value;
}

/**
 * tls-server-end-point: the hash of the server's certificate, with the
 * certificate's own signature hash (SHA-256 for MD5/SHA-1 signatures).
 */
export function serverEndPoint(certificateDer: Buffer): Buffer {
  const algorithm = signatureHash(certificateDer);
  return createHash(algorithm).update(certificateDer).digest();
}

// DER-encoded OIDs of signature algorithms with a hash stronger than SHA-256.
const SHA384_OIDS = ['2a864886f70d01010c', '2a8648ce3d040303'];
const SHA512_OIDS = ['2a864886f70d01010d', '2a8648ce3d040304'];

function signatureHash(der: Buffer): 'sha256' | 'sha384' | 'sha512' {
  const hex = der.toString('hex');
  if (SHA512_OIDS.some((oid) => hex.includes(oid))) return 'sha512';
  if (SHA384_OIDS.some((oid) => hex.includes(oid))) return 'sha384';
  return 'sha256';
}

export function certificateDer(pem: string | Buffer): Buffer {
  return new X509Certificate(pem).raw;
}

// ---------------------------------------------------------------- server side

export interface ServerCredentials {
  readonly salt: Buffer;
  readonly iterations: number;
  /** Every active key of the identity; they share the salt so one exchange can test them all. */
  readonly verifiers: readonly ScramVerifier[];
}

/** One server-side exchange. `channelBinding` is our certificate's end-point hash when on TLS. */
export class ScramServer {
  private clientFirstBare = '';
  private serverFirst = '';
  private gs2Header = '';
  private combinedNonce = '';

  constructor(
    private readonly credentials: ServerCredentials,
    private readonly channelBinding: Buffer | undefined,
  ) {}

  /** Mechanisms to offer, strongest first. */
  static mechanisms(onTls: boolean): string[] {
    return onTls ? [MECHANISM_PLUS, MECHANISM] : [MECHANISM];
  }

  /** Takes the client-first-message; returns the server-first-message. */
  start(mechanism: string, clientFirst: string): string {
    if (mechanism !== MECHANISM && mechanism !== MECHANISM_PLUS) {
      throw new ScramError(`unsupported SASL mechanism ${JSON.stringify(mechanism)}`);
    }
    const flag = clientFirst[0];
    if (mechanism === MECHANISM_PLUS) {
      if (!this.channelBinding) throw new ScramError('channel binding requested outside TLS');
      if (!clientFirst.startsWith('p=tls-server-end-point,')) {
        throw new ScramError('SCRAM-SHA-256-PLUS requires the tls-server-end-point channel binding');
      }
    } else if (flag === 'y' && this.channelBinding) {
      // The client could bind but believes we cannot: someone stripped -PLUS from our offer.
      throw new ScramError('channel binding downgrade detected');
    } else if (flag !== 'n' && flag !== 'y') {
      throw new ScramError('malformed SCRAM client-first-message');
    }
    const secondComma = clientFirst.indexOf(',', clientFirst.indexOf(',') + 1);
    if (secondComma < 0) throw new ScramError('malformed SCRAM client-first-message');
    this.gs2Header = clientFirst.slice(0, secondComma + 1);
    this.clientFirstBare = clientFirst.slice(secondComma + 1);
    const clientNonce = required(attributes(this.clientFirstBare), 'r', 'client-first-message');
    this.combinedNonce = clientNonce + nonce();
    this.serverFirst = `r=${this.combinedNonce},s=${this.credentials.salt.toString('base64')},i=${this.credentials.iterations}`;
    return this.serverFirst;
  }

  /**
   * Takes the client-final-message; returns the server-final-message when a
   * key matches, or undefined. Every verifier is tested, matched or not, so
   * the time taken does not tell which key (if any) came close.
   */
  finish(clientFinal: string): string | undefined {
    const attrs = attributes(clientFinal);
    const binding = Buffer.from(required(attrs, 'c', 'client-final-message'), 'base64');
    const expected = Buffer.concat([
      Buffer.from(this.gs2Header),
      this.gs2Header.startsWith('p=') ? this.channelBinding! : Buffer.alloc(0),
    ]);
    const proof = Buffer.from(required(attrs, 'p', 'client-final-message'), 'base64');
    const nonceOk = required(attrs, 'r', 'client-final-message') === this.combinedNonce;
    const bindingOk = binding.length === expected.length && timingSafeEqual(binding, expected);
    const withoutProof = clientFinal.slice(0, clientFinal.lastIndexOf(',p='));
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`;
    let matched: ScramVerifier | undefined;
    for (const verifier of this.credentials.verifiers) {
      const signature = hmac(verifier.storedKey, authMessage);
      const ok = proof.length === 32 && timingSafeEqual(sha256(xor(proof, signature)), verifier.storedKey);
      if (ok && matched === undefined) matched = verifier;
    }
    if (!matched || !nonceOk || !bindingOk) return undefined;
    return `v=${hmac(matched.serverKey, authMessage).toString('base64')}`;
  }
}

// ---------------------------------------------------------------- client side

/** One client-side exchange, used to log in to upstream servers. */
export class ScramClient {
  private readonly clientNonce = nonce();
  private readonly gs2Header: string;
  private clientFirstBare = '';
  private expectedServerSignature: Buffer | undefined;

  constructor(
    private readonly password: string,
    readonly mechanism: string,
    private readonly channelBinding: Buffer | undefined,
    serverSupportsBinding: boolean,
  ) {
    if (mechanism === MECHANISM_PLUS) this.gs2Header = 'p=tls-server-end-point,,';
    else this.gs2Header = serverSupportsBinding || !channelBinding ? 'n,,' : 'y,,';
  }

  /** Picks the mechanism from a server's offer: -PLUS when we have TLS and it is offered. */
  static choose(offered: readonly string[], channelBinding: Buffer | undefined): string {
    if (channelBinding && offered.includes(MECHANISM_PLUS)) return MECHANISM_PLUS;
    if (offered.includes(MECHANISM)) return MECHANISM;
    throw new ScramError(`server offers no supported SASL mechanism (${offered.join(', ')})`);
  }

  first(): string {
    this.clientFirstBare = `n=,r=${this.clientNonce}`;
    return this.gs2Header + this.clientFirstBare;
  }

  /** Takes the server-first-message; returns the client-final-message. */
  final(serverFirst: string): string {
    const attrs = attributes(serverFirst);
    const combined = required(attrs, 'r', 'server-first-message');
    if (!combined.startsWith(this.clientNonce) || combined.length === this.clientNonce.length) {
      throw new ScramError('server nonce does not extend the client nonce');
    }
    const salt = Buffer.from(required(attrs, 's', 'server-first-message'), 'base64');
    const iterations = Number(required(attrs, 'i', 'server-first-message'));
    if (!Number.isInteger(iterations) || iterations < 1)
      throw new ScramError('invalid SCRAM iteration count');
    const bindingData =
      this.mechanism === MECHANISM_PLUS
        ? Buffer.concat([Buffer.from(this.gs2Header), this.channelBinding!])
        : Buffer.from(this.gs2Header);
    const withoutProof = `c=${bindingData.toString('base64')},r=${combined}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const salted = saltedPassword(this.password, salt, iterations);
    const clientKey = hmac(salted, 'Client Key');
    const proof = xor(clientKey, hmac(sha256(clientKey), authMessage));
    this.expectedServerSignature = hmac(hmac(salted, 'Server Key'), authMessage);
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  /** Checks the server-final-message: the server must prove it knows the verifier too. */
  verify(serverFinal: string): void {
    const attrs = attributes(serverFinal);
    if (attrs.has('e')) throw new ScramError(`server rejected SCRAM: ${attrs.get('e')}`);
    const signature = Buffer.from(required(attrs, 'v', 'server-final-message'), 'base64');
    const expected = this.expectedServerSignature;
    if (!expected || signature.length !== expected.length || !timingSafeEqual(signature, expected)) {
      throw new ScramError('server signature mismatch: the upstream server did not prove the password');
    }
  }
}
