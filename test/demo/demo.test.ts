/**
 * `warden demo` end to end, as a person runs it: the real bin in a child
 * process, the printed psql commands run by the real psql, then Ctrl-C.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const READY_TIMEOUT_MS = 90_000;

interface PsqlResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function psql(
  command: PrintedCommand,
  sql: string,
  overrides: Partial<PrintedCommand> = {},
): Promise<PsqlResult> {
  const { password, conninfo } = { ...command, ...overrides };
  return new Promise((resolve) => {
    const child = execFile(
      'psql',
      ['-X', '-w', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', sql, conninfo],
      {
        env: { ...process.env, PGPASSWORD: password, PGCONNECT_TIMEOUT: '10' },
        timeout: 30_000,
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end();
  });
}

const hasPsql = await new Promise<boolean>((resolve) => {
  execFile('psql', ['--version'], (error) => resolve(!error));
});

function warden(args: readonly string[]): Promise<PsqlResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['bin/warden.js', ...args],
      { cwd: ROOT, timeout: 30_000 },
      (error, stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr });
      },
    );
  });
}

interface PrintedCommand {
  readonly password: string;
  readonly conninfo: string;
}

/** `PGPASSWORD='…' psql "…"` lines of the demo's output, by identity (the first one printed for each). */
function printedCommands(stdout: string): Map<string, PrintedCommand> {
  const commands = new Map<string, PrintedCommand>();
  for (const match of stdout.matchAll(/PGPASSWORD='([^']+)' psql "([^"]+)"/g)) {
    const conninfo = match[2]!;
    const user = /\buser=(\S+)/.exec(conninfo)?.[1];
    if (user && !commands.has(user)) commands.set(user, { password: match[1]!, conninfo });
  }
  return commands;
}

/** The SQLSTATE a login is refused with (psql prints only the message), checking Warden's certificate on the way. */
async function loginError(
  command: PrintedCommand,
  caFile: string,
  overrides: { password?: string; database?: string } = {},
): Promise<string | undefined> {
  const field = (name: string) => new RegExp(`\\b${name}=(\\S+)`).exec(command.conninfo)?.[1];
  const client = new pg.Client({
    host: field('host'),
    port: Number(field('port')),
    user: field('user'),
    database: overrides.database ?? field('dbname'),
    password: overrides.password ?? command.password,
    ssl: { ca: readFileSync(caFile) },
  });
  client.on('error', () => {});
  try {
    await client.connect();
    return undefined;
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  } finally {
    await client.end().catch(() => {});
  }
}

describe('npm run demo', {
  skip: hasPsql ? false : 'psql is not installed (Debian package postgresql-client)',
  timeout: 120_000,
}, () => {
  let child: ChildProcess;
  let stdout = '';
  let stderr = '';
  let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  let commands: Map<string, PrintedCommand>;
  let demoDir: string;

  before(async () => {
    child = spawn(process.execPath, ['bin/warden.js', 'demo', '--port', '0'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, CI: 'true' },
    });
    exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const ready = await Promise.race([
      new Promise<boolean>((resolve) => {
        const check = () => {
          if (stdout.includes('Press Ctrl-C to stop.')) resolve(true);
        };
        child.stdout!.on('data', check);
        check();
      }),
      exited.then(() => false),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), READY_TIMEOUT_MS).unref()),
    ]);
    assert.ok(ready, `the demo did not become ready.\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    commands = printedCommands(stdout);
    const config = /^\s*Config\s+(\S+)$/m.exec(stdout)?.[1];
    assert.ok(config, `no config path in:\n${stdout}`);
    demoDir = path.dirname(config);
  });

  after(() => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  it('prints a ready-to-paste psql command for each identity, with a real port and API key', () => {
    assert.deepEqual([...commands.keys()].sort(), ['ana', 'etl_nightly', 'support_bot']);
    const ana = commands.get('ana')!;
    assert.match(ana.password, /^wdn_/);
    assert.match(ana.conninfo, /^host=127\.0\.0\.1 port=[1-9]\d* dbname=shop user=ana sslmode=require$/);
    const yaml = readFileSync(path.join(demoDir, 'warden.yaml'), 'utf8');
    assert.match(yaml, /passwordFile: \.\/db-password/);
    const passwordFile = path.join(demoDir, 'db-password');
    assert.equal(statSync(passwordFile).mode & 0o777, 0o600);
    assert.ok(
      !yaml.includes(readFileSync(passwordFile, 'utf8')),
      'the upstream password is not in the config',
    );
    assert.doesNotMatch(yaml, /wdn_/);
    assert.ok(existsSync(path.join(demoDir, 'ca.crt')));
    assert.match(stdout, /What to try:/);
    assert.match(stdout, /Coming next:/);
  });

  it('masks personal data for ana as it streams, and refuses inferring it', async () => {
    const ana = commands.get('ana')!;
    const rows = await psql(
      ana,
      'SELECT phone, card_number, street_address FROM customers ORDER BY id LIMIT 3',
    );
    assert.equal(rows.code, 0, rows.stderr);
    for (const line of rows.stdout.trim().split('\n')) {
      const [phone, card, street] = line.split('|');
      assert.match(phone!, /^[+*() -]*\d{4}$/, 'a phone keeps its last 4 digits');
      assert.match(card!, /^\*+\d{4}$/, 'a card keeps its last 4 digits');
      assert.equal(street, 'REDACTED');
    }
    const inferred = await psql(ana, "SELECT count(*) FROM customers WHERE email LIKE '%@example.com'");
    assert.notEqual(inferred.code, 0);
    assert.match(inferred.stderr, /column "email" holds email data that is masked for you/);
    const etl = await psql(commands.get('etl_nightly')!, 'SELECT email FROM customers ORDER BY id LIMIT 2');
    assert.equal(etl.code, 0, etl.stderr);
    for (const email of etl.stdout.trim().split('\n')) assert.match(email, /^[0-9a-f]{16}$/, 'a keyed hash');
  });

  it('serves the metrics URL it prints, and its printed audit commands work on the config as is', async () => {
    const url = /^\s*Metrics\s+(http:\/\/\S+)/m.exec(stdout)?.[1];
    assert.ok(url, `no metrics URL in:\n${stdout}`);
    const metrics = await (await fetch(url)).text();
    assert.match(metrics, /^warden_statements_total\{decision="allow",outcome="ok"\} [1-9]\d*$/m);
    const config = path.join(demoDir, 'warden.yaml');
    const tail = await warden(['audit', 'tail', '--config', config, '-n', '50']);
    assert.equal(tail.code, 0, tail.stderr);
    assert.match(tail.stdout, /statement {2}ana .* masked=/);
    const access = await warden(['access', '--table', 'customers', '--config', config]);
    assert.equal(access.code, 0, access.stderr);
    assert.match(access.stdout, /^ana +psql +shop +customers +select /m);
    const verify = await warden(['audit', 'verify', '--config', config]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });

  it('lets ana read the shop customers, as warden_app upstream', async () => {
    const ana = commands.get('ana')!;
    const count = await psql(ana, 'SELECT count(*) FROM customers');
    assert.equal(count.code, 0, count.stderr);
    assert.equal(count.stdout.trim(), '200');
    const who = await psql(ana, 'SELECT current_user');
    assert.equal(who.code, 0, who.stderr);
    assert.equal(who.stdout.trim(), 'warden_app');
  });

  it('refuses a wrong password with 28P01', async () => {
    const wrong = await psql(commands.get('ana')!, 'SELECT 1', { password: 'wrong' });
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /password authentication failed for identity "ana"/);
    assert.equal(
      await loginError(commands.get('ana')!, path.join(demoDir, 'ca.crt'), { password: 'wrong' }),
      '28P01',
    );
  });

  it('refuses support_bot on hr by the access rule', async () => {
    const bot = commands.get('support_bot')!;
    const refused = await psql(bot, 'SELECT 1', {
      conninfo: bot.conninfo.replace('dbname=shop', 'dbname=hr'),
    });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /identity "support_bot" may not connect to target "hr"/);
    assert.equal(await loginError(bot, path.join(demoDir, 'ca.crt'), { database: 'hr' }), '42501');
    assert.equal(await loginError(bot, path.join(demoDir, 'ca.crt')), undefined, 'verify-full with ca.crt');
    // The same key still opens shop: the refusal is the access rule, not the login.
    const allowed = await psql(bot, 'SELECT count(*) FROM orders');
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.equal(allowed.stdout.trim(), '1000');
  });

  it('gives each identity its own decisions under the demo policy', async () => {
    const ana = commands.get('ana')!;
    const bot = commands.get('support_bot')!;
    const etl = commands.get('etl_nightly')!;
    const blocked = await psql(ana, 'DELETE FROM orders');
    assert.notEqual(blocked.code, 0);
    assert.match(blocked.stderr, /refused this statement by rule "guardrail:write-without-where"/);
    // Held: psql waits while lee rejects it from the CLI, as the printed steps say.
    const held = psql(ana, "UPDATE orders SET status = 'refunded' WHERE id = 1");
    const config = path.join(demoDir, 'warden.yaml');
    let id: string | undefined;
    for (let i = 0; i < 200 && id === undefined; i++) {
      const listed = await warden(['approvals', 'list', '--config', config]);
      id = /^(apr_\w+) {2}pending/m.exec(listed.stdout)?.[1];
      if (id === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.ok(id, 'the UPDATE is held as a pending request');
    const own = await warden([
      'approvals',
      'approve',
      id,
      '--as',
      'ana',
      '--reason',
      'mine',
      '--config',
      config,
    ]);
    assert.equal(own.code, 1);
    const rejected = await warden([
      'approvals',
      'reject',
      id,
      '--as',
      'lee',
      '--reason',
      'no refunds today',
      '--config',
      config,
    ]);
    assert.equal(rejected.code, 0, rejected.stderr);
    const review = await held;
    assert.match(
      review.stderr,
      /holding this statement for approval: request apr_\w+ \(approval required by rule "order-changes-need-review"/,
    );
    assert.match(review.stderr, new RegExp(`approval request ${id} was rejected by lee: no refunds today`));
    const botOrders = await psql(bot, 'SELECT id, total FROM orders ORDER BY id LIMIT 3');
    assert.equal(botOrders.code, 0, botOrders.stderr);
    assert.equal(botOrders.stdout.trim().split('\n').length, 3);
    const botCustomers = await psql(bot, 'SELECT email FROM customers LIMIT 3');
    assert.match(
      botCustomers.stderr,
      /refused this statement by default: no rule allows this for agent identities/,
    );
    const anaCustomers = await psql(ana, 'SELECT email FROM customers LIMIT 3');
    assert.equal(anaCustomers.code, 0, anaCustomers.stderr);
    const ids = await psql(ana, 'SELECT * FROM customers LIMIT 1');
    assert.match(ids.stderr, /national ID numbers never leave the database/);
    const paged = await psql(etl, 'SELECT id FROM orders');
    assert.equal(paged.code, 0, paged.stderr);
    assert.equal(paged.stdout.trim().split('\n').length, 100);
    assert.match(paged.stderr, /first 100 of 1000 rows/);
  });

  it('stops on SIGINT with exit code 0 and removes its folder', async () => {
    child.kill('SIGINT');
    const { code, signal } = await exited;
    assert.equal(signal, null, `killed by ${signal}\nstderr:\n${stderr}`);
    assert.equal(code, 0, `stderr:\n${stderr}`);
    assert.ok(!existsSync(demoDir), `${demoDir} is still there`);
    assert.match(stdout, /Stopped\./);
  });
});
