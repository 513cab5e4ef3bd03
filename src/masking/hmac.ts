/**
 * HMAC-SHA256 (RFC 2104, FIPS 180-4) for the short values masking hashes,
 * one per masked cell. Node's createHmac costs an object, a key schedule and
 * three calls into C++ per value, several microseconds; here the key's inner
 * and outer pad blocks are compressed once per key and kept, so a value of
 * up to 55 bytes costs two compressions and no allocation. The result is the
 * standard HMAC-SHA256 (test/masking/hmac.test.ts checks it against
 * node:crypto), so masks do not change with the implementation.
 */

const ROUND_CONSTANTS = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);
const INITIAL_STATE = new Int32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);
const BLOCK = 64;
const DIGEST = 32;

// Scratch space: masking runs on one thread at a time per process or worker.
const schedule = new Int32Array(64);
const state = new Int32Array(8);
const tail = new Uint8Array(2 * BLOCK);

/** One SHA-256 compression of the 64 bytes of `bytes` at `offset` into `into`. */
function compress(into: Int32Array, bytes: Uint8Array, offset: number): void {
  const w = schedule;
  for (let i = 0; i < 16; i++) {
    const p = offset + i * 4;
    w[i] = (bytes[p]! << 24) | (bytes[p + 1]! << 16) | (bytes[p + 2]! << 8) | bytes[p + 3]!;
  }
  rounds(into);
}

/** One SHA-256 compression of the block already in schedule[0, 16) into `into`. */
function rounds(into: Int32Array): void {
  const w = schedule;
  for (let i = 16; i < 64; i++) {
    const x = w[i - 15]!;
    const y = w[i - 2]!;
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    w[i] = (w[i - 16]! + s0 + w[i - 7]! + s1) | 0;
  }
  let a = into[0]!;
  let b = into[1]!;
  let c = into[2]!;
  let d = into[3]!;
  let e = into[4]!;
  let f = into[5]!;
  let g = into[6]!;
  let h = into[7]!;
  for (let i = 0; i < 64; i++) {
    const sum1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const choice = (e & f) ^ (~e & g);
    const t1 = (h + sum1 + choice + ROUND_CONSTANTS[i]! + w[i]!) | 0;
    const sum0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const majority = (a & b) ^ (a & c) ^ (b & c);
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + sum0 + majority) | 0;
  }
  into[0] = (into[0]! + a) | 0;
  into[1] = (into[1]! + b) | 0;
  into[2] = (into[2]! + c) | 0;
  into[3] = (into[3]! + d) | 0;
  into[4] = (into[4]! + e) | 0;
  into[5] = (into[5]! + f) | 0;
  into[6] = (into[6]! + g) | 0;
  into[7] = (into[7]! + h) | 0;
}

/**
 * Hashes `bytes[start, end)` into `into`, which holds the state after
 * `prefix` bytes were already compressed: full blocks, then the padded tail
 * (0x80, zeros, the total length in bits).
 */
function finish(into: Int32Array, bytes: Uint8Array, start: number, end: number, prefix: number): void {
  let at = start;
  for (; end - at >= BLOCK; at += BLOCK) compress(into, bytes, at);
  const rest = end - at;
  const blocks = rest + 9 > BLOCK ? 2 : 1;
  const last = blocks * BLOCK;
  for (let i = 0; i < rest; i++) tail[i] = bytes[at + i]!;
  tail[rest] = 0x80;
  for (let i = rest + 1; i < last - 8; i++) tail[i] = 0;
  const bits = (prefix + end - start) * 8;
  const high = Math.floor(bits / 2 ** 32);
  tail[last - 8] = high >>> 24;
  tail[last - 7] = (high >>> 16) & 0xff;
  tail[last - 6] = (high >>> 8) & 0xff;
  tail[last - 5] = high & 0xff;
  tail[last - 4] = bits >>> 24;
  tail[last - 3] = (bits >>> 16) & 0xff;
  tail[last - 2] = (bits >>> 8) & 0xff;
  tail[last - 1] = bits & 0xff;
  compress(into, tail, 0);
  if (blocks === 2) compress(into, tail, BLOCK);
}

function writeState(from: Int32Array, to: Uint8Array, offset: number): void {
  for (let i = 0; i < 8; i++) {
    const word = from[i]!;
    to[offset + i * 4] = word >>> 24;
    to[offset + i * 4 + 1] = (word >>> 16) & 0xff;
    to[offset + i * 4 + 2] = (word >>> 8) & 0xff;
    to[offset + i * 4 + 3] = word & 0xff;
  }
}

/** The states after the key's inner and outer pad blocks. */
interface KeyStates {
  readonly inner: Int32Array;
  readonly outer: Int32Array;
}

const keyStates = new WeakMap<Buffer, KeyStates>();

function statesOf(key: Buffer): KeyStates {
  let states = keyStates.get(key);
  if (states === undefined) {
    // A key longer than a block is hashed first (RFC 2104).
    const material = key.length > BLOCK ? sha256(key) : key;
    const pad = (byte: number): Int32Array => {
      const block = new Uint8Array(BLOCK).fill(byte);
      for (let i = 0; i < material.length; i++) block[i] = material[i]! ^ byte;
      const out = INITIAL_STATE.slice();
      compress(out, block, 0);
      return out;
    };
    states = { inner: pad(0x36), outer: pad(0x5c) };
    keyStates.set(key, states);
  }
  return states;
}

function sha256(bytes: Uint8Array): Buffer {
  state.set(INITIAL_STATE);
  finish(state, bytes, 0, bytes.length, 0);
  const out = Buffer.allocUnsafe(DIGEST);
  writeState(state, out, 0);
  return out;
}

/**
 * HMAC-SHA256(key, bytes[start, end)) as the eight big-endian words of the
 * digest, in scratch space that the next call overwrites.
 */
export function hmacSha256Words(key: Buffer, bytes: Uint8Array, start = 0, end = bytes.length): Int32Array {
  const { inner, outer } = statesOf(key);
  state.set(inner);
  finish(state, bytes, start, end, BLOCK);
  // The outer hash's only block: the inner digest, 0x80, zeros, and the length (pad block + digest) in bits.
  const w = schedule;
  for (let i = 0; i < 8; i++) w[i] = state[i]!;
  w[8] = 0x80000000 | 0;
  for (let i = 9; i < 15; i++) w[i] = 0;
  w[15] = (BLOCK + DIGEST) * 8;
  state.set(outer);
  rounds(state);
  return state;
}

/** HMAC-SHA256(key, bytes[start, end)), 32 bytes. */
export function hmacSha256(key: Buffer, bytes: Uint8Array, start = 0, end = bytes.length): Buffer {
  const out = Buffer.allocUnsafe(DIGEST);
  writeState(hmacSha256Words(key, bytes, start, end), out, 0);
  return out;
}
