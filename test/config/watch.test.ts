import assert from 'node:assert/strict';
import { rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ConfigError, type WardenConfig, watchConfig } from '../../src/config/index.ts';
import { tempDir } from './helpers.ts';

const options = { timeout: 10000 };

function configWithPort(port: number): string {
  return `listen:\n  port: ${port}\n`;
}

/** A watcher whose callbacks are queues the test can await one event at a time. */
function watched(file: string) {
  const changes: WardenConfig[] = [];
  const errors: ConfigError[] = [];
  let wake: () => void = () => {};
  const notify = () => wake();
  const watcher = watchConfig(
    file,
    (config) => {
      changes.push(config);
      notify();
    },
    (error) => {
      errors.push(error);
      notify();
    },
  );
  const until = async (done: () => boolean) => {
    while (!done()) await new Promise<void>((resolve) => (wake = resolve));
  };
  return {
    changes,
    errors,
    nextChange: (count: number) => until(() => changes.length >= count),
    nextError: (count: number) => until(() => errors.length >= count),
    close: () => watcher.close(),
  };
}

describe('watchConfig', () => {
  it('reloads when the file changes', options, async (t) => {
    const dir = await tempDir();
    const file = path.join(dir, 'warden.yaml');
    await writeFile(file, configWithPort(7001));
    const watcher = watched(file);
    t.after(watcher.close);
    await writeFile(file, configWithPort(7002));
    await watcher.nextChange(1);
    assert.equal(watcher.changes[0]!.listen.port, 7002);
    assert.deepEqual(watcher.errors, []);
  });

  it('refuses an invalid new file: onError, and onChange is not called', options, async (t) => {
    const dir = await tempDir();
    const file = path.join(dir, 'warden.yaml');
    await writeFile(file, configWithPort(7001));
    const watcher = watched(file);
    t.after(watcher.close);
    await writeFile(file, 'listen:\n  port: lots\n');
    await watcher.nextError(1);
    assert.equal(watcher.errors[0]!.issues[0]!.path, 'listen.port');
    assert.equal(watcher.errors[0]!.issues[0]!.line, 2);
    await sleep(300);
    assert.equal(watcher.changes.length, 0);
    // Fixing the file brings reloads back.
    await writeFile(file, configWithPort(7003));
    await watcher.nextChange(1);
    assert.equal(watcher.changes[0]!.listen.port, 7003);
  });

  it('follows an editor that writes a new file and renames it over the old one', options, async (t) => {
    const dir = await tempDir();
    const file = path.join(dir, 'warden.yaml');
    await writeFile(file, configWithPort(7001));
    const watcher = watched(file);
    t.after(watcher.close);
    for (const port of [7002, 7003]) {
      await writeFile(path.join(dir, '.warden.yaml.swp'), configWithPort(port));
      await rename(path.join(dir, '.warden.yaml.swp'), file);
      await watcher.nextChange(port - 7001);
      assert.equal(watcher.changes.at(-1)!.listen.port, port);
    }
    assert.deepEqual(watcher.errors, []);
  });

  it(
    'does not reload for a save that changes nothing, or for other files in the directory',
    options,
    async (t) => {
      const dir = await tempDir();
      const file = path.join(dir, 'warden.yaml');
      await writeFile(file, configWithPort(7001));
      const watcher = watched(file);
      t.after(watcher.close);
      await writeFile(file, configWithPort(7002));
      await watcher.nextChange(1);
      await writeFile(file, configWithPort(7002));
      await writeFile(path.join(dir, 'other.yaml'), 'listen: nonsense\n');
      await sleep(300);
      assert.equal(watcher.changes.length, 1);
      assert.deepEqual(watcher.errors, []);
    },
  );

  it('reloads on SIGHUP even when the file did not change', options, async (t) => {
    const dir = await tempDir();
    const file = path.join(dir, 'warden.yaml');
    await writeFile(file, configWithPort(7004));
    const listenersBefore = process.listenerCount('SIGHUP');
    const watcher = watched(file);
    t.after(watcher.close);
    assert.equal(process.listenerCount('SIGHUP'), listenersBefore + 1);
    process.kill(process.pid, 'SIGHUP');
    await watcher.nextChange(1);
    assert.equal(watcher.changes[0]!.listen.port, 7004);
    process.kill(process.pid, 'SIGHUP');
    await watcher.nextChange(2);
    watcher.close();
    assert.equal(process.listenerCount('SIGHUP'), listenersBefore);
  });

  it('reports a file removed before SIGHUP as an error', options, async (t) => {
    const dir = await tempDir();
    const file = path.join(dir, 'gone.yaml');
    const watcher = watched(file);
    t.after(watcher.close);
    process.kill(process.pid, 'SIGHUP');
    await watcher.nextError(1);
    assert.equal(watcher.errors[0]!.issues[0]!.line, 0);
    assert.match(watcher.errors[0]!.issues[0]!.message, /no such file/);
    assert.deepEqual(watcher.changes, []);
  });

  it('calls nothing after close', options, async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'warden.yaml');
    await writeFile(file, configWithPort(7001));
    const watcher = watched(file);
    watcher.close();
    await writeFile(file, configWithPort(7002));
    await sleep(300);
    assert.deepEqual(watcher.changes, []);
    assert.deepEqual(watcher.errors, []);
  });
});
