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
    db.transaction(() => {
      db.exec(MIGRATIONS[version]!);
      db.pragma(`user_version = ${version + 1}`);
    })();
  }
}
