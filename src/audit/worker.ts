/**
 * The audit worker thread: owns the store connection and this instance's
 * chain head, so redaction, hashing and commits never run on the event loop
 * that serves sessions. Batches arrive in order, in the compact form of
 * src/audit/wire.ts; each is chained (src/audit/inbox.ts), then written in
 * one transaction (group commit).
 *
 * When the store cannot be written: with `onFailure: spool`, chained
 * records go to a local spool file in order and are replayed once the store
 * takes writes again; with `deny`, they wait in memory while the main
 * thread refuses statements, and are spooled only if Warden stops before
 * the store is back. Either way an event is written once: replay skips
 * records the store already holds (a crash between commit and truncating
 * the spool).
 */
import { createPrivateKey } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import type { AccessDelta, AuditRecord, AuditStore } from '../store/audit.ts';
import { openAuditStore, type StoreSpec } from '../store/open-audit.ts';
import { type Checkpoint, CheckpointSigner } from './checkpoints.ts';
import { Inbox } from './inbox.ts';
import { ChainAppender } from './records.ts';
import type { WireBatch } from './wire.ts';

export interface WorkerSettings {
  readonly store: StoreSpec;
  readonly chain: string;
  readonly redact: boolean;
  readonly onFailure: 'deny' | 'spool';
  readonly spoolFile: string;
  readonly retryMs: number;
  /** Events older than this many days are deleted (each chain keeps an anchor to verify from). */
  readonly retentionDays: number | undefined;
  /** Sign the chain head at most every `everyMs` after a commit, and as the worker closes. */
  readonly checkpoints: { readonly everyMs: number; readonly keyPem: string } | undefined;
}

/** Main thread → worker. */
export type ToWorker =
  | { readonly type: 'batch'; readonly batches: readonly WireBatch[] }
  | { readonly type: 'close' };

/** Worker → main thread. `done` counts events now safe (committed or spooled). */
export type FromWorker =
  | { readonly type: 'ready'; readonly seq: number }
  | { readonly type: 'done'; readonly count: number; readonly spooled: boolean }
  | { readonly type: 'failing'; readonly error: string }
  | { readonly type: 'recovered' }
  | { readonly type: 'closed' }
  | { readonly type: 'checkpoint'; readonly checkpoint: Checkpoint }
  | { readonly type: 'fatal'; readonly error: string };

interface Batch {
  readonly records: AuditRecord[];
  readonly access: AccessDelta[];
}

const { settings } = workerData as { readonly settings: WorkerSettings };
const port = parentPort!;
const send = (message: FromWorker) => port.postMessage(message);

let store: AuditStore;
let chain: ChainAppender;
let inbox: Inbox;
/** Chained batches not yet in the store (deny mode, while it fails). */
const waiting: Batch[] = [];
let spooling = false;
let failing = false;
let retry: NodeJS.Timeout | undefined;
const signer = settings.checkpoints && new CheckpointSigner(createPrivateKey(settings.checkpoints.keyPem));
/** The newest event committed, and the newest a checkpoint signed. */
let committedHead: { seq: number; hash: string } | undefined;
let signed = { seq: 0, atMs: 0 };

async function start(): Promise<void> {
  store = await openAuditStore(settings.store);
  const spooled = readSpool();
  let head = await store.head(settings.chain);
  const last = spooled.at(-1)?.records.at(-1);
  if (last && last.seq > (head?.seq ?? 0)) head = { seq: last.seq, hash: last.hash };
  chain = new ChainAppender(settings.chain, head);
  inbox = new Inbox(chain, settings.redact);
  if (spooled.length > 0) {
    spooling = true;
    await replay();
  }
  send({ type: 'ready', seq: chain.seq });
  if (settings.retentionDays !== undefined) {
    const prune = () => {
      const before = new Date(Date.now() - settings.retentionDays! * DAY_MS).toISOString();
      work = work.then(() =>
        store.prune(before).then(
          () => {},
          () => {},
        ),
      );
    };
    prune();
    pruning = setInterval(prune, PRUNE_INTERVAL_MS);
  }
}

const DAY_MS = 86_400_000;
const PRUNE_INTERVAL_MS = 3_600_000;
let pruning: NodeJS.Timeout | undefined;

async function onBatch(batch: WireBatch): Promise<void> {
  inbox.read(batch);
  const chained = chain.take();
  if (spooling) {
    spool(chained);
    send({ type: 'done', count: chained.records.length, spooled: true });
    return;
  }
  if (failing) {
    waiting.push(chained);
    return;
  }
  try {
    await store.append(chained.records, chained.access);
    send({ type: 'done', count: chained.records.length, spooled: false });
    committed(chained);
    await checkpoint(false);
  } catch (error) {
    failed(error);
    if (settings.onFailure === 'spool') {
      spooling = true;
      spool(chained);
      send({ type: 'done', count: chained.records.length, spooled: true });
    } else {
      waiting.push(chained);
    }
  }
}

function failed(error: unknown): void {
  if (!failing) send({ type: 'failing', error: (error as Error).message });
  failing = true;
  retry ??= setTimeout(() => {
    retry = undefined;
    work = work.then(retryStore);
  }, settings.retryMs);
}

async function retryStore(): Promise<void> {
  try {
    if (spooling) await replay();
    while (waiting.length > 0) {
      const batch = waiting[0]!;
      await store.append(batch.records, batch.access);
      waiting.shift();
      send({ type: 'done', count: batch.records.length, spooled: false });
      committed(batch);
    }
    failing = false;
    send({ type: 'recovered' });
    await checkpoint(false);
  } catch (error) {
    failed(error);
  }
}

function spool(batch: Batch): void {
  appendFileSync(settings.spoolFile, `${JSON.stringify(batch)}\n`, { mode: 0o600 });
}

function readSpool(): Batch[] {
  if (!existsSync(settings.spoolFile)) return [];
  const batches: Batch[] = [];
  for (const line of readFileSync(settings.spoolFile, 'utf8').split('\n')) {
    if (line === '') continue;
    try {
      batches.push(JSON.parse(line) as Batch);
    } catch {
      // A line cut short by a crash: the events it held were never acknowledged as safe.
    }
  }
  return batches;
}

/** Writes the spool to the store in order, skipping what it holds already; then removes the spool. */
async function replay(): Promise<void> {
  const heads = new Map<string, number>();
  for (const batch of readSpool()) {
    const records: AuditRecord[] = [];
    for (const record of batch.records) {
      let head = heads.get(record.chain);
      if (head === undefined) {
        head = (await store.head(record.chain))?.seq ?? 0;
        heads.set(record.chain, head);
      }
      if (record.seq > head) records.push(record);
    }
    if (records.length === 0) continue;
    // Access deltas of a batch committed before are committed too: skipped with their events.
    await store.append(records, records.length === batch.records.length ? batch.access : []);
    heads.set(records.at(-1)!.chain, records.at(-1)!.seq);
  }
  rmSync(settings.spoolFile, { force: true });
  spooling = false;
}

function committed(batch: Batch): void {
  const last = batch.records.at(-1);
  if (last !== undefined && last.chain === settings.chain) committedHead = { seq: last.seq, hash: last.hash };
}

/**
 * Signs the newest committed event, when there is a new one and `everyMs`
 * has passed (or at once, when forced). A checkpoint that cannot be stored
 * is tried again after the next commit: it guards events that are safe already.
 */
async function checkpoint(force: boolean): Promise<void> {
  const head = committedHead;
  if (signer === undefined || head === undefined || head.seq <= signed.seq) return;
  const now = Date.now();
  if (!force && now - signed.atMs < settings.checkpoints!.everyMs) return;
  const made = signer.sign({ chain: settings.chain, ...head }, new Date(now));
  try {
    await store.addCheckpoint(made);
  } catch {
    return;
  }
  signed = { seq: head.seq, atMs: now };
  send({ type: 'checkpoint', checkpoint: made });
}

async function close(): Promise<void> {
  clearTimeout(retry);
  clearInterval(pruning);
  if (!failing && !spooling) await checkpoint(true);
  // The store is still down: what waits in memory goes to the spool, replayed at the next start.
  for (const batch of waiting.splice(0)) spool(batch);
  await store.close();
  send({ type: 'closed' });
}

/** Messages handled one at a time, in order, after the start. */
let work: Promise<void> = start().catch((error: Error) => send({ type: 'fatal', error: error.message }));

port.on('message', (message: ToWorker) => {
  work = work.then(async () => {
    try {
      if (message.type === 'batch') for (const batch of message.batches) await onBatch(batch);
      else await close();
    } catch (error) {
      send({ type: 'fatal', error: (error as Error).message });
    }
  });
});
