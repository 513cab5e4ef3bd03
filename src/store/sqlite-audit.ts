/**
 * The audit store in the embedded SQLite database. better-sqlite3 is
 * synchronous: Warden calls it from the audit worker thread, never from the
 * event loop that serves sessions.
 *
 * Writing is the audit worker's main cost, so a row is kept narrow: a
 * templated statement's row holds its body (which names its template) and
 * the columns searches filter on; its template is stored once, in
 * audit_templates, and its tables are read from there. Rows go in by
 * ROWS_PER_INSERT per INSERT, to spend less per row on each call.
 * Templates are never deleted (a prune keeps them): they are few and small,
 * and every writer may still name the ids it has seen.
 */
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
  templateHash: string | null;
  templateBody: string | null;
}

const INSERTED = 'chain, seq, at, type, identity, pipeline, target, tables, template, body, hash';
const PARAMS = 11;
const ROWS_PER_INSERT = 50;

/** A templated event's tables are its template's. */
const TABLES = 'CASE WHEN e.template IS NULL THEN e.tables ELSE t.tables END';
const SELECTED = `e.chain, e.seq, e.at, e.type, e.identity, e.pipeline, e.target, ${TABLES} AS tables,
  e.body, e.hash, t.hash AS templateHash, t.body AS templateBody`;
const FROM = 'audit_events e LEFT JOIN audit_templates t ON t.id = e.template';

/** Template ids remembered, by hash, before the memory starts over. */
const TEMPLATES_KEPT = 50_000;

export class SqliteAuditStore implements AuditStore {
  private readonly insertRows;
  private readonly insertRow;
  private readonly insertTemplate;
  private readonly templateId;
  private readonly upsertAccess;
  private readonly accessMasked;
  private readonly appendAll;
  /** Template ids by hash: those committed, and those the transaction under way added. */
  private readonly templates = new Map<string, number>();
  private added = new Map<string, number>();
  private readonly params = new Array<unknown>(PARAMS * ROWS_PER_INSERT);

  constructor(
    private readonly db: Db,
    private readonly onClose: () => void = () => {},
  ) {
    const row = `(${Array(PARAMS).fill('?').join(', ')})`;
    this.insertRows = db.prepare(
      `INSERT INTO audit_events (${INSERTED}) VALUES ${Array(ROWS_PER_INSERT).fill(row).join(', ')}`,
    );
    this.insertRow = db.prepare(`INSERT INTO audit_events (${INSERTED}) VALUES ${row}`);
    this.insertTemplate = db.prepare(
      'INSERT INTO audit_templates (hash, body, tables) VALUES (?, ?, ?) ON CONFLICT (hash) DO NOTHING',
    );
    this.templateId = db.prepare('SELECT id FROM audit_templates WHERE hash = ?').pluck();
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
      this.insertRecords(records);
      for (const a of access) this.addAccess(a);
    });
  }

  async append(records: readonly AuditRecord[], access: readonly AccessDelta[]): Promise<void> {
    this.added = new Map();
    this.appendAll.immediate(records, access);
    // Committed: the ids it added are now safe to name (a rolled-back transaction's are not).
    if (this.templates.size + this.added.size > TEMPLATES_KEPT) this.templates.clear();
    for (const [hash, id] of this.added) this.templates.set(hash, id);
  }

  private insertRecords(records: readonly AuditRecord[]): void {
    const { params } = this;
    let i = 0;
    for (; i + ROWS_PER_INSERT <= records.length; i += ROWS_PER_INSERT) {
      for (let k = 0; k < ROWS_PER_INSERT; k++) this.bind(records[i + k]!, k * PARAMS);
      this.insertRows.run(params);
    }
    for (; i < records.length; i++) {
      this.bind(records[i]!, 0);
      this.insertRow.run(params.slice(0, PARAMS));
    }
  }

  /** A record's parameters, in INSERTED's order, at `at` in params. */
  private bind(r: AuditRecord, at: number): void {
    const { params } = this;
    params[at] = r.chain;
    params[at + 1] = r.seq;
    params[at + 2] = r.at;
    params[at + 3] = r.type;
    params[at + 4] = r.identity;
    params[at + 5] = r.pipeline;
    params[at + 6] = r.target;
    params[at + 7] = r.template === undefined ? tablesText(r.tables) : null;
    params[at + 8] = r.template === undefined ? null : this.idOf(r.template);
    params[at + 9] = r.body;
    params[at + 10] = r.hash;
  }

  /** The id of a template, stored now if the store has never seen it. */
  private idOf(template: StatementTemplate): number {
    let id = this.templates.get(template.hash) ?? this.added.get(template.hash);
    if (id === undefined) {
      this.insertTemplate.run(template.hash, template.body, tablesText(template.tables));
      id = this.templateId.get(template.hash) as number;
      this.added.set(template.hash, id);
    }
    return id;
  }

  private addAccess(a: AccessDelta): void {
    const key = [a.bucket, a.identity, a.pipeline, a.target, a.table, a.operation] as const;
    let masked = a.masked;
    if (masked.length > 0) {
      const before = this.accessMasked.get(...key) as { masked: string } | undefined;
      if (before) masked = maskedList(`${before.masked},${masked.join(',')}`);
    }
    this.upsertAccess.run(...key, a.firstSeen, a.lastSeen, a.statements, a.rows, masked.join(','));
  }

  async head(chain: string): Promise<ChainHead | undefined> {
    const row = this.db
      .prepare('SELECT seq, hash FROM audit_events WHERE chain = ? ORDER BY seq DESC LIMIT 1')
      .get(chain) as ChainHead | undefined;
    return row ?? this.anchor(chain);
  }

  async *events(query: EventQuery): AsyncIterable<AuditRecord> {
    const { where, params } = eventFilter(query);
    const limit = query.limit === undefined ? '' : ` LIMIT ${Math.max(0, Math.floor(query.limit))}`;
    const statement = this.db.prepare(
      `SELECT ${SELECTED} FROM ${FROM} ${where} ORDER BY e.at, e.chain, e.seq${limit}`,
    );
    for (const row of statement.iterate(...params) as Iterable<EventRow>) yield recordOf(row);
  }

  async eventsAfter(after: ReadonlyMap<string, number>, limit: number): Promise<AuditRecord[]> {
    const known = [...after];
    const newer = known.map(() => '(e.chain = ? AND e.seq > ?)');
    const unknown = known.length > 0 ? `e.chain NOT IN (${known.map(() => '?').join(', ')})` : '1';
    const rows = this.db
      .prepare(
        `SELECT ${SELECTED} FROM ${FROM} WHERE ${[...newer, unknown].join(' OR ')}
         ORDER BY e.at, e.chain, e.seq LIMIT ?`,
      )
      .all(...known.flat(), ...known.map(([chain]) => chain), limit) as EventRow[];
    return rows.map(recordOf);
  }

  async chains(): Promise<string[]> {
    const rows = this.db
      .prepare(
        'SELECT chain FROM audit_events UNION SELECT chain FROM audit_anchors UNION SELECT chain FROM audit_checkpoints ORDER BY chain',
      )
      .all() as { chain: string }[];
    return rows.map((row) => row.chain);
  }

  async anchor(chain: string): Promise<ChainHead | undefined> {
    return this.db.prepare('SELECT seq, hash FROM audit_anchors WHERE chain = ?').get(chain) as
      | ChainHead
      | undefined;
  }

  async *chainRecords(chain: string): AsyncIterable<AuditRecord> {
    const statement = this.db.prepare(`SELECT ${SELECTED} FROM ${FROM} WHERE e.chain = ? ORDER BY e.seq`);
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

  async addCheckpoint(c: Checkpoint): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO audit_checkpoints (chain, seq, hash, at, key, signature) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (chain, seq) DO NOTHING`,
      )
      .run(c.chain, c.seq, c.hash, c.at, c.key, c.signature);
  }

  async checkpoints(chain: string): Promise<Checkpoint[]> {
    return this.db
      .prepare(
        'SELECT chain, seq, hash, at, key, signature FROM audit_checkpoints WHERE chain = ? ORDER BY seq',
      )
      .all(chain) as Checkpoint[];
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
  add('e.identity = ?', query.identity);
  add('e.pipeline = ?', query.pipeline);
  add('e.target = ?', query.target);
  add('e.type = ?', query.type);
  add('e.at >= ?', query.since);
  add('e.at < ?', query.until);
  if (query.table !== undefined) {
    // Stored as ",schema.table,": a bare name matches it in any schema.
    conditions.push(`(instr(${TABLES}, ?) > 0 OR instr(${TABLES}, ?) > 0)`);
    params.push(`,${query.table},`, `.${query.table},`);
  }
  return { where: conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '', params };
}

function recordOf(row: EventRow): AuditRecord {
  const record = {
    chain: row.chain,
    seq: row.seq,
    at: row.at,
    type: row.type,
    identity: row.identity,
    pipeline: row.pipeline,
    target: row.target,
    tables: tablesOf(row.tables),
    body: row.body,
    hash: row.hash,
  };
  if (row.templateHash === null || row.templateBody === null) return record;
  const template = { hash: row.templateHash, body: row.templateBody, tables: record.tables };
  return { ...record, template };
}

/** Tables as stored, ",a,b,", so that instr finds ",name," whole; null for none. */
function tablesText(tables: readonly string[]): string | null {
  return tables.length > 0 ? `,${tables.join(',')},` : null;
}

function tablesOf(text: string | null): string[] {
  return text === null ? [] : text.slice(1, -1).split(',');
}

/** Masked column names, each once. */
export function maskedList(joined: string | null): string[] {
  if (!joined) return [];
  return [...new Set(joined.split(',').filter((name) => name !== ''))].sort();
}
