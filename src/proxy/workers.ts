/**
 * Several worker processes behind one port (node:cluster). The primary only
 * supervises: it forks the workers, routes cancel requests to the worker
 * that owns the key, passes SIGHUP on, restarts a worker that dies, and
 * stops them all on SIGINT/SIGTERM. Sessions never cross processes.
 */
import cluster, { type Worker } from 'node:cluster';
import { MAX_WORKER_ID } from './cancel.ts';

/** Messages between the primary and its workers. */
export type WorkerMessage =
  | { readonly type: 'ready'; readonly host: string; readonly port: number }
  | { readonly type: 'cancel'; readonly processId: number; readonly secret: string };

export const WORKER_ID_ENV = 'WARDEN_WORKER_ID';

export function currentWorkerId(): number {
  return cluster.isWorker ? Number(process.env[WORKER_ID_ENV]) : 0;
}

export interface PrimaryLog {
  out(text: string): void;
  err(text: string): void;
}

/** Runs the primary until SIGINT/SIGTERM; resolves once every worker has exited. */
export async function runPrimary(count: number, log: PrimaryLog): Promise<void> {
  if (count > MAX_WORKER_ID) throw new RangeError(`at most ${MAX_WORKER_ID} workers`);
  const workers = new Map<number, Worker>();
  let stopping = false;
  let stop: () => void = () => {};
  let announced = false;
  const ready = new Set<number>();

  const fork = (id: number) => {
    const worker = cluster.fork({ [WORKER_ID_ENV]: String(id) });
    workers.set(id, worker);
    worker.on('message', (message: WorkerMessage) => {
      if (message.type === 'ready') {
        ready.add(id);
        if (!announced && ready.size === count) {
          announced = true;
          log.out(`warden listening on ${message.host}:${message.port} (${count} workers)`);
        }
      } else if (message.type === 'cancel') {
        // The key names its owner; a key for no live worker does nothing, as for any unknown key.
        const owner = workers.get(message.processId >>> 24);
        owner?.send(message);
      }
    });
    worker.on('exit', (code, signal) => {
      workers.delete(id);
      if (stopping) return;
      if (!ready.has(id)) {
        // It never served (port taken, bad certificate...): restarting would only repeat the failure.
        log.err(`worker ${id} failed to start (${signal ?? code}); stopping`);
        process.exitCode = 1;
        stop();
        return;
      }
      log.err(`worker ${id} exited (${signal ?? code}); starting it again`);
      setTimeout(() => {
        if (!stopping) fork(id);
      }, 500);
    });
  };
  for (let id = 1; id <= count; id++) fork(id);

  const reload = () => {
    for (const worker of workers.values()) worker.process.kill('SIGHUP');
  };
  process.on('SIGHUP', reload);
  await new Promise<void>((resolve) => {
    stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  stopping = true;
  process.off('SIGHUP', reload);
  await Promise.all(
    [...workers.values()].map(
      (worker) =>
        new Promise<void>((resolve) => {
          if (worker.isDead()) return resolve();
          worker.once('exit', () => resolve());
          worker.process.kill('SIGTERM');
        }),
    ),
  );
  log.out('warden stopped');
}

/** In a worker: tells the primary it serves, and hands it cancel keys of other workers. */
export function workerChannel(): {
  ready(host: string, port: number): void;
  routeCancel(processId: number, secret: Buffer): void;
  onCancel(handler: (processId: number, secret: Buffer) => void): void;
} {
  const send = (message: WorkerMessage) => process.send?.(message);
  return {
    ready: (host, port) => send({ type: 'ready', host, port }),
    routeCancel: (processId, secret) =>
      send({ type: 'cancel', processId, secret: secret.toString('base64') }),
    onCancel: (handler) =>
      process.on('message', (message: WorkerMessage) => {
        if (message.type === 'cancel') handler(message.processId, Buffer.from(message.secret, 'base64'));
      }),
  };
}
