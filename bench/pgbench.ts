/**
 * `npm run bench`: pgbench directly against PostgreSQL, through Warden,
 * through PgBouncer and through a plain byte relay, in alternating rounds,
 * printing each path's TPS and latency as a ratio to direct and each proxy's
 * CPU time per transaction. A benchmark, not a test: it judges nothing.
 *
 *   npm run bench -- --rounds 3 --seconds 10     (or BENCH_ROUNDS, BENCH_SECONDS)
 *
 * Options (flag / environment variable, default):
 *   --rounds  BENCH_ROUNDS   3    rounds; each runs every workload on every path
 *   --seconds BENCH_SECONDS  10   pgbench -T of each run
 *   --scale   BENCH_SCALE    10   pgbench -i -s
 *   --warmup  BENCH_WARMUP   2    seconds of unmeasured pgbench per path before round 1 (0: none)
 *   --paths   BENCH_PATHS    direct,warden,warden-2w,pgbouncer,relay
 *                            (also warden-noaudit, warden-hook, warden-policy; direct is required)
 *
 * The cost of the policy engine: warden-hook is Warden with the decision hook
 * alone (decide = allowAll), warden-policy the same Warden judging every
 * statement with the 20 rules of bench/policy.yaml. They are not in the
 * default set (they would add 40% to its 16 minutes); run them with
 *
 *   npm run bench -- --paths direct,warden-hook,warden-policy
 *
 * which adds a "policy cost" block: per workload, the median over rounds of
 * warden-policy TPS / warden-hook TPS and both paths' CPU µs per transaction.
 * The cost of the audit trail: warden-noaudit is the same Warden with
 * audit.enabled: false; with both warden and warden-noaudit in --paths an
 * "audit cost" block prints warden / warden-noaudit TPS and CPU per transaction:
 *
 *   npm run bench -- --paths direct,warden,warden-noaudit
 *
 * BENCH_CPU_PROF=<folder> makes those two processes write V8 CPU profiles (in <folder>/<path>/);
 * bench/warden-server.ts, which runs them, can also time each decide call.
 *
 * It creates the database warden_bench_<pid> on 127.0.0.1:5432 (user postgres)
 * and drops it at the end, also after an error or Ctrl-C.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { clockTicksPerSecond, cpuSeconds, killAllNow, stopAll } from './children.ts';
import {
  BENCH_DIR,
  type BenchPath,
  DEFAULT_PATHS,
  directPath,
  PATH_NAMES,
  type PathName,
  pgbouncerTracksPreparedStatements,
  pgbouncerVersion,
  probe,
  probePolicyInForce,
  removeTemporaryFolders,
  startPgbouncer,
  startRelay,
  startWarden,
  type Upstream,
} from './paths.ts';
import {
  auditCostLine,
  formatTable,
  pairRatio,
  policyCostLine,
  type RunRecord,
  summarise,
  summaryLine,
  type WorkloadReport,
} from './report.ts';
import { checkPgbench, initialise, PgbenchError, runPgbench } from './run-pgbench.ts';

interface Workload {
  readonly id: string;
  readonly title: string;
  readonly flags: readonly string[];
  /** Uses protocol-level prepared statements (`-M prepared`). */
  readonly prepared: boolean;
  readonly clients: number;
  readonly threads: number;
}

const MODES = [
  { id: 'select-simple', title: 'select-only simple', flags: ['-S', '-M', 'simple'] },
  { id: 'select-prepared', title: 'select-only prepared', flags: ['-S', '-M', 'prepared'] },
  { id: 'tpcb-simple', title: 'TPC-B-like simple', flags: ['-M', 'simple'] },
] as const;

const CLIENTS = [
  { clients: 8, threads: 2 },
  { clients: 1, threads: 1 },
] as const;

const WORKLOADS: readonly Workload[] = MODES.flatMap((mode) =>
  CLIENTS.map(({ clients, threads }) => ({
    id: `${mode.id}-c${clients}`,
    title: `${mode.title}, ${clients} client${clients === 1 ? '' : 's'}`,
    flags: mode.flags,
    prepared: mode.id === 'select-prepared',
    clients,
    threads,
  })),
);

const MAX_CLIENTS = Math.max(...CLIENTS.map((entry) => entry.clients));
const NAME_WIDTH = Math.max(...PATH_NAMES.map((name) => name.length));

interface Settings {
  readonly rounds: number;
  readonly seconds: number;
  readonly scale: number;
  readonly warmup: number;
  readonly paths: readonly PathName[];
}

function settings(): Settings {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string' },
      seconds: { type: 'string' },
      scale: { type: 'string' },
      warmup: { type: 'string' },
      paths: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(
      `usage: npm run bench -- [--rounds N] [--seconds N] [--scale N] [--warmup N] [--paths ${DEFAULT_PATHS.join(',')}]\n` +
        `paths: ${PATH_NAMES.join(', ')} (default: ${DEFAULT_PATHS.join(',')}; direct is required)\n` +
        'environment: BENCH_ROUNDS, BENCH_SECONDS, BENCH_SCALE, BENCH_WARMUP, BENCH_PATHS\n',
    );
    process.exit(0);
  }
  const integer = (name: string, flag: string | undefined, fallback: number, min: number) => {
    const text = flag ?? process.env[`BENCH_${name.toUpperCase()}`];
    if (text === undefined || text === '') return fallback;
    const value = Number(text);
    if (!Number.isInteger(value) || value < min) {
      throw new UsageError(
        `--${name} (BENCH_${name.toUpperCase()}) must be a whole number ≥ ${min}, not "${text}"`,
      );
    }
    return value;
  };
  const pathList = (values.paths ?? process.env.BENCH_PATHS ?? DEFAULT_PATHS.join(','))
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
  for (const name of pathList) {
    if (!(PATH_NAMES as readonly string[]).includes(name)) {
      throw new UsageError(`unknown path "${name}" in --paths: write some of ${PATH_NAMES.join(', ')}`);
    }
  }
  if (!pathList.includes('direct'))
    throw new UsageError('--paths must include direct: ratios are against it');
  return {
    rounds: integer('rounds', values.rounds, 3, 1),
    seconds: integer('seconds', values.seconds, 10, 1),
    scale: integer('scale', values.scale, 10, 1),
    warmup: integer('warmup', values.warmup, 2, 0),
    paths: PATH_NAMES.filter((name) => pathList.includes(name)),
  };
}

class UsageError extends Error {}

const log = (text: string) => process.stderr.write(`${text}\n`);
const out = (text: string) => process.stdout.write(`${text}\n`);

const upstream: Upstream = {
  host: '127.0.0.1',
  port: 5432,
  user: 'postgres',
  database: `warden_bench_${process.pid}`,
};

function psql(sql: string): string {
  try {
    return execFileSync(
      'psql',
      [
        '-X',
        '-w',
        '-At',
        '-v',
        'ON_ERROR_STOP=1',
        '-h',
        upstream.host,
        '-p',
        String(upstream.port),
        '-U',
        upstream.user,
        '-d',
        'postgres',
        '-c',
        sql,
      ],
      {
        encoding: 'utf8',
        timeout: 60_000,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, PGCONNECT_TIMEOUT: '10' },
      },
    ).trim();
  } catch (error) {
    const failure = error as { stderr?: string; message: string };
    throw new Error(`psql ${JSON.stringify(sql)} failed: ${failure.stderr?.trim() || failure.message}`);
  }
}

let databaseCreated = false;
let cleanedUp = false;

/** Stops every child, drops the database, removes temporary folders. Safe to call twice. */
async function cleanup(): Promise<void> {
  if (cleanedUp) return;
  cleanedUp = true;
  await stopAll();
  dropDatabase();
  removeTemporaryFolders();
}

function dropDatabase(): void {
  if (!databaseCreated) return;
  try {
    psql(`DROP DATABASE IF EXISTS ${upstream.database} WITH (FORCE)`);
    databaseCreated = false;
    log(`dropped database ${upstream.database}`);
  } catch (error) {
    log(`could not drop database ${upstream.database}: ${(error as Error).message}`);
  }
}

let interrupted = false;

function onSignal(signal: NodeJS.Signals): void {
  if (interrupted) {
    // A second signal: no more waiting.
    killAllNow();
    dropDatabase();
    removeTemporaryFolders();
    process.exit(130);
  }
  interrupted = true;
  log(`\n${signal}: stopping children and dropping ${upstream.database} …`);
  void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);
process.on('exit', () => {
  killAllNow();
  if (databaseCreated) dropDatabase();
  removeTemporaryFolders();
});

async function startPath(name: PathName): Promise<BenchPath> {
  switch (name) {
    case 'direct':
      return directPath(upstream);
    case 'warden':
      return startWarden(upstream, { kind: 'cli', workers: 1 });
    case 'warden-2w':
      return startWarden(upstream, { kind: 'cli', workers: 2 });
    case 'warden-noaudit':
      return startWarden(upstream, { kind: 'cli', workers: 1, audit: false });
    case 'warden-hook':
      return startWarden(upstream, { kind: 'hook' });
    case 'warden-policy':
      return startWarden(upstream, { kind: 'policy' });
    case 'pgbouncer':
      return startPgbouncer(upstream, MAX_CLIENTS, 'transaction');
    case 'relay':
      return startRelay(upstream);
  }
}

function rotated<T>(items: readonly T[], by: number): T[] {
  const shift = by % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

function commandOf(workload: Workload, seconds: number): string {
  return `pgbench -n ${workload.flags.join(' ')} -c ${workload.clients} -j ${workload.threads} -T ${seconds}`;
}

async function measure(
  benchPath: BenchPath,
  workload: Workload,
  seconds: number,
  round: number,
  order: number,
): Promise<RunRecord> {
  const base = { round, path: benchPath.name, order };
  const pid = benchPath.child?.pid;
  try {
    const before = pid === undefined ? undefined : cpuSeconds(pid);
    const result = await runPgbench(benchPath.endpoint, {
      flags: workload.flags,
      clients: workload.clients,
      threads: workload.threads,
      seconds,
    });
    const after = pid === undefined ? undefined : cpuSeconds(pid);
    const cpu = before === undefined || after === undefined ? undefined : after - before;
    return {
      ...base,
      tps: result.tps,
      latencyMs: result.latencyMs,
      transactions: result.transactions,
      failedTransactions: result.failedTransactions,
      ...(cpu !== undefined && Number.isFinite(cpu)
        ? {
            cpuSeconds: cpu,
            cpuUsPerTx: result.transactions > 0 ? (cpu * 1e6) / result.transactions : undefined,
          }
        : {}),
    };
  } catch (error) {
    if (benchPath.child && benchPath.child.process.exitCode !== null) {
      return { ...base, error: `${benchPath.name} exited:\n${benchPath.child.tail()}` };
    }
    return { ...base, error: (error as Error).message };
  }
}

function environmentInfo(pgbenchVersion: string, active: readonly BenchPath[]) {
  let postgres = 'unknown';
  try {
    postgres = psql('show server_version');
  } catch {}
  return {
    node: process.version,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    clockTicksPerSecond: clockTicksPerSecond(),
    postgres,
    pgbench: pgbenchVersion,
    pgbouncer: active.find((entry) => entry.name === 'pgbouncer')?.version ?? null,
  };
}

async function main(): Promise<void> {
  const options = settings();
  const pgbenchVersion = checkPgbench();
  const loadBefore = os.loadavg();
  log(
    `warden bench: ${options.rounds} round(s) × ${WORKLOADS.length} workloads × ${options.paths.length} paths × ${options.seconds} s` +
      ` (about ${Math.ceil((options.rounds * WORKLOADS.length * options.paths.length * (options.seconds + 1)) / 60)} min)`,
  );

  psql(`CREATE DATABASE ${upstream.database}`);
  databaseCreated = true;
  log(`created database ${upstream.database}; pgbench -i -s ${options.scale} …`);
  const started = Date.now();
  await initialise(directPath(upstream).endpoint, options.scale);
  log(`initialised in ${((Date.now() - started) / 1000).toFixed(1)} s`);

  const active: BenchPath[] = [];
  const skipped = new Map<PathName, string>();
  for (const name of options.paths) {
    if (interrupted) return;
    if (name === 'pgbouncer' && pgbouncerVersion() === undefined) {
      const reason = 'pgbouncer not installed: apt-get install pgbouncer';
      out(reason);
      skipped.set(name, reason);
      continue;
    }
    try {
      const benchPath = await startPath(name);
      await probe(benchPath);
      if (name === 'warden-policy') log(`${name}: policy in force: ${await probePolicyInForce(benchPath)}`);
      active.push(benchPath);
      log(
        `${name}: ready on ${benchPath.endpoint.host}:${benchPath.endpoint.port}${benchPath.child ? ` (pid ${benchPath.child.pid})` : ''}`,
      );
    } catch (error) {
      const reason = (error as Error).message;
      log(`${name}: skipped: ${reason}`);
      skipped.set(name, reason.split('\n')[0]!);
    }
  }
  if (!active.some((entry) => entry.name === 'direct'))
    throw new Error('the direct path failed: nothing to compare with');

  // PgBouncer before 1.21 in transaction mode hands a client's Bind to a server connection that never
  // saw its Parse ("prepared statement P_0 already exists / does not exist"): -M prepared runs through
  // a second PgBouncer in session mode instead, and the tables say so.
  let pgbouncerForPrepared: BenchPath | undefined;
  let preparedNote: string | undefined;
  const pgbouncer = active.find((entry) => entry.name === 'pgbouncer');
  if (pgbouncer?.version !== undefined && !pgbouncerTracksPreparedStatements(pgbouncer.version)) {
    preparedNote =
      `pgbouncer: pool_mode=session for -M prepared (${pgbouncer.version} in transaction mode loses ` +
      'protocol-level prepared statements; max_prepared_statements needs 1.21+)';
    try {
      pgbouncerForPrepared = await startPgbouncer(upstream, MAX_CLIENTS, 'session');
      await probe(pgbouncerForPrepared);
      log(`pgbouncer (session mode, for -M prepared): ready on port ${pgbouncerForPrepared.endpoint.port}`);
    } catch (error) {
      preparedNote = undefined;
      pgbouncerForPrepared = undefined;
      log(
        `pgbouncer in session mode failed, -M prepared goes through transaction mode: ${(error as Error).message}`,
      );
    }
  }
  const pathFor = (benchPath: BenchPath, workload: Workload) =>
    workload.prepared && benchPath.name === 'pgbouncer' && pgbouncerForPrepared
      ? pgbouncerForPrepared
      : benchPath;

  if (options.warmup > 0) {
    log(`warm-up: ${options.warmup} s of select-only per path (not measured)`);
    for (const benchPath of active) {
      if (interrupted) return;
      await measure(benchPath, WORKLOADS[0]!, options.warmup, 0, 0);
    }
  }

  const runs = new Map<string, RunRecord[]>(WORKLOADS.map((workload) => [workload.id, []]));
  for (let round = 1; round <= options.rounds; round++) {
    const order = rotated(active, round - 1);
    log(`round ${round}/${options.rounds}: ${order.map((entry) => entry.name).join(', ')}`);
    for (const workload of WORKLOADS) {
      for (const [position, benchPath] of order.entries()) {
        if (interrupted) return;
        const record = await measure(
          pathFor(benchPath, workload),
          workload,
          options.seconds,
          round,
          position,
        );
        if (interrupted) return;
        runs.get(workload.id)!.push(record);
        log(
          `  ${workload.title.padEnd(32)} ${benchPath.name.padEnd(NAME_WIDTH)} ` +
            (record.error === undefined
              ? `${record.tps!.toFixed(1).padStart(9)} tps  ${record.latencyMs!.toFixed(3)} ms` +
                (record.cpuUsPerTx === undefined ? '' : `  ${record.cpuUsPerTx.toFixed(1)} µs/tx CPU`)
              : `FAILED: ${record.error.split('\n')[0]}`),
        );
      }
    }
  }

  const names = active.map((entry) => entry.name);
  const reports: WorkloadReport[] = WORKLOADS.map((workload) => ({
    id: workload.id,
    title: workload.title,
    command: commandOf(workload, options.seconds),
    notes: workload.prepared && preparedNote ? [preparedNote] : [],
    runs: runs.get(workload.id)!,
    summary: summarise(runs.get(workload.id)!, names),
    ...(names.includes('warden-hook') && names.includes('warden-policy')
      ? { policyVsHook: pairRatio(runs.get(workload.id)!, 'warden-policy', 'warden-hook') }
      : {}),
    ...(names.includes('warden') && names.includes('warden-noaudit')
      ? { auditVsOff: pairRatio(runs.get(workload.id)!, 'warden', 'warden-noaudit') }
      : {}),
  }));

  const environment = {
    ...environmentInfo(pgbenchVersion, active),
    loadAverageBefore: loadBefore,
    loadAverageAfter: os.loadavg(),
  };
  out('');
  out(
    `Warden benchmark: ${options.rounds} round(s), -T ${options.seconds}, scale ${options.scale}, ` +
      `${environment.cpus} cores, PostgreSQL ${environment.postgres}, ${environment.pgbench}` +
      (environment.pgbouncer ? `, ${environment.pgbouncer}` : ''),
  );
  out('TPS and latency: median over rounds. ratio: median of per-round TPS / direct TPS.');
  out('CPU µs/tx: the proxy process (and its children), utime+stime from /proc/PID/stat, per transaction.');
  for (const benchPath of active) {
    for (const note of benchPath.notes) out(`${benchPath.name}: ${note}`);
  }
  if (preparedNote) out(preparedNote);
  out(
    `load average before ${loadBefore.map((value) => value.toFixed(2)).join(' ')}, ` +
      `after ${environment.loadAverageAfter.map((value) => value.toFixed(2)).join(' ')} ` +
      '(other work on these cores skews the numbers; rounds alternate paths so it spreads over all of them)',
  );
  for (const [name, reason] of skipped) out(`${name}: skipped (${reason})`);
  for (const report of reports) {
    out('');
    out(formatTable(report, skipped));
  }
  out('');
  out('Summary');
  for (const report of reports) out(summaryLine(report));
  if (reports.some((report) => report.policyVsHook !== undefined)) {
    out('');
    out(
      'Policy cost: warden-policy (20 rules of bench/policy.yaml) against warden-hook (decide = allowAll); ' +
        'ratio: median of per-round TPS policy / hook.',
    );
    for (const report of reports) out(policyCostLine(report));
  }
  if (reports.some((report) => report.auditVsOff !== undefined)) {
    out('');
    out(
      'Audit cost: warden (every connection and statement recorded in its SQLite store) against ' +
        'warden-noaudit (audit.enabled: false); ratio: median of per-round TPS on / off.',
    );
    for (const report of reports) out(auditCostLine(report));
  }

  const resultsDir = path.join(BENCH_DIR, 'results');
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(path.join(resultsDir, '.gitignore'), '*.json\n');
  const file = path.join(resultsDir, 'latest.json');
  writeFileSync(
    file,
    `${JSON.stringify(
      {
        finishedAt: new Date().toISOString(),
        settings: options,
        environment,
        paths: Object.fromEntries([
          ...active.map((entry) => [entry.name, { status: 'ran', notes: entry.notes }]),
          ...[...skipped].map(([name, reason]) => [name, { status: 'skipped', reason }]),
        ]),
        workloads: reports,
      },
      null,
      2,
    )}\n`,
  );
  out('');
  out(`results written to ${path.relative(process.cwd(), file)}`);
}

try {
  await main();
} catch (error) {
  if (error instanceof UsageError || error instanceof PgbenchError) log(`bench: ${error.message}`);
  else log(`bench: ${(error as Error).stack ?? String(error)}`);
  process.exitCode = error instanceof UsageError ? 2 : 1;
} finally {
  if (!interrupted) await cleanup();
}
