/**
 * A statement as the session saw it, and the event the trail stores for it.
 * The session fills in a StatementRun on the data path with references
 * only; turning it into an event (redacting literals, reading sqlcommenter
 * tags, naming the pipeline) happens in the audit worker thread, which
 * writes what statementEvent would make without making it (src/audit/inbox.ts).
 */
import type { Allow, Deny, MatchedRule, SessionInfo, StatementSource } from '../policy/decision.ts';
import { sqlcommenterTags } from '../policy/rules.ts';
import type { StatementAnalysis } from '../sql/analysis.ts';
import { shapeOf } from '../sql/shape.ts';
import type { StatementEvent, TableAccess } from './events.ts';

export interface StatementRun extends Omit<StatementEvent, 'text' | 'tags' | 'pipeline' | 'at'> {
  /** When it was judged, in ms since the epoch (made an ISO time off the event loop). */
  readonly atMs: number;
  /** The SQL as sent: never stored as it is unless redaction is off. */
  readonly sql: string | null;
  /** The session's pipeline from its startup (warden.pipeline, else application_name). */
  readonly sessionPipeline: string | null;
  /** Whether the session set warden.pipeline: then a statement's tag does not override it. */
  readonly pipelineFixed: boolean;
}

/** The tag a statement names its pipeline with: /* pipeline='nightly_etl' *\/. */
export const PIPELINE_TAG = 'pipeline';

/** The event of a run: the definition the audit worker's faster path is tested against. */
export function statementEvent(run: StatementRun, redact: boolean): StatementEvent {
  const { sql } = run;
  const tags = sql?.includes('/*') ? Object.fromEntries(sqlcommenterTags(sql)) : {};
  const tagged = tags[PIPELINE_TAG];
  return {
    type: 'statement',
    at: new Date(run.atMs).toISOString(),
    identity: run.identity,
    session: run.session,
    target: run.target,
    pipeline: !run.pipelineFixed && tagged ? tagged : run.sessionPipeline,
    applicationName: run.applicationName,
    tags,
    source: run.source,
    text: sql === null ? null : redact ? (redacted(sql) ?? null) : sql,
    fingerprint: run.fingerprint,
    kinds: run.kinds,
    tables: run.tables,
    decision: run.decision,
    rule: run.rule,
    matched: run.matched,
    outcome: run.outcome,
    sqlstate: run.sqlstate,
    rows: run.rows,
    masked: run.masked,
    maskedRows: run.maskedRows,
    durationMs: run.durationMs,
  };
}

/**
 * The text with every literal replaced: numbers by `?`, strings (quoted or
 * dollar-quoted) by `'?'`; undefined when the text has literals shapeOf does not read with
 * certainty (E'' strings, backslashes): then no text is stored at all,
 * rather than a text that might still hold a value.
 */
export function redacted(sql: string): string | undefined {
  return shapeOf(sql);
}

/** The session's pipeline: the startup option warden.pipeline, else application_name, else none. */
export function sessionPipeline(option: string | undefined, applicationName: string): string | null {
  return option || applicationName || null;
}

const OPERATIONS: Readonly<Record<string, string>> = {
  SelectStmt: 'select',
  InsertStmt: 'insert',
  UpdateStmt: 'update',
  DeleteStmt: 'delete',
  MergeStmt: 'merge',
  CopyStmt: 'copy',
};

/** What a statement list did to which table, once per list (kept verdicts share theirs). */
const ACCESS = new WeakMap<readonly StatementAnalysis[], { kinds: string[]; tables: TableAccess[] }>();

export function accessOf(statements: readonly StatementAnalysis[]): {
  readonly kinds: readonly string[];
  readonly tables: readonly TableAccess[];
} {
  let known = ACCESS.get(statements);
  if (known === undefined) {
    const kinds = new Set<string>();
    const tables = new Map<string, TableAccess>();
    for (const statement of statements) {
      kinds.add(statement.kind);
      for (const ref of statement.tables) {
        const table = ref.schema === undefined ? ref.name : `${ref.schema}.${ref.name}`;
        const operation =
          ref.access === 'read'
            ? statement.command === 'CopyStmt'
              ? 'copy'
              : 'select'
            : (OPERATIONS[statement.command] ?? statement.kind);
        tables.set(`${table}\u0000${operation}`, { table, operation });
      }
    }
    known = { kinds: [...kinds], tables: [...tables.values()] };
    ACCESS.set(statements, known);
  }
  return known;
}

/** Rows a CommandComplete tag reports: its last number ("SELECT 5", "INSERT 0 3"); 0 for none. */
export function rowsOfTag(tag: string): number {
  const space = tag.lastIndexOf(' ');
  if (space < 0) return 0;
  const rows = Number(tag.slice(space + 1));
  return Number.isSafeInteger(rows) ? rows : 0;
}

/**
 * What the session gathers about one statement while the server answers
 * it: rows from command tags, the SQLSTATE of an error, what masking did.
 */
export class StatementTrace {
  rows = 0;
  sqlstate: string | null = null;
  masked: string[] | undefined;
  maskedRows = 0;
  private readonly atMs = Date.now();
  private readonly started = performance.now();

  constructor(
    /** A held statement is traced as what it came to: allowed once approved, else refused. */
    readonly decision: Allow | Deny,
    /** Where it ran from: an Execute runs what its Bind was judged for. */
    private readonly source: StatementSource = decision.source,
  ) {}

  commandComplete(tag: string): void {
    this.rows += rowsOfTag(tag);
  }

  failed(sqlstate: string): void {
    this.sqlstate ??= sqlstate;
  }

  maskedResult(columns: readonly string[], rows: number): void {
    this.masked ??= [];
    for (const column of columns) if (!this.masked.includes(column)) this.masked.push(column);
    this.maskedRows += rows;
  }

  /** The record of it, once answered (`ok`: no error) or dropped unanswered. */
  run(session: SessionInfo, ok: boolean): StatementRun {
    const { decision } = this;
    const access = decision.statements ? accessOf(decision.statements) : NO_ACCESS;
    const refused = decision.action === 'deny';
    return {
      type: 'statement',
      atMs: this.atMs,
      identity: session.identity.name,
      session: session.tag,
      target: session.target.name,
      sessionPipeline: session.pipeline,
      pipelineFixed: session.pipelineFixed,
      applicationName: session.applicationName,
      source: this.source,
      sql: decision.sql ?? null,
      fingerprint: decision.fingerprint ?? null,
      kinds: access.kinds,
      tables: access.tables,
      decision: decision.action,
      rule: decision.rule ?? null,
      matched: decision.matched ? matchedOf(decision.matched) : NO_MATCHES,
      outcome: refused || this.sqlstate !== null ? 'error' : ok ? 'ok' : 'not-run',
      sqlstate: refused ? decision.sqlstate : this.sqlstate,
      rows: this.rows,
      masked: this.masked ?? NO_MASKED,
      maskedRows: this.maskedRows,
      durationMs: Math.round((performance.now() - this.started) * 1000) / 1000,
    };
  }
}

// Shared, not made per statement: the audit writer sends each to its thread once (src/audit/wire.ts).
const NO_ACCESS = { kinds: [], tables: [] } as const;
const NO_MATCHES: StatementEvent['matched'] = [];
const NO_MASKED: readonly string[] = [];
const MATCHED = new WeakMap<readonly MatchedRule[], StatementEvent['matched']>();

/** Rule and action of each matched rule (the reasons stay out of the trail: they quote the SQL). */
function matchedOf(matched: readonly MatchedRule[]): StatementEvent['matched'] {
  let out = MATCHED.get(matched);
  if (out === undefined) {
    out = matched.map(({ rule, action }) => ({ rule, action }));
    MATCHED.set(matched, out);
  }
  return out;
}
