/**
 * Approvals: what a held statement (policy action `review`) or a
 * just-in-time grant asks for, who may decide it, and what was decided. One
 * service (src/approvals/service.ts) keeps requests in the store and tells
 * the session holding a statement; channels (CLI, Slack, signed webhooks,
 * later the dashboard) only show requests and bring decisions back to it.
 */

export type RequestStatus = 'pending' | 'approved' | 'rejected' | 'expired' | 'withdrawn' | 'revoked';

export type Verdict = 'approve' | 'reject';

/** Where a decision came from. */
export type Channel = 'cli' | 'slack' | 'webhook' | 'api';

export interface ApprovalDecision {
  /** The Warden identity that decided (a Slack user is matched to one by verified email). */
  readonly by: string;
  readonly verdict: Verdict;
  readonly reason: string;
  readonly channel: Channel;
  /** ISO time. */
  readonly at: string;
}

export interface ApproverRule {
  /** Identities in any of these groups may decide. */
  readonly groups: readonly string[];
  /** These identities may decide. */
  readonly identities: readonly string[];
  /** Approvals needed (by different identities); one rejection rejects. */
  readonly minApprovals: number;
}

export interface ApprovalRequest {
  /** apr_ followed by random base32: what people type and click. */
  readonly id: string;
  readonly kind: 'statement' | 'grant';
  /** Who asked: the session's identity, or the grant's requester. */
  readonly identity: string;
  readonly target: string;
  /** The statement as sent (approvers must see what they approve; the audit trail stores it redacted). */
  readonly sql: string | null;
  /** Bind parameters in text form, when the statement has them (null for a Query). */
  readonly parameters: readonly (string | null)[] | null;
  readonly fingerprint: string | null;
  /** Tables the statement touches, as `schema.table` or as written. */
  readonly tables: readonly string[];
  /** The rule that asked for review, and why. */
  readonly rule: string | null;
  readonly message: string;
  /** For a grant: the role asked for, for how long, and why. */
  readonly grant: { readonly role: string; readonly forMs: number } | null;
  /** The requester's own words (grants; empty for a held statement). */
  readonly reason: string;
  readonly approvers: ApproverRule;
  readonly status: RequestStatus;
  readonly createdAt: string;
  /** When a pending request expires. */
  readonly expiresAt: string;
  readonly decisions: readonly ApprovalDecision[];
}

/**
 * A channel that shows requests to approvers (Slack, a webhook). `published`
 * is told of each new request, `settled` of its final status; both must not
 * throw (a channel that is down is logged, never blocks the statement).
 */
export interface ApprovalChannel {
  readonly name: string;
  published(request: ApprovalRequest): Promise<void>;
  settled(request: ApprovalRequest): Promise<void>;
}

/** What a channel calls to bring a decision back; resolves with the request after it, or an error to show. */
export type DecideRequest = (
  id: string,
  decision: {
    readonly by: string;
    readonly verdict: Verdict;
    readonly reason: string;
    readonly channel: Channel;
  },
) => Promise<DecideResult>;

export type DecideResult =
  | { readonly ok: true; readonly request: ApprovalRequest }
  | { readonly ok: false; readonly error: string };
