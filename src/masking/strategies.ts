/**
 * What a masked value becomes. `maskText` applies a strategy to a text value;
 * `maskValue` applies it to a column value as it goes on the wire, where the
 * result must stay valid for the column's type in the column's format: a
 * client that parses an int4 or a date must not fail because the value was
 * masked. So the strategy applies to text-like types only, and every other
 * type gets a value that says nothing (zero, January 1st, a derived uuid) or
 * NULL, whatever the strategy.
 *
 * `hash` and `fake` are keyed (HMAC-SHA256 with the masking key) and
 * deterministic, so equal values mask equally (joins and GROUP BY on masked
 * output still line up) while nobody without the key can build a table from
 * values to masks.
 */
import { createHmac } from 'node:crypto';
import { isIP } from 'node:net';
import { detect, luhnValid } from './detectors.ts';
import { hmacSha256, hmacSha256Words } from './hmac.ts';

export const MASK_CLASSES = [
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
] as const;
export type MaskClass = (typeof MASK_CLASSES)[number];

export type Strategy =
  /** A fixed text, 'REDACTED' by default. */
  | { readonly kind: 'redact'; readonly text?: string }
  /** The last `keep` letters and digits; the others become '*', separators stay. */
  | { readonly kind: 'partial'; readonly keep: number }
  /** The first 16 hex characters of HMAC-SHA256(key, value). */
  | { readonly kind: 'hash' }
  /** A made-up value of the same kind and format, the same for the same key and value. */
  | { readonly kind: 'fake' }
  /** SQL NULL. */
  | { readonly kind: 'null' }
  /** Free text with every detected email, card, key... replaced by `[KIND]`. */
  | { readonly kind: 'detect' };

export const STRATEGY_KINDS = [
  'redact',
  'partial',
  'hash',
  'fake',
  'null',
  'detect',
] as const satisfies readonly Strategy['kind'][];

/** The masked text of a text value; null means SQL NULL. */
export function maskText(
  value: string,
  strategy: Strategy,
  maskClass: MaskClass,
  key: Buffer,
): string | null {
  switch (strategy.kind) {
    case 'redact':
      return strategy.text ?? 'REDACTED';
    case 'partial':
      return partial(value, strategy.keep);
    case 'hash':
      return hmac(key, value).toString('hex', 0, HASH_BYTES);
    case 'fake':
      return FAKES[maskClass](value, new Derivation(hmac(key, `${maskClass}:${value}`)));
    case 'null':
      return null;
    case 'detect':
      return replaceFindings(value);
  }
}

/**
 * A masked column value as it goes on the wire: `raw` is the value's bytes as
 * the server sent them (null = SQL NULL, which stays NULL), `typeOid` the
 * column's PostgreSQL type OID (0 when unknown), `format` 0 text / 1 binary.
 * Returns the bytes to send, or null for NULL. The result is always valid for
 * the type in that format. It may be shared between calls: copy it, never change it.
 */
export function maskValue(
  raw: Buffer | null,
  typeOid: number,
  format: 0 | 1,
  strategy: Strategy,
  maskClass: MaskClass,
  key: Buffer,
): Buffer | null {
  if (raw === null || strategy.kind === 'null') return null;
  if (TEXT_TYPES.has(typeOid)) {
    // Text-like types are UTF-8 text in both formats (binary send of text is the bytes themselves).
    if (strategy.kind === 'hash') return hashBytes(raw, 0, raw.length, key); // 16 bytes: fits any text type
    if (strategy.kind === 'redact' && typeOid !== OID.name) return redactedBytes(strategy);
    const masked = maskText(raw.toString('utf8'), strategy, maskClass, key);
    if (masked === null) return null;
    return typeOid === OID.name ? nameBytes(masked) : Buffer.from(masked, 'utf8');
  }
  if (typeOid === OID.json || typeOid === OID.jsonb)
    return maskJson(raw, typeOid, format, strategy, maskClass, key);
  const zeroWidth = ZERO_WIDTH.get(typeOid);
  if (zeroWidth !== undefined) return format === TEXT ? Buffer.from('0') : Buffer.alloc(zeroWidth);
  switch (typeOid) {
    case OID.date:
      return format === TEXT ? dateText(raw) : dateBinary(raw);
    case OID.timestamp:
    case OID.timestamptz:
      return format === TEXT ? timestampText(raw, typeOid === OID.timestamptz) : timestampBinary(raw);
    case OID.uuid:
      return derivedUuid(raw, format, key);
    default:
      // bool and every type without a rule here: NULL is valid for all of them, a made-up value may not be.
      return null;
  }
}

/** Masks the (non-NULL) value at bytes[start, end) of one column. */
export type ValueMasker = (bytes: Buffer, start: number, end: number) => Buffer | null;

/**
 * maskValue for every value of one column, its way chosen once for the
 * column instead of once per value: text hashed straight from the row's
 * bytes, a fixed redaction or NULL without reading the value.
 */
export function columnMasker(
  typeOid: number,
  format: 0 | 1,
  strategy: Strategy,
  maskClass: MaskClass,
  key: Buffer,
): ValueMasker {
  if (strategy.kind === 'null') return () => null;
  if (TEXT_TYPES.has(typeOid)) {
    if (strategy.kind === 'hash') return (bytes, start, end) => hashBytes(bytes, start, end, key);
    if (strategy.kind === 'redact' && typeOid !== OID.name) {
      const fixed = redactedBytes(strategy);
      return () => fixed;
    }
  }
  return (bytes, start, end) =>
    maskValue(bytes.subarray(start, end), typeOid, format, strategy, maskClass, key);
}

function hmac(key: Buffer, data: string): Buffer {
  return hmacSha256(key, Buffer.from(data, 'utf8'));
}

const REDACTED = new WeakMap<Strategy, Buffer>();

/** The fixed text of a `redact` strategy, encoded once (the buffer is copied out, never changed). */
function redactedBytes(strategy: Strategy & { kind: 'redact' }): Buffer {
  let bytes = REDACTED.get(strategy);
  if (bytes === undefined) {
    bytes = Buffer.from(strategy.text ?? 'REDACTED', 'utf8');
    REDACTED.set(strategy, bytes);
  }
  return bytes;
}

/** The `hash` strategy keeps this many bytes of the HMAC, as hex. */
const HASH_BYTES = 8;
const HEX_DIGITS = Buffer.from('0123456789abcdef');

/** `hash` of a text value's bytes, as the bytes of its hex, without decoding the value. */
function hashBytes(bytes: Buffer, start: number, end: number, key: Buffer): Buffer {
  const digest = hmacSha256Words(key, bytes, start, end);
  const out = Buffer.allocUnsafe(HASH_BYTES * 2);
  for (let i = 0; i < HASH_BYTES; i++) {
    const byte = (digest[i >> 2]! >>> (24 - (i & 3) * 8)) & 0xff;
    out[i * 2] = HEX_DIGITS[byte >>> 4]!;
    out[i * 2 + 1] = HEX_DIGITS[byte & 0x0f]!;
  }
  return out;
}

// ---------------------------------------------------------------------------
// partial and detect

/** Kept as they are by `partial`: they show the shape (an email, a phone number) and nothing of the value. */
const SEPARATORS: ReadonlySet<string> = new Set([' ', '-', '.', '@', '(', ')', '+']);
const LETTER_OR_DIGIT = /^[\p{L}\p{N}]$/u;

/**
 * The last `keep` letters and digits stay, other letters, digits and symbols
 * become '*', separators stay. A value with no more than `keep` letters and
 * digits is starred entirely: keeping "the last 4" of a 4-digit PIN would
 * reveal all of it.
 */
function partial(value: string, keep: number): string {
  const chars = [...value]; // code points: a character outside the BMP is one '*', not two
  const letters = chars.filter((char) => LETTER_OR_DIGIT.test(char)).length;
  const wanted = Number.isFinite(keep) ? Math.max(0, Math.floor(keep)) : 0;
  let toKeep = letters > wanted ? wanted : 0;
  for (let i = chars.length - 1; i >= 0; i--) {
    const char = chars[i]!;
    if (SEPARATORS.has(char)) continue;
    if (toKeep > 0 && LETTER_OR_DIGIT.test(char)) toKeep--;
    else chars[i] = '*';
  }
  return chars.join('');
}

/** Every detector finding replaced by its kind in brackets, `[EMAIL]`, the rest of the text kept. */
function replaceFindings(text: string): string {
  let out = '';
  let copied = 0;
  for (const { kind, start, end } of detect(text)) {
    out += `${text.slice(copied, start)}[${kind.toUpperCase()}]`;
    copied = end;
  }
  return out + text.slice(copied);
}

// ---------------------------------------------------------------------------
// fake

/**
 * The choices a fake value is made of, drawn from HMAC-SHA256(key, class:value)
 * and, past its 32 bytes, from HMAC(that, 1), HMAC(that, 2)...: the same key
 * and value always draw the same choices.
 */
class Derivation {
  private block: Buffer;
  private used = 0;
  private counter = 0;

  constructor(private readonly seed: Buffer) {
    this.block = seed;
  }

  byte(): number {
    if (this.used === this.block.length) {
      this.counter++;
      this.block = createHmac('sha256', this.seed).update(String(this.counter)).digest();
      this.used = 0;
    }
    return this.block[this.used++]!;
  }

  /** 0 <= n < below (a 16-bit draw: the bias is irrelevant for made-up values). */
  below(limit: number): number {
    return ((this.byte() << 8) | this.byte()) % limit;
  }

  digit(): string {
    return String(this.below(10));
  }

  digits(count: number): string {
    let out = '';
    for (let i = 0; i < count; i++) out += this.digit();
    return out;
  }

  pick<T>(list: readonly T[]): T {
    return list[this.below(list.length)]!;
  }

  hex(length: number): string {
    let out = '';
    while (out.length < length) out += this.byte().toString(16).padStart(2, '0');
    return out.slice(0, length);
  }
}

const EMAIL_WORDS = ['user', 'alex', 'sam', 'robin', 'casey', 'jordan', 'morgan', 'taylor', 'quinn', 'avery'];
const FIRST_NAMES = [
  'Alex',
  'Sam',
  'Robin',
  'Casey',
  'Jordan',
  'Morgan',
  'Taylor',
  'Quinn',
  'Avery',
  'Riley',
  'Jamie',
  'Drew',
];
const LAST_NAMES = [
  'Smith',
  'Garcia',
  'Chen',
  'Okafor',
  'Novak',
  'Silva',
  'Jensen',
  'Moreau',
  'Tanaka',
  'Rossi',
  'Haddad',
  'Kowalski',
];
const STREET_NAMES = ['Maple', 'Oak', 'Cedar', 'Elm', 'Pine', 'Birch', 'Willow', 'Aspen', 'Linden', 'Hazel'];

/** A fake value per class; null (SQL NULL) where the value cannot be read (a birth date that is not a date). */
const FAKES: Readonly<Record<MaskClass, (value: string, choices: Derivation) => string | null>> = {
  email: fakeEmail,
  name: (value, choices) =>
    value.trim().includes(' ')
      ? `${choices.pick(FIRST_NAMES)} ${choices.pick(LAST_NAMES)}`
      : choices.pick(FIRST_NAMES),
  phone: (value, choices) => value.replace(/\d/g, () => choices.digit()),
  card: fakeCard,
  national_id: fakeNationalId,
  address: (_value, choices) => `${1 + choices.below(9999)} ${choices.pick(STREET_NAMES)} Street`,
  ip: fakeIp,
  date_of_birth: (value) => startOfYearText(value),
  secret: fakeHex,
  free_text: fakeHex,
  other: fakeHex,
};

/** `<word><4 digits>@example.com`: the original domain (a company, a customer) is never shown. */
function fakeEmail(value: string, choices: Derivation): string {
  const domain = value.trim().toLowerCase().endsWith('@example.com') ? 'example.org' : 'example.com';
  return `${choices.pick(EMAIL_WORDS)}${choices.digits(4)}@${domain}`;
}

const CARD_SHAPE = /^\d[\d -]*\d$/;
const DEFAULT_CARD_SHAPE = '0000 0000 0000 0000';

/**
 * A Visa-like number (4 first, Luhn check digit last) in the value's grouping
 * when the value is a card number of 13 to 19 digits, else in 4×4 groups. It
 * passes a client's Luhn check and can never be a real card of the customer.
 */
function fakeCard(value: string, choices: Derivation): string {
  const trimmed = value.trim();
  const length = trimmed.replace(/\D/g, '').length;
  const shape = CARD_SHAPE.test(trimmed) && length >= 13 && length <= 19 ? trimmed : DEFAULT_CARD_SHAPE;
  const payload = `4${choices.digits(shape.replace(/\D/g, '').length - 2)}`;
  const digits = payload + luhnCheckDigit(payload);
  let next = 0;
  return shape.replace(/\d/g, () => digits[next++]!);
}

/** The digit that makes `payload` + digit Luhn valid (exactly one of the ten does). */
function luhnCheckDigit(payload: string): string {
  return [...'0123456789'].find((digit) => luhnValid(payload + digit))!;
}

/** `9AA-GG-SSSS` (or 9 digits, as the value is written): area 9xx is never issued as an SSN. */
function fakeNationalId(value: string, choices: Derivation): string {
  const [area, group, serial] = [`9${choices.digits(2)}`, choices.digits(2), choices.digits(4)];
  return value.includes('-') ? `${area}-${group}-${serial}` : `${area}${group}${serial}`;
}

/** An address of the documentation ranges (RFC 5737 192.0.2.0/24, RFC 3849 2001:db8::/32), same family. */
function fakeIp(value: string, choices: Derivation): string {
  const address = value.trim().split('/')[0]!; // inet/cidr text may carry a prefix length
  const family = isIP(address);
  if (family === 6 || (family === 0 && /:.*:/.test(address))) {
    const groups = Array.from({ length: 6 }, () => choices.below(0x10000).toString(16));
    return `2001:db8:${groups.join(':')}`;
  }
  return `192.0.2.${1 + choices.below(254)}`;
}

/** Hex of the value's length (at least 8): the length is all that shows. */
function fakeHex(value: string, choices: Derivation): string {
  return choices.hex(Math.max(8, [...value].length));
}

// ---------------------------------------------------------------------------
// Types on the wire

/** PostgreSQL type OIDs with a rule here (src/include/catalog/pg_type.dat). */
const OID = {
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
  bpchar: 1042,
  varchar: 1043,
  date: 1082,
  timestamp: 1114,
  timestamptz: 1184,
  numeric: 1700,
  uuid: 2950,
  jsonb: 3802,
} as const;

const TEXT = 0;

/** Types whose value is text in both formats; 0 is a column whose type is not known, treated as text. */
const TEXT_TYPES: ReadonlySet<number> = new Set([
  OID.text,
  OID.varchar,
  OID.bpchar,
  OID.name,
  OID.unknown,
  0,
]);

/**
 * Numbers become zero; this is the width of zero in binary. Float zero is all
 * zero bits; numeric zero is ndigits, weight, sign and dscale all 0 (int16 each).
 */
const ZERO_WIDTH: ReadonlyMap<number, number> = new Map([
  [OID.int2, 2],
  [OID.int4, 4],
  [OID.int8, 8],
  [OID.oid, 4],
  [OID.float4, 4],
  [OID.float8, 8],
  [OID.numeric, 8],
]);

const NAME_MAX_BYTES = 63; // NAMEDATALEN - 1

/** A `name` holds at most 63 bytes: cut there, at a character boundary. */
function nameBytes(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= NAME_MAX_BYTES) return bytes;
  let cut = NAME_MAX_BYTES;
  while (cut > 0 && (bytes[cut]! & 0xc0) === 0x80) cut--; // bytes[cut] continues a character: cut before it
  return bytes.subarray(0, cut);
}

const JSONB_VERSION = Buffer.from([1]);

/**
 * json and jsonb become a JSON string of the masked text. A JSON string value
 * (`data->'email'`) is masked as its text, so it masks like the text column it
 * came from. jsonb's binary form is a version byte, 1, then the JSON text.
 */
function maskJson(
  raw: Buffer,
  typeOid: number,
  format: 0 | 1,
  strategy: Strategy,
  maskClass: MaskClass,
  key: Buffer,
): Buffer | null {
  const versioned = typeOid === OID.jsonb && format !== TEXT;
  const json = (versioned ? raw.subarray(1) : raw).toString('utf8').trim();
  // The server only sends valid JSON for these types, so parsing a string value cannot fail.
  const text = json.startsWith('"') ? (JSON.parse(json) as string) : json;
  const masked = maskText(text, strategy, maskClass, key);
  if (masked === null) return null;
  const literal = Buffer.from(JSON.stringify(masked), 'utf8');
  return versioned ? Buffer.concat([JSONB_VERSION, literal]) : literal;
}

/**
 * A date or timestamp as PostgreSQL prints it with DateStyle ISO:
 * `YYYY-MM-DD`, `YYYY-MM-DD hh:mm:ss[.ffffff][+hh[:mm[:ss]]]`. Anything else
 * (infinity, ` BC`, another DateStyle) does not match and is masked as NULL.
 */
const ISO_DATE_TIME =
  /^(\d{4,})-\d{2}-\d{2}(?:( \d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)([+-]\d{2}(?::\d{2}){0,2})?)?$/;

interface IsoDateTime {
  readonly year: string;
  readonly time: boolean;
  readonly zone: string | undefined;
}

function parseIsoDateTime(text: string): IsoDateTime | undefined {
  const parts = ISO_DATE_TIME.exec(text.trim());
  if (parts === null || Number(parts[1]) === 0) return undefined; // there is no year 0 (1 BC is printed ` BC`)
  return { year: parts[1]!, time: parts[2] !== undefined, zone: parts[3] };
}

/** A birth date kept to its year, in the form it was written; null when it is not an ISO date or timestamp. */
function startOfYearText(value: string): string | null {
  const parsed = parseIsoDateTime(value);
  if (parsed === undefined) return null;
  return parsed.time ? `${parsed.year}-01-01 00:00:00${parsed.zone ?? ''}` : `${parsed.year}-01-01`;
}

function dateText(raw: Buffer): Buffer | null {
  const parsed = parseIsoDateTime(raw.toString('utf8'));
  return parsed === undefined || parsed.time ? null : Buffer.from(`${parsed.year}-01-01`);
}

/**
 * For timestamptz the server prints the session's offset (`+00` with
 * TimeZone UTC): the result keeps the value's own offset, so it is midnight
 * of January 1st in the zone the client reads it in.
 */
function timestampText(raw: Buffer, withZone: boolean): Buffer | null {
  const parsed = parseIsoDateTime(raw.toString('utf8'));
  if (parsed === undefined || !parsed.time) return null;
  return Buffer.from(`${parsed.year}-01-01 00:00:00${withZone ? (parsed.zone ?? '+00') : ''}`);
}

/** Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch for binary dates and timestamps. */
const POSTGRES_EPOCH_DAY = 10_957;
const DATE_INFINITY = 0x7fffffff;
const DATE_MINUS_INFINITY = -0x80000000;
const TIMESTAMP_INFINITY = 0x7fffffffffffffffn;
const TIMESTAMP_MINUS_INFINITY = -0x8000000000000000n;
const MICROSECONDS_PER_DAY = 86_400_000_000n;

/** int32 days since 2000-01-01. BC dates become NULL, as they do in text, so both formats agree. */
function dateBinary(raw: Buffer): Buffer | null {
  if (raw.length !== 4) return null;
  const days = raw.readInt32BE(0);
  if (days === DATE_INFINITY || days === DATE_MINUS_INFINITY) return null;
  const year = yearOfDay(days + POSTGRES_EPOCH_DAY);
  if (year < 1) return null;
  const out = Buffer.alloc(4);
  out.writeInt32BE(firstOfJanuary(year) - POSTGRES_EPOCH_DAY);
  return out;
}

/** int64 microseconds since 2000-01-01 00:00 (UTC for timestamptz). */
function timestampBinary(raw: Buffer): Buffer | null {
  if (raw.length !== 8) return null;
  const micros = raw.readBigInt64BE(0);
  if (micros === TIMESTAMP_INFINITY || micros === TIMESTAMP_MINUS_INFINITY) return null;
  // BigInt division truncates towards zero; a time before 2000 belongs to the day before.
  const day = micros / MICROSECONDS_PER_DAY - (micros % MICROSECONDS_PER_DAY < 0n ? 1n : 0n);
  const year = yearOfDay(Number(day) + POSTGRES_EPOCH_DAY);
  if (year < 1) return null;
  const out = Buffer.alloc(8);
  out.writeBigInt64BE(BigInt(firstOfJanuary(year) - POSTGRES_EPOCH_DAY) * MICROSECONDS_PER_DAY);
  return out;
}

// Proleptic Gregorian calendar arithmetic (Howard Hinnant's days_from_civil / civil_from_days), which,
// unlike Date, covers PostgreSQL's whole range (up to year 5874897). Years start in March in these
// formulas, so that the leap day is the last day of a year.

/** Days since 1970-01-01 of January 1st of `year`. */
function firstOfJanuary(year: number): number {
  const marchYear = year - 1; // January belongs to the March-based year before
  const era = Math.floor(marchYear / 400);
  const yearOfEra = marchYear - era * 400;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + 306; // Mar 1 → Jan 1
  return era * 146_097 + dayOfEra - 719_468;
}

/** The year of a day counted from 1970-01-01 (0 is 1 BC, -1 is 2 BC). */
function yearOfDay(days: number): number {
  const shifted = days + 719_468; // days since 0000-03-01
  const era = Math.floor(shifted / 146_097);
  const dayOfEra = shifted - era * 146_097;
  const yearOfEra = Math.floor(
    (dayOfEra -
      Math.floor(dayOfEra / 1460) +
      Math.floor(dayOfEra / 36_524) -
      Math.floor(dayOfEra / 146_096)) /
      365,
  );
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  return era * 400 + yearOfEra + (dayOfYear >= 306 ? 1 : 0); // January and February end the March-based year
}

/**
 * A version 4 uuid made of HMAC(key, the uuid's text): the same uuid always
 * masks to the same one, in text and in binary, so joins on it line up.
 */
function derivedUuid(raw: Buffer, format: 0 | 1, key: Buffer): Buffer {
  const text = format === TEXT ? raw.toString('utf8').trim().toLowerCase() : uuidText(raw);
  const bytes = Buffer.from(hmac(key, text).subarray(0, 16));
  bytes[6] = (bytes[6]! & 0x0f) | 0x40; // version 4
  bytes[8] = (bytes[8]! & 0x3f) | 0x80; // variant 10
  return format === TEXT ? Buffer.from(uuidText(bytes)) : bytes;
}

function uuidText(bytes: Buffer): string {
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
