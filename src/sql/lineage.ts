/**
 * What a statement's result columns are made of, read from the parse tree:
 * for each column the statement lists (its select list, or RETURNING), the
 * column references its value is computed from. Plain data, resolved later
 * against a catalog and a classification (src/masking).
 *
 * Deliberately coarse where precision would need a catalog: an expression's
 * references include everything inside it (function arguments, CASE,
 * scalar subqueries), and the select lists of subqueries and CTEs are
 * listed as `derived` columns, so an outer reference to one of their names
 * can be followed. Whole rows (`t`, `t.*`, `row_to_json(t)`) are refs that
 * end in `*` or name a relation of the statement.
 */

import { type Node, stringsOf } from './nodes.ts';

export interface OutputColumn {
  /** The name the column gets (its alias, the column's own name, or `?column?`). */
  readonly name: string;
  /** `*` or `t.*` in a select list: it stands for many result columns. */
  readonly star: boolean;
  /** Column references as written: `email`, `c.email`, `c.*`, `*`, or a relation name `c`. */
  readonly refs: readonly string[];
}

export interface Lineage {
  /** The result's columns as the statement lists them (set operations: per position, both sides' refs). */
  readonly outputs: readonly OutputColumn[];
  /** The select lists of every subquery and CTE in the statement, which outer references may name. */
  readonly derived: readonly OutputColumn[];
  /** Names and aliases of the relations in FROM clauses: such a name used as a value is a whole row. */
  readonly relations: readonly string[];
}

/** The lineage of a statement that returns rows from a query (SELECT, RETURNING, CTAS, DECLARE); else undefined. */
export function lineageOf(command: string, body: Node): Lineage | undefined {
  let top: unknown;
  switch (command) {
    case 'SelectStmt':
      top = body;
      break;
    case 'DeclareCursorStmt':
      top = unwrap(body.query);
      break;
    case 'CreateTableAsStmt':
      top = unwrap(body.query);
      break;
    case 'InsertStmt':
    case 'UpdateStmt':
    case 'DeleteStmt':
    case 'MergeStmt':
      break;
    default:
      return undefined;
  }
  const derived: OutputColumn[] = [];
  const relations = new Set<string>();
  collect(body, top ?? body, derived, relations);
  let outputs: OutputColumn[];
  if (top !== undefined) {
    outputs = selectOutputs(top as Node);
  } else {
    const returning = (body.returningClause as Node | undefined)?.exprs ?? body.returningList;
    outputs = targetsOf(returning);
  }
  return { outputs, derived, relations: [...relations] };
}

function unwrap(value: unknown): Node | undefined {
  const node = value as Node | undefined;
  return (node?.SelectStmt as Node | undefined) ?? undefined;
}

/** A SELECT's columns; a set operation's are its left side's names with both sides' refs per position. */
function selectOutputs(select: Node): OutputColumn[] {
  if (select.op !== undefined && select.op !== 'SETOP_NONE') {
    const left = selectOutputs(select.larg as Node);
    const right = selectOutputs(select.rarg as Node);
    if (left.some((c) => c.star) || right.some((c) => c.star) || left.length !== right.length) {
      // Positions cannot be paired without expanding the stars: every column may hold any side's values.
      const refs = [...left, ...right].flatMap((c) => (c.star ? [starRef(c)] : c.refs));
      return left.map((c) => ({ name: c.name, star: c.star, refs }));
    }
    return left.map((c, i) => ({ name: c.name, star: false, refs: [...c.refs, ...right[i]!.refs] }));
  }
  if (Array.isArray(select.valuesLists)) {
    const rows = select.valuesLists.map((row) => ((row as Node).List as Node | undefined)?.items ?? []);
    const width = Math.max(0, ...rows.map((row) => (row as unknown[]).length));
    return Array.from({ length: width }, (_, i) => ({
      name: `column${i + 1}`,
      star: false,
      refs: rows.flatMap((row) => refsIn((row as unknown[])[i])),
    }));
  }
  return targetsOf(select.targetList);
}

function starRef(column: OutputColumn): string {
  return column.refs[0] ?? '*';
}

function targetsOf(list: unknown): OutputColumn[] {
  if (!Array.isArray(list)) return [];
  return list.map((item) => {
    const target = (item as Node).ResTarget as Node;
    const value = target.val as Node | undefined;
    const column = value?.ColumnRef as Node | undefined;
    const fields = column ? stringsOf(column.fields) : undefined;
    if (fields?.at(-1) === '*') return { name: '*', star: true, refs: [fields.join('.')] };
    const name =
      typeof target.name === 'string' ? target.name : (fields?.at(-1) ?? functionName(value) ?? '?column?');
    return { name, star: false, refs: refsIn(value) };
  });
}

function functionName(value: Node | undefined): string | undefined {
  const call = value?.FuncCall as Node | undefined;
  return call ? stringsOf(call.funcname).at(-1) : undefined;
}

/** Every column reference inside an expression, subqueries included. */
function refsIn(value: unknown, into: string[] = []): string[] {
  if (Array.isArray(value)) {
    for (const item of value) refsIn(item, into);
    return into;
  }
  if (value === null || typeof value !== 'object') return into;
  for (const [key, inner] of Object.entries(value)) {
    if (key === 'ColumnRef') into.push(stringsOf((inner as Node).fields).join('.'));
    else refsIn(inner, into);
  }
  return into;
}

/** The select lists of every SELECT below the top one, and the names of relations in FROM clauses. */
function collect(value: unknown, top: unknown, derived: OutputColumn[], relations: Set<string>): void {
  if (Array.isArray(value)) {
    for (const item of value) collect(item, top, derived, relations);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  for (const [key, inner] of Object.entries(value)) {
    if (inner === null || typeof inner !== 'object') continue;
    const node = inner as Node;
    // Subqueries, CTEs and sublinks wrap their body in SelectStmt; set operations' sides are bare.
    if ((key === 'SelectStmt' || key === 'larg' || key === 'rarg') && node !== top) {
      if (node.targetList || node.valuesLists) derived.push(...selectOutputs(node));
    }
    if (key === 'RangeVar' || key === 'relation') {
      if (typeof node.relname === 'string') relations.add(node.relname);
    }
    if (key === 'alias' && typeof node.aliasname === 'string') relations.add(node.aliasname);
    if (key === 'CommonTableExpr' && typeof node.ctename === 'string') relations.add(node.ctename);
    collect(inner, top, derived, relations);
  }
}
