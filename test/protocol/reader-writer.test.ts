import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Reader } from '../../src/protocol/postgres/reader.ts';
import { Writer } from '../../src/protocol/postgres/writer.ts';
import { assertViolation, body } from './support.ts';

describe('Reader bounds', () => {
  it('reads big-endian integers of each width and advances the cursor', () => {
    const bytes = body((w) => w.byte(0xfe).int16(-2).int16(0x7fff).int32(-1).uint32(0xffffffff));
    const r = new Reader(bytes);
    assert.equal(r.byte(), 0xfe);
    assert.equal(r.int16(), -2);
    assert.equal(r.uint16(), 0x7fff);
    assert.equal(r.int32(), -1);
    assert.equal(r.uint32(), 0xffffffff);
    assert.equal(r.remaining, 0);
    r.finish('integers');
  });

  it('reads an int16 of 0xffff as 65535 with uint16 and -1 with int16', () => {
    const bytes = Buffer.from([0xff, 0xff, 0xff, 0xff]);
    const r = new Reader(bytes);
    assert.equal(r.uint16(), 65535);
    assert.equal(r.int16(), -1);
  });

  it('fails with a ProtocolViolation on every read that would pass the end of the message', () => {
    const oneByte = () => new Reader(Buffer.from([1]));
    assertViolation(() => oneByte().int16(), /int16 needs 2 bytes, 1 left/);
    assertViolation(() => oneByte().uint16());
    assertViolation(() => oneByte().int32());
    assertViolation(() => oneByte().uint32());
    assertViolation(() => oneByte().bytes(2));
    const empty = new Reader(Buffer.alloc(0));
    assertViolation(() => empty.byte(), /byte needs 1 bytes, 0 left/);
  });

  it('never reads past its own end even when the underlying buffer continues (the next message)', () => {
    // The window covers bytes 0..3; bytes 4.. belong to the next message.
    const buffer = body((w) => w.int16(7).byte(1).byte(2).int32(99));
    const r = new Reader(buffer, 0, 4);
    assert.equal(r.int16(), 7);
    assertViolation(() => r.int32());
    assert.deepEqual(r.bytes(2), Buffer.from([1, 2]));
    assertViolation(() => r.byte());
  });

  it('starts at the given offset and counts remaining bytes from there', () => {
    const r = new Reader(Buffer.from([9, 9, 9, 1, 2]), 3);
    assert.equal(r.remaining, 2);
    assert.deepEqual(r.rest(), Buffer.from([1, 2]));
    assert.equal(r.remaining, 0);
  });

  it('returns copies from bytes(), so a kept value survives reuse of the frame buffer', () => {
    const buffer = Buffer.from([1, 2, 3]);
    const kept = new Reader(buffer).bytes(3);
    buffer.fill(0);
    assert.deepEqual(kept, Buffer.from([1, 2, 3]));
  });
});

describe('Reader cstring', () => {
  it('reads UTF-8 strings up to the terminating zero and skips the zero', () => {
    const r = new Reader(body((w) => w.cstring('héllo ✓').cstring('').cstring('x')));
    assert.equal(r.cstring(), 'héllo ✓');
    assert.equal(r.cstring(), '');
    assert.equal(r.cstring(), 'x');
    r.finish('strings');
  });

  it('fails with a ProtocolViolation when the string has no terminating zero', () => {
    const r = new Reader(Buffer.from('no terminator', 'utf8'));
    assertViolation(() => r.cstring(), /without terminating zero/);
  });

  it('does not take a zero that lies beyond the end of the message as the terminator', () => {
    // "abc" is the whole message; the zero after it belongs to the next one.
    const buffer = body((w) => w.cstring('abc'));
    const r = new Reader(buffer, 0, 3);
    assertViolation(() => r.cstring(), /without terminating zero/);
    assert.equal(r.offset, 0, 'a failed read leaves the cursor where it was');
  });

  it('fails when the message is empty and a string is expected', () => {
    assertViolation(() => new Reader(Buffer.alloc(0)).cstring());
  });
});

describe('Reader nullable values', () => {
  it('distinguishes NULL (length -1) from an empty value (length 0)', () => {
    const r = new Reader(body((w) => w.int32(-1).int32(0).int32(2).bytes(Buffer.from('ok'))));
    assert.equal(r.nullableBytes(), null);
    const empty = r.nullableBytes();
    assert.ok(Buffer.isBuffer(empty));
    assert.equal(empty.length, 0);
    assert.deepEqual(r.nullableBytes(), Buffer.from('ok'));
    r.finish('values');
  });

  it('rejects lengths below -1', () => {
    const r = new Reader(body((w) => w.int32(-2)));
    assertViolation(() => r.nullableBytes(), /invalid value length -2/);
  });

  it('rejects a declared length longer than what is left of the message', () => {
    const r = new Reader(body((w) => w.int32(10).bytes(Buffer.from('short'))));
    assertViolation(() => r.nullableBytes());
  });
});

describe('Reader finish', () => {
  it('accepts a message consumed exactly', () => {
    const r = new Reader(Buffer.from([0, 0, 0, 1]));
    r.int32();
    assert.doesNotThrow(() => r.finish('Example'));
  });

  it('rejects trailing bytes and names the message and the count', () => {
    const r = new Reader(Buffer.from([0, 0, 0, 1, 7, 7]));
    r.int32();
    assertViolation(() => r.finish('Example'), /Example: 2 unexpected trailing bytes/);
  });
});

describe('Writer', () => {
  it('patches the length after begin/end to count itself and the body but not the type byte', () => {
    const bytes = new Writer().begin(0x51).cstring('SELECT 1').end().flush();
    assert.equal(bytes[0], 0x51);
    assert.equal(bytes.readInt32BE(1), bytes.length - 1);
    assert.equal(bytes.toString('utf8', 5, bytes.length - 1), 'SELECT 1');
    assert.equal(bytes.at(-1), 0);
  });

  it('writes no type byte for begin(0), as startup packets have none', () => {
    const bytes = new Writer().begin(0).int32(80877103).end().flush();
    assert.deepEqual(
      bytes,
      body((w) => w.int32(8).int32(80877103)),
    );
  });

  it('grows past its initial size without losing earlier bytes', () => {
    const big = Buffer.alloc(10_000, 0xab);
    const w = new Writer(4);
    const bytes = w.begin(0x64).bytes(big).end().flush();
    assert.equal(bytes.length, 5 + big.length);
    assert.equal(bytes.readInt32BE(1), 4 + big.length);
    assert.deepEqual(bytes.subarray(5), big);
  });

  it('grows when a multi-byte string does not fit', () => {
    const text = '€'.repeat(100);
    const bytes = new Writer(2).cstring(text).flush();
    assert.equal(bytes.length, Buffer.byteLength(text) + 1);
    assert.equal(new Reader(bytes).cstring(), text);
  });

  it('writes NULL as length -1 and an empty value as length 0', () => {
    const bytes = new Writer().nullableBytes(null).nullableBytes(Buffer.alloc(0)).flush();
    assert.deepEqual(bytes, Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]));
  });

  it('starts over after flush and returns an independent buffer', () => {
    const w = new Writer();
    const first = w.begin(0x53).end().flush();
    const second = w.begin(0x48).end().flush();
    assert.deepEqual(first, Buffer.from([0x53, 0, 0, 0, 4]));
    assert.deepEqual(second, Buffer.from([0x48, 0, 0, 0, 4]));
  });

  it('writes unsigned 32-bit values above 2^31 (OIDs)', () => {
    const bytes = new Writer().uint32(4_000_000_000).flush();
    assert.equal(new Reader(bytes).uint32(), 4_000_000_000);
  });
});
