/**
 * Warden hands out its own cancel keys and maps them to sessions, so a
 * client never learns the server's key and a key from elsewhere does nothing.
 */
import { randomBytes, randomInt, timingSafeEqual } from 'node:crypto';

export interface CancelKey {
  readonly processId: number;
  readonly secret: Buffer;
}

export class CancelRegistry<T> {
  private readonly entries = new Map<number, { secret: Buffer; owner: T }>();

  /** A fresh key: 4-byte secret under protocol 3.0, 32 bytes under 3.2. */
  issue(owner: T, longKey: boolean): CancelKey {
    let processId: number;
    do processId = randomInt(1, 2 ** 31 - 1);
    while (this.entries.has(processId));
    const secret = randomBytes(longKey ? 32 : 4);
    this.entries.set(processId, { secret, owner });
    return { processId, secret };
  }

  release(processId: number): void {
    this.entries.delete(processId);
  }

  /** The owner of a key, compared in constant time; undefined when it matches nothing. */
  find(processId: number, secret: Buffer): T | undefined {
    const entry = this.entries.get(processId);
    const expected = entry?.secret ?? DUMMY;
    const sameLength = expected.length === secret.length;
    const equal = timingSafeEqual(expected, sameLength ? secret : expected) && sameLength;
    return entry && equal ? entry.owner : undefined;
  }

  get size(): number {
    return this.entries.size;
  }
}

const DUMMY = randomBytes(4);
