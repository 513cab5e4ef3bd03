import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import {
  createTestDatabase,
  findTestServer,
  type TestDatabase,
  type TestServer,
} from '../fixtures/postgres.ts';
import { run } from '../proxy/support.ts';

const warden = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  run(process.execPath, ['bin/warden.js', ...args], { env: { ...env, HOME: process.env.HOME } });

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

function configText(port: number, upstream: TestServer, database: string, identities: string): string {
  return `# written by the CLI test
listen:
  host: 127.0.0.1
  port: ${port}
http: { host: 127.0.0.1, port: 0 }
dataDir: ./data
identities:
${identities}
targets:
  - name: ${database}
    host: ${upstream.host}
    port: ${upstream.port}
    user: ${upstream.user}
    tls: { mode: disable }
    access: { kinds: [service, agent] }
`;
}

/** Collects a child's stdout and resolves when a line matches. */
function waitForOutput(child: ChildProcess, pattern: RegExp, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(
      () => reject(new Error(`no "${what}" within 20 s; output so far:\n${seen}`)),
      20_000,
    );
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      const match = seen.match(pattern);
      if (match) {
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        child.stderr?.off('data', onData);
        resolve(match[0]);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
  });
}

describe('the warden command', { timeout: 120_000 }, () => {
  let upstream: TestServer;
  let database: TestDatabase;
  let dir: string;
  let file: string;
  let port: number;
  let child: ChildProcess | undefined;

  before(async () => {
    upstream = await findTestServer();
    database = await createTestDatabase(upstream, 'cli');
    dir = mkdtempSync(join(tmpdir(), 'warden-cli-'));
    file = join(dir, 'warden.yaml');
    port = await freePort();
    writeFileSync(file, configText(port, upstream, database.name, '  - { name: etl, kind: service }'));
  });

  after(async () => {
    child?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    await database?.drop();
    await upstream?.close();
  });

  it('prints help for every subcommand', async () => {
    for (const args of [
      ['--help'],
      ['start', '--help'],
      ['check-config', '--help'],
      ['key', 'create', '--help'],
      ['demo', '--help'],
    ]) {
      const result = await warden(args);
      assert.equal(result.code, 0, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stdout, /Usage: warden/);
    }
  });

  it('check-config summarises a valid file and exits 0', async () => {
    const result = await warden(['check-config', file]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /etl \(service\)/);
    assert.match(result.stdout, /OK$/m);
  });

  it('check-config names the file, line and a fix for an invalid file, and exits 2', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'listen:\n  port: lots\n');
    const result = await warden(['check-config', bad]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /bad\.yaml:2:9/);
    assert.match(result.stderr, /fix: /);
  });

  it('exits 2 with a usage message for an unknown command', async () => {
    const result = await warden(['frobnicate']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /unknown command 'frobnicate'/);
  });

  let keyId = '';
  let secret = '';

  it('key create prints the key once, on stdout, and refuses an unknown identity', async () => {
    const created = await warden(['key', 'create', '--identity', 'etl', '--config', file, '--label', 'ci']);
    assert.equal(created.code, 0, created.stderr);
    secret = created.stdout.trim();
    assert.match(secret, /^wdn_[0-9a-f]{12}_/);
    keyId = secret.split('_')[1]!;
    assert.match(created.stderr, new RegExp(`created key ${keyId}`));
    const unknown = await warden(['key', 'create', '--identity', 'ghost', '--config', file]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /no identity "ghost".*known: etl/);
  });

  it('key list shows ids and status but never a secret', async () => {
    const listed = await warden(['key', 'list', '--config', file]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, new RegExp(`${keyId}\\tetl\\t.*\\tactive\\tci`));
    assert.equal(listed.stdout.includes(secret.slice(secret.indexOf('_', 4) + 1)), false);
  });

  it('start serves the key; a config change is applied; an invalid change is refused and the old config keeps serving', async () => {
    child = spawn(process.execPath, ['bin/warden.js', 'start', '--config', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    await waitForOutput(child, /warden listening on 127\.0\.0\.1:\d+/, 'listening');
    const connect = async (user: string, password: string) => {
      const client = new pg.Client({ host: '127.0.0.1', port, user, password, database: database.name });
      await client.connect();
      const row = (await client.query('SELECT 1 AS ok')).rows[0];
      await client.end();
      return row.ok;
    };
    assert.equal(await connect('etl', secret), 1);

    // A new identity appears on reload (SIGHUP after the edit, so the test does not depend on fs.watch timing).
    writeFileSync(
      file,
      configText(
        port,
        upstream,
        database.name,
        '  - { name: etl, kind: service }\n  - { name: bot, kind: agent }',
      ),
    );
    const botKey = (await warden(['key', 'create', '--identity', 'bot', '--config', file])).stdout.trim();
    child.kill('SIGHUP');
    await waitForOutput(child, /config reloaded/, 'reload');
    assert.equal(await connect('bot', botKey), 1);

    writeFileSync(file, 'listen: [not, a, mapping]\n');
    child.kill('SIGHUP');
    await waitForOutput(child, /config change refused, still serving the previous config/, 'refusal');
    assert.equal(await connect('bot', botKey), 1);
  });

  it('key revoke takes effect on the running server at once', async () => {
    writeFileSync(file, configText(port, upstream, database.name, '  - { name: etl, kind: service }'));
    const revoked = await warden(['key', 'revoke', keyId, '--config', file]);
    assert.equal(revoked.code, 0, revoked.stderr);
    const client = new pg.Client({
      host: '127.0.0.1',
      port,
      user: 'etl',
      password: secret,
      database: database.name,
    });
    await assert.rejects(client.connect(), { code: '28P01' });
    const again = await warden(['key', 'revoke', keyId, '--config', file]);
    assert.equal(again.code, 2);
  });

  it('stops cleanly on SIGTERM', async () => {
    assert.ok(child);
    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    child = undefined;
  });
});
