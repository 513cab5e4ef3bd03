/**
 * The mask plan of a statement for one identity: which result columns hold
 * private data (and with which strategy), and whether the statement uses a
 * private column where its value could be inferred without being returned.
 *
 * Result columns are known two ways. A plain column (RowDescription gives its
 * table OID and attribute number) is looked up in the catalog: exact, views
 * included (a view's column is private when its definition computes it from
 * a private column). A computed column (table OID 0) is judged by the
 * statement's lineage: private when anything it is computed from is. Names
 * are resolved conservatively: a reference is private when a column of that
 * name is private in any table the statement reads, or when it names a
 * subquery or CTE column computed from one, or when it is a whole row of a
 * statement with any private column. Over-masking is the failure mode, never
 * a leak.
 */
import type { IdentityConfig, TargetConfig } from '../config/index.ts';
import type { ClauseColumns, StatementAnalysis } from '../sql/analysis.ts';
import { AnalysisCache } from '../sql/cache.ts';
import { isOpaque } from '../sql/functions.ts';
import type { Lineage } from '../sql/lineage.ts';
import type { Catalog, CatalogRelation } from './catalog.ts';
import { type CopyFormat, type CopyPlan, nullMayBeValue, readCopyFormat } from './copy.ts';
import type { InferenceClause, MaskingPolicy } from './policy.ts';
import { MASK_CLASSES, type MaskClass, type Strategy } from './strategies.ts';

/** A private result column as this identity sees it. */
export interface Masked {
  readonly maskClass: MaskClass;
  readonly strategy: Strategy;
}

/** How to mask the result of one statement. */
export interface StatementPlan {
  /** By output position, when the select list has no `*` (so positions are certain). */
  readonly positional: readonly (Masked | undefined)[] | undefined;
  /** For computed columns when positions are not certain: what any of them may hold. */
  readonly computed: Masked | undefined;
  /** A plain column by table OID and attribute number (undefined: not private or not known). */
  plain(tableOid: number, attnum: number, name: string): Masked | undefined;
  /** COPY ... TO STDOUT: how its rows are written, and its columns (positional's) when certain. */
  readonly copy?: CopyPlan;
}

export type MaskVerdict =
  | { readonly kind: 'clear' }
  | { readonly kind: 'deny'; readonly message: string; readonly hint: string }
  | { readonly kind: 'mask'; readonly plans: readonly StatementPlan[] };

export const CLEAR: MaskVerdict = { kind: 'clear' };

export interface PlanInput {
  readonly policy: MaskingPolicy;
  readonly identity: IdentityConfig;
  readonly target: TargetConfig;
  readonly catalog: Catalog;
  /** Every schema an unqualified name may be in. */
  readonly searchPath: readonly string[];
  /** Asked when a result names a table the catalog does not know (it may be read again). */
  readonly onUnknownTable?: () => void;
}

const INFERENCE: readonly [keyof ClauseColumns, InferenceClause, string][] = [
  ['where', 'where', 'WHERE'],
  ['join', 'join', 'JOIN ... ON'],
  ['groupBy', 'groupBy', 'GROUP BY'],
  ['having', 'having', 'HAVING'],
  ['orderBy', 'orderBy', 'ORDER BY or a window'],
];

/** The mask verdict of the statements of one message (a batch has one plan per statement). */
export function planStatements(statements: readonly StatementAnalysis[], input: PlanInput): MaskVerdict {
  const plans: StatementPlan[] = [];
  let masks = false;
  for (const statement of statements) {
    const resolver = new Resolver(statement, input);
    const refusal = resolver.refusal();
    if (refusal) return refusal;
    // A FETCH still here reads a cursor whose DECLARE Warden did not see.
    const plan = statement.fetches === undefined ? resolver.plan() : resolver.opaquePlan();
    // A table the catalog does not know may be private: its result is looked at (plain() masks it).
    if (
      plan.positional?.some(Boolean) ||
      plan.computed ||
      resolver.anyPrivate ||
      resolver.unknownTables ||
      statement.fetches !== undefined
    )
      masks = true;
    plans.push(plan);
  }
  return masks ? { kind: 'mask', plans } : CLEAR;
}

/** The columns of a COPY ... TO STDOUT, by position when certain, and what they hold. */
interface CopyColumns {
  readonly columns: readonly { readonly name: string; readonly typeOid: number }[] | undefined;
  readonly positional: readonly (Masked | undefined)[] | undefined;
  readonly computed: Masked | undefined;
}

interface Candidate {
  readonly schema: string | undefined;
  readonly name: string;
  readonly relation: CatalogRelation | undefined;
}

const MAX_DEPTH = 8;

class Resolver {
  private readonly candidates: Candidate[];
  private readonly lineage: Lineage | undefined;
  private readonly known = new Map<string, Masked | undefined>();
  /** Some table the statement reads has a column private for this identity. */
  readonly anyPrivate: boolean;
  /** Some table the statement names is not in the catalog (new, temporary, or not there at all). */
  readonly unknownTables: boolean;
  /** A function the statement calls that is not the server's own: its result may hold any table's data. */
  private readonly unresolvedCall: string | undefined;
  /** COPY ... TO STDOUT: the format of its rows, or why Warden cannot read them. */
  private readonly copyFormat: CopyFormat | string | undefined;
  private copyColumnsMade: CopyColumns | undefined;

  constructor(
    private readonly statement: StatementAnalysis,
    private readonly input: PlanInput,
    private readonly depth = 0,
  ) {
    this.lineage = statement.lineage;
    this.candidates = statement.tables.flatMap((table) => this.candidatesOf(table.schema, table.name));
    this.anyPrivate = this.candidates.some((candidate) => this.privateColumnIn(candidate) !== undefined);
    this.unknownTables = this.candidates.some((candidate) => candidate.relation === undefined);
    if (this.unknownTables) input.onUnknownTable?.();
    this.unresolvedCall = statement.functions.find(
      (name) => isOpaque(name) && !input.catalog.isBuiltinFunction(name),
    );
    const copy = this.lineage?.copy;
    this.copyFormat =
      statement.kind === 'copy' && copy?.to === 'stdout' ? readCopyFormat(copy.options) : undefined;
  }

  /** Why the statement is refused: a private value would be inferred, copied out or sent unmasked. */
  refusal(): MaskVerdict | undefined {
    const { statement } = this;
    if (
      this.unresolvedCall !== undefined &&
      this.input.policy.config.unresolved === 'deny' &&
      this.anyMask()
    ) {
      return deny(
        `the result of ${this.unresolvedCall}() cannot be traced to the columns it reads, and data is masked for you`,
        'Read the tables it reads directly, or ask for masking.unresolved: mask, which masks every column such a statement computes.',
      );
    }
    for (const [field, clause, words] of INFERENCE) {
      for (const ref of statement.columns[field]) {
        const masked = this.resolve(ref, 0);
        if (masked && !this.mayUse(ref, clause)) {
          return deny(
            `column ${quoteRef(ref)} holds ${masked.maskClass} data that is masked for you; using it in ${words} would reveal it`,
            'Ask for an allowUses entry in the masking policy, or leave the column out of the condition.',
          );
        }
      }
    }
    const copyQuery = statement.kind === 'copy' ? this.lineage?.copy?.query : undefined;
    const copiesOut =
      statement.kind === 'ddl' ||
      (statement.kind === 'write' &&
        (statement.command === 'InsertStmt' || statement.command === 'UpdateStmt')) ||
      // COPY (INSERT ... SELECT ... RETURNING ...) TO STDOUT writes what its INSERT copies.
      copyQuery === 'InsertStmt' ||
      copyQuery === 'UpdateStmt';
    if (copiesOut) {
      for (const ref of statement.columns.select) {
        const masked = this.resolve(ref, 0);
        if (masked && !this.mayUse(ref, 'copyOut')) {
          return deny(
            `column ${quoteRef(ref)} holds ${masked.maskClass} data that is masked for you; this statement would copy it where it is not masked`,
            'Copy the masked result through SELECT instead, or ask for an allowUses entry with clause copyOut.',
          );
        }
      }
    }
    return statement.kind === 'copy' ? this.copyRefusal() : undefined;
  }

  /**
   * COPY ... TO STDOUT is masked as it streams, when Warden can read the
   * format of its rows; COPY to a server file or program would write private
   * values where masking cannot reach them; COPY FROM is a write.
   */
  private copyRefusal(): MaskVerdict | undefined {
    const format = this.copyFormat;
    const copy = this.lineage?.copy;
    if (format === undefined) {
      if (!this.anyPrivate) return undefined;
      if (copy !== undefined) {
        return deny(
          `COPY of columns masked for you to a server ${copy.to === 'program' ? 'program' : 'file'} would write them unmasked`,
          'Use COPY ... TO STDOUT (psql: \\copy ... to), which Warden masks as it streams.',
        );
      }
      return deny(
        'COPY of a table with columns masked for you is not supported yet',
        'Read it with SELECT, which Warden masks as it streams.',
      );
    }
    // Refused only when a column would be masked (a table the catalog does not know is masked whole).
    if (this.copyColumns().computed === undefined) return undefined;
    if (typeof format === 'string') {
      return deny(
        `COPY with ${format} cannot be masked: Warden cannot read rows written so`,
        'Use FORMAT text, csv or binary, one-byte ASCII DELIMITER, QUOTE and ESCAPE, and no ENCODING other than UTF8; or read it with SELECT.',
      );
    }
    if (nullMayBeValue(format)) {
      return deny(
        `COPY in text format with NULL '${format.nullMarker.toString('utf8')}' cannot be masked: a value written the same way could not be told from NULL`,
        'Use the default NULL (\\N), or FORMAT csv, which quotes such a value.',
      );
    }
    return undefined;
  }

  plan(): StatementPlan {
    if (this.copyFormat !== undefined && typeof this.copyFormat !== 'string')
      return this.copyPlan(this.copyFormat);
    const outputs = this.lineage?.outputs ?? [];
    const stars = outputs.some((output) => output.star);
    // A function lineage cannot see into may return anything: every computed column is masked.
    const whole = this.unresolvedCall !== undefined ? (this.masked('other') ?? this.anyMask()) : undefined;
    const positional = stars
      ? undefined
      : outputs.map((output) => this.first(output.refs.map((ref) => this.resolve(ref, 0))) ?? whole);
    const computed = stars
      ? (this.first(outputs.flatMap((output) => output.refs.map((ref) => this.resolve(ref, 0)))) ?? whole)
      : undefined;
    return {
      positional,
      computed: computed && { maskClass: 'other', strategy: computed.strategy },
      plain: (tableOid, attnum, name) => this.plain(tableOid, attnum, name),
    };
  }

  private copyPlan(format: CopyFormat): StatementPlan {
    const { columns, positional, computed } = this.copyColumns();
    const quoted = (name: string) => format.forceQuoteAll || format.forceQuote.includes(name);
    return {
      positional,
      computed,
      plain: (tableOid, attnum, name) => this.plain(tableOid, attnum, name),
      copy: { format, columns: columns?.map((column) => ({ ...column, forceQuote: quoted(column.name) })) },
    };
  }

  /**
   * COPY ... TO STDOUT: no RowDescription names its columns, so positions
   * come from the statement: `COPY table` is the table's columns in
   * attribute order (the catalog's, dropped columns left out, as COPY does),
   * `COPY table (a, b)` the columns listed (types from the catalog), `COPY
   * (query)` the query's select list (types not known). A table the catalog
   * does not know is masked whole, as plain() does. `computed` is what any
   * column may hold, for when the server's column count is not the plan's (a
   * generated column, which COPY leaves out): undefined when nothing is masked.
   */
  private copyColumns(): CopyColumns {
    if (this.copyColumnsMade) return this.copyColumnsMade;
    const { outputs, copy } = this.lineage!;
    const whole =
      this.unknownTables || this.unresolvedCall !== undefined
        ? (this.masked('other') ?? this.anyMask())
        : undefined;
    const stars = outputs.some((output) => output.star);
    let columns: { name: string; typeOid: number }[] | undefined;
    let positional: (Masked | undefined)[] | undefined;
    if (copy?.relation !== undefined) {
      const relation = this.candidatesOf(copy.relation.schema, copy.relation.name)[0]?.relation;
      const names = stars
        ? relation?.columns.map((column) => column.name)
        : outputs.map((output) => output.name);
      if (names !== undefined) {
        columns = names.map((name) => ({
          name,
          typeOid: relation?.columns.find((column) => column.name === name)?.typeOid ?? 0,
        }));
        // By the column's own name: a name is never split at a dot here.
        positional = names.map((name) => this.byName(name) ?? whole);
      }
    } else if (!stars) {
      columns = outputs.map((output) => ({ name: output.name, typeOid: 0 }));
      positional = outputs.map(
        (output) => this.first(output.refs.map((ref) => this.resolve(ref, 0))) ?? whole,
      );
    }
    const any =
      this.first([
        ...(positional ?? []),
        ...outputs.flatMap((output) => output.refs.map((ref) => this.resolve(ref, 0))),
      ]) ?? whole;
    this.copyColumnsMade = {
      columns,
      positional,
      computed: any && { maskClass: 'other', strategy: any.strategy },
    };
    return this.copyColumnsMade;
  }

  /**
   * A result column the server says is column `attnum` of relation `tableOid`: its value is that
   * column's, so this answer is final (undefined: clear).
   */
  private plain(tableOid: number, attnum: number, name: string): Masked | undefined {
    if (attnum <= 0) return undefined; // a system column (ctid, xmin, tableoid...): no user data
    const relation = this.input.catalog.relation(tableOid);
    const column = relation?.columns.find((c) => c.attnum === attnum);
    if (relation === undefined || column === undefined) {
      // Created or altered after the catalog was read (it may be a view of private data): masked
      // until the catalog is read again.
      this.input.onUnknownTable?.();
      return this.byName(name) ?? this.masked('other') ?? this.anyMask();
    }
    return this.columnOf(relation, column.name);
  }

  /**
   * The plan of a FETCH from a cursor Warden did not see declared (a function returned it, say): a
   * column of a table is masked by what it is; any other column may hold anything, so it is masked
   * if anything is masked for this identity.
   */
  opaquePlan(): StatementPlan {
    return {
      positional: undefined,
      computed: this.masked('other') ?? this.anyMask(),
      plain: (tableOid, attnum, name) => this.plain(tableOid, attnum, name),
    };
  }

  /** A mask for a value of unknown class: redacted, unless every class is clear for this identity. */
  private anyMask(): Masked | undefined {
    const { policy, identity } = this.input;
    const masks = MASK_CLASSES.some((maskClass) => policy.strategyFor(identity, maskClass) !== undefined);
    return masks ? { maskClass: 'other', strategy: { kind: 'redact' } } : undefined;
  }

  /** A reference as written: `email`, `c.email`, `c.*`, `*`, or a relation used as a whole row. */
  private resolve(ref: string, depth: number): Masked | undefined {
    const parts = ref.split('.');
    const last = parts.at(-1)!;
    if (last === '*') return this.wholeRow();
    const named = this.byName(last);
    if (named) return named;
    if (depth < MAX_DEPTH) {
      for (const derived of this.lineage?.derived ?? []) {
        if (derived.name !== last && !derived.star) continue;
        for (const inner of derived.refs) {
          const masked = this.resolve(inner, depth + 1);
          if (masked) return masked;
        }
      }
    }
    if (parts.length === 1 && this.lineage?.relations.includes(last)) return this.wholeRow();
    return undefined;
  }

  private wholeRow(): Masked | undefined {
    for (const candidate of this.candidates) {
      const masked = this.privateColumnIn(candidate);
      if (masked) return masked;
    }
    if (this.depth < MAX_DEPTH) {
      for (const derived of this.lineage?.derived ?? []) {
        for (const ref of derived.refs) {
          if (ref.endsWith('*')) continue;
          const masked = this.resolve(ref, MAX_DEPTH);
          if (masked) return masked;
        }
      }
    }
    return undefined;
  }

  /** A column name private in any table the statement reads. */
  private byName(column: string): Masked | undefined {
    for (const candidate of this.candidates) {
      const masked = candidate.relation
        ? candidate.relation.columns.some((c) => c.name === column)
          ? this.columnOf(candidate.relation, column)
          : undefined
        : this.masked(
            this.input.policy.classOf(this.input.target.name, candidate.schema, candidate.name, column),
          );
      if (masked) return masked;
    }
    return undefined;
  }

  /** A column of a catalog relation, as this identity sees it; asked for each result, so remembered. */
  private columnOf(relation: CatalogRelation, column: string): Masked | undefined {
    const key = `${relation.oid}.${column}`;
    if (this.known.has(key)) return this.known.get(key);
    const masked = this.resolveColumn(relation, column);
    this.known.set(key, masked);
    return masked;
  }

  private resolveColumn(relation: CatalogRelation, column: string): Masked | undefined {
    const direct = this.input.policy.classOf(this.input.target.name, relation.schema, relation.name, column);
    if (direct) return this.masked(direct);
    if (relation.definition === undefined) return undefined;
    // A view's column is what its definition computes it from.
    if (this.depth >= MAX_DEPTH) return this.masked('other');
    const index = relation.columns.findIndex((c) => c.name === column);
    const view = viewStatement(relation.definition);
    if (view === undefined) return this.masked('other');
    const inner = new Resolver(view, { ...this.input, searchPath: ['public'] }, this.depth + 1);
    const plan = inner.plan();
    return plan.positional
      ? plan.positional[index]
      : (plan.computed ?? (inner.anyPrivate ? this.masked('other') : undefined));
  }

  private privateColumnIn(candidate: Candidate): Masked | undefined {
    if (candidate.relation === undefined) return undefined;
    for (const column of candidate.relation.columns) {
      const masked = this.columnOf(candidate.relation, column.name);
      if (masked) return masked;
    }
    return undefined;
  }

  private masked(maskClass: MaskClass | undefined): Masked | undefined {
    if (maskClass === undefined) return undefined;
    const strategy = this.input.policy.strategyFor(this.input.identity, maskClass);
    return strategy && { maskClass, strategy };
  }

  private mayUse(ref: string, clause: InferenceClause): boolean {
    const column = ref.split('.').at(-1)!;
    return this.input.policy.mayUse(this.input.identity, this.candidates, column, clause);
  }

  private first(list: readonly (Masked | undefined)[]): Masked | undefined {
    return list.find((masked) => masked !== undefined);
  }

  /** The relations a table name may mean; a name the catalog does not know stays a name. */
  private candidatesOf(schema: string | undefined, name: string): Candidate[] {
    const { catalog, searchPath } = this.input;
    if (schema !== undefined) return [{ schema, name, relation: catalog.named(schema, name) }];
    const found = searchPath
      .map((path) => catalog.named(path, name))
      .filter((relation): relation is CatalogRelation => relation !== undefined)
      .map((relation) => ({ schema: relation.schema, name, relation }));
    return found.length > 0 ? found : [{ schema: undefined, name, relation: undefined }];
  }
}

const views = new AnalysisCache(1_000);

function viewStatement(definition: string): StatementAnalysis | undefined {
  try {
    const statements = views.get(definition).statements;
    return statements.length === 1 ? statements[0] : undefined;
  } catch {
    return undefined;
  }
}

function deny(message: string, hint: string): MaskVerdict {
  return { kind: 'deny', message, hint };
}

function quoteRef(ref: string): string {
  return `"${ref}"`;
}
