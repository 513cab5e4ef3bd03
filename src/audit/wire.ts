/**
 * How recorded events travel from the event loop to the audit worker, made
 * cheap for both ends. Posting thousands of small objects costs a structured
 * clone of each on the way out and a copy of each on the way in (and
 * garbage to collect on both threads); so a statement is recorded as eleven
 * numbers in a Float64Array, whose buffer is handed over rather than copied,
 * and its SQL text is appended to one string.
 *
 * What a statement shares with others (its session's identity, target and
 * pipeline; its decision's source, fingerprint, kinds, tables, rule and
 * matched rules; SQLSTATEs and masked-column lists) goes to the worker once,
 * as an entry of a dictionary, and the numbers name it by id. Entries are
 * sent with the first batch that uses them; batches are read in order. When
 * the dictionaries grow past a limit both ends start them over, at a batch
 * boundary (`reset`), so memory stays bounded however many sessions come.
 *
 * Other events (connections, logins, reloads, keys) are rare: they travel
 * as they are, in order, and a statement slot says where each goes.
 */
import type { AuditEvent, StatementEvent } from './events.ts';
import type { StatementRun } from './statement.ts';

/** Where each field of a recorded event sits among its numbers. */
export const SLOT = {
  /** STATEMENT, or EVENT: the next of the batch's `events`. */
  kind: 0,
  atMs: 1,
  session: 2,
  decision: 3,
  /** The SQL text's length in `texts`; -1 for none. */
  sqlLength: 4,
  outcome: 5,
  /** A value id; 0 for none. */
  sqlstate: 6,
  rows: 7,
  /** A value id; 0 for no masked column. */
  masked: 8,
  maskedRows: 9,
  durationMs: 10,
} as const;
export const WIDTH = 11;
export const STATEMENT = 0;
export const EVENT = 1;
export const OUTCOMES: readonly StatementEvent['outcome'][] = ['ok', 'error', 'not-run'];

/** A session's part of its statements: tag, identity, target, pipeline, whether it is fixed, application name. */
export type SessionEntry = readonly [
  id: number,
  tag: string,
  identity: string,
  target: string,
  pipeline: string | null,
  fixed: boolean,
  applicationName: string,
];

/** A decision's part of its statements. */
export type DecisionEntry = readonly [
  id: number,
  source: string,
  fingerprint: string | null,
  kinds: StatementRun['kinds'],
  tables: StatementRun['tables'],
  decision: StatementRun['decision'],
  rule: string | null,
  matched: StatementRun['matched'],
];

/** A SQLSTATE, or a list of masked columns. */
export type ValueEntry = readonly [id: number, value: string | readonly string[]];

/** One batch as posted: its `numbers` buffer is transferred, not copied. */
export interface WireBatch {
  readonly count: number;
  readonly numbers: Float64Array;
  /** The statements' SQL texts, one after the other. */
  readonly texts: string;
  readonly events: readonly AuditEvent[];
  /** The dictionaries start over before this batch's entries. */
  readonly reset: boolean;
  readonly sessions: readonly SessionEntry[];
  readonly decisions: readonly DecisionEntry[];
  readonly values: readonly ValueEntry[];
}

/** Events per batch at most: the worker writes each batch in one transaction, and its garbage dies young. */
export const BATCH_EVENTS = 4096;
const FIRST_CAPACITY = 64;
/** Dictionary entries kept before both ends start over. */
const DICTIONARY_LIMIT = 20_000;
/** Decisions kept per tables list (one list can be judged differently for different sessions). */
const DECISIONS_PER_TABLES = 16;

/** What a session's statements share, as both ends of the wire remember it by its id. */
export interface SessionKnown {
  readonly id: number;
  readonly identity: string;
  readonly target: string;
  readonly pipeline: string | null;
  readonly fixed: boolean;
  readonly applicationName: string;
}

interface DecisionKnown {
  readonly id: number;
  readonly source: string;
  readonly fingerprint: string | null;
  readonly kinds: StatementRun['kinds'];
  readonly decision: StatementRun['decision'];
  readonly rule: string | null;
  readonly matched: StatementRun['matched'];
}

/** A batch being filled. */
class Draft {
  numbers = new Float64Array(FIRST_CAPACITY * WIDTH);
  count = 0;
  texts = '';
  readonly events: AuditEvent[] = [];
  readonly sessions: SessionEntry[] = [];
  readonly decisions: DecisionEntry[] = [];
  readonly values: ValueEntry[] = [];

  constructor(readonly reset: boolean) {}

  /** The offset of a new event's numbers. */
  slot(): number {
    const offset = this.count * WIDTH;
    if (offset === this.numbers.length) {
      const grown = new Float64Array(this.numbers.length * 2);
      grown.set(this.numbers);
      this.numbers = grown;
    }
    this.count++;
    return offset;
  }

  batch(): WireBatch {
    const { count, numbers, texts, events, reset, sessions, decisions, values } = this;
    return { count, numbers, texts, events, reset, sessions, decisions, values };
  }
}

/**
 * The event loop's side: events recorded and not yet posted, in batches of
 * at most BATCH_EVENTS. `take` hands them over with the buffers to transfer.
 */
export class Outbox {
  private sealed: WireBatch[] = [];
  private draft: Draft | undefined;
  private reset = false;
  private readonly sessions = new Map<string, SessionKnown>();
  private readonly decisions = new Map<object, DecisionKnown[]>();
  private readonly values = new Map<string, number>();
  private entries = 0;
  /** Events added and not yet taken. */
  size = 0;

  add(event: AuditEvent | StatementRun): void {
    if (event.type === 'statement' && 'sql' in event) this.addStatement(event);
    else {
      const draft = this.current();
      // The slot first: it may grow the numbers into a new array.
      const at = draft.slot();
      draft.numbers[at + SLOT.kind] = EVENT;
      draft.events.push(event);
    }
    this.size++;
  }

  /** The batches to post, oldest first, and the buffers to transfer with them. */
  take(): { batches: WireBatch[]; transfer: ArrayBuffer[] } {
    if (this.draft !== undefined) this.seal();
    const batches = this.sealed;
    this.sealed = [];
    this.size = 0;
    return { batches, transfer: batches.map((batch) => batch.numbers.buffer as ArrayBuffer) };
  }

  private addStatement(run: StatementRun): void {
    if (this.entries >= DICTIONARY_LIMIT) this.startOver();
    const draft = this.current();
    const at = draft.slot();
    const n = draft.numbers;
    n[at + SLOT.kind] = STATEMENT;
    n[at + SLOT.atMs] = run.atMs;
    n[at + SLOT.session] = this.sessionId(run, draft);
    n[at + SLOT.decision] = this.decisionId(run, draft);
    const { sql } = run;
    if (sql === null) n[at + SLOT.sqlLength] = -1;
    else {
      n[at + SLOT.sqlLength] = sql.length;
      draft.texts += sql;
    }
    n[at + SLOT.outcome] = run.outcome === 'ok' ? 0 : run.outcome === 'error' ? 1 : 2;
    n[at + SLOT.sqlstate] = run.sqlstate === null ? 0 : this.valueId(run.sqlstate, run.sqlstate, draft);
    n[at + SLOT.rows] = run.rows;
    n[at + SLOT.masked] =
      run.masked.length === 0 ? 0 : this.valueId(`\u0000${run.masked.join('\u0000')}`, run.masked, draft);
    n[at + SLOT.maskedRows] = run.maskedRows;
    n[at + SLOT.durationMs] = run.durationMs;
  }

  private current(): Draft {
    if (this.draft !== undefined && this.draft.count === BATCH_EVENTS) this.seal();
    this.draft ??= new Draft(this.reset);
    this.reset = false;
    return this.draft;
  }

  private seal(): void {
    this.sealed.push(this.draft!.batch());
    this.draft = undefined;
  }

  /** Both ends forget their dictionaries: the entries still in use are sent again when next used. */
  private startOver(): void {
    if (this.draft !== undefined) this.seal();
    this.sessions.clear();
    this.decisions.clear();
    this.values.clear();
    this.entries = 0;
    this.reset = true;
  }

  private sessionId(run: StatementRun, draft: Draft): number {
    const known = this.sessions.get(run.session);
    if (
      known !== undefined &&
      known.identity === run.identity &&
      known.target === run.target &&
      known.pipeline === run.sessionPipeline &&
      known.fixed === run.pipelineFixed &&
      known.applicationName === run.applicationName
    ) {
      return known.id;
    }
    const id = ++this.entries;
    this.sessions.set(run.session, {
      id,
      identity: run.identity,
      target: run.target,
      pipeline: run.sessionPipeline,
      fixed: run.pipelineFixed,
      applicationName: run.applicationName,
    });
    draft.sessions.push([
      id,
      run.session,
      run.identity,
      run.target,
      run.sessionPipeline,
      run.pipelineFixed,
      run.applicationName,
    ]);
    return id;
  }

  /** Keyed by the tables list, which a session's statements share with their decision (see StatementTrace.run). */
  private decisionId(run: StatementRun, draft: Draft): number {
    let known = this.decisions.get(run.tables);
    if (known === undefined) {
      known = [];
      this.decisions.set(run.tables, known);
    }
    for (const d of known) {
      if (
        d.source === run.source &&
        d.fingerprint === run.fingerprint &&
        d.kinds === run.kinds &&
        d.decision === run.decision &&
        d.rule === run.rule &&
        d.matched === run.matched
      ) {
        return d.id;
      }
    }
    const id = ++this.entries;
    if (known.length === DECISIONS_PER_TABLES) known.shift();
    known.push({ id, ...pick(run) });
    draft.decisions.push([
      id,
      run.source,
      run.fingerprint,
      run.kinds,
      run.tables,
      run.decision,
      run.rule,
      run.matched,
    ]);
    return id;
  }

  private valueId(key: string, value: string | readonly string[], draft: Draft): number {
    let id = this.values.get(key);
    if (id === undefined) {
      id = ++this.entries;
      this.values.set(key, id);
      draft.values.push([id, value]);
    }
    return id;
  }
}

function pick(run: StatementRun): Omit<DecisionKnown, 'id'> {
  const { source, fingerprint, kinds, decision, rule, matched } = run;
  return { source, fingerprint, kinds, decision, rule, matched };
}
