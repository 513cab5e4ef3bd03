/**
 * The shape of a SQL text: numbers become `?`, string literals and
 * dollar-quoted strings `'?'` (a name before a string makes a typed
 * constant, `date '2026-01-01'`, where a number would be a syntax error); everything else (keywords, names, comments with their
 * sqlcommenter tags, spacing) is kept. Texts with the same shape have the
 * same analysis, so the cache keys on it and traffic where only constants
 * change (pgbench, ORMs with inlined values) is parsed once per shape.
 *
 * Getting a literal's end wrong would let two different statements share
 * one analysis, so anything this scanner does not read with certainty gives
 * up (returns undefined) and the caller keys on the exact text instead:
 * backslashes in strings (E'' strings, standard_conforming_strings off),
 * quotes right after a name character (E'', U&'', B'', X''), unterminated
 * literals or comments, and numbers glued to a name.
 */
export function shapeOf(sql: string): string | undefined {
  let out = '';
  let copied = 0; // sql[copied, i) is still to be copied as is
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === QUOTE) {
      if (i > 0 && isNameChar(sql.charCodeAt(i - 1))) return undefined;
      const end = stringEnd(sql, i + 1);
      if (end < 0) return undefined;
      out += `${sql.slice(copied, i)}'?'`;
      i = copied = end;
    } else if (c === DOUBLE_QUOTE) {
      const end = sql.indexOf('"', i + 1);
      if (end < 0) return undefined;
      i = end + 1; // "" inside a name is two adjacent names to this loop: still copied as is
    } else if (c === DASH && sql.charCodeAt(i + 1) === DASH) {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? n : end + 1;
    } else if (c === SLASH && sql.charCodeAt(i + 1) === STAR) {
      const end = commentEnd(sql, i + 2);
      if (end < 0) return undefined;
      i = end;
    } else if (c === DOLLAR && !(i > 0 && isNameChar(sql.charCodeAt(i - 1)))) {
      if (isDigit(sql.charCodeAt(i + 1))) {
        i += 2; // a parameter, $1: kept
        while (i < n && isDigit(sql.charCodeAt(i))) i++;
        continue;
      }
      const tagEnd = sql.indexOf('$', i + 1);
      if (tagEnd < 0) return undefined;
      const tag = sql.slice(i, tagEnd + 1);
      if (!/^\$([A-Za-z_\u0080-\uffff][\w\u0080-\uffff]*)?\$$/.test(tag)) return undefined;
      const close = sql.indexOf(tag, tagEnd + 1);
      if (close < 0) return undefined;
      out += `${sql.slice(copied, i)}'?'`;
      i = copied = close + tag.length;
    } else if (isDigit(c) && !(i > 0 && isNameChar(sql.charCodeAt(i - 1)))) {
      let j = i;
      while (j < n && isDigit(sql.charCodeAt(j))) j++;
      if (sql.charCodeAt(j) === DOT) {
        j++;
        while (j < n && isDigit(sql.charCodeAt(j))) j++;
      }
      const e = sql.charCodeAt(j);
      if (e === 0x65 || e === 0x45) {
        j++;
        if (sql.charCodeAt(j) === PLUS || sql.charCodeAt(j) === DASH) j++;
        if (!isDigit(sql.charCodeAt(j))) return undefined;
        while (j < n && isDigit(sql.charCodeAt(j))) j++;
      }
      // 0x1F, 1_000, 12abc: forms this scanner leaves to the parser.
      if (j < n && (isNameChar(sql.charCodeAt(j)) || sql.charCodeAt(j) === DOT)) return undefined;
      out += `${sql.slice(copied, i)}?`;
      i = copied = j;
    } else if (isNameChar(c)) {
      i++;
      while (i < n && isNameChar(sql.charCodeAt(i))) i++;
    } else {
      i++;
    }
  }
  return out + sql.slice(copied);
}

const QUOTE = 0x27;
const DOUBLE_QUOTE = 0x22;
const DASH = 0x2d;
const SLASH = 0x2f;
const STAR = 0x2a;
const DOLLAR = 0x24;
const DOT = 0x2e;
const PLUS = 0x2b;

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** Characters of an unquoted name (PostgreSQL allows $ after the first, and any non-ASCII). */
function isNameChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) ||
    isDigit(c) ||
    c === 0x5f ||
    c === DOLLAR ||
    c >= 0x80
  );
}

/** The offset after a standard string's closing quote ('' is a quote inside), or -1. */
function stringEnd(sql: string, from: number): number {
  let i = from;
  for (;;) {
    const close = sql.indexOf("'", i);
    if (close < 0) return -1;
    const backslash = sql.indexOf('\\', i);
    if (backslash >= 0 && backslash < close) return -1;
    if (sql.charCodeAt(close + 1) === QUOTE) {
      i = close + 2;
      continue;
    }
    return close + 1;
  }
}

/** The offset after a block comment that started before `from` (comments nest), or -1. */
function commentEnd(sql: string, from: number): number {
  let depth = 1;
  let i = from;
  while (i < sql.length) {
    if (sql.charCodeAt(i) === SLASH && sql.charCodeAt(i + 1) === STAR) {
      depth++;
      i += 2;
    } else if (sql.charCodeAt(i) === STAR && sql.charCodeAt(i + 1) === SLASH) {
      depth--;
      i += 2;
      if (depth === 0) return i;
    } else i++;
  }
  return -1;
}
