/**
 * From a zod issue to a ConfigIssue a person can act on: the line it is on,
 * what was expected (from the schema's field docs), what was written — never a
 * password or a value from the environment — and what to write instead.
 */
import type { core } from 'zod';
import type { ConfigIssue } from './errors.ts';
import { schemaAt } from './schema.ts';
import { formatPath, nodeAt, positionOf, type Source } from './source.ts';

export function describeIssue(source: Source, data: unknown, issue: core.$ZodIssue): ConfigIssue[] {
  const at = (configPath: readonly PropertyKey[], where: 'value' | 'key' = 'value') => ({
    file: source.file,
    ...positionOf(source, configPath, where),
    path: formatPath(configPath),
  });
  if (issue.code === 'unrecognized_keys') {
    const known = Object.keys((schemaAt(issue.path).schema as { shape?: object } | undefined)?.shape ?? {});
    return issue.keys.map((key) => {
      const suggestion = closest(key, known);
      return {
        ...at([...issue.path, key], 'key'),
        message: `unknown key "${key}"${suggestion === undefined ? '' : ` (did you mean ${suggestion}?)`}`,
        fix:
          suggestion === undefined
            ? `remove ${key}; the keys allowed here are ${known.join(', ')}`
            : `rename ${key} to ${suggestion}`,
      };
    });
  }
  const { doc } = schemaAt(issue.path);
  if (issue.code === 'custom') {
    const fix = (issue.params as { fix?: string } | undefined)?.fix;
    return [
      { ...at(issue.path), message: issue.message, fix: fix ?? doc?.fix ?? 'see the warden.yaml reference' },
    ];
  }
  const value = valueAt(data, issue.path);
  const expected = doc?.expected ?? issue.message;
  if (value === undefined) {
    const key = String(issue.path.at(-1));
    return [
      {
        ...at(issue.path),
        message: `missing "${key}": expected ${expected}`,
        fix: `add ${key}: ${doc?.example ?? '...'}`,
      },
    ];
  }
  return [
    {
      ...at(issue.path),
      message: `expected ${expected}, got ${describeValue(source, issue.path, value)}`,
      fix: doc?.fix ?? 'see the warden.yaml reference',
    },
  ];
}

function valueAt(data: unknown, configPath: readonly PropertyKey[]): unknown {
  return configPath.reduce<unknown>(
    (value, segment) =>
      value !== null && typeof value === 'object'
        ? (value as Record<PropertyKey, unknown>)[segment]
        : undefined,
    data,
  );
}

/** The wrong value as the user wrote it — except passwords and values from the environment. */
function describeValue(source: Source, configPath: readonly PropertyKey[], value: unknown): string {
  const kind =
    value === null
      ? 'an empty value'
      : Array.isArray(value)
        ? 'a list'
        : typeof value === 'object'
          ? 'a mapping'
          : `a ${typeof value}`;
  if (configPath.includes('password')) return `${kind} (not shown)`;
  const node = nodeAt(source, configPath);
  const original = node === undefined ? undefined : source.fromEnv.get(node as never);
  if (original !== undefined) return `${JSON.stringify(original)} (from the environment, not shown)`;
  if (typeof value === 'string')
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return kind;
}

/** The known key a typo most likely meant: edit distance (with transpositions) small for its length. */
function closest(word: string, candidates: readonly string[]): string | undefined {
  const limit = word.length <= 3 ? 1 : word.length <= 6 ? 2 : 3;
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase().replaceAll('_', ''), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = rows[i]!;
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min(rows[i - 1]![j]! + 1, row[j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        row[j] = Math.min(row[j]!, rows[i - 2]![j - 2]! + 1);
      }
    }
  }
  return rows[a.length]![b.length]!;
}
