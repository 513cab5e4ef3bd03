/**
 * `warden start` as an operator runs it: JSON log lines on stdout, the HTTP
 * endpoints announced and answering, the audit trail in a PostgreSQL store,
 * and not one secret of the config (target password, audit store URL and
 * its password, masking key), of a client (API key, a wrong password) in
 * any log line.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import {
  clientConfig,
  createTestDatabase,
  findTestServer,
  type TestDatabase,
  type TestServer,
} from '../fixtures/postgres.ts';
import { connectError, run } from '../proxy/support.ts';

const WRONG_PASSWORD = 'wdn_Wrong-Guess-1234';
const MASKING_KEY = 'masking-Key-Secret-5678';

describe('warden start: logs, endpoints and a PostgreSQL audit store', { timeout: 120_000 }, () => {
  let upstream: TestServer;
  let database: TestDatabase;
  let dir: string;
  let file: string;
  let child: ChildProcess | undefined;
  let output = '';
  let key: string;
  let targetPassword: string;
  let auditPassword: string;
  /** What `warden` commands run with: the secrets the config names. */
  let env: NodeJS.ProcessEnv;

  const waitFor = async (pattern: RegExp, what: string): Promise<RegExpExecArray> => {
    for (let i = 0; i < 800; i++) {
      const match = pattern.exec(output);
      if (match) return match;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    assert.fail(`no ${what} within 20 s; output so far:\n${output}`);
  };

  before(async () => {
    upstream = await findTestServer();
    database = await createTestDatabase(upstream, 'logs');
    const direct = new pg.Client(clientConfig(upstream, database.name));
    await direct.connect();
    await direct.query(
      "CREATE TABLE customers (id int, email text); INSERT INTO customers VALUES (1, 'a@example.com')",
    );
    await direct.end();
    // With a trust server these are never asked for, yet Warden holds them as secrets all the same.
    targetPassword = upstream.password ?? 'tgt-Unused-Pa55word';
    auditPassword = upstream.password ?? 'audit-Url-Pa55word';
    dir = mkdtempSync(join(tmpdir(), 'warden-logs-'));
    file = join(dir, 'warden.yaml');
    writeFileSync(
      file,
      `listen: { host: 127.0.0.1, port: 0 }
http: { host: 127.0.0.1, port: 0 }
log: { level: debug, format: json }
dataDir: ./data
identities:
  - { name: etl, kind: service }
targets:
  - name: ${database.name}
    host: ${upstream.host}
    port: ${upstream.port}
    user: ${upstream.user}
    password: \${TARGET_PASSWORD}
    tls: { mode: disable }
    access: { identities: [etl] }
masking:
  key: \${MASKING_KEY}
  columns:
    - { table: public.customers, column: email, class: email }
audit:
  store: postgres
  url: \${AUDIT_URL}
`,
    );
    env = {
      HOME: process.env.HOME,
      TARGET_PASSWORD: targetPassword,
      MASKING_KEY,
      AUDIT_URL: `postgres://${upstream.user}:${encodeURIComponent(auditPassword)}@${upstream.host}:${upstream.port}/${database.name}`,
    };
    const created = await run(
      process.execPath,
      ['bin/warden.js', 'key', 'create', '--identity', 'etl', '--config', file],
      { env },
    );
    assert.equal(created.code, 0, created.stderr);
    key = created.stdout.trim();
    child = spawn(process.execPath, ['bin/warden.js', 'start', '--config', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH, ...env },
    });
    child.stdout!.on('data', (chunk) => {
      output += chunk;
    });
    child.stderr!.on('data', (chunk) => {
      output += chunk;
    });
  });

  after(async () => {
    child?.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
    await database?.drop();
    await upstream?.close();
  });

  it('serves sessions, answers on HTTP, logs JSON lines without a secret, and keeps a verifiable trail', async () => {
    const port = Number((await waitFor(/warden listening on 127\.0\.0\.1:(\d+)/, 'listening'))[1]);
    const httpPort = Number((await waitFor(/http on http:\/\/127\.0\.0\.1:(\d+)/, 'the HTTP listener'))[1]);
    const login = { host: '127.0.0.1', port, user: 'etl', database: database.name };

    const client = new pg.Client({ ...login, password: key });
    await client.connect();
    const { rows } = await client.query('SELECT email FROM customers');
    assert.notEqual(rows[0].email, 'a@example.com', 'masked');
    await client.end();
    assert.equal((await connectError({ ...login, password: WRONG_PASSWORD })).code, '28P01');

    assert.equal((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status, 200);
    const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    assert.match(metrics, /^warden_statements_masked_total 1$/m);
    assert.match(metrics, /^warden_login_failures_total\{sqlstate="28P01"\} 1$/m);

    await waitFor(/"msg":"login refused: [^"]*"/, 'the refused login logged');
    await waitFor(/"msg":"session closed"/, 'the session close logged (debug)');
    child!.kill('SIGTERM');
    await new Promise((resolve) => child!.once('exit', resolve));
    child = undefined;

    const lines = output.split('\n').filter((line) => line !== '');
    for (const line of lines) {
      const entry = JSON.parse(line) as { level: number; time: string; msg: string };
      assert.equal(typeof entry.level, 'number', line);
      assert.equal(typeof entry.msg, 'string', line);
    }
    assert.match(output, /"msg":"warden stopped"/);
    for (const secret of [targetPassword, auditPassword, MASKING_KEY, key, WRONG_PASSWORD])
      assert.ok(!output.includes(secret), `a secret reached the log:\n${output}`);

    // Stopping signs the chain's head; the log keeps that checkpoint, the store too.
    const checkpoint = lines
      .map((line) => JSON.parse(line) as { msg: string; checkpoint?: { seq: number; publicKey: string } })
      .filter((entry) => entry.msg === 'audit checkpoint')
      .at(-1)?.checkpoint;
    assert.ok(checkpoint, `no checkpoint logged:\n${output}`);
    const log = join(dir, 'warden.log');
    writeFileSync(log, output);
    const publicKey = await run(
      process.execPath,
      ['bin/warden.js', 'audit', 'public-key', '--config', file],
      {
        env,
      },
    );
    assert.equal(publicKey.code, 0, publicKey.stderr);
    writeFileSync(join(dir, 'audit.pub'), publicKey.stdout);
    const verified = await run(
      process.execPath,
      [
        'bin/warden.js',
        'audit',
        'verify',
        '--config',
        file,
        '--public-key',
        join(dir, 'audit.pub'),
        '--checkpoints',
        log,
      ],
      { env },
    );
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    const counts = [...verified.stdout.matchAll(/: (\d+) events verified/g)].map((match) => Number(match[1]));
    // The key's creation; two sessions' worth of events: opened, statement, closed, and the refused login.
    assert.ok(counts.reduce((sum, n) => sum + n, 0) >= 5, verified.stdout);
    assert.match(
      verified.stdout,
      new RegExp(
        `events verified; the newest signed checkpoint \\(event ${checkpoint.seq}, [^,]+, key [0-9a-f]{16}\\) holds$`,
        'm',
      ),
    );
  });
});
