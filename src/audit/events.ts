/**
 * What the audit trail records: plain, readonly events, each tied to an
 * identity. The session and the control plane make them; the writer gives
 * each a place in its instance's hash chain (chain, seq) and stores its
 * canonical form, which is what the chain's hashes cover. A statement event
 * is stored in two parts: what repeats across its executions as a template
 * named by its hash, and the rest (src/audit/templates.ts).
 *
 * Statement texts are stored with their literal values redacted (unless the
 * config says otherwise) and Bind parameters are never read at all, so a
 * password in `ALTER ROLE ... PASSWORD '...'` or a value in a WHERE clause
 * does not end up in the trail.
 */
import type { IdentityKind } from '../config/index.ts';

export interface TableAccess {
  /** As the statement names it; unqualified names as written. */
  readonly table: string;
  /** select, insert, update, delete, merge, copy, ddl, or the statement kind otherwise. */
  readonly operation: string;
}

interface EventBase {
  /** ISO 8601, UTC, milliseconds. */
  readonly at: string;
  /** Who: a Warden identity, the claimed user name of a failed login, or an operator. */
  readonly identity: string;
}

export interface ConnectionOpened extends EventBase {
  readonly type: 'connection.open';
  readonly session: string;
  readonly kind: IdentityKind;
  readonly groups: readonly string[];
  readonly client: string;
  readonly applicationName: string;
  readonly pipeline: string | null;
  readonly tls: boolean;
  readonly target: string;
}

export interface ConnectionClosed extends EventBase {
  readonly type: 'connection.close';
  readonly session: string;
  readonly target: string;
  readonly pipeline: string | null;
  readonly durationMs: number;
  readonly statements: number;
}

export interface LoginFailed extends EventBase {
  readonly type: 'login.failed';
  readonly client: string;
  /** The database name the client asked for. */
  readonly target: string;
  readonly sqlstate: string;
  readonly reason: string;
}

export interface StatementEvent extends EventBase {
  readonly type: 'statement';
  readonly session: string;
  readonly target: string;
  readonly pipeline: string | null;
  readonly applicationName: string;
  /** sqlcommenter tags of the text (application, route, pipeline...). */
  readonly tags: Readonly<Record<string, string>>;
  /** query, parse, bind, execute, function-call, startup-option. */
  readonly source: string;
  /** Literal values replaced by `?` (unless redaction is off); null when there was no text (FunctionCall) or it could not be redacted with certainty. */
  readonly text: string | null;
  /** libpg-query's fingerprint: the same for texts that differ only in constants. */
  readonly fingerprint: string | null;
  readonly kinds: readonly string[];
  readonly tables: readonly TableAccess[];
  readonly decision: 'allow' | 'deny';
  readonly rule: string | null;
  readonly matched: readonly { readonly rule: string; readonly action: string }[];
  /** ok, error (the server's or Warden's), or not-run (discarded after an earlier error). */
  readonly outcome: 'ok' | 'error' | 'not-run';
  readonly sqlstate: string | null;
  /** Rows returned or affected, from the server's command tags. */
  readonly rows: number;
  /** Result columns masked, by name. */
  readonly masked: readonly string[];
  readonly maskedRows: number;
  readonly durationMs: number;
}

export interface ConfigReloaded extends EventBase {
  readonly type: 'config.reload';
  readonly file: string;
  readonly ok: boolean;
  readonly error: string | null;
}

export interface KeyChanged extends EventBase {
  readonly type: 'key.create' | 'key.revoke';
  /** The identity whose key it is. */
  readonly subject: string;
  readonly keyId: string;
}

export interface AdminAction extends EventBase {
  readonly type: 'admin';
  readonly action: string;
  readonly detail: string;
}

/**
 * An approval request's life: asked for (identity: who asked), each decision
 * (identity: who decided), and how it ended (identity: who asked).
 */
export interface ApprovalEvent extends EventBase {
  readonly type: 'approval.request' | 'approval.decision' | 'approval.settle';
  /** The request's id (apr_...). */
  readonly request: string;
  readonly target: string;
  /** The session holding the statement; null for a grant or a decision. */
  readonly session: string | null;
  /** request: the rule that asked for review; decision: approve or reject; settle: the final status. */
  readonly detail: string;
  /** The decider's reason (decision), or why it ended (settle); empty otherwise. */
  readonly reason: string;
  /** Where a decision came from (cli, slack, webhook, api); empty otherwise. */
  readonly channel: string;
}

export type AuditEvent =
  | ApprovalEvent
  | ConnectionOpened
  | ConnectionClosed
  | LoginFailed
  | StatementEvent
  | ConfigReloaded
  | KeyChanged
  | AdminAction;

/** An event with its place in a chain: what the store keeps and the hashes cover. */
export type ChainedEvent = AuditEvent & { readonly chain: string; readonly seq: number };

/**
 * JSON with keys sorted at every level and no insignificant space: the one
 * byte form of an event, so a hash can be checked by anyone who reads it.
 */
export function canonicalJson(value: unknown): string {
  if (typeof value !== 'object' || value === null) return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + canonicalJson(value[i]);
    return `${out}]`;
  }
  const object = value as Record<string, unknown>;
  const keys = Object.keys(object).sort();
  let out = '{';
  for (const key of keys) {
    const field = object[key];
    if (field === undefined) continue;
    out += `${out.length === 1 ? '' : ','}${quoted(key)}:${canonicalJson(field)}`;
  }
  return `${out}}`;
}

/**
 * The canonical JSON of an event in its chain: canonicalJson of the event
 * with `chain` and `seq`. Statement events are stored templated instead
 * (src/audit/templates.ts, written by ChainAppender).
 */
export function chainedJson(event: AuditEvent, chain: string, seq: number): string {
  return canonicalJson({ ...event, chain, seq });
}

/** Keys come from a few shapes: quote each once. */
const QUOTED = new Map<string, string>();

function quoted(key: string): string {
  let out = QUOTED.get(key);
  if (out === undefined) {
    out = JSON.stringify(key);
    if (QUOTED.size < 10_000) QUOTED.set(key, out);
  }
  return out;
}

/** The pipeline an event belongs to, for the store's index; null for events outside any session. */
export function pipelineOf(event: AuditEvent): string | null {
  return 'pipeline' in event ? event.pipeline : null;
}

/** The target an event concerns, for the store's index. */
export function targetOf(event: AuditEvent): string | null {
  return 'target' in event ? event.target : null;
}
