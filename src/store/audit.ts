/**
 * The audit part of the store: one interface, kept by the embedded SQLite
 * store (the default) and by PostgreSQL (production, several instances).
 * Both run the same test suite (test/store/audit-store.suite.ts).
 *
 * A record is an event in its chain: the event's canonical JSON (`body`,
 * which the hash covers) and the fields searches need, copied out of it.
 * A statement event's body names its statement template, which the store
 * keeps once however many events name it, written in the same transaction
 * as the first of them (src/audit/templates.ts). The table-access index is
 * a rollup per hour kept in the same transaction as the events it counts.
 */
import type { Checkpoint } from '../audit/checkpoints.ts';
import type { StatementTemplate } from '../audit/templates.ts';

export interface AuditRecord {
  readonly chain: string;
  readonly seq: number;
  readonly at: string;
  readonly type: string;
  readonly identity: string;
  readonly pipeline: string | null;
  readonly target: string | null;
  /** Tables a statement touched, as `schema.table` or as written: for search by table (its template's, if it has one). */
  readonly tables: readonly string[];
  /** Canonical JSON of the event, chain and seq included. */
  readonly body: string;
  readonly hash: string;
  /** The statement template the body names, as stored; absent for events without one. */
  readonly template?: StatementTemplate;
}

/** One row of the table-access index, summed over the hours a query covers. */
export interface AccessRow {
  readonly identity: string;
  /** '' when no pipeline is known (a key column cannot be null in both stores alike). */
  readonly pipeline: string;
  readonly target: string;
  readonly table: string;
  readonly operation: string;
  readonly firstSeen: string;
  readonly lastSeen: string;
  readonly statements: number;
  readonly rows: number;
  readonly masked: readonly string[];
}

/** What a batch adds to the index's row for one hour. */
export interface AccessDelta extends AccessRow {
  /** The hour the statements fell in: ISO, truncated to the hour. */
  readonly bucket: string;
}

export interface EventQuery {
  readonly identity?: string;
  readonly pipeline?: string;
  readonly target?: string;
  readonly table?: string;
  readonly type?: string;
  /** ISO times, since inclusive, until exclusive. */
  readonly since?: string;
  readonly until?: string;
  readonly limit?: number;
}

export interface AccessQuery {
  readonly table?: string;
  readonly identity?: string;
  readonly pipeline?: string;
  readonly target?: string;
  readonly since?: string;
  readonly until?: string;
}

export interface ChainHead {
  readonly seq: number;
  readonly hash: string;
}

export interface AuditStore {
  /** The newest event of a chain, or its anchor after a prune; undefined for a chain never written. */
  head(chain: string): Promise<ChainHead | undefined>;
  /**
   * Appends records (consecutive in their chains) and their access deltas in
   * one transaction. Rejects, storing nothing, when a record's (chain, seq)
   * exists already: another writer holds that chain.
   */
  append(records: readonly AuditRecord[], access: readonly AccessDelta[]): Promise<void>;
  /** Events matching the query, oldest first (by time, then chain and seq). */
  events(query: EventQuery): AsyncIterable<AuditRecord>;
  /** Events newer than `after` (per chain, the last seq seen), oldest first: for tail. */
  eventsAfter(after: ReadonlyMap<string, number>, limit: number): Promise<AuditRecord[]>;
  chains(): Promise<string[]>;
  /** Where checking a chain starts: undefined for its genesis, else the last event a prune removed. */
  anchor(chain: string): Promise<ChainHead | undefined>;
  /** One chain's records in order of seq. */
  chainRecords(chain: string): AsyncIterable<AuditRecord>;
  /** The table-access index summed over the buckets the time range touches. */
  access(query: AccessQuery): Promise<AccessRow[]>;
  /** Stores a signed checkpoint of a chain (src/audit/checkpoints.ts); one already stored at its seq is kept. */
  addCheckpoint(checkpoint: Checkpoint): Promise<void>;
  /** A chain's checkpoints in order of seq. */
  checkpoints(chain: string): Promise<Checkpoint[]>;
  /** Deletes events older than `before` (keeping each chain's anchor); returns how many. */
  prune(before: string): Promise<number>;
  close(): Promise<void>;
}
