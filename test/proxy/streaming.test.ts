import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Code } from '../../src/protocol/postgres/messages.ts';
import { MessageScanner } from '../../src/protocol/postgres/scanner.ts';
import {
  createTestDatabase,
  findTestServer,
  type TestDatabase,
  type TestServer,
} from '../fixtures/postgres.ts';
import { RawClient } from './raw-client.ts';
import { run, startWarden, type WardenHandle, waitFor } from './support.ts';

/** Counts rows and bytes of a result as it streams, without keeping any of it. */
function countResult(client: RawClient): Promise<{ rows: number; bytes: number }> {
  const scanner = new MessageScanner();
  const leftover = client.reader.detach();
  let rows = 0;
  let bytes = 0;
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      bytes += chunk.length;
      scanner.scan(chunk, (type) => {
        if (type === Code.DataRow) rows++;
        else if (type === Code.ErrorResponse) reject(new Error('the query failed'));
        else if (type === Code.ReadyForQuery) {
          client.socket.off('data', onData);
          resolve({ rows, bytes });
        }
      });
    };
    client.socket.on('data', onData);
    client.socket.resume();
    if (leftover.length > 0) onData(leftover);
  });
}

describe('results stream through with backpressure', { timeout: 180_000 }, () => {
  let upstream: TestServer;
  let database: TestDatabase;
  let warden: WardenHandle;

  before(async () => {
    upstream = await findTestServer();
    database = await createTestDatabase(upstream, 'streaming');
    warden = await startWarden({ upstream, database: database.name });
  });

  after(async () => {
    await warden?.close();
    await database?.drop();
    await upstream?.close();
  });

  it('a client that stops reading pauses the server read, and Warden holds only a bounded amount', async () => {
    const client = await RawClient.login(warden.port, 'etl', database.name, warden.keys.etl!);
    client.reader.detach();
    client.socket.pause();
    // 256 MB of result that the client does not read for now.
    client.send({ type: 'Query', sql: "SELECT repeat('x', 8192) FROM generate_series(1, 32768)" });
    const session = () => [...warden.server.sessions].at(-1)!;
    await waitFor(
      () => warden.server.sessions.size === 1 && session().flow.serverPaused,
      'the server read to pause',
    );
    const buffered = session().flow.bufferedToClient;
    assert.ok(buffered < 8 * 1024 * 1024, `Warden buffers ${buffered} bytes for a paused client`);
    const { rows } = await countResult(client);
    assert.equal(rows, 32768, 'every row arrives once the client reads again');
    client.close();
  });
});

describe('a 1 GB result through a Warden process', { timeout: 180_000 }, () => {
  let upstream: TestServer;
  let database: TestDatabase;
  let child: ChildProcess | undefined;
  let port = 0;
  let key = '';
  let dir = '';

  before(async () => {
    upstream = await findTestServer();
    database = await createTestDatabase(upstream, 'gigabyte');
    const handle = await startWarden({ upstream, database: database.name });
    // Reuse the generated config and store, but serve them from a separate process whose memory we can read.
    dir = handle.dir;
    key = handle.keys.etl!;
    await handle.server.close();
    port = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const file = `${dir}/warden.yaml`;
    writeFileSync(file, readFileSync(file, 'utf8').replace(/port: 0/, `port: ${port}`));
    child = spawn(process.execPath, ['bin/warden.js', 'start', '--config', file], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      child!.stdout!.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('listening')) resolve();
      });
      child!.once('exit', (code) => reject(new Error(`warden exited with ${code}`)));
    });
  });

  after(async () => {
    child?.kill('SIGKILL');
    await run('rm', ['-rf', dir]);
    await database?.drop();
    await upstream?.close();
  });

  it('passes 1 GB while the Warden process grows by less than 200 MB of resident memory (a fifth of the result)', async () => {
    const client = await RawClient.login(port, 'etl', database.name, key);
    // The baseline holds Node, the TypeScript loader and the SQL parser (WebAssembly).
    const baselineKb = Number(
      readFileSync(`/proc/${child!.pid}/status`, 'utf8').match(/VmHWM:\s+(\d+) kB/)?.[1],
    );
    client.send({ type: 'Query', sql: "SELECT repeat('w', 1048576) FROM generate_series(1, 1024)" });
    const { rows, bytes } = await countResult(client);
    client.close();
    assert.equal(rows, 1024);
    assert.ok(bytes > 1024 * 1024 * 1024, `${bytes} bytes arrived`);
    const status = readFileSync(`/proc/${child!.pid}/status`, 'utf8');
    const peakKb = Number(status.match(/VmHWM:\s+(\d+) kB/)?.[1]);
    const growthMb = Math.round((peakKb - baselineKb) / 1024);
    assert.ok(
      baselineKb > 0 && peakKb - baselineKb < 200 * 1024,
      `peak RSS of Warden grew by ${growthMb} MB`,
    );
    console.log(
      `# Warden RSS: ${Math.round(baselineKb / 1024)} MB at login, peak ${Math.round(peakKb / 1024)} MB`,
    );
  });
});
