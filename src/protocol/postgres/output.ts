/**
 * The bytes of one socket write, built message by message: a transformed
 * result is written into one buffer per chunk read from the server instead
 * of one buffer per message (allocating and joining them costs more than
 * the rewriting). Whoever reserves room writes `bytes` from `at` and moves
 * `at` past what it wrote.
 */
export class Output {
  bytes: Buffer;
  at = 0;

  constructor(capacity = 0) {
    this.bytes = Buffer.allocUnsafe(capacity);
  }

  /** Starts again empty with room for `capacity` bytes, in the buffer it has when that is large enough. */
  reset(capacity: number): void {
    if (this.bytes.length < capacity) this.bytes = Buffer.allocUnsafe(capacity);
    this.at = 0;
  }

  /** Makes room for `n` more bytes at `at` (the buffer may be replaced: read `bytes` after). */
  reserve(n: number): void {
    if (this.at + n <= this.bytes.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.at + n));
    this.bytes.copy(grown, 0, 0, this.at);
    this.bytes = grown;
  }

  /** Appends source[start, end). */
  append(source: Buffer, start = 0, end = source.length): void {
    this.reserve(end - start);
    this.at += source.copy(this.bytes, this.at, start, end);
  }

  /** What was written, a view of the buffer: reset() may overwrite it, so release() it while it is in use. */
  written(): Buffer {
    return this.bytes.subarray(0, this.at);
  }

  /** Lets go of the buffer (its bytes now belong to whoever holds written()). */
  release(): void {
    this.bytes = EMPTY;
    this.at = 0;
  }
}

const EMPTY = Buffer.alloc(0);
