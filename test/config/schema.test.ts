import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import * as z from 'zod';
import { CONFIG_ERROR_CODE, ConfigError, configSchema } from '../../src/config/index.ts';
import { schemaAt } from '../../src/config/schema.ts';

const options = { timeout: 10000 };

/** Every path in the schema a value can sit at, with `0` for list items and `*` for map values. */
function allPaths(schema: z.ZodType, path: (string | number)[] = []): (string | number)[][] {
  let inner: z.ZodType = schema;
  while (inner instanceof z.ZodDefault || inner instanceof z.ZodPrefault || inner instanceof z.ZodOptional) {
    inner = inner.unwrap() as z.ZodType;
  }
  const below =
    inner instanceof z.ZodObject
      ? Object.entries(inner.shape).flatMap(([key, child]) => allPaths(child as z.ZodType, [...path, key]))
      : inner instanceof z.ZodArray
        ? allPaths(inner.element as z.ZodType, [...path, 0])
        : inner instanceof z.ZodRecord
          ? allPaths(inner.valueType as z.ZodType, [...path, '*'])
          : [];
  return [path, ...below];
}

describe('the config schema', () => {
  it('documents every field: what it expects and what to write', options, () => {
    const paths = allPaths(configSchema);
    assert.ok(paths.length > 40, `walked ${paths.length} paths`);
    for (const path of paths) {
      const { doc } = schemaAt(path);
      assert.ok(doc !== undefined, `no field doc at ${path.join('.') || '(root)'}`);
      assert.ok(
        doc.expected.length > 0 && /^(write|add|quote)\b/.test(doc.fix),
        `${path.join('.')}: ${doc.fix}`,
      );
    }
  });

  it('documents its error code', options, async () => {
    assert.equal(new ConfigError([]).code, CONFIG_ERROR_CODE);
    const source = await readFile(new URL('../../src/config/errors.ts', import.meta.url), 'utf8');
    assert.match(source, new RegExp(`\\* ${CONFIG_ERROR_CODE} — \\S`));
  });
});
