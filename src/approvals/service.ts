/**
 * The approval service of one Warden instance: turns a held statement into
 * a request in the store, shows it on the channels, and tells the session
 * how it ended. Decisions come back through `decide` (Slack, webhooks: this
 * process) or straight into the store (the CLI, another process): while any
 * statement is held, the service reads the statuses of its requests every
 * POLL_MS, so a decision reaches the session whichever way it came.
 *
 * Every request, decision and ending is an audit event. A request that
 * cannot be stored is a refusal (fail closed): nothing runs unapproved.
 */
import type { ApprovalEvent } from '../audit/events.ts';
import { accessOf } from '../audit/statement.ts';
import type { AuditSink } from '../audit/writer.ts';
import type { IdentityConfig } from '../config/index.ts';
import type { Review, SessionInfo } from '../policy/decision.ts';
import type { ErrorDetails } from '../proxy/replies.ts';
import type { ApprovalStore, Approver } from './store.ts';
import type { ApprovalChannel, ApprovalRequest, ApproverRule, DecideRequest, DecideResult } from './types.ts';

export interface ApprovalSettings {
  readonly approvers: ApproverRule;
  readonly timeoutMs: number;
  readonly keepAliveMs: number;
  /** hold: the statement waits on its connection; async: refused at once, and may run once approved. */
  readonly mode: 'hold' | 'async';
  /** Async mode: how long an approved statement may be run. */
  readonly asyncWindowMs: number;
  /** This instance, as its audit chain names it. */
  readonly instance: string;
  /** Where people approve: a URL, or how, for the notice the client reads. */
  readonly where: string;
}

export type HoldOutcome =
  | { readonly kind: 'approved'; readonly request: ApprovalRequest }
  | { readonly kind: 'refused'; readonly error: ErrorDetails };

export interface Hold {
  readonly request: ApprovalRequest;
  readonly outcome: Promise<HoldOutcome>;
  /** The client cancelled (CancelRequest) or went away: the request is withdrawn. */
  withdraw(why: 'cancelled' | 'disconnected'): void;
}

/** What a review comes to for a session. */
export type Asked =
  | { readonly kind: 'hold'; readonly hold: Hold }
  | { readonly kind: 'approved'; readonly request: ApprovalRequest }
  | { readonly kind: 'refused'; readonly error: ErrorDetails };

interface Held {
  readonly request: ApprovalRequest;
  readonly session: SessionInfo;
  readonly resolve: (outcome: HoldOutcome) => void;
  readonly timer: NodeJS.Timeout;
  /** Why it was withdrawn, when it was. */
  withdrawn?: 'cancelled' | 'disconnected' | 'stopping';
}

/** How often held requests' statuses are read from the store (decisions made by other processes). */
const POLL_MS = 250;

export class ApprovalService {
  private readonly held = new Map<string, Held>();
  private poller: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: ApprovalStore,
    private settings: ApprovalSettings,
    private identities: readonly IdentityConfig[],
    private readonly channels: readonly ApprovalChannel[],
    private readonly audit: AuditSink | undefined,
    private readonly now: () => number = Date.now,
  ) {}

  /** Statements held by this instance before a restart went with their connections: withdrawn. */
  start(): number {
    return this.store.withdrawHeldBy(this.settings.instance);
  }

  /** A reloaded config's approval settings and identities, for requests made from now on. */
  reload(settings: ApprovalSettings, identities: readonly IdentityConfig[]): void {
    this.settings = settings;
    this.identities = identities;
  }

  get keepAliveMs(): number {
    return this.settings.keepAliveMs;
  }

  get where(): string {
    return this.settings.where;
  }

  get heldCount(): number {
    return this.held.size;
  }

  /** A statement a rule holds for review: hold it, or (async mode) refuse it or let an approved one run. */
  ask(session: SessionInfo, review: Review, parameters: readonly (string | null)[] | null): Asked {
    const sql = review.sql ?? '';
    const { mode } = this.settings;
    try {
      if (mode === 'async') {
        const approved = this.store.approvedFor(session.identity.name, session.target.name, sql, parameters);
        if (approved) return { kind: 'approved', request: approved };
        const pending = this.store.pendingFor(session.identity.name, session.target.name, sql, parameters);
        if (pending) return { kind: 'refused', error: this.asyncRefusal(pending) };
      }
      const request = this.store.create({
        kind: 'statement',
        identity: session.identity.name,
        target: session.target.name,
        sql,
        parameters,
        fingerprint: review.fingerprint ?? null,
        tables: review.statements ? [...new Set(accessOf(review.statements).tables.map((t) => t.table))] : [],
        rule: review.rule ?? null,
        message: review.message,
        grant: null,
        reason: '',
        approvers: this.settings.approvers,
        mode,
        instance: this.settings.instance,
        timeoutMs: this.settings.timeoutMs,
        ...(mode === 'async' ? { validForMs: this.settings.asyncWindowMs } : {}),
      });
      this.record(request, 'approval.request', {
        identity: request.identity,
        session: session.tag,
        detail: `held by rule ${request.rule ?? '(default)'}`,
      });
      this.publish(request);
      if (mode === 'async') return { kind: 'refused', error: this.asyncRefusal(request) };
      return { kind: 'hold', hold: this.hold(request, session) };
    } catch (error) {
      return {
        kind: 'refused',
        error: {
          sqlstate: '58030',
          message: `Warden cannot record an approval request (${(error as Error).message}), so the statement does not run`,
        },
      };
    }
  }

  /** A decision from a channel of this process (Slack, a webhook, the API). */
  readonly decide: DecideRequest = async (id, decision) => {
    const approver = this.approver(decision.by);
    let result: DecideResult;
    try {
      result = this.store.decide(id, approver, decision);
    } catch (error) {
      return { ok: false, error: `the decision could not be stored: ${(error as Error).message}` };
    }
    if (result.ok) {
      this.recordDecision(result.request, decision);
      if (result.request.status !== 'pending') this.settled(result.request);
    }
    return result;
  };

  /** Withdraws every held request: Warden is stopping. */
  close(): void {
    for (const held of this.held.values()) this.withdraw(held, 'stopping');
    clearInterval(this.poller);
    this.poller = undefined;
  }

  /** The identity whose configured email this is (Slack users are matched by verified email). */
  identityByEmail(email: string): string | undefined {
    const wanted = email.toLowerCase();
    return this.identities.find((identity) => identity.email?.toLowerCase() === wanted)?.name;
  }

  /** The identity named, as an approver: its config groups. */
  approver(name: string): Approver | undefined {
    const identity = this.identities.find((candidate) => candidate.name === name);
    return identity && { name: identity.name, groups: identity.groups };
  }

  private hold(request: ApprovalRequest, session: SessionInfo): Hold {
    let resolve!: (outcome: HoldOutcome) => void;
    const outcome = new Promise<HoldOutcome>((done) => {
      resolve = done;
    });
    const timer = setTimeout(
      () => this.expire(request.id),
      Math.max(0, Date.parse(request.expiresAt) - this.now()),
    );
    timer.unref();
    const held: Held = { request, session, resolve, timer };
    this.held.set(request.id, held);
    this.poller ??= setInterval(() => this.poll(), POLL_MS);
    this.poller.unref();
    return { request, outcome, withdraw: (why) => this.withdraw(held, why) };
  }

  private expire(id: string): void {
    try {
      if (this.store.settle(id, 'expired')) {
        const request = this.store.get(id);
        if (request) this.settled(request);
        return;
      }
    } catch {
      // The store is down: the statement is refused all the same (below).
    }
    // Decided meanwhile by another process: the poll reads it; if the store fails, refuse.
    this.poll();
    const held = this.held.get(id);
    if (held) this.finish(held, { kind: 'refused', error: timedOut(held.request, this.settings) });
  }

  private withdraw(held: Held, why: 'cancelled' | 'disconnected' | 'stopping'): void {
    const { id } = held.request;
    if (this.held.get(id) !== held) return;
    held.withdrawn = why;
    try {
      if (this.store.settle(id, 'withdrawn')) {
        this.settled(this.store.get(id) ?? { ...held.request, status: 'withdrawn' });
        return;
      }
      this.poll(); // decided just now, elsewhere: that decision settles it
    } catch {
      // The store is down: refused below all the same.
    }
    this.finish(held, outcomeOf({ ...held.request, status: 'withdrawn' }, held, this.settings));
  }

  /** Reads the statuses of the held requests; settles those that were decided elsewhere. */
  private poll(): void {
    if (this.held.size === 0) {
      clearInterval(this.poller);
      this.poller = undefined;
      return;
    }
    let statuses: Map<string, string>;
    try {
      statuses = this.store.statuses([...this.held.keys()]);
    } catch {
      return; // The store is down: the requests time out.
    }
    for (const [id, status] of statuses) {
      if (status === 'pending') continue;
      const request = this.store.get(id);
      if (request) this.settled(request);
    }
  }

  /** A request has ended: the session is told, the channels shown, the trail told. */
  private settled(request: ApprovalRequest): void {
    const held = this.held.get(request.id);
    if (held === undefined && request.status === 'pending') return;
    const reason =
      request.status === 'withdrawn'
        ? withdrawnWhy(held?.withdrawn)
        : request.status === 'expired'
          ? `no decision within ${Math.round(this.settings.timeoutMs / 1000)} s`
          : '';
    this.record(request, 'approval.settle', {
      identity: request.identity,
      session: held?.session.tag ?? null,
      detail: request.status,
      reason,
    });
    for (const channel of this.channels) void channel.settled(request);
    if (held) this.finish(held, outcomeOf(request, held, this.settings));
  }

  private finish(held: Held, outcome: HoldOutcome): void {
    if (this.held.get(held.request.id) !== held) return;
    this.held.delete(held.request.id);
    clearTimeout(held.timer);
    held.resolve(outcome);
  }

  private publish(request: ApprovalRequest): void {
    for (const channel of this.channels) void channel.published(request);
  }

  private recordDecision(
    request: ApprovalRequest,
    decision: {
      readonly by: string;
      readonly verdict: string;
      readonly reason: string;
      readonly channel: string;
    },
  ): void {
    this.record(request, 'approval.decision', {
      identity: decision.by,
      session: null,
      detail: decision.verdict,
      reason: decision.reason,
      channel: decision.channel,
    });
  }

  private record(
    request: ApprovalRequest,
    type: ApprovalEvent['type'],
    fields: Pick<ApprovalEvent, 'identity' | 'session' | 'detail'> &
      Partial<Pick<ApprovalEvent, 'reason' | 'channel'>>,
  ): void {
    this.audit?.record(approvalEvent(request, type, fields, this.now()));
  }

  private asyncRefusal(request: ApprovalRequest): ErrorDetails {
    return {
      sqlstate: '42501',
      message: `${request.message}; approval request ${request.id} is pending: once it is approved, run this exact statement again`,
      hint: `Approve it: ${this.settings.where.replaceAll('<id>', request.id)}`,
    };
  }
}

export function approvalEvent(
  request: ApprovalRequest,
  type: ApprovalEvent['type'],
  fields: Pick<ApprovalEvent, 'identity' | 'session' | 'detail'> &
    Partial<Pick<ApprovalEvent, 'reason' | 'channel'>>,
  atMs: number,
): ApprovalEvent {
  return {
    type,
    at: new Date(atMs).toISOString(),
    identity: fields.identity,
    request: request.id,
    target: request.target,
    session: fields.session,
    detail: fields.detail,
    reason: fields.reason ?? '',
    channel: fields.channel ?? '',
  };
}

function outcomeOf(request: ApprovalRequest, held: Held, settings: ApprovalSettings): HoldOutcome {
  switch (request.status) {
    case 'approved':
      return { kind: 'approved', request };
    case 'rejected': {
      const rejection = request.decisions.find((d) => d.verdict === 'reject');
      return {
        kind: 'refused',
        error: {
          sqlstate: '42501',
          message: `approval request ${request.id} was rejected by ${rejection?.by ?? 'an approver'}: ${rejection?.reason ?? ''}`,
        },
      };
    }
    case 'expired':
      return { kind: 'refused', error: timedOut(request, settings) };
    default:
      return {
        kind: 'refused',
        error:
          held.withdrawn === 'cancelled'
            ? {
                sqlstate: '57014',
                message: `canceling statement due to user request (approval request ${request.id} withdrawn)`,
              }
            : {
                sqlstate: '57P01',
                message: `approval request ${request.id} was withdrawn: ${withdrawnWhy(held.withdrawn)}`,
              },
      };
  }
}

function timedOut(request: ApprovalRequest, settings: ApprovalSettings): ErrorDetails {
  return {
    sqlstate: '57014',
    message: `approval request ${request.id} timed out: no decision within ${Math.round(settings.timeoutMs / 1000)} s`,
    hint: 'Ask an approver to look at it sooner, then run the statement again.',
  };
}

function withdrawnWhy(why: Held['withdrawn']): string {
  switch (why) {
    case 'cancelled':
      return 'the client cancelled the statement';
    case 'disconnected':
      return 'the client disconnected';
    case 'stopping':
      return 'Warden is stopping';
    default:
      return 'Warden restarted while it was held';
  }
}
