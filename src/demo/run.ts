/**
 * `warden demo`: a throwaway PostgreSQL holding personal data, Warden in
 * front of it with a commented warden.yaml, one API key per identity, and
 * ready-to-paste psql commands. Ctrl-C stops everything and removes every
 * file it made.
 */
import { randomBytes } from 'node:crypto';
import { accessSync, constants, rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startHttp } from '../api/http.ts';
import { ConfigError, formatConfigError, loadConfig } from '../config/index.ts';
import { createApiKey } from '../identity/keys.ts';
import { processMetrics } from '../observe/warden-metrics.ts';
import { startServer, type WardenServer } from '../proxy/server.ts';
import { openStore, StoreError } from '../store/store.ts';
import { generateCa, generateLocalServerCertificate } from './certs.ts';
import { type EmbeddedPostgres, EmbeddedPostgresError, startEmbeddedPostgres } from './embedded.ts';
import { seedDemo } from './seed.ts';

export interface DemoOptions {
  /** Warden's port on 127.0.0.1; 0 picks a free one. */
  readonly port: number;
}

/** The upstream password reaches the config through this variable, never through the file. */
/** Where the demo keeps the upstream role's password (0600), so every `warden` command reads the config as is. */
const PASSWORD_FILE = 'db-password';
const APP_ROLE = 'warden_app';
const HOST = '127.0.0.1';
/** A stop signal this long after the first one quits without waiting for the cleanup. */
const REPEAT_SIGNAL_MS = 1000;

const IDENTITIES = [
  { name: 'ana', kind: 'human', groups: ['analysts'] },
  { name: 'etl_nightly', kind: 'service', groups: ['pipelines'] },
  { name: 'support_bot', kind: 'agent', groups: [] },
] as const;

/** A failure with a message a person can act on. */
class DemoError extends Error {
  override readonly name = 'DemoError';
}

/** A stop signal arrived before the demo was ready. */
class Interrupted extends Error {
  override readonly name = 'Interrupted';
}

const out = (text = ''): void => {
  process.stdout.write(`${text}\n`);
};
const err = (text: string): void => {
  process.stderr.write(`${text}\n`);
};

export async function runDemo(options: DemoOptions): Promise<void> {
  const cleanups: { what: string; run: () => Promise<void> | void }[] = [];
  let stopSignal: NodeJS.Signals | undefined;
  let stopAt = 0;
  let demoDir: string | undefined;
  let wake: (() => void) | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (!stopSignal) {
      stopSignal = signal;
      stopAt = Date.now();
      wake?.();
      return;
    }
    // One Ctrl-C can arrive twice (from the terminal and forwarded by npm): only a later one means "now".
    if (Date.now() - stopAt < REPEAT_SIGNAL_MS) return;
    err('warden: quitting at once; PostgreSQL is killed on exit.');
    if (demoDir) rmSync(demoDir, { recursive: true, force: true });
    process.exit(1);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const checkpoint = (): void => {
    if (stopSignal) throw new Interrupted();
  };

  try {
    const port = options.port;
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new DemoError('--port must be a whole number from 0 to 65535 (0 = any free port)');
    }
    // Fail before the slow part when the port is taken; startServer checks again.
    if (port !== 0) await ensurePortFree(port);
    checkpoint();

    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'warden-demo-'));
    demoDir = dir;
    cleanups.push({ what: `remove ${dir}`, run: () => fs.rm(dir, { recursive: true, force: true }) });
    await fs.chmod(dir, 0o755);

    // One CA; its server certificate (127.0.0.1, localhost) serves both Warden and PostgreSQL.
    const ca = await generateCa('Warden demo CA', 30);
    const serverPem = await generateLocalServerCertificate(ca, 30);
    await fs.writeFile(path.join(dir, 'ca.crt'), ca.cert);
    await fs.writeFile(path.join(dir, 'warden.crt'), serverPem.cert);
    await fs.writeFile(path.join(dir, 'warden.key'), serverPem.key, { mode: 0o600 });
    checkpoint();

    const superuserPassword = randomBytes(24).toString('base64url');
    const appPassword = randomBytes(24).toString('base64url');
    const postgres = await startEmbeddedPostgres({
      authMethod: 'scram-sha-256',
      superuserPassword,
      ssl: serverPem,
    });
    cleanups.push({ what: 'stop PostgreSQL', run: () => postgres.stop() });
    checkpoint();
    await createDemoDatabases(postgres, superuserPassword, appPassword);
    checkpoint();

    const configFile = path.join(dir, 'warden.yaml');
    await fs.writeFile(path.join(dir, PASSWORD_FILE), appPassword, { mode: 0o600 });
    await fs.writeFile(configFile, demoConfigYaml(port, postgres.port));
    const config = await loadConfig(configFile);
    for (const warning of config.warnings) err(`warning: ${warning}`);

    const store = openStore(config.dataDir);
    cleanups.push({ what: 'close the store', run: () => store.close() });
    const keys = new Map<string, { secret: string }>(
      IDENTITIES.map((identity) => [identity.name, createApiKey(store, identity.name, 'demo')]),
    );
    checkpoint();

    let server: WardenServer;
    try {
      server = await startServer(config, { store });
    } catch (error) {
      throw listenError(error, port);
    }
    cleanups.push({ what: 'close Warden', run: () => server.close() });
    const http = await startHttp(config.http, {
      metrics: async () => [...server.metrics.registry.snapshot(), ...processMetrics()],
      readiness: async () => server.readiness(),
    });
    cleanups.push({ what: 'close the HTTP listener', run: () => http.close() });
    checkpoint();

    printInstructions({
      warden: server,
      metrics: `http://${http.host}:${http.port}/metrics`,
      postgres,
      dir,
      configFile,
      secret: (name) => keys.get(name)!.secret,
    });

    await new Promise<void>((resolve) => {
      wake = resolve;
      if (stopSignal) resolve();
    });
    out();
    out('Stopping: closing Warden, stopping PostgreSQL, removing the demo folder…');
    const failed = await runCleanups(cleanups);
    if (failed) {
      process.exitCode = 1;
      return;
    }
    out(`Stopped. ${dir} is removed.`);
    process.exitCode = 0;
  } catch (error) {
    const failed = await runCleanups(cleanups);
    // Ctrl-C in a terminal also reaches initdb and postgres, whose failure is then no surprise.
    if (error instanceof Interrupted || stopSignal) {
      err('warden: demo stopped before it was ready; everything it started is cleaned up.');
      process.exitCode = failed ? 1 : 0;
      return;
    }
    err(`warden: ${explain(error)}`);
    process.exitCode = 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** Runs the cleanups newest first; every one runs even if an earlier one fails. Returns whether one failed. */
async function runCleanups(cleanups: { what: string; run: () => Promise<void> | void }[]): Promise<boolean> {
  let failed = false;
  for (const cleanup of cleanups.splice(0).reverse()) {
    try {
      await cleanup.run();
    } catch (error) {
      failed = true;
      err(`warden: could not ${cleanup.what}: ${(error as Error).message}`);
    }
  }
  return failed;
}

/** How to run the warden command from here: through npx when the demo was started by `npm run demo`. */
function wardenCommand(): string {
  return process.env.npm_lifecycle_event === 'demo' ? 'npx warden' : 'warden';
}

function suggestPort(port: number): string {
  const next = port >= 65535 ? 6544 : port + 1;
  // The bin is also run directly (`warden demo`), not only through npm.
  return process.env.npm_lifecycle_event === 'demo'
    ? `npm run demo -- --port ${next}`
    : `warden demo --port ${next}`;
}

function portError(error: NodeJS.ErrnoException, port: number): DemoError | undefined {
  if (error.code === 'EADDRINUSE')
    return new DemoError(`port ${port} is taken: run \`${suggestPort(port)}\``);
  if (error.code === 'EACCES') {
    return new DemoError(`port ${port} needs privileges this user lacks: run \`${suggestPort(6543)}\``);
  }
  return undefined;
}

function listenError(error: unknown, port: number): unknown {
  return (error instanceof Error && portError(error, port)) || error;
}

function ensurePortFree(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (error: NodeJS.ErrnoException) => reject(portError(error, port) ?? error));
    probe.listen({ host: HOST, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}

/** Databases shop (customers, orders) and hr (employees), readable and writable by warden_app. */
async function createDemoDatabases(
  postgres: EmbeddedPostgres,
  superuserPassword: string,
  appPassword: string,
): Promise<void> {
  const connect = async (database: string): Promise<pg.Client> => {
    const client = new pg.Client({
      host: postgres.host,
      port: postgres.port,
      user: postgres.superuser,
      password: superuserPassword,
      database,
    });
    client.on('error', () => {}); // a failure surfaces through the query that hits it
    await client.connect();
    return client;
  };
  const run = async (database: string, work: (client: pg.Client) => Promise<void>): Promise<void> => {
    const client = await connect(database);
    try {
      await work(client);
    } finally {
      await client.end().catch(() => {});
    }
  };
  try {
    await run('postgres', async (admin) => {
      await admin.query('CREATE DATABASE shop');
      await admin.query('CREATE DATABASE hr');
    });
    // Role creation is cluster-wide: seed one database after the other.
    await run('shop', async (shop) => {
      await seedDemo(shop, { appPassword, appRole: APP_ROLE });
      await shop.query('DROP TABLE employees');
    });
    await run('hr', async (hr) => {
      await seedDemo(hr, { appPassword, appRole: APP_ROLE });
      await hr.query('DROP TABLE orders, customers');
    });
  } catch (error) {
    throw new DemoError(`could not create the demo databases: ${(error as Error).message}`);
  }
}

function demoConfigYaml(wardenPort: number, postgresPort: number): string {
  const portNote = wardenPort === 0 ? '   # 0 = any free port; the demo prints the one it got' : '';
  return `# warden.yaml, written by \`warden demo\`. A real deployment writes the same
# keys; only the ports and this throwaway folder are demo-specific.
# Validate a config without starting anything: warden check-config warden.yaml
# Relative paths below are relative to this file.

# Where clients connect. They speak plain PostgreSQL to Warden: psql, drivers,
# BI tools work unchanged.
listen:
  host: ${HOST}
  port: ${wardenPort}${portNote}
  # Warden's certificate, signed by the demo CA (ca.crt, beside this file).
  # Clients that want to check it use sslmode=verify-full sslrootcert=ca.crt.
  tls:
    cert: ./warden.crt
    key: ./warden.key
  # remote: TLS is required, except from this machine (loopback).
  # The other choices are always and never.
  requireTls: remote

# Warden's own state. API keys are kept there only as SCRAM verifiers:
# the secrets themselves are shown once, when a key is created.
dataDir: ./data

# Who may log in. The user name a client sends names one of these identities,
# never a database role, and the password is one of its API keys
# (\`warden key create --identity NAME --config warden.yaml\`).
identities:
  - name: ana            # a person
    kind: human
    groups: [analysts]
  - name: etl_nightly    # a scheduled job
    kind: service
    groups: [pipelines]
  - name: support_bot    # an AI agent
    kind: agent
  - name: lee            # a team lead: approves held statements
    kind: human
    groups: [leads]

# What they may reach. The database name a client sends picks a target.
# Warden logs in to it with the target's own role and password, which
# clients never see: every session runs as warden_app upstream, and Warden
# knows which identity is behind it.
targets:
  - name: shop           # clients connect with dbname=shop
    host: ${HOST}        # the embedded PostgreSQL
    port: ${postgresPort}
    database: shop       # the database on that server
    user: ${APP_ROLE}
    # Never write a secret here: passwordFile: reads it from a file (0600),
    # password: \${NAME} from the environment.
    passwordFile: ./${PASSWORD_FILE}
    tls:
      mode: verify-full  # encrypt, and check the server's certificate and name
      ca: ./ca.crt
    labels: { env: demo }
    # Who may connect: anyone in one of these groups, or of one of these kinds
    # (or named under identities:).
    access:
      groups: [analysts, pipelines]
      kinds: [agent]

  - name: hr             # employees and their salaries
    host: ${HOST}
    port: ${postgresPort}
    database: hr
    user: ${APP_ROLE}
    passwordFile: ./${PASSWORD_FILE}
    tls:
      mode: verify-full
      ca: ./ca.crt
    labels: { env: demo }
    # Analysts only: etl_nightly and support_bot are refused here.
    access:
      groups: [analysts]

# What each statement may do. Warden reads every statement with PostgreSQL's
# own parser and judges it before it reaches the database. Built-in
# guardrails are on (UPDATE/DELETE without WHERE, DROP/TRUNCATE/ALTER,
# GRANT and roles, COPY PROGRAM, dangerous and opaque functions, ALTER
# SYSTEM, SET ROLE); the strongest matching action wins:
# deny > review > mask/limit > allow. People and services are allowed what
# no rule refuses; agents only what a rule allows.
# See a decision without running anything:
#   warden policy explain --config warden.yaml --identity support_bot --target shop "SELECT ..."
policy:
  rules:
    - name: bot-reads-orders        # the agent may read orders, and only orders
      match: { identityKinds: [agent], statementKinds: [read], tables: [orders] }
      action: allow
    - name: no-national-ids         # for everyone, however the query is written
      match: { columns: [national_id] }
      action: deny
      message: national ID numbers never leave the database
    - name: order-changes-need-review
      match: { identityKinds: [human], tables: [orders], access: write }
      action: review
      message: changing orders needs a second pair of eyes
    - name: pipelines-read-in-pages
      match: { groups: [pipelines], statementKinds: [read] }
      action: limit
      maxRows: 100

# Private data in results is masked as it streams, per identity. Columns
# are classified by name here (full_name, email, phone, card_number,
# street_address...; or list them under columns:), and each class has a
# strategy: names and emails fake (the same value gives the same fake),
# phones and cards keep their last 4, addresses redacted. A masked column
# cannot be used to infer its values either (WHERE email LIKE ... is refused).
masking:
  heuristics: true
  unmask:
    - groups: [pipelines]   # the nightly job joins on email: a keyed hash lines up across tables
      classes: { email: hash }

# Statements a rule holds for review wait on their connection until someone
# approves or rejects them (with a reason), here from the command line:
#   warden approvals list --config warden.yaml
#   warden approvals approve <id> --as lee --reason "..." --config warden.yaml
# Nobody approves their own request. Slack and signed webhooks can decide too.
approvals:
  approvers: { groups: [leads] }
  timeoutSeconds: 300

# Every connection and statement is recorded in a hash-chained audit trail
# in dataDir (store: postgres for production):
#   warden audit tail --config warden.yaml -n 10
#   warden access --table customers --config warden.yaml
#   warden audit verify --config warden.yaml

# Prometheus metrics and health checks: /metrics, /healthz, /readyz.
http:
  host: ${HOST}
  port: 0   # any free port; the demo prints the one it got
`;
}

function printInstructions(run: {
  warden: WardenServer;
  metrics: string;
  postgres: EmbeddedPostgres;
  dir: string;
  configFile: string;
  secret: (identity: string) => string;
}): void {
  const { warden } = run;
  const command = (identity: string, database: string, password = `'${run.secret(identity)}'`): string =>
    `PGPASSWORD=${password} psql "host=${warden.host} port=${warden.port} dbname=${database} user=${identity} sslmode=require"`;

  out('Warden demo is running.');
  out();
  out(
    `  Warden      ${warden.host}:${warden.port}, TLS (certificate authority: ${path.join(run.dir, 'ca.crt')})`,
  );
  out(
    `  PostgreSQL  ${run.postgres.host}:${run.postgres.port}, embedded; databases shop and hr; Warden logs in as ${APP_ROLE}`,
  );
  out(`  Config      ${run.configFile}`);
  out(`  Metrics     ${run.metrics}  (and /healthz, /readyz)`);
  out();
  out('Connect as each identity (the password is an API key made just now):');
  for (const identity of IDENTITIES) {
    const groups = identity.groups.length > 0 ? `, groups: ${identity.groups.join(', ')}` : '';
    out();
    out(`  # ${identity.name} (${identity.kind}${groups})`);
    out(`  ${command(identity.name, 'shop')}`);
  }
  out();
  out('What to try:');
  out();
  out('  1. As ana: SELECT current_user, full_name, email, card_number FROM customers LIMIT 3;');
  out(
    `     current_user is ${APP_ROLE}: you log in to Warden as ana, Warden logs in to PostgreSQL as its own role.`,
  );
  out('     Names and emails come back fake, cards as their last 4 digits: masked as the rows stream.');
  out("     SELECT count(*) FROM customers WHERE email LIKE '%@example.com';  is refused: a masked column");
  out('     cannot be used to learn its values. As etl_nightly the same emails are keyed hashes (joinable).');
  out('  2. A wrong password is refused with 28P01 (password authentication failed):');
  out(`     ${command('ana', 'shop', 'wrong')}`);
  out('  3. support_bot on hr is refused with 42501 by the access rule (hr is for analysts):');
  out(`     ${command('support_bot', 'hr')}`);
  out(
    "  4. SELECT pg_sleep(30); then Ctrl-C in psql: psql's cancel goes to Warden with Warden's own cancel key,",
  );
  out('     and Warden cancels the query on PostgreSQL.');
  out('  5. Blocked by a guardrail, as ana: DELETE FROM orders;');
  out('     (no WHERE clause: refused with 42501 before it reaches PostgreSQL; the session goes on)');
  out('  6. As support_bot (an AI agent): SELECT id, total, status FROM orders LIMIT 3;  is allowed,');
  out('     SELECT email FROM customers LIMIT 3;  is refused: agents get only what a rule allows.');
  out("  7. As ana: UPDATE orders SET status = 'refunded' WHERE id = 1;  is held for approval (rule");
  out('     order-changes-need-review): psql waits and shows the request id. In another terminal, as lee:');
  out(`     ${wardenCommand()} approvals list --config ${run.configFile}`);
  out(
    `     ${wardenCommand()} approvals approve <id> --as lee --reason "refund ticket 7" --config ${run.configFile}`,
  );
  out('     and the UPDATE runs (or reject it: ana gets the reason). ana cannot approve her own request.');
  out('  8. As etl_nightly: SELECT id FROM orders;  returns the first 100 rows and a notice (a limit rule).');
  out(
    `  9. Why? ${wardenCommand()} policy explain --config ${run.configFile} --identity support_bot --target shop "SELECT email FROM customers"`,
  );
  out(`  10. What happened: ${wardenCommand()} audit tail --config ${run.configFile} -n 10`);
  out(`      Who touched customers: ${wardenCommand()} access --table customers --config ${run.configFile}`);
  out(`      Is the trail intact: ${wardenCommand()} audit verify --config ${run.configFile}`);
  out('  Coming next: a dashboard, and people logging in with their identity provider.');
  if (!onPath('psql')) {
    out();
    out('  psql is not installed here: any PostgreSQL client works with the host, port, user, password and');
    out('  database above; for psql install postgresql-client (Debian, Ubuntu) or libpq (Homebrew).');
  }
  out();
  out('Press Ctrl-C to stop.');
}

function onPath(program: string): boolean {
  const names = process.platform === 'win32' ? [`${program}.exe`, `${program}.cmd`] : [program];
  return (process.env.PATH ?? '').split(path.delimiter).some((dir) =>
    names.some((name) => {
      try {
        accessSync(path.join(dir || '.', name), constants.X_OK);
        return true;
      } catch {
        return false;
      }
    }),
  );
}

function explain(error: unknown): string {
  if (error instanceof DemoError || error instanceof StoreError) return error.message;
  if (error instanceof EmbeddedPostgresError)
    return `could not start the embedded PostgreSQL: ${error.message}`;
  if (error instanceof ConfigError)
    return `the demo config is invalid (a bug in the demo):\n${formatConfigError(error)}`;
  if (error instanceof Error) return `${error.message}${process.env.WARDEN_DEBUG ? `\n${error.stack}` : ''}`;
  return String(error);
}
