/**
 * Masks already made, by the bytes of the value they were made from: keyed
 * masks are deterministic, so a value seen again (a table read again, a row
 * repeated by a join) costs a lookup instead of an HMAC. Looked up straight
 * from the DataRow's bytes, without making a string or a Map key.
 *
 * A four-way set-associative table of fixed size: a value hashes to a set
 * of four slots and replaces them in turn. The values are copied into one
 * slab (a value's bytes are a view of a network chunk, which must not be
 * kept alive, and one slab costs no allocation per value). Bounded by
 * construction: at most SLOTS values of at most MEMO_MAX_VALUE bytes.
 */

import type { Masked } from './plan.ts';

const SLOTS = 32_768; // a power of two
const WAYS = 4;
const SET_MASK = SLOTS / WAYS - 1;
/** Longer values are not remembered: they would hold too much memory. */
export const MEMO_MAX_VALUE = 64;

/** A hash of bytes[start, end): FNV-1a over 4-byte words, then murmur3's finaliser to spread the bits. */
function memoHash(bytes: Uint8Array, start: number, end: number): number {
  let hash = (0x811c9dc5 ^ (end - start)) | 0;
  let i = start;
  for (; i + 4 <= end; i += 4) {
    const word = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    hash = Math.imul(hash ^ word, 0x01000193);
  }
  for (; i < end; i++) hash = Math.imul(hash ^ bytes[i]!, 0x01000193);
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  return (hash ^ (hash >>> 16)) | 0;
}

export class MaskMemo {
  private readonly hashes = new Int32Array(SLOTS);
  /** The length of the value in each slot; -1: empty. */
  private readonly lengths = new Int32Array(SLOTS).fill(-1);
  /** The value of slot s at [s * MEMO_MAX_VALUE, + its length). */
  private readonly values = new Uint8Array(SLOTS * MEMO_MAX_VALUE);
  private readonly masks: (Buffer | null)[] = new Array(SLOTS).fill(null);
  /** Per set: the slot a new value takes next. */
  private readonly nextWay = new Uint8Array(SLOTS / WAYS);

  /** The mask remembered for bytes[start, end) (at most MEMO_MAX_VALUE bytes), or undefined. */
  get(bytes: Uint8Array, start: number, end: number, hash: number): Buffer | null | undefined {
    const first = (hash & SET_MASK) * WAYS;
    const length = end - start;
    const values = this.values;
    for (let slot = first; slot < first + WAYS; slot++) {
      if (this.hashes[slot] !== hash || this.lengths[slot] !== length) continue;
      const offset = slot * MEMO_MAX_VALUE - start;
      let i = start;
      while (i < end && values[offset + i] === bytes[i]) i++;
      if (i === end) return this.masks[slot]!;
    }
    return undefined;
  }

  set(bytes: Uint8Array, start: number, end: number, hash: number, mask: Buffer | null): void {
    const set = hash & SET_MASK;
    const way = this.nextWay[set]!;
    this.nextWay[set] = (way + 1) % WAYS;
    const slot = set * WAYS + way;
    const values = this.values;
    const offset = slot * MEMO_MAX_VALUE - start;
    for (let i = start; i < end; i++) values[offset + i] = bytes[i]!;
    this.lengths[slot] = end - start;
    this.hashes[slot] = hash;
    this.masks[slot] = mask;
  }
}

export { memoHash };

/**
 * One memo per way of masking (strategy, class, column type and format),
 * shared by the sessions of one masking configuration. Only the keyed
 * strategies are remembered: the others cost less than a lookup.
 */
export class MaskMemos {
  private readonly byWay = new Map<string, MaskMemo>();

  for(masked: Masked, typeOid: number, format: 0 | 1): MaskMemo | undefined {
    const { kind } = masked.strategy;
    if (kind !== 'hash' && kind !== 'fake') return undefined;
    const way = `${kind}/${masked.maskClass}/${typeOid}/${format}`;
    let memo = this.byWay.get(way);
    if (memo === undefined) {
      memo = new MaskMemo();
      this.byWay.set(way, memo);
    }
    return memo;
  }
}
