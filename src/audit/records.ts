/**
 * Events become records of one chain: numbered, hashed over their canonical
 * JSON, with the table-access index's deltas for the same batch. Statement
 * events are split into their template and their own body on the way
 * (src/audit/templates.ts).
 *
 * `append` takes whole events. The audit worker adds statements it has
 * already split and encoded (`addStatement`, see src/audit/wire.ts), and
 * takes the batch when its events are in; both end in the same bytes.
 */
import type { AccessDelta, AuditRecord, ChainHead } from '../store/audit.ts';
import { GENESIS, hashOf, linkText } from './chain.ts';
import { type AuditEvent, chainedJson, pipelineOf, type TableAccess, targetOf } from './events.ts';
import { type StatementTemplate, statementBody, statementJson, templateOf } from './templates.ts';

export interface ChainedBatch {
  readonly records: AuditRecord[];
  readonly access: AccessDelta[];
}

/** What a statement's record, and its count in the table-access index, are made of besides its body. */
export interface StatementFacts {
  readonly at: string;
  readonly identity: string;
  readonly pipeline: string | null;
  readonly target: string;
  readonly template: StatementTemplate;
  readonly tables: readonly TableAccess[];
  readonly rows: number;
  readonly masked: readonly string[];
}

export class ChainAppender {
  private headSeq: number;
  private headHash: string;
  private records: AuditRecord[] = [];
  private access = new AccessTally();
  /** The chain's name as JSON: every statement body holds it. */
  readonly chainJson: string;

  constructor(
    readonly chain: string,
    head: ChainHead | undefined,
  ) {
    this.headSeq = head?.seq ?? 0;
    this.headHash = head?.hash ?? GENESIS;
    this.chainJson = JSON.stringify(chain);
  }

  /** The seq of the last event added. */
  get seq(): number {
    return this.headSeq;
  }

  /** Chains the events after the current head, which moves past them. */
  append(events: readonly AuditEvent[]): ChainedBatch {
    for (const event of events) this.add(event);
    return this.take();
  }

  add(event: AuditEvent): void {
    const seq = this.headSeq + 1;
    if (event.type !== 'statement') {
      this.push(
        event.type,
        event.at,
        event.identity,
        pipelineOf(event),
        targetOf(event),
        [],
        chainedJson(event, this.chain, seq),
      );
      return;
    }
    const template = templateOf(event);
    this.addStatement(
      statementBody(statementJson(event, this.chain, seq, template)),
      {
        at: event.at,
        identity: event.identity,
        pipeline: event.pipeline,
        target: event.target,
        template,
        tables: event.tables,
        rows: event.rows,
        masked: event.masked,
      },
      event.decision === 'allow' && event.outcome !== 'not-run',
    );
  }

  /**
   * Adds a statement event as its body (made for seq `this.seq + 1`, see
   * statementBody) and its facts. A refused statement touched nothing, and
   * one the server skipped did not run: those are not `counted` in the
   * table-access index.
   */
  addStatement(body: string, facts: StatementFacts, counted: boolean): void {
    const { template } = facts;
    this.push(
      'statement',
      facts.at,
      facts.identity,
      facts.pipeline,
      facts.target,
      template.tables,
      body,
      template,
    );
    if (counted) this.access.add(facts);
  }

  /** The records and access deltas added since the last take. */
  take(): ChainedBatch {
    const batch = { records: this.records, access: this.access.deltas() };
    this.records = [];
    this.access = new AccessTally();
    return batch;
  }

  private push(
    type: string,
    at: string,
    identity: string,
    pipeline: string | null,
    target: string | null,
    tables: readonly string[],
    body: string,
    template?: StatementTemplate,
  ): void {
    const seq = ++this.headSeq;
    // Hashed as one string, which the body is then cut from: its bytes are copied once, not twice.
    const linked = linkText(this.headHash, body);
    const hash = hashOf(linked);
    this.headHash = hash;
    const stored = linked.slice(linked.length - body.length);
    const { chain } = this;
    this.records.push(
      template === undefined
        ? { chain, seq, at, type, identity, pipeline, target, tables, body: stored, hash }
        : { chain, seq, at, type, identity, pipeline, target, tables, body: stored, hash, template },
    );
  }
}

/**
 * Sums statements per hour, identity, pipeline, target, table and
 * operation. Grouped by hour and template first: a template says who ran
 * it where, and on which tables, so a statement costs one lookup however
 * many tables it names.
 */
class AccessTally {
  private readonly hours = new Map<string, Map<string, Mutable<AccessDelta>[]>>();
  private bucketOf = { hour: '', bucket: '' };

  add(facts: StatementFacts): void {
    const bucket = this.bucket(facts.at);
    let byTemplate = this.hours.get(bucket);
    if (byTemplate === undefined) {
      byTemplate = new Map();
      this.hours.set(bucket, byTemplate);
    }
    const deltas = byTemplate.get(facts.template.hash);
    if (deltas === undefined) {
      byTemplate.set(facts.template.hash, newDeltas(bucket, facts));
      return;
    }
    for (const delta of deltas) {
      if (facts.at < delta.firstSeen) delta.firstSeen = facts.at;
      if (facts.at > delta.lastSeen) delta.lastSeen = facts.at;
      delta.statements++;
      delta.rows += facts.rows;
      for (const column of facts.masked) if (!delta.masked.includes(column)) delta.masked.push(column);
    }
  }

  /** Several templates may touch one table: their deltas for it are merged. */
  deltas(): AccessDelta[] {
    const merged = new Map<string, Mutable<AccessDelta>>();
    for (const byTemplate of this.hours.values()) {
      for (const deltas of byTemplate.values()) {
        for (const delta of deltas) {
          const key = `${delta.bucket}\u0000${delta.identity}\u0000${delta.pipeline}\u0000${delta.target}\u0000${delta.table}\u0000${delta.operation}`;
          const known = merged.get(key);
          if (known === undefined) {
            merged.set(key, delta);
            continue;
          }
          if (delta.firstSeen < known.firstSeen) known.firstSeen = delta.firstSeen;
          if (delta.lastSeen > known.lastSeen) known.lastSeen = delta.lastSeen;
          known.statements += delta.statements;
          known.rows += delta.rows;
          for (const column of delta.masked) if (!known.masked.includes(column)) known.masked.push(column);
        }
      }
    }
    return [...merged.values()];
  }

  /** The hour an ISO time falls in, ISO; the last one is kept, as a batch's events share few hours. */
  private bucket(at: string): string {
    const hour = at.slice(0, 13);
    if (hour !== this.bucketOf.hour) this.bucketOf = { hour, bucket: `${hour}:00:00.000Z` };
    return this.bucketOf.bucket;
  }
}

function newDeltas(bucket: string, facts: StatementFacts): Mutable<AccessDelta>[] {
  return facts.tables.map(({ table, operation }) => ({
    bucket,
    identity: facts.identity,
    pipeline: facts.pipeline ?? '',
    target: facts.target,
    table,
    operation,
    firstSeen: facts.at,
    lastSeen: facts.at,
    statements: 1,
    rows: facts.rows,
    masked: [...facts.masked],
  }));
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] extends readonly (infer E)[] ? E[] : T[K] };
