import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { SqliteAuditStore } from '../../src/store/sqlite-audit.ts';
import { openStore } from '../../src/store/store.ts';
import { auditStoreSuite, checkMigratedStore, LEGACY_EVENTS, legacyRecords } from './audit-store.suite.ts';

auditStoreSuite('SQLite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'warden-audit-'));
  const opened = openStore(dir);
  const store = new SqliteAuditStore(opened.db, () => opened.close());
  return {
    store,
    async tamper(sql, params = []) {
      // Another connection to the file, as anyone who can write it could open.
      const db = new Database(opened.file);
      try {
        // better-sqlite3 binds `?` in order: $n become `?`, their values in the order they appear.
        const ordered: unknown[] = [];
        const text = sql.replace(/\$(\d+)/g, (_, n: string) => {
          ordered.push(params[Number(n) - 1]);
          return '?';
        });
        db.prepare(text).run(...ordered);
      } finally {
        db.close();
      }
    },
    async cleanup() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

/** The audit tables as schema version 3 (before statement templates) left them. */
const VERSION_3 = `
  CREATE TABLE audit_events (
    chain TEXT NOT NULL, seq INTEGER NOT NULL, at TEXT NOT NULL, type TEXT NOT NULL,
    identity TEXT NOT NULL, pipeline TEXT, target TEXT, tables TEXT, body TEXT NOT NULL,
    hash TEXT NOT NULL, PRIMARY KEY (chain, seq)
  );
  CREATE INDEX audit_events_at ON audit_events (at);
  CREATE TABLE audit_anchors (chain TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL);
  CREATE TABLE table_access (
    bucket TEXT NOT NULL, identity TEXT NOT NULL, pipeline TEXT NOT NULL, target TEXT NOT NULL,
    table_name TEXT NOT NULL, operation TEXT NOT NULL, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
    statements INTEGER NOT NULL, rows INTEGER NOT NULL, masked TEXT NOT NULL,
    PRIMARY KEY (bucket, identity, pipeline, target, table_name, operation)
  );
  CREATE INDEX table_access_table ON table_access (table_name, bucket);
  CREATE TABLE identity_salts (identity TEXT PRIMARY KEY, salt BLOB NOT NULL, iterations INTEGER NOT NULL);
  CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY, identity TEXT NOT NULL, stored_key BLOB NOT NULL, server_key BLOB NOT NULL,
    label TEXT, created_at TEXT NOT NULL, revoked_at TEXT
  );
  PRAGMA user_version = 3;
`;

describe('the SQLite audit store', () => {
  it('opens a store written before statement templates: its events verify, and its chains go on', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'warden-audit-'));
    try {
      const old = new Database(join(dir, 'warden.db'));
      old.exec(VERSION_3);
      const insert = old.prepare(
        'INSERT INTO audit_events (chain, seq, at, type, identity, pipeline, target, tables, body, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      );
      for (const r of legacyRecords('old', LEGACY_EVENTS)) {
        const tables = r.tables.length > 0 ? `,${r.tables.join(',')},` : null;
        insert.run(r.chain, r.seq, r.at, r.type, r.identity, r.pipeline, r.target, tables, r.body, r.hash);
      }
      old.close();
      const opened = openStore(dir);
      try {
        assert.equal(opened.db.pragma('user_version', { simple: true }), 6);
        await checkMigratedStore(new SqliteAuditStore(opened.db));
      } finally {
        opened.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
