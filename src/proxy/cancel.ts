/**
 * Warden hands out its own cancel keys and maps them to sessions, so a
 * client never learns the server's key and a key from elsewhere does nothing.
 *
 * With several worker processes sharing the port, a CancelRequest arrives on
 * whichever worker the kernel picks, so the process id in a key names its
 * owner: the top 7 bits are the worker id (0 for a single process), the rest
 * is random.
 */
import { randomBytes, randomInt, timingSafeEqual } from 'node:crypto';

export interface CancelKey {
  readonly processId: number;
  readonly secret: Buffer;
}

const WORKER_SHIFT = 24;
export const MAX_WORKER_ID = 127;

export class CancelRegistry<T> {
  private readonly entries = new Map<number, { secret: Buffer; owner: T }>();

  constructor(readonly workerId = 0) {
    if (!Number.isInteger(workerId) || workerId < 0 || workerId > MAX_WORKER_ID) {
      throw new RangeError(`worker id ${workerId} is outside 0-${MAX_WORKER_ID}`);
    }
  }

  /** A fresh key: 4-byte secret under protocol 3.0, 32 bytes under 3.2. */
  issue(owner: T, longKey: boolean): CancelKey {
    let processId: number;
    do processId = (this.workerId << WORKER_SHIFT) | randomInt(1, 2 ** WORKER_SHIFT);
    while (this.entries.has(processId));
    const secret = randomBytes(longKey ? 32 : 4);
    this.entries.set(processId, { secret, owner });
    return { processId, secret };
  }

  release(processId: number): void {
    this.entries.delete(processId);
  }

  /** The worker that issued a key. */
  static workerOf(processId: number): number {
    return processId >>> WORKER_SHIFT;
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
