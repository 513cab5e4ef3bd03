/**
 * Writing a row again with some of its values replaced: the shared last step
 * of masking a DataRow and a binary COPY tuple, whose values are both an
 * int32 length (-1 for NULL) and that many bytes.
 */

/** Copies source[start, end) to target at `at`; returns where it ended. Short runs by hand: Buffer.copy costs more. */
export function copyBytes(source: Buffer, start: number, end: number, target: Buffer, at: number): number {
  if (end - start > 32) return at + source.copy(target, at, start, end);
  for (let i = start; i < end; i++) target[at++] = source[i]!;
  return at;
}

/**
 * The message `frame` (type byte and length first) of `size` bytes once the
 * first `count` length-prefixed values at frame[starts[i], ends[i]) are
 * replaced by replacements[i] (null: NULL). Every other byte is copied as it
 * was. The replacements are cleared: nothing keeps a value past its row.
 */
export function spliceValues(
  frame: Buffer,
  size: number,
  count: number,
  starts: readonly number[],
  ends: readonly number[],
  replacements: (Buffer | null)[],
): Buffer {
  const out = Buffer.allocUnsafe(size);
  out[0] = frame[0]!;
  out.writeInt32BE(size - 1, 1);
  let to = 5;
  let from = 5;
  for (let i = 0; i < count; i++) {
    to = copyBytes(frame, from, starts[i]!, out, to);
    const value = replacements[i]!;
    replacements[i] = null;
    to = out.writeInt32BE(value === null ? -1 : value.length, to);
    if (value !== null) to = copyBytes(value, 0, value.length, out, to);
    from = ends[i]!;
  }
  copyBytes(frame, from, frame.length, out, to);
  return out;
}
