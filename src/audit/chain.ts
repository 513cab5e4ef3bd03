/**
 * The hash chain: each event's hash is SHA-256 of the previous event's hash
 * and the event's canonical JSON, so editing, deleting or reordering a
 * stored event breaks every hash from there on. Each Warden instance (and
 * each worker of one) appends to its own chain, so instances sharing a store
 * never wait on one chain head.
 *
 * A statement event's body names its statement template by the template's
 * SHA-256 (src/audit/templates.ts): so the chain covers the template too,
 * and the verifier checks that each template still hashes to that name.
 *
 * The chain alone cannot show that its newest events were cut off, or that
 * the whole chain was rewritten with new hashes: signed checkpoints
 * (src/audit/checkpoints.ts) answer those. Given a chain's checkpoints (their
 * signatures checked already), the verifier holds each event a checkpoint
 * names to the hash it signed, and a checkpoint past the chain's end shows
 * events cut off.
 */
import { hash } from 'node:crypto';
import type { AuditRecord } from '../store/audit.ts';
import type { Checkpoint } from './checkpoints.ts';
import { jsonObject, templateHash } from './templates.ts';

/** The hash before a chain's first event. */
export const GENESIS = '0'.repeat(64);

export function linkHash(previous: string, body: string): string {
  return hashOf(linkText(previous, body));
}

/** What an event's hash is taken of: the previous event's hash, a line break, the event's body. */
export function linkText(previous: string, body: string): string {
  return `${previous}\n${body}`;
}

export function hashOf(text: string): string {
  return hash('sha256', text);
}

export type ProblemKind = 'edited' | 'deleted' | 'reordered' | 'rewritten' | 'truncated' | 'forged';

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
  /** Templates already checked, by hash: most events share a few. */
  private readonly templates = new Map<string, CheckedTemplate>();

  /** The checkpoints still ahead, in order of seq. */
  private readonly checkpoints: Checkpoint[];
  /** The newest checkpoint an event was held to. */
  vouched: Checkpoint | undefined;

  constructor(
    readonly chain: string,
    anchor: ChainAnchor = { seq: 0, hash: GENESIS },
    /** Checkpoints whose signatures hold: those at or before the anchor are history. */
    checkpoints: readonly Checkpoint[] = [],
  ) {
    this.expected = anchor.seq + 1;
    this.previous = anchor.hash;
    this.checkpoints = checkpoints.filter((c) => c.seq > anchor.seq).sort((a, b) => a.seq - b.seq);
  }

  /** After the last record: a checkpoint past it vouches for events that are gone. */
  finish(): boolean {
    if (this.problem) return false;
    const beyond = this.checkpoints.at(-1);
    if (beyond === undefined) return true;
    const last = this.expected - 1;
    return this.fail(
      this.expected,
      'truncated',
      `the chain ends at event ${last}, but a checkpoint signed at ${beyond.at} vouches for event ${beyond.seq}: events ${this.expected}–${beyond.seq} were cut off`,
    );
  }

  /** Returns false once a problem is found (the rest of the chain cannot be trusted). */
  check(record: AuditRecord): boolean {
    if (this.problem) return false;
    if (record.seq > this.expected) {
      const missing =
        record.seq - this.expected === 1
          ? `event ${this.expected} is`
          : `events ${this.expected}–${record.seq - 1} are`;
      return this.fail(this.expected, 'deleted', `${missing} missing before event ${record.seq}`);
    }
    const body = jsonObject(record.body);
    if (body === undefined) {
      return this.fail(record.seq, 'edited', `event ${record.seq} is not valid JSON any more`);
    }
    if (body.chain !== this.chain || body.seq !== record.seq) {
      return this.fail(
        record.seq,
        'reordered',
        `the event stored as ${this.chain} #${record.seq} says it is ${String(body.chain)} #${String(body.seq)}`,
      );
    }
    const template = body.template === undefined ? undefined : this.templateOf(record, body.template);
    if (typeof template === 'string') return this.fail(record.seq, 'edited', template);
    const edited = columnEdited(record, body, template);
    if (edited !== undefined) {
      return this.fail(
        record.seq,
        'edited',
        `event ${record.seq}'s ${edited} column differs from the hashed event`,
      );
    }
    if (linkHash(this.previous, record.body) !== record.hash) {
      return this.fail(
        record.seq,
        'edited',
        `event ${record.seq} does not match its hash: it was edited (or, if it was re-hashed, the event before it was)`,
      );
    }
    while (this.checkpoints.length > 0 && this.checkpoints[0]!.seq === record.seq) {
      const checkpoint = this.checkpoints.shift()!;
      if (checkpoint.hash !== record.hash) {
        return this.fail(
          record.seq,
          'rewritten',
          `event ${record.seq} is not the event the checkpoint signed at ${checkpoint.at} vouches for: the chain was rewritten from there or before`,
        );
      }
      this.vouched = checkpoint;
    }
    this.previous = record.hash;
    this.expected = record.seq + 1;
    this.checked++;
    return true;
  }

  /** The template a body names, once its content is seen to hash to that name; else what is wrong. */
  private templateOf(record: AuditRecord, named: unknown): CheckedTemplate | string {
    const stored = record.template;
    if (typeof named !== 'string' || stored === undefined) {
      return `event ${record.seq}'s statement template is missing`;
    }
    let checked = this.templates.get(named);
    if (checked === undefined || checked.body !== stored.body) {
      if (templateHash(stored.body) !== named) {
        return `event ${record.seq}'s statement template does not match its hash: the template was edited`;
      }
      const fields = jsonObject(stored.body);
      if (fields === undefined) return `event ${record.seq}'s statement template is not a JSON object`;
      checked = { body: stored.body, fields, tables: tablesKey(fields.tables) };
      this.templates.set(named, checked);
    }
    return checked;
  }

  private fail(seq: number, kind: ProblemKind, message: string): false {
    this.problem = { chain: this.chain, seq, kind, message: `chain ${this.chain}: ${message}` };
    return false;
  }
}

/** A template seen to hash to its name: its fields, and its tables as tablesKey gives them. */
interface CheckedTemplate {
  readonly body: string;
  readonly fields: Record<string, unknown>;
  readonly tables: string;
}

/** The columns the store searches by, which must say what the hashed event says. */
const SEARCHED = ['at', 'type', 'identity', 'pipeline', 'target'] as const;

/**
 * The first search column of a record that differs from its event as hashed
 * (its body, and the template the body names); undefined when none does.
 * The tables count too, or an edit there could hide a statement from a search by table.
 */
function columnEdited(
  record: AuditRecord,
  body: Record<string, unknown>,
  template: CheckedTemplate | undefined,
): string | undefined {
  const fieldOf = (field: string) =>
    template !== undefined && !(field in body) ? template.fields[field] : body[field];
  for (const field of SEARCHED) if ((fieldOf(field) ?? null) !== record[field]) return field;
  const tables = template !== undefined && !('tables' in body) ? template.tables : tablesKey(body.tables);
  return tables === record.tables.join('\u0000') ? undefined : 'tables';
}

/** A hashed event's tables, each name once, joined as the record's tables are compared. */
function tablesKey(tables: unknown): string {
  if (!Array.isArray(tables)) return '';
  return [...new Set((tables as { table?: unknown }[]).map((t) => String(t.table)))].join('\u0000');
}
