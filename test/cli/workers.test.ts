import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { WORKER_ID_ENV } from '../../src/proxy/workers.ts';
import {
  createTestDatabase,
  findTestServer,
  type TestDatabase,
  type TestServer,
} from '../fixtures/postgres.ts';
import { run } from '../proxy/support.ts';

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

interface CancelConnection {
  connect(port: number, host: string): void;
  cancel(processId: number, secretKey: number): void;
  on(event: string, listener: (...args: unknown[]) => void): void;
}

/** A CancelRequest on a fresh connection, which the kernel may hand to either worker. */
function sendCancel(port: number, processId: number, secretKey: number): Promise<void> {
  const connection = new (pg as unknown as { Connection: new () => CancelConnection }).Connection();
  return new Promise((resolve, reject) => {
    connection.on('connect', () => connection.cancel(processId, secretKey));
    connection.on('end', () => resolve());
    connection.on('error', reject);
    connection.connect(port, '127.0.0.1');
  });
}

const keyOf = (client: pg.Client) => client as unknown as { processID: number; secretKey: number };

describe('several workers behind one port', { timeout: 120_000 }, () => {
  let upstream: TestServer;
  let database: TestDatabase;
  let dir: string;
  let port: number;
  let key: string;
  let primary: ChildProcess | undefined;
  let output = '';

  const waitForOutput = async (pattern: RegExp, what: string) => {
    for (let i = 0; i < 400 && !pattern.test(output); i++)
      await new Promise((resolve) => setTimeout(resolve, 25));
    assert.match(output, pattern, `waiting for ${what}`);
  };
  const connect = async () => {
    const client = new pg.Client({
      host: '127.0.0.1',
      port,
      user: 'etl',
      password: key,
      database: database.name,
    });
    client.on('error', () => {});
    await client.connect();
    return client;
  };

  before(async () => {
    upstream = await findTestServer();
    database = await createTestDatabase(upstream, 'workers');
    dir = mkdtempSync(join(tmpdir(), 'warden-workers-'));
    port = await freePort();
    const file = join(dir, 'warden.yaml');
    writeFileSync(
      file,
      `listen: { host: 127.0.0.1, port: ${port}, workers: 2 }
http: { host: 127.0.0.1, port: 0 }
dataDir: ./data
identities:
  - { name: etl, kind: service }
targets:
  - { name: ${database.name}, host: ${upstream.host}, port: ${upstream.port}, user: ${upstream.user}, tls: { mode: disable }, access: { identities: [etl] } }
`,
    );
    key = (
      await run(process.execPath, ['bin/warden.js', 'key', 'create', '--identity', 'etl', '--config', file])
    ).stdout.trim();
    primary = spawn(process.execPath, ['bin/warden.js', 'start', '--config', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    primary.stdout!.on('data', (chunk) => {
      output += chunk;
    });
    primary.stderr!.on('data', (chunk) => {
      output += chunk;
    });
    await waitForOutput(/warden listening on 127\.0\.0\.1:\d+ \(2 workers\)/, 'both workers');
  });

  after(async () => {
    primary?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    await database?.drop();
    await upstream?.close();
  });

  it('spreads sessions over the workers, and each cancel key reaches the worker that owns it', async () => {
    const clients = await Promise.all(Array.from({ length: 6 }, connect));
    const owners = new Set(clients.map((client) => keyOf(client).processID >>> 24));
    assert.deepEqual([...owners].sort(), [1, 2], 'the cancel keys name both workers');
    const running = clients.map((client) => client.query('SELECT pg_sleep(20)'));
    const settled = Promise.allSettled(running); // observed now: the first cancels land while we send the rest
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Cancels arrive on whichever worker accepts them; half of them at least land on the wrong one.
    for (const client of clients) await sendCancel(port, keyOf(client).processID, keyOf(client).secretKey);
    const results = await settled;
    assert.deepEqual(
      results.map((result) =>
        result.status === 'rejected' ? (result.reason as { code?: string }).code : 'completed',
      ),
      clients.map(() => '57014'),
    );
    await Promise.all(clients.map((client) => client.end()));
  });

  it('serves the metrics of both workers summed, and is ready when both are', async () => {
    const httpPort = Number(/http on http:\/\/127\.0\.0\.1:(\d+)/.exec(output)?.[1]);
    assert.ok(httpPort > 0, 'the primary announces its HTTP port');
    const opened = async () => {
      const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
      return Number(/^warden_connections_total\{kind="service"\} (\d+)$/m.exec(text)?.[1] ?? 0);
    };
    const before = await opened();
    const clients = await Promise.all(Array.from({ length: 6 }, connect));
    const owners = new Set(clients.map((client) => keyOf(client).processID >>> 24));
    assert.deepEqual([...owners].sort(), [1, 2], 'sessions on both workers');
    await Promise.all(clients.map((client) => client.query('SELECT 1')));
    assert.equal((await opened()) - before, 6, 'the sessions of both workers, summed');
    await Promise.all(clients.map((client) => client.end()));
    const ready = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
    assert.equal(ready.status, 200);
    const { checks } = (await ready.json()) as { checks: Record<string, string> };
    assert.equal(checks['worker 1 listener'], 'ok');
    assert.equal(checks['worker 2 listener'], 'ok');
    assert.equal(checks['worker 2 audit'], 'ok');
  });

  it('ignores a forged key on any worker', async () => {
    const client = await connect();
    const running = client.query('SELECT pg_sleep(0.5) AS slept');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const { processID, secretKey } = keyOf(client);
    await sendCancel(port, processID, secretKey ^ 1);
    await sendCancel(port, (processID & 0xffffff) | (3 << 24), secretKey); // a worker that does not exist
    assert.equal((await running).rowCount, 1);
    await client.end();
  });

  it('starts a worker again when it dies, and keeps serving', async () => {
    // The workers are the children with a worker id (tsx may run an esbuild child in the primary too).
    const children = (await run('pgrep', ['-P', String(primary!.pid)])).stdout
      .trim()
      .split('\n')
      .map(Number)
      .filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/environ`, 'latin1').includes(`${WORKER_ID_ENV}=`);
        } catch {
          return false;
        }
      });
    assert.equal(children.length, 2);
    process.kill(children[0]!, 'SIGKILL');
    await waitForOutput(/worker \d exited \(SIGKILL\); starting it again/, 'the restart');
    for (let i = 0; i < 4; i++) {
      const client = await connect();
      assert.equal((await client.query('SELECT 1 AS ok')).rows[0].ok, 1);
      await client.end();
    }
  });

  it('stops every worker and exits 0 on SIGTERM', async () => {
    const exited = new Promise<number | null>((resolve) => primary!.once('exit', (code) => resolve(code)));
    primary!.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.match(output, /warden stopped/);
    primary = undefined;
  });
});
