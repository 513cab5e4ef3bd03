/**
 * A live session after login: the client and its upstream connection, with
 * the decision point between them.
 *
 * Client → server: messages are framed (bounded) and every Query, Parse,
 * Bind, Execute and FunctionCall is judged by `decide` before it goes on.
 * Allowed messages are forwarded as the original bytes, in runs: a chunk
 * whose messages are all allowed is written as one slice, with no copy.
 *
 * Server → client: bytes are forwarded as they arrive. A scanner follows
 * message boundaries (without holding any message) to count ReadyForQuery
 * and read the transaction status, so that Warden's own replies are queued
 * behind the responses to everything already forwarded.
 */
import type { Duplex } from 'node:stream';
import type {
  Decide,
  Decision,
  DecisionContext,
  ResultTransform,
  SessionInfo,
  StatementSource,
} from '../policy/decision.ts';
import { describeType } from '../protocol/postgres/codec.ts';
import { ProtocolViolation } from '../protocol/postgres/errors.ts';
import { Framer } from '../protocol/postgres/framer.ts';
import { Code, type TransactionStatus } from '../protocol/postgres/messages.ts';
import { Reader } from '../protocol/postgres/reader.ts';
import { MessageScanner } from '../protocol/postgres/scanner.ts';
import { type ErrorDetails, errorResponse, errorThenReady } from './replies.ts';
import type { Upstream } from './upstream.ts';

const READY = Code.ReadyForQuery;
const TERMINATE = Buffer.from([Code.Terminate, 0, 0, 0, 4]);
/** A transformed result holds one server message at a time; PostgreSQL caps a field at 1 GB. */
const MAX_SERVER_MESSAGE = 0x7fffffff;

interface Pending {
  /** Written once this many ReadyForQuery have come from the server. */
  readonly afterReady: number;
  /** The denial; its ReadyForQuery is built when written, with the status at that moment. */
  readonly error: ErrorDetails;
}

export interface SessionOptions {
  readonly maxMessageSize: number;
  readonly decide: Decide;
  readonly onClose: (session: Session) => void;
}

export class Session {
  private readonly framer: Framer;
  private readonly scanner = new MessageScanner();
  /** Statement text by prepared-statement name ('' = unnamed), for judging Bind/Execute. */
  private readonly statements = new Map<string, string>();
  /** Statement name by portal name. */
  private readonly portals = new Map<string, string>();
  private readyExpected = 0;
  private readySeen = 0;
  private status: TransactionStatus = 'I';
  private readonly pending: Pending[] = [];
  /** Result transforms by response group (the n-th ReadyForQuery closes group n), in order. */
  private readonly transforms: { readonly group: number; readonly transform: ResultTransform }[] = [];
  /** True while the server's bytes are framed whole for a transform. */
  private framing = false;
  private readonly serverFramer = new Framer(MAX_SERVER_MESSAGE);
  private closed = false;
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
    switch (type) {
      case Code.Query: {
        const sql = new Reader(buffer, bodyStart, end).cstring();
        if (this.judge('query', sql, undefined, buffer, start, end)) this.readyExpected++;
        return;
      }
      case Code.Parse: {
        const r = new Reader(buffer, bodyStart, end);
        const name = r.cstring();
        const sql = r.cstring();
        if (this.judge('parse', sql, name, buffer, start, end)) this.statements.set(name, sql);
        return;
      }
      case Code.Bind: {
        const r = new Reader(buffer, bodyStart, end);
        const portal = r.cstring();
        const statement = r.cstring();
        if (this.judge('bind', this.statements.get(statement), statement, buffer, start, end)) {
          this.portals.set(portal, statement);
        }
        return;
      }
      case Code.Execute: {
        const portal = new Reader(buffer, bodyStart, end).cstring();
        const statement = this.portals.get(portal);
        const sql = statement === undefined ? undefined : this.statements.get(statement);
        this.judge('execute', sql, portal, buffer, start, end);
        return;
      }
      case Code.FunctionCall: {
        const functionOid = new Reader(buffer, bodyStart, end).uint32();
        if (this.judge('function-call', undefined, undefined, buffer, start, end, functionOid))
          this.readyExpected++;
        return;
      }
      case Code.Close: {
        const r = new Reader(buffer, bodyStart, end);
        const target = r.byte();
        const name = r.cstring();
        if (target === 0x53 /* S */) this.statements.delete(name);
        else this.portals.delete(name);
        this.forward(buffer, start, end);
        return;
      }
      case Code.Sync:
        this.readyExpected++;
        this.forward(buffer, start, end);
        return;
      case Code.Describe:
      case Code.Flush:
      case Code.CopyData:
      case Code.CopyDone:
      case Code.CopyFail:
        this.forward(buffer, start, end);
        return;
      case Code.Terminate:
        this.flushRun();
        this.close();
        return;
      default:
        throw new ProtocolViolation(`unexpected message type ${describeType(type)} from the client`);
    }
  };

  /** Runs the decision point; forwards the frame when allowed, answers it when not. */
  private judge(
    source: StatementSource,
    sql: string | undefined,
    name: string | undefined,
    buffer: Buffer,
    start: number,
    end: number,
    functionOid?: number,
  ): boolean {
    const context: DecisionContext = { session: this.info, source, sql, name, functionOid };
    let decision: Decision;
    try {
      decision = this.options.decide(context);
    } catch (error) {
      // Fail closed: a decision that cannot be made is a denial.
      decision = {
        action: 'deny',
        identity: this.info.identity.name,
        target: this.info.target.name,
        source,
        sql,
        sqlstate: 'XX000',
        message: `Warden could not judge this statement: ${(error as Error).message}`,
      };
    }
    if (decision.action === 'allow') {
      // Its results end with the next ReadyForQuery the server sends after those already expected.
      if (decision.transform)
        this.transforms.push({ group: this.readyExpected + 1, transform: decision.transform });
      this.forward(buffer, start, end);
      return true;
    }
    this.flushRun();
    if (source === 'query') {
      this.reply(decision);
    } else {
      // Extended-protocol denials need the server-side recovery of the policy
      // work (fail the server's transaction, discard until Sync); until then,
      // refuse the whole connection rather than risk an inconsistent state.
      this.fatal({ sqlstate: decision.sqlstate, message: decision.message, hint: decision.hint });
    }
    return false;
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
        if (!this.repliesHeld) this.client.resume();
      });
    }
  }

  /** Queues Warden's own reply behind the responses to everything already forwarded. */
  private reply(error: ErrorDetails): void {
    if (this.readySeen === this.readyExpected && this.pending.length === 0) {
      this.writeClient(errorThenReady(error, this.status));
    } else {
      this.pending.push({ afterReady: this.readyExpected, error });
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
   * finds message ends. Returns the unread rest when a group that needs a
   * transform begins, or null when the chunk is done.
   */
  private forwardScanned(chunk: Buffer): Buffer | null {
    if (this.scanner.atBoundary && this.transformDue()) {
      this.framing = true;
      return chunk;
    }
    let written = 0;
    const stoppedAt = this.scanner.scan(chunk, (type, end, firstByte) => {
      if (type === READY) {
        this.readyReceived(firstByte);
        if (this.pending.length > 0 && this.pending[0]!.afterReady <= this.readySeen) {
          // Our reply belongs right after this ReadyForQuery: split the chunk here.
          this.writeClient(chunk.subarray(written, end));
          written = end;
          this.writeDueReplies();
        }
      }
      return this.transforms.length > 0 && this.transformDue();
    });
    this.writeClient(
      written === 0 && stoppedAt === chunk.length ? chunk : chunk.subarray(written, stoppedAt),
    );
    if (stoppedAt === chunk.length) return null;
    this.framing = true;
    return chunk.subarray(stoppedAt);
  }

  /**
   * The slow path, only for response groups whose decision carries a
   * transform: whole frames, each passed through the group's transforms.
   * Returns the rest of the chunk once the group ends and the next one needs
   * no transform, or null when the chunk is done.
   */
  private transformFrames(chunk: Buffer): Buffer | null {
    let leave = false;
    // One write per message here: cork so they leave in as few packets as the fast path's.
    this.client.cork();
    try {
      this.serverFramer.push(chunk, (type, buffer, start, _bodyStart, end) => {
        let frame = buffer.subarray(start, end);
        const group = this.readySeen + 1;
        for (const entry of this.transforms) {
          if (entry.group === group) frame = entry.transform.message(type, frame);
        }
        // Frames are views of the chunk (or of a joined copy), which nothing reuses: no copy needed.
        this.writeClient(frame);
        if (type === READY) {
          this.readyReceived(buffer[end - 1]!);
          this.writeDueReplies();
          if (!this.transformDue()) {
            leave = true;
            this.serverFramer.stop();
          }
        }
      });
    } finally {
      process.nextTick(() => this.client.uncork());
    }
    if (!leave) return null;
    this.framing = false;
    return this.serverFramer.takeRemainder();
  }

  private transformDue(): boolean {
    const next = this.transforms[0];
    return next !== undefined && next.group === this.readySeen + 1;
  }

  private readyReceived(status: number): void {
    this.readySeen++;
    this.status = String.fromCharCode(status) as TransactionStatus;
    while (this.transforms.length > 0 && this.transforms[0]!.group <= this.readySeen) this.transforms.shift();
  }

  private writeDueReplies(): void {
    while (this.pending.length > 0 && this.pending[0]!.afterReady <= this.readySeen) {
      this.writeClient(errorThenReady(this.pending.shift()!.error, this.status));
    }
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
        if (!this.clientHeld) this.client.resume();
      });
    }
  }

  // ------------------------------------------------------------ endings

  private serverLost(): void {
    if (this.closed) return;
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
    this.fatal({ sqlstate: '08P01', message: `protocol violation: ${error.message}` });
  }

  private internalError(error: Error): void {
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
    if (!this.closed) send(this.upstream.key);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
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
