/**
 * `warden audit verify|search|export|tail` and `warden access`: reading the
 * audit trail from the command line; and `recordAdminEvent`, which puts what
 * an operator does with the CLI (creating and revoking keys) into the trail,
 * in this host's `cli@<hostname>` chain.
 *
 * Every command opens the store the config names and closes it whatever
 * happens. Output that comes from the trail (identities, pipelines, SQL
 * texts, which clients chose) is printed with control characters escaped,
 * so that a crafted user name or statement cannot drive the operator's
 * terminal; `--json`, `export` and `access --json` print it as JSON or CSV,
 * faithfully. A statement event is printed whole: the fields its stored
 * template holds are filled in.
 */
import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { ChainVerifier } from '../audit/chain.ts';
import {
  type Checkpoint,
  checkpointsInLog,
  keyId,
  publicKeyOf,
  signatureHolds,
  signingKey,
} from '../audit/checkpoints.ts';
import {
  type AdminAction,
  type ApprovalEvent,
  type AuditEvent,
  canonicalJson,
  type KeyChanged,
} from '../audit/events.ts';
import { ChainAppender } from '../audit/records.ts';
import { eventOf } from '../audit/templates.ts';
import { loadConfig, type WardenConfig } from '../config/index.ts';
import type { AccessQuery, AccessRow, AuditRecord, AuditStore, EventQuery } from '../store/audit.ts';
import { openAuditStore } from '../store/open-audit.ts';
import { StoreError } from '../store/store.ts';
import { UsageError } from './errors.ts';

const err = (text: string) => process.stderr.write(`${text}\n`);

/** Every event type, for --type. */
export const EVENT_TYPES: readonly AuditEvent['type'][] = Object.keys({
  'connection.open': true,
  'connection.close': true,
  'login.failed': true,
  statement: true,
  'config.reload': true,
  'key.create': true,
  'key.revoke': true,
  admin: true,
  'approval.request': true,
  'approval.decision': true,
  'approval.settle': true,
} satisfies Record<AuditEvent['type'], true>) as AuditEvent['type'][];

/** How many events `tail --follow` asks for at a time, and how often it asks. */
const FOLLOW_BATCH = 1_000;
const FOLLOW_POLL_MS = 500;
/** Longest statement text in a line of search and tail. */
const TEXT_CLIP = 100;

// ---------------------------------------------------------------------------
// Options

export interface FilterOptions {
  readonly config: string;
  readonly identity?: string;
  readonly pipeline?: string;
  readonly table?: string;
  readonly target?: string;
  readonly type?: string;
  readonly since?: string;
  readonly until?: string;
}

const UNITS: Readonly<Record<string, number>> = {
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};
const RELATIVE = /^(\d{1,9})([smhdw])$/;
const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/i;

/**
 * A --since or --until value as the store compares times: ISO 8601, UTC,
 * milliseconds. Accepts an ISO 8601 time (a date alone is midnight UTC; a
 * time without a zone is local time) or a duration ago: 90s, 30m, 2h, 7d, 2w.
 */
export function parseTime(value: string, flag: string, now: number = Date.now()): string {
  const relative = RELATIVE.exec(value);
  if (relative) return new Date(now - Number(relative[1]) * UNITS[relative[2]!]!).toISOString();
  const iso = ISO.exec(value);
  if (iso) {
    const [year, month, day] = [Number(iso[1]), Number(iso[2]), Number(iso[3])];
    const calendar = new Date(Date.UTC(year, month - 1, day));
    const ms = Date.parse(value);
    if (calendar.getUTCMonth() === month - 1 && calendar.getUTCDate() === day && !Number.isNaN(ms)) {
      return new Date(ms).toISOString();
    }
  }
  throw new UsageError(
    `${flag} must be an ISO 8601 time or a time ago, not "${value}": for example ${flag} 2024-05-01T09:00:00Z, ${flag} 2024-05-01, or ${flag} 30m (also 90s, 2h, 7d, 2w)`,
  );
}

function positiveInteger(value: string, flag: string): number {
  const number = Number(value);
  if (!/^\d+$/.test(value) || number < 1 || !Number.isSafeInteger(number)) {
    throw new UsageError(`${flag} must be a whole number from 1 up, not "${value}" (for example ${flag} 50)`);
  }
  return number;
}

/** The store's query for the filter options; usage mistakes are thrown before the store is opened. */
export function eventQuery(options: FilterOptions, limit?: number): EventQuery {
  if (options.type !== undefined && !(EVENT_TYPES as readonly string[]).includes(options.type)) {
    throw new UsageError(`--type must be one of ${EVENT_TYPES.join(', ')}, not "${options.type}"`);
  }
  const since = options.since === undefined ? undefined : parseTime(options.since, '--since');
  const until = options.until === undefined ? undefined : parseTime(options.until, '--until');
  if (since !== undefined && until !== undefined && since >= until) {
    throw new UsageError(
      `--since (${since}) is not before --until (${until}): no event can match; swap them or widen the range`,
    );
  }
  return {
    identity: options.identity,
    pipeline: options.pipeline,
    table: options.table,
    target: options.target,
    type: options.type,
    since,
    until,
    limit,
  };
}

async function withAuditStore<T>(file: string, work: (store: AuditStore) => Promise<T>): Promise<T> {
  const config = await loadConfig(file);
  const store = await openAuditStore(config.audit.store);
  try {
    return await work(store);
  } finally {
    await store.close();
  }
}

// ---------------------------------------------------------------------------
// Output

/**
 * Standard output with backpressure: waits for a full pipe to drain, and
 * stops quietly once the reader is gone (`warden audit export | head`).
 */
class Output {
  broken = false;
  private failure: Error | undefined;

  constructor(private readonly stream: NodeJS.WritableStream = process.stdout) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      this.broken = true;
      if (error.code !== 'EPIPE') this.failure = error;
    });
  }

  async line(text: string): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.broken) return;
    if (this.stream.write(`${text}\n`)) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        this.stream.off('drain', done);
        this.stream.off('error', done);
        this.stream.off('close', done);
        resolve();
      };
      this.stream.on('drain', done);
      this.stream.on('error', done);
      this.stream.on('close', done);
    });
  }
}

/** One line of text from the trail: whitespace runs made one space, control and bidi characters escaped. */
export function clean(text: string): string {
  return text
    .replace(/\s+/g, ' ')
    .replace(
      /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
    );
}

function clip(text: string, length: number): string {
  const chars = [...text];
  return chars.length <= length ? text : `${chars.slice(0, length - 1).join('')}…`;
}

type Body = Record<string, unknown>;

/** The stored event, a statement's template filled in (src/audit/templates.ts). */
function parseBody(record: AuditRecord): Body | undefined {
  return eventOf(record);
}

const str = (value: unknown): string => (value === null || value === undefined ? '' : String(value));
const list = (value: unknown): string[] => (Array.isArray(value) ? value.map(str) : []);

/** What an event says, in a few words: the last column of search and tail. */
export function summaryOf(record: AuditRecord): string {
  const e = parseBody(record);
  if (e === undefined) return '(the stored event is not valid JSON: run warden audit verify)';
  switch (record.type) {
    case 'statement': {
      const masked = list(e.masked);
      const parts = [
        `${str(e.decision)}${e.rule ? ` by ${str(e.rule)}` : ''}`,
        `${str(e.outcome)}${e.sqlstate ? ` ${str(e.sqlstate)}` : ''}`,
        `rows=${str(e.rows)}`,
        ...(masked.length > 0 ? [`masked=${masked.join(',')}`] : []),
      ];
      const text =
        e.text === null || e.text === undefined ? '(no text)' : clip(clean(str(e.text)), TEXT_CLIP);
      return clean(`${parts.join(' ')}: ${text}`);
    }
    case 'connection.open': {
      const app = e.applicationName ? ` app=${str(e.applicationName)}` : '';
      return clean(
        `${str(e.kind)} from ${str(e.client)} to ${str(e.target)}${e.tls ? ' tls' : ' no-tls'}${app} session ${str(e.session)}`,
      );
    }
    case 'connection.close':
      return clean(
        `from ${str(e.target)} after ${(Number(e.durationMs) / 1000).toFixed(1)} s, ${str(e.statements)} statements, session ${str(e.session)}`,
      );
    case 'login.failed':
      return clean(`from ${str(e.client)} to ${str(e.target)}: ${str(e.reason)} (${str(e.sqlstate)})`);
    case 'config.reload':
      return clean(`${str(e.file)}: ${e.ok ? 'ok' : `refused: ${str(e.error)}`}`);
    case 'key.create':
    case 'key.revoke':
      return clean(`key ${str(e.keyId)} of ${str(e.subject)}`);
    case 'admin':
      return clean(`${str(e.action)}: ${str(e.detail)}`);
    case 'approval.request':
    case 'approval.decision':
    case 'approval.settle': {
      const why = e.reason ? `: ${str(e.reason)}` : '';
      const via = e.channel ? ` via ${str(e.channel)}` : '';
      return clean(`${str(e.request)} on ${str(e.target)} ${str(e.detail)}${via}${why}`);
    }
    default:
      return clean(record.body);
  }
}

/** `at  chain#seq  type  identity  pipeline  summary`. */
export function eventLine(record: AuditRecord): string {
  return [
    record.at,
    clean(`${record.chain}#${record.seq}`),
    clean(record.type),
    clean(record.identity),
    clean(record.pipeline ?? '-'),
    summaryOf(record),
  ].join('  ');
}

/** A CSV field: quoted when it holds a comma, quote or line break, quotes doubled. */
export function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

export const CSV_COLUMNS = [
  'chain',
  'seq',
  'at',
  'type',
  'identity',
  'pipeline',
  'target',
  'decision',
  'outcome',
  'sqlstate',
  'rows',
  'masked',
  'text',
  'hash',
] as const;

function csvRow(record: AuditRecord): string {
  const e = (record.type === 'statement' ? parseBody(record) : undefined) ?? {};
  const fields: Record<(typeof CSV_COLUMNS)[number], string> = {
    chain: record.chain,
    seq: String(record.seq),
    at: record.at,
    type: record.type,
    identity: record.identity,
    pipeline: str(record.pipeline),
    target: str(record.target),
    decision: str(e.decision),
    outcome: str(e.outcome),
    sqlstate: str(e.sqlstate),
    rows: str(e.rows),
    masked: list(e.masked).join(';'),
    text: str(e.text),
    hash: record.hash,
  };
  return CSV_COLUMNS.map((column) => csvField(fields[column])).join(',');
}

/**
 * The event as stored (canonical JSON) with its hash added: drop `hash` and
 * re-canonicalise to check it. A statement that names a template has the
 * template's fields filled in: drop those too for the stored body, and
 * canonicalise them alone for the template, whose SHA-256 is `template`.
 */
function jsonlRow(record: AuditRecord): string {
  const body = parseBody(record);
  if (body === undefined) {
    // A damaged row is exported as it is, not skipped: verify names it.
    return canonicalJson({
      chain: record.chain,
      seq: record.seq,
      unreadableBody: record.body,
      hash: record.hash,
    });
  }
  return canonicalJson({ ...body, hash: record.hash });
}

/** The event as JSON, its template (if any) filled in; a damaged body as it is stored. */
function eventJson(record: AuditRecord): string {
  const event = parseBody(record);
  return event === undefined ? record.body : canonicalJson(event);
}

// ---------------------------------------------------------------------------
// Commands

export interface VerifySummary {
  readonly chains: number;
  readonly problems: number;
}

export interface VerifyOptions {
  readonly config: string;
  /** PEM files of the keys checkpoints must be signed with (public keys, or the private key itself). */
  readonly publicKey?: readonly string[];
  /** Log files holding the checkpoints Warden logged as it signed them. */
  readonly checkpoints?: readonly string[];
}

/**
 * Checks every chain from its anchor, and holds it to its signed
 * checkpoints (the store's, and those of any log given); one line each.
 * The caller turns problems into exit code 1.
 */
export async function auditVerifyCommand(options: VerifyOptions): Promise<VerifySummary> {
  const trusted = options.publicKey?.map((file) => {
    const pem = readText(file, '--public-key');
    try {
      return publicKeyOf(pem, file);
    } catch (error) {
      throw new UsageError(`--public-key ${(error as Error).message}`);
    }
  });
  const logged = (options.checkpoints ?? []).flatMap((file) =>
    checkpointsInLog(readText(file, '--checkpoints')),
  );
  return withAuditStore(options.config, async (store) => {
    const out = new Output();
    const chains = [...new Set([...(await store.chains()), ...logged.map((c) => c.chain)])].sort();
    let problems = 0;
    for (const chain of chains) {
      const signed = [...(await store.checkpoints(chain)), ...logged.filter((c) => c.chain === chain)];
      const forged = signed.find((c) => !signatureHolds(c) || (trusted && !trusted.includes(c.key)));
      if (forged !== undefined) {
        problems++;
        await out.line(clean(`chain ${chain}: ${forgedMessage(forged)}`));
        continue;
      }
      const verifier = new ChainVerifier(chain, await store.anchor(chain), signed);
      for await (const record of store.chainRecords(chain)) {
        if (!verifier.check(record)) break;
      }
      verifier.finish();
      if (verifier.problem) {
        problems++;
        await out.line(clean(verifier.problem.message));
      } else {
        await out.line(
          clean(
            `chain ${chain}: ${verifier.checked} events verified${vouchedBy(verifier.vouched, trusted !== undefined)}`,
          ),
        );
      }
    }
    if (chains.length === 0) await out.line('no audit events to verify');
    return { chains: chains.length, problems };
  });
}

function forgedMessage(c: Checkpoint): string {
  return signatureHolds(c)
    ? `the checkpoint of event ${c.seq} (signed at ${c.at}) was signed by key ${keyId(c.key)}, which is not one of the --public-key keys: it was forged`
    : `the checkpoint of event ${c.seq} (signed at ${c.at}) does not match its signature: it was forged or edited`;
}

function vouchedBy(c: Checkpoint | undefined, keysGiven: boolean): string {
  if (c === undefined) return '';
  return `; the newest signed checkpoint (event ${c.seq}, ${c.at}, key ${keyId(c.key)}${keysGiven ? '' : ', not checked against a --public-key'}) holds`;
}

/**
 * Prints the public key of this Warden's checkpoint signing key (making the
 * key if Warden has not yet): what an auditor keeps, to verify with later.
 */
export async function auditPublicKeyCommand(options: { config: string }): Promise<void> {
  const config = await loadConfig(options.config);
  if (config.audit.checkpoints === undefined) {
    throw new UsageError('audit.checkpoints.enabled is false in the config: nothing is signed');
  }
  const { key } = signingKey(config.audit.checkpoints.keyFile, config.dataDir);
  process.stdout.write(createPublicKey(key).export({ format: 'pem', type: 'spki' }).toString());
}

function readText(file: string, option: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new UsageError(
      `${option} ${file}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`,
    );
  }
}

export interface SearchOptions extends FilterOptions {
  readonly limit: string;
  readonly json?: boolean;
}

export async function auditSearchCommand(options: SearchOptions): Promise<void> {
  const limit = positiveInteger(options.limit, '--limit');
  // One more than asked for: to say that there are more.
  const query = eventQuery(options, limit + 1);
  await withAuditStore(options.config, async (store) => {
    const out = new Output();
    let count = 0;
    for await (const record of store.events(query)) {
      if (++count > limit || out.broken) break;
      await out.line(options.json ? eventJson(record) : eventLine(record));
    }
    if (count > limit) {
      err(`showing the first ${limit} matching events, oldest first; narrow with --since, or raise --limit`);
    } else if (count === 0 && !options.json) {
      err('no matching events');
    }
  });
}

export interface ExportOptions extends FilterOptions {
  readonly format: string;
}

/** Writes every matching event as it reads it: memory stays flat however many there are. */
export async function auditExportCommand(options: ExportOptions): Promise<void> {
  if (options.format !== 'jsonl' && options.format !== 'csv') {
    throw new UsageError(`--format must be jsonl or csv, not "${options.format}"`);
  }
  const query = eventQuery(options);
  const csv = options.format === 'csv';
  await withAuditStore(options.config, async (store) => {
    const out = new Output();
    if (csv) await out.line(CSV_COLUMNS.join(','));
    for await (const record of store.events(query)) {
      if (out.broken) break;
      await out.line(csv ? csvRow(record) : jsonlRow(record));
    }
  });
}

export interface TailOptions {
  readonly config: string;
  readonly lines: string;
  readonly follow?: boolean;
}

export async function auditTailCommand(options: TailOptions): Promise<void> {
  const count = positiveInteger(options.lines, '-n');
  await withAuditStore(options.config, async (store) => {
    const out = new Output();
    // Each chain's head now: the last events are those up to it, and --follow prints those after.
    const cursor = new Map<string, number>();
    for (const chain of await store.chains()) cursor.set(chain, (await store.head(chain))?.seq ?? 0);
    for (const record of await lastEvents(store, cursor, count)) await out.line(eventLine(record));
    if (options.follow) await follow(store, cursor, out);
  });
}

/**
 * The last `count` events up to the heads in `cursor`. Events are ordered by
 * time, so those since some time are the newest of all: the look-back
 * widens until it holds enough, rather than scanning the whole trail.
 */
async function lastEvents(
  store: AuditStore,
  cursor: ReadonlyMap<string, number>,
  count: number,
): Promise<AuditRecord[]> {
  const now = Date.now();
  for (const window of [UNITS.h!, UNITS.d!, 30 * UNITS.d!, undefined]) {
    const query: EventQuery = window === undefined ? {} : { since: new Date(now - window).toISOString() };
    const ring: AuditRecord[] = [];
    let seen = 0;
    for await (const record of store.events(query)) {
      const head = cursor.get(record.chain);
      if (head === undefined || record.seq > head) continue;
      ring[seen % count] = record;
      seen++;
    }
    if (seen >= count || window === undefined) {
      const start = seen % count;
      return seen < count ? ring : [...ring.slice(start), ...ring.slice(0, start)];
    }
  }
  return [];
}

/** Prints events newer than the cursor as they arrive, until SIGINT or SIGTERM. */
async function follow(store: AuditStore, cursor: Map<string, number>, out: Output): Promise<void> {
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    while (!stop.signal.aborted && !out.broken) {
      const batch = await store.eventsAfter(cursor, FOLLOW_BATCH);
      for (const record of batch) {
        cursor.set(record.chain, Math.max(cursor.get(record.chain) ?? 0, record.seq));
        await out.line(eventLine(record));
      }
      if (batch.length === FOLLOW_BATCH) continue;
      await sleep(FOLLOW_POLL_MS, undefined, { signal: stop.signal }).catch(() => {});
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

export interface AccessOptions extends Omit<FilterOptions, 'type' | 'table'> {
  readonly table: string;
  readonly json?: boolean;
}

const ACCESS_HEADER = [
  'IDENTITY',
  'PIPELINE',
  'TARGET',
  'TABLE',
  'OPERATION',
  'FIRST SEEN',
  'LAST SEEN',
  'STATEMENTS',
  'ROWS',
  'MASKED',
] as const;

/** Who touched a table: the table-access index, summed over the hours the range touches. */
export async function accessCommand(options: AccessOptions): Promise<void> {
  const { since, until } = eventQuery(options);
  const query: AccessQuery = {
    table: options.table,
    identity: options.identity,
    pipeline: options.pipeline,
    target: options.target,
    since,
    until,
  };
  await withAuditStore(options.config, async (store) => {
    const rows = await store.access(query);
    const out = new Output();
    if (options.json) {
      await out.line(JSON.stringify(rows, null, 2));
      return;
    }
    if (rows.length === 0) {
      await out.line(`no recorded access to ${clean(options.table)}`);
      return;
    }
    await out.line(table([[...ACCESS_HEADER], ...rows.map(accessCells)]));
  });
}

function accessCells(row: AccessRow): string[] {
  return [
    row.identity,
    row.pipeline || '-',
    row.target,
    row.table,
    row.operation,
    row.firstSeen,
    row.lastSeen,
    String(row.statements),
    String(row.rows),
    row.masked.join(',') || '-',
  ].map(clean);
}

/** Columns padded to their widest cell, two spaces apart. */
function table(rows: readonly string[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => [...row[column]!].length)));
  return rows
    .map((row) =>
      row
        .map((cell, column) =>
          column === row.length - 1 ? cell : cell + ' '.repeat(widths[column]! - [...cell].length),
        )
        .join('  '),
    )
    .join('\n');
}

// ---------------------------------------------------------------------------
// What the CLI itself records

/** Who runs the CLI: the login name, or 'unknown' when the system cannot say. */
export function operator(): string {
  if (process.env.USER) return process.env.USER;
  try {
    return userInfo().username || 'unknown';
  } catch {
    // No passwd entry for this uid (a container, say).
    return 'unknown';
  }
}

/** This host's chain for events the CLI records. */
export function cliChain(): string {
  return `cli@${hostname()}`;
}

type Admin<E extends AuditEvent> = E extends unknown
  ? Omit<E, 'at' | 'identity'> & Partial<Pick<E, 'at' | 'identity'>>
  : never;

/** An event the CLI records: `at` defaults to now and `identity` to the operator. Never put a secret in one. */
export type AdminEventInput = Admin<KeyChanged | AdminAction | ApprovalEvent>;

/**
 * Appends one event to this host's CLI chain. Another CLI process may take
 * the same seq between reading the head and appending: then the append is
 * retried once after the new head. Failures are StoreErrors.
 */
export async function recordAdminEvent(
  config: WardenConfig,
  input: AdminEventInput,
): Promise<{ chain: string; seq: number }> {
  const event = {
    ...input,
    at: input.at ?? new Date().toISOString(),
    identity: input.identity ?? operator(),
  };
  const chain = cliChain();
  const what = `${event.type} event`;
  let store: AuditStore;
  try {
    store = await openAuditStore(config.audit.store);
  } catch (error) {
    throw new StoreError(`cannot record the ${what} in the audit trail: ${(error as Error).message}`);
  }
  try {
    for (let attempt = 1; ; attempt++) {
      const { records, access } = new ChainAppender(chain, await store.head(chain)).append([
        event as AuditEvent,
      ]);
      const seq = records[0]!.seq;
      try {
        await store.append(records, access);
        return { chain, seq };
      } catch (error) {
        const taken = ((await store.head(chain))?.seq ?? 0) >= seq;
        if (attempt === 1 && taken) continue;
        throw error;
      }
    }
  } catch (error) {
    throw new StoreError(`cannot record the ${what} in the audit trail: ${(error as Error).message}`);
  } finally {
    await store.close().catch(() => {});
  }
}
