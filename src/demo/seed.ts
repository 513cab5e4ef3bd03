/**
 * The demo schema (seed.sql) and the login role Warden itself connects as.
 */
import { readFile } from 'node:fs/promises';

/** Anything that runs a multi-statement simple query: a pg Client or Pool, for instance. */
export interface SqlRunner {
  query(text: string): Promise<unknown>;
}

export interface SeedOptions {
  /** Password of the login role Warden connects as. */
  readonly appPassword: string;
  /** Its name. Default 'warden_app'. */
  readonly appRole?: string;
}

/** Rows seed.sql creates, for checks. */
export const DEMO_ROW_COUNTS = { customers: 200, orders: 1000, employees: 30 } as const;

export const DEMO_TABLES = Object.keys(DEMO_ROW_COUNTS) as readonly (keyof typeof DEMO_ROW_COUNTS)[];

export function demoSeedSql(): Promise<string> {
  return readFile(new URL('./seed.sql', import.meta.url), 'utf8');
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function quoteLiteral(value: string): string {
  // E'' keeps backslashes literal whatever standard_conforming_strings says.
  const body = value.replaceAll("'", "''");
  return value.includes('\\') ? `E'${body.replaceAll('\\', '\\\\')}'` : `'${body}'`;
}

/**
 * Create (or re-create) the demo tables in the current database, and make
 * sure the app role exists with this password and may read and write them.
 * Roles are cluster-wide: an existing role is kept and its password reset.
 */
export async function seedDemo(client: SqlRunner, options: SeedOptions): Promise<void> {
  const role = quoteIdent(options.appRole ?? 'warden_app');
  const roleLiteral = quoteLiteral(options.appRole ?? 'warden_app');
  const password = quoteLiteral(options.appPassword);
  await client.query(await demoSeedSql());
  // Utility statements take no bind parameters, hence the quoting above.
  // Two sessions may seed at once, and CREATE ROLE has no IF NOT EXISTS:
  // a duplicate_object from the loser of that race means the role is there.
  await client.query(`DO $seed$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ${roleLiteral}) THEN
    BEGIN
      CREATE ROLE ${role} LOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL;
    END;
  END IF;
END
$seed$;
ALTER ROLE ${role} LOGIN PASSWORD ${password};
GRANT USAGE ON SCHEMA public TO ${role};
GRANT SELECT, INSERT, UPDATE, DELETE ON customers, orders, employees TO ${role};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ${role};`);
}
