import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { analyse, loadParser } from '../../src/sql/analysis.ts';
import { shapeOf } from '../../src/sql/shape.ts';

describe('the shape of a SQL text', { timeout: 60_000 }, () => {
  it('replaces numbers, strings and dollar-quoted strings, and keeps names, parameters and comments', () => {
    assert.equal(
      shapeOf(
        `SELECT a1, "x'1" FROM t2 WHERE id = 42 AND name = 'O''Brien' AND v > 1.5e-3 AND p = $1 /* app='x' */`,
      ),
      `SELECT a1, "x'1" FROM t2 WHERE id = ? AND name = '?' AND v > ? AND p = $1 /* app='x' */`,
    );
    assert.equal(shapeOf('DO $body$ BEGIN PERFORM 1; END $body$'), "DO '?'");
    // A typed constant and a syntax error must not share a shape.
    assert.notEqual(shapeOf("SELECT date '2026-01-01'"), shapeOf('SELECT date 5'));
    assert.equal(shapeOf("SELECT 1 -- it's fine\nFROM t"), "SELECT ? -- it's fine\nFROM t");
  });

  it('gives up on anything it cannot read with certainty', () => {
    for (const sql of [
      "SELECT E'\\''",
      "SELECT 'a\\'' ",
      "SELECT U&'d\\0061t'",
      "SELECT 'unterminated",
      'SELECT /* unterminated',
      'SELECT 0x1F',
      'SELECT 1_000',
      'SELECT $a$ unterminated',
    ]) {
      assert.equal(shapeOf(sql), undefined, sql);
    }
  });

  it('never gives two texts the same shape when the parser reads them differently', async () => {
    await loadParser();
    // A text and a twin with every literal slot filled differently: same shape must mean same analysis.
    const literal = fc.constantFrom(
      '1',
      '2.5',
      '0',
      "'a'",
      "'b''c'",
      "'--'",
      "'/*'",
      '$$x$$',
      '$t$ y $t$',
      "''",
    );
    const code = fc.constantFrom(
      'SELECT ',
      'DELETE FROM t ',
      'WHERE ',
      'id',
      ' = ',
      '--c\n',
      '/* z */',
      ' ',
      ';',
      ',',
      '"q"',
      'E',
      'e',
      '$1',
      '*/',
      'x1',
      '(',
      ')',
      ' AND ',
      'true',
      'UPDATE t SET a = ',
      'SET search_path = ',
    );
    const slot = fc.oneof(
      code.map((text) => [text, text] as const),
      fc.tuple(literal, literal),
    );
    const twins = fc
      .array(slot, { maxLength: 14 })
      .map((slots) => [slots.map(([a]) => a).join(''), slots.map(([, b]) => b).join('')]);
    const parsed = (sql: string) => {
      try {
        return JSON.stringify(
          analyse(sql).statements.map(({ text: _text, settingValue: _value, ...rest }) => rest),
        );
      } catch {
        return 'syntax error';
      }
    };
    fc.assert(
      fc.property(twins, ([a, b]) => {
        const shapeA = shapeOf(a!);
        if (shapeA === undefined || shapeA !== shapeOf(b!)) return;
        assert.equal(parsed(a!), parsed(b!), `${a} | ${b}`);
      }),
      { numRuns: 5000 },
    );
  });
});
