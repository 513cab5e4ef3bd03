/**
 * API keys for service accounts and agents. A key is shown once at creation;
 * the store keeps only a SCRAM verifier, so neither a stolen database file
 * nor a log line can be replayed as the key.
 *
 * Keys of one identity share a salt: one SCRAM exchange (whose salt the
 * server must send before it knows which key the client holds) can then be
 * checked against every active key of that identity.
 */
import { randomBytes } from 'node:crypto';
import { makeVerifier, SCRAM_ITERATIONS, type ServerCredentials } from '../protocol/postgres/scram.ts';
import type { Store } from '../store/store.ts';

export interface ApiKeyInfo {
  readonly keyId: string;
  readonly identity: string;
  readonly label: string | null;
  readonly createdAt: string;
  readonly revokedAt: string | null;
}

export interface CreatedKey {
  readonly keyId: string;
  /** The secret, to show once. Clients send it as the password. */
  readonly secret: string;
}

const KEY_PREFIX = 'wdn';

function identitySalt(store: Store, identity: string): { salt: Buffer; iterations: number } {
  const row = store.db
    .prepare('SELECT salt, iterations FROM identity_salts WHERE identity = ?')
    .get(identity) as { salt: Buffer; iterations: number } | undefined;
  if (row) return row;
  const created = { salt: randomBytes(16), iterations: SCRAM_ITERATIONS };
  store.db
    .prepare('INSERT INTO identity_salts (identity, salt, iterations) VALUES (?, ?, ?)')
    .run(identity, created.salt, created.iterations);
  return created;
}

export function createApiKey(store: Store, identity: string, label?: string): CreatedKey {
  // Immediate: it reads the salt, then writes. A deferred transaction that must upgrade to write while
  // another process writes fails at once (SQLITE_BUSY) instead of waiting out the busy timeout.
  return store.db
    .transaction(() => {
      const keyId = randomBytes(6).toString('hex');
      const secret = `${KEY_PREFIX}_${keyId}_${randomBytes(32).toString('base64url')}`;
      const { salt, iterations } = identitySalt(store, identity);
      const verifier = makeVerifier(secret, salt, iterations);
      store.db
        .prepare(
          'INSERT INTO api_keys (key_id, identity, stored_key, server_key, label, created_at) VALUES (?, ?, ?, ?, ?, ?)',
        )
        .run(
          keyId,
          identity,
          verifier.storedKey,
          verifier.serverKey,
          label ?? null,
          new Date().toISOString(),
        );
      return { keyId, secret };
    })
    .immediate();
}

export function listApiKeys(store: Store, identity?: string): ApiKeyInfo[] {
  const rows = store.db
    .prepare(
      `SELECT key_id AS keyId, identity, label, created_at AS createdAt, revoked_at AS revokedAt
         FROM api_keys WHERE (? IS NULL OR identity = ?) ORDER BY created_at, key_id`,
    )
    .all(identity ?? null, identity ?? null) as ApiKeyInfo[];
  return rows;
}

/** Returns false when no active key has that id. */
export function revokeApiKey(store: Store, keyId: string): boolean {
  const result = store.db
    .prepare('UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL')
    .run(new Date().toISOString(), keyId);
  return result.changes === 1;
}

/** SCRAM material of an identity's active keys, or undefined when it has none. */
export function keyCredentials(store: Store, identity: string): ServerCredentials | undefined {
  const salt = store.db
    .prepare('SELECT salt, iterations FROM identity_salts WHERE identity = ?')
    .get(identity) as { salt: Buffer; iterations: number } | undefined;
  if (!salt) return undefined;
  const verifiers = store.db
    .prepare(
      'SELECT stored_key AS storedKey, server_key AS serverKey FROM api_keys WHERE identity = ? AND revoked_at IS NULL',
    )
    .all(identity) as { storedKey: Buffer; serverKey: Buffer }[];
  if (verifiers.length === 0) return undefined;
  return { salt: salt.salt, iterations: salt.iterations, verifiers };
}
