import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ERROR_CODES } from '../src/errors.ts';

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? sources(join(dir, entry.name))
      : entry.name.endsWith('.ts')
        ? [join(dir, entry.name)]
        : [],
  );
}

describe('the error code registry', () => {
  const used = new Set<string>();
  for (const file of sources('src')) {
    if (file === join('src', 'errors.ts')) continue;
    for (const match of readFileSync(file, 'utf8').matchAll(
      /['"`]((?:WARDEN_ERR|EMBEDDED_PG)_[A-Z_]+)['"`]/g,
    ))
      used.add(match[1]!);
  }

  it('documents every code used in src/', () => {
    const undocumented = [...used].filter((code) => !(code in ERROR_CODES));
    assert.deepEqual(undocumented, []);
  });

  it('lists no code that nothing uses', () => {
    const stale = Object.keys(ERROR_CODES).filter((code) => !used.has(code));
    assert.deepEqual(stale, []);
  });

  it('says what each code means in a full sentence', () => {
    for (const [code, text] of Object.entries(ERROR_CODES)) assert.match(text, /^[A-Za-z"].{20,}\.$/s, code);
  });
});
