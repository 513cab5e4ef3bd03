/**
 * How a client proves it is the identity it names. The session asks the
 * authenticator for SCRAM material or to check a cleartext secret; API keys
 * are the first implementation, IdP tokens plug in behind the same interface.
 */
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { SCRAM_ITERATIONS, type ServerCredentials } from '../protocol/postgres/scram.ts';
import type { Store } from '../store/store.ts';
import { keyCredentials } from './keys.ts';

const pbkdf2Async = promisify(pbkdf2);

export interface Authenticator {
  /**
   * SCRAM material of the identity. For an unknown identity, or one without
   * keys, a stand-in that never matches but looks the same on the wire, so a
   * probe cannot tell which names exist.
   */
  scramCredentials(identity: string): ServerCredentials;
  /** Checks a secret sent in cleartext (only ever over TLS or loopback). */
  verifySecret(identity: string, secret: string): Promise<boolean>;
}

export class ApiKeyAuthenticator implements Authenticator {
  /** Per-process secret behind the stand-in salts; stable for a name during the process's life. */
  private readonly mockSecret = randomBytes(32);

  constructor(private readonly store: Store) {}

  scramCredentials(identity: string): ServerCredentials {
    return keyCredentials(this.store, identity) ?? this.standIn(identity);
  }

  async verifySecret(identity: string, secret: string): Promise<boolean> {
    const credentials = this.scramCredentials(identity);
    // The same work whether or not the identity exists.
    const salted = await pbkdf2Async(secret, credentials.salt, credentials.iterations, 32, 'sha256');
    const clientKey = createHmac('sha256', salted).update('Client Key').digest();
    const storedKey = createHash('sha256').update(clientKey).digest();
    let matched = false;
    for (const verifier of credentials.verifiers) {
      if (timingSafeEqual(storedKey, verifier.storedKey)) matched = true;
    }
    return matched;
  }

  private standIn(identity: string): ServerCredentials {
    const salt = createHmac('sha256', this.mockSecret).update(identity).digest().subarray(0, 16);
    return { salt, iterations: SCRAM_ITERATIONS, verifiers: [] };
  }
}
