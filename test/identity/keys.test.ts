import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ApiKeyAuthenticator } from '../../src/identity/authenticator.ts';
import { createApiKey, keyCredentials, listApiKeys, revokeApiKey } from '../../src/identity/keys.ts';
import { ScramClient, ScramServer } from '../../src/protocol/postgres/scram.ts';
import { openStore } from '../../src/store/store.ts';

/** Runs a whole SCRAM exchange between our client and server sides. */
function scramLogin(authenticator: ApiKeyAuthenticator, identity: string, secret: string): boolean {
  const server = new ScramServer(authenticator.scramCredentials(identity), undefined);
  const client = new ScramClient(secret, 'SCRAM-SHA-256', undefined, false);
  const serverFirst = server.start('SCRAM-SHA-256', client.first());
  const serverFinal = server.finish(client.final(serverFirst));
  if (serverFinal === undefined) return false;
  client.verify(serverFinal); // the server proved it holds the verifier
  return true;
}

describe('API keys', () => {
  const dir = mkdtempSync(join(tmpdir(), 'warden-keys-'));
  const store = openStore(dir);
  const authenticator = new ApiKeyAuthenticator(store);
  after(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores no secret: only a SCRAM verifier, so the database file cannot be replayed as a key', () => {
    const key = createApiKey(store, 'etl');
    assert.match(key.secret, /^wdn_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    store.db.pragma('wal_checkpoint(TRUNCATE)');
    const file = readFileSync(store.file);
    assert.equal(file.indexOf(key.secret), -1);
    assert.equal(file.indexOf(key.secret.slice(key.secret.indexOf('_', 4) + 1)), -1);
  });

  it('verifies any active key of an identity in one SCRAM exchange', () => {
    const first = createApiKey(store, 'pipeline');
    const second = createApiKey(store, 'pipeline');
    assert.ok(scramLogin(authenticator, 'pipeline', first.secret));
    assert.ok(scramLogin(authenticator, 'pipeline', second.secret));
    assert.equal(scramLogin(authenticator, 'pipeline', `${first.secret}x`), false);
  });

  it('refuses a revoked key at once and lists it as revoked', () => {
    const key = createApiKey(store, 'agent', 'laptop');
    assert.ok(scramLogin(authenticator, 'agent', key.secret));
    assert.ok(revokeApiKey(store, key.keyId));
    assert.equal(revokeApiKey(store, key.keyId), false, 'revoking twice reports nothing to revoke');
    assert.equal(scramLogin(authenticator, 'agent', key.secret), false);
    const listed = listApiKeys(store, 'agent').find((info) => info.keyId === key.keyId);
    assert.equal(listed?.label, 'laptop');
    assert.ok(listed?.revokedAt);
    assert.equal(keyCredentials(store, 'agent'), undefined, 'no active keys left');
  });

  it('gives an unknown identity a stable stand-in salt that matches nothing', () => {
    const a = authenticator.scramCredentials('nobody');
    const b = authenticator.scramCredentials('nobody');
    assert.deepEqual(a.salt, b.salt);
    assert.equal(a.verifiers.length, 0);
    assert.equal(scramLogin(authenticator, 'nobody', 'anything'), false);
  });

  it('checks a cleartext secret against the same verifiers', async () => {
    const key = createApiKey(store, 'cleartext');
    assert.equal(await authenticator.verifySecret('cleartext', key.secret), true);
    assert.equal(await authenticator.verifySecret('cleartext', 'wrong'), false);
    assert.equal(await authenticator.verifySecret('nobody', key.secret), false);
  });
});
