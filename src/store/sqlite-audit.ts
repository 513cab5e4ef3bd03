/**
 * The audit store in the embedded SQLite database. better-sqlite3 is
 * synchronous: Warden calls it from the audit worker thread, never from the
 * event loop that serves sessions.
 */
import type {
  AccessDelta,
  AccessQuery,
  AccessRow,
  AuditRecord,
  AuditStore,
  ChainHead,
  EventQuery,
} from './audit.ts';
import type { Db } from './store.ts';

interface EventRow {
  chain: string;
  seq: number;
  at: string;
  type: string;
  identity: string;
  pipeline: string | null;
  target: string | null;
  tables: string | null;
  body: string;
  hash: string;
}

const COLUMNS = 'chain, seq, at, type, identity, pipeline, target, tables, body, hash';

export class SqliteAuditStore implements AuditStore {
  private readonly insertEvent;
  private readonly upsertAccess;
  private readonly accessMasked;
  private readonly appendAll;

  constructor(
    private readonly db: Db,
    private readonly onClose: () => void = () => {},
  ) {
    this.insertEvent = db.prepare(
      `INSERT INTO audit_events (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.upsertAccess = db.prepare(
      `INSERT INTO table_access (bucket, identity, pipeline, target, table_name, operation,
                                 first_seen, last_seen, statements, rows, masked)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (bucket, identity, pipeline, target, table_name, operation) DO UPDATE SET
         first_seen = min(first_seen, excluded.first_seen),
         last_seen  = max(last_seen, excluded.last_seen),
         statements = statements + excluded.statements,
         rows       = rows + excluded.rows,
         -- Merged with the stored names in append(); a batch that masked nothing keeps them.
         masked     = CASE WHEN excluded.masked = '' THEN masked ELSE excluded.masked END`,
    );
    this.accessMasked = db.prepare(
      `SELECT masked FROM table_access
        WHERE bucket = ? AND identity = ? AND pipeline = ? AND target = ? AND table_name = ? AND operation = ?`,
    );
    this.appendAll = db.transaction((records: readonly AuditRecord[], access: readonly AccessDelta[]) => {
      for (const r of records) {
        this.insertEvent.run(
          r.chain,
          r.seq,
          r.at,
          r.type,
          r.identity,
          r.pipeline,
          r.target,
          r.tables.length > 0 ? `,${r.tables.join(',')},` : null,
          r.body,
          r.hash,
        );
      }
      for (const a of access) {
        const key = [a.bucket, a.identity, a.pipeline, a.target, a.table, a.operation] as const;
        let masked = a.masked;
        if (masked.length > 0) {
          const before = this.accessMasked.get(...key) as { masked: string } | undefined;
          if (before) masked = maskedList(`${before.masked},${masked.join(',')}`);
        }
        this.upsertAccess.run(
          a.bucket,
          a.identity,
          a.pipeline,
          a.target,
          a.table,
          a.operation,
          a.firstSeen,
          a.lastSeen,
          a.statements,
          a.rows,
          masked.join(','),
        );
      }
    });
  }

  async head(chain: string): Promise<ChainHead | undefined> {
    const row = this.db
      .prepare('SELECT seq, hash FROM audit_events WHERE chain = ? ORDER BY seq DESC LIMIT 1')
      .get(chain) as ChainHead | undefined;
    return row ?? this.anchor(chain);
  }

  async append(records: readonly AuditRecord[], access: readonly AccessDelta[]): Promise<void> {
    this.appendAll.immediate(records, access);
  }

  async *events(query: EventQuery): AsyncIterable<AuditRecord> {
    const { where, params } = eventFilter(query);
    const limit = query.limit === undefined ? '' : ` LIMIT ${Math.max(0, Math.floor(query.limit))}`;
    const statement = this.db.prepare(
      `SELECT ${COLUMNS} FROM audit_events ${where} ORDER BY at, chain, seq${limit}`,
    );
    for (const row of statement.iterate(...params) as Iterable<EventRow>) yield recordOf(row);
  }

  async eventsAfter(after: ReadonlyMap<string, number>, limit: number): Promise<AuditRecord[]> {
    const known = [...after];
    const newer = known.map(() => '(chain = ? AND seq > ?)');
    const unknown = known.length > 0 ? `chain NOT IN (${known.map(() => '?').join(', ')})` : '1';
    const rows = this.db
      .prepare(
        `SELECT ${COLUMNS} FROM audit_events WHERE ${[...newer, unknown].join(' OR ')}
         ORDER BY at, chain, seq LIMIT ?`,
      )
      .all(...known.flat(), ...known.map(([chain]) => chain), limit) as EventRow[];
    return rows.map(recordOf);
  }

  async chains(): Promise<string[]> {
    const rows = this.db
      .prepare('SELECT chain FROM audit_events UNION SELECT chain FROM audit_anchors ORDER BY chain')
      .all() as { chain: string }[];
    return rows.map((row) => row.chain);
  }

  async anchor(chain: string): Promise<ChainHead | undefined> {
    return this.db.prepare('SELECT seq, hash FROM audit_anchors WHERE chain = ?').get(chain) as
      | ChainHead
      | undefined;
  }

  async *chainRecords(chain: string): AsyncIterable<AuditRecord> {
    const statement = this.db.prepare(`SELECT ${COLUMNS} FROM audit_events WHERE chain = ? ORDER BY seq`);
    for (const row of statement.iterate(chain) as Iterable<EventRow>) yield recordOf(row);
  }

  async access(query: AccessQuery): Promise<AccessRow[]> {
    const { conditions, params, add } = filters();
    // A bare name matches the table in any schema.
    add("(table_name = ? OR substr(table_name, -length(?) - 1) = '.' || ?)", query.table);
    if (query.table !== undefined) params.push(query.table, query.table);
    add('identity = ?', query.identity);
    add('pipeline = ?', query.pipeline);
    add('target = ?', query.target);
    add('last_seen >= ?', query.since);
    add('first_seen < ?', query.until);
    const where = conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '';
    const rows = this.db
      .prepare(
        `SELECT identity, pipeline, target, table_name AS "table", operation,
                min(first_seen) AS firstSeen, max(last_seen) AS lastSeen,
                sum(statements) AS statements, sum(rows) AS rows, group_concat(masked, ',') AS masked
           FROM table_access ${where}
          GROUP BY identity, pipeline, target, table_name, operation
          ORDER BY table_name, max(last_seen) DESC`,
      )
      .all(...params) as (Omit<AccessRow, 'masked'> & { masked: string | null })[];
    return rows.map((row) => ({ ...row, masked: maskedList(row.masked) }));
  }

  async prune(before: string): Promise<number> {
    return this.db.transaction(() => {
      // Each chain loses the longest run of its oldest events that are all older than
      // `before`, and the last of them becomes its anchor: verify starts after it. (Times
      // need not rise with seq: cutting at the first newer event keeps the chain whole.)
      this.db
        .prepare(
          `WITH old AS (SELECT DISTINCT chain FROM audit_events WHERE at < ?),
           cut AS (
             SELECT chain,
                    coalesce((SELECT seq FROM audit_events n WHERE n.chain = old.chain AND n.at >= ?
                               ORDER BY n.seq LIMIT 1) - 1,
                             (SELECT max(seq) FROM audit_events m WHERE m.chain = old.chain)) AS seq
               FROM old
           )
           INSERT INTO audit_anchors (chain, seq, hash)
           SELECT e.chain, e.seq, e.hash FROM audit_events e JOIN cut ON cut.chain = e.chain AND cut.seq = e.seq
            WHERE true
           ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`,
        )
        .run(before, before);
      const removed = this.db
        .prepare(
          `DELETE FROM audit_events
            WHERE at < ? AND seq <= (SELECT seq FROM audit_anchors a WHERE a.chain = audit_events.chain)`,
        )
        .run(before).changes;
      this.db.prepare('DELETE FROM table_access WHERE last_seen < ?').run(before);
      return removed;
    })();
  }

  async close(): Promise<void> {
    this.onClose();
  }
}

/** SQL conditions and their parameters, for the filters a query sets. */
function filters() {
  const conditions: string[] = [];
  const params: string[] = [];
  const add = (condition: string, value: string | undefined) => {
    if (value === undefined) return;
    conditions.push(condition);
    params.push(value);
  };
  return { conditions, params, add };
}

function eventFilter(query: EventQuery): { where: string; params: string[] } {
  const { conditions, params, add } = filters();
  add('identity = ?', query.identity);
  add('pipeline = ?', query.pipeline);
  add('target = ?', query.target);
  add('type = ?', query.type);
  add('at >= ?', query.since);
  add('at < ?', query.until);
  if (query.table !== undefined) {
    // Stored as ",schema.table,": a bare name matches it in any schema.
    conditions.push('(instr(tables, ?) > 0 OR instr(tables, ?) > 0)');
    params.push(`,${query.table},`, `.${query.table},`);
  }
  return { where: conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '', params };
}

function recordOf(row: EventRow): AuditRecord {
  return {
    chain: row.chain,
    seq: row.seq,
    at: row.at,
    type: row.type,
    identity: row.identity,
    pipeline: row.pipeline,
    target: row.target,
    tables: row.tables === null ? [] : row.tables.slice(1, -1).split(','),
    body: row.body,
    hash: row.hash,
  };
}

/** Masked column names, each once. */
export function maskedList(joined: string | null): string[] {
  if (!joined) return [];
  return [...new Set(joined.split(',').filter((name) => name !== ''))].sort();
}
