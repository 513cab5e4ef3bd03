/**
 * The compact way events reach the audit worker (src/audit/wire.ts and
 * src/audit/inbox.ts) ends in the same records as the plain way: each
 * StatementRun made an event by statementEvent, and every event chained by
 * ChainAppender.append. Byte for byte, hashes and access deltas included.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AuditEvent } from '../../src/audit/events.ts';
import { Inbox } from '../../src/audit/inbox.ts';
import { ChainAppender, type ChainedBatch } from '../../src/audit/records.ts';
import { type StatementRun, statementEvent } from '../../src/audit/statement.ts';
import { BATCH_EVENTS, Outbox, type WireBatch } from '../../src/audit/wire.ts';
import type { AccessDelta } from '../../src/store/audit.ts';

const T0 = Date.parse('2025-03-01T10:59:59.990Z');

// Shared as a session's decision shares them (see StatementTrace.run).
const READ = { kinds: ['read'], tables: [{ table: 'public.orders', operation: 'select' }] };
const WRITE = {
  kinds: ['write'],
  tables: [
    { table: 'public.orders', operation: 'update' },
    { table: 'customers', operation: 'select' },
  ],
};
const MATCHED = [{ rule: 'readers', action: 'allow' }];
const DENIED = [{ rule: 'no-payroll', action: 'deny' }];

const SQL = [
  "SELECT * FROM orders WHERE id = 7 AND note = 'x'",
  "SELECT * FROM orders WHERE id = 8 AND note = 'y'",
  "/* pipeline='nightly_etl',route='%2Fr' */ UPDATE orders SET total = 1",
  "/* pipeline='other' */ UPDATE orders SET total = 2",
  // A comment inside a literal: redacted away, yet it is what the tags are read from.
  "SELECT $$/* pipeline='sneaky' */$$ FROM orders",
  "SELECT $q$/* pipeline='quiet' */$q$ FROM orders",
  "SELECT E'a\\\\nb' FROM orders", // cannot be redacted with certainty: no text
  "SELECT E'c\\\\nd' FROM orders",
  null, // a FunctionCall
  'SELECT "na""me", 1.5e3 FROM orders -- trailing comment',
];

function run(i: number): StatementRun {
  const write = i % 3 === 0;
  const denied = i % 11 === 0;
  return {
    type: 'statement',
    atMs: T0 + i * 3,
    identity: i % 4 === 0 ? 'etl' : 'alice',
    session: `warden/${i % 5}`,
    target: 'shop',
    sessionPipeline: i % 5 === 0 ? null : `app-${i % 2}`,
    pipelineFixed: i % 5 === 1,
    applicationName: i % 2 === 0 ? 'psql' : 'billing "report"',
    source: i % 7 === 0 ? 'execute' : 'query',
    sql: SQL[i % SQL.length]!,
    fingerprint: i % 9 === 0 ? null : 'f00d',
    ...(write ? WRITE : READ),
    decision: denied ? 'deny' : 'allow',
    rule: denied ? 'no-payroll' : i % 2 === 0 ? 'readers' : null,
    matched: denied ? DENIED : MATCHED,
    outcome: denied ? 'error' : i % 13 === 0 ? 'not-run' : i % 6 === 0 ? 'error' : 'ok',
    sqlstate: denied ? '42501' : i % 6 === 0 ? '22012' : null,
    rows: i % 6 === 0 ? 0 : i * 1000,
    masked: i % 8 === 0 ? ['email', 'phone'] : i % 8 === 4 ? [`col${i % 3}`] : [],
    maskedRows: i % 8 === 0 ? i : 0,
    durationMs: i % 10 === 0 ? 0 : i / 7,
  };
}

function other(i: number): AuditEvent {
  return {
    type: 'connection.close',
    at: new Date(T0 + i * 3).toISOString(),
    identity: 'alice',
    session: `warden/${i % 5}`,
    target: 'shop',
    pipeline: null,
    durationMs: i,
    statements: 2,
  };
}

const isRun = (event: AuditEvent | StatementRun): event is StatementRun =>
  event.type === 'statement' && 'sql' in event;

/** The events through an Outbox, a structured clone with its transfers (as postMessage does) and an Inbox. */
function compact(
  events: readonly (AuditEvent | StatementRun)[],
  redact: boolean,
): { batches: WireBatch[]; chained: ChainedBatch[] } {
  const outbox = new Outbox();
  for (const event of events) outbox.add(event);
  const { batches, transfer } = outbox.take();
  const received = structuredClone(batches, { transfer });
  const chain = new ChainAppender('w1', undefined);
  const inbox = new Inbox(chain, redact);
  const chained = received.map((batch) => {
    inbox.read(batch);
    return chain.take();
  });
  return { batches: received, chained };
}

function plain(events: readonly (AuditEvent | StatementRun)[], redact: boolean): ChainedBatch {
  return new ChainAppender('w1', undefined).append(
    events.map((event) => (isRun(event) ? statementEvent(event, redact) : event)),
  );
}

const sortedDeltas = (deltas: readonly AccessDelta[]) =>
  [...deltas].sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));

/** Deltas of several batches summed per row, as the store sums them. */
function summed(batches: readonly ChainedBatch[]): AccessDelta[] {
  const rows = new Map<string, Mutable<AccessDelta>>();
  for (const { access } of batches) {
    for (const a of access) {
      const key = [a.bucket, a.identity, a.pipeline, a.target, a.table, a.operation].join('\u0000');
      const known = rows.get(key);
      if (known === undefined) {
        rows.set(key, { ...a, masked: [...a.masked].sort() });
        continue;
      }
      if (a.firstSeen < known.firstSeen) known.firstSeen = a.firstSeen;
      if (a.lastSeen > known.lastSeen) known.lastSeen = a.lastSeen;
      known.statements += a.statements;
      known.rows += a.rows;
      known.masked = [...new Set([...known.masked, ...a.masked])].sort();
    }
  }
  return sortedDeltas([...rows.values()]);
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

describe('events sent to the audit worker in compact form', { timeout: 60_000 }, () => {
  const mixed = Array.from({ length: 600 }, (_, i) => (i % 17 === 0 ? other(i) : run(i)));

  for (const redact of [true, false]) {
    it(`become the records and access deltas the plain way makes (redaction ${redact ? 'on' : 'off'})`, () => {
      const { chained } = compact(mixed, redact);
      assert.equal(chained.length, 1);
      const expected = plain(mixed, redact);
      assert.deepEqual(chained[0]!.records, expected.records);
      assert.deepEqual(sortedDeltas(chained[0]!.access), sortedDeltas(expected.access));
    });
  }

  it('redacts, reads tags from the whole text, and leaves no text it cannot redact', () => {
    const { chained } = compact(mixed.slice(0, SQL.length), true);
    const templates = chained[0]!.records.flatMap((r) => (r.template ? [JSON.parse(r.template.body)] : []));
    const texts = templates.map((t) => t.text);
    assert.ok(texts.includes("SELECT * FROM orders WHERE id = ? AND note = '?'"));
    assert.ok(texts.includes(null));
    assert.ok(!JSON.stringify(chained).includes("note = 'x'"), 'no literal reaches a record');
    const sneaky = templates.find((t) => t.tags.pipeline === 'sneaky');
    assert.equal(sneaky?.text, "SELECT '?' FROM orders");
  });

  it('splits a long queue into batches of at most BATCH_EVENTS, chained in order', () => {
    const many = Array.from({ length: 2 * BATCH_EVENTS + 5 }, (_, i) => run(i));
    const { batches, chained } = compact(many, true);
    assert.deepEqual(
      batches.map((b) => b.count),
      [BATCH_EVENTS, BATCH_EVENTS, 5],
    );
    const expected = plain(many, true);
    assert.deepEqual(
      chained.flatMap((c) => c.records),
      expected.records,
    );
    assert.deepEqual(summed(chained), summed([expected]));
  });

  it('keeps an event that lands just as the batch grows its numbers', () => {
    // The numbers start with room for 64 events and double: events at 64, 128, 256, 512.
    const growing = Array.from({ length: 600 }, (_, i) =>
      i >= 64 && (i & (i - 1)) === 0 ? other(i) : run(i),
    );
    const { chained } = compact(growing, true);
    assert.deepEqual(chained[0]!.records, plain(growing, true).records);
  });

  it('starts its dictionaries over once they are large, and what follows still decodes', () => {
    // A new session per statement: every one adds a dictionary entry.
    const sessions = Array.from({ length: 25_000 }, (_, i) => ({ ...run(i), session: `warden/s${i}` }));
    const { batches, chained } = compact(sessions, true);
    const resets = batches.filter((b) => b.reset).length;
    assert.ok(resets >= 1, 'the dictionaries started over');
    assert.ok(batches.every((b) => b.count <= BATCH_EVENTS));
    assert.deepEqual(
      chained.flatMap((c) => c.records),
      plain(sessions, true).records,
    );
  });
});
