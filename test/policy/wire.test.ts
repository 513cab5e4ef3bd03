/**
 * A refused statement must leave the session exactly as PostgreSQL leaves it
 * after a statement that fails. The oracle is PostgreSQL itself: every
 * scenario runs twice with the same messages, once through Warden with a
 * statement its policy refuses (it reads `secrets`), once directly against
 * the server with a statement that fails there (it reads a table that does
 * not exist). The replies must match message for message, transaction
 * status included, apart from the two error codes; and so must what was
 * committed.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import pg from 'pg';
import type { BackendMessage, FrontendMessage } from '../../src/protocol/postgres/messages.ts';
import {
  clientConfig,
  createTestDatabase,
  findTestServer,
  type TestDatabase,
  type TestServer,
} from '../fixtures/postgres.ts';
import { RawClient } from '../proxy/raw-client.ts';
import { startWarden, type WardenHandle } from '../proxy/support.ts';

const REFUSED = 'SELECT * FROM secrets';
const FAILING = 'SELECT * FROM missing_table';
/** In a scenario: wait for the replies so far before sending what follows. */
const WAIT = Symbol('wait');
/** Stands for the refused statement in a scenario; each side substitutes its own. */
const X = '\u0000X';

type Step = FrontendMessage;
const q = (sql: string): Step => ({ type: 'Query', sql });
const parse = (sql: string, name = ''): Step => ({ type: 'Parse', name, sql, parameterTypes: [] });
const bind = (statement = '', portal = '', parameters: (string | null)[] = []): Step => ({
  type: 'Bind',
  portal,
  statement,
  parameterFormats: [],
  parameters: parameters.map((p) => (p === null ? null : Buffer.from(p))),
  resultFormats: [],
});
const execute = (portal = '', maxRows = 0): Step => ({ type: 'Execute', portal, maxRows });
const describeStatement = (name = ''): Step => ({ type: 'Describe', target: 'S', name });
const sync: Step = { type: 'Sync' };

/** One line per message: enough to compare flows, without values that differ run to run. */
function summary(messages: readonly BackendMessage[]): string[] {
  return messages.map((m) => {
    switch (m.type) {
      case 'ErrorResponse':
        return `E:${m.fields.C === '42501' || m.fields.C === '42P01' ? 'refused' : m.fields.C}`;
      case 'CommandComplete':
        return `C:${m.tag}`;
      case 'ReadyForQuery':
        return `Z:${m.status}`;
      default:
        return m.type;
    }
  });
}

describe('refusals on the wire, against PostgreSQL as the oracle', { timeout: 120_000 }, () => {
  let upstream: TestServer;
  let database: TestDatabase;
  let warden: WardenHandle;
  let admin: pg.Client;

  before(async () => {
    upstream = await findTestServer();
    database = await createTestDatabase(upstream, 'wire');
    admin = new pg.Client(clientConfig(upstream, database.name));
    await admin.connect();
    await admin.query('CREATE TABLE t (id int); CREATE TABLE secrets (x int)');
    warden = await startWarden({
      upstream,
      database: database.name,
      policy: `
policy:
  rules:
    - name: no-secrets
      match: { tables: [secrets] }
      action: deny
      message: secrets are off limits
`,
    });
  });

  after(async () => {
    await admin?.end();
    await warden?.close();
    await database?.drop();
    await upstream?.close();
  });

  beforeEach(async () => {
    await admin.query('TRUNCATE t');
  });

  /** Runs the steps on one side; reads until `readies` ReadyForQuery; returns the replies and t's rows. */
  async function side(
    client: RawClient,
    allSteps: readonly (Step | typeof WAIT)[],
    readies: number,
    statement: string,
  ) {
    const swap = (sql: string) => sql.replaceAll(X, statement);
    const replies: BackendMessage[] = [];
    let seen = 0;
    const rounds: Step[][] = [[]];
    for (const step of allSteps) {
      if (step === WAIT) rounds.push([]);
      else rounds.at(-1)!.push(step);
    }
    for (const [index, steps] of rounds.entries()) {
      const last = index === rounds.length - 1;
      send(steps);
      // Wait for every ReadyForQuery the round produces (the last round: all that remain).
      const expected = last
        ? readies - seen
        : steps.filter((s) => s.type === 'Sync' || s.type === 'Query').length;
      for (let i = 0; i < expected; i++) replies.push(...(await client.untilReady()));
      seen += expected;
    }
    client.close();
    const rows = (await admin.query('SELECT id FROM t ORDER BY id')).rows.map((r) => r.id as number);
    await admin.query('TRUNCATE t');
    return { replies: summary(replies), rows };

    function send(steps: Step[]) {
      client.send(
        ...steps.map((step) =>
          step.type === 'Query'
            ? { ...step, sql: swap(step.sql) }
            : step.type === 'Parse'
              ? { ...step, sql: swap(step.sql) }
              : step,
        ),
      );
    }
  }

  /** Steps sent in rounds: each round waits for its replies before the next is sent. */
  async function compare(steps: readonly (Step | typeof WAIT)[], readies: number, expected?: string[]) {
    const direct = await side(
      await RawClient.login(upstream.port, upstream.user, database.name, upstream.password ?? ''),
      steps,
      readies,
      FAILING,
    );
    const through = await side(
      await RawClient.login(warden.port, 'etl', database.name, warden.keys.etl!),
      steps,
      readies,
      REFUSED,
    );
    assert.deepEqual(through, direct);
    if (expected) assert.deepEqual(through.replies, expected);
    return through;
  }

  it('a refused Query inside a transaction block fails it on the server too: COMMIT rolls back', async () => {
    const { rows } = await compare(
      [q('BEGIN'), q('INSERT INTO t VALUES (1)'), q(X), q('SELECT 1'), q('COMMIT')],
      5,
      ['C:BEGIN', 'Z:T', 'C:INSERT 0 1', 'Z:T', 'E:refused', 'Z:E', 'E:25P02', 'Z:E', 'C:ROLLBACK', 'Z:I'],
    );
    assert.deepEqual(rows, []);
  });

  it('a refused Parse in a pipeline: error, discard until Sync, the implicit transaction rolls back', async () => {
    await compare(
      [
        parse('INSERT INTO t VALUES (1)'),
        bind(),
        execute(),
        parse(X),
        bind(),
        execute(),
        parse('INSERT INTO t VALUES (2)', 'later'),
        sync,
        q('SELECT 1'),
      ],
      2,
      [
        'ParseComplete',
        'BindComplete',
        'C:INSERT 0 1',
        'E:refused',
        'Z:I',
        'RowDescription',
        'DataRow',
        'C:SELECT 1',
        'Z:I',
      ],
    );
  });

  it('a refused Parse inside a transaction block leaves it failed until ROLLBACK', async () => {
    await compare(
      [q('BEGIN'), parse('INSERT INTO t VALUES (1)'), bind(), execute(), parse(X), sync, q('COMMIT')],
      3,
      [
        'C:BEGIN',
        'Z:T',
        'ParseComplete',
        'BindComplete',
        'C:INSERT 0 1',
        'E:refused',
        'Z:E',
        'C:ROLLBACK',
        'Z:I',
      ],
    );
  });

  it('statements named by a refused Parse do not exist later (26000), and what followed it was never parsed', async () => {
    await compare(
      [
        parse(X, 'bad'),
        parse('INSERT INTO t VALUES (1)', 'skipped'),
        sync,
        bind('bad'),
        execute(),
        sync,
        describeStatement('bad'),
        sync,
        bind('skipped'),
        execute(),
        sync,
      ],
      4,
      ['E:refused', 'Z:I', 'E:26000', 'Z:I', 'E:26000', 'Z:I', 'E:26000', 'Z:I'],
    );
  });

  it('a refused unnamed Parse drops the previous unnamed statement, as a failed one does', async () => {
    await compare([parse('INSERT INTO t VALUES (1)'), sync, parse(X), sync, bind(), execute(), sync], 3, [
      'ParseComplete',
      'Z:I',
      'E:refused',
      'Z:I',
      'E:26000',
      'Z:I',
    ]);
  });

  it('a refused Query while an extended batch is open rolls that batch back, in order', async () => {
    await compare(
      [parse('INSERT INTO t VALUES (1)'), bind(), execute(), q(X), q('SELECT count(*) FROM t')],
      2,
      [
        'ParseComplete',
        'BindComplete',
        'C:INSERT 0 1',
        'E:refused',
        'Z:I',
        'RowDescription',
        'DataRow',
        'C:SELECT 1',
        'Z:I',
      ],
    );
  });

  it('when the server fails first, only its error is seen: the refused message would never have run', async () => {
    await compare(
      [parse('SELECT 1/0'), bind(), execute(), parse(X), bind(), execute(), sync],
      1,
      ['ParseComplete', 'E:22012', 'Z:I'], // 1/0 is folded while planning, at Bind
    );
  });

  it('a Query after a failed batch without Sync is discarded by both, refused or not', async () => {
    await compare([parse('SELECT 1/0'), bind(), execute(), q(X), q('SELECT 1'), sync], 1, [
      'ParseComplete',
      'E:22012',
      'Z:I',
    ]);
  });

  it("follows libpq's extended COPY (a Sync before the data and one after) and refuses what comes next in order", async () => {
    await compare(
      [
        parse('COPY t FROM STDIN'),
        bind(),
        execute(),
        sync,
        { type: 'CopyData', data: Buffer.from('1\n2\n') },
        { type: 'CopyDone' },
        sync,
        q(X),
        q('SELECT count(*) FROM t'),
      ],
      3,
      [
        'ParseComplete',
        'BindComplete',
        'CopyInResponse',
        'C:COPY 2',
        'Z:I',
        'E:refused',
        'Z:I',
        'RowDescription',
        'DataRow',
        'C:SELECT 1',
        'Z:I',
      ],
    );
  });

  it('a portal suspended by a row limit, then a refusal in the same transaction', async () => {
    await compare(
      [
        q('BEGIN'),
        parse('SELECT g FROM generate_series(1, 5) g'),
        bind(),
        execute('', 2),
        execute('', 2),
        parse(X),
        sync,
        q('ROLLBACK'),
      ],
      3,
      [
        'C:BEGIN',
        'Z:T',
        'ParseComplete',
        'BindComplete',
        'DataRow',
        'DataRow',
        'PortalSuspended',
        'DataRow',
        'DataRow',
        'PortalSuspended',
        'E:refused',
        'Z:E',
        'C:ROLLBACK',
        'Z:I',
      ],
    );
  });

  it('answers a duplicate statement name (42P05) and an unknown portal (34000) as the server does', async () => {
    await compare(
      [
        parse('SELECT 1', 's'),
        sync,
        parse('SELECT 2', 's'),
        sync,
        execute('nowhere'),
        sync,
        bind('s'),
        execute(),
        sync,
      ],
      4,
      [
        'ParseComplete',
        'Z:I',
        'E:42P05',
        'Z:I',
        'E:34000',
        'Z:I',
        'BindComplete',
        'DataRow',
        'C:SELECT 1',
        'Z:I',
      ],
    );
  });

  it('a Close the server discarded leaves the statement: a PREPARE of its name is a duplicate, as on the server', async () => {
    await compare(
      [
        parse('SELECT 1', 's'),
        sync,
        parse('SELECT 1/0'),
        bind(),
        execute(),
        { type: 'Close', target: 'S', name: 's' },
        sync,
        WAIT,
        q('PREPARE s AS SELECT 2'),
        q('EXECUTE s'),
      ],
      4,
      [
        'ParseComplete',
        'Z:I',
        'ParseComplete',
        'E:22012',
        'Z:I',
        'E:42P05',
        'Z:I',
        'RowDescription',
        'DataRow',
        'C:SELECT 1',
        'Z:I',
      ],
    );
  });

  it('answers everything sent before a Terminate, then ends the session', async () => {
    await compare([q('INSERT INTO t VALUES (7)'), q(X), { type: 'Terminate' }], 2, [
      'C:INSERT 0 1',
      'Z:I',
      'E:refused',
      'Z:I',
    ]);
  });

  it('a portal does not outlive its transaction: a SQL cursor of the same name is not what was judged', async () => {
    const client = await RawClient.login(warden.port, 'etl', database.name, warden.keys.etl!);
    client.send(
      q('BEGIN'),
      parse('SELECT 1'),
      bind('', 'c'),
      execute('c'),
      sync,
      q('COMMIT'),
      q('BEGIN'),
      q('DECLARE c CURSOR FOR SELECT g FROM generate_series(1, 3) g'),
      execute('c'),
      sync,
      q('ROLLBACK'),
    );
    const all: BackendMessage[] = [];
    for (let i = 0; i < 7; i++) all.push(...(await client.untilReady()));
    client.close();
    assert.deepEqual(summary(all), [
      ...[
        'C:BEGIN',
        'Z:T',
        'ParseComplete',
        'BindComplete',
        'DataRow',
        'C:SELECT 1',
        'Z:T',
        'C:COMMIT',
        'Z:I',
      ],
      ...['C:BEGIN', 'Z:T', 'C:DECLARE CURSOR', 'Z:T', 'E:34000', 'Z:E', 'C:ROLLBACK', 'Z:I'],
    ]);
  });

  /** Sends the steps through Warden and reads the replies up to the second ReadyForQuery. */
  async function throughWarden(...steps: Step[]): Promise<BackendMessage[]> {
    const client = await RawClient.login(warden.port, 'etl', database.name, warden.keys.etl!);
    client.send(...steps);
    const replies = [...(await client.untilReady()), ...(await client.untilReady())];
    client.close();
    return replies;
  }

  it('a simple batch with a refused statement is refused whole: nothing in it runs', async () => {
    const replies = await throughWarden(
      q(`INSERT INTO t VALUES (1); ${REFUSED}; INSERT INTO t VALUES (2)`),
      q('SELECT count(*)::int FROM t'),
    );
    assert.deepEqual(summary(replies), [
      'E:refused',
      'Z:I',
      'RowDescription',
      'DataRow',
      'C:SELECT 1',
      'Z:I',
    ]);
    const error = replies[0]!;
    assert.ok(error.type === 'ErrorResponse');
    assert.equal(
      error.fields.M,
      'Warden refused this statement by rule "no-secrets": secrets are off limits',
    );
    assert.match(error.fields.H ?? '', /warden policy explain --identity etl/);
  });

  it('refuses SQL it cannot parse with the parser’s error and position (42601), never forwarding it', async () => {
    const replies = await throughWarden(q('SELECT 1; DELET FROM t'), parse('SELEC 1'), sync);
    assert.deepEqual(summary(replies), ['E:42601', 'Z:I', 'E:42601', 'Z:I']);
    const first = replies[0]!;
    assert.ok(first.type === 'ErrorResponse');
    assert.equal(first.fields.M, 'syntax error at or near "DELET"');
    assert.equal(first.fields.P, '11');
  });

  it('refuses a FunctionCall message (a function named by OID cannot be judged)', async () => {
    const replies = await throughWarden(
      {
        type: 'FunctionCall',
        functionOid: 1_598 /* random() */,
        argumentFormats: [],
        arguments: [],
        resultFormat: 0,
      },
      q('SELECT 1'),
    );
    assert.deepEqual(summary(replies), [
      'E:refused',
      'Z:I',
      'RowDescription',
      'DataRow',
      'C:SELECT 1',
      'Z:I',
    ]);
  });
});
