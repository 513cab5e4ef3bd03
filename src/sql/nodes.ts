/**
 * Reading libpg-query's JSON parse tree: a node is an object with one key,
 * its type name (`{ "ColumnRef": { ... } }`); name lists are String nodes.
 */
export type Node = Record<string, unknown>;

/** A node's type and body, or undefined for anything that is not a wrapped node. */
export function nodeOf(value: unknown): [string, Node] | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const keys = Object.keys(value);
  if (keys.length !== 1) return undefined;
  const type = keys[0]!;
  if (!/^[A-Z]/.test(type)) return undefined;
  return [type, (value as Node)[type] as Node];
}

/** The names of a name list (`schema.table`, a ColumnRef's fields); `*` for A_Star. */
export function stringsOf(list: unknown): string[] {
  if (!Array.isArray(list)) return [];
  return list.flatMap((item) => {
    const node = nodeOf(item);
    if (node?.[0] === 'String') return [String(node[1].sval)];
    if (node?.[0] === 'A_Star') return ['*'];
    return [];
  });
}
