/**
 * A real Warden in this process, in front of the test PostgreSQL, with real
 * API keys for its identities; and helpers to reach it with real clients.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { loadConfig, type WardenConfig } from '../../src/config/index.ts';
import { createApiKey } from '../../src/identity/keys.ts';
import { allowAll, type Decide } from '../../src/policy/decision.ts';
import { startServer, type WardenServer } from '../../src/proxy/server.ts';
import { openStore } from '../../src/store/store.ts';
import {
  clientConfig,
  createTestDatabase,
  findTestServer,
  type TestDatabase,
  type TestServer,
} from '../fixtures/postgres.ts';

export interface WardenHandle {
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly server: WardenServer;
  readonly config: WardenConfig;
  readonly dir: string;
  /** The API key of each identity, by name. */
  readonly keys: Readonly<Record<string, string>>;
  /** libpq-style connection string for psql. */
  conninfo(identity: string, extra?: string): string;
  /** node-postgres client config for an identity. */
  pgConfig(identity: string, overrides?: Partial<pg.ClientConfig>): pg.ClientConfig;
  /** A postgres.js pool for an identity, with statements prepared and cached (it Executes them without Describe). */
  postgresJs(identity: string, max?: number): postgres.Sql;
  close(): Promise<void>;
}

export interface WardenSetup {
  readonly upstream: TestServer;
  /** Upstream database the target points at; the target is named after it. */
  readonly database: string;
  /** Extra YAML appended under `listen:` (indented by the caller), e.g. TLS files. */
  readonly listenYaml?: string;
  /** Extra YAML appended at the top level. */
  readonly extraYaml?: string;
  /** Extra YAML appended inside the target (indented 4 spaces). */
  readonly targetYaml?: string;
  readonly files?: Readonly<Record<string, string>>;
  /** The decision point; without it (and without `policy`) every statement is allowed. */
  readonly decide?: Decide;
  /** A `policy:` section (YAML, top level): Warden then judges with its real policy engine. */
  readonly policy?: string;
  /**
   * The `identities:` section (YAML, top level) instead of the default one, e.g.
   * to give them emails. It must still name alice, etl, agent and outsider: each gets an API key.
   */
  readonly identitiesYaml?: string;
}

export const IDENTITIES = ['alice', 'etl', 'agent'] as const;

const IDENTITIES_YAML = `identities:
  - { name: alice, kind: human, groups: [analysts] }
  - { name: etl, kind: service, groups: [pipelines] }
  - { name: agent, kind: agent }
  - { name: outsider, kind: human }`;

export async function startWarden(setup: WardenSetup): Promise<WardenHandle> {
  const dir = mkdtempSync(join(tmpdir(), 'warden-test-'));
  for (const [name, content] of Object.entries(setup.files ?? {})) writeFileSync(join(dir, name), content);
  const { upstream, database } = setup;
  const yaml = `
listen:
  host: 127.0.0.1
  port: 0
${setup.listenYaml ?? ''}
dataDir: ./data
http: { host: 127.0.0.1, port: 0 }
${setup.identitiesYaml ?? IDENTITIES_YAML}
targets:
  - name: ${database}
    host: ${upstream.host}
    port: ${upstream.port}
    user: ${upstream.user}
${upstream.password === undefined ? '' : `    password: $\{UPSTREAM_PASSWORD}\n`}    tls: { mode: disable }
    labels: { env: test }
    access:
      groups: [analysts, pipelines]
      kinds: [agent]
${setup.targetYaml ?? ''}
${setup.extraYaml ?? ''}
${setup.policy ?? ''}
`;
  const file = join(dir, 'warden.yaml');
  writeFileSync(file, yaml);
  const config = await loadConfig(file, { ...process.env, UPSTREAM_PASSWORD: upstream.password ?? '' });
  const store = openStore(config.dataDir);
  const keys: Record<string, string> = {};
  for (const identity of [...IDENTITIES, 'outsider']) keys[identity] = createApiKey(store, identity).secret;
  const decide = setup.decide ?? (setup.policy === undefined ? allowAll : undefined);
  const server = await startServer(config, { store, decide });
  const port = server.port;
  return {
    host: '127.0.0.1',
    port,
    server,
    config,
    dir,
    keys,
    conninfo: (identity, extra = '') =>
      `host=127.0.0.1 port=${port} user=${identity} dbname=${database} password=${keys[identity]} sslmode=disable ${extra}`,
    pgConfig: (identity, overrides = {}) => ({
      host: '127.0.0.1',
      port,
      user: identity,
      database,
      password: keys[identity],
      ...overrides,
    }),
    postgresJs: (identity, max = 1) =>
      postgres({
        host: '127.0.0.1',
        port,
        user: identity,
        database,
        password: keys[identity],
        max,
        prepare: true,
        onnotice: () => {},
      }),
    async close() {
      await server.close();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command with stdin closed and a hard timeout; never inherits a password from the environment. */
export function run(
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: { PATH: process.env.PATH, PGCONNECT_TIMEOUT: '10', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: options.timeoutMs ?? 60_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    // A child that exits before reading stdin must not crash the test file with EPIPE.
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

/** psql with no rc file, no password prompt, unaligned tuples-only output. */
export function psql(
  conninfo: string,
  args: readonly string[],
  options: { input?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  return run('psql', ['-X', '-w', '-A', '-t', '-v', 'ON_ERROR_STOP=0', '-d', conninfo, ...args], options);
}

export function directConninfo(upstream: TestServer, database: string): string {
  const password = upstream.password === undefined ? '' : ` password=${upstream.password}`;
  return `host=${upstream.host} port=${upstream.port} user=${upstream.user} dbname=${database} sslmode=disable${password}`;
}

/** Whether a Debian binary a test needs is installed (CI installs them; elsewhere the test skips and says so). */
export async function hasBinary(name: string): Promise<boolean> {
  try {
    const result = await run('sh', ['-c', `command -v ${name}`]);
    return result.code === 0;
  } catch {
    return false;
  }
}

export type PgError = Error & { code?: string; hint?: string; detail?: string };

/** Connects with node-postgres and returns the error the login ended with; fails the test if it succeeded. */
export async function connectError(config: pg.ClientConfig): Promise<PgError> {
  const client = new pg.Client(config);
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (error) {
    return error as PgError;
  } finally {
    await client.end().catch(() => {});
  }
  assert.fail('the connection was accepted');
}

/** Polls a condition every 25 ms, for at most 10 s. */
export async function waitFor(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** What seededWarden sets up: filled in before the suite's tests run. */
export interface SeededWarden {
  readonly upstream: TestServer;
  readonly database: TestDatabase;
  /** A client of the database itself, past Warden. */
  readonly direct: pg.Client;
  readonly warden: WardenHandle;
}

/**
 * For the describe() it is called in: a new database (named after `name`)
 * seeded with `seed`, a direct client to it, and a Warden with `policy` in
 * front of it; all closed after the suite.
 */
export function seededWarden(name: string, seed: string, policy: string): SeededWarden {
  const env = {} as { -readonly [K in keyof SeededWarden]: SeededWarden[K] };
  before(async () => {
    env.upstream = await findTestServer();
    env.database = await createTestDatabase(env.upstream, name);
    env.direct = new pg.Client(clientConfig(env.upstream, env.database.name));
    await env.direct.connect();
    await env.direct.query(seed);
    env.warden = await startWarden({ upstream: env.upstream, database: env.database.name, policy });
  });
  after(async () => {
    await env.direct?.end();
    await env.warden?.close();
    await env.database?.drop();
    await env.upstream?.close();
  });
  return env;
}
