import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { hasBinary, type PgError, psql, seededWarden } from '../proxy/support.ts';

const SEED = `
CREATE TABLE customers (
  id int PRIMARY KEY, full_name text, email text, phone text, card_number text,
  ssn text, city text, dob date, score int
);
INSERT INTO customers VALUES
  (1, 'Ada Lovelace', 'ada@example.org', '+44 20 7946 0018', '4111 1111 1111 1111', '123-45-6789', 'London', '1815-12-10', 97),
  (2, 'Alan Turing', 'alan@example.org', '+44 20 7946 0412', '5500 0000 0000 0004', '219-09-9999', 'Wilmslow', '1912-06-23', 88);
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, total numeric, email text);
INSERT INTO orders VALUES (10, 1, 12.50, 'ada@example.org'), (11, 2, 99.00, 'alan@example.org');
CREATE TABLE notes (id int, body text);
INSERT INTO notes VALUES (1, 'call me: ada@example.org or card 4111 1111 1111 1111, thanks');
CREATE VIEW customer_contacts AS SELECT id, email AS contact, city FROM customers;
`;

/** Every private value of the seed: no result through Warden may contain one (for alice). */
const PRIVATE = [
  'ada@example.org',
  'alan@example.org',
  'Ada Lovelace',
  'Alan Turing',
  '4111 1111 1111 1111',
  '5500 0000 0000 0004',
  '123-45-6789',
  '219-09-9999',
  '7946 0018',
  '1815-12-10',
];

function assertNoLeak(rows: readonly Record<string, unknown>[], what: string): void {
  const text = JSON.stringify(rows);
  for (const value of PRIVATE) assert.ok(!text.includes(value), `${what} leaked ${value}: ${text}`);
}

const psqlMissing = !(await hasBinary('psql')) && 'psql is not installed';

const POLICY = `
policy:
  defaults: { human: allow, service: allow, agent: allow }
  allowedFunctions: [open_contacts]
masking:
  key: test-masking-key-0123456789
  columns:
    - { table: public.notes, column: body, class: free_text }
    - { table: public.customers, column: score, class: other }
  strategies:
    email: hash
  unmask:
    - groups: [pipelines]
      classes: { email: clear, card: { strategy: partial, keep: 4 } }
    - identityKinds: [agent]
      classes: { "*": null }
  allowUses:
    - { identities: [etl], table: public.customers, column: email, clauses: [where] }
  unresolved: mask
`;

describe('masking on the wire', { timeout: 120_000 }, () => {
  const env = seededWarden('masking', SEED, POLICY);

  async function as<T>(
    identity: string,
    work: (client: pg.Client) => Promise<T>,
    binary = false,
  ): Promise<T> {
    const client = new pg.Client({ ...env.warden.pgConfig(identity), ...(binary ? { binary: true } : {}) });
    await client.connect();
    try {
      return await work(client);
    } finally {
      await client.end();
    }
  }

  it('masks private columns by strategy and leaves the others byte-identical to a direct read', async () => {
    const sql =
      'SELECT id, full_name, email, phone, card_number, ssn, city, dob, score FROM customers ORDER BY id';
    const masked = await as('alice', (c) => c.query(sql));
    const clear = await env.direct.query(sql);
    assertNoLeak(masked.rows, 'plain columns');
    const [ada] = masked.rows;
    assert.match(ada.email, /^[0-9a-f]{16}$/, 'hash');
    assert.match(ada.phone, /0018$/, 'partial keeps the last four');
    assert.match(ada.card_number, /^[*\s]+1111$/, 'partial card');
    assert.equal(ada.ssn, 'REDACTED');
    assert.equal(ada.score, 0, 'an integer stays an integer');
    assert.equal(ada.dob.getFullYear(), 1815, 'a date keeps only its year');
    // Unmasked columns are exactly what the server sent.
    assert.deepEqual(
      masked.rows.map((r) => [r.id, r.city]),
      clear.rows.map((r) => [r.id, r.city]),
    );
    // Deterministic: the same value masks the same way, so joins and GROUP BY line up.
    const again = await as('alice', (c) => c.query('SELECT email FROM orders ORDER BY id'));
    assert.notEqual(again.rows[0].email, 'ada@example.org');
  });

  it('follows lineage through aliases, expressions, subqueries, CTEs, UNION, views, stars and whole rows', async () => {
    const queries = [
      'SELECT email AS contact FROM customers',
      "SELECT upper(email), email || '' AS e, substr(ssn, 1, 3) FROM customers",
      'SELECT c FROM (SELECT email AS c FROM customers) s',
      'WITH x AS (SELECT full_name AS who FROM customers) SELECT lower(who) FROM x',
      'SELECT city FROM customers UNION ALL SELECT email FROM customers',
      'SELECT * FROM customers',
      'SELECT c.* FROM customers c',
      'SELECT row_to_json(c) FROM customers c',
      'SELECT to_jsonb(c.*) FROM customers c',
      "SELECT string_agg(email, ','), array_agg(ssn) FROM customers",
      'SELECT contact, city FROM customer_contacts',
      'SELECT * FROM customer_contacts',
      'SELECT (SELECT max(email) FROM customers) AS m',
      'SELECT CASE WHEN id = 1 THEN full_name ELSE card_number END FROM customers',
      'SELECT body FROM notes',
    ];
    await as('alice', async (client) => {
      for (const sql of queries) assertNoLeak((await client.query(sql)).rows, sql);
      // The free-text column keeps its words; what the detectors find is replaced.
      const note = await client.query('SELECT body FROM notes');
      assert.match(note.rows[0].body, /^call me: /);
    });
  });

  it('masks RETURNING of a write, in the extended protocol and in binary format', async () => {
    await as('alice', async (client) => {
      await client.query('BEGIN');
      const returned = await client.query(
        'UPDATE customers SET city = city WHERE id = $1 RETURNING email, city',
        [1],
      );
      assertNoLeak(returned.rows, 'RETURNING');
      assert.equal(returned.rows[0].city, 'London');
      await client.query('ROLLBACK');
      const prepared = await client.query({
        name: 'by-id',
        text: 'SELECT email, ssn FROM customers WHERE id = $1',
        values: [2],
      });
      assertNoLeak(prepared.rows, 'a named prepared statement');
      const reused = await client.query({
        name: 'by-id',
        text: 'SELECT email, ssn FROM customers WHERE id = $1',
        values: [1],
      });
      assertNoLeak(reused.rows, 'a prepared statement executed again');
    });
    const binary = await as(
      'alice',
      (c) => c.query('SELECT id, email, score FROM customers ORDER BY id'),
      true,
    );
    assertNoLeak(
      binary.rows.map((r) => ({ ...r, email: String(r.email) })),
      'binary',
    );
    // A binary int4 of the right width: node-postgres decodes it to 0.
    assert.equal(binary.rows[0].score, 0);
    assert.equal(binary.rows[0].id, 1);
  });

  it('masks the rows of a statement Executed again without a Describe (postgres.js)', async () => {
    const sql = env.warden.postgresJs('alice');
    try {
      // The first run Describes the statement; the next ones only Bind and Execute it: Warden
      // masks them with the row shape it kept, types and formats as they are.
      for (const id of [1, 2, 1]) {
        const [row] = await sql`SELECT id, email, ssn, score, dob, city FROM customers WHERE id = ${id}`;
        assertNoLeak([row!], `run for id ${id}`);
        assert.match(String(row!.email), /^[0-9a-f]{16}$/, 'a masked value, not NULL');
        assert.equal(row!.ssn, 'REDACTED');
        assert.equal(row!.score, 0);
        assert.equal(row!.id, id);
      }
      // A row-limited Execute: the portal is suspended after each row and Executed again.
      const streamed: Record<string, unknown>[] = [];
      await sql`SELECT id, email, city FROM customers ORDER BY id`.cursor(1, ([row]) => {
        streamed.push(row!);
      });
      assertNoLeak(streamed, 'a portal suspended and resumed');
      assert.deepEqual(
        streamed.map((r) => [r.id, r.city, /^[0-9a-f]{16}$/.test(String(r.email))]),
        [
          [1, 'London', true],
          [2, 'Wilmslow', true],
        ],
      );
    } finally {
      await sql.end({ timeout: 5 });
    }
  });

  it('refuses to let a masked value be inferred or copied out, and the session goes on', async () => {
    await as('alice', async (client) => {
      for (const sql of [
        "SELECT id FROM customers WHERE email = 'ada@example.org'",
        "SELECT id FROM customers WHERE ssn LIKE '123%'",
        'SELECT c.id FROM customers c JOIN orders o ON o.email = c.email',
        'SELECT count(*) FROM customers GROUP BY card_number',
        'SELECT id FROM customers ORDER BY ssn',
        'SELECT id FROM customers WHERE id IN (SELECT id FROM customers WHERE length(email) > 3)',
        'CREATE TABLE stolen AS SELECT email FROM customers',
        'INSERT INTO notes SELECT id, ssn FROM customers',
        "COPY customers TO STDOUT (ENCODING 'SJIS')",
      ]) {
        const error = (await client.query(sql).then(
          () => undefined,
          (e: PgError) => e,
        )) as PgError | undefined;
        assert.ok(error, `${sql} was not refused`);
        assert.equal(error.code, '42501', sql);
      }
      const still = await client.query('SELECT city FROM customers WHERE id = 1');
      assert.equal(still.rows[0].city, 'London');
    });
  });

  it('unmasks per identity and group, and allows a named use', async () => {
    const etl = await as('etl', (c) =>
      c.query("SELECT email, card_number, ssn FROM customers WHERE email = 'ada@example.org'"),
    );
    assert.equal(etl.rows[0].email, 'ada@example.org', 'pipelines see email clear');
    assert.equal(etl.rows[0].card_number, '**** **** **** 1111', 'and partial cards');
    assert.equal(etl.rows[0].ssn, 'REDACTED');
    const agent = await as('agent', (c) => c.query('SELECT id, email, ssn, city FROM customers ORDER BY id'));
    assert.deepEqual(agent.rows[0], { id: 1, email: null, ssn: null, city: 'London' });
  });

  it('masks a view newer than the catalog whole, until the catalog is read again', async () => {
    await env.direct.query('CREATE VIEW late_contacts AS SELECT id, email AS reach FROM customers');
    await as('alice', async (client) => {
      const sql = 'SELECT id, reach FROM late_contacts ORDER BY id';
      const first = await client.query(sql);
      assertNoLeak(first.rows, 'a view newer than the catalog');
      assert.equal(first.rows[0].id, 0, 'even its plain columns are masked');
      // Warden reads the catalog again in the background: a later statement sees the view's lineage.
      let rows = first.rows;
      for (let attempt = 0; attempt < 50 && rows[0].id !== 1; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        rows = (await client.query(sql)).rows;
      }
      assert.equal(rows[0].id, 1);
      assertNoLeak(rows, 'the view once known');
    });
  });

  it('masks what cursors fetch, declared here or opened by a function', async () => {
    await env.direct.query(`
      CREATE FUNCTION open_contacts() RETURNS refcursor LANGUAGE plpgsql AS $$
      DECLARE r refcursor := 'fn_cursor';
      BEGIN
        OPEN r FOR SELECT id, email, lower(full_name) AS n, 'x' || ssn AS s, city FROM customers ORDER BY id;
        RETURN r;
      END $$`);
    await as('alice', async (client) => {
      await client.query('BEGIN');
      await client.query(
        'DECLARE c CURSOR FOR SELECT id, email, upper(full_name) AS n, city, id * 10 AS tens FROM customers ORDER BY id',
      );
      const first = await client.query('FETCH 1 FROM c');
      assertNoLeak(first.rows, 'FETCH from a declared cursor');
      // Masked by the DECLARE's lineage: a computed column of clear data stays clear.
      assert.deepEqual([first.rows[0].id, first.rows[0].city, first.rows[0].tens], [1, 'London', 10]);
      assert.match(first.rows[0].email, /^[0-9a-f]{16}$/);
      const rest = await client.query('FETCH ALL FROM c');
      assertNoLeak(rest.rows, 'FETCH ALL');
      assert.equal(rest.rows[0].city, 'Wilmslow');
      await client.query('CLOSE c');
      // Opened by a function: Warden never saw its query. Table columns are masked by what they
      // are; computed ones, which could hold anything, are masked too.
      // Its own result is what lineage cannot follow either: masked (unresolved: mask); a refcursor
      // has no made-up value valid for its type, so NULL.
      const opener = await client.query('SELECT open_contacts() AS c');
      assert.equal(opener.rows[0].c, null);
      const opened = await client.query('FETCH ALL FROM fn_cursor');
      assertNoLeak(opened.rows, 'a cursor a function opened');
      assert.deepEqual(
        opened.rows.map((r) => [r.id, r.city, r.n, r.s]),
        [
          [1, 'London', 'REDACTED', 'REDACTED'],
          [2, 'Wilmslow', 'REDACTED', 'REDACTED'],
        ],
      );
      await client.query('COMMIT');

      // WITH HOLD outlives its transaction; a batch declares and fetches in one Query; BINARY.
      await client.query('BEGIN');
      await client.query(
        'DECLARE h CURSOR WITH HOLD FOR SELECT lower(email) AS e, length(city) AS l FROM customers ORDER BY id',
      );
      await client.query('COMMIT');
      const held = await client.query('FETCH ALL FROM h');
      assertNoLeak(held.rows, 'a cursor WITH HOLD after COMMIT');
      assert.deepEqual(
        held.rows.map((r) => r.l),
        [6, 8],
        'still known after COMMIT: its clear computed column stays clear',
      );
      await client.query('CLOSE h');
      const batch = (await client.query(
        'BEGIN; DECLARE d CURSOR FOR SELECT ssn, city FROM customers; FETCH ALL FROM d; COMMIT',
      )) as unknown as pg.QueryResult[];
      assertNoLeak(batch[2]!.rows, 'DECLARE and FETCH in one batch');
      assert.equal(batch[2]!.rows[0].ssn, 'REDACTED');
      await client.query('BEGIN');
      await client.query('DECLARE b BINARY CURSOR FOR SELECT id, email, score FROM customers ORDER BY id');
      const binary = await client.query('FETCH ALL FROM b');
      assertNoLeak(
        binary.rows.map((r) => ({ ...r, email: String(r.email) })),
        'a binary cursor',
      );
      assert.deepEqual([binary.rows[0].id, binary.rows[0].score], [1, 0]);
      await client.query('COMMIT');

      // Gone with its transaction: the server says so, and the session goes on.
      await client.query('BEGIN');
      await client.query('DECLARE g CURSOR FOR SELECT email FROM customers');
      await client.query('ROLLBACK');
      const gone = await client.query('FETCH ALL FROM g').then(
        () => undefined,
        (e: PgError) => e,
      );
      assert.equal(gone?.code, '34000');
      // A cursor's query is judged like any other: no inference through it.
      await client.query('BEGIN');
      const inferred = await client
        .query("DECLARE i CURSOR FOR SELECT id FROM customers WHERE email = 'ada@example.org'")
        .then(
          () => undefined,
          (e: PgError) => e,
        );
      assert.equal(inferred?.code, '42501');
      await client.query('ROLLBACK');
      assert.equal((await client.query('SELECT city FROM customers WHERE id = 2')).rows[0].city, 'Wilmslow');
    });
    const agent = await as('agent', async (client) => {
      await client.query('BEGIN');
      await client.query('DECLARE a CURSOR FOR SELECT id, email FROM customers ORDER BY id');
      return (await client.query('FETCH 1 FROM a')).rows;
    });
    assert.deepEqual(agent, [{ id: 1, email: null }]);
  });

  it('masks what psql shows, also when it fetches through a cursor (FETCH_COUNT)', {
    skip: psqlMissing,
  }, async () => {
    const cursor = await psql(env.warden.conninfo('alice'), [
      '-v',
      'FETCH_COUNT=1',
      '-c',
      'SELECT email, upper(full_name) AS who, city FROM customers ORDER BY id',
    ]);
    assert.equal(cursor.code, 0, cursor.stderr);
    for (const value of PRIVATE) assert.ok(!cursor.stdout.includes(value), cursor.stdout);
    assert.ok(!cursor.stdout.includes('ADA LOVELACE'), cursor.stdout);
    assert.match(cursor.stdout, /\|Wilmslow/);
  });

  it('masks what psql shows', { skip: psqlMissing }, async () => {
    const result = await psql(env.warden.conninfo('alice'), [
      '-c',
      'SELECT email, city FROM customers ORDER BY id',
    ]);
    assert.equal(result.code, 0, result.stderr);
    for (const value of PRIVATE) assert.ok(!result.stdout.includes(value), result.stdout);
    assert.match(result.stdout, /\|London/);
  });
});

describe('masking a function lineage cannot see into', { timeout: 120_000 }, () => {
  const env = seededWarden(
    'masking_fn',
    SEED,
    `
policy:
  defaults: { human: allow, service: allow, agent: allow }
  allowedFunctions: [contact_of, format_type]
masking:
  key: test-masking-key-0123456789
  strategies:
    email: hash
`,
  );

  it('refuses its call by default while anything is masked; the server’s own functions stay clear', async () => {
    await env.direct.query(
      'CREATE FUNCTION contact_of(int) RETURNS text LANGUAGE sql AS $$ SELECT email FROM customers WHERE id = $1 $$',
    );
    const direct = await env.direct.query('SELECT contact_of(1) AS c');
    assert.match(direct.rows[0].c, /@/, 'the function does return an email');
    const client = new pg.Client(env.warden.pgConfig('alice'));
    await client.connect();
    try {
      for (const sql of [
        'SELECT contact_of(1)',
        'SELECT id, contact_of(id) FROM customers',
        'SELECT * FROM contact_of(2)',
      ]) {
        const error = await client.query(sql).then(
          () => undefined,
          (caught: PgError) => caught,
        );
        assert.equal(error?.code, '42501', sql);
        assert.match(error!.message, /contact_of\(\) cannot be traced to the columns it reads/, sql);
      }
      const builtin = await client.query(
        'SELECT format_type(23, -1) AS t, upper(city) AS c FROM customers ORDER BY id',
      );
      assert.deepEqual(builtin.rows[0], { t: 'integer', c: 'LONDON' });
    } finally {
      await client.end();
    }
  });
});
