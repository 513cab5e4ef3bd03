import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import {
  type CopyFormat,
  csvFieldLength,
  csvNeedsQuotes,
  decodeCsvField,
  decodeTextField,
  nullMayBeValue,
  readCopyFormat,
  splitCsvRow,
  splitTextRow,
  textFieldLength,
  UnreadableCopyRow,
  writeCsvField,
  writeTextField,
} from '../../src/masking/copy.ts';
import { MaskMemos } from '../../src/masking/memo.ts';
import type { StatementPlan } from '../../src/masking/plan.ts';
import { maskResult } from '../../src/masking/transform.ts';
import { encodeBackend } from '../../src/protocol/postgres/codec.ts';
import { Code } from '../../src/protocol/postgres/messages.ts';
import type { CopyOption } from '../../src/sql/lineage.ts';
import { directConninfo, hasBinary, type PgError, psql, seededWarden } from '../proxy/support.ts';

const TEXT = format([]);
const CSV = format([{ name: 'format', value: 'csv' }]);

function format(options: CopyOption[]): CopyFormat {
  const read = readCopyFormat(options);
  assert.ok(typeof read !== 'string', `options refused: ${read}`);
  return read;
}

/** A row as PostgreSQL writes it: each value a field (null: the NULL marker), delimiters between, a newline. */
function textRow(values: readonly (Buffer | null)[], f: CopyFormat): Buffer {
  const fields = values.map((value) => {
    if (value === null) return f.nullMarker;
    const out = Buffer.alloc(textFieldLength(value, f.delimiter));
    writeTextField(value, f.delimiter, out, 0);
    return out;
  });
  return joinRow(fields, f.delimiter);
}

function csvRow(values: readonly (Buffer | null)[], f: CopyFormat, forced = false): Buffer {
  const fields = values.map((value) => {
    if (value === null) return f.nullMarker;
    const quoted = forced || csvNeedsQuotes(value, f, values.length === 1);
    const out = Buffer.alloc(csvFieldLength(value, f, quoted));
    writeCsvField(value, f, quoted, out, 0);
    return out;
  });
  return joinRow(fields, f.delimiter);
}

function joinRow(fields: readonly Buffer[], delimiter: number): Buffer {
  const parts: Buffer[] = [];
  fields.forEach((field, i) => {
    if (i > 0) parts.push(Buffer.from([delimiter]));
    parts.push(field);
  });
  parts.push(Buffer.from('\n'));
  return Buffer.concat(parts);
}

/** The fields of a row (without its newline) as [start, end) pairs. */
function split(row: Buffer, f: CopyFormat): [number, number][] {
  const starts: number[] = [];
  const ends: number[] = [];
  const end = row.length - 1;
  const count =
    f.kind === 'csv'
      ? splitCsvRow(row, 0, end, f, starts, ends)
      : splitTextRow(row, 0, end, f.delimiter, starts, ends);
  return Array.from({ length: count }, (_, i) => [starts[i]!, ends[i]!]);
}

/** The values of a row read back: the NULL marker is null, fields are unescaped. */
function readRow(row: Buffer, f: CopyFormat): (Buffer | null)[] {
  return split(row, f).map(([start, end]) => {
    const quoted = f.kind === 'csv' && end > start && row[start] === f.quote;
    if (!quoted && row.subarray(start, end).equals(f.nullMarker)) return null;
    const out = Buffer.alloc(end - start);
    if (f.kind === 'text') return out.subarray(0, decodeTextField(row, start, end, out));
    if (!quoted) return Buffer.from(row.subarray(start, end));
    const length = decodeCsvField(row, start, end, f.escape, out);
    return length < 0 ? Buffer.from(row.subarray(start + 1, end - 1)) : out.subarray(0, length);
  });
}

/** Values that are awkward in every format: delimiters, quotes, escapes, line breaks, controls, non-ASCII. */
const awkwardByte = fc.constantFrom(
  ...[0x09, 0x0a, 0x0d, 0x08, 0x0b, 0x0c, 0x01, 0x5c, 0x22, 0x27, 0x2c, 0x3b, 0x7c, 0x2e, 0x4e, 0x61, 0x20],
);
const awkwardValue = fc.oneof(
  fc.array(awkwardByte, { maxLength: 12 }).map((bytes) => Buffer.from(bytes)),
  fc.string({ unit: 'grapheme', maxLength: 8 }).map((text) => Buffer.from(text, 'utf8')),
  fc.constantFrom('\\.', '\\N', '', 'N/A', '"', '""', '\\', 'é;"\n\t\\').map((text) => Buffer.from(text)),
);
const awkwardRow = fc.array(fc.option(awkwardValue, { nil: null }), { minLength: 1, maxLength: 5 });

const FORMATS: [string, CopyFormat][] = [
  ['text', TEXT],
  ['text, DELIMITER |, NULL \\N', format([{ name: 'delimiter', value: '|' }])],
  ['text, DELIMITER ;', format([{ name: 'delimiter', value: ';' }])],
  ['csv', CSV],
  [
    'csv, DELIMITER ;, NULL <null>',
    format([
      { name: 'format', value: 'csv' },
      { name: 'delimiter', value: ';' },
      { name: 'null', value: '<null>' },
    ]),
  ],
  [
    "csv, QUOTE ', ESCAPE \\",
    format([
      { name: 'format', value: 'csv' },
      { name: 'quote', value: "'" },
      { name: 'escape', value: '\\' },
    ]),
  ],
  [
    'csv, DELIMITER tab, NULL N/A',
    format([
      { name: 'format', value: 'csv' },
      { name: 'delimiter', value: '\t' },
      { name: 'null', value: 'N/A' },
    ]),
  ],
];

describe('COPY options', { timeout: 30_000 }, () => {
  it('reads PostgreSQL’s defaults and the options as the parse tree gives them', () => {
    assert.equal(TEXT.kind, 'text');
    assert.equal(TEXT.delimiter, 0x09);
    assert.deepEqual(TEXT.nullMarker, Buffer.from('\\N'));
    assert.equal(TEXT.header, false);
    assert.equal(CSV.delimiter, 0x2c);
    assert.deepEqual(CSV.nullMarker, Buffer.alloc(0));
    assert.equal(CSV.quote, 0x22);
    assert.equal(CSV.escape, 0x22);
    const custom = format([
      { name: 'format', value: 'csv' },
      { name: 'header', value: true },
      { name: 'quote', value: "'" },
      { name: 'force_quote', value: ['email'] },
      { name: 'encoding', value: 'UTF-8' },
    ]);
    assert.deepEqual(
      [custom.header, custom.quote, custom.escape, custom.forceQuote],
      [true, 0x27, 0x27, ['email']],
      'ESCAPE defaults to QUOTE',
    );
    assert.equal(format([{ name: 'header', value: undefined }]).header, true, 'HEADER alone');
    assert.equal(format([{ name: 'header', value: 0 }]).header, false, 'HEADER 0');
    assert.equal(format([{ name: 'header', value: 'off' }]).header, false);
    assert.equal(format([{ name: 'format', value: 'binary' }]).kind, 'binary');
    assert.equal(
      format([
        { name: 'format', value: 'csv' },
        { name: 'force_quote', value: '*' },
      ]).forceQuoteAll,
      true,
    );
  });

  it('says why it cannot read rows written with options it does not know', () => {
    const refused = (options: CopyOption[]) => {
      const read = readCopyFormat(options);
      assert.equal(typeof read, 'string', JSON.stringify(options));
      return read as string;
    };
    assert.match(refused([{ name: 'format', value: 'json' }]), /FORMAT 'json'/);
    assert.match(refused([{ name: 'encoding', value: 'SJIS' }]), /ENCODING 'SJIS'/);
    assert.match(refused([{ name: 'delimiter', value: '||' }]), /DELIMITER/);
    assert.match(refused([{ name: 'delimiter', value: '§' }]), /DELIMITER/);
    assert.match(refused([{ name: 'delimiter', value: '\\' }]), /DELIMITER/);
    assert.match(refused([{ name: 'some_future_option', value: 'x' }]), /SOME_FUTURE_OPTION/);
    assert.match(
      refused([
        { name: 'format', value: 'binary' },
        { name: 'header', value: true },
      ]),
      /binary/,
    );
    assert.match(refused([{ name: 'quote', value: "'" }]), /text format/);
    assert.match(refused([{ name: 'null', value: 'a\\' }]), /NULL/, 'a backslash that escapes the delimiter');
    assert.match(
      refused([
        { name: 'delimiter', value: ',' },
        { name: 'delimiter', value: ';' },
      ]),
      /twice/,
    );
  });

  it('knows when a text NULL marker could be a value', () => {
    assert.equal(nullMayBeValue(TEXT), false, '\\N is never a value');
    assert.equal(nullMayBeValue(format([{ name: 'null', value: 'N/A' }])), true);
    assert.equal(nullMayBeValue(format([{ name: 'null', value: '' }])), true);
    assert.equal(nullMayBeValue(format([{ name: 'null', value: '\\\\x' }])), true, 'an escaped backslash');
    assert.equal(nullMayBeValue(format([{ name: 'null', value: '\\x' }])), false);
    assert.equal(nullMayBeValue(format([{ name: 'null', value: 'a\u000bb' }])), false, 'a raw control');
    assert.equal(
      nullMayBeValue(
        format([
          { name: 'format', value: 'csv' },
          { name: 'null', value: 'N/A' },
        ]),
      ),
      false,
    );
  });
});

describe('COPY row codecs', { timeout: 60_000 }, () => {
  for (const [name, f] of FORMATS) {
    it(`${name}: values written as PostgreSQL writes them read back as they were, and write again byte for byte`, () => {
      fc.assert(
        fc.property(awkwardRow, (values) => {
          const row = f.kind === 'csv' ? csvRow(values, f) : textRow(values, f);
          const read = readRow(row, f);
          assert.deepEqual(read, values);
          const again = f.kind === 'csv' ? csvRow(read, f) : textRow(read, f);
          assert.ok(
            again.equals(row),
            `${JSON.stringify(row.toString())} != ${JSON.stringify(again.toString())}`,
          );
        }),
        { numRuns: 400 },
      );
    });
  }

  it('csv: FORCE_QUOTE fields read back as quoted values, never NULL', () => {
    fc.assert(
      fc.property(awkwardRow, (values) => {
        const row = csvRow(values, CSV, true);
        assert.deepEqual(readRow(row, CSV), values);
      }),
    );
  });

  it('reads rows PostgreSQL wrote (captured)', () => {
    // psql: COPY (SELECT 1, E'a\tb\\c', NULL, E'x\ny', 'Zürich') TO STDOUT [CSV]
    const text = Buffer.from('1\ta\\tb\\\\c\t\\N\tx\\ny\tZürich\n');
    assert.deepEqual(
      readRow(text, TEXT).map((v) => v?.toString()),
      ['1', 'a\tb\\c', undefined, 'x\ny', 'Zürich'],
    );
    const csv = Buffer.from('1,"a,b","say ""hi""",,"",x\n');
    assert.deepEqual(
      readRow(csv, CSV).map((v) => v?.toString()),
      ['1', 'a,b', 'say "hi"', undefined, '', 'x'],
    );
  });

  it('refuses rows that are not in the format, rather than guessing', () => {
    const starts: number[] = [];
    const ends: number[] = [];
    const cases: [Buffer, CopyFormat][] = [
      [Buffer.from('a\\'), TEXT], // ends inside an escape
      [Buffer.from('a\nb'), TEXT], // a raw line break
      [Buffer.from('"abc'), CSV], // an unclosed quote
      [Buffer.from('"a"b'), CSV], // text after the closing quote
      [Buffer.from('a"b'), CSV], // a quote in an unquoted field
    ];
    for (const [row, f] of cases) {
      assert.throws(
        () =>
          f.kind === 'csv'
            ? splitCsvRow(row, 0, row.length, f, starts, ends)
            : splitTextRow(row, 0, row.length, f.delimiter, starts, ends),
        UnreadableCopyRow,
        row.toString(),
      );
    }
  });
});

// ---------------------------------------------------------------------------
// The transform, fed frames from the protocol builder

const KEY = Buffer.from('copy-test-key');
const REDACT = { maskClass: 'other', strategy: { kind: 'redact', text: 'X;"\\\n' } } as const;

function copyPlan(f: CopyFormat, positional: StatementPlan['positional'], typeOids: number[]): StatementPlan {
  return {
    positional,
    computed: REDACT,
    plain: () => undefined,
    copy: {
      format: f,
      columns: typeOids.map((typeOid, i) => ({ name: `c${i}`, typeOid, forceQuote: false })),
    },
  };
}

function copyOut(binary: boolean, columns: number): Buffer {
  return encodeBackend({
    type: 'CopyOutResponse',
    format: binary ? 1 : 0,
    columnFormats: Array.from({ length: columns }, () => (binary ? 1 : 0)),
  });
}

function copyData(data: Buffer): Buffer {
  return encodeBackend({ type: 'CopyData', data });
}

function dataOf(frame: Buffer): Buffer {
  assert.equal(frame[0], Code.CopyData);
  assert.equal(frame.readInt32BE(1), frame.length - 1, 'the length is recomputed');
  return frame.subarray(5);
}

describe('masking COPY rows on the wire', { timeout: 30_000 }, () => {
  it('text and csv: rewrites the masked fields with the statement’s escaping, NULL stays NULL, the header passes', () => {
    for (const f of [
      TEXT,
      format([
        { name: 'format', value: 'csv' },
        { name: 'header', value: true },
      ]),
    ]) {
      const transform = maskResult(
        [copyPlan(f, [undefined, REDACT, undefined], [23, 25, 25])],
        KEY,
        new MaskMemos(),
      );
      const write = f.kind === 'csv' ? csvRow : textRow;
      assert.ok(transform.message(Code.CopyOutResponse, copyOut(false, 3)).equals(copyOut(false, 3)));
      if (f.header) {
        const header = copyData(Buffer.from('id,email,city\n'));
        assert.equal(transform.message(Code.CopyData, header), header, 'the header line is the same frame');
      }
      const row = write([Buffer.from('1'), Buffer.from('ada@example.org'), Buffer.from('a\tb,"c"\n')], f);
      const out = readRow(dataOf(transform.message(Code.CopyData, copyData(row))), f);
      assert.deepEqual(
        out.map((v) => v?.toString()),
        ['1', 'X;"\\\n', 'a\tb,"c"\n'],
      );
      const nulls = copyData(write([Buffer.from('2'), null, null], f));
      assert.equal(
        transform.message(Code.CopyData, nulls),
        nulls,
        'a row whose masked field is NULL is the same frame',
      );
    }
  });

  it('binary: the header, NULL and the trailer pass; masked values keep their type', () => {
    const transform = maskResult(
      [copyPlan(format([{ name: 'format', value: 'binary' }]), [undefined, REDACT, REDACT], [23, 25, 23])],
      KEY,
      new MaskMemos(),
    );
    transform.message(Code.CopyOutResponse, copyOut(true, 3));
    const header = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]);
    const tuple = (values: (Buffer | null)[]) => {
      const parts: Buffer[] = [Buffer.from([0, values.length])];
      for (const value of values) {
        const length = Buffer.alloc(4);
        length.writeInt32BE(value === null ? -1 : value.length);
        parts.push(length, ...(value === null ? [] : [value]));
      }
      return Buffer.concat(parts);
    };
    const int4 = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeInt32BE(n);
      return b;
    };
    const first = dataOf(
      transform.message(
        Code.CopyData,
        copyData(Buffer.concat([header, tuple([int4(7), Buffer.from('ada'), int4(97)])])),
      ),
    );
    assert.ok(first.subarray(0, 19).equals(header), 'the file header is untouched');
    assert.ok(first.subarray(19).equals(tuple([int4(7), Buffer.from('X;"\\\n'), int4(0)])));
    const withNull = copyData(tuple([int4(8), null, null]));
    assert.ok(dataOf(transform.message(Code.CopyData, withNull)).equals(tuple([int4(8), null, null])));
    const trailer = copyData(Buffer.from([0xff, 0xff]));
    assert.equal(transform.message(Code.CopyData, trailer), trailer);
    assert.throws(
      () => transform.message(Code.CopyData, copyData(tuple([int4(9), null, null]))),
      UnreadableCopyRow,
    );
  });

  it('fails closed on a row with another field count, or a format other than planned', () => {
    const transform = maskResult([copyPlan(TEXT, [REDACT, undefined], [25, 25])], KEY, new MaskMemos());
    transform.message(Code.CopyOutResponse, copyOut(false, 2));
    assert.throws(
      () => transform.message(Code.CopyData, copyData(Buffer.from('a\tb\tc\n'))),
      UnreadableCopyRow,
    );
    const binary = maskResult([copyPlan(TEXT, [REDACT, undefined], [25, 25])], KEY, new MaskMemos());
    assert.throws(() => binary.message(Code.CopyOutResponse, copyOut(true, 2)), UnreadableCopyRow);
  });

  it('masks every column when the server’s column count is not the plan’s', () => {
    const transform = maskResult([copyPlan(TEXT, [undefined, REDACT], [23, 25])], KEY, new MaskMemos());
    transform.message(Code.CopyOutResponse, copyOut(false, 3));
    const out = dataOf(transform.message(Code.CopyData, copyData(Buffer.from('1\ta\tb\n'))));
    assert.deepEqual(
      readRow(out, TEXT).map((v) => v?.toString()),
      ['X;"\\\n', 'X;"\\\n', 'X;"\\\n'],
    );
  });
});

// ---------------------------------------------------------------------------
// Through a real Warden to a real PostgreSQL

const SEED = `
CREATE TABLE people (id int PRIMARY KEY, email text, note text, city text, dob date, score int);
INSERT INTO people VALUES
  (1, 'ada@example.org', 'plain', 'London', '1815-12-10', 97),
  (2, 'semi;colon@example.org', E'tab\\there', E'Zürich; "quoted"', '1912-06-23', 88),
  (3, E'line\\nbreak@example.org', E'back\\\\slash', E'multi\\nline, city', NULL, NULL),
  (4, NULL, NULL, NULL, NULL, 5),
  (5, E'"quoted"@example.org', 'N/A', E'\\\\.', '2000-02-29', 0),
  (6, 'ünïcödé@例え.jp', '', '', '1999-12-31', -1);
CREATE TABLE extra (id int, email text);
INSERT INTO extra VALUES (1, 'ada@example.org');
CREATE TABLE generated (id int, twice int GENERATED ALWAYS AS (id * 2) STORED, email text);
INSERT INTO generated (id, email) VALUES (1, 'ada@example.org');
`;

/** Every private value of the seed: nothing through Warden may hold one (for alice). */
const SECRETS = [
  'ada@example.org',
  'semi;colon',
  'break@example.org',
  'quoted"@example.org',
  'quoted""@example.org',
  'ünïcödé',
  '1815-12-10',
  '1912-06-23',
  'plain',
  'tab\\there',
  'back\\\\slash',
];

function assertNoSecret(output: Buffer | string, what: string): void {
  const text = output.toString();
  for (const secret of SECRETS) assert.ok(!text.includes(secret), `${what} leaked ${secret}: ${text}`);
}

/** csv as RFC 4180 reads it (quote and escape both `"`): rows of fields; an unquoted field is raw, so NULL shows. */
function parseCsv(text: string, delimiter = ','): { value: string; quoted: boolean }[][] {
  const rows: { value: string; quoted: boolean }[][] = [];
  let row: { value: string; quoted: boolean }[] = [];
  let i = 0;
  while (i < text.length) {
    let value = '';
    let quoted = false;
    if (text[i] === '"') {
      quoted = true;
      i++;
      for (;;) {
        if (text[i] === '"' && text[i + 1] === '"') {
          value += '"';
          i += 2;
        } else if (text[i] === '"') {
          i++;
          break;
        } else value += text[i++];
      }
    } else {
      while (i < text.length && text[i] !== delimiter && text[i] !== '\n') value += text[i++];
    }
    row.push({ value, quoted });
    if (text[i] === '\n') {
      rows.push(row);
      row = [];
    }
    i++;
  }
  return rows;
}

/** Text format rows: fields raw (escapes kept), so fields compare byte for byte. */
function textFields(output: Buffer): Buffer[][] {
  const rows: Buffer[][] = [];
  let start = 0;
  for (let end = output.indexOf(0x0a); end >= 0; start = end + 1, end = output.indexOf(0x0a, start)) {
    rows.push(
      split(output.subarray(start, end + 1), TEXT).map(([s, e]) => output.subarray(start + s, start + e)),
    );
  }
  return rows;
}

/** A binary COPY: the header checked, each tuple a list of values (null for NULL). */
function binaryTuples(output: Buffer): (Buffer | null)[][] {
  assert.ok(output.subarray(0, 11).equals(Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1')), 'the signature');
  let at = 19 + output.readUInt32BE(15);
  const tuples: (Buffer | null)[][] = [];
  for (;;) {
    const count = output.readInt16BE(at);
    at += 2;
    if (count === -1) break;
    const tuple: (Buffer | null)[] = [];
    for (let i = 0; i < count; i++) {
      const length = output.readInt32BE(at);
      at += 4;
      tuple.push(length < 0 ? null : output.subarray(at, at + length));
      if (length > 0) at += length;
    }
    tuples.push(tuple);
  }
  assert.equal(at, output.length, 'nothing after the trailer');
  return tuples;
}

/** Days from 2000-01-01 (a binary date) to January 1st of a year. */
function januaryFirst(year: number): number {
  return Math.round((Date.UTC(year, 0, 1) - Date.UTC(2000, 0, 1)) / 86_400_000);
}

const psqlAbsent = !(await hasBinary('psql')) && 'psql is not installed';

const POLICY = `
policy:
  defaults: { human: allow, service: allow, agent: allow }
masking:
  key: test-masking-key-0123456789
  heuristics: true
  columns:
    - { table: public.people, column: note, class: other }
  strategies:
    email: hash
  unmask:
    - groups: [pipelines]
      classes: { "*": clear }
    - identityKinds: [agent]
      classes: { "*": null }
`;

describe('COPY TO STDOUT through Warden', { timeout: 120_000 }, () => {
  const env = seededWarden('masking_copy', SEED, POLICY);

  async function copyOutOf(client: pg.Client, sql: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    await pipeline(
      client.query(copyTo(sql)),
      new Writable({
        write(chunk: Buffer, _encoding, callback) {
          chunks.push(chunk);
          callback();
        },
      }),
    );
    return Buffer.concat(chunks);
  }

  async function copyAs(identity: string, sql: string): Promise<Buffer> {
    const client = new pg.Client(env.warden.pgConfig(identity));
    await client.connect();
    try {
      return await copyOutOf(client, sql);
    } finally {
      await client.end();
    }
  }

  const copyDirect = (sql: string) => copyOutOf(env.direct, sql);

  it('text: masks email, note and dob, keeps the other columns byte-identical to a direct COPY', async () => {
    const sql = 'COPY people TO STDOUT';
    const masked = await copyAs('alice', sql);
    const clear = await copyDirect(sql);
    assertNoSecret(masked, 'text COPY');
    const maskedRows = textFields(masked);
    const clearRows = textFields(clear);
    assert.equal(maskedRows.length, 6);
    for (const [i, row] of maskedRows.entries()) {
      const original = clearRows[i]!;
      assert.equal(row.length, 6);
      for (const column of [0, 3, 5])
        assert.ok(row[column]!.equals(original[column]!), `row ${i} column ${column}`);
      if (original[1]!.toString() === '\\N') assert.equal(row[1]!.toString(), '\\N', 'NULL stays NULL');
      else assert.match(row[1]!.toString(), /^[0-9a-f]{16}$/, 'email: hash');
      if (original[2]!.toString() !== '\\N') assert.equal(row[2]!.toString(), 'REDACTED');
      if (original[4]!.toString() === '\\N') assert.equal(row[4]!.toString(), '\\N');
      else
        assert.equal(
          row[4]!.toString(),
          `${original[4]!.toString().slice(0, 4)}-01-01`,
          'dob keeps its year',
        );
    }
    // The same value masks the same way as through SELECT.
    const client = new pg.Client(env.warden.pgConfig('alice'));
    await client.connect();
    const selected = await client.query('SELECT email FROM people WHERE id = 1').finally(() => client.end());
    assert.equal(maskedRows[0]![1]!.toString(), selected.rows[0].email);
  });

  it('csv with HEADER, a custom DELIMITER and NULL: the header passes, awkward values stay readable', async () => {
    const sql = "COPY people TO STDOUT (FORMAT csv, HEADER, DELIMITER ';', NULL '<null>')";
    const masked = await copyAs('alice', sql);
    const clear = await copyDirect(sql);
    assertNoSecret(masked, 'csv COPY');
    const maskedRows = parseCsv(masked.toString(), ';');
    const clearRows = parseCsv(clear.toString(), ';');
    assert.deepEqual(maskedRows[0], clearRows[0], 'the header line');
    assert.deepEqual(
      maskedRows[0]!.map((f) => f.value),
      ['id', 'email', 'note', 'city', 'dob', 'score'],
    );
    assert.equal(maskedRows.length, 7);
    for (const [i, row] of maskedRows.slice(1).entries()) {
      const original = clearRows[i + 1]!;
      assert.deepEqual([row[0], row[3], row[5]], [original[0], original[3], original[5]], `row ${i}`);
      const email = row[1]!;
      if (!original[1]!.quoted && original[1]!.value === '<null>')
        assert.deepEqual(email, original[1], 'NULL');
      else assert.match(email.value, /^[0-9a-f]{16}$/);
    }
    // Unmasked columns are the very bytes the server sent: the row with a newline, a quote and the
    // delimiter in its city.
    const cityLine = 'multi\nline, city';
    assert.ok(clear.toString().includes(`;"${cityLine}";`));
    assert.ok(masked.toString().includes(`;"${cityLine}";`));
    assert.ok(masked.toString().includes(';"Zürich; ""quoted""";'));
  });

  it('csv FORCE_QUOTE: masked values are quoted where the server quoted', async () => {
    const masked = await copyAs(
      'alice',
      'COPY people (id, email, city) TO STDOUT (FORMAT csv, FORCE_QUOTE (email))',
    );
    const rows = parseCsv(masked.toString());
    assert.equal(rows[0]![1]!.quoted, true);
    assert.match(rows[0]![1]!.value, /^[0-9a-f]{16}$/);
    assert.deepEqual(rows[3]![1], { value: '', quoted: false }, 'NULL is never quoted');
    const all = parseCsv(
      (await copyAs('alice', 'COPY people TO STDOUT (FORMAT csv, FORCE_QUOTE *)')).toString(),
    );
    assert.ok(all.every((row) => row[2]!.value === '' || row[2]!.quoted));
  });

  it('binary: masked text is text, an int stays 4 bytes, a date a valid date; header and trailer intact', async () => {
    const sql = 'COPY people TO STDOUT (FORMAT binary)';
    const masked = await copyAs('alice', sql);
    const clear = await copyDirect(sql);
    assertNoSecret(masked, 'binary COPY');
    assert.ok(masked.subarray(0, 19).equals(clear.subarray(0, 19)), 'the file header');
    const maskedTuples = binaryTuples(masked);
    const clearTuples = binaryTuples(clear);
    assert.equal(maskedTuples.length, 6);
    for (const [i, tuple] of maskedTuples.entries()) {
      const original = clearTuples[i]!;
      for (const column of [0, 3, 5])
        assert.deepEqual(tuple[column], original[column], `row ${i} column ${column}`);
      if (original[1] === null) assert.equal(tuple[1], null);
      else assert.match(tuple[1]!.toString(), /^[0-9a-f]{16}$/);
      if (original[4] === null) {
        assert.equal(tuple[4], null);
      } else {
        assert.equal(tuple[4]!.length, 4, 'a date is an int32');
        const year = new Date(
          Date.UTC(2000, 0, 1) + original[4]!.readInt32BE(0) * 86_400_000,
        ).getUTCFullYear();
        assert.equal(tuple[4]!.readInt32BE(0), januaryFirst(year));
      }
    }
  });

  it('COPY (query) is masked by lineage; in binary, columns of unknown type become NULL', async () => {
    const sql = 'COPY (SELECT id, upper(email), city, score * 2 FROM people ORDER BY id) TO STDOUT';
    const masked = await copyAs('alice', sql);
    assertNoSecret(masked, 'COPY (query)');
    assertNoSecret(masked.toString().toLowerCase(), 'COPY (query), lower case');
    const rows = textFields(masked);
    const clearRows = textFields(await copyDirect(sql));
    assert.match(rows[0]![1]!.toString(), /^[0-9a-f]{16}$/);
    assert.equal(rows[3]![1]!.toString(), '\\N');
    assert.deepEqual(
      rows.map((row) => [row[0], row[2], row[3]]),
      clearRows.map((row) => [row[0], row[2], row[3]]),
    );
    const binary = binaryTuples(
      await copyAs(
        'alice',
        'COPY (SELECT id, lower(email) AS e FROM people ORDER BY id) TO STDOUT (FORMAT binary)',
      ),
    );
    assert.deepEqual(
      binary.map((tuple) => tuple[1]),
      [null, null, null, null, null, null],
    );
    assert.equal(binary[0]![0]!.readInt32BE(0), 1);
  });

  it('a column list: positions follow the list', async () => {
    const masked = textFields(await copyAs('alice', 'COPY people (city, email, id) TO STDOUT'));
    assert.equal(masked[0]![0]!.toString(), 'London');
    assert.match(masked[0]![1]!.toString(), /^[0-9a-f]{16}$/);
    assert.equal(masked[0]![2]!.toString(), '1');
    assert.equal(masked[3]![1]!.toString(), '\\N');
  });

  it('a table whose COPY leaves out a generated column is masked whole, never at the wrong positions', async () => {
    const masked = await copyAs('alice', 'COPY generated TO STDOUT');
    assertNoSecret(masked, 'a table with a generated column');
    const [row] = textFields(masked);
    assert.equal(row!.length, 2, 'id and email: COPY leaves the generated column out');
    for (const field of row!) assert.match(field.toString(), /^[0-9a-f]{16}$/);
  });

  it('an identity with nothing masked gets exactly what a direct COPY gives, in every format', async () => {
    for (const sql of [
      'COPY people TO STDOUT',
      "COPY people TO STDOUT (FORMAT csv, HEADER, DELIMITER ';', NULL '<null>')",
      'COPY people TO STDOUT (FORMAT binary)',
      'COPY (SELECT email, note FROM people ORDER BY id) TO STDOUT',
    ]) {
      const through = await copyAs('etl', sql);
      assert.ok(through.equals(await copyDirect(sql)), sql);
    }
  });

  it('the null strategy: every masked value is NULL, in the statement’s NULL', async () => {
    const rows = parseCsv(
      (await copyAs('agent', "COPY people (id, email, dob) TO STDOUT (FORMAT csv, NULL 'NIL')")).toString(),
    );
    assert.deepEqual(rows[0], [
      { value: '1', quoted: false },
      { value: 'NIL', quoted: false },
      { value: 'NIL', quoted: false },
    ]);
  });

  it('refuses what it cannot mask or what would reveal a masked value, and the session goes on', async () => {
    const client = new pg.Client(env.warden.pgConfig('alice'));
    await client.connect();
    try {
      for (const sql of [
        "COPY people TO STDOUT (NULL 'N/A')", // text: a value 'N/A' would look like NULL
        "COPY people TO STDOUT (ENCODING 'SJIS')",
        "COPY people TO '/tmp/warden-copy-test'",
        "COPY (SELECT id FROM people WHERE email = 'ada@example.org') TO STDOUT",
        'COPY (SELECT id FROM people ORDER BY dob) TO STDOUT',
        'COPY (INSERT INTO extra SELECT id, email FROM people RETURNING id) TO STDOUT',
      ]) {
        const error = await copyOutOf(client, sql).then(
          () => undefined,
          (e: PgError) => e,
        );
        assert.equal(error?.code, '42501', sql);
      }
      // Nothing private in it: as the server has it.
      const plain = await copyOutOf(client, "COPY people (id, city) TO STDOUT (NULL 'N/A')");
      assert.ok(plain.equals(await copyDirect("COPY people (id, city) TO STDOUT (NULL 'N/A')")));
      assert.equal((await client.query('SELECT city FROM people WHERE id = 1')).rows[0].city, 'London');
    } finally {
      await client.end();
    }
  });

  it('options written as literals are read from each statement’s own text', async () => {
    const client = new pg.Client(env.warden.pgConfig('alice'));
    await client.connect();
    client.on('error', () => {});
    const sql = (delimiter: string) =>
      `COPY (SELECT 'z', email || ';' FROM people WHERE id = 1) TO STDOUT (FORMAT csv, DELIMITER '${delimiter}')`;
    try {
      assertNoSecret(await copyOutOf(client, sql(';')), 'DELIMITER ;');
      // Read with the first text's delimiter, the second's row would put the email in a field not masked.
      assertNoSecret(await copyOutOf(client, sql(',')), 'the same shape with DELIMITER ,');
    } finally {
      await client.end().catch(() => {});
    }
  });

  it('psql: COPY TO STDOUT and \\copy are masked', { skip: psqlAbsent }, async () => {
    const conninfo = env.warden.conninfo('alice');
    const copy = await psql(conninfo, ['-c', 'COPY people TO STDOUT (FORMAT csv, HEADER)']);
    assert.equal(copy.code, 0, copy.stderr);
    assertNoSecret(copy.stdout, 'psql COPY');
    assert.match(
      copy.stdout,
      /^id,email,note,city,dob,score\n1,[0-9a-f]{16},REDACTED,London,1815-01-01,97\n/,
    );
    const backslash = await psql(conninfo, ['-c', '\\copy people (id, email, city) to stdout']);
    assert.equal(backslash.code, 0, backslash.stderr);
    assertNoSecret(backslash.stdout, 'psql \\copy');
    assert.match(backslash.stdout, /^1\t[0-9a-f]{16}\tLondon\n/);
    const clear = await psql(env.warden.conninfo('etl'), ['-c', '\\copy people to stdout with (format csv)']);
    const directly = await psql(directConninfo(env.upstream, env.database.name), [
      '-c',
      '\\copy people to stdout with (format csv)',
    ]);
    assert.equal(clear.stdout, directly.stdout);
  });
});
