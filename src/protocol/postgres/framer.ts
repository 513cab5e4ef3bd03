import { describeType } from './codec.ts';
import { ProtocolViolation } from './errors.ts';
import { MAX_STARTUP_PACKET } from './startup.ts';

/**
 * Called once per complete frame. `buffer[start]` is the type byte (absent for
 * startup packets, where start is the length field); the body runs from
 * `bodyStart` to `end`. The buffer is only valid during the call.
 */
export type FrameHandler = (
  type: number,
  buffer: Buffer,
  start: number,
  bodyStart: number,
  end: number,
) => void;

/**
 * Cuts complete messages out of a byte stream, keeping the remainder of a
 * partial one for the next chunk. Every length field is bounded before any
 * byte is buffered for it. The startup packet has no type byte: the owner
 * says when startup is over (`typed = true`); the framer never guesses.
 */
export class Framer {
  typed = false;
  private pending: Buffer | null = null;

  constructor(private readonly maxMessageSize: number) {}

  /** Bytes held back waiting for the rest of a frame. */
  get buffered(): number {
    return this.pending?.length ?? 0;
  }

  /** Takes the unread bytes (for a handover, e.g. to TLS); the framer is left empty. */
  takeRemainder(): Buffer | null {
    const rest = this.pending;
    this.pending = null;
    return rest;
  }

  /**
   * Feeds a chunk; calls `onFrame` for each complete frame. When `onFrame`
   * calls `stop()`, the rest stays pending (e.g. bytes after an SSLRequest,
   * which must not be read as plaintext).
   */
  push(chunk: Buffer, onFrame: FrameHandler): void {
    let buffer = chunk;
    if (this.pending !== null) {
      buffer = Buffer.concat([this.pending, chunk]);
      this.pending = null;
    }
    let offset = 0;
    const length = buffer.length;
    while (offset < length) {
      const header = this.typed ? 5 : 4;
      if (length - offset < header) break;
      const lengthAt = this.typed ? offset + 1 : offset;
      const declared = buffer.readInt32BE(lengthAt);
      this.check(declared, this.typed ? buffer[offset]! : -1);
      const end = lengthAt + declared;
      if (end > length) break;
      // `typed` may flip inside onFrame: the next header is then read in the new mode.
      onFrame(this.typed ? buffer[offset]! : 0, buffer, offset, lengthAt + 4, end);
      offset = end;
      if (this.stopped) {
        this.stopped = false;
        break;
      }
    }
    if (offset < length) this.pending = Buffer.from(buffer.subarray(offset));
  }

  private stopped = false;

  /** Ends the current `push` after this frame; the rest stays pending. */
  stop(): void {
    this.stopped = true;
  }

  private check(declared: number, type: number): void {
    if (!this.typed) {
      if (declared < 8 || declared > MAX_STARTUP_PACKET) {
        throw new ProtocolViolation(`invalid startup packet length ${declared}`);
      }
      return;
    }
    if (declared < 4)
      throw new ProtocolViolation(`invalid length ${declared} in message ${describeType(type)}`);
    if (declared > this.maxMessageSize) {
      throw new ProtocolViolation(
        `message ${describeType(type)} of ${declared} bytes exceeds the limit of ${this.maxMessageSize} (listen.maxMessageSize)`,
      );
    }
  }
}
