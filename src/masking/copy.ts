/**
 * COPY ... TO STDOUT, masked as it streams. The server answers with a
 * CopyOutResponse, then one CopyData per row, in the format the statement
 * asked for: text (fields escaped with backslashes), csv (fields quoted when
 * they must be) or binary (length-prefixed fields between a file header and a
 * trailer). Each row's masked fields are read, masked and written again with
 * the statement's own options, so the client reads them as PostgreSQL wrote
 * them; every other byte is copied as it came. NULL stays NULL.
 *
 * The options come from the statement (readCopyFormat, from its parse tree),
 * never from the bytes: a row that does not read as that format (a field
 * count that differs, an unclosed quote) ends the session rather than being
 * guessed at (UnreadableCopyRow). The rules are PostgreSQL's, in
 * src/backend/commands/copyto.c (CopyAttributeOutText, CopyAttributeOutCSV,
 * CopyOneRowTo) and the COPY page of the docs (File Formats).
 */
import type { CopyResponse } from '../protocol/postgres/messages.ts';
import type { CopyOption } from '../sql/lineage.ts';
import type { MaskMemos } from './memo.ts';
import type { Masked, StatementPlan } from './plan.ts';
import { copyBytes, maskAt, type Rewrite, rewriteOf, spliceValues } from './rewrite.ts';

/** How a COPY writes its rows, as its options say. */
export interface CopyFormat {
  readonly kind: 'text' | 'csv' | 'binary';
  /** A first line of column names (text and csv): it is passed on as it is. */
  readonly header: boolean;
  /** The byte between fields (text and csv). */
  readonly delimiter: number;
  /** How NULL is written (text and csv), as bytes. */
  readonly nullMarker: Buffer;
  /** csv: the byte that quotes a field, and the one that escapes a quote (or itself) inside it. */
  readonly quote: number;
  readonly escape: number;
  /** csv FORCE_QUOTE: every column (`*`), or the columns named. */
  readonly forceQuoteAll: boolean;
  readonly forceQuote: readonly string[];
}

/** A result column of a COPY, where its position is certain. */
export interface CopyColumn {
  readonly name: string;
  /** Its type (from the catalog), 0 when not known: masked as text, or NULL in binary. */
  readonly typeOid: number;
  /** Named by FORCE_QUOTE (csv): a masked value there is quoted too. */
  readonly forceQuote: boolean;
}

/** What the mask plan of a COPY ... TO STDOUT adds: the format, and the columns when they are certain. */
export interface CopyPlan {
  readonly format: CopyFormat;
  readonly columns: readonly CopyColumn[] | undefined;
}

/** A row that does not read as the statement's format: the COPY cannot be masked, the session ends. */
export class UnreadableCopyRow extends Error {
  override readonly name = 'UnreadableCopyRow';
}

const TAB = 0x09;
const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;
const DOUBLE_QUOTE = 0x22;
const COMMA = 0x2c;
const DOT = 0x2e;
const BACKSLASH = 0x5c;

// ---------------------------------------------------------------------------
// Options

/**
 * The format a COPY's options ask for, or why Warden cannot read its rows
 * (then the COPY is refused when it would need masking). Options that only
 * COPY FROM takes are let through: the server refuses them for COPY TO.
 */
export function readCopyFormat(options: readonly CopyOption[]): CopyFormat | string {
  const given = new Map<string, CopyOption['value']>();
  for (const { name, value } of options) {
    if (given.has(name)) return `option ${name.toUpperCase()} given twice`;
    given.set(name, value);
  }
  let kind: CopyFormat['kind'] = 'text';
  let header = false;
  let forceQuoteAll = false;
  let forceQuote: readonly string[] = [];
  for (const [name, value] of given) {
    switch (name) {
      case 'format':
        if (value !== 'text' && value !== 'csv' && value !== 'binary') return `FORMAT ${shown(value)}`;
        kind = value;
        break;
      case 'header': {
        const choice = headerChoice(value);
        if (choice === undefined) return `HEADER ${shown(value)}`;
        header = choice;
        break;
      }
      case 'force_quote':
        if (value === '*') forceQuoteAll = true;
        else if (Array.isArray(value)) forceQuote = value;
        else return `FORCE_QUOTE ${shown(value)}`;
        break;
      case 'encoding':
        // Rows are read and masked as UTF-8; encodings like SJIS even hide backslashes inside characters.
        if (!isUtf8(value)) return `ENCODING ${shown(value)}`;
        break;
      case 'delimiter':
      case 'null':
      case 'quote':
      case 'escape':
        break; // read below, once the format is known
      case 'freeze':
      case 'log_verbosity':
      case 'default':
      case 'force_not_null':
      case 'force_null':
      case 'on_error':
      case 'reject_limit':
      case 'convert_selectively':
        break; // they do not change how COPY TO writes (the COPY FROM ones are refused by the server)
      default:
        return `option ${name.toUpperCase()}`;
    }
  }
  if (kind === 'binary') {
    for (const name of ['delimiter', 'null', 'quote', 'escape', 'header', 'force_quote'])
      if (given.has(name)) return `${name.toUpperCase()} in binary format`;
    return binaryFormat;
  }
  const csv = kind === 'csv';
  if (!csv)
    for (const name of ['quote', 'escape', 'force_quote'])
      if (given.has(name)) return `${name.toUpperCase()} in text format`;
  const delimiter = oneByte(given, 'delimiter', csv ? COMMA : TAB);
  const quote = oneByte(given, 'quote', DOUBLE_QUOTE);
  const escapeByte = oneByte(given, 'escape', typeof quote === 'number' ? quote : DOUBLE_QUOTE);
  if (typeof delimiter === 'string') return delimiter;
  if (typeof quote === 'string') return quote;
  if (typeof escapeByte === 'string') return escapeByte;
  const nullText = given.has('null') ? asText(given.get('null')) : csv ? '' : '\\N';
  if (nullText === undefined) return `NULL ${shown(given.get('null'))}`;
  const nullMarker = Buffer.from(nullText, 'utf8');
  // What the scans below rely on (PostgreSQL refuses most of these itself).
  if (
    delimiter === NEWLINE ||
    delimiter === CARRIAGE_RETURN ||
    (!csv && TEXT_FORBIDDEN_DELIMITERS.includes(delimiter))
  )
    return `DELIMITER ${shown(given.get('delimiter'))}`;
  if (csv && (quote === delimiter || quote === NEWLINE || quote === CARRIAGE_RETURN))
    return `QUOTE ${shown(given.get('quote'))}`;
  if (csv && (escapeByte === NEWLINE || escapeByte === CARRIAGE_RETURN))
    return `ESCAPE ${shown(given.get('escape'))}`;
  if (!nullMarkerReadable(nullMarker, kind, delimiter, quote)) return `NULL ${shown(nullText)}`;
  return { kind, header, delimiter, nullMarker, quote, escape: escapeByte, forceQuoteAll, forceQuote };
}

/** What text format never takes as its delimiter (it would read as part of an escape): `\.a-z0-9`. */
const TEXT_FORBIDDEN_DELIMITERS: readonly number[] = [
  ...Buffer.from('\\.abcdefghijklmnopqrstuvwxyz0123456789'),
];

const binaryFormat: CopyFormat = {
  kind: 'binary',
  header: false,
  delimiter: 0,
  nullMarker: Buffer.alloc(0),
  quote: 0,
  escape: 0,
  forceQuoteAll: false,
  forceQuote: [],
};

/** As PostgreSQL's defGetString reads an option: words and strings as they are, numbers and booleans as text. */
function asText(value: CopyOption['value']): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  return undefined;
}

/** A single ASCII byte (a one-byte character of any server encoding, as the client gets it). */
function oneByte(given: Map<string, CopyOption['value']>, name: string, fallback: number): number | string {
  if (!given.has(name)) return fallback;
  const text = asText(given.get(name));
  if (text === undefined || text.length !== 1 || text.charCodeAt(0) === 0 || text.charCodeAt(0) > 0x7f)
    return `${name.toUpperCase()} ${shown(given.get(name))}`;
  return text.charCodeAt(0);
}

/** HEADER as PostgreSQL reads it (defGetCopyHeaderChoice); `match` is for COPY FROM, refused by the server here. */
function headerChoice(value: CopyOption['value']): boolean | undefined {
  if (value === undefined) return true;
  if (typeof value === 'boolean') return value;
  if (typeof value === 'number') return value === 0 ? false : value === 1 ? true : undefined;
  if (typeof value !== 'string') return undefined;
  const word = value.toLowerCase();
  if (word === 'true' || word === 'on' || word === 'match') return true;
  if (word === 'false' || word === 'off') return false;
  return undefined;
}

/** An encoding name as PostgreSQL compares them: case and punctuation ignored (`UTF-8`, `utf8`, `unicode`). */
function isUtf8(value: CopyOption['value']): boolean {
  const text = asText(value);
  const name = text?.toLowerCase().replace(/[^a-z0-9]/g, '');
  return name === 'utf8' || name === 'unicode';
}

/** An option's value as the refusal quotes it. */
function shown(value: CopyOption['value']): string {
  if (value === undefined) return '(no value)';
  if (Array.isArray(value)) return `(${value.join(', ')})`;
  return `'${String(value)}'`;
}

/**
 * The NULL marker must read as one field: in text its backslashes each take
 * the next character (so `\` alone, last, would swallow the delimiter after
 * it); in csv an unquoted field never starts with the quote. Neither may hold
 * the delimiter or a line break.
 */
function nullMarkerReadable(marker: Buffer, kind: 'text' | 'csv', delimiter: number, quote: number): boolean {
  let escaping = false;
  for (let i = 0; i < marker.length; i++) {
    const c = marker[i]!;
    if (c === delimiter || c === NEWLINE || c === CARRIAGE_RETURN) return false;
    if (kind === 'csv' && c === quote) return false;
    escaping = kind === 'text' && c === BACKSLASH && !escaping;
  }
  return !escaping;
}

/**
 * Text format: whether a value could be written exactly as the NULL marker
 * (`NULL ''`, `NULL 'N/A'`). PostgreSQL writes such a value unchanged, so a
 * masked column's NULLs could not be told from values equal to the marker
 * (which would then pass unmasked). csv quotes such a value; the default
 * `\N` is never a value (a value's backslash is written `\\`).
 */
export function nullMayBeValue(format: CopyFormat): boolean {
  if (format.kind !== 'text') return false;
  const marker = format.nullMarker;
  for (let i = 0; i < marker.length; i++) {
    const c = marker[i]!;
    if (c >= 0x08 && c <= 0x0d) return false; // a value's \b \t \n \v \f \r are written escaped
    if (c === BACKSLASH && !writtenAfterBackslash(marker[++i], format.delimiter)) return false;
  }
  return true;
}

/** What PostgreSQL writes after a backslash in a text field: `\\`, the delimiter, or a control's letter. */
function writtenAfterBackslash(c: number | undefined, delimiter: number): boolean {
  if (c === undefined) return false;
  if (c === BACKSLASH) return true;
  if (c === delimiter && !(delimiter >= 0x08 && delimiter <= 0x0d)) return true;
  return CONTROL_LETTERS.includes(c);
}

// ---------------------------------------------------------------------------
// Text rows

/** The letters PostgreSQL writes after a backslash for \b \t \n \v \f \r (0x08 to 0x0d, in order). */
const CONTROL_LETTERS: readonly number[] = [0x62, 0x74, 0x6e, 0x76, 0x66, 0x72];

/**
 * Finds the fields of a text row in row[start, end) (end: at its newline):
 * their bounds go to `starts` and `ends`, raw (escapes in place); returns
 * their count. A backslash always takes the next byte, so an escaped
 * delimiter never ends a field.
 */
export function splitTextRow(
  row: Uint8Array,
  start: number,
  end: number,
  delimiter: number,
  starts: number[],
  ends: number[],
): number {
  let count = 0;
  let fieldStart = start;
  let i = start;
  while (i < end) {
    const c = row[i]!;
    if (c === BACKSLASH) {
      i += 2;
    } else if (c === delimiter) {
      starts[count] = fieldStart;
      ends[count++] = i;
      fieldStart = ++i;
    } else if (c === NEWLINE) {
      throw new UnreadableCopyRow('a text COPY row holds a line break PostgreSQL would have escaped');
    } else {
      i++;
    }
  }
  if (i > end) throw new UnreadableCopyRow('a text COPY row ends inside an escape');
  starts[count] = fieldStart;
  ends[count++] = end;
  return count;
}

/** Whether text field row[start, end) has a backslash: then its value must be decoded. */
function hasBackslash(row: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (row[i] === BACKSLASH) return true;
  return false;
}

/** The value of a text field, unescaped into `out` from 0; returns its length. */
export function decodeTextField(row: Uint8Array, start: number, end: number, out: Uint8Array): number {
  let length = 0;
  for (let i = start; i < end; i++) {
    let c = row[i]!;
    if (c === BACKSLASH) {
      c = row[++i]!;
      const control = CONTROL_LETTERS.indexOf(c);
      // PostgreSQL writes no octal or \x escapes: any other escaped byte is itself.
      if (control >= 0) c = 0x08 + control;
    }
    out[length++] = c;
  }
  return length;
}

function escapedInText(c: number, delimiter: number): boolean {
  return (c >= 0x08 && c <= 0x0d) || c === BACKSLASH || c === delimiter;
}

/** The length of a value written as a text field. */
export function textFieldLength(value: Uint8Array, delimiter: number): number {
  let length = value.length;
  for (let i = 0; i < value.length; i++) if (escapedInText(value[i]!, delimiter)) length++;
  return length;
}

/** Writes a value as a text field at `at` (CopyAttributeOutText); returns where it ended. */
export function writeTextField(value: Uint8Array, delimiter: number, out: Uint8Array, at: number): number {
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c >= 0x08 && c <= 0x0d) {
      out[at++] = BACKSLASH;
      out[at++] = CONTROL_LETTERS[c - 0x08]!;
    } else {
      if (c === BACKSLASH || c === delimiter) out[at++] = BACKSLASH;
      out[at++] = c;
    }
  }
  return at;
}

// ---------------------------------------------------------------------------
// csv rows

/**
 * Finds the fields of a csv row in row[start, end) (end: at its newline):
 * bounds to `starts` and `ends`, quotes included; returns their count. A
 * quoted field may hold delimiters and line breaks; inside it the escape
 * byte always precedes a quote or itself (with the default escape, the
 * quote: `""`).
 */
export function splitCsvRow(
  row: Uint8Array,
  start: number,
  end: number,
  format: CopyFormat,
  starts: number[],
  ends: number[],
): number {
  const { delimiter, quote, escape: escapeByte } = format;
  let count = 0;
  let i = start;
  for (;;) {
    const fieldStart = i;
    if (i < end && row[i] === quote) {
      i++;
      for (;;) {
        if (i >= end) throw new UnreadableCopyRow('a csv COPY row ends inside a quoted field');
        const c = row[i]!;
        const next = i + 1 < end ? row[i + 1] : -1;
        if (
          c === escapeByte &&
          (next === quote || next === escapeByte) &&
          !(escapeByte === quote && next !== quote)
        ) {
          i += 2;
        } else if (c === quote) {
          i++;
          break;
        } else if (c === escapeByte) {
          throw new UnreadableCopyRow('a csv COPY field holds an escape byte that escapes nothing');
        } else {
          i++;
        }
      }
      if (i < end && row[i] !== delimiter)
        throw new UnreadableCopyRow('a csv COPY field goes on after its closing quote');
    } else {
      while (i < end && row[i] !== delimiter) {
        const c = row[i]!;
        if (c === quote || c === NEWLINE || c === CARRIAGE_RETURN)
          throw new UnreadableCopyRow('an unquoted csv COPY field holds a byte PostgreSQL would have quoted');
        i++;
      }
    }
    starts[count] = fieldStart;
    ends[count++] = i;
    if (i >= end) return count;
    i++; // the delimiter
  }
}

/**
 * The value of a quoted csv field row[start, end) (quotes included),
 * unescaped into `out` from 0; returns its length, or -1 when it holds no
 * escape (the value is then row[start + 1, end - 1)).
 */
export function decodeCsvField(
  row: Uint8Array,
  start: number,
  end: number,
  escapeByte: number,
  out: Uint8Array,
): number {
  let i = start + 1;
  const last = end - 1;
  while (i < last && row[i] !== escapeByte) i++;
  if (i === last) return -1;
  let length = 0;
  for (let j = start + 1; j < last; j++) {
    if (row[j] === escapeByte) j++; // it escapes the next byte (a quote or itself)
    out[length++] = row[j]!;
  }
  return length;
}

/** Whether a value must be quoted in csv (CopyAttributeOutCSV), when FORCE_QUOTE does not say so already. */
export function csvNeedsQuotes(value: Uint8Array, format: CopyFormat, onlyColumn: boolean): boolean {
  // A value equal to the NULL marker is quoted, or it would read as NULL.
  if (isNullMarker(value, 0, value.length, format.nullMarker)) return true;
  // `\.` alone on a line would read as the end of the data.
  if (onlyColumn && value.length === 2 && value[0] === BACKSLASH && value[1] === DOT) return true;
  const { delimiter, quote } = format;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === delimiter || c === quote || c === NEWLINE || c === CARRIAGE_RETURN) return true;
  }
  return false;
}

/** The length of a value written as a csv field. */
export function csvFieldLength(value: Uint8Array, format: CopyFormat, quoted: boolean): number {
  if (!quoted) return value.length;
  let length = value.length + 2;
  for (let i = 0; i < value.length; i++)
    if (value[i] === format.quote || value[i] === format.escape) length++;
  return length;
}

/** Writes a value as a csv field at `at`; returns where it ended. */
export function writeCsvField(
  value: Uint8Array,
  format: CopyFormat,
  quoted: boolean,
  out: Uint8Array,
  at: number,
): number {
  if (!quoted) {
    out.set(value, at);
    return at + value.length;
  }
  const { quote, escape: escapeByte } = format;
  out[at++] = quote;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === quote || c === escapeByte) out[at++] = escapeByte;
    out[at++] = c;
  }
  out[at++] = quote;
  return at;
}

/** Whether row[start, end) is the NULL marker, byte for byte. */
function isNullMarker(row: Uint8Array, start: number, end: number, marker: Uint8Array): boolean {
  if (end - start !== marker.length) return false;
  for (let i = 0; i < marker.length; i++) if (row[start + i] !== marker[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------
// Binary

/** `PGCOPY\n\377\r\n\0`: the first 11 bytes of a binary COPY. */
const BINARY_SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
/** Flags bit 16: each tuple carries an OID (servers before 12 only, WITH OIDS). Bits 16 to 31 are critical. */
const CRITICAL_FLAGS = 0xffff0000;

/** Where the binary header that starts at `at` ends (signature, flags, extension); throws if it is not one. */
export function binaryHeaderEnd(data: Buffer, at: number, end: number): number {
  if (end - at < 19 || data.compare(BINARY_SIGNATURE, 0, 11, at, at + 11) !== 0)
    throw new UnreadableCopyRow('a binary COPY does not start with its signature');
  if ((data.readUInt32BE(at + 11) & CRITICAL_FLAGS) !== 0)
    throw new UnreadableCopyRow('a binary COPY has flags Warden does not know (OIDs?)');
  const extension = data.readUInt32BE(at + 15);
  if (at + 19 + extension > end) throw new UnreadableCopyRow('a binary COPY header extension is cut short');
  return at + 19 + extension;
}

// ---------------------------------------------------------------------------
// Rows, masked

/** A column of a COPY to rewrite. */
export interface CopyRewrite extends Rewrite {
  /** csv: a masked value here is quoted whatever it holds (FORCE_QUOTE). */
  readonly forceQuote: boolean;
}

const NULL_STRATEGY: Masked['strategy'] = { kind: 'null' };

/**
 * The masker of one COPY's rows, made when its CopyOutResponse arrives;
 * undefined when none of its columns is masked (its rows pass untouched).
 * Fails closed when the response does not match the plan.
 */
export function copyRows(
  plan: StatementPlan | undefined,
  response: CopyResponse,
  memos: MaskMemos,
  key: Buffer,
): CopyRows | undefined {
  const count = response.columnFormats.length;
  const copy = plan?.copy;
  if (plan === undefined || copy === undefined) {
    // Only COPY TO STDOUT answers so, and it is planned with its format: a plan without one that masks
    // anything cannot mask rows it cannot read.
    if (plan?.positional?.some(Boolean) || plan?.computed)
      throw new UnreadableCopyRow('a COPY answered a statement that was not planned as one');
    return undefined;
  }
  const { format, columns } = copy;
  if ((response.format === 1) !== (format.kind === 'binary'))
    throw new UnreadableCopyRow(
      `a COPY answered in ${response.format === 1 ? 'binary' : 'text'} format, not the ${format.kind} it asked for`,
    );
  // Positions are certain when the plan's, the columns' and the server's counts agree; else every
  // column may hold what any of them holds.
  const certain = columns !== undefined && columns.length === count && plan.positional?.length === count;
  const rewrites: CopyRewrite[] = [];
  const wire = format.kind === 'binary' ? 1 : 0;
  for (let index = 0; index < count; index++) {
    let masked = certain ? plan.positional![index] : plan.computed;
    if (masked === undefined) continue;
    const typeOid = certain ? columns![index]!.typeOid : 0;
    // A binary value of a type not known: only NULL is valid whatever the type.
    if (wire === 1 && typeOid === 0) masked = { ...masked, strategy: NULL_STRATEGY };
    const forceQuote =
      format.forceQuoteAll || (certain ? columns![index]!.forceQuote : format.forceQuote.length > 0);
    rewrites.push({ ...rewriteOf(index, masked, typeOid, wire, memos, key), forceQuote });
  }
  if (rewrites.length === 0) return undefined;
  const names = rewrites.map((r) => (certain ? columns![r.index]!.name : `column${r.index + 1}`));
  return new CopyRows(format, rewrites, count, names);
}

// The current row's fields and what the masked ones become (rows are rewritten one at a time, on one
// thread).
const fieldStarts: number[] = [];
const fieldEnds: number[] = [];
const replacements: (Buffer | null)[] = [];
const lengths: number[] = [];
const quoted: boolean[] = [];
/** Where escaped values are decoded; one larger than this is made for its value and not kept. */
const SCRATCH_MAX = 64 * 1024;
let scratch = Buffer.allocUnsafe(1024);

function scratchFor(length: number): Buffer {
  if (length <= scratch.length) return scratch;
  if (length > SCRATCH_MAX) return Buffer.allocUnsafe(length);
  scratch = Buffer.allocUnsafe(SCRATCH_MAX);
  return scratch;
}

/** Rewrites the CopyData frames of one COPY, one row at a time. */
export class CopyRows {
  /** Data rows seen (not the header line, not the binary trailer). */
  rows = 0;
  /** The header line (text, csv) or the binary file header is still to come. */
  private headerPending: boolean;
  /** Binary: the trailer came; nothing may follow it. */
  private ended = false;

  constructor(
    readonly format: CopyFormat,
    private readonly rewrites: readonly CopyRewrite[],
    private readonly columns: number,
    /** The masked columns' names, for audit. */
    readonly masked: readonly string[],
  ) {
    this.headerPending = format.kind === 'binary' || format.header;
  }

  /** A CopyData frame with its masked fields rewritten (the frame itself when none changed). */
  rewrite(frame: Buffer): Buffer {
    if (this.format.kind === 'binary') return this.binaryRow(frame);
    if (this.headerPending) {
      this.headerPending = false;
      return frame; // column names: nothing to mask
    }
    return this.delimitedRow(frame);
  }

  private delimitedRow(frame: Buffer): Buffer {
    const { format, rewrites } = this;
    const end = frame.length - 1;
    if (end < 5 || frame[end] !== NEWLINE) throw new UnreadableCopyRow('a COPY row does not end its line');
    const csv = format.kind === 'csv';
    const count = csv
      ? splitCsvRow(frame, 5, end, format, fieldStarts, fieldEnds)
      : splitTextRow(frame, 5, end, format.delimiter, fieldStarts, fieldEnds);
    if (count !== this.columns)
      throw new UnreadableCopyRow(`a COPY row has ${count} fields for ${this.columns} columns`);
    this.rows++;
    let size = frame.length;
    let changed = 0;
    for (let i = 0; i < rewrites.length; i++) {
      const rewrite = rewrites[i]!;
      const start = fieldStarts[rewrite.index]!;
      const fieldEnd = fieldEnds[rewrite.index]!;
      const isQuoted = csv && fieldEnd > start && frame[start] === format.quote;
      if (!isQuoted && isNullMarker(frame, start, fieldEnd, format.nullMarker)) {
        replacements[i] = null;
        lengths[i] = -1; // NULL stays as it was written
        continue;
      }
      const value = csv
        ? this.maskCsv(frame, start, fieldEnd, isQuoted, rewrite)
        : this.maskText(frame, start, fieldEnd, rewrite);
      let length: number;
      if (value === null) {
        length = format.nullMarker.length;
      } else if (csv) {
        quoted[i] = rewrite.forceQuote || csvNeedsQuotes(value, format, this.columns === 1);
        length = csvFieldLength(value, format, quoted[i]!);
      } else {
        length = textFieldLength(value, format.delimiter);
      }
      replacements[i] = value;
      lengths[i] = length;
      size += length - (fieldEnd - start);
      changed++;
    }
    if (changed === 0) return frame;
    const out = Buffer.allocUnsafe(size);
    out[0] = frame[0]!;
    out.writeInt32BE(size - 1, 1);
    let to = 5;
    let from = 5;
    for (let i = 0; i < rewrites.length; i++) {
      if (lengths[i] === -1) continue;
      const index = rewrites[i]!.index;
      to = copyBytes(frame, from, fieldStarts[index]!, out, to);
      const value = replacements[i]!;
      replacements[i] = null; // no reference kept to a value past its row
      if (value === null) to = copyBytes(format.nullMarker, 0, format.nullMarker.length, out, to);
      else if (csv) to = writeCsvField(value, format, quoted[i]!, out, to);
      else to = writeTextField(value, format.delimiter, out, to);
      from = fieldEnds[index]!;
    }
    copyBytes(frame, from, frame.length, out, to);
    return out;
  }

  private maskText(frame: Buffer, start: number, end: number, rewrite: CopyRewrite): Buffer | null {
    if (!hasBackslash(frame, start, end)) return maskAt(frame, start, end, rewrite);
    const into = scratchFor(end - start);
    return maskAt(into, 0, decodeTextField(frame, start, end, into), rewrite);
  }

  private maskCsv(
    frame: Buffer,
    start: number,
    end: number,
    isQuoted: boolean,
    rewrite: CopyRewrite,
  ): Buffer | null {
    if (!isQuoted) return maskAt(frame, start, end, rewrite);
    const into = scratchFor(end - start);
    const length = decodeCsvField(frame, start, end, this.format.escape, into);
    return length < 0 ? maskAt(frame, start + 1, end - 1, rewrite) : maskAt(into, 0, length, rewrite);
  }

  /**
   * A binary CopyData: the file header first (in the first one), then a
   * tuple (int16 field count, each field an int32 length, -1 for NULL, and
   * its bytes) or the trailer (a count of -1).
   */
  private binaryRow(frame: Buffer): Buffer {
    const end = frame.length;
    if (this.ended) throw new UnreadableCopyRow('a binary COPY goes on after its trailer');
    let at = 5;
    if (this.headerPending) {
      at = binaryHeaderEnd(frame, at, end);
      this.headerPending = false;
      if (at === end) return frame;
    }
    if (end - at < 2) throw new UnreadableCopyRow('a binary COPY tuple is cut short');
    const fields = frame.readInt16BE(at);
    if (fields === -1) {
      if (at + 2 !== end) throw new UnreadableCopyRow('a binary COPY goes on after its trailer');
      this.ended = true;
      return frame;
    }
    if (fields !== this.columns)
      throw new UnreadableCopyRow(`a binary COPY tuple has ${fields} fields for ${this.columns} columns`);
    this.rows++;
    at += 2;
    const { rewrites } = this;
    let size = end;
    let next = 0;
    for (let column = 0; column < fields; column++) {
      if (end - at < 4) throw new UnreadableCopyRow('a binary COPY field is cut short');
      const length = frame.readInt32BE(at);
      const fieldEnd = length < 0 ? at + 4 : at + 4 + length;
      if (length < -1 || fieldEnd > end) throw new UnreadableCopyRow('a binary COPY field is cut short');
      const rewrite = rewrites[next];
      if (rewrite?.index === column) {
        const value = length < 0 ? null : maskAt(frame, at + 4, fieldEnd, rewrite);
        fieldStarts[next] = at;
        fieldEnds[next] = fieldEnd;
        replacements[next] = value;
        size += (value === null ? 0 : value.length) - Math.max(length, 0);
        next++;
      }
      at = fieldEnd;
    }
    if (at !== end) throw new UnreadableCopyRow('a binary COPY row holds more than one tuple');
    return spliceValues(frame, size, next, fieldStarts, fieldEnds, replacements);
  }
}
