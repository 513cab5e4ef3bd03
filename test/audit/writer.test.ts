/**
 * The audit writer on its own: retention, the bounded queue, redaction off,
 * and that what it writes verifies.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { ChainVerifier } from '../../src/audit/chain.ts';
import type { AuditEvent } from '../../src/audit/events.ts';
import { ChainAppender } from '../../src/audit/records.ts';
import type { StatementRun } from '../../src/audit/statement.ts';
import { eventOf } from '../../src/audit/templates.ts';
import { AuditWriter, type AuditWriterOptions } from '../../src/audit/writer.ts';
import { SqliteAuditStore } from '../../src/store/sqlite-audit.ts';
import { openStore } from '../../src/store/store.ts';

const admin = (detail: string, at = new Date().toISOString()): AuditEvent => ({
  type: 'admin',
  at,
  identity: 'operator',
  action: 'test',
  detail,
});

const run = (sql: string): StatementRun => ({
  type: 'statement',
  atMs: Date.now(),
  identity: 'alice',
  session: 'test/1',
  target: 'shop',
  sessionPipeline: null,
  pipelineFixed: false,
  applicationName: '',
  source: 'query',
  sql,
  fingerprint: null,
  kinds: ['read'],
  tables: [],
  decision: 'allow',
  rule: null,
  matched: [],
  outcome: 'ok',
  sqlstate: null,
  rows: 1,
  masked: [],
  maskedRows: 0,
  durationMs: 1,
});

describe('the audit writer', { timeout: 60_000 }, () => {
  let dir: string;
  let options: AuditWriterOptions;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'warden-writer-'));
    options = {
      store: { kind: 'sqlite', dataDir: dir },
      chain: 'writer-test',
      redact: true,
      onFailure: 'deny',
      spoolFile: join(dir, 'spool.jsonl'),
      queueLimit: 1000,
    };
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  async function stored(): Promise<{ details: string[]; texts: (string | null)[]; verified: boolean }> {
    const store = openStore(dir);
    try {
      const audit = new SqliteAuditStore(store.db);
      let verified = true;
      for (const chain of await audit.chains()) {
        const verifier = new ChainVerifier(chain, await audit.anchor(chain));
        for await (const record of audit.chainRecords(chain)) verifier.check(record);
        verified &&= verifier.problem === undefined;
      }
      const details: string[] = [];
      const texts: (string | null)[] = [];
      for await (const record of audit.events({})) {
        const event = eventOf(record) as unknown as AuditEvent;
        if (event.type === 'admin') details.push(event.detail);
        if (event.type === 'statement') texts.push(event.text);
      }
      return { details, texts, verified };
    } finally {
      store.close();
    }
  }

  it('deletes events older than retentionDays at start, and the rest still verifies', async () => {
    const store = openStore(dir);
    const old = new Date(Date.now() - 10 * 86_400_000).toISOString();
    const chain = new ChainAppender('writer-test', undefined);
    const { records, access } = chain.append([admin('old 1', old), admin('old 2', old), admin('recent')]);
    await new SqliteAuditStore(store.db).append(records, access);
    store.close();
    const writer = await AuditWriter.start({ ...options, retentionDays: 7 });
    writer.record(admin('new'));
    await writer.flush();
    await writer.close();
    const { details, verified } = await stored();
    assert.deepEqual(details, ['recent', 'new']);
    assert.ok(verified, 'the chain verifies from the anchor the prune left');
  });

  it('refuses statements once queueLimit events wait, and keeps memory bounded past twice that', async () => {
    const writer = await AuditWriter.start({ ...options, queueLimit: 3, flushMs: 60_000 });
    try {
      const refusal = () => writer.refusal?.sqlstate;
      writer.record(admin('1'));
      writer.record(admin('2'));
      assert.equal(refusal(), undefined);
      writer.record(admin('3'));
      assert.equal(refusal(), '53000');
      for (let i = 4; i <= 7; i++) writer.record(admin(String(i)));
      assert.equal(writer.stats.dropped, 1, 'past twice the limit, an event is counted, not kept');
      await writer.flush();
      assert.equal(refusal(), undefined, 'written, the queue is free again');
      assert.equal(writer.stats.committed, 6);
    } finally {
      await writer.close();
    }
  });

  it('stores texts as sent when redactLiterals is off, and with literals replaced when on', async () => {
    const plain = await AuditWriter.start({ ...options, redact: false });
    plain.record(run("SELECT * FROM t WHERE name = 'Ada'"));
    await plain.close();
    const redacting = await AuditWriter.start(options);
    redacting.record(run("SELECT * FROM t WHERE name = 'Ada' AND id = 5"));
    redacting.record(run("SELECT E'Ada\\\\n'"));
    await redacting.close();
    const { texts } = await stored();
    assert.deepEqual(texts, [
      "SELECT * FROM t WHERE name = 'Ada'",
      "SELECT * FROM t WHERE name = '?' AND id = ?",
      null, // an E'' string: its literal cannot be read with certainty, so no text at all
    ]);
  });
});
