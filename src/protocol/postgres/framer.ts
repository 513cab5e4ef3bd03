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
  // Bytes of an incomplete frame, kept as a list and joined once the frame is whole:
  // joining on every chunk would make a large message cost quadratic time.
  private held: Buffer[] = [];
  private heldLength = 0;
  /** Size of the incomplete frame once its header is known, else 0. */
  private needed = 0;

  constructor(
    private readonly maxMessageSize: number,
    /** Where the limit is set, for the error message. */
    private readonly limitName = 'listen.maxMessageSize',
  ) {}

  /** Bytes held back waiting for the rest of a frame. */
  get buffered(): number {
    return this.heldLength;
  }

  /** Takes the unread bytes (for a handover, e.g. to TLS); the framer is left empty. */
  takeRemainder(): Buffer | null {
    const rest = this.heldLength > 0 ? Buffer.concat(this.held) : null;
    this.held = [];
    this.heldLength = 0;
    this.needed = 0;
    return rest;
  }

  /**
   * Feeds a chunk; calls `onFrame` for each complete frame. When `onFrame`
   * calls `stop()`, the rest stays pending (e.g. bytes after an SSLRequest,
   * which must not be read as plaintext).
   */
  push(chunk: Buffer, onFrame: FrameHandler): void {
    let buffer = chunk;
    if (this.heldLength > 0) {
      if (this.needed > 0 && this.heldLength + chunk.length < this.needed) {
        this.held.push(chunk);
        this.heldLength += chunk.length;
        return;
      }
      this.held.push(chunk);
      buffer = Buffer.concat(this.held);
      this.held = [];
      this.heldLength = 0;
      this.needed = 0;
    }
    let offset = 0;
    let needed = 0;
    const length = buffer.length;
    while (offset < length) {
      const header = this.typed ? 5 : 4;
      if (length - offset < header) break;
      const lengthAt = this.typed ? offset + 1 : offset;
      const declared = buffer.readInt32BE(lengthAt);
      this.check(declared, this.typed ? buffer[offset]! : -1);
      const end = lengthAt + declared;
      if (end > length) {
        needed = end - offset;
        break;
      }
      // `typed` may flip inside onFrame: the next header is then read in the new mode.
      onFrame(this.typed ? buffer[offset]! : 0, buffer, offset, lengthAt + 4, end);
      offset = end;
      if (this.stopped) {
        this.stopped = false;
        break;
      }
    }
    if (offset < length) {
      const rest = Buffer.from(buffer.subarray(offset));
      this.held = [rest];
      this.heldLength = rest.length;
      this.needed = needed;
    }
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
        `message ${describeType(type)} of ${declared} bytes exceeds the limit of ${this.maxMessageSize} (${this.limitName})`,
      );
    }
  }
}
