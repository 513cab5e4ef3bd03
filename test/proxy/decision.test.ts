import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import {
  allowAll,
  type Decide,
  type DecisionContext,
  type ResultTransform,
} from '../../src/policy/decision.ts';
import { decodeBackend, encodeBackend } from '../../src/protocol/postgres/codec.ts';
import { Code } from '../../src/protocol/postgres/messages.ts';
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

  /** Upper-cases every non-NULL value of every DataRow: a stand-in for masking that is easy to check. */
  const upperCase: ResultTransform = {
    message(type, frame) {
      if (type !== Code.DataRow) return frame;
      const row = decodeBackend(type, frame.subarray(5));
      if (row.type !== 'DataRow') return frame;
      const values = row.values.map((value) =>
        value === null ? null : Buffer.from(value.toString().toUpperCase()),
      );
      return encodeBackend({ type: 'DataRow', values });
    },
  };

  // A test decision: records every context, refuses statements that mention "forbidden", fails on "explode",
  // and transforms the results of statements marked /* upper */.
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
    const transforms =
      context.sql?.includes('/* upper */') && (context.source === 'query' || context.source === 'bind');
    return { ...allowAll(context), transform: transforms ? upperCase : null };
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

  it('sees every Query, Parse and Bind with identity, target and statement text (an Execute runs what its Bind was judged for)', async () => {
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

  it('rewrites the results of a statement whose decision carries a transform, and only those', async () => {
    const client = new pg.Client(warden.pgConfig('etl'));
    await client.connect();
    const plain = await client.query("SELECT 'quiet' AS word, NULL::text AS nothing");
    const upper = await client.query("/* upper */ SELECT 'loud' AS word, NULL::text AS nothing");
    const extended = await client.query('/* upper */ SELECT $1::text AS word', ['bound']);
    const after = await client.query('SELECT $1::text AS word', ['calm']);
    assert.deepEqual(plain.rows, [{ word: 'quiet', nothing: null }]);
    assert.deepEqual(upper.rows, [{ word: 'LOUD', nothing: null }]);
    assert.deepEqual(extended.rows, [{ word: 'BOUND' }]);
    assert.deepEqual(after.rows, [{ word: 'calm' }]);
    await client.end();
  });

  it('switches between forwarding and transforming inside one pipelined stream, group by group', async () => {
    const client = await RawClient.login(warden.port, 'etl', database.name, warden.keys.etl!);
    client.send(
      { type: 'Query', sql: "SELECT 'a' || g FROM generate_series(1, 20000) g" },
      { type: 'Query', sql: "/* upper */ SELECT 'b' || g FROM generate_series(1, 20000) g" },
      { type: 'Query', sql: "SELECT 'c' || g FROM generate_series(1, 20000) g" },
      { type: 'Query', sql: "/* upper */ SELECT 'd' || g FROM generate_series(1, 3) g" },
    );
    const groups = [];
    for (let i = 0; i < 4; i++) groups.push(await client.untilReady());
    client.close();
    const values = groups.map((messages) =>
      messages.flatMap((m) => (m.type === 'DataRow' ? [m.values[0]!.toString()] : [])),
    );
    assert.deepEqual(
      values[0],
      Array.from({ length: 20000 }, (_, i) => `a${i + 1}`),
    );
    assert.deepEqual(
      values[1],
      Array.from({ length: 20000 }, (_, i) => `B${i + 1}`),
    );
    assert.deepEqual(
      values[2],
      Array.from({ length: 20000 }, (_, i) => `c${i + 1}`),
    );
    assert.deepEqual(values[3], ['D1', 'D2', 'D3']);
    assert.ok(groups.every((messages) => messages.at(-1)?.type === 'ReadyForQuery'));
  });

  it('refuses an extended-protocol statement in-band; the implicit transaction rolls back and the session goes on', async () => {
    const client = new pg.Client(warden.pgConfig('etl'));
    await client.connect();
    await client.query('CREATE TABLE extended_probe (note text)');
    await assert.rejects(client.query('INSERT INTO extended_probe VALUES ($1) -- forbidden', ['x']), {
      code: '42501',
      message: 'forbidden by the test rule',
    });
    assert.equal((await client.query('SELECT count(*)::int AS n FROM extended_probe')).rows[0].n, 0);
    await client.end();
  });

  it('fails the transaction block on the server too when a statement inside it is refused', async () => {
    const client = await RawClient.login(warden.port, 'etl', database.name, warden.keys.etl!);
    client.send(
      { type: 'Query', sql: 'BEGIN' },
      { type: 'Query', sql: "SELECT 'forbidden'" },
      { type: 'Query', sql: 'ROLLBACK' },
    );
    const statuses = [];
    for (let i = 0; i < 3; i++) {
      const last = (await client.untilReady()).at(-1);
      statuses.push(last?.type === 'ReadyForQuery' ? last.status : '?');
    }
    client.close();
    assert.deepEqual(statuses, ['T', 'E', 'I']);
  });
});
