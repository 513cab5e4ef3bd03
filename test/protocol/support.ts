/**
 * Shared helpers for the codec tests. Malformed bodies are built field by
 * field with a writer, never typed as hex, so each test says which field is
 * wrong.
 */
import assert from 'node:assert/strict';
import { decodeBackend, decodeFrontend } from '../../src/protocol/postgres/codec.ts';
import { ProtocolViolation } from '../../src/protocol/postgres/errors.ts';
import type { BackendMessage, FrontendMessage } from '../../src/protocol/postgres/messages.ts';
import { Writer } from '../../src/protocol/postgres/writer.ts';

/** A message body (no type byte, no length) built field by field. */
export function body(build: (w: Writer) => void): Buffer {
  const w = new Writer();
  build(w);
  return w.flush();
}

/** A typed frame around a body, with a correct length field. */
export function frame(type: number, content: Buffer): Buffer {
  return new Writer().begin(type).bytes(content).end().flush();
}

/** Checks the frame's length field, then decodes it as a client message. */
export function decodeFrontendFrame(bytes: Buffer): FrontendMessage {
  assert.equal(bytes.readInt32BE(1), bytes.length - 1, 'the length field covers exactly the frame');
  return decodeFrontend(bytes[0]!, bytes.subarray(5));
}

/** Checks the frame's length field, then decodes it as a server message. */
export function decodeBackendFrame(bytes: Buffer): BackendMessage {
  assert.equal(bytes.readInt32BE(1), bytes.length - 1, 'the length field covers exactly the frame');
  return decodeBackend(bytes[0]!, bytes.subarray(5));
}

/** Asserts that `fn` throws a ProtocolViolation (SQLSTATE 08P01), optionally with a matching message. */
export function assertViolation(fn: () => unknown, message?: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ProtocolViolation, `expected a ProtocolViolation, got ${String(error)}`);
    assert.equal(error.sqlstate, '08P01');
    if (message !== undefined) assert.match(error.message, message);
    return true;
  });
}

/** Cuts `bytes` at the given offsets (any order, duplicates and ends allowed). */
export function splitAt(bytes: Buffer, offsets: readonly number[]): Buffer[] {
  const cuts = [...new Set([0, ...offsets.filter((o) => o > 0 && o < bytes.length), bytes.length])].sort(
    (a, b) => a - b,
  );
  const chunks: Buffer[] = [];
  for (let i = 1; i < cuts.length; i++) chunks.push(bytes.subarray(cuts[i - 1], cuts[i]));
  return chunks;
}

/** One chunk per byte: the harshest split a socket can produce. */
export function bytewise(bytes: Buffer): Buffer[] {
  return Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
}
