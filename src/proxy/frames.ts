/**
 * Reads whole frames from a socket one at a time, for the short startup and
 * authentication phases where the flow is a conversation. The steady-state
 * relay does not use this: it frames inline and streams.
 */
import type { Duplex } from 'node:stream';
import { Framer } from '../protocol/postgres/framer.ts';

export interface Frame {
  /** 0 for untyped startup packets. */
  readonly type: number;
  /** The whole frame, header included. */
  readonly raw: Buffer;
  /** Offset of the body in raw. */
  readonly bodyStart: number;
  readonly body: Buffer;
}

export class FrameReader {
  readonly framer: Framer;
  private readonly frames: Frame[] = [];
  private waiting: { resolve: (frame: Frame) => void; reject: (error: Error) => void } | null = null;
  private failure: Error | null = null;
  private readonly onData = (chunk: Buffer) => this.push(chunk);
  private readonly onEnd = () => this.fail(new Error('connection closed'));
  private readonly onError = (error: Error) => this.fail(error);

  constructor(
    readonly socket: Duplex,
    maxMessageSize: number,
    typed: boolean,
    limitName?: string,
  ) {
    this.framer = new Framer(maxMessageSize, limitName);
    this.framer.typed = typed;
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
    socket.resume();
  }

  /** Frames already cut but not yet taken. */
  get queued(): number {
    return this.frames.length;
  }

  /** Feeds bytes that were read before this reader existed. */
  feed(chunk: Buffer): void {
    this.push(chunk);
  }

  next(): Promise<Frame> {
    // Untyped frames stop the framer (see push): continue with what is pending, in the current mode.
    if (this.frames.length === 0 && this.framer.buffered > 0 && !this.failure) this.push(Buffer.alloc(0));
    const frame = this.frames.shift();
    if (frame) return Promise.resolve(frame);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
    });
  }

  /**
   * Stops reading and returns the bytes received but not yet taken (whole
   * frames re-serialised in order, then any partial frame), for the next owner.
   */
  detach(): Buffer {
    this.socket.pause();
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onError);
    const parts = this.frames.map((frame) => frame.raw);
    this.frames.length = 0;
    const rest = this.framer.takeRemainder();
    if (rest) parts.push(rest);
    return Buffer.concat(parts);
  }

  private push(chunk: Buffer): void {
    try {
      this.framer.push(chunk, (type, buffer, start, bodyStart, end) => {
        const raw = Buffer.from(buffer.subarray(start, end));
        // After an untyped (startup-phase) frame the owner may switch modes or
        // hand the socket to TLS: leave the rest unread until asked.
        if (!this.framer.typed) this.framer.stop();
        this.deliver({ type, raw, bodyStart: bodyStart - start, body: raw.subarray(bodyStart - start) });
      });
    } catch (error) {
      this.fail(error as Error);
    }
  }

  private deliver(frame: Frame): void {
    if (this.waiting) {
      const { resolve } = this.waiting;
      this.waiting = null;
      resolve(frame);
    } else {
      this.frames.push(frame);
    }
  }

  private fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    if (this.waiting) {
      const { reject } = this.waiting;
      this.waiting = null;
      reject(error);
    }
  }
}

/** Reads exactly one byte (the answer to SSLRequest); anything after it is refused. */
export function readOneByte(socket: Duplex, timeoutMs: number): Promise<{ byte: number; extra: number }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => done(new Error(`no answer to SSLRequest within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onData = (chunk: Buffer) => {
      // Stop the flow before anything else is read as plaintext.
      socket.pause();
      done(null, { byte: chunk[0]!, extra: chunk.length - 1 });
    };
    const onClose = () => done(new Error('connection closed during SSL negotiation'));
    const onError = (error: Error) => done(error);
    function done(error: Error | null, value?: { byte: number; extra: number }) {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onError);
      if (error) reject(error);
      else resolve(value!);
    }
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('error', onError);
    socket.resume();
  });
}
