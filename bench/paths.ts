/**
 * The ways pgbench reaches PostgreSQL: directly, through Warden (as `warden
 * start`, with one or two workers; with the decision hook alone; with a
 * 20-rule policy), through PgBouncer and through a plain byte relay. Each
 * proxy runs as a child on a port picked here, in a temporary folder removed
 * at the end.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort, type ManagedChild, spawnManaged } from './children.ts';
import type { Endpoint } from './run-pgbench.ts';

const run = promisify(execFile);

export const PATH_NAMES = [
  'direct',
  'warden',
  'warden-2w',
  'warden-noaudit',
  'warden-hook',
  'warden-policy',
  'pgbouncer',
  'relay',
] as const;
export type PathName = (typeof PATH_NAMES)[number];

/** What runs without --paths: warden-hook and warden-policy only when asked for (they add 40% to the run). */
export const DEFAULT_PATHS: readonly PathName[] = ['direct', 'warden', 'warden-2w', 'pgbouncer', 'relay'];

export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(BENCH_DIR, '..');

export interface Upstream {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly database: string;
}

export interface BenchPath {
  readonly name: PathName;
  readonly endpoint: Endpoint;
  /** The proxy process whose CPU time is measured (none for direct). */
  readonly child: ManagedChild | undefined;
  /** What to know when reading its numbers. */
  readonly notes: readonly string[];
  readonly version: string | undefined;
}

const STARTUP_TIMEOUT_MS = 30_000;
const temporaryFolders: string[] = [];

function temporaryFolder(prefix: string): string {
  const folder = mkdtempSync(path.join(os.tmpdir(), prefix));
  temporaryFolders.push(folder);
  return folder;
}

export function removeTemporaryFolders(): void {
  for (const folder of temporaryFolders.splice(0)) rmSync(folder, { recursive: true, force: true });
}

export function directPath(upstream: Upstream): BenchPath {
  return {
    name: 'direct',
    endpoint: { host: upstream.host, port: upstream.port, user: upstream.user, database: upstream.database },
    child: undefined,
    notes: [],
    version: undefined,
  };
}

/** The policy section of the warden-policy path (bench/policy.yaml), appended to its warden.yaml. */
export const POLICY_FILE = path.join(BENCH_DIR, 'policy.yaml');

/**
 * How Warden runs: `cli` is `warden start` with the config's (here empty)
 * policy section, over `workers` processes; `hook` and `policy` run
 * bench/warden-server.ts, one process, with decide = allowAll, or with the
 * 20 rules of bench/policy.yaml judged by the policy engine. hook and policy
 * get the same identity, target and labels; only the decision differs.
 */
export type WardenMode =
  | { readonly kind: 'cli'; readonly workers: number; readonly audit?: false }
  | { readonly kind: 'hook' | 'policy' };

const WARDEN_PATH_NAMES = { hook: 'warden-hook', policy: 'warden-policy' } as const;

/** Warden as `warden start`, or with a chosen decision point (see WardenMode). */
export async function startWarden(
  upstream: Upstream,
  mode: WardenMode = { kind: 'cli', workers: 1 },
): Promise<BenchPath> {
  const folder = temporaryFolder('warden-bench-');
  const port = await freePort();
  const file = path.join(folder, 'warden.yaml');
  const cli = mode.kind === 'cli';
  writeFileSync(
    file,
    [
      'listen:',
      '  host: 127.0.0.1',
      `  port: ${port}`,
      `  workers: ${cli ? mode.workers : 1}`,
      'http: { host: 127.0.0.1, port: 0 }',
      'dataDir: ./data',
      ...(cli && mode.audit === false ? ['audit:', '  enabled: false'] : []),
      'identities:',
      '  - name: bench',
      '    kind: service',
      ...(cli ? [] : ['    groups: [pgbench, batch]']),
      'targets:',
      `  - name: ${upstream.database}`,
      `    host: ${upstream.host}`,
      `    port: ${upstream.port}`,
      `    user: ${upstream.user}`,
      '    tls:',
      '      mode: disable',
      ...(cli ? [] : ['    labels: { env: bench, tier: oltp }']),
      '    access:',
      '      identities: [bench]',
      '',
      ...(mode.kind === 'policy' ? [readFileSync(POLICY_FILE, 'utf8')] : []),
    ].join('\n'),
  );
  const bin = path.join(REPO_ROOT, 'bin', 'warden.js');
  let key: string;
  try {
    const { stdout } = await run(
      process.execPath,
      [bin, 'key', 'create', '--identity', 'bench', '--config', file],
      { cwd: REPO_ROOT, timeout: 60_000 },
    );
    key = stdout.trim().split('\n').pop()?.trim() ?? '';
  } catch (error) {
    const failure = error as { stderr?: string; message: string };
    throw new Error(`warden key create failed: ${failure.stderr?.trim() || failure.message}`);
  }
  if (key === '') throw new Error('warden key create printed no key on stdout');
  const name = cli
    ? mode.audit === false
      ? 'warden-noaudit'
      : mode.workers > 1
        ? 'warden-2w'
        : 'warden'
    : WARDEN_PATH_NAMES[mode.kind];
  const child = cli
    ? spawnManaged(name, process.execPath, [bin, 'start', '--config', file], { cwd: REPO_ROOT })
    : spawnManaged(
        name,
        process.execPath,
        [...profileFlags(name), '--import', 'tsx', path.join(BENCH_DIR, 'warden-server.ts'), file, mode.kind],
        { cwd: REPO_ROOT },
      );
  await child.waitForLine(/listening/, STARTUP_TIMEOUT_MS);
  return {
    name,
    endpoint: { host: '127.0.0.1', port, user: 'bench', database: upstream.database, password: key },
    child,
    notes:
      mode.kind === 'hook'
        ? ['bench/warden-server.ts, decide = allowAll (decision hook only)']
        : mode.kind === 'policy'
          ? [
              `bench/warden-server.ts, policy engine with ${path.relative(REPO_ROOT, POLICY_FILE)} (20 rules, guardrails on)`,
            ]
          : [],
    version: undefined,
  };
}

/**
 * BENCH_CPU_PROF=<folder>: the Warden processes of a bench write V8 CPU profiles in
 * <folder>/<path name>/, one per thread (tsx's loader runs in a thread of its own: one fixed file
 * name would have that thread's profile overwrite the main thread's).
 */
export function profileFlags(name: string): string[] {
  const folder = process.env.BENCH_CPU_PROF;
  if (folder === undefined || folder === '') return [];
  return ['--cpu-prof', '--cpu-prof-dir', path.resolve(folder, name)];
}

/** `pgbouncer --version`, or undefined when it is not installed. */
export function pgbouncerVersion(): string | undefined {
  try {
    return execFileSync('pgbouncer', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')[0]
      ?.trim();
  } catch {
    return undefined;
  }
}

/** Whether this PgBouncer keeps protocol-level prepared statements in transaction mode (1.21+). */
export function pgbouncerTracksPreparedStatements(version: string): boolean {
  const match = /(\d+)\.(\d+)/.exec(version);
  if (match === null) return false;
  const [major, minor] = [Number(match[1]), Number(match[2])];
  return major > 1 || (major === 1 && minor >= 21);
}

export type PoolMode = 'transaction' | 'session';

export async function startPgbouncer(
  upstream: Upstream,
  poolSize: number,
  poolMode: PoolMode,
): Promise<BenchPath> {
  const version = pgbouncerVersion();
  if (version === undefined) throw new Error('pgbouncer not installed: apt-get install pgbouncer');
  const folder = temporaryFolder('pgbouncer-bench-');
  // PgBouncer refuses to run as root: as root it switches to `nobody`, who must read these files.
  chmodSync(folder, 0o755);
  const port = await freePort();
  const userlist = path.join(folder, 'userlist.txt');
  const ini = path.join(folder, 'pgbouncer.ini');
  writeFileSync(userlist, `"${upstream.user}" ""\n`, { mode: 0o644 });
  writeFileSync(
    ini,
    [
      '[databases]',
      `${upstream.database} = host=${upstream.host} port=${upstream.port} user=${upstream.user} dbname=${upstream.database}`,
      '',
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${userlist}`,
      `pool_mode = ${poolMode}`,
      ...(pgbouncerTracksPreparedStatements(version) ? ['max_prepared_statements = 200'] : []),
      'max_client_conn = 200',
      `default_pool_size = ${poolSize}`,
      'log_connections = 0',
      'log_disconnections = 0',
      'stats_period = 3600',
      '',
    ].join('\n'),
    { mode: 0o644 },
  );
  const asRoot = process.getuid?.() === 0;
  const child = spawnManaged('pgbouncer', 'pgbouncer', asRoot ? ['-u', 'nobody', ini] : [ini], {
    cwd: folder,
  });
  await child.waitForLine(/listening on/, STARTUP_TIMEOUT_MS);
  return {
    name: 'pgbouncer',
    endpoint: { host: '127.0.0.1', port, user: upstream.user, database: upstream.database },
    child,
    notes: [`pool_mode=${poolMode}, default_pool_size=${poolSize}${asRoot ? ', run as nobody' : ''}`],
    version,
  };
}

export async function startRelay(upstream: Upstream): Promise<BenchPath> {
  const port = await freePort();
  const child = spawnManaged(
    'relay',
    process.execPath,
    ['--import', 'tsx', path.join(BENCH_DIR, 'relay.ts'), String(port), upstream.host, String(upstream.port)],
    { cwd: REPO_ROOT },
  );
  await child.waitForLine(/listening/, STARTUP_TIMEOUT_MS);
  return {
    name: 'relay',
    endpoint: { host: '127.0.0.1', port, user: upstream.user, database: upstream.database },
    child,
    notes: ['Node net relay, socket.pipe both ways, noDelay'],
    version: undefined,
  };
}

/** One statement through the path with psql; resolves with psql's stdout, rejects with its stderr. */
async function psqlThrough(benchPath: BenchPath, sql: string): Promise<string> {
  const { endpoint } = benchPath;
  const env: NodeJS.ProcessEnv = { ...process.env, PGCONNECT_TIMEOUT: '10', PGSSLMODE: 'disable' };
  delete env.PGPASSWORD;
  delete env.PGAPPNAME;
  if (endpoint.password !== undefined) env.PGPASSWORD = endpoint.password;
  try {
    const { stdout } = await run(
      'psql',
      [
        '-X',
        '-w',
        '-At',
        '-h',
        endpoint.host,
        '-p',
        String(endpoint.port),
        '-U',
        endpoint.user,
        '-d',
        endpoint.database,
        '-c',
        sql,
      ],
      { env, timeout: 30_000 },
    );
    return stdout;
  } catch (error) {
    const failure = error as { stderr?: string; message: string };
    throw new Error(failure.stderr?.trim() || failure.message);
  }
}

/** One `select 1` through the path, so a broken path fails here with its own words. */
export async function probe(benchPath: BenchPath): Promise<void> {
  try {
    await psqlThrough(benchPath, 'select 1');
  } catch (error) {
    const tail = benchPath.child ? `\n${benchPath.name} output:\n${benchPath.child.tail()}` : '';
    throw new Error(`select 1 through ${benchPath.name} failed: ${(error as Error).message}${tail}`);
  }
}

/**
 * That warden-policy really judges: a read of pgbench_accounts from psql
 * (application_name psql, which no rule allows for it) must be refused by
 * the policy's default, while pgbench's own reads are allowed by rule.
 */
export async function probePolicyInForce(benchPath: BenchPath): Promise<string> {
  const sql = 'SELECT abalance FROM pgbench_accounts WHERE aid = 1';
  let output: string;
  try {
    output = await psqlThrough(benchPath, sql);
  } catch (error) {
    const message = (error as Error).message;
    if (/Warden refused this statement/.test(message)) return message.split('\n')[0]!;
    throw new Error(`${sql} through ${benchPath.name} failed, but not by the policy: ${message}`);
  }
  throw new Error(
    `${sql} through ${benchPath.name} was allowed (printed ${JSON.stringify(output.trim())}): the policy is not in force`,
  );
}
