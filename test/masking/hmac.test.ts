import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { hmacSha256 } from '../../src/masking/hmac.ts';

describe('hmacSha256 is HMAC-SHA256', { timeout: 60_000 }, () => {
  it('equals node:crypto for keys and values of every length around the block edges', () => {
    for (const keyLength of [0, 1, 32, 63, 64, 65, 200]) {
      const key = Buffer.alloc(keyLength, 0xa7);
      for (let length = 0; length <= 200; length++) {
        const value = Buffer.alloc(length);
        for (let i = 0; i < length; i++) value[i] = (i * 31 + keyLength) & 0xff;
        assert.deepEqual(
          hmacSha256(key, value),
          createHmac('sha256', key).update(value).digest(),
          `key ${keyLength} bytes, value ${length} bytes`,
        );
      }
    }
  });

  it('equals node:crypto on random keys, values and sub-ranges', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 100 }),
        fc.uint8Array({ maxLength: 300 }),
        fc.nat(),
        fc.nat(),
        (keyBytes, valueBytes, a, b) => {
          const key = Buffer.from(keyBytes);
          const start = valueBytes.length === 0 ? 0 : a % valueBytes.length;
          const end = start + (b % (valueBytes.length - start + 1));
          const expected = createHmac('sha256', key).update(valueBytes.subarray(start, end)).digest();
          assert.deepEqual(hmacSha256(key, valueBytes, start, end), expected);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('keeps keys apart (the per-key pad states are not shared)', () => {
    const value = Buffer.from('jane@example.com');
    const one = hmacSha256(Buffer.from('key one'), value);
    const two = hmacSha256(Buffer.from('key two'), value);
    assert.notDeepEqual(one, two);
    assert.deepEqual(hmacSha256(Buffer.from('key one'), value), one);
  });
});
