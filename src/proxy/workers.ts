/**
 * Several worker processes behind one port (node:cluster). The primary only
 * supervises: it forks the workers, routes cancel requests to the worker
 * that owns the key, passes SIGHUP on, restarts a worker that dies, stops
 * them all on SIGINT/SIGTERM, and serves the HTTP endpoints with what the
 * workers report (metrics summed, ready when all are). Sessions never
 * cross processes.
 */
import cluster, { type Worker } from 'node:cluster';
import { type HttpServer, type Readiness, startHttp } from '../api/http.ts';
import { type MetricSnapshot, mergeSnapshots } from '../observe/metrics.ts';
import { MAX_WORKER_ID } from './cancel.ts';

/** What a worker reports when the primary asks (for /metrics and /readyz). */
export interface WorkerStatus {
  readonly metrics: readonly MetricSnapshot[];
  readonly readiness: Readiness;
}

/** Messages between the primary and its workers. */
export type WorkerMessage =
  | { readonly type: 'ready'; readonly host: string; readonly port: number }
  | { readonly type: 'cancel'; readonly processId: number; readonly secret: string }
  | { readonly type: 'status?'; readonly id: number }
  | { readonly type: 'status'; readonly id: number; readonly status: WorkerStatus };

/** How long the primary waits for a worker's status before counting it as not answering. */
const STATUS_TIMEOUT_MS = 2_000;

export const WORKER_ID_ENV = 'WARDEN_WORKER_ID';

export function currentWorkerId(): number {
  return cluster.isWorker ? Number(process.env[WORKER_ID_ENV]) : 0;
}

export interface PrimaryLog {
  info(text: string): void;
  error(text: string): void;
}

export interface PrimaryOptions {
  readonly count: number;
  readonly log: PrimaryLog;
  /** Where to serve /metrics, /healthz and /readyz (none when undefined). */
  readonly http?: { readonly host: string; readonly port: number };
}

/** Runs the primary until SIGINT/SIGTERM; resolves once every worker has exited. */
export async function runPrimary({ count, log, http }: PrimaryOptions): Promise<void> {
  if (count > MAX_WORKER_ID) throw new RangeError(`at most ${MAX_WORKER_ID} workers`);
  const workers = new Map<number, Worker>();
  const statuses = new StatusRequests();
  let stopping = false;
  let stop!: () => void;
  // Made first: a worker that fails to start, or the HTTP listener, may stop the primary at once.
  const stopped = new Promise<void>((resolve) => {
    stop = () => resolve();
  });
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
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
          log.info(`warden listening on ${message.host}:${message.port} (${count} workers)`);
        }
      } else if (message.type === 'status') {
        statuses.answered(message.id, message.status);
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
        log.error(`worker ${id} failed to start (${signal ?? code}); stopping`);
        process.exitCode = 1;
        stop();
        return;
      }
      log.error(`worker ${id} exited (${signal ?? code}); starting it again`);
      setTimeout(() => {
        if (!stopping) fork(id);
      }, 500);
    });
  };
  for (let id = 1; id <= count; id++) fork(id);
  let server: HttpServer | undefined;
  if (http) {
    const ask = () => statuses.ask(count, workers);
    try {
      server = await startHttp(http, {
        metrics: async () =>
          mergeSnapshots([...(await ask()).values()].flatMap((s) => (s ? [s.metrics] : []))),
        readiness: async () => combinedReadiness(count, await ask()),
      });
      log.info(`http on http://${server.host}:${server.port} (/metrics, /healthz, /readyz)`);
    } catch (error) {
      log.error((error as Error).message);
      process.exitCode = 1;
      stop();
    }
  }

  const reload = () => {
    for (const worker of workers.values()) worker.process.kill('SIGHUP');
  };
  process.on('SIGHUP', reload);
  await stopped;
  stopping = true;
  process.off('SIGHUP', reload);
  await server?.close();
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
  log.info('warden stopped');
}

/** In a worker: tells the primary it serves, and hands it cancel keys of other workers. */
export function workerChannel(): {
  ready(host: string, port: number): void;
  routeCancel(processId: number, secret: Buffer): void;
  onCancel(handler: (processId: number, secret: Buffer) => void): void;
  onStatus(report: () => WorkerStatus): void;
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
    onStatus: (report) =>
      process.on('message', (message: WorkerMessage) => {
        if (message.type === 'status?') send({ type: 'status', id: message.id, status: report() });
      }),
  };
}

/** The primary's questions to its workers: one round at a time, shared by concurrent scrapes. */
class StatusRequests {
  private ids = 0;
  private round: Promise<Map<number, WorkerStatus | undefined>> | undefined;
  private readonly waiting = new Map<number, (status: WorkerStatus) => void>();

  /** Each worker's status by worker id (undefined: not running or not answering in time). */
  ask(count: number, workers: ReadonlyMap<number, Worker>): Promise<Map<number, WorkerStatus | undefined>> {
    this.round ??= this.askAll(count, workers).finally(() => {
      this.round = undefined;
    });
    return this.round;
  }

  answered(id: number, status: WorkerStatus): void {
    this.waiting.get(id)?.(status);
  }

  private async askAll(count: number, workers: ReadonlyMap<number, Worker>) {
    const answers = new Map<number, WorkerStatus | undefined>();
    await Promise.all(
      Array.from({ length: count }, async (_, index) => {
        const worker = workers.get(index + 1);
        answers.set(index + 1, worker ? await this.askOne(worker) : undefined);
      }),
    );
    return answers;
  }

  private askOne(worker: Worker): Promise<WorkerStatus | undefined> {
    const id = ++this.ids;
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(undefined), STATUS_TIMEOUT_MS);
      const done = (status: WorkerStatus | undefined) => {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve(status);
      };
      this.waiting.set(id, done);
      try {
        worker.send({ type: 'status?', id } satisfies WorkerMessage);
      } catch {
        done(undefined); // its channel closed: it is exiting
      }
    });
  }
}

/** Ready when every worker is, with each worker's checks named after it. */
function combinedReadiness(
  count: number,
  statuses: ReadonlyMap<number, WorkerStatus | undefined>,
): Readiness {
  const checks: Record<string, string> = {};
  let ready = true;
  for (let id = 1; id <= count; id++) {
    const status = statuses.get(id);
    if (status === undefined) {
      ready = false;
      checks[`worker ${id}`] = 'not running or not answering';
      continue;
    }
    ready &&= status.readiness.ready;
    for (const [name, value] of Object.entries(status.readiness.checks))
      checks[`worker ${id} ${name}`] = value;
  }
  return { ready, checks };
}
