/**
 * Events become records of one chain: numbered, hashed over their canonical
 * JSON, with the table-access index's deltas for the same batch.
 */
import type { AccessDelta, AuditRecord, ChainHead } from '../store/audit.ts';
import { GENESIS, linkHash } from './chain.ts';
import { type AuditEvent, chainedJson, pipelineOf, targetOf } from './events.ts';

export class ChainAppender {
  private head: ChainHead;

  constructor(
    readonly chain: string,
    head: ChainHead | undefined,
  ) {
    this.head = head ?? { seq: 0, hash: GENESIS };
  }

  get seq(): number {
    return this.head.seq;
  }

  /** Chains the events after the current head, which moves past them. */
  append(events: readonly AuditEvent[]): { records: AuditRecord[]; access: AccessDelta[] } {
    const records: AuditRecord[] = [];
    const access = new Map<string, Mutable<AccessDelta>>();
    let { seq, hash } = this.head;
    for (const event of events) {
      seq++;
      const body = chainedJson(event, this.chain, seq);
      hash = linkHash(hash, body);
      const tables = event.type === 'statement' ? event.tables.map((t) => t.table) : [];
      records.push({
        chain: this.chain,
        seq,
        at: event.at,
        type: event.type,
        identity: event.identity,
        pipeline: pipelineOf(event),
        target: targetOf(event),
        tables: [...new Set(tables)],
        body,
        hash,
      });
      // A refused statement touched nothing; one the server skipped did not run.
      if (event.type === 'statement' && event.decision === 'allow' && event.outcome !== 'not-run') {
        for (const { table, operation } of event.tables) {
          const bucket = `${event.at.slice(0, 13)}:00:00.000Z`;
          const pipeline = event.pipeline ?? '';
          const key = [bucket, event.identity, pipeline, event.target, table, operation].join('\u0000');
          const delta = access.get(key);
          if (delta === undefined) {
            access.set(key, {
              bucket,
              identity: event.identity,
              pipeline,
              target: event.target,
              table,
              operation,
              firstSeen: event.at,
              lastSeen: event.at,
              statements: 1,
              rows: event.rows,
              masked: [...event.masked],
            });
          } else {
            if (event.at > delta.lastSeen) delta.lastSeen = event.at;
            delta.statements++;
            delta.rows += event.rows;
            for (const column of event.masked) if (!delta.masked.includes(column)) delta.masked.push(column);
          }
        }
      }
    }
    this.head = { seq, hash };
    return { records, access: [...access.values()] };
  }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] extends readonly (infer E)[] ? E[] : T[K] };
