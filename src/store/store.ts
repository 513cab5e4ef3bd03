/**
 * The one store: embedded SQLite in the data folder. Every concern that
 * needs tables adds a migration to the single list below, in order.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

export type Db = Database.Database;

export interface Store {
  readonly db: Db;
  readonly file: string;
  close(): void;
}

/** Append-only: never edit a migration that has shipped; add the next one. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE identity_salts (
     identity   TEXT PRIMARY KEY,
     salt       BLOB NOT NULL,
     iterations INTEGER NOT NULL
   );
   CREATE TABLE api_keys (
     key_id     TEXT PRIMARY KEY,
     identity   TEXT NOT NULL,
     stored_key BLOB NOT NULL,
     server_key BLOB NOT NULL,
     label      TEXT,
     created_at TEXT NOT NULL,
     revoked_at TEXT
   );
   CREATE INDEX api_keys_identity ON api_keys (identity) WHERE revoked_at IS NULL;`,
  // The audit trail (src/store/sqlite-audit.ts): events in hash chains, and the table-access index.
  `CREATE TABLE audit_events (
     chain    TEXT NOT NULL,
     seq      INTEGER NOT NULL,
     at       TEXT NOT NULL,
     type     TEXT NOT NULL,
     identity TEXT NOT NULL,
     pipeline TEXT,
     target   TEXT,
     tables   TEXT,
     body     TEXT NOT NULL,
     hash     TEXT NOT NULL,
     PRIMARY KEY (chain, seq)
   );
   CREATE INDEX audit_events_at ON audit_events (at);
   CREATE INDEX audit_events_identity ON audit_events (identity, at);
   CREATE INDEX audit_events_pipeline ON audit_events (pipeline, at) WHERE pipeline IS NOT NULL;
   CREATE TABLE audit_anchors (
     chain TEXT PRIMARY KEY,
     seq   INTEGER NOT NULL,
     hash  TEXT NOT NULL
   );
   CREATE TABLE table_access (
     bucket     TEXT NOT NULL,
     identity   TEXT NOT NULL,
     pipeline   TEXT NOT NULL,
     target     TEXT NOT NULL,
     table_name TEXT NOT NULL,
     operation  TEXT NOT NULL,
     first_seen TEXT NOT NULL,
     last_seen  TEXT NOT NULL,
     statements INTEGER NOT NULL,
     rows       INTEGER NOT NULL,
     masked     TEXT NOT NULL,
     PRIMARY KEY (bucket, identity, pipeline, target, table_name, operation)
   );
   CREATE INDEX table_access_table ON table_access (table_name, bucket);`,
  // Each index of audit_events costs ~4 µs per event written: searches by identity or pipeline
  // read the time range they are given (the table-access index answers who touched what).
  `DROP INDEX audit_events_identity;
   DROP INDEX audit_events_pipeline;`,
  // Statement templates (src/audit/templates.ts), each stored once: a templated statement event
  // names its template's id, and its tables are the template's (its own tables column stays null).
  `CREATE TABLE audit_templates (
     id     INTEGER PRIMARY KEY,
     hash   TEXT NOT NULL UNIQUE,
     body   TEXT NOT NULL,
     tables TEXT
   );
   ALTER TABLE audit_events ADD COLUMN template INTEGER;`,
  // Signed checkpoints of the chains' heads (src/audit/checkpoints.ts).
  `CREATE TABLE audit_checkpoints (
     chain     TEXT NOT NULL,
     seq       INTEGER NOT NULL,
     hash      TEXT NOT NULL,
     at        TEXT NOT NULL,
     key       TEXT NOT NULL,
     signature TEXT NOT NULL,
     PRIMARY KEY (chain, seq)
   );`,
  // Approval requests and their decisions (src/approvals/store.ts).
  `CREATE TABLE approval_requests (
     id            TEXT PRIMARY KEY,
     kind          TEXT NOT NULL,
     identity      TEXT NOT NULL,
     target        TEXT NOT NULL,
     sql           TEXT,
     parameters    TEXT,
     fingerprint   TEXT,
     statement_key TEXT,
     tables        TEXT NOT NULL,
     rule          TEXT,
     message       TEXT NOT NULL,
     grant_role    TEXT,
     grant_for_ms  INTEGER,
     reason        TEXT NOT NULL,
     approvers     TEXT NOT NULL,
     mode          TEXT NOT NULL,
     instance      TEXT NOT NULL,
     status        TEXT NOT NULL,
     created_at    TEXT NOT NULL,
     expires_at    TEXT NOT NULL,
     settled_at    TEXT,
     valid_for_ms  INTEGER,
     valid_until   TEXT
   );
   CREATE INDEX approval_requests_pending ON approval_requests (status, expires_at);
   CREATE INDEX approval_requests_statement ON approval_requests (identity, target, statement_key)
     WHERE statement_key IS NOT NULL;
   CREATE TABLE approval_decisions (
     request_id TEXT NOT NULL REFERENCES approval_requests (id),
     by         TEXT NOT NULL,
     verdict    TEXT NOT NULL,
     reason     TEXT NOT NULL,
     channel    TEXT NOT NULL,
     at         TEXT NOT NULL,
     PRIMARY KEY (request_id, by)
   );`,
];

export class StoreError extends Error {
  readonly code = 'WARDEN_ERR_STORE';
  override readonly name = 'StoreError';
}

export function openStore(dataDir: string): Store {
  const file = join(dataDir, 'warden.db');
  let db: Db;
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    db = new Database(file);
  } catch (error) {
    throw new StoreError(
      `cannot open the store at ${file}: ${(error as Error).message} (check dataDir in warden.yaml)`,
    );
  }
  db.pragma('journal_mode = WAL');
  db.pragma('busy_timeout = 5000');
  migrate(db);
  return { db, file, close: () => db.close() };
}

function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new StoreError(
      `the store is at schema version ${current}, newer than this Warden (${MIGRATIONS.length}): upgrade Warden`,
    );
  }
  for (let version = current; version < MIGRATIONS.length; version++) {
    // Immediate: several processes (workers, the audit thread) may open the store at once.
    db.transaction(() => {
      if ((db.pragma('user_version', { simple: true }) as number) !== version) return;
      db.exec(MIGRATIONS[version]!);
      db.pragma(`user_version = ${version + 1}`);
    }).immediate();
  }
}
