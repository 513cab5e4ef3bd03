/**
 * Rewriting a result row's private values, shared by DataRows and COPY rows:
 * which columns to rewrite and how (a Rewrite), the mask of one value (keyed
 * masks remembered), and writing a row again with its values replaced (a
 * DataRow and a binary COPY tuple both hold values as an int32 length, -1
 * for NULL, and that many bytes).
 */
import { type MaskMemo, type MaskMemos, MEMO_MAX_VALUE, memoHash } from './memo.ts';
import type { Masked } from './plan.ts';
import { columnMasker, type ValueMasker } from './strategies.ts';

/** A column to rewrite: its position, and how its values are masked. */
export interface Rewrite {
  readonly index: number;
  /** Masks one value of the column. */
  readonly mask: ValueMasker;
  /** Masks already made this way, by value, for the strategies that cost an HMAC per value. */
  readonly memo: MaskMemo | undefined;
}

/** How column `index` (of type `typeOid`, sent in `format`) is rewritten. */
export function rewriteOf(
  index: number,
  masked: Masked,
  typeOid: number,
  format: 0 | 1,
  memos: MaskMemos | undefined,
  key: Buffer,
): Rewrite {
  return {
    index,
    mask: columnMasker(typeOid, format, masked.strategy, masked.maskClass, key),
    memo: memos?.for(masked, typeOid, format),
  };
}

/** The mask of the (non-NULL) value at bytes[start, end), remembered when its way of masking is keyed. */
export function maskAt(bytes: Buffer, start: number, end: number, rewrite: Rewrite): Buffer | null {
  const { memo } = rewrite;
  if (memo === undefined || end - start > MEMO_MAX_VALUE) return rewrite.mask(bytes, start, end);
  const hash = memoHash(bytes, start, end);
  let value = memo.get(bytes, start, end, hash);
  if (value === undefined) {
    value = rewrite.mask(bytes, start, end);
    memo.set(bytes, start, end, hash, value);
  }
  return value;
}

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
  spliceInto(frame, 0, frame.length, size, count, starts, ends, replacements, out, 0);
  return out;
}

/**
 * spliceValues for the message at buffer[start, end), written into `out` at
 * `at` (room for `size` bytes made by the caller); returns where it ended.
 */
export function spliceInto(
  buffer: Buffer,
  start: number,
  end: number,
  size: number,
  count: number,
  starts: readonly number[],
  ends: readonly number[],
  replacements: (Buffer | null)[],
  out: Buffer,
  at: number,
): number {
  out[at] = buffer[start]!;
  out.writeInt32BE(size - 1, at + 1);
  let to = at + 5;
  let from = start + 5;
  for (let i = 0; i < count; i++) {
    to = copyBytes(buffer, from, starts[i]!, out, to);
    const value = replacements[i]!;
    replacements[i] = null;
    to = out.writeInt32BE(value === null ? -1 : value.length, to);
    if (value !== null) to = copyBytes(value, 0, value.length, out, to);
    from = ends[i]!;
  }
  return copyBytes(buffer, from, end, out, to);
}
