/** Opens the audit store a config names: the embedded SQLite store, or PostgreSQL. */
import type { AuditStore } from './audit.ts';
import { SqliteAuditStore } from './sqlite-audit.ts';
import { openStore } from './store.ts';

export type StoreSpec =
  | { readonly kind: 'sqlite'; readonly dataDir: string }
  | { readonly kind: 'postgres'; readonly url: string };

/** How long a write waits for a lock another process holds before the store counts as failing. */
const SQLITE_BUSY_MS = 1_000;

export async function openAuditStore(spec: StoreSpec): Promise<AuditStore> {
  if (spec.kind === 'sqlite') {
    const store = openStore(spec.dataDir);
    store.db.pragma(`busy_timeout = ${SQLITE_BUSY_MS}`);
    // WAL with NORMAL: a commit is safe from a Warden crash at once and from a power cut at the
    // next checkpoint; FULL would fsync every group commit and cost ~5 ms each.
    store.db.pragma('synchronous = NORMAL');
    return new SqliteAuditStore(store.db, () => store.close());
  }
  const { PostgresAuditStore } = await import('./postgres-audit.ts');
  return PostgresAuditStore.open(spec.url);
}
