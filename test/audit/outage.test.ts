/**
 * When the audit store cannot be written, no event is lost and none is
 * written twice. The outage is real: another connection holds SQLite's
 * write lock, so the audit worker's commits fail (after its busy timeout)
 * until it lets go. Fail closed (the default) refuses statements meanwhile;
 * spool keeps them running and replays the spool once the store is back.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import { ChainVerifier } from '../../src/audit/chain.ts';
import type { AuditEvent } from '../../src/audit/events.ts';
import { eventOf } from '../../src/audit/templates.ts';
import { AuditWriter } from '../../src/audit/writer.ts';
import { SqliteAuditStore } from '../../src/store/sqlite-audit.ts';
import { openStore } from '../../src/store/store.ts';
import {
  createTestDatabase,
  findTestServer,
  type TestDatabase,
  type TestServer,
} from '../fixtures/postgres.ts';
import { startWarden, type WardenHandle } from '../proxy/support.ts';

/** Holds the store's write lock until released: the audit worker's commits fail meanwhile. */
function lockStore(dataDir: string): { release(): void } {
  const db = new Database(join(dataDir, 'warden.db'));
  db.exec('BEGIN EXCLUSIVE');
  return {
    release() {
      db.exec('COMMIT');
      db.close();
    },
  };
}

async function until(condition: () => boolean, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Every stored event, checked: the chains verify, and the texts of statements that ran, in order. */
async function storedTrail(dataDir: string): Promise<{ events: AuditEvent[]; texts: string[] }> {
  const store = openStore(dataDir);
  try {
    const audit = new SqliteAuditStore(store.db);
    for (const chain of await audit.chains()) {
      const verifier = new ChainVerifier(chain);
      for await (const record of audit.chainRecords(chain)) verifier.check(record);
      assert.equal(verifier.problem, undefined, verifier.problem?.message);
    }
    const events: AuditEvent[] = [];
    for await (const record of audit.events({})) events.push(eventOf(record) as unknown as AuditEvent);
    const texts = events.flatMap((event) => (event.type === 'statement' && event.text ? [event.text] : []));
    return { events, texts };
  } finally {
    store.close();
  }
}

describe('an audit store outage', { timeout: 120_000 }, () => {
  let upstream: TestServer;
  let database: TestDatabase;

  before(async () => {
    upstream = await findTestServer();
    database = await createTestDatabase(upstream, 'audit_outage');
  });

  after(async () => {
    await database?.drop();
    await upstream?.close();
  });

  async function wardenWith(onStoreFailure: 'deny' | 'spool'): Promise<WardenHandle> {
    return startWarden({
      upstream,
      database: database.name,
      extraYaml: `audit:\n  onStoreFailure: ${onStoreFailure}\n`,
    });
  }

  it('fails closed by default: statements are refused until the store is back, and what ran is recorded once', async () => {
    const warden = await wardenWith('deny');
    const client = new pg.Client(warden.pgConfig('alice'));
    try {
      await client.connect();
      const audit = warden.server.audit!;
      const lock = lockStore(warden.config.dataDir);
      await client.query("SELECT 'before the outage was noticed'");
      await until(() => audit.stats.failing, 'the writer notices the outage');
      await assert.rejects(client.query("SELECT 'refused'"), (error: pg.DatabaseError) => {
        assert.equal(error.code, '58030');
        assert.match(error.message, /cannot write its audit trail .* so it runs no statement until it can/);
        return true;
      });
      lock.release();
      await until(() => !audit.stats.failing, 'the writer recovers');
      await client.query("SELECT 'after the outage'");
      await client.end();
      await audit.flush();
      const { texts, events } = await storedTrail(warden.config.dataDir);
      assert.deepEqual(texts, ["SELECT '?'", "SELECT '?'"]);
      assert.equal(events.filter((event) => event.type === 'connection.close').length, 1);
      assert.equal(audit.stats.recorded, audit.stats.committed, 'every recorded event was committed');
    } finally {
      await warden.close();
    }
  });

  it('spools while the store is down, keeps statements running, and replays each event exactly once', async () => {
    const warden = await wardenWith('spool');
    const client = new pg.Client(warden.pgConfig('alice'));
    try {
      await client.connect();
      const audit = warden.server.audit!;
      const lock = lockStore(warden.config.dataDir);
      for (let i = 0; i < 20; i++) await client.query(`SELECT ${i} AS spooled`);
      await until(() => audit.stats.spooled > 0 && audit.stats.queued === 0, 'the events are spooled');
      assert.ok(existsSync(join(warden.config.dataDir, `audit-spool-${warden.config.audit.chain}.jsonl`)));
      lock.release();
      await until(() => !audit.stats.failing, 'the spool is replayed');
      for (let i = 0; i < 5; i++) await client.query(`SELECT ${i} AS after`);
      await client.end();
      await audit.flush();
      assert.ok(!existsSync(join(warden.config.dataDir, `audit-spool-${warden.config.audit.chain}.jsonl`)));
      const { texts } = await storedTrail(warden.config.dataDir);
      assert.equal(texts.filter((text) => text === 'SELECT ? AS spooled').length, 20);
      assert.equal(texts.filter((text) => text === 'SELECT ? AS after').length, 5);
    } finally {
      await warden.close();
    }
  });

  it('spools what it could not write when Warden stops during the outage, and writes it at the next start', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'warden-audit-'));
    const options = {
      store: { kind: 'sqlite', dataDir: dir },
      chain: 'restart-test',
      redact: true,
      onFailure: 'deny',
      spoolFile: join(dir, 'spool.jsonl'),
      queueLimit: 1000,
      retryMs: 200,
    } as const;
    try {
      const first = await AuditWriter.start(options);
      const event = (detail: string): AuditEvent => ({
        type: 'admin',
        at: new Date().toISOString(),
        identity: 'operator',
        action: 'test',
        detail,
      });
      first.record(event('committed'));
      await first.flush();
      const lock = lockStore(dir);
      for (let i = 0; i < 10; i++) first.record(event(`during ${i}`));
      await until(() => first.stats.failing, 'the writer notices the outage');
      await first.close();
      lock.release();
      assert.ok(existsSync(options.spoolFile), 'the events waiting in memory were spooled at shutdown');

      const second = await AuditWriter.start(options);
      second.record(event('after restart'));
      await second.flush();
      await second.close();
      const { events } = await storedTrail(dir);
      assert.deepEqual(
        events.map((e) => (e.type === 'admin' ? e.detail : e.type)),
        ['committed', ...Array.from({ length: 10 }, (_, i) => `during ${i}`), 'after restart'],
      );
      assert.ok(!existsSync(options.spoolFile));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
