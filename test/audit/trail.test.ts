/**
 * The audit trail through real clients: a real Warden in front of the test
 * PostgreSQL records every connection, failed login and statement, with the
 * decision, what ran and what masking did, in its SQLite store; the chain
 * verifies, literals are redacted, and no secret reaches the store.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { ChainVerifier } from '../../src/audit/chain.ts';
import type { AuditEvent, StatementEvent } from '../../src/audit/events.ts';
import { eventOf } from '../../src/audit/templates.ts';
import { SqliteAuditStore } from '../../src/store/sqlite-audit.ts';
import { openStore } from '../../src/store/store.ts';
import { connectError, seededWarden } from '../proxy/support.ts';

const SEED = `
CREATE TABLE customers (id int PRIMARY KEY, name text, email text, plan text);
INSERT INTO customers VALUES (1, 'Ada', 'ada@example.com', 'pro'), (2, 'Bob', 'bob@example.com', 'free');
CREATE TABLE orders (id int, customer int, total numeric);
`;

const POLICY = `
policy:
  rules:
    - name: no-payroll
      match: { tables: [payroll] }
      action: deny
      message: payroll is off limits
masking:
  key: audit-test-masking-key-0123456789
  columns:
    - { table: public.customers, column: email, class: email }
  unmask:
    - { identities: [etl], classes: { email: clear } }
`;

type Stored = AuditEvent & { chain: string; seq: number };

describe('the audit trail, through real clients', { timeout: 120_000 }, () => {
  const env = seededWarden('audit_trail', SEED, POLICY);
  let events: Stored[];
  let store: ReturnType<typeof openStore>;

  async function trail(): Promise<Stored[]> {
    await env.warden.server.audit!.flush();
    const audit = new SqliteAuditStore(store.db);
    const out: Stored[] = [];
    for await (const record of audit.events({})) out.push(eventOf(record) as unknown as Stored);
    return out;
  }

  const statements = (where: (event: StatementEvent) => boolean) =>
    events.filter((event): event is Stored & StatementEvent => event.type === 'statement' && where(event));

  before(async () => {
    store = openStore(env.warden.config.dataDir);
    const { warden } = env;
    const alice = new pg.Client(warden.pgConfig('alice', { application_name: 'billing-report' }));
    await alice.connect();
    await alice.query("SELECT name, email FROM customers WHERE name = 'Ada' AND id = 1");
    await alice.query('INSERT INTO orders VALUES ($1, $2, $3)', [7, 1, '99.95']);
    await alice.query(
      "/* pipeline='nightly_etl',route='%2Freports' */ UPDATE orders SET total = total + 1 WHERE id = 7",
    );
    await assert.rejects(alice.query('SELECT 1 / 0'), { code: '22012' });
    await assert.rejects(alice.query('SELECT * FROM payroll WHERE id = 3'), { code: '42501' });
    await alice.end();

    const etl = new pg.Client(warden.pgConfig('etl', { options: '-c warden.pipeline=orders_sync' }));
    await etl.connect();
    await etl.query("/* pipeline='ignored' */ SELECT email FROM customers ORDER BY id");
    await etl.end();

    const wrong = await connectError(warden.pgConfig('alice', { password: 'wdn_not_a_real_key' }));
    assert.equal(wrong.code, '28P01');
    events = await trail();
  });

  after(() => store?.close());

  it('records each connection with who, from where, how and for which pipeline', () => {
    const opened = events.filter((event) => event.type === 'connection.open');
    const alice = opened.find((event) => event.identity === 'alice');
    assert.ok(alice && alice.type === 'connection.open');
    assert.equal(alice.kind, 'human');
    assert.deepEqual(alice.groups, ['analysts']);
    assert.equal(alice.client, '127.0.0.1');
    assert.equal(alice.tls, false);
    assert.equal(alice.target, env.database.name);
    assert.equal(alice.applicationName, 'billing-report');
    assert.equal(alice.pipeline, 'billing-report');
    const etl = opened.find((event) => event.identity === 'etl');
    assert.ok(etl && etl.type === 'connection.open');
    assert.equal(etl.pipeline, 'orders_sync', 'the startup option names the pipeline');

    const closed = events.find((event) => event.type === 'connection.close' && event.identity === 'alice');
    assert.ok(closed && closed.type === 'connection.close');
    assert.equal(closed.session, alice.session);
    assert.equal(closed.statements, 5);
  });

  it('records a failed login with the name claimed and why', () => {
    const failed = events.filter((event) => event.type === 'login.failed');
    assert.equal(failed.length, 1);
    const [login] = failed;
    assert.ok(login && login.type === 'login.failed');
    assert.equal(login.identity, 'alice');
    assert.equal(login.sqlstate, '28P01');
    assert.equal(login.client, '127.0.0.1');
  });

  it('records statements with literals redacted, tables, decision, rows and duration', () => {
    const [select] = statements((event) => event.text?.startsWith('SELECT name, email') === true);
    assert.ok(select, 'the SELECT is recorded');
    assert.equal(select.text, "SELECT name, email FROM customers WHERE name = '?' AND id = ?");
    assert.equal(select.identity, 'alice');
    assert.equal(select.decision, 'allow');
    assert.equal(select.outcome, 'ok');
    assert.equal(select.rows, 1);
    assert.deepEqual(select.tables, [{ table: 'customers', operation: 'select' }]);
    assert.deepEqual(select.kinds, ['read']);
    assert.match(select.fingerprint ?? '', /^[0-9a-f]{16}$/);
    assert.ok(select.durationMs >= 0);
    assert.equal(select.pipeline, 'billing-report');

    // Extended protocol: recorded at its Execute; Bind parameters are never read.
    const [insert] = statements((event) => event.text?.startsWith('INSERT INTO orders') === true);
    assert.ok(insert);
    assert.equal(insert.source, 'execute');
    assert.equal(insert.rows, 1);
    assert.deepEqual(insert.tables, [{ table: 'orders', operation: 'insert' }]);
    assert.ok(!JSON.stringify(events).includes('99.95'), 'a Bind parameter is not in the trail');
    assert.ok(!JSON.stringify(events).includes("'Ada'"), 'a literal is not in the trail');
  });

  it('takes the pipeline from a sqlcommenter tag, unless the session fixed it with warden.pipeline', () => {
    const [update] = statements((event) => event.text?.includes('UPDATE orders') === true);
    assert.ok(update);
    assert.equal(update.pipeline, 'nightly_etl');
    assert.deepEqual(update.tags, { pipeline: 'nightly_etl', route: '/reports' });
    assert.equal(update.rows, 1);
    const [etl] = statements((event) => event.identity === 'etl');
    assert.ok(etl);
    assert.equal(etl.pipeline, 'orders_sync');
  });

  it("records a server error's SQLSTATE and a refusal's rule", () => {
    const [division] = statements((event) => event.text === 'SELECT ? / ?');
    assert.ok(division);
    assert.equal(division.outcome, 'error');
    assert.equal(division.sqlstate, '22012');
    const [refused] = statements((event) => event.text === 'SELECT * FROM payroll WHERE id = ?');
    assert.ok(refused);
    assert.equal(refused.decision, 'deny');
    assert.equal(refused.outcome, 'error');
    assert.equal(refused.sqlstate, '42501');
    assert.equal(refused.rule, 'no-payroll');
    assert.deepEqual(refused.matched, [{ rule: 'no-payroll', action: 'deny' }]);
    assert.deepEqual(refused.tables, [{ table: 'payroll', operation: 'select' }]);
  });

  it('records which columns were masked and how many rows, per identity', () => {
    const [aliceSelect] = statements(
      (event) => event.identity === 'alice' && event.text?.includes('email') === true,
    );
    assert.ok(aliceSelect);
    assert.deepEqual(aliceSelect.masked, ['email']);
    assert.equal(aliceSelect.maskedRows, 1);
    const [etlSelect] = statements((event) => event.identity === 'etl');
    assert.ok(etlSelect);
    assert.deepEqual(etlSelect.masked, [], 'etl sees email in clear');
    assert.equal(etlSelect.rows, 2);
  });

  it('keeps the table-access index: who touched which table, how', async () => {
    const audit = new SqliteAuditStore(store.db);
    const rows = await audit.access({ table: 'customers' });
    const alice = rows.find((row) => row.identity === 'alice');
    assert.ok(alice);
    assert.equal(alice.pipeline, 'billing-report');
    assert.equal(alice.operation, 'select');
    assert.equal(alice.statements, 1);
    assert.deepEqual(alice.masked, ['email']);
    const etl = rows.find((row) => row.identity === 'etl');
    assert.equal(etl?.pipeline, 'orders_sync');
    const orders = await audit.access({ table: 'orders', pipeline: 'nightly_etl' });
    assert.deepEqual(
      orders.map((row) => [row.identity, row.operation, row.rows]),
      [['alice', 'update', 1]],
    );
  });

  it('chains every event so that the trail verifies', async () => {
    const audit = new SqliteAuditStore(store.db);
    for (const chain of await audit.chains()) {
      const verifier = new ChainVerifier(chain);
      for await (const record of audit.chainRecords(chain)) verifier.check(record);
      assert.equal(verifier.problem, undefined);
      assert.ok(verifier.checked >= events.length);
    }
  });

  it('holds no secret: API keys, the masking key, masked values', () => {
    const bytes = readFileSync(join(env.warden.config.dataDir, 'warden.db')).toString('latin1');
    const wal = (() => {
      try {
        return readFileSync(join(env.warden.config.dataDir, 'warden.db-wal')).toString('latin1');
      } catch {
        return '';
      }
    })();
    for (const secret of [
      ...Object.values(env.warden.keys),
      'audit-test-masking-key',
      'ada@example.com',
      'wdn_not_a_real_key',
    ]) {
      assert.ok(!bytes.includes(secret) && !wal.includes(secret), `the store holds ${secret.slice(0, 12)}…`);
    }
  });
});
