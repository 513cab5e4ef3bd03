import { describeType } from './codec.ts';
import { ProtocolViolation } from './errors.ts';

/**
 * Reports where each message ends in a stream of server messages, without
 * copying or holding any of them: a DataRow of hundreds of MB passes through
 * in pieces. For each message that ends inside a chunk, `onEnd` receives its
 * type, the offset just past it, and its first body byte (-1 if empty) —
 * enough to read ReadyForQuery's transaction status.
 */
export type MessageEndHandler = (type: number, end: number, firstByte: number) => boolean | undefined;

/** Message types whose bodies `lastBody` keeps when split across chunks: CommandComplete, ErrorResponse. */
const KEPT_TYPES = new Set([0x43, 0x45]);
/** Enough of a body for a command tag or an error's leading fields (severity, SQLSTATE). */
const KEPT_BYTES = 512;

export class MessageScanner {
  private headerFill = 0; // bytes of the 5-byte header seen so far (split headers)
  private readonly header = Buffer.alloc(5);
  private type = 0;
  private bodyLeft = 0; // body bytes still to come for the current message
  private firstByte = -1;
  private bodyLength = 0;
  // Where the body of the message just ended is: in the chunk being scanned, or (split) in `kept`.
  private chunk: Buffer | undefined;
  private lastStart = 0;
  private lastEnd = 0;
  private keeping = false;
  private kept: Buffer | undefined;
  private keptLength = 0;

  /** True when the stream is between two messages: a synthetic message may be inserted here. */
  get atBoundary(): boolean {
    return this.headerFill === 0 && this.bodyLeft === 0;
  }

  /**
   * Scans `chunk` from `start`. When `onEnd` returns true, scanning stops
   * after that message; the return value is the offset scanning reached.
   */
  scan(chunk: Buffer, onEnd: MessageEndHandler, start = 0): number {
    const n = chunk.length;
    let i = start;
    this.chunk = chunk;
    while (i < n) {
      if (this.bodyLeft > 0) {
        if (this.firstByte < 0 && this.bodyLeft === this.bodyLength) this.firstByte = chunk[i]!;
        const take = Math.min(this.bodyLeft, n - i);
        if (this.keeping) this.keep(chunk, i, take);
        this.bodyLeft -= take;
        i += take;
        if (this.bodyLeft === 0) {
          this.lastStart = -1;
          if (onEnd(this.type, i, this.firstByte) === true) return i;
        }
        continue;
      }
      if (this.headerFill === 0 && n - i >= 5) {
        // Common case: the whole header is in this chunk.
        const type = chunk[i]!;
        const length = chunk.readInt32BE(i + 1);
        if (length < 4)
          throw new ProtocolViolation(`server sent message ${describeType(type)} with length ${length}`);
        const end = i + 1 + length;
        if (end <= n) {
          const first = length > 4 ? chunk[i + 5]! : -1;
          this.lastStart = i + 5;
          this.lastEnd = end;
          i = end;
          if (onEnd(type, end, first) === true) return i;
          continue;
        }
        this.begin(type, length - 4);
        i += 5;
        continue;
      }
      // A header split across chunks: collect it byte by byte.
      this.header[this.headerFill++] = chunk[i++]!;
      if (this.headerFill === 5) {
        this.headerFill = 0;
        const length = this.header.readInt32BE(1);
        const type = this.header[0]!;
        if (length < 4)
          throw new ProtocolViolation(`server sent message ${describeType(type)} with length ${length}`);
        if (length > 4) this.begin(type, length - 4);
        else {
          this.lastStart = this.lastEnd = 0;
          if (onEnd(type, i, -1) === true) return i;
        }
      }
    }
    return n;
  }

  /**
   * The body of the message `onEnd` was just called for, while in that call:
   * whole for messages within one chunk; for a CommandComplete or
   * ErrorResponse split across chunks, its first 512 bytes; else empty.
   */
  lastBody(): Buffer {
    if (this.lastStart >= 0) return this.chunk!.subarray(this.lastStart, this.lastEnd);
    return this.keeping ? this.kept!.subarray(0, this.keptLength) : Buffer.alloc(0);
  }

  private keep(chunk: Buffer, at: number, length: number): void {
    const take = Math.min(length, KEPT_BYTES - this.keptLength);
    if (take <= 0) return;
    chunk.copy(this.kept!, this.keptLength, at, at + take);
    this.keptLength += take;
  }

  private begin(type: number, bodyLength: number): void {
    this.type = type;
    this.bodyLeft = bodyLength;
    this.bodyLength = bodyLength;
    this.firstByte = -1;
    this.keeping = KEPT_TYPES.has(type);
    if (this.keeping) {
      this.kept ??= Buffer.alloc(KEPT_BYTES);
      this.keptLength = 0;
    }
  }
}
