/**
 * `warden discover`: which columns of a target look private, proposed as
 * `masking.columns` entries for a person to review. It reads the target's
 * ordinary tables with the target's own credentials (the connection the
 * catalog is read over), samples a bounded number of rows of each, runs the
 * content detectors over every text-like value and the name heuristics over
 * every column, and keeps counts only: no sampled value is kept, returned
 * or written.
 *
 * A column is proposed
 * - with a detector kind's class when at least half of its sampled values
 *   are, whole, a finding of that kind (an email column named `contact_info`);
 * - else with the class its name gives (`classByName`), as `heuristics: true`
 *   would, so that the list also stands without heuristics;
 * - else as `free_text` when at least 1 in 20 sampled values contains a
 *   finding somewhere (a notes column where people paste emails and cards).
 */
import { Document, Scalar, type YAMLMap } from 'yaml';
import type { TargetConfig } from '../config/index.ts';
import { UpstreamQueries } from '../proxy/upstream-query.ts';
import { type DetectorKind, detect } from './detectors.ts';
import { classByName, MaskingPolicy, NO_MASKING } from './policy.ts';
import type { MaskClass } from './strategies.ts';

export const DEFAULT_SAMPLE_ROWS = 200;
export const MAX_SAMPLE_ROWS = 100_000;
/** Share of sampled values that must be one finding, whole, for the finding's class. */
export const MAJORITY = 0.5;
/** Share of sampled values with a finding somewhere that makes a column free text. */
export const FREE_TEXT_SHARE = 0.05;
/** Characters of a value the detectors look at: an emailed novel must not cost a gigabyte. */
const MAX_VALUE_CHARS = 8192;

/** The class a column gets when its values are findings of a kind. */
export const CLASS_OF_KIND: Readonly<Record<DetectorKind, MaskClass>> = {
  email: 'email',
  card: 'card',
  national_id: 'national_id',
  phone: 'phone',
  iban: 'other',
  ip: 'ip',
  jwt: 'secret',
  api_key: 'secret',
  private_key: 'secret',
};

const KIND_LABELS: Readonly<Record<DetectorKind, string>> = {
  email: 'email addresses',
  card: 'card numbers',
  national_id: 'SSNs',
  phone: 'phone numbers',
  iban: 'IBANs',
  ip: 'IP addresses',
  jwt: 'JWTs',
  api_key: 'API keys',
  private_key: 'private keys',
};

/** What the detectors found in a column's sample: counts only. */
export interface ColumnSample {
  /** Sampled values that are neither NULL nor blank: every share is of these. */
  readonly values: number;
  /** Values that are, trimmed, exactly one finding of the kind. */
  readonly whole: Readonly<Partial<Record<DetectorKind, number>>>;
  /** Values with at least one finding of the kind anywhere. */
  readonly containing: Readonly<Partial<Record<DetectorKind, number>>>;
  /** Values with at least one finding of any kind. */
  readonly withFindings: number;
}

export type Basis = 'content' | 'name' | 'free_text';

export interface Classification {
  readonly maskClass: MaskClass;
  readonly basis: Basis;
  /** The kind most values are, when the basis is content. */
  readonly kind?: DetectorKind;
}

export interface ProposedColumn extends Classification {
  readonly schema: string;
  readonly table: string;
  readonly column: string;
  /** What the column's name says, if anything. */
  readonly byName: MaskClass | undefined;
  /** Undefined when the column was not sampled: not text-like, or not readable by the target's user. */
  readonly sample: ColumnSample | undefined;
}

export interface Discovery {
  readonly target: string;
  /** Rows asked of each table. */
  readonly sampleRows: number;
  readonly tables: number;
  /** Text-like columns whose values were sampled. */
  readonly sampledColumns: number;
  readonly columns: readonly ProposedColumn[];
  /** Tables with text-like columns the target's user may not read, judged by name only. */
  readonly unreadable: readonly {
    readonly schema: string;
    readonly table: string;
    readonly columns: number;
  }[];
}

/** The proposal for a column, or undefined when nothing suggests it is private. */
export function classifyColumn(column: string, sample: ColumnSample | undefined): Classification | undefined {
  if (sample !== undefined && sample.values > 0) {
    let best: [DetectorKind, number] | undefined;
    for (const [kind, count] of Object.entries(sample.whole) as [DetectorKind, number][]) {
      if (best === undefined || count > best[1]) best = [kind, count];
    }
    if (best !== undefined && best[1] >= MAJORITY * sample.values)
      return { maskClass: CLASS_OF_KIND[best[0]], basis: 'content', kind: best[0] };
  }
  const byName = classByName(column);
  if (byName !== undefined) return { maskClass: byName, basis: 'name' };
  if (sample !== undefined && sample.values > 0 && sample.withFindings >= FREE_TEXT_SHARE * sample.values)
    return { maskClass: 'free_text', basis: 'free_text' };
  return undefined;
}

/** Counts what the detectors find in sampled values, one value at a time. */
export class SampleCounter {
  private values = 0;
  private withFindings = 0;
  private readonly whole: Partial<Record<DetectorKind, number>> = {};
  private readonly containing: Partial<Record<DetectorKind, number>> = {};

  /** A value as text; null is SQL NULL, which is not counted. */
  add(value: string | null): void {
    const text = value?.trim() ?? '';
    if (text === '') return;
    this.values++;
    const findings = detect(text);
    if (findings.length === 0) return;
    this.withFindings++;
    const first = findings[0]!;
    if (findings.length === 1 && first.start === 0 && first.end === text.length)
      this.whole[first.kind] = (this.whole[first.kind] ?? 0) + 1;
    for (const kind of new Set(findings.map((finding) => finding.kind)))
      this.containing[kind] = (this.containing[kind] ?? 0) + 1;
  }

  get result(): ColumnSample {
    return {
      values: this.values,
      whole: { ...this.whole },
      containing: { ...this.containing },
      withFindings: this.withFindings,
    };
  }
}

// ---------------------------------------------------------------------------
// Reading the target

interface CatalogColumn {
  readonly name: string;
  /** How a value is read as text for the detectors; undefined when the type is not text-like. */
  readonly text: 'text' | 'json' | undefined;
  readonly readable: boolean;
}

interface Table {
  readonly schema: string;
  readonly name: string;
  readonly columns: CatalogColumn[];
}

// Ordinary and partitioned tables outside the system schemas and other sessions' temporary schemas.
// Text-like: the string category (text, varchar, bpchar, name, citext, and domains over them, which
// inherit their base type's category), and json / jsonb or a domain over them.
const TABLES_SQL = `
SELECT n.nspname, c.relname, a.attname,
       CASE WHEN t.typcategory = 'S' THEN 'text'
            WHEN (CASE t.typtype WHEN 'd' THEN t.typbasetype ELSE t.oid END)
                 IN ('pg_catalog.json'::pg_catalog.regtype, 'pg_catalog.jsonb'::pg_catalog.regtype) THEN 'json'
       END,
       pg_catalog.has_schema_privilege(n.oid, 'USAGE')
         AND pg_catalog.has_column_privilege(c.oid, a.attnum, 'SELECT')
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname !~ '^pg_(toast|temp_)'
 ORDER BY n.nspname, c.relname, a.attnum`;

/** A quoted SQL identifier: any name, whatever it contains, is one identifier. */
function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * The text the detectors read: a JSON string's value unquoted (as masking
 * reads it), other JSON as its text; cut to MAX_VALUE_CHARS on the server.
 * Functions and operators are schema-qualified so that nothing in the
 * target's schemas can stand in for them.
 */
function sampledExpression(column: CatalogColumn): string {
  const quoted = quoteIdentifier(column.name);
  const text =
    column.text === 'json'
      ? `(${quoted} OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[])`
      : `${quoted}::pg_catalog.text`;
  return `pg_catalog.left(${text}, ${MAX_VALUE_CHARS})`;
}

async function listTables(connection: UpstreamQueries): Promise<Table[]> {
  const tables: Table[] = [];
  await connection.query(TABLES_SQL, 'listing its tables', ([schema, name, column, text, readable]) => {
    let table = tables.at(-1);
    if (table === undefined || table.schema !== schema || table.name !== name) {
      table = { schema: schema!, name: name!, columns: [] };
      tables.push(table);
    }
    table.columns.push({
      name: column!,
      text: text === 'text' || text === 'json' ? text : undefined,
      readable: readable === 't',
    });
  });
  return tables;
}

/** Samples a table's readable text-like columns: up to `rows` rows, always with LIMIT. */
async function sampleTable(
  connection: UpstreamQueries,
  table: Table,
  columns: readonly CatalogColumn[],
  rows: number,
): Promise<ColumnSample[]> {
  const counters = columns.map(() => new SampleCounter());
  const sql = `SELECT ${columns.map(sampledExpression).join(', ')} FROM ${quoteIdentifier(table.schema)}.${quoteIdentifier(table.name)} LIMIT ${rows}`;
  const what = `sampling table ${JSON.stringify(`${table.schema}.${table.name}`)}`;
  await connection.query(sql, what, (values) => {
    values.forEach((value, index) => {
      counters[index]?.add(value);
    });
  });
  return counters.map((counter) => counter.result);
}

/**
 * Samples every ordinary table of a target over one connection of its own,
 * with the target's credentials, and proposes a class for each column that
 * looks private. Rejects with an UpstreamError when the target cannot be
 * reached or a query fails.
 */
export async function discover(
  target: TargetConfig,
  options: { readonly sampleRows?: number } = {},
): Promise<Discovery> {
  const sampleRows = options.sampleRows ?? DEFAULT_SAMPLE_ROWS;
  if (!Number.isInteger(sampleRows) || sampleRows < 1 || sampleRows > MAX_SAMPLE_ROWS)
    throw new RangeError(`sampleRows must be a whole number from 1 to ${MAX_SAMPLE_ROWS}, not ${sampleRows}`);
  const connection = await UpstreamQueries.open(target, 'warden discover');
  try {
    const tables = await listTables(connection);
    const proposed: ProposedColumn[] = [];
    const unreadable: Discovery['unreadable'][number][] = [];
    let sampledColumns = 0;
    for (const table of tables) {
      const sampled = table.columns.filter((column) => column.text !== undefined && column.readable);
      const samples = sampled.length === 0 ? [] : await sampleTable(connection, table, sampled, sampleRows);
      sampledColumns += sampled.length;
      const unread = table.columns.filter((column) => column.text !== undefined && !column.readable).length;
      if (unread > 0) unreadable.push({ schema: table.schema, table: table.name, columns: unread });
      const sampleOf = new Map(sampled.map((column, index) => [column, samples[index]]));
      for (const column of table.columns) {
        const sample = sampleOf.get(column);
        const classification = classifyColumn(column.name, sample);
        if (classification === undefined) continue;
        proposed.push({
          schema: table.schema,
          table: table.name,
          column: column.name,
          byName: classByName(column.name),
          sample,
          ...classification,
        });
      }
    }
    return {
      target: target.name,
      sampleRows,
      tables: tables.length,
      sampledColumns,
      columns: proposed,
      unreadable,
    };
  } finally {
    connection.close();
  }
}

// ---------------------------------------------------------------------------
// The proposal as YAML

/** A `masking.columns` entry, as the config schema spells it. */
export interface ColumnEntry {
  readonly target: string;
  readonly table: string;
  readonly column: string;
  readonly class: MaskClass;
}

/**
 * `table` and `column` are glob patterns without an escape, and the first dot
 * of `table` ends the schema: a `*` or `?` in a name, or a dot in a schema,
 * is written as `?`, which matches it (and, masking more, any other character).
 */
function entryFor(target: string, column: ProposedColumn): ColumnEntry {
  const literal = (name: string) => name.replace(/[*?]/g, '?');
  return {
    target,
    table: `${literal(column.schema).replaceAll('.', '?')}.${literal(column.table)}`,
    column: literal(column.column),
    class: column.maskClass,
  };
}

/** Whether the entry, as the masking policy reads it, classifies the column it was written for. */
function entryMatches(entry: ColumnEntry, column: ProposedColumn): boolean {
  const policy = new MaskingPolicy(
    { ...NO_MASKING, columns: [{ ...entry, maskClass: entry.class }] },
    Buffer.alloc(0),
  );
  return policy.classOf(entry.target, column.schema, column.table, column.column) === entry.class;
}

const PLAIN = /^[A-Za-z_][A-Za-z0-9_.]*$/;
/** Words some YAML readers (1.1) take for booleans or null. */
const YAML_WORDS = /^(true|false|null|yes|no|on|off|y|n)$/i;

/** A name inside a YAML comment: quoted, on one line. */
function shown(name: string): string {
  return JSON.stringify(name).replace(
    /[\u2028\u2029\u0085]/g,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

const counted = (count: number, what: string) => `${count} ${what}${count === 1 ? '' : 's'}`;

const byKind = (counts: Readonly<Partial<Record<DetectorKind, number>>>) =>
  Object.entries(counts)
    .sort(([, a], [, b]) => b - a)
    .map(([kind, count]) => `${kind} ${count}`)
    .join(', ');

/** Why a column is proposed, in counts. */
function reasonFor(column: ProposedColumn): string {
  const { sample, byName } = column;
  switch (column.basis) {
    case 'content': {
      const kind = column.kind!;
      const agrees =
        byName === undefined
          ? ''
          : byName === column.maskClass
            ? '; so does its name'
            : `; its name suggests ${byName}`;
      return `${sample!.whole[kind]} of ${sample!.values} sampled values look like ${KIND_LABELS[kind]}${agrees}`;
    }
    case 'name':
      if (sample === undefined) return 'column name';
      if (sample.values === 0) return 'column name; no values in the sample';
      if (sample.withFindings === 0) return `column name; no findings in ${sample.values} sampled values`;
      return `column name; ${sample.withFindings} of ${sample.values} sampled values contain findings (${byKind(sample.containing)})`;
    case 'free_text':
      return `${sample!.withFindings} of ${sample!.values} sampled values contain findings (${byKind(sample!.containing)})`;
  }
}

/**
 * The proposal as a YAML list to paste under `masking.columns`, one flow
 * mapping per column with a comment saying why; a header says it is a
 * proposal. Counts and names only: no sampled value is in it.
 */
export function proposalYaml(discovery: Discovery): string {
  const entries: ColumnEntry[] = [];
  const reasons: string[] = [];
  const unwritable: string[] = [];
  for (const column of discovery.columns) {
    const entry = entryFor(discovery.target, column);
    if (!entryMatches(entry, column)) {
      // A safety net: should the pattern rules change so that an entry no longer names its column,
      // say so rather than propose an entry that masks nothing.
      unwritable.push(`${shown(`${column.schema}.${column.table}.${column.column}`)} (${column.maskClass})`);
      continue;
    }
    entries.push(entry);
    reasons.push(reasonFor(column));
  }
  const header = [
    ` Proposed masking classification for target ${shown(discovery.target)}, written by \`warden discover\`.`,
    ' This is a proposal for a person to review, not a decision: check each entry, change or drop the',
    ' wrong ones, then paste the list under `masking.columns` in warden.yaml.',
    ` Sampled up to ${discovery.sampleRows} rows of each of ${counted(discovery.tables, 'table')} (${counted(discovery.sampledColumns, 'text-like column')}).`,
    ' Counts are of sampled values that are neither NULL nor blank; no value is shown.',
    ' "column name" entries are what `heuristics: true` masks already; listed, they hold without it.',
    ...discovery.unreadable.map(
      (table) =>
        ` Not sampled (no SELECT privilege for the target's user, judged by name only): ${shown(`${table.schema}.${table.table}`)}, ${counted(table.columns, 'text-like column')}`,
    ),
    ...unwritable.map((name) => ` Left out, no masking pattern can name it: ${name}`),
    ...(entries.length === 0 ? [' Nothing looks private: no column is proposed.'] : []),
  ];
  const document = new Document(entries);
  document.commentBefore = header.join('\n');
  (document.contents as unknown as { items: YAMLMap[] }).items.forEach((item, index) => {
    item.flow = true;
    item.commentBefore = ` ${reasons[index]}`;
    // Every name double-quoted unless plainly safe: a name can be `yes`, `1e3`, `- x` or hold a line break.
    for (const pair of item.items) {
      const value = pair.value as Scalar;
      if (!PLAIN.test(String(value.value)) || YAML_WORDS.test(String(value.value)))
        value.type = Scalar.QUOTE_DOUBLE;
    }
  });
  return document.toString({ lineWidth: 0, doubleQuotedAsJSON: true });
}
