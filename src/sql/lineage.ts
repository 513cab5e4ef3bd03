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
 *
 * COPY ... TO writes rows too: `COPY (query)` the query's columns, `COPY t
 * (a, b)` the listed columns of t, `COPY t` all of them (a `*`). Its lineage
 * also says where the rows go and its options as written, which decide how
 * they are written (src/masking/copy.ts reads them).
 */

import { type Node, nodeOf, stringsOf } from './nodes.ts';

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
  /** COPY ... TO: where the rows go and how they are written. */
  readonly copy?: CopyOut;
}

export interface CopyOut {
  /** `stdout`: back to the client, on the connection; `file` and `program`: on the server. */
  readonly to: 'stdout' | 'file' | 'program';
  /** `COPY table`: the table as written; undefined for `COPY (query)`. */
  readonly relation: { readonly schema: string | undefined; readonly name: string } | undefined;
  /** `COPY (query)`: the query's statement (SelectStmt, or a write with RETURNING). */
  readonly query: string | undefined;
  /** The options in the order written, by the parser's (lower case) names. */
  readonly options: readonly CopyOption[];
}

export interface CopyOption {
  readonly name: string;
  /**
   * As the parser gives it: a word or a string (`csv`, `';'`; `*` for
   * FORCE_QUOTE *), an integer, a boolean (`CSV HEADER`), a list of column
   * names, or undefined for an option written without a value (`HEADER`).
   */
  readonly value: string | number | boolean | readonly string[] | undefined;
}

/** The lineage of a statement that returns rows from a query (SELECT, RETURNING, CTAS, DECLARE, COPY TO); else undefined. */
export function lineageOf(command: string, body: Node): Lineage | undefined {
  let top: unknown;
  switch (command) {
    case 'CopyStmt':
      return copyLineage(body);
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

/** COPY ... TO (COPY FROM returns no rows: undefined). */
function copyLineage(body: Node): Lineage | undefined {
  if (body.is_from) return undefined;
  const to = body.is_program ? 'program' : typeof body.filename === 'string' ? 'file' : 'stdout';
  const options = copyOptions(body.options);
  const query = nodeOf(body.query);
  if (query !== undefined) {
    const [command, inner] = query;
    const copy: CopyOut = { to, relation: undefined, query: command, options };
    // A query whose columns are not read here may hold anything its tables hold: a whole row of them.
    const lineage = lineageOf(command, inner) ?? {
      outputs: [{ name: '?column?', star: true, refs: ['*'] }],
      derived: [],
      relations: [],
    };
    return { ...lineage, copy };
  }
  // `relation` holds the RangeVar's body, without the {"RangeVar": ...} wrapper.
  const relation = (body.relation ?? {}) as Node;
  const name = String(relation.relname);
  const schema = typeof relation.schemaname === 'string' ? relation.schemaname : undefined;
  const columns = stringsOf(body.attlist);
  const outputs =
    columns.length > 0
      ? columns.map((column) => ({ name: column, star: false, refs: [`${name}.${column}`] }))
      : [{ name: '*', star: true, refs: [`${name}.*`] }];
  return {
    outputs,
    derived: [],
    relations: [name],
    copy: { to, relation: { schema, name }, query: undefined, options },
  };
}

/** COPY's options (DefElem nodes) as plain data. */
function copyOptions(list: unknown): CopyOption[] {
  if (!Array.isArray(list)) return [];
  return list.flatMap((item) => {
    const node = nodeOf(item);
    if (node?.[0] !== 'DefElem') return [];
    const option = node[1];
    return [{ name: String(option.defname), value: optionValue(option.arg) }];
  });
}

function optionValue(arg: unknown): CopyOption['value'] {
  const node = nodeOf(arg);
  if (node === undefined) return undefined;
  const [type, body] = node;
  switch (type) {
    case 'String':
      return String(body.sval ?? '');
    case 'Integer':
      return Number(body.ival ?? 0); // the parse tree leaves out a zero
    case 'Float':
      return String(body.fval); // read as its text, as PostgreSQL's defGetString does
    case 'Boolean':
      return body.boolval === true;
    case 'A_Star':
      return '*';
    case 'List':
      return stringsOf(body.items);
    default:
      // No COPY option takes another kind (the server refuses it): an empty list, which no option
      // that Warden reads as a word, a number or a boolean accepts.
      return [];
  }
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
