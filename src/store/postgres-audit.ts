/**
 * The audit store in PostgreSQL: for production, where several Warden
 * instances (each with its own chain) share one trail. Its tables live in
 * the schema `warden_audit`, which this file migrates itself.
 *
 * The semantics are those of the SQLite store (src/store/sqlite-audit.ts):
 * both run the same test suite. Text columns are COLLATE "C" so that
 * ordering and comparisons are by bytes, as in SQLite; times are stored as
 * the ISO strings the events carry (the hashed body says the same string,
 * and ISO strings in UTC sort as times do).
 *
 * Reads are paged (keyset pagination), so a large trail is never held in
 * memory whole, and no connection is held between pages.
 *
 * Statement templates (src/audit/templates.ts) are kept once each, keyed by
 * their hash, in the same statement that appends the first event naming
 * them; a templated event's tables are its template's.
 */
import pg from 'pg';
import type { Checkpoint } from '../audit/checkpoints.ts';
import type { StatementTemplate } from '../audit/templates.ts';
import type {
  AccessDelta,
  AccessQuery,
  AccessRow,
  AuditRecord,
  AuditStore,
  ChainHead,
  EventQuery,
} from './audit.ts';
import { StoreError } from './store.ts';

const SCHEMA = 'warden_audit';

/** Any key will do, as long as every Warden uses the same one: it serialises migrations. */
const MIGRATION_LOCK = 0x5761_7264_656e; // "Warden"

/** Rows read per page by events() and chainRecords(). */
const PAGE = 1000;

/** Connections per store: the audit worker writes one batch at a time, so a few suffice. */
const POOL_MAX = 4;

const CONNECT_TIMEOUT_MS = 10_000;

/** Append-only: never edit a migration that has shipped; add the next one. Run with search_path = warden_audit. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE audit_events (
     chain    text COLLATE "C" NOT NULL,
     seq      bigint NOT NULL,
     at       text COLLATE "C" NOT NULL,
     type     text COLLATE "C" NOT NULL,
     identity text COLLATE "C" NOT NULL,
     pipeline text COLLATE "C",
     target   text COLLATE "C",
     tables   text[] COLLATE "C" NOT NULL DEFAULT '{}',
     body     text NOT NULL,
     hash     text NOT NULL,
     PRIMARY KEY (chain, seq)
   );
   -- (at, chain, seq): the order events() reads in, so its pages are index range scans.
   CREATE INDEX audit_events_at ON audit_events (at, chain, seq);
   CREATE INDEX audit_events_identity ON audit_events (identity, at);
   CREATE INDEX audit_events_pipeline ON audit_events (pipeline, at) WHERE pipeline IS NOT NULL;
   CREATE TABLE audit_anchors (
     chain text COLLATE "C" PRIMARY KEY,
     seq   bigint NOT NULL,
     hash  text NOT NULL
   );
   CREATE TABLE table_access (
     bucket     text COLLATE "C" NOT NULL,
     identity   text COLLATE "C" NOT NULL,
     pipeline   text COLLATE "C" NOT NULL,
     target     text COLLATE "C" NOT NULL,
     table_name text COLLATE "C" NOT NULL,
     operation  text COLLATE "C" NOT NULL,
     first_seen text COLLATE "C" NOT NULL,
     last_seen  text COLLATE "C" NOT NULL,
     statements bigint NOT NULL,
     rows       bigint NOT NULL,
     masked     text[] COLLATE "C" NOT NULL DEFAULT '{}',
     PRIMARY KEY (bucket, identity, pipeline, target, table_name, operation)
   );
   CREATE INDEX table_access_table ON table_access (table_name, bucket);`,
  `CREATE TABLE audit_templates (
     hash   text COLLATE "C" PRIMARY KEY,
     body   text NOT NULL,
     tables text[] COLLATE "C" NOT NULL DEFAULT '{}'
   );
   ALTER TABLE audit_events ADD COLUMN template text COLLATE "C";`,
  `CREATE TABLE audit_checkpoints (
     chain     text COLLATE "C" NOT NULL,
     seq       bigint NOT NULL,
     hash      text NOT NULL,
     at        text NOT NULL,
     key       text NOT NULL,
     signature text NOT NULL,
     PRIMARY KEY (chain, seq)
   );`,
];

const EVENTS = `${SCHEMA}.audit_events`;
const ANCHORS = `${SCHEMA}.audit_anchors`;
const ACCESS = `${SCHEMA}.table_access`;
const TEMPLATES = `${SCHEMA}.audit_templates`;
const CHECKPOINTS = `${SCHEMA}.audit_checkpoints`;

const COLUMNS = 'chain, seq, at, type, identity, pipeline, target, tables, template, body, hash';
/** A templated event's tables are its template's. */
const TABLES = `CASE WHEN e.template IS NULL THEN e.tables ELSE coalesce(t.tables, '{}') END`;
const SELECTED = `e.chain, e.seq, e.at, e.type, e.identity, e.pipeline, e.target, ${TABLES} AS tables,
  e.body, e.hash, t.hash AS template_hash, t.body AS template_body`;
const FROM = `${EVENTS} e LEFT JOIN ${TEMPLATES} t ON t.hash = e.template`;

interface EventRow {
  chain: string;
  seq: string;
  at: string;
  type: string;
  identity: string;
  pipeline: string | null;
  target: string | null;
  tables: string[];
  body: string;
  hash: string;
  template_hash: string | null;
  template_body: string | null;
}

interface AccessResultRow {
  identity: string;
  pipeline: string;
  target: string;
  table: string;
  operation: string;
  firstSeen: string;
  lastSeen: string;
  statements: string;
  rows: string;
  masked: string[][];
}

export class PostgresAuditStore implements AuditStore {
  private closed: Promise<void> | undefined;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly secrets: readonly string[],
  ) {}

  /** Connects, and brings the schema up to date (one instance at a time). */
  static async open(url: string): Promise<PostgresAuditStore> {
    const { secrets, shown } = secretsOf(url);
    const pool = new pg.Pool({
      connectionString: url,
      max: POOL_MAX,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      idleTimeoutMillis: 30_000,
      // The URL's own application_name, if any, wins.
      application_name: 'warden-audit',
    });
    // A connection lost while idle: the next query fails and reports it; it must not crash Warden.
    pool.on('error', () => {});
    try {
      await migrate(pool);
    } catch (error) {
      await pool.end().catch(() => {});
      throw new StoreError(
        `cannot open the audit store at ${shown}: ${describe(error, secrets)} (check audit.url in warden.yaml)`,
      );
    }
    return new PostgresAuditStore(pool, secrets);
  }

  async head(chain: string): Promise<ChainHead | undefined> {
    const { rows } = await this.query<{ seq: string; hash: string }>(
      `SELECT seq, hash FROM ${EVENTS} WHERE chain = $1 ORDER BY seq DESC LIMIT 1`,
      [chain],
    );
    const row = rows[0];
    return row ? { seq: Number(row.seq), hash: row.hash } : this.anchor(chain);
  }

  async append(records: readonly AuditRecord[], access: readonly AccessDelta[]): Promise<void> {
    if (records.length === 0 && access.length === 0) return;
    // One statement is one transaction: a duplicate (chain, seq) fails the events' INSERT,
    // and with it the whole statement, templates and access rows included. One round trip per batch.
    const { rows, templates } = eventRows(records);
    await this.query(
      `WITH templates AS (
         INSERT INTO ${TEMPLATES} (hash, body, tables)
         SELECT hash, body, tables FROM json_to_recordset($3::json) AS r(hash text, body text, tables text[])
         ON CONFLICT (hash) DO NOTHING
       ), events AS (
         INSERT INTO ${EVENTS} (${COLUMNS})
         SELECT ${COLUMNS} FROM json_to_recordset($1::json) AS r(
           chain text, seq bigint, at text, type text, identity text, pipeline text, target text,
           tables text[], template text, body text, hash text)
       ), access AS (
         INSERT INTO ${ACCESS} AS a (bucket, identity, pipeline, target, table_name, operation,
                                   first_seen, last_seen, statements, rows, masked)
         SELECT bucket, identity, pipeline, target, table_name, operation,
                first_seen, last_seen, statements, rows, masked
           FROM json_to_recordset($2::json) AS d(
             bucket text, identity text, pipeline text, target text, table_name text, operation text,
             first_seen text, last_seen text, statements bigint, rows bigint, masked text[])
          -- Rows are locked in one order by every writer: no deadlock between instances.
          ORDER BY bucket, identity, pipeline, target, table_name, operation
         ON CONFLICT (bucket, identity, pipeline, target, table_name, operation) DO UPDATE SET
           first_seen = least(a.first_seen, excluded.first_seen),
           last_seen  = greatest(a.last_seen, excluded.last_seen),
           statements = a.statements + excluded.statements,
           rows       = a.rows + excluded.rows,
           masked     = ARRAY(SELECT DISTINCT m FROM unnest(a.masked || excluded.masked) AS m ORDER BY m)
       )
       SELECT 1`,
      [JSON.stringify(rows), JSON.stringify(mergeDeltas(access)), JSON.stringify(templates)],
    );
  }

  async *events(query: EventQuery): AsyncIterable<AuditRecord> {
    const { conditions, params } = eventFilter(query);
    let left = query.limit === undefined ? Number.POSITIVE_INFINITY : Math.max(0, Math.floor(query.limit));
    let last: AuditRecord | undefined;
    while (left > 0) {
      const page = Math.min(PAGE, left);
      const where = [...conditions];
      const values: unknown[] = [...params];
      if (last !== undefined) {
        values.push(last.at, last.chain, last.seq);
        const n = values.length;
        where.push(`(e.at, e.chain, e.seq) > ($${n - 2}, $${n - 1}, $${n})`);
      }
      const { rows } = await this.query<EventRow>(
        `SELECT ${SELECTED} FROM ${FROM} ${whereOf(where)} ORDER BY e.at, e.chain, e.seq LIMIT ${page}`,
        values,
      );
      for (const row of rows) {
        last = recordOf(row);
        yield last;
      }
      if (rows.length < page) return;
      left -= rows.length;
    }
  }

  async eventsAfter(after: ReadonlyMap<string, number>, limit: number): Promise<AuditRecord[]> {
    const chains = [...after.keys()];
    const seqs = [...after.values()];
    const { rows } = await this.query<EventRow>(
      `SELECT ${SELECTED} FROM ${FROM}
        WHERE e.chain <> ALL($1::text[])
           OR EXISTS (SELECT 1 FROM unnest($1::text[], $2::bigint[]) AS k(chain, seq)
                       WHERE k.chain = e.chain AND e.seq > k.seq)
        ORDER BY e.at, e.chain, e.seq LIMIT $3`,
      [chains, seqs, Math.max(0, Math.floor(limit))],
    );
    return rows.map(recordOf);
  }

  async chains(): Promise<string[]> {
    // A skip scan over the primary key: one index probe per chain, however many events.
    const { rows } = await this.query<{ chain: string }>(
      `WITH RECURSIVE c (chain) AS (
         (SELECT chain FROM ${EVENTS} ORDER BY chain LIMIT 1)
         UNION ALL
         SELECT (SELECT e.chain FROM ${EVENTS} e WHERE e.chain > c.chain ORDER BY e.chain LIMIT 1)
           FROM c WHERE c.chain IS NOT NULL
       )
       SELECT chain FROM c WHERE chain IS NOT NULL
       UNION
       SELECT chain FROM ${ANCHORS}
       UNION
       SELECT DISTINCT chain FROM ${CHECKPOINTS}
       ORDER BY chain`,
    );
    return rows.map((row) => row.chain);
  }

  async anchor(chain: string): Promise<ChainHead | undefined> {
    const { rows } = await this.query<{ seq: string; hash: string }>(
      `SELECT seq, hash FROM ${ANCHORS} WHERE chain = $1`,
      [chain],
    );
    const row = rows[0];
    return row ? { seq: Number(row.seq), hash: row.hash } : undefined;
  }

  async *chainRecords(chain: string): AsyncIterable<AuditRecord> {
    let after = -1;
    for (;;) {
      const { rows } = await this.query<EventRow>(
        `SELECT ${SELECTED} FROM ${FROM} WHERE e.chain = $1 AND e.seq > $2 ORDER BY e.seq LIMIT ${PAGE}`,
        [chain, after],
      );
      for (const row of rows) {
        const record = recordOf(row);
        after = record.seq;
        yield record;
      }
      if (rows.length < PAGE) return;
    }
  }

  async access(query: AccessQuery): Promise<AccessRow[]> {
    const { add, conditions, params } = filter();
    // A bare name matches the table in any schema.
    add((n) => `(table_name = ${n} OR right(table_name, length(${n}) + 1) = '.' || ${n})`, query.table);
    add((n) => `identity = ${n}`, query.identity);
    add((n) => `pipeline = ${n}`, query.pipeline);
    add((n) => `target = ${n}`, query.target);
    add((n) => `last_seen >= ${n}`, query.since);
    add((n) => `first_seen < ${n}`, query.until);
    const { rows } = await this.query<AccessResultRow>(
      `SELECT identity, pipeline, target, table_name AS "table", operation,
              min(first_seen) AS "firstSeen", max(last_seen) AS "lastSeen",
              sum(statements) AS statements, sum(rows) AS rows, json_agg(masked) AS masked
         FROM ${ACCESS} ${whereOf(conditions)}
        GROUP BY identity, pipeline, target, table_name, operation
        ORDER BY table_name, max(last_seen) DESC, identity, pipeline, target, operation`,
      params,
    );
    return rows.map((row) => ({
      identity: row.identity,
      pipeline: row.pipeline,
      target: row.target,
      table: row.table,
      operation: row.operation,
      firstSeen: row.firstSeen,
      lastSeen: row.lastSeen,
      statements: Number(row.statements),
      rows: Number(row.rows),
      masked: [...new Set(row.masked.flat())].sort(),
    }));
  }

  async addCheckpoint(c: Checkpoint): Promise<void> {
    await this.query(
      `INSERT INTO ${CHECKPOINTS} (chain, seq, hash, at, key, signature) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (chain, seq) DO NOTHING`,
      [c.chain, c.seq, c.hash, c.at, c.key, c.signature],
    );
  }

  async checkpoints(chain: string): Promise<Checkpoint[]> {
    const { rows } = await this.query<Omit<Checkpoint, 'seq'> & { seq: string }>(
      `SELECT chain, seq, hash, at, key, signature FROM ${CHECKPOINTS} WHERE chain = $1 ORDER BY seq`,
      [chain],
    );
    return rows.map((row) => ({ ...row, seq: Number(row.seq) }));
  }

  async prune(before: string): Promise<number> {
    return this.transaction(async (client) => {
      // Each chain loses the longest run of its oldest events that are all older than
      // `before`, and the last of them becomes its anchor: verify starts after it. (Times
      // need not rise with seq: cutting at the first newer event keeps the chain whole.)
      await client.query(
        `WITH old AS (SELECT DISTINCT chain FROM ${EVENTS} WHERE at < $1),
         cut AS (
           SELECT chain,
                  coalesce((SELECT seq FROM ${EVENTS} n WHERE n.chain = old.chain AND n.at >= $1
                             ORDER BY n.seq LIMIT 1) - 1,
                           (SELECT max(seq) FROM ${EVENTS} m WHERE m.chain = old.chain)) AS seq
             FROM old
         )
         INSERT INTO ${ANCHORS} AS a (chain, seq, hash)
         SELECT e.chain, e.seq, e.hash FROM ${EVENTS} e JOIN cut ON cut.chain = e.chain AND cut.seq = e.seq
         ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash
          WHERE excluded.seq > a.seq`,
        [before],
      );
      // Every event up to the anchor is older than `before`: the time index finds them.
      const removed = await client.query(
        `DELETE FROM ${EVENTS} e USING ${ANCHORS} a
          WHERE e.at < $1 AND e.chain = a.chain AND e.seq <= a.seq`,
        [before],
      );
      await client.query(`DELETE FROM ${ACCESS} WHERE last_seen < $1`, [before]);
      return removed.rowCount ?? 0;
    });
  }

  async close(): Promise<void> {
    this.closed ??= this.pool.end();
    return this.closed;
  }

  private async query<R extends pg.QueryResultRow>(
    text: string,
    values?: readonly unknown[],
  ): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(text, values as unknown[] | undefined);
    } catch (error) {
      throw new StoreError(`audit store: ${describe(error, this.secrets)}`);
    }
  }

  private async transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw new StoreError(`audit store: ${describe(error, this.secrets)}`);
    }
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch((rollback: Error) => {
        broken = rollback;
      });
      throw new StoreError(`audit store: ${describe(error, this.secrets)}`);
    } finally {
      // A connection that could not roll back is not given to the next caller.
      client.release(broken);
    }
  }
}

/** Creates the schema and applies the migrations it lacks, holding a lock so that two instances starting together take turns. */
async function migrate(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    try {
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      // Checked before creating, so a role without CREATE on the database can use a migrated store.
      const { rows } = await client.query<{ exists: boolean }>(
        `SELECT to_regclass('${SCHEMA}.schema_migrations') IS NOT NULL AS exists`,
      );
      if (!rows[0]?.exists) {
        await client.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`);
        await client.query(
          `CREATE TABLE ${SCHEMA}.schema_migrations (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
           )`,
        );
      }
      const current = await client.query<{ version: number }>(
        `SELECT coalesce(max(version), 0) AS version FROM ${SCHEMA}.schema_migrations`,
      );
      const version = current.rows[0]?.version ?? 0;
      if (version > MIGRATIONS.length) {
        throw new Error(
          `the audit schema is at version ${version}, newer than this Warden (${MIGRATIONS.length}): upgrade Warden`,
        );
      }
      if (version < MIGRATIONS.length) {
        await client.query(`SET LOCAL search_path = ${SCHEMA}`);
        for (let next = version; next < MIGRATIONS.length; next++) {
          await client.query(MIGRATIONS[next]!);
          await client.query(`INSERT INTO ${SCHEMA}.schema_migrations (version) VALUES ($1)`, [next + 1]);
        }
      }
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    }
  } finally {
    client.release();
  }
}

/** Several deltas for one row of the index become one: a multi-row upsert may touch each row once. */
function mergeDeltas(access: readonly AccessDelta[]): object[] {
  const merged = new Map<string, Omit<Mutable<AccessDelta>, 'masked'> & { masked: string[] }>();
  for (const a of access) {
    const key = [a.bucket, a.identity, a.pipeline, a.target, a.table, a.operation].join('\u0000');
    const known = merged.get(key);
    if (known === undefined) {
      merged.set(key, { ...a, masked: [...a.masked] });
    } else {
      if (a.firstSeen < known.firstSeen) known.firstSeen = a.firstSeen;
      if (a.lastSeen > known.lastSeen) known.lastSeen = a.lastSeen;
      known.statements += a.statements;
      known.rows += a.rows;
      known.masked.push(...a.masked);
    }
  }
  return [...merged.values()].map((a) => ({
    bucket: a.bucket,
    identity: a.identity,
    pipeline: a.pipeline,
    target: a.target,
    table_name: a.table,
    operation: a.operation,
    first_seen: a.firstSeen,
    last_seen: a.lastSeen,
    statements: a.statements,
    rows: a.rows,
    masked: [...new Set(a.masked)].sort(),
  }));
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function eventFilter(query: EventQuery): { conditions: string[]; params: string[] } {
  const { add, conditions, params } = filter();
  add((n) => `e.identity = ${n}`, query.identity);
  add((n) => `e.pipeline = ${n}`, query.pipeline);
  add((n) => `e.target = ${n}`, query.target);
  add((n) => `e.type = ${n}`, query.type);
  add((n) => `e.at >= ${n}`, query.since);
  add((n) => `e.at < ${n}`, query.until);
  // A bare name matches the table in any schema.
  add(
    (n) =>
      `(${n} = ANY(${TABLES}) OR EXISTS (SELECT 1 FROM unnest(${TABLES}) AS u(name)
                                      WHERE right(u.name, length(${n}) + 1) = '.' || ${n}))`,
    query.table,
  );
  return { conditions, params };
}

/** Conditions on text parameters, each added only when its value is given. */
function filter() {
  const conditions: string[] = [];
  const params: string[] = [];
  const add = (condition: (n: string) => string, value: string | undefined) => {
    if (value === undefined) return;
    params.push(value);
    conditions.push(condition(`$${params.length}::text`));
  };
  return { add, conditions, params };
}

function whereOf(conditions: readonly string[]): string {
  return conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '';
}

function recordOf(row: EventRow): AuditRecord {
  const record = {
    chain: row.chain,
    seq: Number(row.seq),
    at: row.at,
    type: row.type,
    identity: row.identity,
    pipeline: row.pipeline,
    target: row.target,
    tables: row.tables,
    body: row.body,
    hash: row.hash,
  };
  if (row.template_hash === null || row.template_body === null) return record;
  const template = { hash: row.template_hash, body: row.template_body, tables: row.tables };
  return { ...record, template };
}

/** The events' rows as the append statement reads them, and the templates they name, each once. */
function eventRows(records: readonly AuditRecord[]): { rows: object[]; templates: StatementTemplate[] } {
  const templates = new Map<string, StatementTemplate>();
  const rows = records.map((r) => {
    const { template } = r;
    if (template !== undefined) templates.set(template.hash, template);
    return {
      chain: r.chain,
      seq: r.seq,
      at: r.at,
      type: r.type,
      identity: r.identity,
      pipeline: r.pipeline,
      target: r.target,
      tables: template === undefined ? r.tables : [],
      template: template?.hash ?? null,
      body: r.body,
      hash: r.hash,
    };
  });
  return { rows, templates: [...templates.values()] };
}

/** The passwords in the URL (what no message may show), and the URL as a message may show it. */
function secretsOf(url: string): { secrets: string[]; shown: string } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // Not echoed: it may hold a password.
    throw new StoreError('the audit store URL is not a URL (expected postgres://user:password@host:5432/db)');
  }
  const secrets = new Set<string>();
  for (const raw of [parsed.password, parsed.searchParams.get('password') ?? '']) {
    if (raw === '') continue;
    secrets.add(raw);
    try {
      secrets.add(decodeURIComponent(raw));
    } catch {
      // a malformed escape: the raw form is scrubbed already
    }
  }
  const user = parsed.username ? `${parsed.username}@` : '';
  return {
    // Longest first, so that no part of a longer one is left behind.
    secrets: [...secrets].sort((a, b) => b.length - a.length),
    // No password and no parameters (which may hold one).
    shown: `${parsed.protocol}//${user}${parsed.host}${parsed.pathname}`,
  };
}

function withoutSecrets(text: string, secrets: readonly string[]): string {
  return secrets.reduce((result, secret) => result.replaceAll(secret, '[redacted]'), text);
}

/** An error's message (and PostgreSQL's detail) without any secret. The error itself is never passed on as a cause. */
function describe(error: unknown, secrets: readonly string[]): string {
  const { message, detail, code } = error as { message?: string; detail?: string; code?: string };
  let text = message || String(error);
  if (detail) text += ` (${detail})`;
  if (code && !text.includes(code)) text += ` [${code}]`;
  return withoutSecrets(text, secrets);
}
