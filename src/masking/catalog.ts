/**
 * What a target's database holds, as masking needs it: every table, view and
 * materialised view outside the system schemas, with its columns by
 * attribute number and, for views, the definition; and the names of the
 * server's own functions (a function of any other schema may read any
 * table, out of sight of lineage). RowDescription names a
 * plain result column by table OID and attribute number; the catalog turns
 * that into schema.table.column, and a view's column into what its
 * definition computes it from.
 *
 * One catalog per target, read through Warden's own upstream connection
 * (the target's credentials), before the first session that needs it. It is
 * read again when asked (a table Warden has not seen appears in a result, a
 * DDL statement went through); until then what it lacks is judged by name.
 */
import type { TargetConfig } from '../config/index.ts';
import { UpstreamQueries } from '../proxy/upstream-query.ts';

export interface CatalogColumn {
  readonly name: string;
  readonly attnum: number;
  readonly typeOid: number;
}

export interface CatalogRelation {
  readonly oid: number;
  readonly schema: string;
  readonly name: string;
  /** r table, p partitioned table, v view, m materialised view, f foreign table. */
  readonly kind: string;
  /** Live columns in attribute order (what `*` expands to). */
  readonly columns: readonly CatalogColumn[];
  /** A view's or materialised view's SELECT, as pg_get_viewdef prints it. */
  readonly definition: string | undefined;
}

export class Catalog {
  private readonly byOid = new Map<number, CatalogRelation>();
  private readonly byName = new Map<string, CatalogRelation>();

  constructor(
    relations: Iterable<CatalogRelation>,
    /** When it was read (ms since the epoch). */
    readonly readAt: number,
    /** The names of the server's own functions (schema pg_catalog); any other function may read any table. */
    private readonly builtins: ReadonlySet<string> = new Set(),
  ) {
    for (const relation of relations) {
      this.byOid.set(relation.oid, relation);
      this.byName.set(`${relation.schema}.${relation.name}`, relation);
    }
  }

  relation(oid: number): CatalogRelation | undefined {
    return this.byOid.get(oid);
  }

  /** A relation by schema-qualified name. */
  named(schema: string, name: string): CatalogRelation | undefined {
    return this.byName.get(`${schema}.${name}`);
  }

  /** Whether `name` (unqualified, or qualified with pg_catalog) is one of the server's own functions. */
  isBuiltinFunction(name: string): boolean {
    const unqualified = name.startsWith('pg_catalog.') ? name.slice('pg_catalog.'.length) : name;
    return !unqualified.includes('.') && this.builtins.has(unqualified);
  }

  get size(): number {
    return this.byOid.size;
  }
}

/** An empty catalog: everything is judged by name. */
export const EMPTY_CATALOG = new Catalog([], 0);

const CATALOG_SQL = `
SELECT c.oid, n.nspname, c.relname, c.relkind, a.attnum, a.attname, a.atttypid,
       CASE WHEN c.relkind IN ('v', 'm') AND a.attnum = 1 THEN pg_get_viewdef(c.oid) END
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname !~ '^pg_toast'
 ORDER BY c.oid, a.attnum`;

const BUILTIN_FUNCTIONS_SQL = `
SELECT DISTINCT p.proname FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'pg_catalog'::regnamespace`;

/** Reads a target's catalog over a connection of its own; rejects with the server's error. */
export async function readCatalog(target: TargetConfig): Promise<Catalog> {
  const connection = await UpstreamQueries.open(target, 'warden catalog');
  try {
    const relations = new Map<number, { relation: CatalogRelation; columns: CatalogColumn[] }>();
    await connection.query(CATALOG_SQL, 'reading its catalog', (values) => {
      const [oid, schema, name, kind, attnum, column, typeOid, definition] = values;
      let entry = relations.get(Number(oid));
      if (entry === undefined) {
        const columns: CatalogColumn[] = [];
        entry = {
          relation: {
            oid: Number(oid),
            schema: schema!,
            name: name!,
            kind: kind!,
            columns,
            definition: definition ?? undefined,
          },
          columns,
        };
        relations.set(Number(oid), entry);
      }
      entry.columns.push({ name: column!, attnum: Number(attnum), typeOid: Number(typeOid) });
    });
    const builtins = new Set<string>();
    await connection.query(BUILTIN_FUNCTIONS_SQL, 'reading its function names', ([name]) => {
      builtins.add(name!);
    });
    return new Catalog(
      [...relations.values()].map((entry) => entry.relation),
      Date.now(),
      builtins,
    );
  } finally {
    connection.close();
  }
}

/**
 * The catalogs of the targets, shared by every session. `ready` reads a
 * target's catalog once (later callers wait for the same read); `stale`
 * asks for a new read, which replaces the old catalog when it arrives.
 */
export class Catalogs {
  private readonly known = new Map<string, Catalog>();
  private readonly reading = new Map<string, Promise<Catalog>>();

  constructor(private readonly read: (target: TargetConfig) => Promise<Catalog> = readCatalog) {}

  /** The catalog as last read, or undefined before the first read finished. */
  current(target: TargetConfig): Catalog | undefined {
    return this.known.get(target.name);
  }

  ready(target: TargetConfig): Promise<Catalog> {
    const known = this.known.get(target.name);
    return known ? Promise.resolve(known) : this.refresh(target);
  }

  /** Reads the catalog again (one read at a time per target); the old one serves meanwhile. */
  refresh(target: TargetConfig): Promise<Catalog> {
    let reading = this.reading.get(target.name);
    if (reading === undefined) {
      reading = this.read(target).then(
        (catalog) => {
          this.reading.delete(target.name);
          this.known.set(target.name, catalog);
          return catalog;
        },
        (error: unknown) => {
          this.reading.delete(target.name);
          throw error;
        },
      );
      this.reading.set(target.name, reading);
    }
    return reading;
  }
}
