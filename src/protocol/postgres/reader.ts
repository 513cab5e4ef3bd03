import { ProtocolViolation } from './errors.ts';

/**
 * Bounded cursor over one message body. It never reads past `end`, so a
 * length field cannot make it wander into the next message, and a string
 * without its terminating zero is an error, not an endless scan.
 */
export class Reader {
  offset: number;

  constructor(
    readonly buffer: Buffer,
    start = 0,
    readonly end = buffer.length,
  ) {
    this.offset = start;
  }

  get remaining(): number {
    return this.end - this.offset;
  }

  private need(n: number, what: string): void {
    if (n < 0 || this.offset + n > this.end) {
      throw new ProtocolViolation(`message too short: ${what} needs ${n} bytes, ${this.remaining} left`);
    }
  }

  byte(): number {
    this.need(1, 'byte');
    return this.buffer[this.offset++]!;
  }

  int16(): number {
    this.need(2, 'int16');
    const value = this.buffer.readInt16BE(this.offset);
    this.offset += 2;
    return value;
  }

  uint16(): number {
    this.need(2, 'uint16');
    const value = this.buffer.readUInt16BE(this.offset);
    this.offset += 2;
    return value;
  }

  int32(): number {
    this.need(4, 'int32');
    const value = this.buffer.readInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  uint32(): number {
    this.need(4, 'uint32');
    const value = this.buffer.readUInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  /** A copy of the next n bytes (callers may keep it after the frame buffer is reused). */
  bytes(n: number): Buffer {
    this.need(n, 'bytes');
    const out = Buffer.from(this.buffer.subarray(this.offset, this.offset + n));
    this.offset += n;
    return out;
  }

  /** Everything left in the message. */
  rest(): Buffer {
    return this.bytes(this.remaining);
  }

  /** A zero-terminated UTF-8 string. */
  cstring(): string {
    // Search only this message: a missing terminator must not scan into the next ones.
    const found = this.buffer.subarray(this.offset, this.end).indexOf(0);
    if (found < 0) throw new ProtocolViolation('string without terminating zero');
    const zero = this.offset + found;
    const value = this.buffer.toString('utf8', this.offset, zero);
    this.offset = zero + 1;
    return value;
  }

  /** A value prefixed with an int32 length, where -1 means NULL. */
  nullableBytes(): Buffer | null {
    const length = this.int32();
    if (length === -1) return null;
    if (length < -1) throw new ProtocolViolation(`invalid value length ${length}`);
    return this.bytes(length);
  }

  /** Messages must be consumed exactly: trailing bytes mean a malformed frame. */
  finish(what: string): void {
    if (this.offset !== this.end) {
      throw new ProtocolViolation(`${what}: ${this.remaining} unexpected trailing bytes`);
    }
  }
}
