/**
 * A live session after login: the client and its upstream connection, with
 * the decision point between them.
 *
 * Client → server: messages are framed (bounded) and every Query, Parse,
 * Bind and FunctionCall is judged by `decide` before it goes on (an Execute
 * runs the portal its Bind was judged for). Allowed messages are forwarded
 * as the original bytes, in runs: a chunk whose messages are all allowed is
 * written as one slice, with no copy.
 *
 * A refused message never reaches the server. The session is left exactly
 * as PostgreSQL would leave it, by letting the server itself fail: Warden
 * sends, in the refused message's place, one that is certain to fail (a
 * syntax error), and shows the client its own error instead of the
 * server's. So a refused Query inside a transaction block fails the
 * server's transaction too (a later COMMIT rolls back), a refused
 * extended-protocol message makes the server discard up to Sync (and roll
 * back an implicit transaction), and every ReadyForQuery, with its status,
 * still comes from the server, in order.
 *
 * Server → client: bytes are forwarded as they arrive. A scanner follows
 * message boundaries (without holding any message) so that the response
 * tracker knows which forwarded message each reply answers; replies that a
 * decision's transform must see are framed whole.
 */
import type { Duplex } from 'node:stream';
import type { ApprovalService, Hold, HoldOutcome } from '../approvals/service.ts';
import { StatementTrace } from '../audit/statement.ts';
import type { AuditSink } from '../audit/writer.ts';
import type {
  Allow,
  Decide,
  Decision,
  DecisionContext,
  Deny,
  Effects,
  ResultTransform,
  Review,
  SessionInfo,
  StatementSource,
} from '../policy/decision.ts';
import { describeType } from '../protocol/postgres/codec.ts';
import { ProtocolViolation } from '../protocol/postgres/errors.ts';
import { writeParse } from '../protocol/postgres/extended.ts';
import { Framer } from '../protocol/postgres/framer.ts';
import { Code } from '../protocol/postgres/messages.ts';
import { Output } from '../protocol/postgres/output.ts';
import { commandTagOf, sqlstateOf, writeQuery } from '../protocol/postgres/query.ts';
import { Reader } from '../protocol/postgres/reader.ts';
import { MessageScanner } from '../protocol/postgres/scanner.ts';
import { Writer } from '../protocol/postgres/writer.ts';
import { type ErrorDetails, errorResponse, noticeResponse } from './replies.ts';
import { Expect, type Expected, PLAIN, ResponseTracker } from './responses.ts';
import { cancelUpstream, type Upstream } from './upstream.ts';

const TERMINATE = Buffer.from([Code.Terminate, 0, 0, 0, 4]);
const FLUSH = Buffer.from([Code.Flush, 0, 0, 0, 4]);
/** A transformed result holds one server message at a time; PostgreSQL caps a field at 1 GB. */
const MAX_SERVER_MESSAGE = 0x7fffffff;
/** What Warden sends in a refused message's place: a syntax error, so it can never run. */
const REFUSED_SQL = '/* warden: statement refused */ WARDEN REFUSED';
/** A portal: what its Bind decided, and what its results need to be read. */
interface Portal {
  readonly decision: Allow;
  readonly mark: number;
  readonly statement: string;
  /** The result format codes of the Bind (none: all text; one: for all columns). */
  readonly resultFormats: readonly number[];
  /** Its RowDescription has gone (or will go) through its transform. */
  described: boolean;
}

/** The result format codes of a Bind, read from after the statement name. */
function resultFormatsOf(r: Reader): number[] {
  const parameterFormats = r.int16();
  for (let i = 0; i < parameterFormats; i++) r.int16();
  const parameters = r.int16();
  for (let i = 0; i < parameters; i++) {
    const length = r.int32();
    if (length > 0) r.bytes(length);
  }
  const count = r.int16();
  const formats: number[] = [];
  for (let i = 0; i < count; i++) formats.push(r.int16());
  return formats;
}

/** A copy of a RowDescription frame with each column's format as a Bind's result formats say. */
function withFormats(frame: Buffer, formats: readonly number[]): Buffer {
  const out = Buffer.from(frame);
  const count = out.readInt16BE(5);
  let at = 7;
  for (let i = 0; i < count; i++) {
    at = out.indexOf(0, at) + 1 + 4 + 2 + 4 + 2 + 4; // name, table, attnum, type, size, modifier
    out.writeInt16BE(formats.length === 0 ? 0 : formats.length === 1 ? formats[0]! : (formats[i] ?? 0), at);
    at += 2;
  }
  return out;
}

/** A prepared statement whose existence or text the server has not confirmed: refused until it has. */
const UNKNOWN = Symbol('unknown prepared statement');
/** The statement name of that stand-in when the refused message was not a Parse (never created). */
const REFUSED_NAME = 'warden.refused';

export interface SessionOptions {
  readonly maxMessageSize: number;
  readonly decide: Decide;
  readonly onClose: (session: Session) => void;
  /** The audit trail (and the metrics, which count the same events): every statement judged is recorded in it. */
  readonly audit?: AuditSink;
  /** Told what only the data path sees: time spent rewriting results, sessions ended by a failure. */
  readonly observer?: SessionObserver;
  /** Where statements a rule holds for review wait for people (none: they are refused). */
  readonly approvals?: ApprovalService;
}

/** A statement held for approval, with the client's later messages waiting behind it. */
interface Held {
  readonly hold: Hold;
  readonly keepAlive: NodeJS.Timeout;
  /** A notice waiting for a moment between the server's replies. */
  notice: Buffer | undefined;
}

export interface SessionObserver {
  timed(stage: 'masking', ms: number): void;
  sessionFailed(reason: 'protocol' | 'internal' | 'server-lost'): void;
}

export class Session {
  private static readonly byInfo = new WeakMap<SessionInfo, Session>();

  /** The live session of a SessionInfo (what decisions and their transforms know a session by). */
  static of(info: SessionInfo): Session | undefined {
    return Session.byInfo.get(info);
  }

  private readonly framer: Framer;
  private readonly scanner = new MessageScanner();
  private readonly responses = new ResponseTracker();
  /**
   * SQL by prepared-statement name ('' = unnamed), protocol Parse and SQL
   * PREPARE alike (they share the server's namespace). Entered when the
   * Parse is forwarded, taken back if the server refuses it.
   */
  private readonly statements = new Map<string, string | typeof UNKNOWN>();
  /**
   * The decision of each portal's Bind, by portal name: its Execute runs what
   * was judged. `mark` tells when the Bind was sent: a portal does not
   * outlive the transaction it was made in.
   */
  private readonly portals = new Map<string, Portal>();
  /**
   * The RowDescription the server last gave for each prepared statement (from
   * a Describe of it or of a portal bound to it): a result transform that
   * must read the columns gets it when a driver Executes without Describing.
   * Kept only for statements whose results are transformed (null: none seen yet).
   */
  private readonly rowShapes = new Map<string, Buffer | null>();
  /**
   * Every schema this session's search_path has named (at startup or by
   * SET): an unqualified table may be in any of them. It only grows, so a
   * SET LOCAL, a rolled-back SET or a failed one can never narrow it.
   */
  private searchPath: readonly string[] | undefined;
  /**
   * SQL cursors declared through this session: the DECLARE's text (FETCH is masked as what it
   * selected) and whether it outlives its transaction. Forgotten at CLOSE, at DISCARD ALL, when
   * its DECLARE failed, and at the end of its transaction.
   */
  private readonly cursors = new Map<string, { readonly sql: string; readonly holdable: boolean }>();
  /** The client said Terminate: what it sent before is answered, then the session ends. */
  private terminating = false;
  /** The statement held for approval: the client is not read, and what it sent after waits here. */
  private held: Held | undefined;
  private readonly backlog: Buffer[] = [];
  /** Warden refused an extended-protocol message: the client's messages up to Sync are dropped, as the server would. */
  private discarding = false;
  /** True while the server's bytes are framed whole for a transform. */
  private framing = false;
  private readonly serverFramer = new Framer(MAX_SERVER_MESSAGE);
  /** Where the slow path writes a chunk's messages (kept for the next chunk once the socket is done with it). */
  private readonly output = new Output();
  private closed = false;
  /** Statements judged (run or refused): for the connection's audit record. */
  statementCount = 0;
  /** The refusal the audit trail itself gave: such a statement cannot be recorded in it. */
  private auditRefused: Deny | undefined;
  /** Reading paused on one side until the other side's write buffer drains (one listener each). */
  private clientHeld = false;
  private serverHeld = false;
  /** Client reading paused because the client does not read what it is sent. */
  private repliesHeld = false;
  // The run of allowed frames not yet written upstream (a slice of one buffer).
  private runBuffer: Buffer | null = null;
  private runStart = 0;
  private runEnd = 0;

  constructor(
    readonly info: SessionInfo,
    private readonly client: Duplex,
    private readonly upstream: Upstream,
    private readonly options: SessionOptions,
  ) {
    this.framer = new Framer(options.maxMessageSize);
    this.framer.typed = true;
    Session.byInfo.set(info, this);
    this.searchPath = info.searchPath;
    this.serverFramer.typed = true;
  }

  /** Flow-control state, for health views and tests of backpressure. */
  get flow(): {
    readonly bufferedToClient: number;
    readonly serverPaused: boolean;
    readonly clientPaused: boolean;
  } {
    return {
      bufferedToClient: this.client.writableLength,
      serverPaused: this.upstream.socket.isPaused(),
      clientPaused: this.client.isPaused(),
    };
  }

  /** Starts relaying; `clientBytes` are bytes the client sent before the session began. */
  start(clientBytes: Buffer): void {
    const { client } = this;
    const server = this.upstream.socket;
    client.on('data', this.onClientData);
    server.on('data', this.onServerData);
    client.on('error', () => this.close());
    server.on('error', () => this.serverLost());
    client.on('close', () => this.close());
    server.on('close', () => this.serverLost());
    client.on('end', () => this.close());
    if (this.upstream.leftover.length > 0) this.onServerData(this.upstream.leftover);
    if (clientBytes.length > 0) this.onClientData(clientBytes);
    client.resume();
    server.resume();
  }

  // ------------------------------------------------------------ client side

  private readonly onClientData = (chunk: Buffer): void => {
    try {
      this.framer.push(chunk, this.onClientFrame);
      this.flushRun();
    } catch (error) {
      if (error instanceof ProtocolViolation) this.protocolViolation(error);
      else this.internalError(error as Error);
    }
  };

  private readonly onClientFrame = (
    type: number,
    buffer: Buffer,
    start: number,
    bodyStart: number,
    end: number,
  ) => {
    if (this.closed) return;
    if (this.held !== undefined) {
      // Behind a held statement, in order: a copy, as the framer may reuse its buffer.
      this.backlog.push(Buffer.from(buffer.subarray(start, end)));
      return;
    }
    if (this.discarding) {
      this.discard(type, buffer, start, end);
      return;
    }
    switch (type) {
      case Code.Query: {
        const sql = new Reader(buffer, bodyStart, end).cstring();
        const decision = this.judge('query', sql, undefined);
        if (decision.action === 'review') {
          const frame = Buffer.from(buffer.subarray(start, end));
          return this.review(decision, Expect.Query, null, (allowed) =>
            this.runQuery(allowed, frame, 0, frame.length),
          );
        }
        if (decision.action === 'deny') return this.refuse(decision, Expect.Query);
        this.runQuery(decision, buffer, start, end);
        return;
      }
      case Code.Parse: {
        const r = new Reader(buffer, bodyStart, end);
        const name = r.cstring();
        const sql = r.cstring();
        if (name !== '' && this.statements.has(name)) {
          return this.refuse(this.error('parse', sql, duplicateStatement(name)), Expect.Parse, name);
        }
        const judged = this.judge('parse', sql, name);
        // A Parse runs nothing: what a rule holds for review is held at its Bind.
        const decision = judged.action === 'review' ? judged.approved : judged;
        if (decision.action === 'deny') return this.refuse(decision, Expect.Parse, name);
        this.statements.set(name, sql);
        if (decision.transform) this.rowShapes.set(name, null);
        else this.rowShapes.delete(name);
        this.forward(buffer, start, end);
        // A Parse the server refuses creates nothing (and an unnamed one drops the old unnamed statement).
        this.responses.sent({ kind: Expect.Parse, settled: (ok) => ok || this.forgetStatement(name, sql) });
        return;
      }
      case Code.Bind: {
        const r = new Reader(buffer, bodyStart, end);
        const portal = r.cstring();
        const statement = r.cstring();
        const sql = this.statements.get(statement);
        if (typeof sql !== 'string') {
          // Fail closed: Warden judges only what it knows a name holds.
          return this.refuse(this.error('bind', undefined, missingStatement(statement, sql)), Expect.Bind);
        }
        const decision = this.judge('bind', sql, statement);
        if (decision.action === 'review') {
          const frame = Buffer.from(buffer.subarray(start, end));
          return this.review(decision, Expect.Bind, bindParameters(frame), (allowed) =>
            this.runBind(allowed, portal, statement, heldReader(frame), frame, 0, frame.length),
          );
        }
        if (decision.action === 'deny') return this.refuse(decision, Expect.Bind);
        this.runBind(decision, portal, statement, r, buffer, start, end);
        return;
      }
      case Code.Execute: {
        const portal = new Reader(buffer, bodyStart, end).cstring();
        const bound = this.portals.get(portal);
        if (bound === undefined || this.responses.mayHaveEndedSince(bound.mark)) {
          // Gone with its transaction, or may be (a SQL cursor of the same name is not what was judged).
          this.portals.delete(portal);
          return this.refuse(this.error('execute', undefined, missingPortal(portal)), Expect.Execute);
        }
        const { decision } = bound;
        this.forward(buffer, start, end);
        const { transform } = decision;
        this.responses.sent(
          this.traced(
            this.expectation(
              Expect.Execute,
              transform && !bound.described
                ? { ...decision, transform: this.primed(bound, transform) }
                : decision,
            ),
            decision,
            'execute',
          ),
        );
        return;
      }
      case Code.FunctionCall: {
        const functionOid = new Reader(buffer, bodyStart, end).uint32();
        const decision = this.judge('function-call', undefined, undefined, functionOid);
        // The engine refuses every FunctionCall; a hook that would hold one cannot: refused too.
        if (decision.action === 'review') {
          const refusal = reviewRefused(decision, { sqlstate: '42501', message: decision.message });
          return this.refuse(refusal, Expect.FunctionCall);
        }
        if (decision.action === 'deny') return this.refuse(decision, Expect.FunctionCall);
        this.forward(buffer, start, end);
        this.responses.sent(this.traced(this.expectation(Expect.FunctionCall, decision), decision));
        return;
      }
      case Code.Close: {
        const r = new Reader(buffer, bodyStart, end);
        const target = r.byte();
        const name = r.cstring();
        this.forward(buffer, start, end);
        if (target !== 0x53 /* S */) {
          this.portals.delete(name);
          this.responses.sent(PLAIN[Expect.Close]);
          return;
        }
        // Unknown until the server confirms: a Close it discards leaves the statement in place.
        const before = this.statements.get(name);
        if (before !== undefined) this.statements.set(name, UNKNOWN);
        this.responses.sent({
          kind: Expect.Close,
          settled: (ok) => {
            if (this.statements.get(name) !== UNKNOWN) return;
            if (ok) {
              this.statements.delete(name);
              this.rowShapes.delete(name);
            } else if (before !== undefined) this.statements.set(name, before);
          },
        });
        return;
      }
      case Code.Describe: {
        this.forward(buffer, start, end);
        const r = new Reader(buffer, bodyStart, end);
        const target = r.byte();
        const name = r.cstring();
        if (target === 0x53 /* S */) {
          this.responses.sent(
            this.rowShapes.has(name)
              ? { kind: Expect.Describe, transform: this.keepRowShape(name) }
              : PLAIN[Expect.Describe],
          );
          return;
        }
        // A portal's RowDescription goes through its decision's transform (masking reads the columns there).
        const bound = this.portals.get(name);
        const transform = bound?.decision.transform;
        if (bound === undefined || !transform) {
          this.responses.sent(PLAIN[Expect.Describe]);
          return;
        }
        bound.described = true;
        const keep = this.keepRowShape(bound.statement);
        this.responses.sent({
          kind: Expect.Describe,
          transform: { message: (type, frame) => transform.message(type, keep.message(type, frame)) },
        });
        return;
      }
      case Code.Sync:
        this.forward(buffer, start, end);
        this.responses.sent(PLAIN[Expect.Sync]);
        return;
      case Code.CopyDone:
      case Code.CopyFail:
        this.forward(buffer, start, end);
        this.responses.sent(PLAIN[Expect.CopyEnd]);
        return;
      case Code.Flush:
      case Code.CopyData:
        this.forward(buffer, start, end);
        return;
      case Code.Terminate:
        this.terminate();
        return;
      default:
        throw new ProtocolViolation(`unexpected message type ${describeType(type)} from the client`);
    }
  };

  /** Runs an allowed Query: its effects on what the session knows, then forwarded and traced. */
  private runQuery(decision: Allow, buffer: Buffer, start: number, end: number): void {
    const effects = decision.effects;
    const refusal = effects && this.applyEffects(effects);
    if (refusal) {
      this.refuse(refusal, Expect.Query);
      return;
    }
    this.forward(buffer, start, end);
    const entry = this.expectation(Expect.Query, decision);
    this.responses.sent(
      this.traced(effects ? { ...entry, settled: (ok) => this.settleEffects(effects, ok) } : entry, decision),
    );
  }

  /**
   * Runs an allowed Bind: its portal remembers the decision its Execute runs
   * under. `r` is past the Bind's two names (its result formats are read from there).
   */
  private runBind(
    decision: Allow,
    portal: string,
    statement: string,
    r: Reader,
    buffer: Buffer,
    start: number,
    end: number,
  ): void {
    const bound: Portal = {
      decision,
      mark: this.responses.mark,
      statement,
      // Only a result transform needs the result formats (see primeTransform).
      resultFormats: decision.transform ? resultFormatsOf(r) : [],
      described: false,
    };
    this.portals.set(portal, bound);
    this.forward(buffer, start, end);
    this.responses.sent({ kind: Expect.Bind, settled: (ok) => ok || this.forgetPortal(portal, bound) });
  }

  /**
   * A statement a rule holds for review. Nothing reaches the server until it
   * is approved: the client is not read meanwhile (what it had sent already
   * waits in the backlog, in order) and reads notices saying where to
   * approve. Approved, it runs as allowed; otherwise it is refused as any
   * refused statement is, and the session goes on.
   */
  private review(
    decision: Review,
    kind: typeof Expect.Query | typeof Expect.Bind,
    parameters: readonly (string | null)[] | null,
    run: (allowed: Allow) => void,
  ): void {
    const approvals = this.options.approvals;
    if (approvals === undefined) {
      const hint =
        'Approvals are not set up in this Warden: ask an administrator to run it, or to change the rule.';
      this.refuse(reviewRefused(decision, { sqlstate: '42501', message: decision.message, hint }), kind);
      return;
    }
    this.flushRun();
    const asked = approvals.ask(this.info, decision, parameters);
    if (asked.kind === 'approved') {
      run(decision.approved);
      return;
    }
    if (asked.kind === 'refused') {
      this.refuse(reviewRefused(decision, asked.error), kind);
      return;
    }
    const { hold } = asked;
    const { id, expiresAt } = hold.request;
    const where = approvals.where.replaceAll('<id>', id);
    const held: Held = {
      hold,
      notice: noticeResponse(
        `Warden is holding this statement for approval: request ${id} (${decision.message})`,
        `Approve or reject it: ${where}. It waits until ${expiresAt}; cancel (Ctrl-C) to withdraw it.`,
      ),
      keepAlive: setInterval(() => {
        const left = Math.max(0, Math.round((Date.parse(expiresAt) - Date.now()) / 1000));
        held.notice = noticeResponse(`still waiting for approval of request ${id} (${left} s left)`);
        this.speak();
      }, approvals.keepAliveMs),
    };
    held.keepAlive.unref();
    this.held = held;
    this.client.pause();
    // The server keeps the replies to a pipeline's earlier messages (a Parse) until Sync or Flush,
    // which now wait behind the held Bind: a Flush lets them out, so the notice can follow.
    if (!this.responses.idle) this.writeUpstream(FLUSH);
    this.speak();
    void hold.outcome.then((outcome) => this.released(held, outcome, decision, kind, run));
  }

  /** The held statement's request has ended: it runs or is refused, then what waited behind it goes on. */
  private released(
    held: Held,
    outcome: HoldOutcome,
    decision: Review,
    kind: typeof Expect.Query | typeof Expect.Bind,
    run: (allowed: Allow) => void,
  ): void {
    clearInterval(held.keepAlive);
    if (this.held !== held) return;
    this.held = undefined;
    if (this.closed) return;
    try {
      if (outcome.kind === 'approved') run(decision.approved);
      else this.refuse(reviewRefused(decision, outcome.error), kind);
      while (this.backlog.length > 0 && this.held === undefined && !this.closed) {
        const frame = this.backlog.shift()!;
        this.onClientFrame(frame[0]!, frame, 0, 5, frame.length);
      }
      this.flushRun();
    } catch (error) {
      if (error instanceof ProtocolViolation) this.protocolViolation(error);
      else this.internalError(error as Error);
      return;
    }
    if (this.held === undefined && !this.clientHeld && !this.repliesHeld) this.client.resume();
  }

  /**
   * Writes the held statement's notice once the client can be told
   * something between the server's replies: nothing unanswered before it,
   * and the server's bytes at a message boundary.
   */
  private speak(): void {
    const held = this.held;
    if (held?.notice === undefined || this.closed) return;
    if (!this.responses.idle || !this.scanner.atBoundary || this.framing) return;
    this.writeClient(held.notice);
    held.notice = undefined;
  }

  /** After a refused extended-protocol message: drop everything up to Sync, as the server does after an error. */
  private discard(type: number, buffer: Buffer, start: number, end: number): void {
    switch (type) {
      case Code.Sync:
        this.discarding = false;
        this.forward(buffer, start, end);
        this.responses.sent(PLAIN[Expect.Sync]);
        return;
      case Code.Terminate:
        this.terminate();
        return;
      case Code.Query:
      case Code.Parse:
      case Code.Bind:
      case Code.Execute:
      case Code.Describe:
      case Code.Close:
      case Code.Flush:
      case Code.FunctionCall:
      case Code.CopyData:
      case Code.CopyDone:
      case Code.CopyFail:
        return;
      default:
        throw new ProtocolViolation(`unexpected message type ${describeType(type)} from the client`);
    }
  }

  /** Runs the decision point; a decision that cannot be made is a denial (fail closed). */
  private judge(
    source: StatementSource,
    sql: string | undefined,
    name: string | undefined,
    functionOid?: number,
  ): Decision {
    const refusal = this.options.audit?.refusal;
    if (refusal) {
      this.auditRefused = this.error(source, sql, refusal);
      return this.auditRefused;
    }
    const context: DecisionContext = {
      session: this.info,
      source,
      sql,
      name,
      functionOid,
      prepared: this.preparedSql,
      cursor: this.cursorSql,
      searchPath: this.searchPath,
    };
    try {
      return this.options.decide(context);
    } catch (error) {
      return this.error(source, sql, {
        sqlstate: 'XX000',
        message: `Warden could not judge this statement: ${(error as Error).message}`,
      });
    }
  }

  private readonly cursorSql = (name: string): string | undefined => this.cursors.get(name)?.sql;

  private readonly preparedSql = (name: string): string | undefined => {
    const sql = this.statements.get(name);
    return sql === UNKNOWN ? undefined : sql;
  };

  /** A denial Warden makes itself (names the server would not know), in the shape of a decision. */
  private error(source: StatementSource, sql: string | undefined, details: ErrorDetails): Deny {
    return {
      action: 'deny',
      identity: this.info.identity.name,
      target: this.info.target.name,
      source,
      sql,
      ...details,
    };
  }

  /** The entry of a statement that runs, with what audit gathers while it is answered. */
  private traced(entry: Expected, decision: Allow, source = decision.source): Expected {
    const audit = this.options.audit;
    this.statementCount++;
    if (audit === undefined) return entry;
    const trace = new StatementTrace(decision, source);
    const { settled } = entry;
    const observer = this.options.observer;
    // Time spent in the result's transform (masking): charged while this entry is the oldest unanswered one.
    const spent = entry.transform && observer ? { ms: 0 } : undefined;
    return {
      ...entry,
      trace,
      spent,
      settled: (ok) => {
        settled?.(ok);
        if (spent && spent.ms > 0) observer!.timed('masking', spent.ms);
        audit.record(trace.run(this.info, ok));
      },
    };
  }

  /** A CommandComplete or ErrorResponse for a statement audit traces. */
  private traceReply(trace: StatementTrace, type: number, body: Buffer): void {
    if (type === Code.CommandComplete) trace.commandComplete(commandTagOf(body));
    else trace.failed(sqlstateOf(body) ?? 'XX000');
  }

  /** Masking reports what it masked in the result now streaming: the oldest unanswered statement's. */
  maskedResult(columns: readonly string[], rows: number): void {
    this.responses.head?.trace?.maskedResult(columns, rows);
  }

  private expectation(kind: Expect, decision: Allow): Expected {
    if (decision.statementTimeoutMs !== undefined)
      return this.timed(kind, decision, decision.statementTimeoutMs);
    return decision.transform ? { kind, transform: decision.transform } : PLAIN[kind];
  }

  /**
   * A statement a limit rule gives a timeout: if the server has not answered
   * it in time (counted from when it is the oldest unanswered message),
   * Warden cancels it with the upstream cancel key, and the client reads why.
   */
  private timed(kind: Expect, decision: Allow, timeoutMs: number): Expected {
    let state: 'waiting' | 'running' | 'cancelled' | 'done' = 'waiting';
    let timer: NodeJS.Timeout | undefined;
    const inner = decision.transform;
    const timedOut = errorResponse('ERROR', {
      sqlstate: '57014',
      message: `canceling statement due to statement timeout (${timeoutMs} ms, set by a Warden limit rule)`,
    });
    return {
      kind,
      transform: {
        message: (type, frame) => {
          if (state === 'cancelled' && type === Code.ErrorResponse) return timedOut;
          return inner ? inner.message(type, frame) : frame;
        },
        dataRow: inner?.dataRow && ((buffer, start, end, out) => inner.dataRow!(buffer, start, end, out)),
      },
      // The clock starts when the server is working on it, not while it waits behind others.
      onHead: () => {
        if (state !== 'waiting') return;
        state = 'running';
        timer = setTimeout(() => {
          if (state !== 'running' || this.closed) return;
          state = 'cancelled';
          cancelUpstream(this.info.target, this.upstream.key);
        }, timeoutMs);
        timer.unref();
      },
      settled: () => {
        if (state !== 'cancelled') state = 'done';
        clearTimeout(timer);
      },
    };
  }

  /**
   * Refuses a message: in its place the server gets one that is certain to
   * fail, and the client sees Warden's error instead of the server's. For
   * the extended protocol that is a Parse (named as the refused Parse, so the
   * server forgets an unnamed statement as it would have), and the client's
   * messages are then dropped up to Sync.
   */
  private refuse(decision: Deny, kind: Expect, parseName?: string): void {
    this.flushRun();
    this.statementCount++;
    const audit = this.options.audit;
    if (audit && decision !== this.auditRefused)
      audit.record(new StatementTrace(decision).run(this.info, false));
    const frame = errorResponse('ERROR', decision);
    const transform: ResultTransform = {
      message: (type, original) => (type === Code.ErrorResponse ? frame : original),
    };
    if (kind === Expect.Query || kind === Expect.FunctionCall) {
      this.writeUpstream(queryMessage(REFUSED_SQL));
      this.responses.sent({ kind: Expect.Query, transform });
      return;
    }
    const name = parseName ?? REFUSED_NAME;
    if (name === '') this.statements.delete('');
    this.discarding = true;
    this.writeUpstream(parseMessage(name, REFUSED_SQL));
    this.responses.sent({ kind: Expect.Parse, transform });
  }

  /**
   * Applies what an allowed Query changes, before the server has answered
   * (a pipelined EXECUTE may follow at once); returns the error PostgreSQL
   * would give instead, if any. Names whose fate the answer decides are
   * UNKNOWN until then (see settleEffects).
   */
  private applyEffects(effects: Effects): Deny | undefined {
    for (const { name } of effects.prepared ?? []) {
      if (this.statements.has(name)) return this.error('query', undefined, duplicateStatement(name));
    }
    const deallocated =
      effects.deallocated === 'all' ? [...this.statements.keys()] : (effects.deallocated ?? []);
    for (const name of deallocated) if (this.statements.has(name)) this.statements.set(name, UNKNOWN);
    for (const { name, sql } of effects.prepared ?? []) {
      this.statements.set(name, sql);
      this.rowShapes.delete(name);
    }
    if (effects.closed === 'all') this.cursors.clear();
    for (const name of effects.closed === 'all' ? [] : (effects.closed ?? [])) this.cursors.delete(name);
    for (const { name, sql, holdable } of effects.declared ?? []) this.cursors.set(name, { sql, holdable });
    if (effects.searchPath !== undefined) {
      const added = effects.searchPath ?? this.info.searchPath ?? [];
      this.searchPath = [...new Set([...(this.searchPath ?? this.info.searchPath ?? ['public']), ...added])];
    }
    return undefined;
  }

  /**
   * The Query that carried the effects is answered. Without an error,
   * deallocated names are gone; with one, Warden cannot tell which
   * statements of it ran, so the names it prepared or deallocated stay
   * UNKNOWN: refused until DEALLOCATEd again.
   */
  private settleEffects(effects: Effects, ok: boolean): void {
    const deallocated =
      effects.deallocated === 'all' ? [...this.statements.keys()] : (effects.deallocated ?? []);
    for (const name of deallocated)
      if (ok && this.statements.get(name) === UNKNOWN) this.statements.delete(name);
    if (!ok) for (const { name } of effects.prepared ?? []) this.statements.set(name, UNKNOWN);
    // A cursor whose DECLARE may have failed is not known: a FETCH from that name is masked blind.
    if (!ok) for (const { name } of effects.declared ?? []) this.cursors.delete(name);
  }

  private forgetStatement(name: string, sql: string): void {
    if (this.statements.get(name) === sql) this.statements.delete(name);
  }

  /** A transform that keeps the RowDescription of statement `name`'s result for later Executes. */
  private keepRowShape(name: string): ResultTransform {
    return {
      message: (type, frame) => {
        if (type === Code.RowDescription) this.rowShapes.set(name, Buffer.from(frame));
        return frame;
      },
    };
  }

  /**
   * The transform of a portal Executed without a Describe: before the first
   * message of its answer (by then the server has answered any Describe of
   * its statement sent before it), the portal's transform reads the columns
   * from the RowDescription kept for its statement, in the formats its Bind
   * asked for, as if the server had sent it. Without one, the transform does
   * what it can blind (masking sends private columns as NULL).
   */
  private primed(bound: Portal, transform: ResultTransform): ResultTransform {
    let first = true;
    const prime = (type: number): void => {
      first = false;
      bound.described = true;
      const shape = this.rowShapes.get(bound.statement);
      if (shape && type !== Code.RowDescription)
        transform.message(Code.RowDescription, withFormats(shape, bound.resultFormats));
    };
    const { dataRow } = transform;
    return {
      message: (type, frame) => {
        if (first) prime(type);
        return transform.message(type, frame);
      },
      dataRow:
        dataRow &&
        ((buffer, start, end, out) => {
          if (first) prime(Code.DataRow);
          dataRow.call(transform, buffer, start, end, out);
        }),
    };
  }

  private forgetPortal(portal: string, bound: Portal): void {
    if (this.portals.get(portal) === bound) this.portals.delete(portal);
  }

  /** Ends the session once the server has answered what came before the Terminate. */
  private terminate(): void {
    this.flushRun();
    if (this.closed) return;
    this.terminating = true;
    this.client.pause();
    this.writeUpstream(TERMINATE);
    // The server closes after its last reply; serverLost then ends the session quietly.
    setTimeout(() => this.close(), 5000).unref();
  }

  private writeUpstream(bytes: Buffer): void {
    if (!this.closed) this.upstream.socket.write(bytes);
  }

  private forward(buffer: Buffer, start: number, end: number): void {
    if (this.runBuffer === buffer && this.runEnd === start) {
      this.runEnd = end;
      return;
    }
    this.flushRun();
    this.runBuffer = buffer;
    this.runStart = start;
    this.runEnd = end;
  }

  private flushRun(): void {
    const buffer = this.runBuffer;
    if (buffer === null) return;
    this.runBuffer = null;
    if (this.closed) return;
    const slice =
      this.runStart === 0 && this.runEnd === buffer.length
        ? buffer
        : buffer.subarray(this.runStart, this.runEnd);
    if (!this.upstream.socket.write(slice) && !this.clientHeld) {
      // Backpressure: stop reading the client until the server side drains.
      this.clientHeld = true;
      this.client.pause();
      this.upstream.socket.once('drain', () => {
        this.clientHeld = false;
        if (!this.repliesHeld && this.held === undefined) this.client.resume();
      });
    }
  }

  // ------------------------------------------------------------ server side

  private readonly onServerData = (chunk: Buffer): void => {
    try {
      let rest: Buffer | null = chunk;
      while (rest !== null) rest = this.framing ? this.transformFrames(rest) : this.forwardScanned(rest);
    } catch (error) {
      this.internalError(error as Error);
    }
  };

  /**
   * The fast path: bytes go to the client as they arrived; the scanner only
   * finds message ends, for the response tracker. Returns the unread rest
   * when a reply that needs a transform begins, or null when the chunk is done.
   */
  private forwardScanned(chunk: Buffer): Buffer | null {
    if (this.scanner.atBoundary && this.responses.head?.transform) {
      this.framing = true;
      return chunk;
    }
    const stoppedAt = this.scanner.scan(chunk, this.onServerMessageEnd);
    this.writeClient(stoppedAt === chunk.length ? chunk : chunk.subarray(0, stoppedAt));
    if (stoppedAt === chunk.length) return null;
    this.framing = true;
    return chunk.subarray(stoppedAt);
  }

  private readonly onServerMessageEnd = (type: number, _end: number, firstByte: number): boolean => {
    if (type === Code.CommandComplete || type === Code.ErrorResponse) {
      const trace = this.responses.head?.trace;
      if (trace) this.traceReply(trace, type, this.scanner.lastBody());
    }
    this.received(type, firstByte);
    return this.responses.head?.transform !== undefined;
  };

  /** A server message has been passed on whole. */
  private received(type: number, firstByte: number): void {
    this.responses.received(type, firstByte);
    if (this.held?.notice !== undefined) this.speak();
    // Idle, out of any transaction: the cursors declared without HOLD are gone.
    if (type === Code.ReadyForQuery && firstByte === 0x49 /* I */ && this.cursors.size > 0) {
      for (const [name, cursor] of this.cursors) if (!cursor.holdable) this.cursors.delete(name);
    }
  }

  /**
   * The slow path, only while the oldest unanswered message has a transform:
   * whole frames, each passed through it. Returns the rest of the chunk once
   * no transform is due, or null when the chunk is done.
   */
  private transformFrames(chunk: Buffer): Buffer | null {
    let leave = false;
    // The chunk's messages, transformed, leave in one write: a write per message costs more than a copy.
    const out = this.output;
    out.reset(chunk.length + (chunk.length >> 2) + 256);
    let clock = performance.now();
    // The time since the last charge goes to the entry answered now; read at each message that may end one.
    const charge = () => {
      const now = performance.now();
      const spent = this.responses.head?.spent;
      if (spent) spent.ms += now - clock;
      clock = now;
    };
    try {
      this.serverFramer.push(chunk, (type, buffer, start, bodyStart, end) => {
        const transform = this.responses.head?.transform;
        // A DataRow means nothing to the response tracker: only its transform sees it.
        if (type === Code.DataRow && transform?.dataRow) {
          transform.dataRow(buffer, start, end, out);
          return;
        }
        if (type === Code.CommandComplete || type === Code.ErrorResponse) {
          const trace = this.responses.head?.trace;
          if (trace) this.traceReply(trace, type, buffer.subarray(bodyStart, end));
        }
        if (transform) {
          // Frames are views of the chunk (or of a joined copy), which nothing reuses: no copy needed.
          const result = transform.message(type, buffer.subarray(start, end));
          out.append(result);
        } else {
          out.append(buffer, start, end);
        }
        // A row never ends an entry: the rows' time is charged at the message that does.
        if (type !== Code.DataRow && type !== Code.CopyData) charge();
        this.received(type, end > bodyStart ? buffer[bodyStart]! : -1);
        if (!this.responses.head?.transform) {
          leave = true;
          this.serverFramer.stop();
        }
      });
    } finally {
      charge();
      this.writeClient(out.written());
      // Written through at once, the buffer is free for the next chunk; else the socket holds it.
      if (this.client.writableLength > 0) out.release();
    }
    if (!leave) return null;
    this.framing = false;
    return this.serverFramer.takeRemainder();
  }

  private writeClient(bytes: Buffer): void {
    if (this.closed || bytes.length === 0) return;
    if (!this.client.write(bytes) && !this.serverHeld) {
      // Backpressure: a slow client slows the server read, and is itself not read further
      // (as PostgreSQL stops reading a client that does not read its replies): Warden's own
      // replies to what it would read next would otherwise pile up without bound.
      this.serverHeld = true;
      this.repliesHeld = true;
      this.upstream.socket.pause();
      this.client.pause();
      this.client.once('drain', () => {
        this.serverHeld = false;
        this.repliesHeld = false;
        this.upstream.socket.resume();
        if (!this.clientHeld && this.held === undefined) this.client.resume();
      });
    }
  }

  // ------------------------------------------------------------ endings

  private serverLost(): void {
    if (this.closed) return;
    if (this.terminating) {
      this.close();
      return;
    }
    this.options.observer?.sessionFailed('server-lost');
    // An error can only be inserted between messages; mid-message, closing is the signal.
    if (this.scanner.atBoundary) {
      this.fatal({
        sqlstate: '08006',
        message: `connection to target "${this.info.target.name}" was lost`,
        hint: 'The database server closed the connection or became unreachable; reconnect to retry.',
      });
    } else {
      this.close();
    }
  }

  private protocolViolation(error: ProtocolViolation): void {
    this.options.observer?.sessionFailed('protocol');
    this.fatal({ sqlstate: '08P01', message: `protocol violation: ${error.message}` });
  }

  private internalError(error: Error): void {
    this.options.observer?.sessionFailed('internal');
    this.fatal({ sqlstate: 'XX000', message: `Warden internal error: ${error.message}` });
  }

  /** Ends the session with a FATAL error to the client. */
  fatal(details: { sqlstate: string; message: string; hint?: string }): void {
    if (this.closed) return;
    this.client.end(errorResponse('FATAL', details));
    this.close();
  }

  /** The client asked (with a valid cancel key) to cancel what runs now. */
  cancel(send: (key: Upstream['key']) => void): void {
    if (this.closed) return;
    // A held statement is not on the server yet: cancelling it withdraws its request.
    if (this.held !== undefined) this.held.hold.withdraw('cancelled');
    else send(this.upstream.key);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.held !== undefined) {
      clearInterval(this.held.keepAlive);
      this.held.hold.withdraw('disconnected');
    }
    const server = this.upstream.socket;
    // Everything forwarded upstream is whole frames, so a Terminate here is
    // always at a message boundary: the server ends the backend cleanly.
    if (!server.destroyed && !server.writableEnded) server.end(TERMINATE);
    if (!this.client.writableEnded) this.client.end();
    // Give final bytes (a FATAL reply, the Terminate) a moment, then tear down.
    setTimeout(() => {
      server.destroy();
      this.client.destroy();
    }, 1000).unref();
    this.options.onClose(this);
  }
}

function duplicateStatement(name: string): ErrorDetails {
  return { sqlstate: '42P05', message: `prepared statement "${name}" already exists` };
}

function missingStatement(name: string, state: typeof UNKNOWN | undefined): ErrorDetails {
  if (state === UNKNOWN) {
    return {
      sqlstate: '26000',
      message: `Warden cannot tell what prepared statement "${name}" holds since a statement that named it failed`,
      hint: `DEALLOCATE ${name} (or Close it), then prepare it again.`,
    };
  }
  return {
    sqlstate: '26000',
    message:
      name === ''
        ? 'unnamed prepared statement does not exist'
        : `prepared statement "${name}" does not exist`,
  };
}

function missingPortal(name: string): ErrorDetails {
  return { sqlstate: '34000', message: `portal "${name}" does not exist` };
}

function queryMessage(sql: string): Buffer {
  return writeQuery(new Writer(), { type: 'Query', sql }).flush();
}

function parseMessage(name: string, sql: string): Buffer {
  return writeParse(new Writer(), { type: 'Parse', name, sql, parameterTypes: [] }).flush();
}

/** The refusal of a statement held for review, with what the review knew of it (for the trail). */
function reviewRefused(review: Review, details: ErrorDetails): Deny {
  const { identity, target, source, sql, rule, matched, statements, fingerprint } = review;
  return {
    action: 'deny',
    identity,
    target,
    source,
    sql,
    ...(rule === undefined ? {} : { rule }),
    ...(matched === undefined ? {} : { matched }),
    ...(statements === undefined ? {} : { statements }),
    ...(fingerprint === undefined ? {} : { fingerprint }),
    ...details,
  };
}

/** A reader of a held Bind's copy, past its portal and statement names. */
function heldReader(frame: Buffer): Reader {
  const r = new Reader(frame, 5, frame.length);
  r.cstring();
  r.cstring();
  return r;
}

/** A Bind's parameters as approvers read them: text values as they are, binary ones in hex; null for NULL. */
function bindParameters(frame: Buffer): (string | null)[] {
  const r = heldReader(frame);
  const formats: number[] = [];
  const formatCount = r.int16();
  for (let i = 0; i < formatCount; i++) formats.push(r.int16());
  const count = r.int16();
  const values: (string | null)[] = [];
  for (let i = 0; i < count; i++) {
    const length = r.int32();
    if (length < 0) {
      values.push(null);
      continue;
    }
    const bytes = r.bytes(length);
    const binary = (formats.length === 1 ? formats[0] : formats[i]) === 1;
    values.push(binary ? `\\x${bytes.toString('hex')}` : bytes.toString('utf8'));
  }
  return values;
}
