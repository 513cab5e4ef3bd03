import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { inspect } from 'node:util';
import pg from 'pg';
import { PostgresAuditStore } from '../../src/store/postgres-audit.ts';
import {
  clientConfig,
  createTestDatabase,
  findTestServer,
  type TestDatabase,
  type TestServer,
} from '../fixtures/postgres.ts';
import { auditStoreSuite, checkMigratedStore, LEGACY_EVENTS, legacyRecords } from './audit-store.suite.ts';

/** The audit schema as version 1 (before statement templates) left it. */
const VERSION_1 = `
  CREATE SCHEMA warden_audit;
  CREATE TABLE warden_audit.schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
  INSERT INTO warden_audit.schema_migrations (version) VALUES (1);
  CREATE TABLE warden_audit.audit_events (
    chain text COLLATE "C" NOT NULL, seq bigint NOT NULL, at text COLLATE "C" NOT NULL,
    type text COLLATE "C" NOT NULL, identity text COLLATE "C" NOT NULL, pipeline text COLLATE "C",
    target text COLLATE "C", tables text[] COLLATE "C" NOT NULL DEFAULT '{}', body text NOT NULL,
    hash text NOT NULL, PRIMARY KEY (chain, seq)
  );
  CREATE INDEX audit_events_at ON warden_audit.audit_events (at, chain, seq);
  CREATE INDEX audit_events_identity ON warden_audit.audit_events (identity, at);
  CREATE INDEX audit_events_pipeline ON warden_audit.audit_events (pipeline, at) WHERE pipeline IS NOT NULL;
  CREATE TABLE warden_audit.audit_anchors (chain text COLLATE "C" PRIMARY KEY, seq bigint NOT NULL, hash text NOT NULL);
  CREATE TABLE warden_audit.table_access (
    bucket text COLLATE "C" NOT NULL, identity text COLLATE "C" NOT NULL, pipeline text COLLATE "C" NOT NULL,
    target text COLLATE "C" NOT NULL, table_name text COLLATE "C" NOT NULL, operation text COLLATE "C" NOT NULL,
    first_seen text COLLATE "C" NOT NULL, last_seen text COLLATE "C" NOT NULL, statements bigint NOT NULL,
    rows bigint NOT NULL, masked text[] COLLATE "C" NOT NULL DEFAULT '{}',
    PRIMARY KEY (bucket, identity, pipeline, target, table_name, operation)
  );
  CREATE INDEX table_access_table ON warden_audit.table_access (table_name, bucket);
`;

interface Setup {
  readonly server: TestServer;
  readonly database: TestDatabase;
  readonly url: string;
}

let server: TestServer | undefined;
let database: TestDatabase | undefined;
let ready: Promise<Setup> | undefined;

/** One database for the file; each store opened in it gets a fresh warden_audit schema. */
function setup(): Promise<Setup> {
  ready ??= (async () => {
    server = await findTestServer();
    database = await createTestDatabase(server, 'audit');
    return { server, database, url: urlOf(server, database.name) };
  })();
  return ready;
}

after(async () => {
  await database?.drop();
  await server?.close();
});

function urlOf(server: TestServer, name: string, password = server.password): string {
  const host = server.host.includes(':') ? `[${server.host}]` : server.host;
  const secret = password === undefined ? '' : `:${encodeURIComponent(password)}`;
  return `postgres://${encodeURIComponent(server.user)}${secret}@${host}:${server.port}/${encodeURIComponent(name)}`;
}

async function connect(): Promise<pg.Client> {
  const { server, database } = await setup();
  const client = new pg.Client(clientConfig(server, database.name));
  client.on('error', () => {});
  await client.connect();
  return client;
}

async function dropSchema(): Promise<void> {
  const client = await connect();
  try {
    await client.query('DROP SCHEMA IF EXISTS warden_audit CASCADE');
  } finally {
    await client.end();
  }
}

auditStoreSuite('PostgreSQL', async () => {
  const { url } = await setup();
  const store = await PostgresAuditStore.open(url);
  const admin = await connect();
  await admin.query('SET search_path TO warden_audit');
  return {
    store,
    async tamper(sql, params = []) {
      await admin.query(sql, [...params]);
    },
    async cleanup() {
      await store.close();
      await admin.query('DROP SCHEMA warden_audit CASCADE');
      await admin.end();
    },
  };
});

describe('the PostgreSQL audit store', { timeout: 120_000 }, () => {
  it('migrates once when several instances open a fresh database together', async () => {
    const { url } = await setup();
    await dropSchema();
    const stores = await Promise.all(Array.from({ length: 4 }, () => PostgresAuditStore.open(url)));
    try {
      const client = await connect();
      try {
        const { rows } = await client.query<{ version: number }>(
          'SELECT version FROM warden_audit.schema_migrations ORDER BY version',
        );
        assert.deepEqual(
          rows.map((row) => row.version),
          [1, 2, 3],
        );
      } finally {
        await client.end();
      }
      // Each works on the one schema.
      await stores[0]!.append([], []);
      assert.deepEqual(await stores[3]!.chains(), []);
      // And opening a migrated store again changes nothing.
      await (await PostgresAuditStore.open(url)).close();
    } finally {
      await Promise.all(stores.map((store) => store.close()));
      await dropSchema();
    }
  });

  it('opens a store written before statement templates: its events verify, and its chains go on', async () => {
    const { url } = await setup();
    await dropSchema();
    const client = await connect();
    try {
      await client.query(VERSION_1);
      for (const r of legacyRecords('old', LEGACY_EVENTS)) {
        await client.query(
          `INSERT INTO warden_audit.audit_events (chain, seq, at, type, identity, pipeline, target, tables, body, hash)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
          [r.chain, r.seq, r.at, r.type, r.identity, r.pipeline, r.target, r.tables, r.body, r.hash],
        );
      }
      const store = await PostgresAuditStore.open(url);
      try {
        await checkMigratedStore(store);
      } finally {
        await store.close();
      }
    } finally {
      await client.end();
      await dropSchema();
    }
  });

  it('refuses a schema newer than this Warden', async () => {
    const { url } = await setup();
    await (await PostgresAuditStore.open(url)).close();
    const client = await connect();
    try {
      await client.query('INSERT INTO warden_audit.schema_migrations (version) VALUES (999)');
      await assert.rejects(
        PostgresAuditStore.open(url),
        /version 999, newer than this Warden \(3\): upgrade Warden/,
      );
    } finally {
      await client.end();
      await dropSchema();
    }
  });

  it('never shows the password of the URL in an error', async () => {
    const { server } = await setup();
    const password = 'Hunter2-s3cret/pw';
    const leaks = (error: unknown) => {
      const shown = `${(error as Error).message}\n${inspect(error, { depth: 10 })}`;
      return shown.includes(password) || shown.includes(encodeURIComponent(password));
    };
    const cases = [
      // Nothing listens there.
      `postgres://warden:${encodeURIComponent(password)}@127.0.0.1:1/audit`,
      // The server answers, but there is no such database.
      urlOf(server, 'no_such_database_here', password),
      // Not a URL at all.
      `postgres://warden:${password}@[::1/audit`,
    ];
    for (const url of cases) {
      const error = await PostgresAuditStore.open(url).then(
        () => assert.fail(`opened ${url}`),
        (error: unknown) => error,
      );
      assert.ok(error instanceof Error);
      assert.equal(leaks(error), false, `the error shows the password: ${(error as Error).message}`);
    }
    const refused = await PostgresAuditStore.open(cases[0]!).catch((error: Error) => error);
    assert.match(String((refused as Error).message), /postgres:\/\/warden@127\.0\.0\.1:1\/audit/);
  });

  it('says which chain a duplicate append collided on', async () => {
    const { url } = await setup();
    const store = await PostgresAuditStore.open(url);
    try {
      const record = {
        chain: 'w1',
        seq: 1,
        at: '2025-03-01T10:00:00.000Z',
        type: 'admin',
        identity: 'ops',
        pipeline: null,
        target: null,
        tables: [],
        body: '{}',
        hash: '0'.repeat(64),
      };
      await store.append([record], []);
      await assert.rejects(store.append([record], []), /\(chain, seq\)=\(w1, 1\) already exists/);
    } finally {
      await store.close();
      await dropSchema();
    }
  });
});
