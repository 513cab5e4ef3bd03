import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { allowAll, type Decide, type DecisionContext } from '../../src/policy/decision.ts';
import {
  createTestDatabase,
  findTestServer,
  type TestDatabase,
  type TestServer,
} from '../fixtures/postgres.ts';
import { RawClient } from './raw-client.ts';
import { startWarden, type WardenHandle } from './support.ts';

describe('the decision point', { timeout: 120_000 }, () => {
  let upstream: TestServer;
  let database: TestDatabase;
  let warden: WardenHandle;
  const seen: DecisionContext[] = [];

  // A test decision: records every context, refuses statements that mention "forbidden", and fails on "explode".
  const decide: Decide = (context) => {
    seen.push(context);
    if (context.sql?.includes('explode')) throw new Error('the policy store is down');
    if (context.sql?.includes('forbidden')) {
      return {
        ...allowAll(context),
        action: 'deny',
        sqlstate: '42501',
        message: 'forbidden by the test rule',
        hint: 'ask',
      };
    }
    return allowAll(context);
  };

  before(async () => {
    upstream = await findTestServer();
    database = await createTestDatabase(upstream, 'decision');
    warden = await startWarden({ upstream, database: database.name, decide });
  });

  after(async () => {
    await warden?.close();
    await database?.drop();
    await upstream?.close();
  });

  it('sees every Query, Parse, Bind and Execute with identity, target and statement text', async () => {
    const client = new pg.Client({
      ...warden.pgConfig('alice'),
      application_name: 'reports',
    } as pg.ClientConfig);
    await client.connect();
    seen.length = 0;
    await client.query('SELECT 1');
    await client.query({ name: 'named', text: 'SELECT $1::int AS v', values: [5] });
    await client.end();
    assert.deepEqual(
      seen.map((c) => [
        c.source,
        c.sql,
        c.name,
        c.session.identity.name,
        c.session.target.name,
        c.session.applicationName,
      ]),
      [
        ['query', 'SELECT 1', undefined, 'alice', database.name, 'reports'],
        ['parse', 'SELECT $1::int AS v', 'named', 'alice', database.name, 'reports'],
        ['bind', 'SELECT $1::int AS v', 'named', 'alice', database.name, 'reports'],
        ['execute', 'SELECT $1::int AS v', '', 'alice', database.name, 'reports'],
      ],
    );
  });

  it('judges startup settings as SET statements', async () => {
    seen.length = 0;
    const client = new pg.Client({
      ...warden.pgConfig('etl'),
      options: '-c search_path=public',
    } as pg.ClientConfig);
    await client.connect();
    await client.end();
    assert.deepEqual(
      seen.filter((c) => c.source === 'startup-option').map((c) => c.sql),
      // node-postgres also sends client_encoding at startup.
      ["SET search_path = 'public'", "SET client_encoding = 'UTF8'"],
    );
  });

  it("queues Warden's own error behind the results of pipelined queries already forwarded", async () => {
    const client = await RawClient.login(warden.port, 'etl', database.name, warden.keys.etl!);
    client.send(
      { type: 'Query', sql: "SELECT pg_sleep(0.2), 'first'" },
      { type: 'Query', sql: "SELECT 'forbidden'" },
      { type: 'Query', sql: "SELECT 'third'" },
    );
    const replies = [await client.untilReady(), await client.untilReady(), await client.untilReady()];
    client.close();
    const summary = replies.map((messages) =>
      messages.map((m) =>
        m.type === 'DataRow'
          ? `row:${m.values.at(-1)}`
          : m.type === 'ErrorResponse'
            ? `error:${m.fields.C}`
            : m.type,
      ),
    );
    assert.deepEqual(summary, [
      ['RowDescription', 'row:first', 'CommandComplete', 'ReadyForQuery'],
      ['error:42501', 'ReadyForQuery'],
      ['RowDescription', 'row:third', 'CommandComplete', 'ReadyForQuery'],
    ]);
  });

  it('never forwards a denied Query, and the session goes on', async () => {
    const client = new pg.Client(warden.pgConfig('etl'));
    await client.connect();
    await client.query('CREATE TABLE audit_probe (note text)');
    await assert.rejects(client.query("INSERT INTO audit_probe VALUES ('forbidden')"), {
      code: '42501',
      message: 'forbidden by the test rule',
    });
    const count = await client.query('SELECT count(*)::int AS n FROM audit_probe');
    assert.equal(count.rows[0].n, 0);
    await client.end();
  });

  it('fails closed: a decision that throws denies the statement with the reason', async () => {
    const client = new pg.Client(warden.pgConfig('etl'));
    await client.connect();
    await assert.rejects(client.query("SELECT 'explode'"), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'XX000');
      assert.match(error.message, /could not judge this statement: the policy store is down/);
      return true;
    });
    assert.equal((await client.query('SELECT 1 AS ok')).rows[0].ok, 1);
    await client.end();
  });
});
