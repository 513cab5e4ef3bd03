import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { parse } from 'yaml';
import { parseConfig, type TargetConfig } from '../../src/config/index.ts';
import { detect, luhnValid } from '../../src/masking/detectors.ts';
import {
  classifyColumn,
  type Discovery,
  discover,
  proposalYaml,
  SampleCounter,
} from '../../src/masking/discover.ts';
import { MaskingPolicy } from '../../src/masking/policy.ts';
import {
  clientConfig,
  createTestDatabase,
  findTestServer,
  type TestDatabase,
  type TestServer,
} from '../fixtures/postgres.ts';
import { run } from '../proxy/support.ts';

const ROWS = 60;

/** The 16-digit number `4…` whose last digit makes it Luhn valid (`valid`) or not. */
function cardLike(index: number, valid: boolean): string {
  const payload = `4${String(index * 7_919_113 + 1_234_567).padStart(14, '0')}`;
  const check = [...'0123456789'].find((digit) => luhnValid(payload + digit))!;
  return payload + (valid ? check : String((Number(check) + 1) % 10));
}

const emails = Array.from({ length: ROWS }, (_, i) => `person${i}.contact@mail${i % 7}.example.org`);
const cards = Array.from({ length: ROWS }, (_, i) => cardLike(i, true));
const orderCodes = Array.from({ length: ROWS }, (_, i) => cardLike(i + 1000, false));
const notes = Array.from({ length: ROWS }, (_, i) =>
  i % 10 === 0
    ? `customer wrote from note${i}@example.net, call back tomorrow`
    : `delivery ${i} arrived in good order`,
);
const jsonEmails = Array.from({ length: ROWS }, (_, i) => `json${i}@example.com`);
const oddEmails = Array.from({ length: 10 }, (_, i) => `odd${i}@odd.example.org`);

/** Every value the seed writes that a finding could come from: none may appear in a proposal. */
const SAMPLED = [...emails, ...cards, ...orderCodes, ...notes, ...jsonEmails, ...oddEmails];

const ODD = { schema: 'odd.schema "x"', table: 'we"ird* t?ble', column: 'mail "box"*' } as const;
const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** Placeholders for every value: the seed's text holds none of them, so SQL errors cannot echo one. */
function insert(table: string, columns: readonly string[], rows: readonly (readonly unknown[])[]) {
  const values = rows.map((row, r) => `(${row.map((_, c) => `$${r * columns.length + c + 1}`).join(', ')})`);
  return {
    text: `INSERT INTO ${table} (${columns.join(', ')}) VALUES ${values.join(', ')}`,
    values: rows.flat(),
  };
}

/** schema, table, column → class: what the seed's columns must be proposed as, and nothing else. */
const EXPECTED: readonly (readonly [string, string, string, string])[] = [
  ['crm', 'people', 'contact_info', 'email'],
  ['crm', 'people', 'contact_json', 'email'],
  ['crm', 'people', 'dob', 'date_of_birth'],
  ['crm', 'people', 'email', 'email'],
  ['crm', 'people', 'notes', 'free_text'],
  ['crm', 'people', 'ref', 'card'],
  [ODD.schema, ODD.table, ODD.column, 'email'],
];

const sorted = (rows: readonly (readonly string[])[]) =>
  [...rows].sort((a, b) => a.join('.').localeCompare(b.join('.')));
const proposed = (discovery: Discovery) =>
  sorted(discovery.columns.map((column) => [column.schema, column.table, column.column, column.maskClass]));

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

describe('content and name classify a column', { timeout: 10_000 }, () => {
  const sampleOf = (values: readonly (string | null)[]) => {
    const counter = new SampleCounter();
    for (const value of values) counter.add(value);
    return counter.result;
  };

  it('a majority of whole findings of one kind gives that kind’s class, whatever the name', () => {
    const sample = sampleOf(['a@example.org', 'b@example.org', 'not an address', null, '   ']);
    assert.equal(sample.values, 3, 'NULL and blank values are not counted');
    assert.deepEqual(classifyColumn('contact_info', sample), {
      maskClass: 'email',
      basis: 'content',
      kind: 'email',
    });
  });

  it('findings inside text make free text from 1 value in 20, and not below', () => {
    const prose = (withEmail: number, of: number) =>
      sampleOf(
        Array.from({ length: of }, (_, i) => (i < withEmail ? `mail x${i}@example.org today` : 'fine')),
      );
    assert.equal(classifyColumn('notes', prose(1, 20))?.maskClass, 'free_text');
    assert.equal(classifyColumn('notes', prose(1, 21)), undefined);
  });

  it('a name the heuristics know classifies a column without values, and comes before free text', () => {
    assert.deepEqual(classifyColumn('email', sampleOf([])), { maskClass: 'email', basis: 'name' });
    assert.deepEqual(classifyColumn('dob', undefined), { maskClass: 'date_of_birth', basis: 'name' });
    assert.equal(classifyColumn('label', undefined), undefined);
    assert.deepEqual(classifyColumn('address', sampleOf(['call 555-123-4567', 'Main St'])), {
      maskClass: 'address',
      basis: 'name',
    });
  });

  it('digit runs that fail the Luhn check are not cards', () => {
    for (const code of orderCodes) assert.deepEqual(detect(code), [], code);
    assert.equal(classifyColumn('order_code', sampleOf(orderCodes)), undefined);
  });
});

describe('warden discover', { timeout: 120_000 }, () => {
  let upstream: TestServer;
  let database: TestDatabase;
  let dir: string;
  let configFile: string;
  let configText: string;
  let target: TargetConfig;
  let downPort: number;

  before(async () => {
    upstream = await findTestServer();
    database = await createTestDatabase(upstream, 'discover');
    const client = new pg.Client(clientConfig(upstream, database.name));
    await client.connect();
    try {
      await client.query(`
        CREATE SCHEMA crm;
        CREATE TABLE crm.people (
          id int PRIMARY KEY, contact_info text, ref varchar(32), order_code text, notes text,
          email text, contact_json jsonb, city text, dob date
        );
        CREATE TABLE public.plain (id int, label text);
        INSERT INTO public.plain VALUES (1, 'nothing to see'), (2, 'still nothing');
        CREATE SCHEMA ${quote(ODD.schema)};
        CREATE TABLE ${quote(ODD.schema)}.${quote(ODD.table)} (${quote(ODD.column)} text);`);
      await client.query(
        insert(
          'crm.people',
          ['id', 'contact_info', 'ref', 'order_code', 'notes', 'contact_json', 'city', 'dob'],
          emails.map((email, i) => [
            i,
            email,
            cards[i],
            orderCodes[i],
            notes[i],
            JSON.stringify(jsonEmails[i]),
            'Lisbon',
            '1990-01-02',
          ]),
        ),
      );
      await client.query(
        insert(
          `${quote(ODD.schema)}.${quote(ODD.table)}`,
          [quote(ODD.column)],
          oddEmails.map((email) => [email]),
        ),
      );
    } finally {
      await client.end();
    }
    dir = mkdtempSync(join(tmpdir(), 'warden-discover-'));
    configFile = join(dir, 'warden.yaml');
    downPort = await freePort();
    const password =
      upstream.password === undefined ? '' : `\n    password: ${JSON.stringify(upstream.password)}`;
    configText = `dataDir: ./data
targets:
  - name: ${database.name}
    host: ${upstream.host}
    port: ${upstream.port}
    user: ${JSON.stringify(upstream.user)}${password}
    tls: { mode: disable }
    access: { kinds: [service] }
  - name: down
    host: 127.0.0.1
    port: ${downPort}
    user: nobody
    tls: { mode: disable }
    access: { kinds: [service] }
`;
    writeFileSync(configFile, configText);
    target = parseConfig(configText, configFile).targets[0]!;
  });

  after(async () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    await database?.drop();
    await upstream?.close();
  });

  const warden = (args: string[]) =>
    run(process.execPath, ['bin/warden.js', ...args], { env: { HOME: process.env.HOME } });

  it('proposes the columns whose values or names say they are private, and no other', async () => {
    const discovery = await discover(target);
    assert.deepEqual(proposed(discovery), sorted(EXPECTED));
    assert.equal(discovery.tables, 3);
    const byColumn = new Map(discovery.columns.map((column) => [column.column, column]));
    assert.equal(byColumn.get('contact_info')?.sample?.whole.email, ROWS);
    assert.equal(byColumn.get('ref')?.basis, 'content');
    assert.equal(byColumn.get('email')?.basis, 'name');
    assert.equal(byColumn.get('email')?.sample?.values, 0);
    assert.equal(byColumn.get('notes')?.sample?.withFindings, ROWS / 10);
  });

  it('samples at most the rows asked for, per table', async () => {
    const discovery = await discover(target, { sampleRows: 10 });
    const contact = discovery.columns.find((column) => column.column === 'contact_info');
    assert.equal(contact?.sample?.values, 10);
  });

  it('writes a YAML list that the config loader accepts under masking.columns and that classifies each column', async () => {
    const text = proposalYaml(await discover(target));
    assert.match(text, /^# Proposed masking classification/);
    assert.match(text, /proposal for a person to review/);
    assert.match(text, /paste the list under `masking.columns`/);
    assert.match(text, /# 60 of 60 sampled values look like email addresses\n- \{ target: /);
    assert.match(text, /# 60 of 60 sampled values look like card numbers\n/);
    assert.match(text, /# column name; no values in the sample\n/);
    assert.match(text, /# 6 of 60 sampled values contain findings \(email 6\)\n/);
    const entries = parse(text) as { target: string; table: string; column: string; class: string }[];
    assert.equal(entries.length, EXPECTED.length);
    for (const entry of entries) assert.deepEqual(Object.keys(entry), ['target', 'table', 'column', 'class']);
    assert.ok(entries.some((entry) => entry.table === 'odd?schema "x".we"ird? t?ble'));

    const pasted = `${configText}masking:\n  heuristics: false\n  columns:\n${text.replace(/^/gm, '    ')}`;
    const config = parseConfig(pasted, configFile);
    assert.equal(config.masking.columns.length, EXPECTED.length);
    const policy = new MaskingPolicy(config.masking, Buffer.alloc(32));
    const classOf = (schema: string, table: string, column: string) =>
      policy.classOf(database.name, schema, table, column);
    for (const [schema, table, column, maskClass] of EXPECTED) {
      assert.equal(classOf(schema, table, column), maskClass, `${schema}.${table}.${column}`);
    }
    for (const column of ['id', 'order_code', 'city'])
      assert.equal(classOf('crm', 'people', column), undefined);
    assert.equal(classOf('public', 'plain', 'label'), undefined);
  });

  it('never writes a sampled value', async () => {
    const text = proposalYaml(await discover(target));
    for (const value of SAMPLED) assert.ok(!text.includes(value), `the proposal shows ${value}`);
    assert.ok(!text.includes('example.'), 'no part of an address either');
  });

  it('runs as `warden discover --out FILE`, and prints to stdout without --out', async () => {
    const out = join(dir, 'proposal.yaml');
    const result = await warden([
      'discover',
      '--target',
      database.name,
      '--config',
      configFile,
      '--out',
      out,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /proposed 7 columns from 3 tables/);
    const written = readFileSync(out, 'utf8');
    assert.equal(written, proposalYaml(await discover(target)));
    for (const value of SAMPLED) assert.ok(!written.includes(value), `the file shows ${value}`);

    const printed = await warden(['discover', '-t', database.name, '-c', configFile, '--sample', '5']);
    assert.equal(printed.code, 0, printed.stderr);
    assert.match(printed.stdout, /^# Proposed masking classification/);
    assert.match(printed.stdout, /Sampled up to 5 rows of each of 3 tables/);
    assert.match(printed.stdout, /# 5 of 5 sampled values look like email addresses/);
  });

  it('refuses an unknown target, an unreachable one and a bad --sample in one line each', async () => {
    const unknown = await warden(['discover', '--target', 'nope', '--config', configFile]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /^warden: no target "nope" in .*known: .*down\)/);
    assert.equal(unknown.stderr.trim().split('\n').length, 1, unknown.stderr);

    const down = await warden(['discover', '--target', 'down', '--config', configFile]);
    assert.equal(down.code, 1);
    assert.match(
      down.stderr,
      new RegExp(`^warden: cannot reach target "down" \\(127\\.0\\.0\\.1:${downPort}\\)`),
    );
    assert.equal(down.stderr.trim().split('\n').length, 1, down.stderr);
    assert.equal(down.stdout, '');

    const bad = await warden([
      'discover',
      '--target',
      database.name,
      '--config',
      configFile,
      '--sample',
      '0',
    ]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^warden: --sample must be a whole number of rows from 1 to/);
  });
});
