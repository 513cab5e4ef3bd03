import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  type DetectorKind,
  detect,
  type Finding,
  ibanValid,
  luhnValid,
  ssnValid,
} from '../../src/masking/detectors.ts';

/** What detect finds, as [kind, matched text] pairs: easier to read in a failure than offsets. */
const found = (text: string): [DetectorKind, string][] =>
  detect(text).map(({ kind, start, end }) => [kind, text.slice(start, end)]);

/** The matched texts of one kind only. */
const foundOf = (kind: DetectorKind, text: string): string[] =>
  found(text)
    .filter(([k]) => k === kind)
    .map(([, match]) => match);

/** A JWT with the given header and a fixed payload and signature. */
const jwt = (header: object, signature = 'dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U'): string =>
  `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from('{"sub":"42"}').toString('base64url')}.${signature}`;

describe('luhnValid', { timeout: 60_000 }, () => {
  it('accepts numbers whose check digit is right', () => {
    for (const digits of ['4111111111111111', '79927398713', '378282246310005', '5500000000000004', '0'])
      assert.equal(luhnValid(digits), true, digits);
  });

  it('rejects a wrong check digit', () => {
    for (const digits of ['4111111111111112', '79927398710', '378282246310006', '1234567812345678'])
      assert.equal(luhnValid(digits), false, digits);
  });

  it('takes digits only: separators, letters or nothing are not a number', () => {
    for (const text of ['4111 1111 1111 1111', '4111-1111-1111-1111', '', 'abc', '41111111111111a1'])
      assert.equal(luhnValid(text), false, text);
  });
});

describe('ssnValid', { timeout: 60_000 }, () => {
  it('accepts issuable numbers, dashed or as nine digits', () => {
    for (const ssn of ['123-45-6789', '123456789', '078-05-1120', '665-01-0001', '899-99-9999'])
      assert.equal(ssnValid(ssn), true, ssn);
  });

  it('rejects area 000, 666 and 900-999', () => {
    for (const ssn of [
      '000-12-3456',
      '666-12-3456',
      '900-12-3456',
      '912-12-3456',
      '999-12-3456',
      '000123456',
    ])
      assert.equal(ssnValid(ssn), false, ssn);
  });

  it('rejects group 00 and serial 0000', () => {
    for (const ssn of ['123-00-4567', '123-45-0000', '123004567', '123450000'])
      assert.equal(ssnValid(ssn), false, ssn);
  });

  it('rejects other shapes', () => {
    for (const ssn of ['123-456-789', '12345678', '1234567890', '123 45 6789', '123-456789', ' 123-45-6789'])
      assert.equal(ssnValid(ssn), false, ssn);
  });
});

describe('ibanValid', { timeout: 60_000 }, () => {
  it('accepts IBANs whose mod-97 is 1, compact or in groups', () => {
    for (const iban of [
      'DE89370400440532013000',
      'DE89 3704 0044 0532 0130 00',
      'GB82WEST12345698765432',
      'GB82 WEST 1234 5698 7654 32',
      'NL91ABNA0417164300',
      'NO9386011117947', // 15 characters, the shortest
      'LC55HEMM000100010012001200023015', // 32 characters
    ])
      assert.equal(ibanValid(iban), true, iban);
  });

  it('rejects a wrong check digit or a changed character', () => {
    for (const iban of [
      'DE88370400440532013000',
      'DE89370400440532013001',
      'GB82WEST12345698765433',
      'GB28WEST12345698765432',
    ])
      assert.equal(ibanValid(iban), false, iban);
  });

  it('rejects other shapes and lengths outside 15..34', () => {
    for (const iban of [
      'DE89 3704',
      'D189370400440532013000',
      '1E89370400440532013000',
      'DEXX370400440532013000',
      `DE89${'1'.repeat(31)}`,
      '',
    ])
      assert.equal(ibanValid(iban), false, iban);
  });
});

describe('email', { timeout: 60_000 }, () => {
  it('finds an address inside a sentence, at its exact offsets, without the full stop after it', () => {
    const text = 'Please write to jane.doe@example.com. Thanks!';
    assert.deepEqual(detect(text), [{ kind: 'email', start: 16, end: 36 }]);
    assert.equal(text.slice(16, 36), 'jane.doe@example.com');
  });

  it('finds tagged addresses, subdomains and several addresses', () => {
    assert.deepEqual(found('cc: a.b+tag@mail.example.co.uk, ops_team@corp-mail.io; (x@y.org)'), [
      ['email', 'a.b+tag@mail.example.co.uk'],
      ['email', 'ops_team@corp-mail.io'],
      ['email', 'x@y.org'],
    ]);
  });

  it('does not take half-addresses or hosts without a top-level domain', () => {
    for (const text of [
      'jane@localhost',
      'jane@',
      '@example.com',
      'jane@example.c',
      'a@-bad-.com',
      'user at example dot com',
    ])
      assert.deepEqual(foundOf('email', text), [], text);
  });
});

describe('payment card', { timeout: 60_000 }, () => {
  it('finds Luhn-valid numbers, compact or grouped by single spaces or dashes', () => {
    for (const card of [
      '4111111111111111',
      '4111 1111 1111 1111',
      '4111-1111-1111-1111',
      '3782 822463 10005',
      '5500000000000004',
    ])
      assert.deepEqual(found(`paid with ${card} yesterday`), [['card', card]], card);
  });

  it('finds the card in a run that goes on with other numbers ("exp 12 25")', () => {
    assert.deepEqual(found('card 4111 1111 1111 1111 12 25'), [['card', '4111 1111 1111 1111']]);
  });

  it('does not flag a 16-digit number that fails Luhn, such as a random id', () => {
    assert.equal(luhnValid('1234567812345678'), false);
    assert.deepEqual(found('tracking 1234567812345678'), []);
    assert.deepEqual(found('card 4111 1111 1111 1112'), []);
  });

  it('does not flag a card glued to letters or inside a longer digit run', () => {
    assert.deepEqual(found('ref4111111111111111'), []);
    assert.deepEqual(found('4111111111111111x'), []);
    assert.deepEqual(found('41111111111111110000'), []); // 20 digits: no card is that long
  });

  it('does not join groups separated by more than one space', () => {
    assert.deepEqual(foundOf('card', '4111  1111  1111  1111'), []);
  });
});

describe('national id (US SSN)', { timeout: 60_000 }, () => {
  it('finds a valid dashed SSN in text', () => {
    assert.deepEqual(found('SSN: 123-45-6789.'), [['national_id', '123-45-6789']]);
  });

  it('finds a valid bare 9-digit SSN', () => {
    assert.deepEqual(found('ssn 078051120 on file'), [['national_id', '078051120']]);
  });

  it('does not flag area 000, 666 or 9xx, group 00 or serial 0000', () => {
    for (const ssn of [
      '000-12-3456',
      '666-12-3456',
      '912-12-3456',
      '123-00-4567',
      '123-45-0000',
      '912123456',
    ])
      assert.deepEqual(found(`ssn ${ssn}`), [], ssn);
  });

  it('does not flag nine digits that are part of a longer run', () => {
    assert.deepEqual(found('id 1234567890'), []);
    assert.deepEqual(found('id 123-45-67890'), []);
    assert.deepEqual(found('x123456789'), []);
  });
});

describe('phone', { timeout: 60_000 }, () => {
  it('finds E.164 numbers with and without formatting', () => {
    for (const phone of [
      '+15551234567',
      '+447911123456',
      '+44 20 7946 0958',
      '+1 (555) 123-4567',
      '+1-555-123-4567',
      '+44 (0)20 7946 0958',
    ])
      assert.deepEqual(found(`call ${phone} now`), [['phone', phone]], phone);
  });

  it('finds common national forms', () => {
    for (const phone of ['(555) 123-4567', '(555)123-4567', '555-123-4567', '555.123.4567', '555 123 4567'])
      assert.deepEqual(found(`call ${phone} now`), [['phone', phone]], phone);
  });

  it('does not flag plain numbers: order ids, years, amounts', () => {
    for (const text of [
      'order 5551234567 shipped',
      'order #48213 in 2023',
      'between 1999 and 2024',
      'total 1234567.89',
      'dated 2024-01-15',
      'order ORD-20231105-7781',
    ])
      assert.deepEqual(foundOf('phone', text), [], text);
  });

  it('needs 8 to 15 digits after a +', () => {
    assert.deepEqual(foundOf('phone', 'ext +1234567'), []);
    assert.deepEqual(foundOf('phone', 'code +1234567890123456'), []);
  });

  it('does not take mixed separators or a longer dotted number for a national form', () => {
    assert.deepEqual(foundOf('phone', '555-123.4567'), []);
    assert.deepEqual(foundOf('phone', 'v1.555.123.4567'), []);
  });
});

describe('IBAN', { timeout: 60_000 }, () => {
  it('finds compact and grouped IBANs', () => {
    assert.deepEqual(found('pay GB82WEST12345698765432 or DE89 3704 0044 0532 0130 00.'), [
      ['iban', 'GB82WEST12345698765432'],
      ['iban', 'DE89 3704 0044 0532 0130 00'],
    ]);
  });

  it('stops at the IBAN when an upper-case word follows', () => {
    assert.deepEqual(found('IBAN DE89 3704 0044 0532 0130 00 REF 12'), [
      ['iban', 'DE89 3704 0044 0532 0130 00'],
    ]);
  });

  it('does not flag an IBAN with a wrong check digit, or inside a longer word', () => {
    assert.deepEqual(foundOf('iban', 'IBAN DE88 3704 0044 0532 0130 00'), []);
    assert.deepEqual(foundOf('iban', 'XDE89370400440532013000'), []);
  });
});

describe('IP address', { timeout: 60_000 }, () => {
  it('finds IPv4 addresses whose octets are 0..255', () => {
    assert.deepEqual(found('from 192.168.1.10, 0.0.0.0 and 255.255.255.255.'), [
      ['ip', '192.168.1.10'],
      ['ip', '0.0.0.0'],
      ['ip', '255.255.255.255'],
    ]);
  });

  it('does not flag 999.1.1.1, 256.1.1.1, versions or three-part numbers', () => {
    for (const text of ['999.1.1.1', 'host 256.1.1.1', 'version 1.2.3.4.5', 'v 1.2.3', 'x1.2.3.4'])
      assert.deepEqual(found(text), [], text);
  });

  it('finds IPv6 addresses that node:net accepts, the mapped form as one', () => {
    assert.deepEqual(found('::1, fe80::1 and 2001:db8::ff00:42:8329.'), [
      ['ip', '::1'],
      ['ip', 'fe80::1'],
      ['ip', '2001:db8::ff00:42:8329'],
    ]);
    assert.deepEqual(found('peer ::ffff:192.0.2.1 connected'), [['ip', '::ffff:192.0.2.1']]);
  });

  it('does not flag times, MAC addresses or C++ scopes', () => {
    for (const text of ['at 10:30:00', 'mac 00:1a:2b:3c:4d:5e', 'std::vector', 'a :: b', 'gggg::1'])
      assert.deepEqual(found(text), [], text);
  });
});

describe('JWT', { timeout: 60_000 }, () => {
  it('finds a token whose header is JSON with an alg', () => {
    const token = jwt({ alg: 'HS256', typ: 'JWT' });
    assert.deepEqual(found(`Authorization: Bearer ${token}`), [['jwt', token]]);
  });

  it('finds an unsigned token (alg none, empty signature)', () => {
    const token = jwt({ alg: 'none' }, '');
    assert.deepEqual(found(`token ${token} end`), [['jwt', token]]);
  });

  it('does not flag dotted names or tokens whose header is not a JWT header', () => {
    for (const text of [
      'www.example.com',
      'schema.table.column',
      jwt({ typ: 'JWT' }), // no alg
      `${Buffer.from('not json').toString('base64url')}.abc.def`,
    ])
      assert.deepEqual(foundOf('jwt', text), [], text);
  });
});

describe('API keys', { timeout: 60_000 }, () => {
  const keys = [
    'AKIAIOSFODNN7EXAMPLE',
    'ASIAIOSFODNN7EXAMPLE',
    `ghp_${'a1B2'.repeat(9)}`,
    `gho_${'Z'.repeat(36)}`,
    `ghs_${'0'.repeat(36)}`,
    `github_pat_11ABCDEFG0123456789_${'x'.repeat(59)}`,
    'xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx',
    'xoxp-123456789012-abcdefghij',
    `sk_live_${'4eC39HqLyjWDarjtT1zdp7dc'}`,
    `rk_live_${'a'.repeat(30)}`,
    `AIza${'SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY'}`,
  ];

  it('finds each well-known key format', () => {
    for (const key of keys) assert.deepEqual(found(`key=${key};`), [['api_key', key]], key);
  });

  it('does not flag keys glued to a longer word, too short, or from test mode', () => {
    for (const text of [
      'XAKIAIOSFODNN7EXAMPLE',
      'AKIAIOSFODNN7EXAMPL',
      'AKIAIOSFODNN7EXAMPLEX',
      `ghp_${'a'.repeat(35)}`,
      `sk_live_${'a'.repeat(23)}`,
      `sk_test_${'a'.repeat(30)}`,
      'xoxb-short',
      `AIza${'a'.repeat(34)}`,
    ])
      assert.deepEqual(foundOf('api_key', text), [], text);
  });
});

describe('PEM private key', { timeout: 60_000 }, () => {
  const block = (label: string) =>
    `-----BEGIN ${label}-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\naNS1aXk=\n-----END ${label}-----`;

  it('finds the whole block, BEGIN line through END line', () => {
    const key = block('RSA PRIVATE KEY');
    const text = `key:\n${key}\nthanks`;
    assert.deepEqual(detect(text), [{ kind: 'private_key', start: 5, end: 5 + key.length }]);
  });

  it('knows the usual labels', () => {
    for (const label of [
      'PRIVATE KEY',
      'EC PRIVATE KEY',
      'OPENSSH PRIVATE KEY',
      'ENCRYPTED PRIVATE KEY',
      'PGP PRIVATE KEY BLOCK',
    ])
      assert.deepEqual(found(block(label)), [['private_key', block(label)]], label);
  });

  it('finds two blocks as two findings', () => {
    const text = `${block('PRIVATE KEY')}\n\n${block('EC PRIVATE KEY')}`;
    assert.deepEqual(found(text), [
      ['private_key', block('PRIVATE KEY')],
      ['private_key', block('EC PRIVATE KEY')],
    ]);
  });

  it('runs a block without its END line (a value cut short) to the end of the text', () => {
    const text = 'key -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC';
    assert.deepEqual(detect(text), [{ kind: 'private_key', start: 4, end: text.length }]);
  });

  it('does not flag public keys or certificates', () => {
    assert.deepEqual(found('-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----'), []);
    assert.deepEqual(found('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----'), []);
  });
});

describe('detect', { timeout: 60_000 }, () => {
  it('finds nothing in plain text or an empty string', () => {
    assert.deepEqual(detect(''), []);
    assert.deepEqual(detect('The quick brown fox jumps over the lazy dog in 2024.'), []);
  });

  it('returns findings of several kinds sorted by start', () => {
    const text = `mail ops@acme.io, card 4111 1111 1111 1111, host 10.0.0.1, key AKIAIOSFODNN7EXAMPLE`;
    assert.deepEqual(
      found(text).map(([kind]) => kind),
      ['email', 'card', 'ip', 'api_key'],
    );
  });

  it('keeps the longer of two overlapping findings', () => {
    // The IPv4 tail of a mapped IPv6 address and the nine digits after a + are shorter findings inside.
    assert.deepEqual(found('::ffff:10.1.2.3'), [['ip', '::ffff:10.1.2.3']]);
    assert.deepEqual(found('+123456789'), [['phone', '+123456789']]); // not the 9-digit SSN inside
  });

  it('always returns sorted, non-overlapping spans inside the text', () => {
    const pieces = [
      'jane@example.com',
      '4111 1111 1111 1111',
      '123-45-6789',
      '+1 (555) 123-4567',
      'DE89 3704 0044 0532 0130 00',
      '10.0.0.1',
      '::1',
      jwt({ alg: 'HS256' }),
      'AKIAIOSFODNN7EXAMPLE',
      '-----BEGIN PRIVATE KEY-----',
      '-----END PRIVATE KEY-----',
      ' ',
      '-',
      '.',
      '@',
      '1',
      'a',
      '\n',
    ];
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...pieces), { maxLength: 30 }), (parts) => {
        const text = parts.join('');
        const findings: Finding[] = detect(text);
        let previousEnd = 0;
        for (const { start, end } of findings) {
          assert.ok(
            start >= previousEnd && start < end && end <= text.length,
            JSON.stringify({ text, findings }),
          );
          previousEnd = end;
        }
      }),
      { numRuns: 300 },
    );
  });

  it('returns on 100 kB adversarial inputs (patterns stay linear-time)', () => {
    const size = 100_000;
    const fill = (unit: string) => unit.repeat(Math.ceil(size / unit.length)).slice(0, size);
    const inputs = [
      fill('a'),
      fill('1'),
      fill('1.'),
      fill('1 '),
      fill('1-'),
      fill('a@'),
      `a@${fill('b.')}`,
      `a@${fill('b')}`,
      fill('a.'),
      fill('aaaa.'),
      fill('a:'),
      fill('1:'),
      fill('+1 '),
      `+1${fill(' 1')}`,
      fill('(555) '),
      fill('555-123-'),
      fill('123-45-'),
      fill('DE89 '),
      `DE89${fill(' 1234')}`,
      fill('AKIA'),
      `xoxb-${fill('a-')}`,
      fill('eyJhbGciOiJIUzI1NiJ9.'),
      fill('-----BEGIN PRIVATE KEY-----\n'),
      Array.from({ length: 3000 }, (_, i) => `-----BEGIN X${i} PRIVATE KEY-----`).join(''),
      fill('4111 1111 1111 1111 '),
    ];
    for (const text of inputs) assert.ok(Array.isArray(detect(text)));
  });
});
