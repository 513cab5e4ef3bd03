import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SqliteAuditStore } from '../../src/store/sqlite-audit.ts';
import { openStore } from '../../src/store/store.ts';
import { auditStoreSuite } from './audit-store.suite.ts';

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
