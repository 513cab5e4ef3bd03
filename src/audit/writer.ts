/**
 * The audit writer on the event loop: sessions hand it events and never
 * wait. Events are gathered and sent to the audit worker thread in
 * batches, one send in flight at a time, so a slow store makes batches
 * bigger rather than commits more frequent (group commit). Recording costs
 * the event loop little: a statement is written into a batch's numbers and
 * text at once (src/audit/wire.ts), and everything else about it (its ISO
 * time, redaction, JSON, hashing) happens in the worker.
 *
 * The queue is bounded. When the store cannot take events (and the config
 * says fail closed), or when the queue is full, `refusal` says why, and the
 * session refuses statements with it rather than run them unrecorded.
 */
import { Worker } from 'node:worker_threads';
import type { StoreSpec } from '../store/open-audit.ts';
import type { Checkpoint } from './checkpoints.ts';
import type { AuditEvent } from './events.ts';
import type { StatementRun } from './statement.ts';
import { Outbox } from './wire.ts';
import type { FromWorker, ToWorker, WorkerSettings } from './worker.ts';

export interface AuditRefusal {
  readonly sqlstate: string;
  readonly message: string;
  readonly hint?: string;
}

/** What sessions see of the trail. */
export interface AuditSink {
  record(event: AuditEvent | StatementRun): void;
  /** Set while the trail cannot take statements: they are refused with it. */
  readonly refusal: AuditRefusal | undefined;
  /** Whether statement events are wanted at all. */
  readonly statements: boolean;
}

export interface AuditWriterOptions {
  readonly store: StoreSpec;
  readonly chain: string;
  readonly redact: boolean;
  readonly onFailure: 'deny' | 'spool';
  readonly spoolFile: string;
  /** Events recorded but not yet safe (committed or spooled) before statements are refused. */
  readonly queueLimit: number;
  /** How long events gather before a batch goes (when none is in flight). */
  readonly flushMs?: number;
  readonly retryMs?: number;
  readonly retentionDays?: number;
  /** Told when the store starts failing or recovers: for logs. */
  readonly onState?: (state: 'failing' | 'recovered' | 'fatal', error?: string) => void;
  /** Signed checkpoints of the chain head (src/audit/checkpoints.ts): the key as PKCS#8 PEM. */
  readonly checkpoints?: { readonly everyMs: number; readonly keyPem: string };
  /** Told of each checkpoint stored: the log keeps a copy outside the store. */
  readonly onCheckpoint?: (checkpoint: Checkpoint) => void;
}

export interface AuditStats {
  readonly recorded: number;
  readonly committed: number;
  readonly spooled: number;
  /** Recorded, not yet safe. */
  readonly queued: number;
  /** Age of the oldest event not yet safe, in ms (0 when none). */
  readonly lagMs: number;
  readonly failing: boolean;
  /** Events not kept because the queue held twice its limit (only possible while statements are refused). */
  readonly dropped: number;
}

export class AuditWriter implements AuditSink {
  readonly statements = true;
  private readonly pending = new Outbox();
  private inFlight = 0;
  private recorded = 0;
  private committed = 0;
  private spooled = 0;
  private dropped = 0;
  private failing: string | undefined;
  private fatal: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** When the oldest not-yet-safe batch began gathering. */
  private oldest: number[] = [];
  private readonly waiters: { readonly upTo: number; readonly resolve: () => void }[] = [];
  private closedResolve: (() => void) | undefined;

  private constructor(
    private readonly worker: Worker,
    private readonly options: AuditWriterOptions,
  ) {}

  /** Starts the worker thread; resolves once the store is open and the chain head read. */
  static async start(options: AuditWriterOptions): Promise<AuditWriter> {
    const settings: WorkerSettings = {
      store: options.store,
      chain: options.chain,
      redact: options.redact,
      onFailure: options.onFailure,
      spoolFile: options.spoolFile,
      retryMs: options.retryMs ?? 1_000,
      retentionDays: options.retentionDays,
      checkpoints: options.checkpoints,
    };
    const worker = new Worker(BOOTSTRAP, { eval: true, workerData: { settings, entry: WORKER_URL } });
    const writer = new AuditWriter(worker, options);
    await new Promise<void>((resolve, reject) => {
      const onMessage = (message: FromWorker) => {
        if (message.type === 'ready') {
          worker.off('message', onMessage);
          worker.off('error', reject);
          resolve();
        } else if (message.type === 'fatal') {
          reject(new Error(`the audit store cannot be opened: ${message.error}`));
          void worker.terminate();
        }
      };
      worker.on('message', onMessage);
      worker.once('error', reject);
    });
    worker.on('message', (message: FromWorker) => writer.onWorker(message));
    worker.on('error', (error) => writer.lost(error.message));
    worker.on('exit', () => writer.lost('the audit worker stopped'));
    worker.unref();
    return writer;
  }

  get refusal(): AuditRefusal | undefined {
    if (this.fatal !== undefined) {
      return {
        sqlstate: '58030',
        message: `Warden cannot write its audit trail (${this.fatal}), so it runs no statement`,
        hint: 'Restart Warden; the audit store or its worker failed.',
      };
    }
    if (this.failing !== undefined && this.options.onFailure === 'deny') {
      return {
        sqlstate: '58030',
        message: `Warden cannot write its audit trail (${this.failing}), so it runs no statement until it can`,
        hint: 'Retry in a moment; an administrator can set audit.onStoreFailure: spool to keep running during outages.',
      };
    }
    if (this.recorded - this.committed - this.spooled >= this.options.queueLimit) {
      return {
        sqlstate: '53000',
        message: `Warden's audit queue is full (${this.options.queueLimit} events not yet written), so it runs no statement until it drains`,
        hint: 'Retry in a moment.',
      };
    }
    return undefined;
  }

  get stats(): AuditStats {
    const queued = this.recorded - this.committed - this.spooled;
    return {
      recorded: this.recorded,
      committed: this.committed,
      spooled: this.spooled,
      queued,
      lagMs: queued > 0 && this.oldest.length > 0 ? Date.now() - this.oldest[0]! : 0,
      failing: this.failing !== undefined || this.fatal !== undefined,
      dropped: this.dropped,
    };
  }

  record(event: AuditEvent | StatementRun): void {
    if (this.closed) return;
    // Statements stop at queueLimit; only logins and connections (refused meanwhile) come past it.
    // Memory stays bounded all the same: past twice the limit they are counted, not kept.
    if (this.recorded - this.committed - this.spooled >= 2 * this.options.queueLimit) {
      this.dropped++;
      return;
    }
    if (this.pending.size === 0) this.oldest.push(Date.now());
    // Busy, the worker keeps the process alive until its events are safe; idle, it does not.
    if (this.recorded === this.committed + this.spooled) this.worker.ref();
    this.pending.add(event);
    this.recorded++;
    if (this.timer === undefined && this.inFlight === 0) {
      this.timer = setTimeout(this.send, this.options.flushMs ?? FLUSH_MS);
      this.timer.unref();
    }
  }

  /** Resolves once every event recorded so far is committed or spooled. */
  flush(): Promise<void> {
    const upTo = this.recorded;
    if (this.committed + this.spooled >= upTo) return Promise.resolve();
    if (this.inFlight === 0) this.send();
    return new Promise((resolve) => this.waiters.push({ upTo, resolve }));
  }

  /** Writes what is queued (or spools it, if the store is down), then stops the worker. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.worker.ref();
    if (this.fatal === undefined) {
      // While the store fails in deny mode, flushing cannot finish: the worker spools instead.
      if (this.failing === undefined) await this.flush();
      else this.send();
      await new Promise<void>((resolve) => {
        this.closedResolve = resolve;
        this.post({ type: 'close' });
      });
    }
    await this.worker.terminate();
  }

  private readonly send = (): void => {
    this.timer = undefined;
    if (this.pending.size === 0 || this.fatal !== undefined) return;
    this.inFlight += this.pending.size;
    const { batches, transfer } = this.pending.take();
    this.post({ type: 'batch', batches }, transfer);
  };

  private post(message: ToWorker, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(message, transfer);
  }

  private onWorker(message: FromWorker): void {
    switch (message.type) {
      case 'done': {
        this.inFlight -= message.count;
        if (message.spooled) this.spooled += message.count;
        else this.committed += message.count;
        if (this.inFlight === 0) this.oldest.shift();
        const safe = this.committed + this.spooled;
        while (this.waiters.length > 0 && this.waiters[0]!.upTo <= safe) this.waiters.shift()!.resolve();
        if (safe === this.recorded && !this.closed) this.worker.unref();
        if (this.inFlight === 0 && this.pending.size > 0 && this.timer === undefined) this.send();
        return;
      }
      case 'failing':
        this.failing = message.error;
        this.options.onState?.('failing', message.error);
        return;
      case 'recovered':
        this.failing = undefined;
        this.options.onState?.('recovered');
        return;
      case 'fatal':
        this.lost(message.error);
        return;
      case 'closed':
        this.closedResolve?.();
        return;
      case 'checkpoint':
        this.options.onCheckpoint?.(message.checkpoint);
        return;
      default:
    }
  }

  /** The worker cannot go on: fail closed until Warden restarts (resending could duplicate events). */
  private lost(error: string): void {
    if (this.closed || this.fatal !== undefined) return;
    this.fatal = error;
    this.options.onState?.('fatal', error);
    this.closedResolve?.();
  }
}

/** How long events gather before a batch goes: fewer, bigger commits cost the store less per event. */
const FLUSH_MS = 20;

/** The worker's entry, in TypeScript: loaded through tsx's loader, registered in the thread first. */
const WORKER_URL = new URL('./worker.ts', import.meta.url).href;
const TSX_API = import.meta.resolve('tsx/esm/api');
const BOOTSTRAP = `
const { workerData } = require('node:worker_threads');
import(${JSON.stringify(TSX_API)}).then((tsx) => { tsx.register(); return import(workerData.entry); });
`;
