import { watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from './errors.ts';
import { loadConfig, parseConfigAsync } from './load.ts';
import type { WardenConfig } from './types.ts';

export interface WatchOptions {
  /** Where `${NAME}` is looked up on each reload; default process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** Quiet time after the last file event before reloading; default 100 ms. */
  readonly debounceMs?: number;
}

type Reason = 'file' | 'signal';

/**
 * Reloads the config when its file changes or the process gets SIGHUP. A new
 * config that does not validate goes to onError and onChange is not called, so
 * the caller keeps serving with the old one.
 *
 * The directory is watched, not the file: editors save by writing a new file
 * and renaming it over the old one, which a watch on the old inode never sees.
 */
export function watchConfig(
  file: string,
  onChange: (config: WardenConfig) => void,
  onError: (error: ConfigError) => void,
  options: WatchOptions = {},
): { close(): void } {
  const absolute = path.resolve(file);
  const debounceMs = options.debounceMs ?? 100;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let pending: Reason | undefined;
  let running = false;
  /** The text of the last config handed to onChange: a save that changed nothing is not a reload. */
  let current: string | undefined;

  const schedule = (reason: Reason) => {
    pending = pending === 'signal' ? 'signal' : reason;
    clearTimeout(timer);
    timer = setTimeout(() => void run(), debounceMs);
  };

  const run = async () => {
    if (closed || running || pending === undefined) return;
    const reason = pending;
    pending = undefined;
    running = true;
    const outcome = await reload(reason);
    running = false;
    if (closed) return;
    if (outcome instanceof ConfigError) onError(outcome);
    else if (outcome !== undefined) onChange(outcome);
    // Events that arrived during the reload are handled now, in order.
    if (pending !== undefined) void run();
  };

  const reload = async (reason: Reason): Promise<WardenConfig | ConfigError | undefined> => {
    const env = options.env ?? process.env;
    try {
      const text = await readFile(absolute, 'utf8').catch((error: NodeJS.ErrnoException) => {
        // An editor replacing the file removes it for a moment; the event for the new file follows.
        if (reason === 'file' && error.code === 'ENOENT') return undefined;
        throw error;
      });
      if (text === undefined || (reason === 'file' && text === current)) return undefined;
      const config = await parseConfigAsync(text, absolute, env);
      current = text;
      return config;
    } catch (error) {
      current = undefined;
      if (error instanceof ConfigError) return error;
      // Unreadable for another reason: loadConfig phrases it as a ConfigError.
      return loadConfig(absolute, env).then(
        () => unexpected(absolute, error),
        (loadError: unknown) =>
          loadError instanceof ConfigError ? loadError : unexpected(absolute, loadError),
      );
    }
  };

  const name = path.basename(absolute);
  const watcher = watch(path.dirname(absolute), (_event, changed) => {
    if (changed === null || changed === name) schedule('file');
  });
  watcher.on('error', (error) => {
    if (!closed) onError(unexpected(absolute, error, 'stopped watching the config file'));
  });
  const onSignal = () => schedule('signal');
  process.on('SIGHUP', onSignal);

  return {
    close() {
      closed = true;
      clearTimeout(timer);
      watcher.close();
      process.off('SIGHUP', onSignal);
    },
  };
}

function unexpected(file: string, error: unknown, what = 'cannot reload the config'): ConfigError {
  return new ConfigError([
    {
      file,
      line: 0,
      column: 0,
      path: '',
      message: `${what}: ${error instanceof Error ? error.message : String(error)}`,
      fix: 'check that the file and its directory exist and are readable, then save the file again or send SIGHUP',
    },
  ]);
}
