/**
 * The hash chain: each event's hash is SHA-256 of the previous event's hash
 * and the event's canonical JSON, so editing, deleting or reordering a
 * stored event breaks every hash from there on. Each Warden instance (and
 * each worker of one) appends to its own chain, so instances sharing a store
 * never wait on one chain head.
 *
 * The chain alone cannot show that its newest events were cut off, or that
 * the whole chain was rewritten with new hashes: signed checkpoints (a later
 * step) are what answer those.
 */
import { hash } from 'node:crypto';
import type { AuditRecord } from '../store/audit.ts';

/** The hash before a chain's first event. */
export const GENESIS = '0'.repeat(64);

export function linkHash(previous: string, body: string): string {
  return hash('sha256', `${previous}\n${body}`);
}

export type ProblemKind = 'edited' | 'deleted' | 'reordered';

export interface ChainProblem {
  readonly chain: string;
  readonly seq: number;
  readonly kind: ProblemKind;
  readonly message: string;
}

/** Where a chain's checking starts: its genesis, or the last event a retention prune removed. */
export interface ChainAnchor {
  readonly seq: number;
  readonly hash: string;
}

/** Checks one chain's records in order of seq; the first problem found stops it. */
export class ChainVerifier {
  private expected: number;
  private previous: string;
  checked = 0;
  problem: ChainProblem | undefined;

  constructor(
    readonly chain: string,
    anchor: ChainAnchor = { seq: 0, hash: GENESIS },
  ) {
    this.expected = anchor.seq + 1;
    this.previous = anchor.hash;
  }

  /** Returns false once a problem is found (the rest of the chain cannot be trusted). */
  check(record: AuditRecord): boolean {
    if (this.problem) return false;
    const { chain } = this;
    if (record.seq > this.expected) {
      const missing =
        record.seq - this.expected === 1
          ? `event ${this.expected} is`
          : `events ${this.expected}–${record.seq - 1} are`;
      return this.fail(this.expected, 'deleted', `${missing} missing before event ${record.seq}`);
    }
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(record.body) as Record<string, unknown>;
    } catch {
      return this.fail(record.seq, 'edited', `event ${record.seq} is not valid JSON any more`);
    }
    if (body.chain !== chain || body.seq !== record.seq) {
      return this.fail(
        record.seq,
        'reordered',
        `the event stored as ${chain} #${record.seq} says it is ${String(body.chain)} #${String(body.seq)}`,
      );
    }
    // The columns the store searches by must say what the hashed body says.
    for (const field of ['at', 'type', 'identity', 'pipeline', 'target'] as const) {
      if ((body[field] ?? null) !== record[field]) {
        return this.fail(
          record.seq,
          'edited',
          `event ${record.seq}'s ${field} column differs from the hashed event`,
        );
      }
    }
    // And the tables a search by table reads, or an edit there could hide a statement from it.
    const tables = Array.isArray(body.tables)
      ? [...new Set((body.tables as { table?: unknown }[]).map((t) => String(t.table)))]
      : [];
    if (tables.join('\u0000') !== record.tables.join('\u0000')) {
      return this.fail(
        record.seq,
        'edited',
        `event ${record.seq}'s tables column differs from the hashed event`,
      );
    }
    if (linkHash(this.previous, record.body) !== record.hash) {
      return this.fail(
        record.seq,
        'edited',
        `event ${record.seq} does not match its hash: it was edited (or, if it was re-hashed, the event before it was)`,
      );
    }
    this.previous = record.hash;
    this.expected = record.seq + 1;
    this.checked++;
    return true;
  }

  private fail(seq: number, kind: ProblemKind, message: string): false {
    this.problem = { chain: this.chain, seq, kind, message: `chain ${this.chain}: ${message}` };
    return false;
  }
}
