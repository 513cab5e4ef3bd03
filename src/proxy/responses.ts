/**
 * What the server still owes: one entry per message forwarded upstream that
 * the server answers, in order. The server's replies are read (by type only)
 * to retire entries exactly as the server does, instead of predicting them
 * from what the client sent:
 * - after an error in the extended protocol the server discards every
 *   message up to the next Sync (Query and FunctionCall included);
 * - during COPY FROM STDIN it ignores Sync and Flush (libpq's extended COPY
 *   sends one Sync before the data and one after CopyDone);
 * - a message that fails on the server created nothing (a Parse or Bind that
 *   failed leaves no statement or portal), which `settled` lets the session
 *   undo; for a Query, `ok` means no error came back for it.
 * An entry's `transform` sees the server's messages while that entry is the
 * oldest unanswered one, up to and including the message that answers it.
 */

import type { StatementTrace } from '../audit/statement.ts';
import type { ResultTransform } from '../policy/decision.ts';
import { Code } from '../protocol/postgres/messages.ts';

export const Expect = {
  Parse: 0,
  Bind: 1,
  Describe: 2,
  Execute: 3,
  Close: 4,
  Sync: 5,
  Query: 6,
  FunctionCall: 7,
  /** CopyDone or CopyFail: answered as part of the COPY they end. */
  CopyEnd: 8,
} as const;
export type Expect = (typeof Expect)[keyof typeof Expect];

export interface Expected {
  readonly kind: Expect;
  readonly transform?: ResultTransform;
  /** It is no longer owed: answered (ok), or refused or discarded unread (not ok). Called once. */
  readonly settled?: (ok: boolean) => void;
  /** The server is now working on it: everything before it is answered. */
  readonly onHead?: () => void;
  /** What audit gathers while the server answers it (a statement that runs: Query, Execute, FunctionCall). */
  readonly trace?: StatementTrace;
  /** Milliseconds spent in `transform` for it (kept when metrics time the masking stage). */
  readonly spent?: { ms: number };
}

/** Shared entries for the common case of nothing attached. */
export const PLAIN: Readonly<Record<Expect, Expected>> = {
  [Expect.Parse]: { kind: Expect.Parse },
  [Expect.Bind]: { kind: Expect.Bind },
  [Expect.Describe]: { kind: Expect.Describe },
  [Expect.Execute]: { kind: Expect.Execute },
  [Expect.Close]: { kind: Expect.Close },
  [Expect.Sync]: { kind: Expect.Sync },
  [Expect.Query]: { kind: Expect.Query },
  [Expect.FunctionCall]: { kind: Expect.FunctionCall },
  [Expect.CopyEnd]: { kind: Expect.CopyEnd },
};

/** Entries answered by a ReadyForQuery; an error does not end them. */
const endsAtReady = (kind: Expect) =>
  kind === Expect.Sync || kind === Expect.Query || kind === Expect.FunctionCall;

export class ResponseTracker {
  private queue: Expected[] = [];
  private first = 0;
  /** The server is discarding messages until a Sync (an extended-protocol error). */
  private discarding = false;
  /** The server is in COPY FROM STDIN and has not yet read the CopyDone/CopyFail. */
  private copyIn = false;
  /** An error came back for the head entry (Query, FunctionCall or Sync: they end at ReadyForQuery). */
  private headFailed = false;
  /** Entries that end at ReadyForQuery: how many were queued, how many retired. */
  private readyQueued = 0;
  private readyRetired = 0;
  /** The number of the last such entry the server answered as idle, outside any transaction. */
  private idleAt = 0;

  /** The oldest unanswered entry. */
  get head(): Expected | undefined {
    return this.first < this.queue.length ? this.queue[this.first] : undefined;
  }

  get idle(): boolean {
    return this.first === this.queue.length;
  }

  /** A mark for "now", to ask later whether a transaction has ended since (see mayHaveEndedSince). */
  get mark(): number {
    return this.readyQueued;
  }

  /**
   * True when the transaction may have ended after a point marked earlier
   * (portals made before it would be gone): the server went idle since, or
   * a Sync or Query sent since is not answered yet, so nobody can tell.
   */
  mayHaveEndedSince(mark: number): boolean {
    return this.idleAt > mark || (this.readyQueued > mark && this.readyRetired < this.readyQueued);
  }

  /** A message went upstream. */
  sent(entry: Expected): void {
    if (entry.kind === Expect.CopyEnd) {
      if (this.copyIn) this.copyIn = false;
      else if (!this.idle) this.queue.push(entry); // resolved when CopyInResponse arrives
      return;
    }
    if (this.copyIn && entry.kind === Expect.Sync) return; // ignored by the server
    if (this.discarding) {
      if (entry.kind !== Expect.Sync) {
        entry.settled?.(false);
        return;
      }
      this.discarding = false;
    }
    if (endsAtReady(entry.kind)) this.readyQueued++;
    this.queue.push(entry);
    if (this.first === this.queue.length - 1) entry.onHead?.();
  }

  /** A server message ended; `firstByte` is its first body byte (ReadyForQuery's status). */
  received(type: number, firstByte: number): void {
    const head = this.head;
    switch (type) {
      case Code.ParseComplete:
      case Code.BindComplete:
      case Code.CloseComplete:
        if (head && (head.kind === Expect.Parse || head.kind === Expect.Bind || head.kind === Expect.Close))
          this.retire(true);
        return;
      case Code.RowDescription:
      case Code.NoData:
        if (head?.kind === Expect.Describe) this.retire(true);
        return;
      case Code.CommandComplete:
      case Code.EmptyQueryResponse:
      case Code.PortalSuspended:
        if (head?.kind === Expect.Execute) this.retire(true);
        return;
      case Code.CopyInResponse:
        this.copyInBegins();
        return;
      case Code.ErrorResponse:
        if (head === undefined) return;
        if (endsAtReady(head.kind)) this.headFailed = true;
        else this.extendedError();
        return;
      case Code.ReadyForQuery: {
        this.copyIn = false;
        // Anything older than the entry it answers was dropped by the server unanswered.
        while (this.head !== undefined) {
          const ends = endsAtReady(this.head.kind);
          const ok = ends && !this.headFailed;
          this.retire(ok);
          if (!ends) continue;
          if (firstByte === 0x49 /* I */) this.idleAt = this.readyRetired;
          break;
        }
        return;
      }
      default:
    }
  }

  /** Takes the head off the queue and tells it how it ended. */
  private retire(ok: boolean): void {
    const entry = this.queue[this.first++]!;
    if (endsAtReady(entry.kind)) {
      this.readyRetired++;
      this.headFailed = false;
    }
    // A CopyDone/CopyFail the server ignored (no COPY was running) owes nothing.
    while (this.head?.kind === Expect.CopyEnd) this.first++;
    if (this.first === this.queue.length) {
      this.queue.length = 0;
      this.first = 0;
    } else if (this.first > 64 && this.first * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.first);
      this.first = 0;
    }
    entry.settled?.(ok);
    this.head?.onHead?.();
  }

  /** The head message failed: it and everything up to the next Sync are discarded. */
  private extendedError(): void {
    this.copyIn = false;
    this.retire(false);
    while (this.head !== undefined && this.head.kind !== Expect.Sync) this.retire(false);
    if (this.head === undefined) this.discarding = true;
  }

  /** Syncs already sent during the COPY were ignored; the copy ends at the first CopyEnd. */
  private copyInBegins(): void {
    const i = this.first + 1;
    while (i < this.queue.length) {
      const kind = this.queue[i]!.kind;
      if (kind === Expect.Sync) {
        this.queue.splice(i, 1);
        continue;
      }
      if (kind === Expect.CopyEnd) {
        this.queue.splice(i, 1);
        return;
      }
      return; // anything else during COPY is the client's protocol error: the server will say so
    }
    this.copyIn = true;
  }
}
