/**
 * Child processes of the benchmark: every one is registered so that an exit,
 * an error or a signal ends them all; their output is kept (the last lines)
 * for error messages and drained so a chatty child never blocks on a pipe.
 */
import { type ChildProcess, execFileSync, type SpawnOptions, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';

const TAIL_LINES = 40;

export interface ManagedChild {
  readonly name: string;
  readonly process: ChildProcess;
  readonly pid: number;
  /** The last lines of stdout and stderr, interleaved. */
  tail(): string;
  /** Resolves with the first stdout/stderr line matching, rejects on exit or timeout. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<string>;
  /** Resolves once the process has exited (at once if it has). */
  readonly exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ManagedChild>();

export function spawnManaged(
  name: string,
  command: string,
  args: readonly string[],
  options: SpawnOptions = {},
): ManagedChild {
  const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const listeners = new Set<(line: string) => void>();
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      exitCode = code;
      resolve(code);
    });
    child.once('error', (error) => {
      lines.push(`${name}: ${error.message}`);
      exitCode = null;
      resolve(null);
    });
  });
  const collect = (stream: NodeJS.ReadableStream | null) => {
    if (!stream) return;
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      partial += chunk;
      const parts = partial.split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) {
        lines.push(line);
        if (lines.length > TAIL_LINES) lines.shift();
        // BENCH_DECIDE_TIMING=1: bench/warden-server.ts prints its decide timing as it stops.
        if (line.startsWith('decide (')) process.stderr.write(`${name}: ${line}\n`);
        for (const listener of listeners) listener(line);
      }
    });
  };
  collect(child.stdout);
  collect(child.stderr);

  const managed: ManagedChild = {
    name,
    process: child,
    pid: child.pid ?? -1,
    tail: () => lines.join('\n'),
    exited,
    waitForLine(pattern, timeoutMs) {
      const seen = lines.find((line) => pattern.test(line));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise<string>((resolve, reject) => {
        const done = () => {
          clearTimeout(timer);
          listeners.delete(listener);
        };
        const listener = (line: string) => {
          if (!pattern.test(line)) return;
          done();
          resolve(line);
        };
        const timer = setTimeout(() => {
          done();
          reject(
            new Error(
              `${name} printed no line matching ${pattern} within ${timeoutMs} ms:\n${managed.tail()}`,
            ),
          );
        }, timeoutMs);
        listeners.add(listener);
        void exited.then((code) => {
          if (!listeners.has(listener)) return;
          done();
          reject(new Error(`${name} exited (code ${code}) before printing ${pattern}:\n${managed.tail()}`));
        });
      });
    },
    async stop(graceMs = 3000) {
      if (exitCode === undefined) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }
      live.delete(managed);
    },
  };
  live.add(managed);
  void exited.then(() => live.delete(managed));
  return managed;
}

/** Ends every child still running; synchronous, for `process.on('exit')`. */
export function killAllNow(): void {
  for (const child of live) child.process.kill('SIGKILL');
  live.clear();
}

/** Ends every child still running, politely first. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((child) => child.stop(2000)));
}

/** A port that was free a moment ago on 127.0.0.1 (the child binds it right after). */
export async function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

let clockTicks: number | undefined;

/** Clock ticks per second of utime/stime in /proc/PID/stat (`getconf CLK_TCK`). */
export function clockTicksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

interface ProcStat {
  readonly ppid: number;
  /** utime + stime, in clock ticks. */
  readonly ticks: number;
}

function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Field 2 (comm) is in parentheses and may hold spaces: split after the last ')'.
  // What follows starts at field 3, so field N is at index N - 3.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { ppid: Number(fields[4 - 3]), ticks: Number(fields[14 - 3]) + Number(fields[15 - 3]) };
}

/**
 * CPU time (utime + stime, fields 14 and 15 of /proc/PID/stat) of a process
 * and its live descendants (a proxy with worker processes), in seconds.
 * Threads are already counted in their process's figures.
 */
export function cpuSeconds(pid: number): number {
  const own = readStat(pid);
  if (own === undefined) return Number.NaN;
  const byParent = new Map<number, number[]>();
  const ticks = new Map<number, number>([[pid, own.ticks]]);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const child = Number(entry);
    if (child === pid) continue;
    const stat = readStat(child);
    if (stat === undefined) continue;
    ticks.set(child, stat.ticks);
    const siblings = byParent.get(stat.ppid) ?? [];
    siblings.push(child);
    byParent.set(stat.ppid, siblings);
  }
  let total = 0;
  const queue = [pid];
  while (queue.length > 0) {
    const next = queue.pop()!;
    total += ticks.get(next) ?? 0;
    queue.push(...(byParent.get(next) ?? []));
  }
  return total / clockTicksPerSecond();
}
