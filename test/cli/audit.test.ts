/**
 * `warden audit verify|search|export|tail`, `warden access`, and the audit
 * events `warden key create|revoke` record: the real CLI as a child
 * process, over a store filled with chained events the way the audit
 * worker writes them.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import {
  type AuditEvent,
  type ConnectionClosed,
  type ConnectionOpened,
  canonicalJson,
  type LoginFailed,
  type StatementEvent,
} from '../../src/audit/events.ts';
import { ChainAppender } from '../../src/audit/records.ts';
import { eventOf, TEMPLATE_FIELDS, templateHash } from '../../src/audit/templates.ts';
import { operator, recordAdminEvent } from '../../src/cli/audit.ts';
import { loadConfig } from '../../src/config/index.ts';
import type { AuditRecord } from '../../src/store/audit.ts';
import { SqliteAuditStore } from '../../src/store/sqlite-audit.ts';
import { openStore, StoreError } from '../../src/store/store.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'warden.js');

interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function warden(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000,
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
  });
}

const lines = (text: string) => text.split('\n').filter((line) => line !== '');

/** Collects a child's stdout and resolves when it matches. */
function waitForOutput(child: ChildProcess, pattern: RegExp, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(
      () => reject(new Error(`no "${what}" within 20 s; output so far:\n${seen}`)),
      20_000,
    );
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      if (pattern.test(seen)) {
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        resolve(seen);
      }
    };
    child.stdout?.on('data', onData);
  });
}

const NOW = Date.now();
const ago = (minutes: number) => new Date(NOW - minutes * 60_000).toISOString();

/** A statement text with a comma, quotes and a line break: CSV must quote it and give it back as it was. */
const TRICKY = 'SELECT id, "na""me"\n  FROM public.orders WHERE note = \'?\'';

function opened(identity: string, at: string, session: string): ConnectionOpened {
  return {
    type: 'connection.open',
    at,
    identity,
    session,
    kind: 'human',
    groups: [],
    client: '10.0.0.5:51234',
    applicationName: 'psql',
    pipeline: null,
    tls: true,
    target: 'shop',
  };
}

function closed(identity: string, at: string, session: string): ConnectionClosed {
  return {
    type: 'connection.close',
    at,
    identity,
    session,
    target: 'shop',
    pipeline: null,
    durationMs: 60_000,
    statements: 2,
  };
}

function statement(
  fields: Partial<StatementEvent> & Pick<StatementEvent, 'at' | 'identity'>,
): StatementEvent {
  return {
    type: 'statement',
    session: 's1',
    target: 'shop',
    pipeline: null,
    applicationName: '',
    tags: {},
    source: 'query',
    text: 'SELECT ?',
    fingerprint: null,
    kinds: ['select'],
    tables: [],
    decision: 'allow',
    rule: null,
    matched: [],
    outcome: 'ok',
    sqlstate: null,
    rows: 0,
    masked: [],
    maskedRows: 0,
    durationMs: 1,
    ...fields,
  };
}

function loginFailed(identity: string, at: string): LoginFailed {
  return {
    type: 'login.failed',
    at,
    identity,
    client: '203.0.113.9:40000',
    target: 'shop',
    sqlstate: '28P01',
    reason: 'password authentication failed',
  };
}

/** Oldest first: a's four events three to two hours ago, b's three in the last half hour. */
const CHAIN_A: readonly AuditEvent[] = [
  opened('alice', ago(180), 's1'),
  statement({
    at: ago(179),
    identity: 'alice',
    text: TRICKY,
    tables: [{ table: 'public.orders', operation: 'select' }],
    rows: 3,
    masked: ['email'],
    maskedRows: 3,
  }),
  statement({
    at: ago(120),
    identity: 'alice',
    text: 'UPDATE public.orders SET note = ? WHERE id = ?',
    kinds: ['update'],
    tables: [{ table: 'public.orders', operation: 'update' }],
    rows: 1,
  }),
  closed('alice', ago(119), 's1'),
];

const CHAIN_B: readonly AuditEvent[] = [
  statement({
    at: ago(30),
    identity: 'etl',
    session: 's2',
    pipeline: 'nightly_etl',
    text: 'SELECT email, phone FROM public.customers',
    tables: [{ table: 'public.customers', operation: 'select' }],
    rows: 100,
    masked: ['email', 'phone'],
    maskedRows: 100,
  }),
  statement({
    at: ago(20),
    identity: 'etl',
    session: 's2',
    pipeline: 'nightly_etl',
    text: 'INSERT INTO orders VALUES (?, ?)',
    kinds: ['insert'],
    tables: [{ table: 'orders', operation: 'insert' }],
    rows: 5,
  }),
  loginFailed('mallory', ago(10)),
];

interface World {
  readonly dir: string;
  readonly file: string;
  readonly dataDir: string;
  readonly dbFile: string;
}

const worlds: World[] = [];

/** A temp folder with a config (dataDir ./data, resolved against the config's folder) and, unless `empty`, chains a and b. */
async function makeWorld(empty = false): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'warden-audit-cli-'));
  const file = join(dir, 'warden.yaml');
  writeFileSync(
    file,
    `listen:
  host: 127.0.0.1
  port: 6599
dataDir: ./data
identities:
  - { name: etl, kind: service }
targets:
  - name: shop
    host: 127.0.0.1
    port: 5432
    user: warden_app
    tls: { mode: disable }
    access: { kinds: [service] }
`,
  );
  const dataDir = join(dir, 'data');
  const world = { dir, file, dataDir, dbFile: join(dataDir, 'warden.db') };
  worlds.push(world);
  if (!empty) {
    await appendEvents(dataDir, 'warden-a', CHAIN_A);
    await appendEvents(dataDir, 'warden-b', CHAIN_B);
  }
  return world;
}

/** Appends events to a chain as the audit worker does: chained after the head, in one transaction. */
async function appendEvents(
  dataDir: string,
  chain: string,
  events: readonly AuditEvent[],
): Promise<AuditRecord[]> {
  const opened = openStore(dataDir);
  const store = new SqliteAuditStore(opened.db, () => opened.close());
  try {
    const { records, access } = new ChainAppender(chain, await store.head(chain)).append(events);
    await store.append(records, access);
    return records;
  } finally {
    await store.close();
  }
}

/** Rows of audit_events, for tampering and comparing. */
function withDb<T>(world: World, work: (db: Database.Database) => T): T {
  const db = new Database(world.dbFile);
  try {
    return work(db);
  } finally {
    db.close();
  }
}

/** RFC 4180: quoted fields may hold commas, doubled quotes and line breaks. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c !== '"') field += c;
      else if (text[i + 1] === '"') {
        field += '"';
        i++;
      } else quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (field !== '' || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

after(() => {
  for (const world of worlds) rmSync(world.dir, { recursive: true, force: true });
});

describe('warden audit verify', { timeout: 120_000 }, () => {
  it('verifies every chain and exits 0', async () => {
    const world = await makeWorld();
    const result = await warden(['audit', 'verify', '-c', world.file]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(lines(result.stdout), [
      'chain warden-a: 4 events verified',
      'chain warden-b: 3 events verified',
    ]);
  });

  it('says so for an empty trail', async () => {
    const world = await makeWorld(true);
    const result = await warden(['audit', 'verify', '-c', world.file]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /no audit events/);
  });

  const tampered = async (tamper: (db: Database.Database) => void): Promise<RunResult> => {
    const world = await makeWorld();
    withDb(world, tamper);
    return warden(['audit', 'verify', '-c', world.file]);
  };

  it('names an edited event and exits 1; the other chain still verifies', async () => {
    const result = await tampered((db) => {
      const changed = db
        .prepare(
          `UPDATE audit_events SET body = replace(body, '"rows":3', '"rows":0') WHERE chain = 'warden-a' AND seq = 2`,
        )
        .run().changes;
      assert.equal(changed, 1);
    });
    assert.equal(result.code, 1, result.stderr);
    const [a, b] = lines(result.stdout);
    assert.match(a!, /^chain warden-a: event 2 does not match its hash/);
    assert.equal(b, 'chain warden-b: 3 events verified');
  });

  it('names a deleted event', async () => {
    const result = await tampered((db) => {
      db.prepare(`DELETE FROM audit_events WHERE chain = 'warden-a' AND seq = 3`).run();
    });
    assert.equal(result.code, 1);
    assert.match(result.stdout, /^chain warden-a: event 3 is missing before event 4$/m);
  });

  it('names reordered events', async () => {
    const result = await tampered((db) => {
      const body = (seq: number) =>
        (
          db.prepare(`SELECT body FROM audit_events WHERE chain = 'warden-a' AND seq = ?`).get(seq) as {
            body: string;
          }
        ).body;
      const [two, three] = [body(2), body(3)];
      const set = db.prepare(`UPDATE audit_events SET body = ? WHERE chain = 'warden-a' AND seq = ?`);
      set.run(three, 2);
      set.run(two, 3);
    });
    assert.equal(result.code, 1);
    assert.match(result.stdout, /^chain warden-a: the event stored as warden-a #2 says it is warden-a #3$/m);
  });

  it('names the first event of an edited statement template', async () => {
    const result = await tampered((db) => {
      const changed = db
        .prepare(
          `UPDATE audit_templates SET body = replace(body, 'UPDATE public.orders', 'UPDATE public.invoices') WHERE instr(body, 'UPDATE public.orders') > 0`,
        )
        .run().changes;
      assert.equal(changed, 1);
    });
    assert.equal(result.code, 1);
    assert.match(
      result.stdout,
      /^chain warden-a: event 3's statement template does not match its hash: the template was edited$/m,
    );
    assert.match(result.stdout, /^chain warden-b: 3 events verified$/m);
  });

  it('names a searched column that no longer says what the hashed event says', async () => {
    const result = await tampered((db) => {
      db.prepare(`UPDATE audit_events SET identity = 'bob' WHERE chain = 'warden-b' AND seq = 2`).run();
    });
    assert.equal(result.code, 1);
    assert.match(result.stdout, /^chain warden-a: 4 events verified$/m);
    assert.match(result.stdout, /^chain warden-b: event 2's identity column differs/m);
  });
});

describe('warden audit search, export, tail and access', { timeout: 120_000 }, () => {
  let world: World;
  let bodies: Map<string, string>;
  /** Each event as readers see it: a statement's template filled in. */
  let events: Map<string, string>;

  before(async () => {
    world = await makeWorld();
    bodies = withDb(world, (db) => {
      const rows = db.prepare('SELECT chain, seq, body FROM audit_events').all() as {
        chain: string;
        seq: number;
        body: string;
      }[];
      return new Map(rows.map((row) => [`${row.chain}#${row.seq}`, row.body]));
    });
    const opened = openStore(world.dataDir);
    try {
      events = new Map();
      for await (const record of new SqliteAuditStore(opened.db).events({})) {
        events.set(`${record.chain}#${record.seq}`, canonicalJson(eventOf(record)));
      }
    } finally {
      opened.close();
    }
  });

  const search = (...args: string[]) => warden(['audit', 'search', '-c', world.file, ...args]);
  const ids = (stdout: string) => lines(stdout).map((line) => line.split('  ')[1]);

  it('prints every event, oldest first, one line each', async () => {
    const result = await search();
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(ids(result.stdout), [
      'warden-a#1',
      'warden-a#2',
      'warden-a#3',
      'warden-a#4',
      'warden-b#1',
      'warden-b#2',
      'warden-b#3',
    ]);
    const [first, second] = lines(result.stdout);
    assert.equal(
      first,
      `${ago(180)}  warden-a#1  connection.open  alice  -  human from 10.0.0.5:51234 to shop tls app=psql session s1`,
    );
    // The statement's text on one line, after its decision, outcome, rows and masked columns.
    assert.equal(
      second,
      `${ago(179)}  warden-a#2  statement  alice  -  allow ok rows=3 masked=email: SELECT id, "na""me" FROM public.orders WHERE note = '?'`,
    );
    assert.match(
      result.stdout,
      /login\.failed {2}mallory {2}- {2}from 203\.0\.113\.9:40000 to shop: password authentication failed \(28P01\)/,
    );
  });

  it('filters by identity, pipeline, table (a bare name in any schema), target and type', async () => {
    assert.deepEqual(ids((await search('--identity', 'alice')).stdout), [
      'warden-a#1',
      'warden-a#2',
      'warden-a#3',
      'warden-a#4',
    ]);
    assert.deepEqual(ids((await search('--pipeline', 'nightly_etl')).stdout), ['warden-b#1', 'warden-b#2']);
    assert.deepEqual(ids((await search('--table', 'orders')).stdout), [
      'warden-a#2',
      'warden-a#3',
      'warden-b#2',
    ]);
    assert.deepEqual(ids((await search('--table', 'public.customers')).stdout), ['warden-b#1']);
    assert.deepEqual(ids((await search('--type', 'login.failed', '--target', 'shop')).stdout), [
      'warden-b#3',
    ]);
    const none = await search('--identity', 'nobody');
    assert.equal(none.code, 0);
    assert.equal(none.stdout, '');
    assert.match(none.stderr, /no matching events/);
  });

  it('filters by time, relative or ISO 8601', async () => {
    assert.deepEqual(ids((await search('--since', '1h')).stdout), ['warden-b#1', 'warden-b#2', 'warden-b#3']);
    assert.deepEqual(ids((await search('--since', '25m', '--until', '15m')).stdout), ['warden-b#2']);
    assert.deepEqual(ids((await search('--until', ago(150))).stdout), ['warden-a#1', 'warden-a#2']);
    // --since is inclusive, and a time with an offset is the same instant in UTC.
    const at = new Date(NOW - 120 * 60_000);
    const offset = new Date(at.getTime() + 2 * 3_600_000).toISOString().replace('Z', '+02:00');
    assert.deepEqual(ids((await search('--since', offset, '--until', '1h')).stdout), [
      'warden-a#3',
      'warden-a#4',
    ]);
  });

  it('limits to the first N and says there are more', async () => {
    const result = await search('--limit', '2');
    assert.equal(result.code, 0);
    assert.deepEqual(ids(result.stdout), ['warden-a#1', 'warden-a#2']);
    assert.match(result.stderr, /showing the first 2 matching events/);
  });

  it('--json prints each event whole, one per line', async () => {
    const result = await search('--json', '--identity', 'etl');
    assert.equal(result.code, 0, result.stderr);
    const printed = lines(result.stdout);
    assert.deepEqual(printed, [events.get('warden-b#1'), events.get('warden-b#2')]);
    const event = JSON.parse(printed[0]!) as StatementEvent & { chain: string; seq: number };
    assert.equal(event.chain, 'warden-b');
    assert.equal(event.seq, 1);
    assert.deepEqual(event.masked, ['email', 'phone']);
    // The fields its stored template holds, filled in.
    assert.equal(event.text, 'SELECT email, phone FROM public.customers');
    assert.deepEqual(event.tables, [{ table: 'public.customers', operation: 'select' }]);
    const login = JSON.parse(lines((await search('--json', '--type', 'login.failed')).stdout)[0]!);
    assert.equal(canonicalJson(login), bodies.get('warden-b#3'), 'other events print as stored');
  });

  it('refuses a bad time, limit or type with exit code 2 and an example', async () => {
    const bad = await search('--since', 'yesterday');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--since must be an ISO 8601 time or a time ago, not "yesterday"/);
    assert.match(bad.stderr, /for example --since 2024-05-01T09:00:00Z.*--since 30m/);
    assert.equal(bad.stdout, '');
    for (const args of [
      ['--until', '2024-02-30'],
      ['--since', '5 minutes'],
      ['--limit', '0'],
      ['--type', 'statements'],
      ['--since', '1h', '--until', '2h'],
    ]) {
      const result = await search(...args);
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
    }
    const access = await warden(['access', '--table', 'orders', '--since', 'last week', '-c', world.file]);
    assert.equal(access.code, 2);
    assert.match(access.stderr, /--since must be/);
  });

  it('export --format jsonl writes every event with its hash', async () => {
    const result = await warden(['audit', 'export', '--format', 'jsonl', '-c', world.file]);
    assert.equal(result.code, 0, result.stderr);
    const exported = lines(result.stdout).map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.equal(exported.length, 7);
    const hashes = withDb(
      world,
      (db) =>
        new Map(
          (
            db.prepare('SELECT chain, seq, hash FROM audit_events').all() as {
              chain: string;
              seq: number;
              hash: string;
            }[]
          ).map((row) => [`${row.chain}#${row.seq}`, row.hash]),
        ),
    );
    let templated = 0;
    for (const { hash, ...event } of exported) {
      const id = `${String(event.chain)}#${String(event.seq)}`;
      assert.equal(hash, hashes.get(id));
      // Without its hash (and its template's fields, which hash to its template), the stored body again.
      const stored: Record<string, unknown> = { ...event };
      if (typeof event.template === 'string') {
        const template = Object.fromEntries(TEMPLATE_FIELDS.map((field) => [field, event[field]]));
        assert.equal(templateHash(canonicalJson(template)), event.template);
        for (const field of TEMPLATE_FIELDS) delete stored[field];
        templated++;
      }
      assert.equal(canonicalJson(stored), bodies.get(id));
    }
    assert.equal(templated, 4, 'every statement names its template');
    assert.equal(exported[1]!.text, TRICKY);
  });

  it('export --format csv quotes what needs quoting, and filters', async () => {
    const result = await warden(['audit', 'export', '-f', 'csv', '-c', world.file]);
    assert.equal(result.code, 0, result.stderr);
    const [header, ...rows] = parseCsv(result.stdout);
    assert.deepEqual(header, [
      'chain',
      'seq',
      'at',
      'type',
      'identity',
      'pipeline',
      'target',
      'decision',
      'outcome',
      'sqlstate',
      'rows',
      'masked',
      'text',
      'hash',
    ]);
    assert.equal(rows.length, 7);
    for (const row of rows) assert.equal(row.length, 14);
    const byId = new Map(rows.map((row) => [`${row[0]}#${row[1]}`, row]));
    const tricky = byId.get('warden-a#2')!;
    assert.deepEqual(tricky.slice(3, 13), [
      'statement',
      'alice',
      '',
      'shop',
      'allow',
      'ok',
      '',
      '3',
      'email',
      TRICKY,
    ]);
    assert.equal(byId.get('warden-b#1')![11], 'email;phone');
    assert.equal(byId.get('warden-b#3')![4], 'mallory');
    const filtered = await warden(['audit', 'export', '-f', 'csv', '--identity', 'etl', '-c', world.file]);
    assert.deepEqual(
      parseCsv(filtered.stdout)
        .slice(1)
        .map((row) => `${row[0]}#${row[1]}`),
      ['warden-b#1', 'warden-b#2'],
    );
  });

  it('export needs a known format', async () => {
    const result = await warden(['audit', 'export', '-f', 'xml', '-c', world.file]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /Allowed choices are jsonl, csv/);
  });

  it('tail -n prints the newest events, oldest of them first', async () => {
    const two = await warden(['audit', 'tail', '-n', '2', '-c', world.file]);
    assert.equal(two.code, 0, two.stderr);
    assert.deepEqual(ids(two.stdout), ['warden-b#2', 'warden-b#3']);
    const all = await warden(['audit', 'tail', '-c', world.file]);
    assert.equal(lines(all.stdout).length, 7);
    // Further back than the first look-back windows.
    const five = await warden(['audit', 'tail', '-n', '5', '-c', world.file]);
    assert.deepEqual(ids(five.stdout), [
      'warden-a#3',
      'warden-a#4',
      'warden-b#1',
      'warden-b#2',
      'warden-b#3',
    ]);
  });

  it('access --table shows who touched it', async () => {
    const result = await warden(['access', '--table', 'orders', '-c', world.file]);
    assert.equal(result.code, 0, result.stderr);
    const [header, ...rows] = lines(result.stdout);
    assert.match(
      header!,
      /^IDENTITY +PIPELINE +TARGET +TABLE +OPERATION +FIRST SEEN +LAST SEEN +STATEMENTS +ROWS +MASKED$/,
    );
    assert.equal(rows.length, 3);
    const cells = rows.map((row) => row.split(/ {2,}/));
    assert.deepEqual(
      cells.map((row) => `${row[0]} ${row[1]} ${row[3]} ${row[4]} ${row[7]} ${row[8]} ${row[9]}`).sort(),
      [
        'alice - public.orders select 1 3 email',
        'alice - public.orders update 1 1 -',
        'etl nightly_etl orders insert 1 5 -',
      ],
    );

    const json = await warden([
      'access',
      '--table',
      'customers',
      '--identity',
      'etl',
      '--json',
      '-c',
      world.file,
    ]);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), [
      {
        identity: 'etl',
        pipeline: 'nightly_etl',
        target: 'shop',
        table: 'public.customers',
        operation: 'select',
        firstSeen: ago(30),
        lastSeen: ago(30),
        statements: 1,
        rows: 100,
        masked: ['email', 'phone'],
      },
    ]);
    const none = await warden([
      'access',
      '--table',
      'orders',
      '--identity',
      'mallory',
      '--json',
      '-c',
      world.file,
    ]);
    assert.deepEqual(JSON.parse(none.stdout), []);
    const missing = await warden(['access', '-c', world.file]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--table/);
  });
});

describe('warden audit tail --follow', { timeout: 60_000 }, () => {
  let child: ChildProcess | undefined;

  after(() => {
    child?.kill('SIGKILL');
  });

  it('prints new events as they are appended, and stops with exit code 0 on SIGTERM', async () => {
    const world = await makeWorld();
    child = spawn(process.execPath, [BIN, 'audit', 'tail', '-n', '1', '--follow', '-c', world.file], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (chunk) => {
      stderr += chunk;
    });
    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    const first = await waitForOutput(child, /warden-b#3/, 'the newest event');
    assert.equal(lines(first).length, 1);

    const now = new Date().toISOString();
    const seen = waitForOutput(child, /warden-b#4[\s\S]*warden-c#1/, 'the new events');
    await appendEvents(world.dataDir, 'warden-b', [
      statement({ at: now, identity: 'follower', text: 'SELECT 42' }),
    ]);
    // A chain that did not exist when tail started.
    await appendEvents(world.dataDir, 'warden-c', [loginFailed('newcomer', now)]);
    const printed = lines(await seen);
    assert.match(printed[0]!, /warden-b#4 {2}statement {2}follower {2}- {2}allow ok rows=0: SELECT 42$/);
    assert.match(printed[1]!, /warden-c#1 {2}login\.failed {2}newcomer/);

    child.kill('SIGTERM');
    const code = await Promise.race([
      exited,
      new Promise<string>((resolve) => setTimeout(() => resolve('still running 10 s after SIGTERM'), 10_000)),
    ]);
    assert.equal(code, 0, stderr);
    child = undefined;
  });
});

describe('key create and key revoke in the trail', { timeout: 120_000 }, () => {
  let world: World;

  before(async () => {
    world = await makeWorld(true);
  });

  it('records who created and revoked which key, never the secret', async () => {
    const created = await warden(['key', 'create', '--identity', 'etl', '-c', world.file], {
      USER: 'ops-carol',
    });
    assert.equal(created.code, 0, created.stderr);
    const secret = created.stdout.trim();
    assert.match(secret, /^wdn_[0-9a-f]{12}_/);
    const keyId = secret.split('_')[1]!;
    const revoked = await warden(['key', 'revoke', keyId, '-c', world.file], { USER: 'ops-dave' });
    assert.equal(revoked.code, 0, revoked.stderr);

    const chain = `cli@${hostname()}`;
    const found = await warden(['audit', 'search', '--type', 'key.create', '--json', '-c', world.file]);
    assert.equal(found.code, 0, found.stderr);
    assert.deepEqual(
      lines(found.stdout).map((line) => JSON.parse(line)),
      [
        {
          at: JSON.parse(lines(found.stdout)[0]!).at,
          chain,
          seq: 1,
          type: 'key.create',
          identity: 'ops-carol',
          subject: 'etl',
          keyId,
        },
      ],
    );
    const revocation = await warden(['audit', 'search', '--type', 'key.revoke', '-c', world.file]);
    assert.match(
      revocation.stdout,
      new RegExp(`${chain}#2 {2}key\\.revoke {2}ops-dave {2}- {2}key ${keyId} of etl$`, 'm'),
    );

    const verified = await warden(['audit', 'verify', '-c', world.file]);
    assert.equal(verified.code, 0, verified.stderr);
    assert.equal(verified.stdout.trim(), `chain ${chain}: 2 events verified`);

    const exported = await warden(['audit', 'export', '--format', 'jsonl', '-c', world.file]);
    assert.equal(lines(exported.stdout).length, 2);
    const random = secret.slice(secret.lastIndexOf('_') + 1);
    for (const [what, text] of [
      ['the export', exported.stdout],
      ['the store file', readFileSync(world.dbFile).toString('latin1')],
      [
        'the store log',
        existsSync(`${world.dbFile}-wal`) ? readFileSync(`${world.dbFile}-wal`).toString('latin1') : '',
      ],
    ] as const) {
      assert.equal(text.includes(secret), false, `the secret is in ${what}`);
      assert.equal(text.includes(random), false, `the secret's random part is in ${what}`);
    }
  });

  it('two CLIs creating keys at once both get their event into the one chain', async () => {
    const before = await warden(['audit', 'search', '--type', 'key.create', '-c', world.file]);
    const results = await Promise.all([
      warden(['key', 'create', '--identity', 'etl', '-c', world.file]),
      warden(['key', 'create', '--identity', 'etl', '-c', world.file]),
    ]);
    for (const result of results) assert.equal(result.code, 0, result.stderr);
    const after = await warden(['audit', 'search', '--type', 'key.create', '-c', world.file]);
    assert.equal(lines(after.stdout).length, lines(before.stdout).length + 2);
    const verified = await warden(['audit', 'verify', '-c', world.file]);
    assert.equal(verified.code, 0, verified.stdout);
  });

  it('a key the trail cannot record is revoked and never shown; a revocation stands but exits 1', async () => {
    const created = await warden(['key', 'create', '--identity', 'etl', '-c', world.file]);
    assert.equal(created.code, 0, created.stderr);
    const keyId = created.stdout.trim().split('_')[1]!;
    const working = readFileSync(world.file, 'utf8');
    // An audit store that refuses connections.
    writeFileSync(
      world.file,
      `${working}audit:\n  store: postgres\n  url: postgres://warden:hunter2@127.0.0.1:1/audit\n`,
    );
    try {
      const refused = await warden(['key', 'create', '--identity', 'etl', '-c', world.file]);
      assert.equal(refused.code, 1);
      assert.equal(refused.stdout, '');
      assert.match(refused.stderr, /cannot record the key\.create event in the audit trail/);
      assert.match(refused.stderr, /key [0-9a-f]{12} was revoked at once and its secret not shown/);
      assert.equal(refused.stderr.includes('hunter2'), false);
      const unrecorded = /key ([0-9a-f]{12}) was revoked/.exec(refused.stderr)![1]!;

      const revoked = await warden(['key', 'revoke', keyId, '-c', world.file]);
      assert.equal(revoked.code, 1);
      assert.equal(revoked.stdout, `revoked key ${keyId}\n`);
      assert.match(
        revoked.stderr,
        new RegExp(`key ${keyId} is revoked, but cannot record the key\\.revoke event`),
      );

      const listed = await warden(['key', 'list', '-c', world.file]);
      assert.match(listed.stdout, new RegExp(`^${unrecorded}\\t.*\\trevoked `, 'm'));
      assert.match(listed.stdout, new RegExp(`^${keyId}\\t.*\\trevoked `, 'm'));
    } finally {
      writeFileSync(world.file, working);
    }
  });

  it('recordAdminEvent retries once when another process took its seq, and gives up after that', async () => {
    const config = await loadConfig(world.file);
    const chain = `cli@${hostname()}`;
    const original = SqliteAuditStore.prototype.append;
    let races = 0;
    // Another CLI appends to the chain between this one's reading the head and appending.
    SqliteAuditStore.prototype.append = async function (this: SqliteAuditStore, records, access) {
      // (The rival's own append goes through here too: it is not raced.)
      if (races > 0 && records[0]?.identity !== 'rival') {
        races--;
        await appendEvents(world.dataDir, chain, [
          { type: 'admin', at: new Date().toISOString(), identity: 'rival', action: 'race', detail: '' },
        ]);
      }
      return original.call(this, records, access);
    };
    try {
      const head = (await warden(['audit', 'tail', '-n', '1', '-c', world.file])).stdout;
      const seq = Number(/#(\d+)/.exec(head)![1]);
      races = 1;
      const recorded = await recordAdminEvent(config, { type: 'admin', action: 'test', detail: 'retried' });
      assert.deepEqual(recorded, { chain, seq: seq + 2 });
      races = 2;
      await assert.rejects(
        recordAdminEvent(config, { type: 'admin', action: 'test', detail: 'lost' }),
        (error) => {
          assert.ok(error instanceof StoreError);
          assert.match(error.message, /cannot record the admin event in the audit trail/);
          return true;
        },
      );
    } finally {
      SqliteAuditStore.prototype.append = original;
    }
    const verified = await warden(['audit', 'verify', '-c', world.file]);
    assert.equal(verified.code, 0, verified.stdout);
    const search = await warden(['audit', 'search', '--type', 'admin', '-c', world.file]);
    // The event lost to the second race is not there; the three rivals' are.
    assert.deepEqual(
      lines(search.stdout)
        .map((line) => line.split('  ').slice(3).join(' '))
        .sort(),
      [`${operator()} - test: retried`, 'rival - race: ', 'rival - race: ', 'rival - race: '].sort(),
    );
  });
});
