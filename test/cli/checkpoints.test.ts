/**
 * Signed checkpoints, end to end: the audit writer's worker signs its chain
 * head after commits and as it closes, and the real `warden audit verify`
 * holds the stored chain to them: events cut off, a chain rewritten with new
 * hashes, a checkpoint re-signed with another key or edited; the log's copy
 * when the store's checkpoints are deleted as well.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { linkHash } from '../../src/audit/chain.ts';
import {
  type Checkpoint,
  CheckpointSigner,
  loggedCheckpoint,
  signingKey,
} from '../../src/audit/checkpoints.ts';
import type { AuditEvent } from '../../src/audit/events.ts';
import { AuditWriter } from '../../src/audit/writer.ts';
import { run } from '../proxy/support.ts';

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const admin = (detail: string): AuditEvent => ({
  type: 'admin',
  at: new Date().toISOString(),
  identity: 'operator',
  action: 'test',
  detail,
});

interface World {
  readonly dir: string;
  readonly file: string;
  readonly dataDir: string;
  /** The checkpoints as Warden's JSON log has them. */
  readonly log: string;
  readonly publicKey: string;
  readonly logged: readonly Checkpoint[];
}

/** Six events in two commits by a real audit writer that signs after each, and as it closes. */
async function makeWorld(): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'warden-checkpoints-'));
  dirs.push(dir);
  const dataDir = join(dir, 'data');
  const file = join(dir, 'warden.yaml');
  writeFileSync(file, 'dataDir: ./data\naudit: { chain: cp, checkpoints: { everySeconds: 1 } }\n');
  const logged: Checkpoint[] = [];
  const writer = await AuditWriter.start({
    store: { kind: 'sqlite', dataDir },
    chain: 'cp',
    redact: true,
    onFailure: 'deny',
    spoolFile: join(dir, 'spool.jsonl'),
    queueLimit: 1000,
    flushMs: 1,
    checkpoints: {
      everyMs: 1,
      keyPem: signingKey(undefined, dataDir).key.export({ format: 'pem', type: 'pkcs8' }).toString(),
    },
    onCheckpoint: (checkpoint) => logged.push(checkpoint),
  });
  for (const n of [1, 2, 3]) writer.record(admin(`first ${n}`));
  await writer.flush();
  await new Promise((resolve) => setTimeout(resolve, 5));
  for (const n of [4, 5, 6]) writer.record(admin(`second ${n}`));
  await writer.close();
  const log = join(dir, 'warden.log');
  writeFileSync(
    log,
    logged
      .map(
        (c) => `${JSON.stringify({ level: 30, msg: 'audit checkpoint', checkpoint: loggedCheckpoint(c) })}\n`,
      )
      .join(''),
  );
  const exported = await warden(['audit', 'public-key', '-c', file]);
  assert.equal(exported.code, 0, exported.stderr);
  const publicKey = join(dir, 'audit.pub');
  writeFileSync(publicKey, exported.stdout);
  return { dir, file, dataDir, log, publicKey, logged };
}

function warden(args: readonly string[]) {
  return run(process.execPath, ['bin/warden.js', ...args], { env: { HOME: process.env.HOME } });
}

function tamper(world: World, work: (db: Database.Database) => void): void {
  const db = new Database(join(world.dataDir, 'warden.db'));
  try {
    work(db);
  } finally {
    db.close();
  }
}

describe('signed audit checkpoints', { timeout: 120_000 }, () => {
  it('signs the head after commits and as the writer closes; verify holds the chain to them', async () => {
    const world = await makeWorld();
    assert.deepEqual(
      world.logged.map((c) => c.seq),
      [3, 6],
      'one after each commit (everyMs passed), none again at close',
    );
    const stored = (() => {
      const db = new Database(join(world.dataDir, 'warden.db'), { readonly: true });
      try {
        return db
          .prepare('SELECT chain, seq, hash, at, key, signature FROM audit_checkpoints ORDER BY seq')
          .all();
      } finally {
        db.close();
      }
    })();
    assert.deepEqual(stored, world.logged);
    const result = await warden(['audit', 'verify', '-c', world.file, '--public-key', world.publicKey]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(
      result.stdout,
      /^chain cp: 6 events verified; the newest signed checkpoint \(event 6, [^,]+, key [0-9a-f]{16}\) holds$/m,
    );
  });

  it('finds the newest events cut off', async () => {
    const world = await makeWorld();
    tamper(world, (db) => db.prepare("DELETE FROM audit_events WHERE chain = 'cp' AND seq >= 5").run());
    const result = await warden(['audit', 'verify', '-c', world.file]);
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(result.stdout, /^chain cp: the chain ends at event 4, .* events 5–6 were cut off$/m);
  });

  it("finds the cut with the log's copy when the store's checkpoints were deleted too", async () => {
    const world = await makeWorld();
    tamper(world, (db) => {
      db.prepare("DELETE FROM audit_events WHERE chain = 'cp' AND seq >= 5").run();
      db.prepare('DELETE FROM audit_checkpoints').run();
    });
    const storeOnly = await warden(['audit', 'verify', '-c', world.file]);
    assert.equal(storeOnly.code, 0, 'the store alone cannot show it');
    const withLog = await warden(['audit', 'verify', '-c', world.file, '--checkpoints', world.log]);
    assert.equal(withLog.code, 1, withLog.stdout + withLog.stderr);
    assert.match(withLog.stdout, /events 5–6 were cut off/);
  });

  it('finds a chain rewritten with new hashes and re-signed with another key, given the trusted key', async () => {
    const world = await makeWorld();
    const forger = new CheckpointSigner(generateKeyPairSync('ed25519').privateKey);
    tamper(world, (db) => {
      const rows = db
        .prepare("SELECT seq, body, hash FROM audit_events WHERE chain = 'cp' ORDER BY seq")
        .all() as {
        seq: number;
        body: string;
        hash: string;
      }[];
      let previous = rows[0]!.hash;
      const update = db.prepare("UPDATE audit_events SET body = ?, hash = ? WHERE chain = 'cp' AND seq = ?");
      for (const row of rows.slice(1)) {
        const body = row.seq === 2 ? row.body.replace('first 2', 'nothing here') : row.body;
        previous = linkHash(previous, body);
        update.run(body, previous, row.seq);
      }
      db.prepare('DELETE FROM audit_checkpoints').run();
      const forged = forger.sign({ chain: 'cp', seq: 6, hash: previous }, new Date());
      db.prepare(
        'INSERT INTO audit_checkpoints (chain, seq, hash, at, key, signature) VALUES (?, ?, ?, ?, ?, ?)',
      ).run(forged.chain, forged.seq, forged.hash, forged.at, forged.key, forged.signature);
    });
    const untrusted = await warden(['audit', 'verify', '-c', world.file]);
    assert.equal(untrusted.code, 0, 'without a trusted key, the forger signature holds for its own key');
    assert.match(untrusted.stdout, /not checked against a --public-key\) holds$/m);
    const trusted = await warden(['audit', 'verify', '-c', world.file, '--public-key', world.publicKey]);
    assert.equal(trusted.code, 1, trusted.stdout + trusted.stderr);
    assert.match(
      trusted.stdout,
      /^chain cp: the checkpoint of event 6 \(signed at [^)]+\) was signed by key [0-9a-f]{16}, which is not one of the --public-key keys: it was forged$/m,
    );
    const logged = await warden(['audit', 'verify', '-c', world.file, '--checkpoints', world.log]);
    assert.equal(logged.code, 1, 'the logged checkpoints still name the old hashes');
    assert.match(
      logged.stdout,
      /^chain cp: event 3 is not the event the checkpoint signed at .* vouches for/m,
    );
  });

  it('finds an edited checkpoint', async () => {
    const world = await makeWorld();
    tamper(world, (db) =>
      db.prepare("UPDATE audit_checkpoints SET seq = 5 WHERE chain = 'cp' AND seq = 6").run(),
    );
    const result = await warden(['audit', 'verify', '-c', world.file]);
    assert.equal(result.code, 1);
    assert.match(
      result.stdout,
      /^chain cp: the checkpoint of event 5 .* does not match its signature: it was forged or edited$/m,
    );
  });

  it('refuses a --public-key file without a key, and a keyFile that is not Ed25519', async () => {
    const world = await makeWorld();
    writeFileSync(join(world.dir, 'not-a-key.pem'), 'hello\n');
    const bad = await warden([
      'audit',
      'verify',
      '-c',
      world.file,
      '--public-key',
      join(world.dir, 'not-a-key.pem'),
    ]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--public-key .*not-a-key\.pem holds no public or private key/);

    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    writeFileSync(join(world.dir, 'rsa.pem'), rsa.export({ format: 'pem', type: 'pkcs8' }));
    writeFileSync(world.file, 'dataDir: ./data\naudit:\n  checkpoints:\n    keyFile: ./rsa.pem\n');
    const config = await warden(['audit', 'public-key', '-c', world.file]);
    assert.equal(config.code, 2);
    assert.match(
      config.stderr,
      /warden\.yaml:4:\d+ audit\.checkpoints\.keyFile: .*rsa\.pem .*is not an Ed25519 private key/,
    );
  });
});
