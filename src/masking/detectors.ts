/**
 * Content detectors for free text: where in a string an email, a card
 * number, an SSN, a phone number, an IBAN, an IP address, a JWT, a
 * well-known API key or a PEM private key is. The `detect` strategy replaces
 * what they find; nothing here does I/O or knows about columns.
 *
 * Two rules shape every detector:
 * - A candidate never starts or ends inside a longer word or number (the
 *   look-behind / look-ahead on each pattern), and a checksum or structure
 *   check (Luhn, mod-97, SSN ranges, isIP, a JWT header) confirms it where
 *   one exists, so order ids and random digit runs stay as they are.
 * - Column values are attacker-controlled text, so every pattern is
 *   linear-time: no nested or adjacent quantifiers that can split the same
 *   characters two ways, and each pattern's look-behind lets a match start
 *   only once per run of the characters it is made of.
 */
import { isIP } from 'node:net';

export type DetectorKind =
  | 'email'
  | 'card'
  | 'national_id'
  | 'phone'
  | 'iban'
  | 'ip'
  | 'jwt'
  | 'api_key'
  | 'private_key';

/** A span of the text: UTF-16 offsets, `end` exclusive. */
export interface Finding {
  readonly kind: DetectorKind;
  readonly start: number;
  readonly end: number;
}

type Span = readonly [start: number, end: number];

interface Detector {
  readonly kind: DetectorKind;
  /** Candidate spans, confirmed; they may overlap each other and other detectors' spans. */
  readonly find: (text: string) => Iterable<Span>;
}

/**
 * Every finding in `text`, sorted by start and non-overlapping: of two
 * overlapping findings the longer one is kept, of two as long the earlier
 * one, of two identical spans the one of the detector listed first.
 */
export function detect(text: string): Finding[] {
  const candidates: (Finding & { readonly rank: number })[] = [];
  DETECTORS.forEach(({ kind, find }, rank) => {
    for (const [start, end] of find(text)) candidates.push({ kind, start, end, rank });
  });
  candidates.sort((a, b) => b.end - b.start - (a.end - a.start) || a.start - b.start || a.rank - b.rank);
  // Marking taken characters costs the length of each candidate, and candidates
  // are (nearly) disjoint per detector, so this stays linear in the text.
  const taken = new Uint8Array(text.length);
  const findings: Finding[] = [];
  for (const { kind, start, end } of candidates) {
    if (taken.subarray(start, end).includes(1)) continue;
    taken.fill(1, start, end);
    findings.push({ kind, start, end });
  }
  return findings.sort((a, b) => a.start - b.start);
}

/** The Luhn checksum of a string of digits (the last one being the check digit). */
export function luhnValid(digits: string): boolean {
  if (!/^\d+$/.test(digits)) return false;
  let sum = 0;
  for (let i = digits.length - 1, double = false; i >= 0; i--, double = !double) {
    let digit = Number(digits[i]);
    if (double) digit = digit * 2 > 9 ? digit * 2 - 9 : digit * 2;
    sum += digit;
  }
  return sum % 10 === 0;
}

/**
 * A US Social Security number that could have been issued: `AAA-GG-SSSS` or
 * nine digits, area not 000, 666 or 900-999, group not 00, serial not 0000
 * (SSA rules since 2011 randomisation; 9xx is reserved for ITINs).
 */
export function ssnValid(ssn: string): boolean {
  const parts = /^(\d{3})-(\d{2})-(\d{4})$/.exec(ssn) ?? /^(\d{3})(\d{2})(\d{4})$/.exec(ssn);
  if (parts === null) return false;
  const area = parts[1]!;
  return area !== '000' && area !== '666' && area[0] !== '9' && parts[2] !== '00' && parts[3] !== '0000';
}

/**
 * An IBAN (ISO 13616): country code, two check digits and 11 to 30 letters or
 * digits, 15 to 34 in all, spaces allowed; valid when the number made of the
 * first four characters moved to the end, letters read as 10..35, is 1 mod 97.
 */
export function ibanValid(iban: string): boolean {
  const compact = iban.replaceAll(' ', '');
  if (!/^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$/.test(compact)) return false;
  let remainder = 0;
  for (const char of compact.slice(4) + compact.slice(0, 4)) {
    const value = Number.parseInt(char, 36); // '0'..'9' → 0..9, 'A'..'Z' → 10..35
    remainder = (remainder * (value < 10 ? 10 : 100) + value) % 97;
  }
  return remainder === 1;
}

/** Spans of every match of a global pattern that `confirm` accepts (all of them without it). */
function* spans(pattern: RegExp, text: string, confirm?: (match: string) => boolean): Iterable<Span> {
  for (const match of text.matchAll(pattern)) {
    if (confirm === undefined || confirm(match[0])) yield [match.index, match.index + match[0].length];
  }
}

// A local part, then dot-separated labels (each 1..63 characters, not starting or ending in '-') and a
// letters-only top-level domain. Each repetition of a label starts after a '.', so labels cannot be split
// two ways. A trailing '.' ends the sentence, not the address.
const EMAIL =
  /(?<![\p{L}\p{N}_.%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\p{L}\p{N}_-]|\.[\p{L}\p{N}])/gu;

// Digit groups joined by single spaces or dashes: where a card number can be. Which groups form the card
// is decided by Luhn below, so a card followed by "exp 12 25" is still found.
const DIGIT_RUN = /(?<![\p{L}\p{N}_])\d+(?:[ -]\d+)*(?![\p{L}\p{N}_])/gu;
const DIGIT_GROUP = /\d+/g;

/**
 * Card numbers: 13 to 19 digits made of whole groups of a digit run, Luhn
 * valid. For each group, the longest valid card starting there is a candidate.
 */
function* cards(text: string): Iterable<Span> {
  for (const run of text.matchAll(DIGIT_RUN)) {
    const groups = [...run[0].matchAll(DIGIT_GROUP)];
    for (let first = 0; first < groups.length; first++) {
      let digits = '';
      let found: Span | undefined;
      for (let last = first; last < groups.length; last++) {
        const group = groups[last]!;
        digits += group[0];
        if (digits.length > 19) break;
        if (digits.length >= 13 && luhnValid(digits)) {
          found = [run.index + groups[first]!.index, run.index + group.index + group[0].length];
        }
      }
      if (found !== undefined) yield found;
    }
  }
}

// AAA-GG-SSSS, or nine digits that are not part of a longer number (or of a dashed one).
const SSN = /(?<![\p{L}\p{N}_]|\d-)(?:\d{3}-\d{2}-\d{4}|\d{9})(?![\p{L}\p{N}_]|-\d)/gu;

// E.164: '+', the country code and the rest in groups separated by one space, '.' or '-', with at most
// one parenthesised group ("+44 (0)20 7946 0958"). Every group after the first needs its separator, so
// digits cannot be regrouped. The digit count (8..15) is checked after.
const PHONE_INTERNATIONAL =
  /(?<![\p{L}\p{N}_+])\+\d+(?:[ .-]?\(\d+\)[ .-]?\d+)?(?:[ .-]\d+)*(?![\p{L}\p{N}_])/gu;
// National forms: (555) 123-4567, and 555-123-4567 / 555.123.4567 / 555 123 4567 with one separator
// throughout. A bare run of digits is never a phone: it is as likely an order id or an amount.
const PHONE_PARENTHESISED = /(?<![\p{L}\p{N}_])\(\d{3}\) ?\d{3}[ .-]\d{4}(?![\p{L}\p{N}_]|[.-]\d)/gu;
const PHONE_SEPARATED = /(?<![\p{L}\p{N}_]|\d[.-])\d{3}([ .-])\d{3}\1\d{4}(?![\p{L}\p{N}_]|[.-]\d)/gu;

const digitCount = (text: string): number => text.replace(/\D/g, '').length;

function* phones(text: string): Iterable<Span> {
  yield* spans(PHONE_INTERNATIONAL, text, (match) => {
    const digits = digitCount(match);
    return digits >= 8 && digits <= 15;
  });
  yield* spans(PHONE_PARENTHESISED, text);
  yield* spans(PHONE_SEPARATED, text);
}

// Compact or printed in groups of four; the pattern may run on into a following upper-case word or number
// ("DE89 3704 0044 0532 0130 00 REF 12"), so a candidate that fails the checksum is retried without its
// last space-separated group.
const IBAN = /(?<![\p{L}\p{N}_])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![\p{L}\p{N}_])/gu;

function* ibans(text: string): Iterable<Span> {
  for (const match of text.matchAll(IBAN)) {
    for (let candidate = match[0]; candidate.replaceAll(' ', '').length >= 15; ) {
      if (ibanValid(candidate)) {
        yield [match.index, match.index + candidate.length];
        break;
      }
      const space = candidate.lastIndexOf(' ');
      if (space < 0) break;
      candidate = candidate.slice(0, space);
    }
  }
}

// Four dotted numbers, not part of a longer dotted sequence (a version such as 1.2.3.4.5, or 999.1.1.1).
const IPV4 = /(?<![\p{L}\p{N}_.])(?:\d{1,3}\.){3}\d{1,3}(?![\p{L}\p{N}_]|\.\d)/gu;
// A run of hex digits, colons and dots (dots for an embedded IPv4); isIP decides.
const IPV6_CANDIDATE = /(?<![\p{L}\p{N}_:.])[0-9A-Fa-f:][0-9A-Fa-f:.]*[0-9A-Fa-f:](?![\p{L}\p{N}_:])/gu;
const MAX_IPV6_LENGTH = 45; // ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255

function* ips(text: string): Iterable<Span> {
  yield* spans(IPV4, text, (match) => match.split('.').every((octet) => Number(octet) <= 255));
  // A bare "::" is valid IPv6 but in prose it is punctuation (Foo::bar, a :: b): require a hex digit.
  yield* spans(
    IPV6_CANDIDATE,
    text,
    (match) => match.length <= MAX_IPV6_LENGTH && /[0-9A-Fa-f]/.test(match) && isIP(match) === 6,
  );
}

// header.payload.signature, base64url; the signature is empty for alg "none".
const JWT = /(?<![\p{L}\p{N}_.-])[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*(?![\p{L}\p{N}_-])/gu;

/** A JWT's first part is a JSON object naming its algorithm; dotted names and versions are not. */
function hasJwtHeader(token: string): boolean {
  const header = Buffer.from(token.slice(0, token.indexOf('.')), 'base64url').toString('utf8');
  if (!header.trimStart().startsWith('{')) return false;
  try {
    const parsed: unknown = JSON.parse(header);
    return typeof (parsed as { alg?: unknown }).alg === 'string';
  } catch {
    return false; // not JSON: not a JWT (the text is anyone's, a parse error is an answer, not a fault)
  }
}

// Fixed prefixes that their issuers chose so that leaked keys can be found: AWS access key ids, GitHub
// tokens (classic ghp_/gho_/ghu_/ghs_/ghr_ and fine-grained github_pat_), Slack, Stripe live secret and
// restricted keys, Google API keys. Lengths are bounded so a failed look-ahead backtracks a bounded way.
const API_KEY = new RegExp(
  String.raw`(?<![\p{L}\p{N}_-])(?:` +
    [
      '(?:AKIA|ASIA)[A-Z0-9]{16}',
      'gh[pousr]_[A-Za-z0-9]{36,251}',
      'github_pat_[A-Za-z0-9_]{22,244}',
      'xox[abprs]-[A-Za-z0-9-]{10,250}',
      '[sr]k_live_[A-Za-z0-9]{24,247}',
      'AIza[A-Za-z0-9_-]{35}',
    ].join('|') +
    String.raw`)(?![\p{L}\p{N}_-])`,
  'gu',
);

// The label ("RSA ", "OPENSSH ", "ENCRYPTED ", "PGP ... BLOCK") must be the same on both lines.
const PEM_BEGIN = /-----BEGIN ((?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?)-----/g;
const PEM_END = /-----END ((?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?)-----/g;

/**
 * PEM private keys, BEGIN line through the matching END line. All END lines
 * are collected first and each label's are consumed in order, so many BEGIN
 * lines cannot each rescan the text for an END. A BEGIN without an END (a
 * value cut short) runs to the end of the text: the key material is there.
 */
function* privateKeys(text: string): Iterable<Span> {
  const ends = new Map<string, { positions: number[]; next: number }>();
  for (const match of text.matchAll(PEM_END)) {
    const label = match[1]!;
    const entry = ends.get(label) ?? { positions: [], next: 0 };
    entry.positions.push(match.index + match[0].length);
    ends.set(label, entry);
  }
  let blockEnd = 0;
  for (const begin of text.matchAll(PEM_BEGIN)) {
    if (begin.index < blockEnd) continue; // inside the previous block
    const entry = ends.get(begin[1]!);
    const bodyStart = begin.index + begin[0].length;
    // END lines before this BEGIN closed an earlier block, or nothing.
    while (entry !== undefined && (entry.positions[entry.next] ?? Number.POSITIVE_INFINITY) <= bodyStart)
      entry.next++;
    blockEnd = entry?.positions[entry.next] ?? text.length;
    yield [begin.index, blockEnd];
  }
}

/** In order of preference when two detectors find exactly the same span. */
const DETECTORS: readonly Detector[] = [
  { kind: 'private_key', find: privateKeys },
  { kind: 'jwt', find: (text) => spans(JWT, text, hasJwtHeader) },
  { kind: 'api_key', find: (text) => spans(API_KEY, text) },
  { kind: 'email', find: (text) => spans(EMAIL, text) },
  { kind: 'iban', find: ibans },
  { kind: 'card', find: cards },
  { kind: 'national_id', find: (text) => spans(SSN, text, ssnValid) },
  { kind: 'phone', find: phones },
  { kind: 'ip', find: ips },
];
