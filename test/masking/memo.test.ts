import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MaskMemo, MaskMemos, memoHash } from '../../src/masking/memo.ts';
import type { StatementPlan } from '../../src/masking/plan.ts';
import { maskResult } from '../../src/masking/transform.ts';
import { Code, type FieldDescription } from '../../src/protocol/postgres/messages.ts';
import { Output } from '../../src/protocol/postgres/output.ts';
import { parseDataRow, writeDataRow, writeRowDescription } from '../../src/protocol/postgres/query.ts';
import { Reader } from '../../src/protocol/postgres/reader.ts';
import { Writer } from '../../src/protocol/postgres/writer.ts';

const SETS = 8_192;
const WAYS = 4;

/** Five different values whose hashes fall in the same set of four slots. */
function fiveInOneSet(): Buffer[] {
  const bySet = new Map<number, Buffer[]>();
  for (let i = 0; ; i++) {
    const value = Buffer.from(`value-${i}`);
    const set = memoHash(value, 0, value.length) & (SETS - 1);
    const found = bySet.get(set) ?? [];
    found.push(value);
    bySet.set(set, found);
    if (found.length === WAYS + 1) return found;
  }
}

function remember(memo: MaskMemo, value: Buffer, mask: Buffer | null): void {
  memo.set(value, 0, value.length, memoHash(value, 0, value.length), mask);
}

function recall(memo: MaskMemo, bytes: Buffer, start = 0, end = bytes.length): Buffer | null | undefined {
  return memo.get(bytes, start, end, memoHash(bytes, start, end));
}

describe('MaskMemo', { timeout: 30_000 }, () => {
  it('finds a mask by the bytes of its value, wherever they sit in a row', () => {
    const memo = new MaskMemo();
    remember(memo, Buffer.from('jane@example.com'), Buffer.from('masked'));
    const row = Buffer.from('..jane@example.com..');
    assert.deepEqual(recall(memo, row, 2, 18), Buffer.from('masked'));
    assert.equal(recall(memo, row, 2, 17), undefined, 'a prefix is another value');
    assert.equal(recall(memo, Buffer.from('john@example.com')), undefined);
  });

  it('remembers NULL as a mask, apart from not knowing', () => {
    const memo = new MaskMemo();
    remember(memo, Buffer.from('x'), null);
    assert.equal(recall(memo, Buffer.from('x')), null);
    assert.equal(recall(memo, Buffer.from('y')), undefined);
  });

  it('keeps a copy of the value, not a view of the row it came from', () => {
    const memo = new MaskMemo();
    const row = Buffer.from('secret');
    remember(memo, row, Buffer.from('m'));
    row.write('SECRET');
    assert.equal(recall(memo, Buffer.from('SECRET')), undefined);
    assert.deepEqual(recall(memo, Buffer.from('secret')), Buffer.from('m'));
  });

  it('holds four values per set and replaces the oldest when a fifth comes', () => {
    const memo = new MaskMemo();
    const values = fiveInOneSet();
    const masks = values.map((_, i) => Buffer.from(`mask ${i}`));
    for (const [i, value] of values.slice(0, WAYS).entries()) remember(memo, value, masks[i]!);
    for (const [i, value] of values.slice(0, WAYS).entries()) assert.deepEqual(recall(memo, value), masks[i]);
    remember(memo, values[WAYS]!, masks[WAYS]!);
    assert.equal(recall(memo, values[0]!), undefined, 'the first remembered is the first forgotten');
    for (let i = 1; i <= WAYS; i++) assert.deepEqual(recall(memo, values[i]!), masks[i]);
  });

  it('tells apart values that differ in length only by trailing bytes or in one byte', () => {
    const memo = new MaskMemo();
    remember(memo, Buffer.from('abcdefgh'), Buffer.from('8'));
    remember(memo, Buffer.from('abcdefghi'), Buffer.from('9'));
    assert.deepEqual(recall(memo, Buffer.from('abcdefgh')), Buffer.from('8'));
    assert.deepEqual(recall(memo, Buffer.from('abcdefghi')), Buffer.from('9'));
    assert.equal(recall(memo, Buffer.from('abcdefgX')), undefined);
    assert.equal(recall(memo, Buffer.from('')), undefined, 'an empty value is not an empty slot');
    remember(memo, Buffer.from(''), Buffer.from('0'));
    assert.deepEqual(recall(memo, Buffer.from('')), Buffer.from('0'));
  });
});

describe('masking a result with remembered masks', { timeout: 30_000 }, () => {
  const key = Buffer.from('a test masking key');
  const plan: StatementPlan = {
    positional: [
      undefined,
      { maskClass: 'email', strategy: { kind: 'hash' } },
      { maskClass: 'name', strategy: { kind: 'fake' } },
    ],
    computed: undefined,
    plain: () => undefined,
  };
  const field = (name: string): FieldDescription => ({
    name,
    tableOid: 0,
    columnAttribute: 0,
    typeOid: 25,
    typeSize: -1,
    typeModifier: -1,
    format: 0,
  });
  const description = writeRowDescription(new Writer(), {
    type: 'RowDescription',
    fields: [field('id'), field('email'), field('name')],
  }).flush();
  const rows = Array.from({ length: 50 }, (_, i) =>
    writeDataRow(new Writer(), {
      type: 'DataRow',
      values: [
        Buffer.from(String(i)),
        i % 7 === 0
          ? null
          : Buffer.from(i % 2 ? `user${i % 5}@example.com` : `${'long'.repeat(30)}${i}@x.io`),
        Buffer.from(`Jane Doe ${i % 3}`),
      ],
    }).flush(),
  );
  const maskAll = (memos: MaskMemos): Buffer[] => {
    const transform = maskResult([plan], key, memos);
    transform.message(Code.RowDescription, description);
    return rows.map((row) => transform.message(Code.DataRow, row));
  };

  it('writes the same rows into a shared output as it returns one at a time', () => {
    const one = maskAll(new MaskMemos());
    const transform = maskResult([plan], key, new MaskMemos());
    transform.message(Code.RowDescription, description);
    const out = new Output(16); // too small: it grows as rows are written
    out.append(Buffer.from('before'));
    for (const row of rows)
      transform.dataRow!(Buffer.concat([Buffer.from('xx'), row, Buffer.from('yy')]), 2, 2 + row.length, out);
    assert.deepEqual(out.written(), Buffer.concat([Buffer.from('before'), ...one]));
  });

  it('masks every row as it would with nothing remembered, on a first and a later read', () => {
    const shared = new MaskMemos();
    const first = maskAll(shared);
    const again = maskAll(shared);
    const fresh = maskAll(new MaskMemos());
    assert.deepEqual(again, first);
    assert.deepEqual(fresh, first);
    const values = (frame: Buffer) => parseDataRow(new Reader(frame, 5, frame.length)).values;
    for (const [i, frame] of first.entries()) {
      const [id, email, name] = values(frame);
      assert.equal(id?.toString(), String(i), 'a clear column is untouched');
      if (i % 7 === 0) assert.equal(email, null, 'NULL stays NULL');
      else assert.match(email!.toString(), /^[0-9a-f]{16}$/);
      assert.notEqual(name?.toString(), `Jane Doe ${i % 3}`);
    }
  });
});
