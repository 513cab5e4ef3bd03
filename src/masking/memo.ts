/**
 * Masks already made, by the bytes of the value they were made from: keyed
 * masks are deterministic, so a value seen again (a table read again, a row
 * repeated by a join) costs a lookup instead of an HMAC. Looked up straight
 * from the DataRow's bytes, without making a string or a Map key.
 *
 * A two-way set-associative table of fixed size: a value hashes (FNV-1a) to
 * a set of two slots; a new value replaces the one that was not used last.
 * Bounded by construction: at most SLOTS values of at most MAX_VALUE bytes.
 */

import type { Masked } from './plan.ts';

const SLOTS = 32_768; // a power of two
const SET_MASK = SLOTS / 2 - 1;
/** Longer values are not remembered: they would hold too much memory. */
export const MEMO_MAX_VALUE = 64;

function fnv1a(bytes: Uint8Array, start: number, end: number): number {
  let hash = 0x811c9dc5;
  for (let i = start; i < end; i++) hash = Math.imul(hash ^ bytes[i]!, 0x01000193);
  return hash | 0;
}

function sameBytes(key: Buffer, bytes: Uint8Array, start: number, end: number): boolean {
  if (key.length !== end - start) return false;
  for (let i = 0; i < key.length; i++) if (key[i] !== bytes[start + i]) return false;
  return true;
}

export class MaskMemo {
  private readonly hashes = new Int32Array(SLOTS);
  private readonly keys: (Buffer | undefined)[] = new Array(SLOTS).fill(undefined);
  private readonly masks: (Buffer | null)[] = new Array(SLOTS).fill(null);
  /** Per set: which of its two slots was used last. */
  private readonly lastUsed = new Uint8Array(SLOTS / 2);

  /** The mask remembered for bytes[start, end), or undefined. */
  get(bytes: Uint8Array, start: number, end: number, hash: number): Buffer | null | undefined {
    const set = hash & SET_MASK;
    for (let way = 0; way < 2; way++) {
      const slot = set * 2 + way;
      const key = this.keys[slot];
      if (key !== undefined && this.hashes[slot] === hash && sameBytes(key, bytes, start, end)) {
        this.lastUsed[set] = way;
        return this.masks[slot]!;
      }
    }
    return undefined;
  }

  set(bytes: Uint8Array, start: number, end: number, hash: number, mask: Buffer | null): void {
    const set = hash & SET_MASK;
    const way = this.lastUsed[set]! ^ 1;
    const slot = set * 2 + way;
    // A copy: the value's bytes are a view of a network chunk that must not be kept alive.
    this.keys[slot] = Buffer.from(bytes.subarray(start, end));
    this.hashes[slot] = hash;
    this.masks[slot] = mask;
    this.lastUsed[set] = way;
  }
}

export { fnv1a as memoHash };

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
