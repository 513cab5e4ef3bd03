/**
 * X.509 certificates for the demo and the tests: a CA, and server or client
 * certificates signed by it (or self-signed). Node cannot create certificates
 * and `openssl` may be missing, so selfsigned (pure JS over WebCrypto) does
 * it: RSA 2048, SHA-256 signatures.
 */
import net from 'node:net';
import { generate } from 'selfsigned';

export interface Pem {
  /** The certificate, PEM. */
  readonly cert: string;
  /** Its private key, PKCS#8 PEM. */
  readonly key: string;
}

export interface CertificateOptions {
  readonly commonName: string;
  /**
   * Subject alternative names; IP addresses become IP entries, anything else
   * a DNS entry. Default: the common name. Clients verifying the host
   * (verify-full) match these, not the common name: for a local server use
   * `['localhost', '127.0.0.1']`.
   */
  readonly altNames?: readonly string[];
  /** Validity in days. Default 365. */
  readonly days?: number;
  /** Sign with this CA; without it the certificate is self-signed. */
  readonly ca?: Pem;
}

const KEY_BITS = 2048;
const ALGORITHM = 'sha256';

function validity(days: number): { notBeforeDate: Date; notAfterDate: Date } {
  // Backdated a little, so that a peer whose clock lags does not see a
  // certificate that is "not yet valid".
  const notBeforeDate = new Date(Date.now() - 5 * 60_000);
  return { notBeforeDate, notAfterDate: new Date(notBeforeDate.getTime() + days * 86_400_000) };
}

/** A certificate authority to sign server and client certificates with. */
export async function generateCa(commonName: string, days = 365): Promise<Pem> {
  const pems = await generate([{ name: 'commonName', value: commonName }], {
    keySize: KEY_BITS,
    algorithm: ALGORITHM,
    ...validity(days),
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

/**
 * A leaf certificate usable by a TLS server and, with the user name as
 * common name, as a client certificate (PostgreSQL's `cert` auth).
 */
export async function generateCertificate(opts: CertificateOptions): Promise<Pem> {
  const altNames = (opts.altNames ?? [opts.commonName]).map((name) =>
    net.isIP(name) ? { type: 7 as const, ip: name } : { type: 2 as const, value: name },
  );
  const pems = await generate([{ name: 'commonName', value: opts.commonName }], {
    keySize: KEY_BITS,
    algorithm: ALGORITHM,
    ...validity(opts.days ?? 365),
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
      { name: 'subjectAltName', altNames },
    ],
    ...(opts.ca ? { ca: { cert: opts.ca.cert, key: opts.ca.key } } : {}),
  });
  return { cert: pems.cert, key: pems.private };
}

/** A server certificate for 127.0.0.1 and localhost, signed by `ca`, that passes verify-full. */
export function generateLocalServerCertificate(ca: Pem, days = 365): Promise<Pem> {
  return generateCertificate({ commonName: 'localhost', altNames: ['localhost', '127.0.0.1'], days, ca });
}
