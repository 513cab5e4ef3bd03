/**
 * The one decision point. Every Query, Parse, Bind, Execute, FunctionCall and
 * startup setting passes through `decide` before anything is forwarded; the
 * Decision it returns is what the session enforces and what audit records.
 *
 * In this version every statement is allowed: policy, masking and audit plug
 * in here without the session changing.
 */
import type { IdentityConfig, TargetConfig } from '../config/index.ts';

/** Where the statement came from on the wire. */
export type StatementSource = 'query' | 'parse' | 'bind' | 'execute' | 'function-call' | 'startup-option';

export interface SessionInfo {
  readonly id: number;
  readonly identity: IdentityConfig;
  readonly target: TargetConfig;
  readonly clientAddress: string;
  readonly tls: boolean;
  readonly applicationName: string;
}

export interface DecisionContext {
  readonly session: SessionInfo;
  readonly source: StatementSource;
  /** The SQL text; for Bind/Execute, the text of the prepared statement they use; undefined for FunctionCall. */
  readonly sql: string | undefined;
  /** Prepared statement (Parse/Bind) or portal (Execute) name, '' for the unnamed one. */
  readonly name?: string;
  readonly functionOid?: number;
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
}

interface DecisionBase {
  readonly identity: string;
  readonly target: string;
  readonly source: StatementSource;
  readonly sql: string | undefined;
}

export interface Allow extends DecisionBase {
  readonly action: 'allow';
  readonly transform: ResultTransform | null;
}

export interface Deny extends DecisionBase {
  readonly action: 'deny';
  readonly sqlstate: string;
  readonly message: string;
  readonly hint?: string;
}

export type Decision = Allow | Deny;

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
