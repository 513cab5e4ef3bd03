/**
 * Approval requests and decisions in the store (SQLite, warden.db): the one
 * place a decision is made, whichever channel brings it (the CLI in another
 * process, Slack or a webhook through the running Warden). Deciding is one
 * immediate transaction: two approvers deciding at once cannot both settle
 * a request, and nobody decides their own request.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Db } from '../store/store.ts';
import type {
  ApprovalDecision,
  ApprovalRequest,
  ApproverRule,
  Channel,
  DecideResult,
  RequestStatus,
  Verdict,
} from './types.ts';

/** What a new request holds; the store gives it its id, status and times. */
export interface NewRequest
  extends Omit<ApprovalRequest, 'id' | 'status' | 'createdAt' | 'expiresAt' | 'decisions'> {
  readonly mode: 'hold' | 'async';
  /** The Warden instance (chain) holding the statement: it withdraws its own requests when it restarts. */
  readonly instance: string;
  readonly timeoutMs: number;
  /** Async mode: once approved, the statement may run again for this long. */
  readonly validForMs?: number;
}

/** Who may decide: an identity's name and groups, as the config (or later the IdP) knows them. */
export interface Approver {
  readonly name: string;
  readonly groups: readonly string[];
}

interface RequestRow {
  id: string;
  kind: 'statement' | 'grant';
  identity: string;
  target: string;
  sql: string | null;
  parameters: string | null;
  fingerprint: string | null;
  tables: string;
  rule: string | null;
  message: string;
  grant_role: string | null;
  grant_for_ms: number | null;
  reason: string;
  approvers: string;
  status: RequestStatus;
  created_at: string;
  expires_at: string;
  valid_for_ms: number | null;
  valid_until: string | null;
}

/** The key async approvals are matched by: the exact text and parameters, not just the fingerprint. */
export function statementKey(sql: string, parameters: readonly (string | null)[] | null): string {
  return createHash('sha256')
    .update(JSON.stringify([sql, parameters ?? []]))
    .digest('hex');
}

function newId(): string {
  // 10 random bytes in base32: short enough to type, too many to guess.
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of randomBytes(10)) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return `apr_${out}`;
}

export class ApprovalStore {
  constructor(
    private readonly db: Db,
    private readonly now: () => number = Date.now,
  ) {}

  create(request: NewRequest): ApprovalRequest {
    const id = newId();
    const created = this.now();
    this.db
      .prepare(
        `INSERT INTO approval_requests (id, kind, identity, target, sql, parameters, fingerprint, statement_key,
           tables, rule, message, grant_role, grant_for_ms, reason, approvers, mode, instance, status,
           created_at, expires_at, valid_for_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)`,
      )
      .run(
        id,
        request.kind,
        request.identity,
        request.target,
        request.sql,
        request.parameters === null ? null : JSON.stringify(request.parameters),
        request.fingerprint,
        request.sql === null ? null : statementKey(request.sql, request.parameters),
        JSON.stringify(request.tables),
        request.rule,
        request.message,
        request.grant?.role ?? null,
        request.grant?.forMs ?? null,
        request.reason,
        JSON.stringify(request.approvers),
        request.mode,
        request.instance,
        new Date(created).toISOString(),
        new Date(created + request.timeoutMs).toISOString(),
        request.validForMs ?? null,
      );
    return this.get(id)!;
  }

  get(id: string): ApprovalRequest | undefined {
    const row = this.db.prepare('SELECT * FROM approval_requests WHERE id = ?').get(id) as
      | RequestRow
      | undefined;
    return row && this.requestOf(row);
  }

  /** Requests, newest first; pending ones whose time ran out are expired first. */
  list(status?: RequestStatus, limit = 100): ApprovalRequest[] {
    this.expireOverdue();
    const rows = (
      status === undefined
        ? this.db.prepare('SELECT * FROM approval_requests ORDER BY created_at DESC LIMIT ?').all(limit)
        : this.db
            .prepare('SELECT * FROM approval_requests WHERE status = ? ORDER BY created_at DESC LIMIT ?')
            .all(status, limit)
    ) as RequestRow[];
    return rows.map((row) => this.requestOf(row));
  }

  /** The status of each request named (those that exist). */
  statuses(ids: readonly string[]): Map<string, RequestStatus> {
    const found = new Map<string, RequestStatus>();
    const query = this.db.prepare('SELECT status FROM approval_requests WHERE id = ?').pluck();
    for (const id of ids) {
      const status = query.get(id) as RequestStatus | undefined;
      if (status !== undefined) found.set(id, status);
    }
    return found;
  }

  /**
   * Records a decision and settles the request when it is enough: one
   * rejection rejects; approvals by `minApprovals` different identities
   * approve. `approver` must be allowed by the request's approver rule, and
   * may not be the identity that asked.
   */
  decide(
    id: string,
    approver: Approver | undefined,
    decision: {
      readonly by: string;
      readonly verdict: Verdict;
      readonly reason: string;
      readonly channel: Channel;
    },
  ): DecideResult {
    return this.db
      .transaction((): DecideResult => {
        const row = this.db.prepare('SELECT * FROM approval_requests WHERE id = ?').get(id) as
          | RequestRow
          | undefined;
        if (row === undefined) return { ok: false, error: `no approval request ${id}` };
        const nowMs = this.now();
        if (row.status === 'pending' && Date.parse(row.expires_at) <= nowMs) {
          this.settle(id, 'expired');
          return { ok: false, error: `request ${id} expired at ${row.expires_at}` };
        }
        if (row.status !== 'pending') return { ok: false, error: `request ${id} is ${row.status} already` };
        if (decision.reason.trim() === '') return { ok: false, error: 'a decision needs a reason' };
        if (decision.by === row.identity) {
          return { ok: false, error: `${decision.by} asked for this, and nobody decides their own request` };
        }
        const rule = JSON.parse(row.approvers) as ApproverRule;
        if (approver === undefined || !mayDecide(rule, approver)) {
          return {
            ok: false,
            error: `${decision.by} is not an approver of this request (${approversText(rule)})`,
          };
        }
        const earlier = this.db
          .prepare('SELECT verdict FROM approval_decisions WHERE request_id = ? AND by = ?')
          .get(id, decision.by);
        if (earlier !== undefined)
          return { ok: false, error: `${decision.by} has decided this request already` };
        const at = new Date(nowMs).toISOString();
        this.db
          .prepare(
            'INSERT INTO approval_decisions (request_id, by, verdict, reason, channel, at) VALUES (?, ?, ?, ?, ?, ?)',
          )
          .run(id, decision.by, decision.verdict, decision.reason.trim(), decision.channel, at);
        if (decision.verdict === 'reject') this.settle(id, 'rejected');
        else {
          const approvals = this.db
            .prepare("SELECT count(*) FROM approval_decisions WHERE request_id = ? AND verdict = 'approve'")
            .pluck()
            .get(id) as number;
          if (approvals >= rule.minApprovals) this.settle(id, 'approved', row.valid_for_ms ?? undefined);
        }
        return { ok: true, request: this.get(id)! };
      })
      .immediate();
  }

  /**
   * Ends a pending request without a decision (expired, or withdrawn by
   * the client, a cancel or a restart); returns whether it was pending.
   */
  settle(id: string, status: RequestStatus, validForMs?: number): boolean {
    const at = this.now();
    const changes = this.db
      .prepare(
        `UPDATE approval_requests SET status = ?, settled_at = ?, valid_until = ? WHERE id = ? AND status = 'pending'`,
      )
      .run(
        status,
        new Date(at).toISOString(),
        validForMs === undefined ? null : new Date(at + validForMs).toISOString(),
        id,
      ).changes;
    return changes === 1;
  }

  /** An approved async request for exactly this statement, still within its window. */
  approvedFor(identity: string, target: string, sql: string, parameters: readonly (string | null)[] | null) {
    const row = this.db
      .prepare(
        `SELECT * FROM approval_requests
          WHERE identity = ? AND target = ? AND statement_key = ? AND status = 'approved' AND valid_until > ?
          ORDER BY valid_until DESC LIMIT 1`,
      )
      .get(identity, target, statementKey(sql, parameters), new Date(this.now()).toISOString()) as
      | RequestRow
      | undefined;
    return row && this.requestOf(row);
  }

  /** A pending async request for exactly this statement: asking again names it rather than making another. */
  pendingFor(identity: string, target: string, sql: string, parameters: readonly (string | null)[] | null) {
    this.expireOverdue();
    const row = this.db
      .prepare(
        `SELECT * FROM approval_requests
          WHERE identity = ? AND target = ? AND statement_key = ? AND status = 'pending' AND mode = 'async'
          ORDER BY created_at DESC LIMIT 1`,
      )
      .get(identity, target, statementKey(sql, parameters)) as RequestRow | undefined;
    return row && this.requestOf(row);
  }

  /** Roles of the approved grants the identity holds on the target at `nowMs`, with when each ends. */
  activeGrants(identity: string, target: string, nowMs = this.now()): { role: string; until: number }[] {
    const rows = this.db
      .prepare(
        `SELECT grant_role AS role, valid_until AS until FROM approval_requests
          WHERE kind = 'grant' AND identity = ? AND target = ? AND status = 'approved' AND valid_until > ?`,
      )
      .all(identity, target, new Date(nowMs).toISOString()) as { role: string; until: string }[];
    return rows.map((row) => ({ role: row.role, until: Date.parse(row.until) }));
  }

  /** Grants approved and not yet ended, newest first. */
  grants(): ApprovalRequest[] {
    const rows = this.db
      .prepare(
        `SELECT * FROM approval_requests WHERE kind = 'grant' AND status = 'approved' AND valid_until > ?
          ORDER BY valid_until DESC`,
      )
      .all(new Date(this.now()).toISOString()) as RequestRow[];
    return rows.map((row) => this.requestOf(row));
  }

  /** Ends an approved grant before its time; returns whether it was in force. */
  revoke(id: string): boolean {
    const now = new Date(this.now()).toISOString();
    return (
      this.db
        .prepare(
          `UPDATE approval_requests SET status = 'revoked', settled_at = ?
            WHERE id = ? AND kind = 'grant' AND status = 'approved' AND valid_until > ?`,
        )
        .run(now, id, now).changes === 1
    );
  }

  /** At a restart: the statements this instance held are gone with their connections. */
  withdrawHeldBy(instance: string): number {
    return this.db
      .prepare(
        `UPDATE approval_requests SET status = 'withdrawn', settled_at = ?
          WHERE instance = ? AND mode = 'hold' AND status = 'pending'`,
      )
      .run(new Date(this.now()).toISOString(), instance).changes;
  }

  private expireOverdue(): void {
    const now = new Date(this.now()).toISOString();
    this.db
      .prepare(
        `UPDATE approval_requests SET status = 'expired', settled_at = ? WHERE status = 'pending' AND expires_at <= ?`,
      )
      .run(now, now);
  }

  private requestOf(row: RequestRow): ApprovalRequest {
    const decisions = this.db
      .prepare(
        'SELECT by, verdict, reason, channel, at FROM approval_decisions WHERE request_id = ? ORDER BY at, by',
      )
      .all(row.id) as ApprovalDecision[];
    return {
      id: row.id,
      kind: row.kind,
      identity: row.identity,
      target: row.target,
      sql: row.sql,
      parameters: row.parameters === null ? null : (JSON.parse(row.parameters) as (string | null)[]),
      fingerprint: row.fingerprint,
      tables: JSON.parse(row.tables) as string[],
      rule: row.rule,
      message: row.message,
      grant: row.grant_role === null ? null : { role: row.grant_role, forMs: row.grant_for_ms ?? 0 },
      reason: row.reason,
      approvers: JSON.parse(row.approvers) as ApproverRule,
      status: row.status,
      createdAt: row.created_at,
      expiresAt: row.expires_at,
      decisions,
    };
  }
}

export function mayDecide(rule: ApproverRule, approver: Approver): boolean {
  return (
    rule.identities.includes(approver.name) || approver.groups.some((group) => rule.groups.includes(group))
  );
}

export function approversText(rule: ApproverRule): string {
  const parts = [
    ...(rule.groups.length > 0 ? [`groups ${rule.groups.join(', ')}`] : []),
    ...(rule.identities.length > 0 ? [`identities ${rule.identities.join(', ')}`] : []),
  ];
  return parts.length === 0 ? 'no approvers are configured' : `approvers: ${parts.join('; ')}`;
}
