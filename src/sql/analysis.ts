/**
 * What a piece of SQL does, read from the real PostgreSQL parser
 * (libpg-query): one StatementAnalysis per statement, with its kind, the
 * tables it reads and writes, the columns used per clause, the functions it
 * calls, and the hazards that hide in plain sight (writes inside CTEs,
 * SELECT INTO, COPY PROGRAM, DO blocks, SET ROLE...). Plain data, no policy.
 */
import './baseline-wasm.ts'; // before the parser's WebAssembly is compiled
import { fingerprintSync, loadModule, parseSync } from 'libpg-query';
import { isDangerous, isOpaque } from './functions.ts';
import { type Lineage, lineageOf } from './lineage.ts';
import { type Node, nodeOf, stringsOf } from './nodes.ts';

export type StatementKind =
  | 'read'
  | 'write'
  | 'ddl'
  | 'dcl'
  | 'transaction'
  | 'utility'
  | 'copy'
  | 'call'
  | 'empty';

export type Hazard =
  | 'cte-write' // a data-modifying statement inside WITH
  | 'select-into' // SELECT ... INTO creates a table
  | 'create-table-as'
  | 'copy-program' // COPY ... TO/FROM PROGRAM runs a shell command on the server
  | 'copy-server-file' // COPY ... TO/FROM 'file' on the server's disk
  | 'do-block' // an anonymous code block: its body is not analysed
  | 'opaque-function' // a function whose effect the call does not show
  | 'dangerous-function' // files, other servers, other sessions, settings, SQL in strings
  | 'explain-analyze-write' // EXPLAIN ANALYZE runs the write it explains
  | 'set-role'
  | 'set-session-authorization'
  | 'alter-system'
  | 'load-library'; // LOAD 'library'

export interface TableRef {
  /** As written; undefined when unqualified (search_path decides). */
  readonly schema: string | undefined;
  readonly name: string;
  readonly access: 'read' | 'write';
}

/** Column references as written ("email", "c.email"), by the clause they appear in. */
export interface ClauseColumns {
  readonly select: readonly string[];
  readonly where: readonly string[];
  readonly join: readonly string[];
  readonly groupBy: readonly string[];
  readonly having: readonly string[];
  readonly orderBy: readonly string[];
  readonly returning: readonly string[];
}

export interface StatementAnalysis {
  /** This statement's own text, from the input. */
  readonly text: string;
  /** The parser's node name, e.g. SelectStmt, UpdateStmt, VariableSetStmt. */
  readonly command: string;
  readonly kind: StatementKind;
  readonly tables: readonly TableRef[];
  readonly columns: ClauseColumns;
  /** Called functions, lower case, schema-qualified when written so. */
  readonly functions: readonly string[];
  /** For UPDATE/DELETE: a WHERE clause that is not constant-true. */
  readonly hasWhere: boolean;
  /** Some UPDATE or DELETE in this statement (top level, CTE, PREPARE, EXPLAIN ANALYZE) lacks a real WHERE. */
  readonly unboundedWrite: boolean;
  readonly hasLimit: boolean;
  readonly hazards: readonly Hazard[];
  /** SQL-level PREPARE: the name and what it will run. */
  readonly prepares?: { readonly name: string; readonly statement: StatementAnalysis };
  /** SQL-level EXECUTE of a prepared statement: judged as what that name holds. */
  readonly executes?: string;
  /** DEALLOCATE name, or 'all' for DEALLOCATE ALL and DISCARD ALL. */
  readonly deallocates?: string;
  /** DECLARE name CURSOR: the cursor's name, and whether it outlives its transaction (WITH HOLD). */
  readonly declares?: { readonly name: string; readonly holdable: boolean };
  /** FETCH or MOVE: the cursor it reads, whose rows are what its DECLARE selected. */
  readonly fetches?: string;
  /** CLOSE name; 'all' for CLOSE ALL and DISCARD ALL. */
  readonly closes?: { readonly name: string } | 'all';
  /** SET name (for SET, RESET, SET LOCAL), lower case. */
  readonly setting?: string;
  /** The value SET gives it, as written (names and strings alike); undefined for RESET / DEFAULT. */
  readonly settingValue?: readonly string[];
  /** What the result columns are computed from (statements that return or copy query results). */
  readonly lineage?: Lineage;
}

export interface Analysis {
  readonly statements: readonly StatementAnalysis[];
  /** libpg-query's fingerprint: the same for statements that differ only in constants. */
  readonly fingerprint: string;
}

/** SQL the parser refuses; `position` is 1-based in characters, as PostgreSQL reports it. */
export class SqlSyntaxError extends Error {
  override readonly name = 'SqlSyntaxError';
  readonly sqlstate = '42601';
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(message);
  }
}

let loaded: Promise<void> | undefined;

/** Loads the parser (WebAssembly, a few ms); call once before analyse. */
export function loadParser(): Promise<void> {
  loaded ??= loadModule();
  return loaded;
}

const WRITE_STATEMENTS = new Set(['InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt']);
const DCL_STATEMENTS = new Set([
  'GrantStmt',
  'GrantRoleStmt',
  'CreateRoleStmt',
  'AlterRoleStmt',
  'AlterRoleSetStmt',
  'DropRoleStmt',
  'AlterDefaultPrivilegesStmt',
  'ReassignOwnedStmt',
  'DropOwnedStmt',
  'AlterPolicyStmt',
  'CreatePolicyStmt',
]);
const UTILITY_STATEMENTS = new Set([
  'VariableSetStmt',
  'VariableShowStmt',
  'ExplainStmt',
  'DeallocateStmt',
  'ListenStmt',
  'UnlistenStmt',
  'NotifyStmt',
  'DiscardStmt',
  'LockStmt',
  'VacuumStmt',
  'CheckPointStmt',
  'AlterSystemStmt',
  'LoadStmt',
  'ReindexStmt',
  'ClusterStmt',
  'FetchStmt',
  'ClosePortalStmt',
  'ExecuteStmt',
  'ConstraintsSetStmt',
]);
const DROP_TABLE_LIKE = new Set([
  'OBJECT_TABLE',
  'OBJECT_VIEW',
  'OBJECT_MATVIEW',
  'OBJECT_FOREIGN_TABLE',
  'OBJECT_SEQUENCE',
  'OBJECT_INDEX',
]);

export function analyse(sql: string): Analysis {
  // The parser refuses an empty string; PostgreSQL answers it with EmptyQueryResponse.
  if (sql.trim() === '') return { statements: [], fingerprint: '' };
  let parsed: { stmts?: { stmt?: Node; stmt_location?: number; stmt_len?: number }[] };
  try {
    parsed = parseSync(sql) as typeof parsed;
  } catch (error) {
    const details = (error as { sqlDetails?: { message: string; cursorPosition: number } }).sqlDetails;
    // The parser reports a 0-based character offset; PostgreSQL shows it 1-based.
    throw new SqlSyntaxError(
      details?.message ?? (error as Error).message,
      (details?.cursorPosition ?? 0) + 1,
    );
  }
  const bytes = Buffer.from(sql);
  const statements = (parsed.stmts ?? []).map((raw) => {
    const start = raw.stmt_location ?? 0;
    const end = raw.stmt_len ? start + raw.stmt_len : bytes.length;
    const text = bytes.subarray(start, end).toString().trim();
    return raw.stmt ? analyseStatement(raw.stmt, text) : emptyStatement(text);
  });
  return { statements, fingerprint: statements.length > 0 ? fingerprintSync(sql) : '' };
}

function emptyStatement(text: string): StatementAnalysis {
  return {
    text,
    command: 'Empty',
    kind: 'empty',
    tables: [],
    columns: { select: [], where: [], join: [], groupBy: [], having: [], orderBy: [], returning: [] },
    functions: [],
    hasWhere: false,
    unboundedWrite: false,
    hasLimit: false,
    hazards: [],
  };
}

/** Accumulates what a walk over one statement finds. */
class Findings {
  readonly tables: TableRef[] = [];
  readonly functions = new Set<string>();
  readonly hazards = new Set<Hazard>();
  readonly cteNames = new Set<string>();
  readonly columns = {
    select: [] as string[],
    where: [] as string[],
    join: [] as string[],
    groupBy: [] as string[],
    having: [] as string[],
    orderBy: [] as string[],
    returning: [] as string[],
  };
  hasWrite = false;
  unboundedWrite = false;

  table(schema: string | undefined, name: string, access: 'read' | 'write'): void {
    if (!this.tables.some((t) => t.schema === schema && t.name === name && t.access === access)) {
      this.tables.push({ schema, name, access });
    }
  }
}

type Clause = keyof Findings['columns'] | undefined;

function analyseStatement(root: Node, text: string): StatementAnalysis {
  const [command, body] = nodeOf(root)!;
  const found = new Findings();
  collectCteNames(root, found);
  walk(root, found, 'read', undefined);

  let kind = kindOf(command);
  const hazards = found.hazards;
  let prepares: StatementAnalysis['prepares'];
  let executes: string | undefined;
  let setting: string | undefined;
  let settingValue: string[] | undefined;
  // A plain EXPLAIN runs nothing: what it explains is not counted.
  let unboundedWrite = command === 'ExplainStmt' ? false : found.unboundedWrite;

  if (command === 'SelectStmt' && body.intoClause) {
    hazards.add('select-into');
    kind = 'ddl';
  }
  if (command === 'CreateTableAsStmt') hazards.add('create-table-as');
  if (found.hasWrite && kind === 'read') {
    hazards.add('cte-write');
    kind = 'write';
  }
  if (command === 'CopyStmt') {
    if (body.is_program) hazards.add('copy-program');
    else if (typeof body.filename === 'string') hazards.add('copy-server-file');
  }
  if (command === 'DoStmt') hazards.add('do-block');
  if (command === 'AlterSystemStmt') hazards.add('alter-system');
  if (command === 'LoadStmt') hazards.add('load-library');
  if (command === 'VariableSetStmt') {
    setting = typeof body.name === 'string' ? body.name.toLowerCase() : undefined;
    if (body.kind === 'VAR_SET_VALUE') settingValue = settingValues(body.args);
    if (setting === 'role') hazards.add('set-role');
    if (setting === 'session_authorization') hazards.add('set-session-authorization');
  }
  if (command === 'ExplainStmt') {
    const options = Array.isArray(body.options) ? body.options : [];
    const analyze = options.some((option) => nodeOf(option)?.[1].defname === 'analyze');
    const inner = analyseStatement(body.query as Node, text);
    if (analyze) {
      // EXPLAIN ANALYZE executes the statement: it is what it explains.
      kind = inner.kind;
      unboundedWrite = inner.unboundedWrite;
      for (const innerHazard of inner.hazards) hazards.add(innerHazard);
      if (inner.kind === 'write' || inner.kind === 'ddl') hazards.add('explain-analyze-write');
    }
  }
  if (command === 'PrepareStmt') {
    const statement = analyseStatement(body.query as Node, text);
    prepares = { name: String(body.name), statement };
    kind = statement.kind;
    unboundedWrite = statement.unboundedWrite;
    for (const hazard of statement.hazards) hazards.add(hazard);
  }
  if (command === 'ExecuteStmt') executes = String(body.name);
  let deallocates: string | undefined;
  if (command === 'DeallocateStmt') deallocates = body.isall ? 'all' : String(body.name);
  if (command === 'DiscardStmt' && body.target === 'DISCARD_ALL') deallocates = 'all';
  const cursors = cursorsOf(command, body);

  const lineage = lineageOf(command, body);
  const functions = [...found.functions];
  if (functions.some(isDangerous)) hazards.add('dangerous-function');
  if (functions.some(isOpaque)) hazards.add('opaque-function');

  return {
    text,
    command,
    kind,
    tables: found.tables,
    columns: found.columns,
    functions,
    hasWhere: hasRealWhere(command, body),
    unboundedWrite,
    hasLimit: Boolean(body.limitCount),
    hazards: [...hazards],
    ...(prepares ? { prepares } : {}),
    ...(executes !== undefined ? { executes } : {}),
    ...(deallocates !== undefined ? { deallocates } : {}),
    ...cursors,
    ...(setting !== undefined ? { setting } : {}),
    ...(settingValue !== undefined ? { settingValue } : {}),
    ...(lineage ? { lineage } : {}),
  };
}

function settingValues(args: unknown): string[] {
  return (Array.isArray(args) ? args : []).map((arg) => {
    const value = nodeOf(arg)?.[1];
    const sval = value?.sval as { sval?: string } | undefined;
    const ival = value?.ival as { ival?: number } | undefined;
    return sval?.sval ?? String(ival?.ival ?? 0);
  });
}

function kindOf(command: string): StatementKind {
  // DECLARE ... CURSOR FOR SELECT reads what its query reads (FETCH then delivers it).
  if (command === 'SelectStmt' || command === 'DeclareCursorStmt') return 'read';
  if (WRITE_STATEMENTS.has(command) || command === 'TruncateStmt') return 'write';
  if (DCL_STATEMENTS.has(command)) return 'dcl';
  if (command === 'TransactionStmt') return 'transaction';
  if (command === 'CopyStmt') return 'copy';
  if (command === 'CallStmt' || command === 'DoStmt') return 'call';
  if (command === 'PrepareStmt' || UTILITY_STATEMENTS.has(command)) return 'utility';
  return 'ddl'; // CREATE / ALTER / DROP / COMMENT / RENAME / ... and anything newer: treated as schema changes
}

/**
 * UPDATE/DELETE with a WHERE that can be false. Constants count as true
 * whatever their value (`WHERE 1=1`, `WHERE 'a'<>'b'`, `WHERE 2>1`): the
 * analysis is cached by shape, so it must not depend on a literal's value;
 * refusing `DELETE ... WHERE 1=2` too costs nothing. A WHERE that names no
 * column at all (`WHERE random() < 2`, `WHERE EXISTS (SELECT 1)`) filters nothing either.
 */
function hasRealWhere(command: string, body: Node): boolean {
  if (command !== 'UpdateStmt' && command !== 'DeleteStmt') return Boolean(body.whereClause);
  const where = body.whereClause;
  if (!where) return false;
  return mentionsColumn(where) && !isConstantTrue(where);
}

function mentionsColumn(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(mentionsColumn);
  if (value === null || typeof value !== 'object') return false;
  for (const [key, inner] of Object.entries(value)) {
    if (key === 'ColumnRef') return true;
    if (mentionsColumn(inner)) return true;
  }
  return false;
}

function isConstant(expression: unknown): boolean {
  const node = nodeOf(expression);
  if (!node) return false;
  if (node[0] === 'A_Const') return true;
  if (node[0] === 'TypeCast') return isConstant(node[1].arg);
  return false;
}

function isConstantTrue(expression: unknown): boolean {
  const node = nodeOf(expression);
  if (!node) return false;
  const [type, body] = node;
  if (type === 'A_Const') {
    // NULL and false filter everything out; any other constant is taken as true.
    const boolval = body.boolval as { boolval?: boolean } | undefined;
    return !body.isnull && !(boolval !== undefined && boolval.boolval !== true);
  }
  if (type === 'TypeCast') return isConstantTrue(body.arg);
  if (type === 'BoolExpr' && body.boolop === 'OR_EXPR') return (body.args as unknown[]).some(isConstantTrue);
  if (type === 'BoolExpr' && body.boolop === 'AND_EXPR')
    return (body.args as unknown[]).every(isConstantTrue);
  if (type === 'A_Expr' && body.kind === 'AEXPR_OP') {
    // Comparisons of two constants, or of a column with itself (id = id).
    if (isConstant(body.lexpr) && isConstant(body.rexpr)) return true;
    const op = stringsOf(body.name).join('');
    const left = JSON.stringify(stripLocations(body.lexpr));
    const right = JSON.stringify(stripLocations(body.rexpr));
    if (op === '=' || op === '>=' || op === '<=')
      return left === right && nodeOf(body.lexpr)?.[0] === 'ColumnRef';
  }
  return false;
}

function stripLocations(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stripLocations);
  if (value === null || typeof value !== 'object') return value;
  const out: Node = {};
  for (const [key, inner] of Object.entries(value)) if (key !== 'location') out[key] = stripLocations(inner);
  return out;
}

function collectCteNames(value: unknown, found: Findings): void {
  if (Array.isArray(value)) {
    for (const item of value) collectCteNames(item, found);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  for (const [key, inner] of Object.entries(value)) {
    if (key === 'CommonTableExpr') found.cteNames.add(String((inner as Node).ctename));
    collectCteNames(inner, found);
  }
}

/** Where the target relation of a statement sits, and whether it is written. */
function targetAccess(type: string, body: Node): 'read' | 'write' {
  if (WRITE_STATEMENTS.has(type)) return 'write';
  if (type === 'CopyStmt') return body.is_from ? 'write' : 'read';
  if (type === 'LockStmt' || type === 'VacuumStmt') return 'read';
  return 'write'; // ALTER TABLE, CREATE INDEX, TRUNCATE, CLUSTER, ... change the relation
}

function walk(value: unknown, found: Findings, access: 'read' | 'write', clause: Clause): void {
  if (Array.isArray(value)) {
    for (const item of value) walk(item, found, access, clause);
    return;
  }
  const node = nodeOf(value);
  if (!node) {
    if (value !== null && typeof value === 'object') {
      // Fields typed RangeVar (relation, rel) hold the body without the {"RangeVar": ...} wrapper.
      if (typeof (value as Node).relname === 'string') walk({ RangeVar: value }, found, access, clause);
      else for (const inner of Object.values(value)) walk(inner, found, access, clause);
    }
    return;
  }
  const [type, body] = node;
  switch (type) {
    case 'RangeVar': {
      const schema = typeof body.schemaname === 'string' ? body.schemaname : undefined;
      const name = String(body.relname);
      if (schema === undefined && found.cteNames.has(name)) return; // a CTE, not a table
      found.table(schema, name, access);
      return;
    }
    case 'ColumnRef':
      if (clause) found.columns[clause].push(stringsOf(body.fields).join('.'));
      return;
    case 'FuncCall':
      found.functions.add(stringsOf(body.funcname).join('.').toLowerCase());
      walk(body.args, found, 'read', clause);
      walk(body.agg_filter, found, 'read', clause);
      walk(body.agg_order, found, 'read', clause);
      walk(body.over, found, 'read', clause);
      return;
    case 'SelectStmt':
      walk(body.withClause, found, 'read', undefined);
      walk(body.targetList, found, 'read', 'select');
      walk(body.intoClause, found, 'write', undefined);
      walk(body.fromClause, found, 'read', undefined);
      walk(body.whereClause, found, 'read', 'where');
      walk(body.groupClause, found, 'read', 'groupBy');
      walk(body.havingClause, found, 'read', 'having');
      walk(body.windowClause, found, 'read', 'orderBy');
      walk(body.sortClause, found, 'read', 'orderBy');
      walk(body.valuesLists, found, 'read', 'select');
      walk(body.larg, found, 'read', undefined);
      walk(body.rarg, found, 'read', undefined);
      walk(body.limitCount, found, 'read', undefined);
      walk(body.limitOffset, found, 'read', undefined);
      return;
    case 'JoinExpr':
      walk(body.larg, found, 'read', undefined);
      walk(body.rarg, found, 'read', undefined);
      walk(body.quals, found, 'read', 'join');
      return;
    case 'InsertStmt':
    case 'UpdateStmt':
    case 'DeleteStmt':
    case 'MergeStmt':
      found.hasWrite = true;
      if ((type === 'UpdateStmt' || type === 'DeleteStmt') && !hasRealWhere(type, body))
        found.unboundedWrite = true;
      walk(body.withClause, found, 'read', undefined);
      walk(body.relation, found, 'write', undefined);
      walk(body.selectStmt, found, 'read', undefined);
      walk(body.targetList, found, 'read', type === 'UpdateStmt' ? 'select' : undefined);
      walk(body.fromClause, found, 'read', undefined);
      walk(body.usingClause, found, 'read', undefined);
      walk(body.sourceRelation, found, 'read', undefined);
      walk(body.joinCondition, found, 'read', 'join');
      walk(body.mergeWhenClauses, found, 'read', 'where');
      walk(body.whereClause, found, 'read', 'where');
      walk(body.returningClause ?? body.returningList, found, 'read', 'returning');
      walk(body.onConflictClause, found, 'read', 'where');
      return;
    case 'DropStmt':
      if (DROP_TABLE_LIKE.has(String(body.removeType))) {
        for (const object of (body.objects as unknown[]) ?? []) {
          const names = stringsOf(nodeOf(object)?.[1].items);
          if (names.length > 0)
            found.table(names.length > 1 ? names.at(-2) : undefined, names.at(-1)!, 'write');
        }
      }
      return;
    default:
      if (body !== null && typeof body === 'object') {
        for (const [key, inner] of Object.entries(body)) {
          if (key === 'relation' || key === 'relations' || key === 'rel' || key === 'into') {
            walk(inner, found, targetAccess(type, body), undefined);
          } else {
            walk(inner, found, access, clause);
          }
        }
      }
  }
}

/** PostgreSQL's CURSOR_OPT_HOLD bit of DeclareCursorStmt.options. */
const CURSOR_OPT_HOLD = 0x0020;

/** What a statement does to the session's SQL cursors. */
function cursorsOf(command: string, body: Node): Pick<StatementAnalysis, 'declares' | 'fetches' | 'closes'> {
  switch (command) {
    case 'DeclareCursorStmt':
      return {
        declares: {
          name: String(body.portalname),
          holdable: ((Number(body.options) || 0) & CURSOR_OPT_HOLD) !== 0,
        },
      };
    case 'FetchStmt':
      return { fetches: String(body.portalname) };
    case 'ClosePortalStmt':
      return { closes: typeof body.portalname === 'string' ? { name: body.portalname } : 'all' };
    case 'DiscardStmt':
      return body.target === 'DISCARD_ALL' ? { closes: 'all' } : {};
    default:
      return {};
  }
}
