/**
 * Running pgbench and reading its report. Every run has a deadline; a run that
 * fails carries pgbench's own last lines.
 */
import { execFileSync } from 'node:child_process';
import { spawnManaged } from './children.ts';

export interface Endpoint {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly database: string;
  readonly password?: string;
}

export interface PgbenchResult {
  readonly tps: number;
  readonly latencyMs: number;
  readonly transactions: number;
  readonly failedTransactions: number;
}

export class PgbenchError extends Error {}

/** Throws a message that says what to install when pgbench is missing. */
export function checkPgbench(): string {
  try {
    return execFileSync('pgbench', ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    throw new PgbenchError('pgbench not found: apt-get install postgresql-client');
  }
}

function connectionArgs(endpoint: Endpoint): string[] {
  return ['-h', endpoint.host, '-p', String(endpoint.port), '-U', endpoint.user];
}

function environment(endpoint: Endpoint): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PGCONNECT_TIMEOUT: '10', PGSSLMODE: 'disable' };
  delete env.PGPASSWORD;
  delete env.PGSERVICE;
  // pgbench then sends application_name pgbench, which the warden-policy rules match on.
  delete env.PGAPPNAME;
  if (endpoint.password !== undefined) env.PGPASSWORD = endpoint.password;
  return env;
}

async function runToEnd(
  name: string,
  args: readonly string[],
  endpoint: Endpoint,
  timeoutMs: number,
): Promise<string> {
  const child = spawnManaged(name, 'pgbench', args, { env: environment(endpoint) });
  const output: string[] = [];
  const keep = (chunk: Buffer | string) => output.push(chunk.toString());
  child.process.stdout?.on('data', keep);
  child.process.stderr?.on('data', keep);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void child.stop(2000);
  }, timeoutMs);
  const code = await child.exited;
  clearTimeout(timer);
  const text = output.join('');
  if (timedOut)
    throw new PgbenchError(`pgbench ${args.join(' ')} timed out after ${timeoutMs} ms:\n${child.tail()}`);
  if (code !== 0) throw new PgbenchError(`pgbench ${args.join(' ')} exited with ${code}:\n${child.tail()}`);
  return text;
}

/** `pgbench -i -s <scale>` against the endpoint (directly, never through a proxy). */
export async function initialise(endpoint: Endpoint, scale: number): Promise<void> {
  await runToEnd(
    'pgbench -i',
    ['-i', '-s', String(scale), '-q', ...connectionArgs(endpoint), endpoint.database],
    endpoint,
    30 * 60_000,
  );
}

export interface RunOptions {
  /** Extra pgbench flags of the workload (`-S -M simple`, …). */
  readonly flags: readonly string[];
  readonly clients: number;
  readonly threads: number;
  readonly seconds: number;
}

export async function runPgbench(endpoint: Endpoint, options: RunOptions): Promise<PgbenchResult> {
  const args = [
    '-n',
    ...options.flags,
    '-c',
    String(options.clients),
    '-j',
    String(options.threads),
    '-T',
    String(options.seconds),
    ...connectionArgs(endpoint),
    endpoint.database,
  ];
  // The run itself, connection set-up and a generous margin for a stalled proxy.
  const timeoutMs = options.seconds * 1000 + 60_000;
  return parseReport(await runToEnd('pgbench', args, endpoint, timeoutMs));
}

function numberAfter(text: string, pattern: RegExp, what: string): number {
  const match = pattern.exec(text);
  if (match === null) throw new PgbenchError(`pgbench printed no ${what}:\n${text.slice(-2000)}`);
  return Number(match[1]);
}

/** Reads the summary pgbench prints at the end of a run (PostgreSQL 15 wording). */
export function parseReport(text: string): PgbenchResult {
  const failed = /^number of failed transactions: (\d+)/m.exec(text);
  return {
    tps: numberAfter(text, /^tps = ([\d.]+) \(without initial connection time\)/m, 'tps'),
    latencyMs: numberAfter(text, /^latency average = ([\d.]+) ms/m, 'average latency'),
    transactions: numberAfter(
      text,
      /^number of transactions actually processed: (\d+)/m,
      'transaction count',
    ),
    failedTransactions: failed ? Number(failed[1]) : 0,
  };
}
