/**
 * The one decision point. Every Query, Parse, Bind, Execute, FunctionCall and
 * startup setting passes through `decide` before anything is forwarded; the
 * Decision it returns is what the session enforces and what audit records.
 *
 * `allowAll` is the decision of a Warden without policy (tests of the data
 * path use it); src/policy/engine.ts builds the real one from warden.yaml.
 */

import type { IdentityConfig, TargetConfig } from '../config/index.ts';
import type { Output } from '../protocol/postgres/output.ts';
import type { StatementAnalysis } from '../sql/analysis.ts';

/** Where the statement came from on the wire. */
export type StatementSource = 'query' | 'parse' | 'bind' | 'execute' | 'function-call' | 'startup-option';

export interface SessionInfo {
  readonly id: number;
  readonly identity: IdentityConfig;
  readonly target: TargetConfig;
  readonly clientAddress: string;
  readonly tls: boolean;
  readonly applicationName: string;
  /** The pipeline its startup named (option warden.pipeline), else its application_name; null for neither. */
  readonly pipeline: string | null;
  /** The pipeline came from warden.pipeline: a statement's sqlcommenter tag does not override it. */
  readonly pipelineFixed: boolean;
  /** The session's name in the audit trail: unique across instances and restarts. */
  readonly tag: string;
  /** search_path from the startup packet, if the client set one. */
  readonly searchPath?: readonly string[];
}

export interface DecisionContext {
  readonly session: SessionInfo;
  readonly source: StatementSource;
  /** The SQL text; for Bind/Execute, the text of the prepared statement they use; undefined for FunctionCall. */
  readonly sql: string | undefined;
  /** Prepared statement (Parse/Bind) or portal (Execute) name, '' for the unnamed one. */
  readonly name?: string;
  readonly functionOid?: number;
  /** What a prepared statement of this session runs (SQL text), by name: EXECUTE is judged as that. */
  readonly prepared: (name: string) => string | undefined;
  /** What a SQL cursor of this session was declared with (the DECLARE's text), by name: FETCH reads that. */
  readonly cursor?: (name: string) => string | undefined;
  /** The session's search_path now, as Warden has followed it. */
  readonly searchPath?: readonly string[];
}

/** Session state an allowed statement changes, applied by the session when it forwards it. */
export interface Effects {
  /** SQL-level PREPARE: names and the PREPARE statement's text. */
  readonly prepared?: readonly { readonly name: string; readonly sql: string }[];
  /** DEALLOCATE name, or DEALLOCATE ALL / DISCARD ALL. */
  readonly deallocated?: readonly string[] | 'all';
  /** SET search_path: the new path; null for RESET / DEFAULT (back to the startup value). */
  readonly searchPath?: readonly string[] | null;
  /** DECLARE CURSOR: names, the DECLARE's text, and whether the cursor outlives its transaction. */
  readonly declared?: readonly { readonly name: string; readonly sql: string; readonly holdable: boolean }[];
  /** CLOSE name, or CLOSE ALL / DISCARD ALL. */
  readonly closed?: readonly string[] | 'all';
}

/** One rule that matched, and why: what audit records and `policy explain` prints. */
export interface MatchedRule {
  readonly rule: string;
  readonly action: 'allow' | 'deny' | 'review' | 'mask' | 'limit';
  readonly reason: string;
  readonly message?: string;
}

/**
 * Rewrites the server's answer to the statement it was decided for: it sees
 * every message of that response group (up to and including the
 * ReadyForQuery that closes it), one whole frame at a time, and returns the
 * frame to send instead (or the same one). Only decisions that need it carry
 * one; all other results are forwarded as they arrive, undecoded.
 */
export interface ResultTransform {
  message(type: number, frame: Buffer): Buffer;
  /**
   * Optional, for speed: appends to `out` what the client gets instead of
   * the DataRow at buffer[start, end), so rows need no buffer of their own.
   * When present, every DataRow goes here instead of to message().
   */
  dataRow?(buffer: Buffer, start: number, end: number, out: Output): void;
}

interface DecisionBase {
  readonly identity: string;
  readonly target: string;
  readonly source: StatementSource;
  readonly sql: string | undefined;
  /** The rule that decided, when one did. */
  readonly rule?: string;
  readonly matched?: readonly MatchedRule[];
  /** The statements judged (an EXECUTE replaced by what it runs), when the SQL could be read: for audit. */
  readonly statements?: readonly StatementAnalysis[];
  /** libpg-query's fingerprint of the text. */
  readonly fingerprint?: string;
}

export interface Allow extends DecisionBase {
  readonly action: 'allow';
  readonly transform: ResultTransform | null;
  readonly effects?: Effects;
  /** A limit rule's timeout: Warden cancels the statement on the server when it runs longer. */
  readonly statementTimeoutMs?: number;
}

export interface Deny extends DecisionBase {
  readonly action: 'deny';
  readonly sqlstate: string;
  readonly message: string;
  readonly hint?: string;
  /** 1-based character position in the SQL (syntax errors). */
  readonly position?: number;
}

/**
 * A statement a rule holds for human approval (action `review`): it runs as
 * `approved` once approved, and is refused otherwise (src/approvals/).
 */
export interface Review extends DecisionBase {
  readonly action: 'review';
  /** Why it needs approval: the rule and its reason. */
  readonly message: string;
  /** The statement as it runs once approved (its masking and limits still apply). */
  readonly approved: Allow;
}

export type Decision = Allow | Deny | Review;

export type Decide = (context: DecisionContext) => Decision;

/** The decision of this version: allow, with nothing to transform. */
export const allowAll: Decide = (context) => ({
  action: 'allow',
  identity: context.session.identity.name,
  target: context.session.target.name,
  source: context.source,
  sql: context.sql,
  transform: null,
});
