import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { describe, it } from 'node:test';
import { detect, luhnValid, ssnValid } from '../../src/masking/detectors.ts';
import {
  MASK_CLASSES,
  type MaskClass,
  maskText,
  maskValue,
  STRATEGY_KINDS,
  type Strategy,
} from '../../src/masking/strategies.ts';

const KEY = Buffer.from('a test masking key, 32 bytes....');
const OTHER_KEY = Buffer.from('another masking key of 32 bytes.');

/** A typical value of each class. */
const SAMPLES: Readonly<Record<MaskClass, string>> = {
  email: 'jane.doe@acme.io',
  phone: '+1 (555) 123-4567',
  card: '4111 1111 1111 1111',
  national_id: '123-45-6789',
  name: 'Jane Doe',
  address: '12 Main Street, Springfield',
  secret: 'hunter2-correct-horse',
  free_text: 'write to jane@acme.io or call +1 555 123 4567',
  ip: '10.1.2.3',
  date_of_birth: '1990-05-17',
  other: 'loyalty tier gold',
};

const ALL_STRATEGIES: readonly Strategy[] = [
  { kind: 'redact' },
  { kind: 'redact', text: '***' },
  { kind: 'partial', keep: 4 },
  { kind: 'hash' },
  { kind: 'fake' },
  { kind: 'null' },
  { kind: 'detect' },
];

const fake = (value: string, maskClass: MaskClass, key = KEY) =>
  maskText(value, { kind: 'fake' }, maskClass, key);
const partial = (value: string, keep: number) => maskText(value, { kind: 'partial', keep }, 'other', KEY);
const HEX = /^[0-9a-f]+$/;
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const OID = {
  bool: 16,
  bytea: 17,
  name: 19,
  int8: 20,
  int2: 21,
  int4: 23,
  text: 25,
  oid: 26,
  json: 114,
  float4: 700,
  float8: 701,
  unknown: 705,
  inet: 869,
  bpchar: 1042,
  varchar: 1043,
  date: 1082,
  timestamp: 1114,
  timestamptz: 1184,
  interval: 1186,
  numeric: 1700,
  uuid: 2950,
  jsonb: 3802,
} as const;

const DAY_MS = 86_400_000;
const Y2K_MS = Date.UTC(2000, 0, 1);

/** A date's binary form: int32 days since 2000-01-01. */
function dateBinary(iso: string): Buffer {
  const out = Buffer.alloc(4);
  out.writeInt32BE((Date.parse(`${iso}T00:00:00Z`) - Y2K_MS) / DAY_MS);
  return out;
}

/** The ISO date of a binary date. */
function readDate(bytes: Buffer): string {
  assert.equal(bytes.length, 4);
  return new Date(Y2K_MS + bytes.readInt32BE(0) * DAY_MS).toISOString().slice(0, 10);
}

/** A timestamp's binary form: int64 microseconds since 2000-01-01 00:00 UTC. */
function timestampBinary(iso: string): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigInt64BE(BigInt(Date.parse(iso) - Y2K_MS) * 1000n);
  return out;
}

function readTimestamp(bytes: Buffer): string {
  assert.equal(bytes.length, 8);
  return new Date(Y2K_MS + Number(bytes.readBigInt64BE(0) / 1000n)).toISOString();
}

const text = (value: string) => Buffer.from(value, 'utf8');
const asText = (bytes: Buffer | null) => (bytes === null ? null : bytes.toString('utf8'));

describe('strategy and class names', { timeout: 60_000 }, () => {
  it('lists the eleven classes and six strategies the config accepts', () => {
    assert.deepEqual(
      [...MASK_CLASSES],
      [
        'email',
        'phone',
        'card',
        'national_id',
        'name',
        'address',
        'secret',
        'free_text',
        'ip',
        'date_of_birth',
        'other',
      ],
    );
    assert.deepEqual([...STRATEGY_KINDS], ['redact', 'partial', 'hash', 'fake', 'null', 'detect']);
  });
});

describe('every strategy on every class', { timeout: 60_000 }, () => {
  for (const maskClass of MASK_CLASSES) {
    it(`masks a ${maskClass} value with each strategy, never returning it as it was`, () => {
      const value = SAMPLES[maskClass];
      for (const strategy of ALL_STRATEGIES) {
        const masked = maskText(value, strategy, maskClass, KEY);
        const label = `${maskClass} / ${JSON.stringify(strategy)}: ${JSON.stringify(masked)}`;
        switch (strategy.kind) {
          case 'redact':
            assert.equal(masked, strategy.text ?? 'REDACTED', label);
            break;
          case 'partial':
            assert.equal([...masked!].length, [...value].length, label);
            assert.match(masked!, /\*/, label);
            break;
          case 'hash':
            assert.match(masked!, /^[0-9a-f]{16}$/, label);
            break;
          case 'fake':
            assert.equal(typeof masked, 'string', label);
            break;
          case 'null':
            assert.equal(masked, null, label);
            break;
          case 'detect':
            assert.equal(typeof masked, 'string', label);
            break;
        }
        // detect keeps a value in which it finds nothing (a name, an address): that is its job.
        const mayKeep = strategy.kind === 'detect' && detect(value).length === 0;
        if (!mayKeep) assert.notEqual(masked, value, label);
      }
    });
  }
});

describe('redact', { timeout: 60_000 }, () => {
  it('gives REDACTED, or the configured text, whatever the value', () => {
    assert.equal(maskText('anything', { kind: 'redact' }, 'other', KEY), 'REDACTED');
    assert.equal(maskText('', { kind: 'redact' }, 'email', KEY), 'REDACTED');
    assert.equal(maskText('x', { kind: 'redact', text: '[hidden]' }, 'secret', KEY), '[hidden]');
  });
});

describe('partial', { timeout: 60_000 }, () => {
  it('keeps the last letters and digits, stars the others and keeps separators', () => {
    assert.equal(partial('+1 (555) 123-4567', 4), '+* (***) ***-4567');
    assert.equal(partial('4111 1111 1111 1111', 4), '**** **** **** 1111');
    assert.equal(partial('jane.doe@acme.io', 4), '****.***@**me.io');
    assert.equal(partial('123-45-6789', 4), '***-**-6789');
  });

  it('never reveals a short value whole: with no more letters and digits than keep, all are starred', () => {
    assert.equal(partial('1234', 4), '****');
    assert.equal(partial('12', 4), '**');
    assert.equal(partial('12-34', 4), '**-**');
    assert.equal(partial('a', 1), '*');
    assert.equal(partial('12345', 4), '*2345');
  });

  it('stars everything with keep 0 and treats a nonsensical keep as 0', () => {
    assert.equal(partial('abc-def', 0), '***-***');
    assert.equal(partial('abc-def', -3), '***-***');
    assert.equal(partial('abc-def', Number.NaN), '***-***');
  });

  it('stars symbols that are not separators, and a character outside the BMP as one star', () => {
    assert.equal(partial('a_b#c/d1234', 4), '*******1234');
    assert.equal(partial('😀😀 x9876', 4), '** *9876');
  });

  it('keeps letters of any script', () => {
    assert.equal(partial('Zoë Ångström', 3), '*** *****röm');
  });
});

describe('hash', { timeout: 60_000 }, () => {
  const hash = (value: string, maskClass: MaskClass = 'email', key = KEY) =>
    maskText(value, { kind: 'hash' }, maskClass, key);

  it('is 16 hex characters, the same for the same key and value', () => {
    assert.match(hash('jane@acme.io')!, /^[0-9a-f]{16}$/);
    assert.equal(hash('jane@acme.io'), hash('jane@acme.io'));
  });

  it('differs for another value or another key', () => {
    assert.notEqual(hash('jane@acme.io'), hash('john@acme.io'));
    assert.notEqual(hash('jane@acme.io'), hash('jane@acme.io', 'email', OTHER_KEY));
  });

  it('does not depend on the class, so a join between columns of different classes lines up', () => {
    assert.equal(hash('jane@acme.io', 'email'), hash('jane@acme.io', 'other'));
  });
});

describe('fake', { timeout: 60_000 }, () => {
  it('is deterministic for every class: the same key and value give the same fake', () => {
    for (const maskClass of MASK_CLASSES) {
      assert.equal(fake(SAMPLES[maskClass], maskClass), fake(SAMPLES[maskClass], maskClass), maskClass);
    }
  });

  it('depends on the key for every class but date_of_birth (which keeps only the year)', () => {
    for (const maskClass of MASK_CLASSES) {
      if (maskClass === 'date_of_birth') continue;
      // Classes with few choices (a name from a list) may collide for one value, not for all of these.
      const values = [SAMPLES[maskClass], `${SAMPLES[maskClass]}1`, `2${SAMPLES[maskClass]}`, 'x y'];
      const differ = values.some((value) => fake(value, maskClass) !== fake(value, maskClass, OTHER_KEY));
      assert.ok(differ, maskClass);
    }
  });

  it('email: an address at example.com, never at the original domain', () => {
    for (const value of ['jane.doe@acme.io', 'x@corp.example', 'not an email']) {
      const masked = fake(value, 'email')!;
      assert.match(masked, /^[a-z]+\d{4}@example\.com$/);
      assert.deepEqual(detect(masked), [{ kind: 'email', start: 0, end: masked.length }]);
    }
    assert.match(fake('jane@example.com', 'email')!, /@example\.org$/);
    assert.notEqual(fake('jane@acme.io', 'email'), fake('john@acme.io', 'email'));
  });

  it('name: a first name, and a last name when the value has a space', () => {
    assert.match(fake('Jane', 'name')!, /^[A-Z][a-z]+$/);
    assert.match(fake('Jane Doe', 'name')!, /^[A-Z][a-z]+ [A-Z][a-z]+$/);
    assert.match(fake('Mary Ann Smith', 'name')!, /^[A-Z][a-z]+ [A-Z][a-z]+$/);
  });

  it('phone: the same characters with derived digits', () => {
    for (const value of ['+1 (555) 123-4567', '555.123.4567', '+447911123456']) {
      const masked = fake(value, 'phone')!;
      assert.equal(masked.length, value.length);
      assert.equal(masked.replace(/\d/g, '0'), value.replace(/\d/g, '0'));
      assert.notEqual(masked, value);
    }
  });

  it('card: Luhn valid, starting with 4, in the same grouping', () => {
    for (const value of [
      '4111 1111 1111 1111',
      '5500-0000-0000-0004',
      '378282246310005',
      '3782 822463 10005',
    ]) {
      const masked = fake(value, 'card')!;
      assert.equal(masked.replace(/\d/g, '0'), value.replace(/\d/g, '0'), value);
      assert.ok(luhnValid(masked.replace(/\D/g, '')), masked);
      assert.equal(masked[0], '4');
      assert.notEqual(masked, value);
    }
  });

  it('card: a value that is not a card number becomes 16 digits in groups of four', () => {
    for (const value of ['n/a', '1234', '**** **** **** 1111']) {
      const masked = fake(value, 'card')!;
      assert.match(masked, /^4\d{3} \d{4} \d{4} \d{4}$/, value);
      assert.ok(luhnValid(masked.replaceAll(' ', '')));
    }
  });

  it('national_id: SSN-shaped with area 9xx, which is never issued, in the value’s format', () => {
    const dashed = fake('123-45-6789', 'national_id')!;
    assert.match(dashed, /^9\d{2}-\d{2}-\d{4}$/);
    assert.equal(ssnValid(dashed), false);
    const bare = fake('123456789', 'national_id')!;
    assert.match(bare, /^9\d{8}$/);
    assert.equal(ssnValid(bare), false);
  });

  it('address: a number and a street name', () => {
    assert.match(fake('12 Main Street, Springfield', 'address')!, /^\d{1,4} [A-Z][a-z]+ Street$/);
  });

  it('ip: an address of the documentation range of the same family', () => {
    for (const value of ['10.1.2.3', '192.168.0.1/24', 'unknown']) {
      const masked = fake(value, 'ip')!;
      assert.equal(isIP(masked), 4, value);
      assert.ok(masked.startsWith('192.0.2.'), masked);
    }
    for (const value of ['2001:4860:4860::8888', '::1', 'fe80::1/64']) {
      const masked = fake(value, 'ip')!;
      assert.equal(isIP(masked), 6, value);
      assert.ok(masked.startsWith('2001:db8:'), masked);
    }
  });

  it('date_of_birth: January 1st of the same year, as the value was written; NULL when not a date', () => {
    assert.equal(fake('1990-05-17', 'date_of_birth'), '1990-01-01');
    assert.equal(fake('1990-05-17 10:20:30', 'date_of_birth'), '1990-01-01 00:00:00');
    assert.equal(fake('1990-05-17 10:20:30.5+02', 'date_of_birth'), '1990-01-01 00:00:00+02');
    assert.equal(fake('May 17, 1990', 'date_of_birth'), null);
    assert.equal(fake('1990-05-17 BC', 'date_of_birth'), null);
  });

  it('secret, free_text, other: hex of the same length, at least 8', () => {
    for (const maskClass of ['secret', 'free_text', 'other'] as const) {
      const long = fake('a value of twenty-four', maskClass)!;
      assert.match(long, HEX);
      assert.equal(long.length, 'a value of twenty-four'.length);
      assert.match(fake('abc', maskClass)!, /^[0-9a-f]{8}$/);
      assert.match(fake('', maskClass)!, /^[0-9a-f]{8}$/);
      assert.equal(fake('😀'.repeat(10), maskClass)!.length, 10);
      assert.equal(fake('x'.repeat(100), maskClass)!.length, 100); // past the first HMAC block
    }
  });

  it('depends on the class: the same value of two classes fakes differently', () => {
    assert.notEqual(fake('abc-def-ghi', 'secret'), fake('abc-def-ghi', 'other'));
  });
});

describe('detect', { timeout: 60_000 }, () => {
  it('replaces each finding by its kind in brackets and keeps the rest', () => {
    const value = 'Mail jane@acme.io, card 4111 1111 1111 1111, SSN 123-45-6789 from 10.0.0.1.';
    assert.equal(
      maskText(value, { kind: 'detect' }, 'free_text', KEY),
      'Mail [EMAIL], card [CARD], SSN [NATIONAL_ID] from [IP].',
    );
  });

  it('names every kind in upper case', () => {
    const value = [
      '+1 555 123 4567',
      'DE89 3704 0044 0532 0130 00',
      'AKIAIOSFODNN7EXAMPLE',
      `${Buffer.from('{"alg":"HS256"}').toString('base64url')}.eyJzdWIiOiIxIn0.c2ln`,
      '-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----',
    ].join(' | ');
    assert.equal(
      maskText(value, { kind: 'detect' }, 'free_text', KEY),
      '[PHONE] | [IBAN] | [API_KEY] | [JWT] | [PRIVATE_KEY]',
    );
  });

  it('keeps text without findings as it is', () => {
    assert.equal(maskText('nothing to see', { kind: 'detect' }, 'free_text', KEY), 'nothing to see');
  });
});

describe('maskValue: NULL and the null strategy', { timeout: 60_000 }, () => {
  const oids = Object.values(OID);

  it('keeps SQL NULL as NULL for every type, format and strategy', () => {
    for (const typeOid of [...oids, 0])
      for (const format of [0, 1] as const)
        for (const strategy of ALL_STRATEGIES)
          assert.equal(maskValue(null, typeOid, format, strategy, 'other', KEY), null);
  });

  it('gives NULL for the null strategy whatever the type', () => {
    for (const typeOid of [...oids, 0])
      for (const format of [0, 1] as const)
        assert.equal(maskValue(text('1'), typeOid, format, { kind: 'null' }, 'other', KEY), null);
  });
});

describe('maskValue: text-like types', { timeout: 60_000 }, () => {
  const textOids = [OID.text, OID.varchar, OID.bpchar, OID.name, OID.unknown, 0];

  it('applies the strategy to the UTF-8 text, in text and in binary', () => {
    for (const typeOid of textOids)
      for (const format of [0, 1] as const)
        for (const strategy of ALL_STRATEGIES) {
          const masked = maskValue(text(SAMPLES.email), typeOid, format, strategy, 'email', KEY);
          assert.equal(
            asText(masked),
            maskText(SAMPLES.email, strategy, 'email', KEY),
            `${typeOid}/${format}`,
          );
        }
  });

  it('gives NULL when the strategy does (a birth date that is not a date)', () => {
    assert.equal(maskValue(text('unknown'), OID.text, 0, { kind: 'fake' }, 'date_of_birth', KEY), null);
  });

  it('keeps multi-byte text intact', () => {
    const masked = maskValue(text('Zoë Ångström'), OID.varchar, 1, { kind: 'partial', keep: 3 }, 'name', KEY);
    assert.equal(asText(masked), '*** *****röm');
  });

  it('cuts a name to 63 bytes at a character boundary', () => {
    const long = maskValue(text('x'), OID.name, 0, { kind: 'redact', text: 'y'.repeat(70) }, 'other', KEY)!;
    assert.equal(long.length, 63);
    const accented = maskValue(
      text('x'),
      OID.name,
      0,
      { kind: 'redact', text: 'é'.repeat(40) },
      'other',
      KEY,
    )!;
    assert.equal(accented.length, 62);
    assert.equal(accented.toString('utf8'), 'é'.repeat(31));
  });
});

describe('maskValue: json and jsonb', { timeout: 60_000 }, () => {
  it('gives the masked text as a JSON string literal', () => {
    for (const typeOid of [OID.json, OID.jsonb]) {
      const masked = maskValue(
        text('{"email":"jane@acme.io"}'),
        typeOid,
        0,
        { kind: 'redact' },
        'other',
        KEY,
      );
      assert.equal(asText(masked), '"REDACTED"');
    }
  });

  it('jsonb binary is the version byte 1, then the JSON text', () => {
    const raw = Buffer.concat([Buffer.from([1]), text('{"a": [1, 2]}')]);
    const masked = maskValue(raw, OID.jsonb, 1, { kind: 'redact' }, 'other', KEY)!;
    assert.equal(masked[0], 1);
    assert.equal(JSON.parse(masked.subarray(1).toString('utf8')), 'REDACTED');
  });

  it('json binary is the JSON text alone', () => {
    const masked = maskValue(text('[1]'), OID.json, 1, { kind: 'redact' }, 'other', KEY);
    assert.equal(asText(masked), '"REDACTED"');
  });

  it('masks a JSON string value as its text, so it hashes like the text column it came from', () => {
    const fromText = maskValue(text('jane@acme.io'), OID.text, 0, { kind: 'hash' }, 'email', KEY)!;
    const fromJson = maskValue(text('"jane@acme.io"'), OID.jsonb, 0, { kind: 'hash' }, 'email', KEY)!;
    assert.equal(JSON.parse(fromJson.toString('utf8')), fromText.toString('utf8'));
  });

  it('escapes what the masked text needs escaped (detect keeps the JSON text)', () => {
    const masked = maskValue(
      text('{"note":"mail jane@acme.io"}'),
      OID.json,
      0,
      { kind: 'detect' },
      'free_text',
      KEY,
    );
    assert.equal(JSON.parse(asText(masked)!), '{"note":"mail [EMAIL]"}');
  });

  it('gives NULL for a strategy that gives NULL', () => {
    assert.equal(maskValue(text('"May 1990"'), OID.json, 0, { kind: 'fake' }, 'date_of_birth', KEY), null);
  });
});

describe('maskValue: numbers become zero', { timeout: 60_000 }, () => {
  const read: [number, number, (bytes: Buffer) => number | bigint][] = [
    [OID.int2, 2, (bytes) => bytes.readInt16BE(0)],
    [OID.int4, 4, (bytes) => bytes.readInt32BE(0)],
    [OID.int8, 8, (bytes) => Number(bytes.readBigInt64BE(0))],
    [OID.oid, 4, (bytes) => bytes.readUInt32BE(0)],
    [OID.float4, 4, (bytes) => bytes.readFloatBE(0)],
    [OID.float8, 8, (bytes) => bytes.readDoubleBE(0)],
  ];

  it('is 0 in text, whatever the strategy', () => {
    for (const typeOid of [OID.int2, OID.int4, OID.int8, OID.oid, OID.float4, OID.float8, OID.numeric])
      for (const strategy of ALL_STRATEGIES.filter((s) => s.kind !== 'null'))
        assert.equal(
          asText(maskValue(text('12345'), typeOid, 0, strategy, 'other', KEY)),
          '0',
          String(typeOid),
        );
  });

  it('is a big-endian zero of the type’s width in binary', () => {
    for (const [typeOid, width, decode] of read) {
      const masked = maskValue(Buffer.alloc(width, 0x7f), typeOid, 1, { kind: 'hash' }, 'other', KEY)!;
      assert.equal(masked.length, width, String(typeOid));
      assert.equal(decode(masked), 0, String(typeOid));
    }
  });

  it('numeric binary zero is ndigits 0, weight 0, sign 0 (positive), dscale 0', () => {
    const masked = maskValue(
      Buffer.from('0002000000000002000c0022', 'hex'),
      OID.numeric,
      1,
      { kind: 'fake' },
      'other',
      KEY,
    )!;
    assert.equal(masked.length, 8);
    assert.deepEqual(
      [0, 2, 4, 6].map((at) => masked.readInt16BE(at)),
      [0, 0, 0, 0],
    );
  });
});

describe('maskValue: dates become January 1st of their year', { timeout: 60_000 }, () => {
  const mask = (raw: Buffer, format: 0 | 1, typeOid: number = OID.date) =>
    maskValue(raw, typeOid, format, { kind: 'redact' }, 'date_of_birth', KEY);

  it('in text, from the ISO form the server sends', () => {
    assert.equal(asText(mask(text('2024-03-05'), 0)), '2024-01-01');
    assert.equal(asText(mask(text('1815-12-10'), 0)), '1815-01-01');
    assert.equal(asText(mask(text('0099-07-01'), 0)), '0099-01-01');
  });

  it('gives NULL for text it cannot read: infinity, BC dates, other DateStyles', () => {
    for (const value of ['infinity', '-infinity', '2024-03-05 BC', '03/05/2024', '05.03.2024', ''])
      assert.equal(mask(text(value), 0), null, value);
  });

  it('in binary, decoding the input to find the year', () => {
    for (const [input, expected] of [
      ['2024-03-05', '2024-01-01'],
      ['2024-12-31', '2024-01-01'], // leap year, last day
      ['2000-01-01', '2000-01-01'],
      ['1999-12-31', '1999-01-01'], // before the epoch: negative days
      ['1969-07-20', '1969-01-01'],
      ['1900-03-01', '1900-01-01'], // 1900 is not a leap year
      ['0001-06-15', '0001-01-01'],
      ['9999-12-31', '9999-01-01'],
    ]) {
      const masked = mask(dateBinary(input!), 1)!;
      assert.equal(readDate(masked), expected, input);
    }
  });

  it('in binary, beyond the years a JavaScript Date can hold', () => {
    // 5874897-12-31, PostgreSQL's last date, is Julian day DATE_END_JULIAN - 1 = 2147483493, and
    // 2000-01-01 is Julian day 2451545; January 1st is 364 days before (5874897 is not a leap year).
    const lastDay = 2_147_483_493 - 2_451_545;
    const last = Buffer.alloc(4);
    last.writeInt32BE(lastDay);
    assert.equal(mask(last, 1)!.readInt32BE(0), lastDay - 364);
  });

  it('gives NULL in binary for infinity, -infinity, BC dates and a wrong length', () => {
    const days = (value: number) => {
      const out = Buffer.alloc(4);
      out.writeInt32BE(value);
      return out;
    };
    assert.equal(mask(days(0x7fffffff), 1), null);
    assert.equal(mask(days(-0x80000000), 1), null);
    assert.equal(mask(days(-730_119), 1)!.readInt32BE(0), -730_119); // 0001-01-01, the first AD day
    assert.equal(mask(days(-730_120), 1), null); // 1 BC-12-31, the day before
    assert.equal(mask(Buffer.alloc(3), 1), null);
  });
});

describe('maskValue: timestamps become January 1st 00:00:00 of their year', { timeout: 60_000 }, () => {
  const mask = (raw: Buffer, typeOid: number, format: 0 | 1) =>
    maskValue(raw, typeOid, format, { kind: 'hash' }, 'other', KEY);

  it('timestamp in text', () => {
    assert.equal(asText(mask(text('2024-03-05 12:34:56'), OID.timestamp, 0)), '2024-01-01 00:00:00');
    assert.equal(asText(mask(text('2024-03-05 12:34:56.123456'), OID.timestamp, 0)), '2024-01-01 00:00:00');
  });

  it('timestamptz in text keeps the server’s offset suffix', () => {
    assert.equal(
      asText(mask(text('2024-03-05 12:34:56.789+00'), OID.timestamptz, 0)),
      '2024-01-01 00:00:00+00',
    );
    assert.equal(
      asText(mask(text('2024-03-05 12:34:56+05:30'), OID.timestamptz, 0)),
      '2024-01-01 00:00:00+05:30',
    );
    assert.equal(asText(mask(text('2024-03-05 12:34:56-08'), OID.timestamptz, 0)), '2024-01-01 00:00:00-08');
  });

  it('gives NULL for text it cannot read: infinity, BC, a date without time', () => {
    for (const typeOid of [OID.timestamp, OID.timestamptz])
      for (const value of [
        'infinity',
        '-infinity',
        '2024-03-05 12:34:56 BC',
        '2024-03-05 12:34:56+00 BC',
        '2024-03-05',
      ])
        assert.equal(mask(text(value), typeOid, 0), null, value);
  });

  it('in binary, microseconds since 2000-01-01 UTC', () => {
    for (const typeOid of [OID.timestamp, OID.timestamptz])
      for (const [input, expected] of [
        ['2024-03-05T12:34:56.789Z', '2024-01-01T00:00:00.000Z'],
        ['2000-01-01T00:00:00.000Z', '2000-01-01T00:00:00.000Z'],
        ['1999-12-31T23:59:59.999Z', '1999-01-01T00:00:00.000Z'], // negative microseconds
        ['1970-01-01T00:00:00.000Z', '1970-01-01T00:00:00.000Z'],
        ['2100-06-30T08:00:00.000Z', '2100-01-01T00:00:00.000Z'],
      ]) {
        const masked = mask(timestampBinary(input!), typeOid, 1)!;
        assert.equal(readTimestamp(masked), expected, input);
      }
  });

  it('gives NULL in binary for infinity, -infinity and a wrong length', () => {
    const micros = (value: bigint) => {
      const out = Buffer.alloc(8);
      out.writeBigInt64BE(value);
      return out;
    };
    assert.equal(mask(micros(0x7fffffffffffffffn), OID.timestamptz, 1), null);
    assert.equal(mask(micros(-0x8000000000000000n), OID.timestamp, 1), null);
    assert.equal(mask(Buffer.alloc(4), OID.timestamp, 1), null);
  });
});

describe('maskValue: uuid', { timeout: 60_000 }, () => {
  const uuid = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11';
  const uuidBytes = Buffer.from(uuid.replaceAll('-', ''), 'hex');
  const mask = (raw: Buffer, format: 0 | 1, key = KEY, strategy: Strategy = { kind: 'redact' }) =>
    maskValue(raw, OID.uuid, format, strategy, 'other', key);

  it('is a version 4 uuid in text, deterministic per key and value', () => {
    const masked = asText(mask(text(uuid), 0))!;
    assert.match(masked, UUID_V4);
    assert.notEqual(masked, uuid);
    assert.equal(asText(mask(text(uuid), 0)), masked);
    assert.notEqual(asText(mask(text(uuid), 0, OTHER_KEY)), masked);
    assert.notEqual(asText(mask(text('b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'), 0)), masked);
  });

  it('is 16 bytes in binary, the same uuid as in text', () => {
    const masked = mask(uuidBytes, 1)!;
    assert.equal(masked.length, 16);
    assert.equal(masked[6]! >> 4, 4); // version
    assert.equal(masked[8]! >> 6, 0b10); // variant
    assert.equal(masked.toString('hex'), asText(mask(text(uuid), 0))!.replaceAll('-', ''));
  });

  it('is the same whatever the strategy (other than null)', () => {
    const byHash = asText(mask(text(uuid), 0, KEY, { kind: 'hash' }));
    assert.equal(asText(mask(text(uuid), 0, KEY, { kind: 'fake' })), byHash);
  });
});

describe('maskValue: bool and types without a rule', { timeout: 60_000 }, () => {
  it('gives NULL, in text and in binary, whatever the strategy', () => {
    for (const [typeOid, raw] of [
      [OID.bool, text('t')],
      [OID.bytea, text('\\x0102')],
      [OID.inet, text('10.0.0.1')],
      [OID.interval, text('1 day')],
      [600, text('(1,2)')], // point
    ] as const)
      for (const format of [0, 1] as const)
        for (const strategy of ALL_STRATEGIES)
          assert.equal(maskValue(raw, typeOid, format, strategy, 'ip', KEY), null, `${typeOid}/${format}`);
  });
});
