/**
 * The audit store's contract, run against every implementation
 * (test/store/sqlite-audit.test.ts, test/store/postgres-audit.test.ts):
 * records are built from events by ChainAppender, as the audit worker does.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { ChainVerifier, GENESIS, linkHash } from '../../src/audit/chain.ts';
import { CheckpointSigner, signatureHolds } from '../../src/audit/checkpoints.ts';
import {
  type AdminAction,
  type AuditEvent,
  type ConnectionClosed,
  type ConnectionOpened,
  canonicalJson,
  type LoginFailed,
  type StatementEvent,
} from '../../src/audit/events.ts';
import { ChainAppender } from '../../src/audit/records.ts';
import { templateHash } from '../../src/audit/templates.ts';
import type { AccessDelta, AccessRow, AuditRecord, AuditStore } from '../../src/store/audit.ts';

export interface OpenedStore {
  readonly store: AuditStore;
  /**
   * Runs raw SQL against the store's own database, as an attacker with
   * write access would: tables unqualified (audit_events, audit_templates,
   * audit_anchors, table_access), parameters written $1, $2...
   */
  tamper(sql: string, params?: readonly unknown[]): Promise<void>;
  /** Closes the store (if the test did not) and removes everything it stored. */
  cleanup(): Promise<void>;
}

type Fields<T> = Partial<Omit<T, 'type'>>;

/** A minute after 10:00 on a fixed day, as the events' ISO form. */
export function minute(n: number): string {
  return new Date(Date.parse('2025-03-01T10:00:00.000Z') + n * 60_000).toISOString();
}

function day(n: number): string {
  return new Date(Date.parse('2025-03-01T12:00:00.000Z') + n * 86_400_000).toISOString();
}

export function statement(fields: Fields<StatementEvent> = {}): StatementEvent {
  return {
    type: 'statement',
    at: minute(0),
    identity: 'alice',
    session: 'session-1',
    target: 'shop',
    pipeline: null,
    applicationName: 'psql',
    tags: {},
    source: 'query',
    text: 'SELECT * FROM orders WHERE id = ?',
    fingerprint: 'f00d',
    kinds: ['select'],
    tables: [{ table: 'public.orders', operation: 'select' }],
    decision: 'allow',
    rule: null,
    matched: [],
    outcome: 'ok',
    sqlstate: null,
    rows: 1,
    masked: [],
    maskedRows: 0,
    durationMs: 2,
    ...fields,
  };
}

function opened(fields: Fields<ConnectionOpened> = {}): ConnectionOpened {
  return {
    type: 'connection.open',
    at: minute(0),
    identity: 'alice',
    session: 'session-1',
    kind: 'human',
    groups: ['analysts'],
    client: '10.0.0.7:51234',
    applicationName: 'psql',
    pipeline: null,
    tls: true,
    target: 'shop',
    ...fields,
  };
}

function closed(fields: Fields<ConnectionClosed> = {}): ConnectionClosed {
  return {
    type: 'connection.close',
    at: minute(0),
    identity: 'alice',
    session: 'session-1',
    target: 'shop',
    pipeline: null,
    durationMs: 1000,
    statements: 3,
    ...fields,
  };
}

function loginFailed(fields: Fields<LoginFailed> = {}): LoginFailed {
  return {
    type: 'login.failed',
    at: minute(0),
    identity: 'mallory',
    client: '10.0.0.9:40000',
    target: 'shop',
    sqlstate: '28P01',
    reason: 'wrong key',
    ...fields,
  };
}

function admin(fields: Fields<AdminAction> = {}): AdminAction {
  return { type: 'admin', at: minute(0), identity: 'ops', action: 'reload', detail: 'by hand', ...fields };
}

/**
 * Records as Warden wrote them before statement templates: every event's
 * whole canonical JSON is its body. For the tests that open such a store.
 */
export function legacyRecords(chain: string, events: readonly AuditEvent[]): AuditRecord[] {
  let previous = GENESIS;
  return events.map((event, i) => {
    const seq = i + 1;
    const body = canonicalJson({ ...event, chain, seq });
    previous = linkHash(previous, body);
    return {
      chain,
      seq,
      at: event.at,
      type: event.type,
      identity: event.identity,
      pipeline: 'pipeline' in event ? event.pipeline : null,
      target: 'target' in event ? event.target : null,
      tables: event.type === 'statement' ? [...new Set(event.tables.map((t) => t.table))] : [],
      body,
      hash: previous,
    };
  });
}

/** Events of every kind, as a store written before statement templates holds them. */
export const LEGACY_EVENTS: readonly AuditEvent[] = [
  opened({ at: minute(0) }),
  statement({ at: minute(1), tables: [{ table: 'public.orders', operation: 'select' }] }),
  admin({ at: minute(2) }),
];

/**
 * Checks a store that held LEGACY_EVENTS in chain 'old' when it was
 * migrated: they read and verify as they were, and the chain goes on with
 * templated statements.
 */
export async function checkMigratedStore(store: AuditStore): Promise<void> {
  const legacy = legacyRecords('old', LEGACY_EVENTS);
  assert.deepEqual(await collect(store.chainRecords('old')), legacy);
  const more = await write(store, 'old', [
    statement({ at: minute(3), tables: [{ table: 'orders', operation: 'update' }] }),
  ]);
  assert.equal(more.records[0]?.seq, 4);
  assert.ok(more.records[0]?.template, 'new statements are templated');
  const verifier = await verify(store, 'old');
  assert.deepEqual([verifier.problem, verifier.checked], [undefined, 4]);
  assert.deepEqual(ids(await collect(store.events({ table: 'orders' }))), ['old#2', 'old#4']);
  assert.deepEqual(ids(await collect(store.events({ identity: 'alice', type: 'statement' }))), [
    'old#2',
    'old#4',
  ]);
}

/** Chains events after the chain's head and appends them in one batch, as the audit worker does. */
async function write(
  store: AuditStore,
  chain: string,
  events: readonly AuditEvent[],
): Promise<{ records: AuditRecord[]; access: AccessDelta[] }> {
  const batch = new ChainAppender(chain, await store.head(chain)).append(events);
  await store.append(batch.records, batch.access);
  return batch;
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const item of items) all.push(item);
  return all;
}

const ids = (records: readonly AuditRecord[]) => records.map((r) => `${r.chain}#${r.seq}`);

/** Checks a chain from its anchor, as `warden audit verify` does. */
async function verify(store: AuditStore, chain: string): Promise<ChainVerifier> {
  const verifier = new ChainVerifier(chain, await store.anchor(chain), await store.checkpoints(chain));
  for await (const record of store.chainRecords(chain)) if (!verifier.check(record)) break;
  verifier.finish();
  return verifier;
}

const SIGNER = new CheckpointSigner(generateKeyPairSync('ed25519').privateKey);

/** Access rows in a fixed order, so that ties the stores order differently do not matter. */
function sorted(rows: readonly AccessRow[]): AccessRow[] {
  const key = (r: AccessRow) => [r.table, r.operation, r.identity, r.pipeline, r.target].join('\u0000');
  return [...rows].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

/**
 * Two chains, written newest chain first: w1 holds seven events of every
 * kind, w2 two events at the same times as two of w1's.
 */
async function seedTrail(store: AuditStore): Promise<AuditRecord[]> {
  const w2 = await write(store, 'w2', [
    statement({ at: minute(1), identity: 'carol', pipeline: 'etl', session: 's3' }),
    closed({ at: minute(2), identity: 'carol', pipeline: 'etl', session: 's3' }),
  ]);
  const w1 = await write(store, 'w1', [
    opened({ at: minute(0), pipeline: 'etl' }),
    statement({ at: minute(1), pipeline: 'etl' }),
    statement({
      at: minute(2),
      identity: 'bob',
      target: 'crm',
      session: 's2',
      tables: [
        { table: 'sales.orders', operation: 'update' },
        { table: 'public.customers', operation: 'select' },
      ],
    }),
    statement({
      at: minute(3),
      identity: 'bob',
      session: 's2',
      tables: [{ table: 'orders', operation: 'select' }],
      masked: ['email'],
    }),
    admin({ at: minute(4) }),
    statement({
      at: minute(5),
      pipeline: 'report',
      target: 'crm',
      tables: [{ table: 'myorders', operation: 'select' }],
    }),
    loginFailed({ at: minute(6) }),
  ]);
  return [...w1.records, ...w2.records];
}

export function auditStoreSuite(name: string, open: () => Promise<OpenedStore>): void {
  describe(`audit store contract: ${name}`, { timeout: 120_000 }, () => {
    let subject: OpenedStore;
    let store: AuditStore;

    beforeEach(async () => {
      subject = await open();
      store = subject.store;
    });

    afterEach(async () => {
      await subject.cleanup();
    });

    describe('append and head', () => {
      it('has no head, anchor or chain before anything is written', async () => {
        assert.equal(await store.head('w1'), undefined);
        assert.equal(await store.anchor('w1'), undefined);
        assert.deepEqual(await store.chains(), []);
        assert.deepEqual(await collect(store.events({})), []);
      });

      it("gives each chain's newest event as its head, and the next batch continues from it", async () => {
        const first = await write(store, 'w1', [opened(), statement({ at: minute(1) })]);
        await write(store, 'w2', [admin()]);
        assert.deepEqual(await store.head('w1'), { seq: 2, hash: first.records[1]!.hash });
        const second = await write(store, 'w1', [statement({ at: minute(2) }), closed({ at: minute(3) })]);
        assert.deepEqual(
          second.records.map((r) => r.seq),
          [3, 4],
        );
        assert.deepEqual(await store.head('w1'), { seq: 4, hash: second.records[1]!.hash });
        assert.equal((await store.head('w2'))?.seq, 1);
        assert.equal(await store.anchor('w1'), undefined, 'no anchor before a prune');
        assert.deepEqual(await collect(store.chainRecords('w1')), [...first.records, ...second.records]);
      });

      it('stores records as they were given: tables, nulls and body unchanged', async () => {
        const records = await seedTrail(store);
        const stored = await collect(store.events({}));
        const byId = new Map(records.map((r) => [`${r.chain}#${r.seq}`, r]));
        assert.equal(stored.length, records.length);
        for (const record of stored) assert.deepEqual(record, byId.get(`${record.chain}#${record.seq}`));
        const withTwoTables = stored.find((r) => r.chain === 'w1' && r.seq === 3)!;
        assert.deepEqual(withTwoTables.tables, ['sales.orders', 'public.customers']);
        const action = stored.find((r) => r.type === 'admin')!;
        assert.deepEqual([action.pipeline, action.target, action.tables], [null, null, []]);
      });

      it('stores a statement as a body that names its template, and the template with it', async () => {
        await seedTrail(store);
        const stored = await collect(store.events({}));
        const statements = stored.filter((r) => r.type === 'statement');
        assert.equal(statements.length, 5);
        for (const record of statements) {
          const body = JSON.parse(record.body) as Record<string, unknown>;
          assert.equal(body.text, undefined, 'the text is in the template, not in each body');
          assert.equal(body.template, record.template?.hash);
          assert.equal(templateHash(record.template!.body), record.template!.hash);
          assert.deepEqual(record.tables, record.template!.tables);
        }
        const others = stored.filter((r) => r.type !== 'statement');
        for (const record of others) assert.equal(record.template, undefined);
        const [first] = await write(store, 'w2', [
          statement({ at: minute(9), identity: 'carol', pipeline: 'etl', session: 's4', rows: 7 }),
        ]).then((batch) => batch.records);
        assert.equal(
          first!.template?.hash,
          statements.find((r) => r.chain === 'w2')!.template?.hash,
          'another execution of a statement, by the same identity, names the same template',
        );
      });

      it('accepts an empty batch', async () => {
        await store.append([], []);
        assert.deepEqual(await store.chains(), []);
      });

      it('rejects a batch with a (chain, seq) already stored, and stores none of it', async () => {
        const first = await write(store, 'w1', [
          statement({ at: minute(1), rows: 5 }),
          statement({ at: minute(2), rows: 5 }),
          statement({ at: minute(3), rows: 5 }),
        ]);
        const accessBefore = await store.access({});
        // A second writer that believes the head is #2: its #3 collides, its #4 is new.
        const rival = new ChainAppender('w1', { seq: 2, hash: first.records[1]!.hash }).append([
          statement({ at: minute(4), identity: 'rival', rows: 7, masked: ['email'] }),
          statement({ at: minute(5), identity: 'rival', rows: 7 }),
        ]);
        // And records of another chain in the same batch, which must not be stored either.
        const other = new ChainAppender('w2', undefined).append([statement({ at: minute(4), rows: 9 })]);
        await assert.rejects(
          store.append([...other.records, ...rival.records], [...other.access, ...rival.access]),
        );
        assert.deepEqual(await store.head('w1'), { seq: 3, hash: first.records[2]!.hash });
        assert.equal(await store.head('w2'), undefined);
        assert.deepEqual(await store.chains(), ['w1']);
        assert.deepEqual(ids(await collect(store.events({}))), ['w1#1', 'w1#2', 'w1#3']);
        assert.deepEqual(await store.access({}), accessBefore, 'no access counted for a rejected batch');
        assert.equal((await collect(store.events({ identity: 'rival' }))).length, 0);
        assert.equal((await verify(store, 'w1')).problem, undefined);
      });

      it('rejects a batch that holds the same (chain, seq) twice', async () => {
        const batch = new ChainAppender('w1', undefined).append([statement()]);
        await assert.rejects(store.append([batch.records[0]!, batch.records[0]!], batch.access));
        assert.equal(await store.head('w1'), undefined);
        assert.deepEqual(await store.access({}), []);
      });
    });

    describe('events()', () => {
      it('returns every event oldest first: by time, then chain, then seq', async () => {
        await seedTrail(store);
        assert.deepEqual(ids(await collect(store.events({}))), [
          'w1#1',
          'w1#2',
          'w2#1',
          'w1#3',
          'w2#2',
          'w1#4',
          'w1#5',
          'w1#6',
          'w1#7',
        ]);
      });

      it('filters by identity, pipeline, target and type, alone and together', async () => {
        await seedTrail(store);
        const find = async (query: Parameters<AuditStore['events']>[0]) =>
          ids(await collect(store.events(query)));
        assert.deepEqual(await find({ identity: 'alice' }), ['w1#1', 'w1#2', 'w1#6']);
        assert.deepEqual(await find({ identity: 'nobody' }), []);
        assert.deepEqual(await find({ pipeline: 'etl' }), ['w1#1', 'w1#2', 'w2#1', 'w2#2']);
        assert.deepEqual(await find({ target: 'crm' }), ['w1#3', 'w1#6']);
        assert.deepEqual(await find({ type: 'statement' }), ['w1#2', 'w2#1', 'w1#3', 'w1#4', 'w1#6']);
        assert.deepEqual(await find({ type: 'login.failed' }), ['w1#7']);
        assert.deepEqual(await find({ identity: 'alice', type: 'statement' }), ['w1#2', 'w1#6']);
        assert.deepEqual(await find({ pipeline: 'etl', target: 'shop', identity: 'carol' }), [
          'w2#1',
          'w2#2',
        ]);
      });

      it('takes since as inclusive and until as exclusive', async () => {
        await seedTrail(store);
        const find = async (query: Parameters<AuditStore['events']>[0]) =>
          ids(await collect(store.events(query)));
        assert.deepEqual(await find({ since: minute(2), until: minute(5) }), [
          'w1#3',
          'w2#2',
          'w1#4',
          'w1#5',
        ]);
        assert.deepEqual(await find({ since: minute(5) }), ['w1#6', 'w1#7']);
        assert.deepEqual(await find({ until: minute(1) }), ['w1#1']);
        assert.deepEqual(await find({ since: minute(3), until: minute(3) }), []);
      });

      it('finds a table by bare name in any schema, or by schema.table exactly', async () => {
        await seedTrail(store);
        const find = async (table: string) => ids(await collect(store.events({ table })));
        assert.deepEqual(await find('orders'), ['w1#2', 'w2#1', 'w1#3', 'w1#4']);
        assert.deepEqual(await find('public.orders'), ['w1#2', 'w2#1']);
        assert.deepEqual(await find('sales.orders'), ['w1#3']);
        assert.deepEqual(await find('customers'), ['w1#3']);
        assert.deepEqual(await find('myorders'), ['w1#6']);
        assert.deepEqual(await find('rders'), [], 'a name is matched whole, never as a suffix');
        assert.deepEqual(await find('public'), []);
        assert.deepEqual(ids(await collect(store.events({ table: 'orders', identity: 'bob' }))), [
          'w1#3',
          'w1#4',
        ]);
      });

      it('stops after limit events, the oldest', async () => {
        await seedTrail(store);
        assert.deepEqual(ids(await collect(store.events({ limit: 3 }))), ['w1#1', 'w1#2', 'w2#1']);
        assert.deepEqual(ids(await collect(store.events({ limit: 2, type: 'statement' }))), ['w1#2', 'w2#1']);
        assert.deepEqual(await collect(store.events({ limit: 0 })), []);
        assert.equal((await collect(store.events({ limit: 100 }))).length, 9);
      });

      it('reads a large trail in order, across many pages, from one batch of thousands', async () => {
        const count = 3500;
        const events = Array.from({ length: count }, (_, i) =>
          statement({
            // Several events share each millisecond, so order within a time is by chain and seq.
            at: new Date(Date.parse(minute(0)) + Math.floor(i / 3)).toISOString(),
            identity: i % 2 === 0 ? 'even' : 'odd',
            rows: i,
            masked: i % 100 === 0 ? [`col${i % 7}`] : [],
          }),
        );
        const started = Date.now();
        const big = await write(store, 'big', events);
        await write(store, 'small', [statement({ at: minute(0) }), statement({ at: minute(30) })]);
        const appendMs = Date.now() - started;
        assert.ok(appendMs < 30_000, `appending ${count} records took ${appendMs} ms`);

        const all = await collect(store.events({}));
        assert.equal(all.length, count + 2);
        for (let i = 1; i < all.length; i++) {
          const [a, b] = [all[i - 1]!, all[i]!];
          assert.ok(
            a.at < b.at || (a.at === b.at && (a.chain < b.chain || (a.chain === b.chain && a.seq < b.seq))),
            `events ${a.chain}#${a.seq} and ${b.chain}#${b.seq} are out of order`,
          );
        }
        assert.equal(new Set(ids(all)).size, all.length, 'no event twice across pages');

        assert.deepEqual(
          ids(await collect(store.events({ identity: 'odd', limit: 1500 }))),
          big.records
            .filter((r) => r.identity === 'odd')
            .slice(0, 1500)
            .map((r) => `${r.chain}#${r.seq}`),
        );
        assert.equal((await collect(store.events({ limit: 2345 }))).length, 2345);

        const chain = await collect(store.chainRecords('big'));
        assert.deepEqual(chain, big.records);
        const verifier = await verify(store, 'big');
        assert.equal(verifier.problem, undefined);
        assert.equal(verifier.checked, count);

        const [access] = await store.access({ identity: 'even' });
        assert.equal(access?.statements, count / 2);
        assert.equal(access?.rows, (count / 2) * (count / 2 - 1));
      });

      it('lets a reader stop early', async () => {
        await seedTrail(store);
        const seen: string[] = [];
        for await (const record of store.events({})) {
          seen.push(`${record.chain}#${record.seq}`);
          if (seen.length === 2) break;
        }
        assert.deepEqual(seen, ['w1#1', 'w1#2']);
        assert.equal(await store.chains().then((c) => c.length), 2, 'the store still answers');
      });
    });

    describe('eventsAfter()', () => {
      it('returns events after the seq given per chain, and all of chains not named, oldest first', async () => {
        await seedTrail(store);
        const after = async (known: Record<string, number>, limit = 100) =>
          ids(await store.eventsAfter(new Map(Object.entries(known)), limit));
        assert.deepEqual(await after({ w1: 4 }), ['w2#1', 'w2#2', 'w1#5', 'w1#6', 'w1#7']);
        assert.deepEqual(await after({ w1: 4, w2: 1 }), ['w2#2', 'w1#5', 'w1#6', 'w1#7']);
        assert.deepEqual(await after({ w1: 7, w2: 2 }), []);
        assert.deepEqual(await after({ w1: 0, w2: 0 }), ids(await collect(store.events({}))));
        assert.deepEqual(await after({}), ids(await collect(store.events({}))));
        assert.deepEqual(await after({ ghost: 3 }), ids(await collect(store.events({}))));
        assert.deepEqual(await after({ w1: 4 }, 2), ['w2#1', 'w2#2']);
        assert.deepEqual(await after({}, 0), []);
      });

      it('sees a chain that starts after the tail began', async () => {
        await write(store, 'w1', [statement()]);
        const seen = new Map([['w1', 1]]);
        assert.deepEqual(await store.eventsAfter(seen, 10), []);
        await write(store, 'late', [admin({ at: minute(9) })]);
        assert.deepEqual(ids(await store.eventsAfter(seen, 10)), ['late#1']);
      });
    });

    describe('chains() and chainRecords()', () => {
      it('lists each chain once, in order', async () => {
        await write(store, 'warden-b', [admin()]);
        await write(store, 'warden-a', [admin(), admin()]);
        await write(store, 'warden-b', [admin()]);
        await write(store, 'Warden-C', [admin()]);
        assert.deepEqual(await store.chains(), ['Warden-C', 'warden-a', 'warden-b']);
      });

      it("returns one chain's records in order of seq, whatever their times", async () => {
        const { records } = await write(store, 'w1', [
          statement({ at: minute(5) }),
          statement({ at: minute(1) }),
          statement({ at: minute(3) }),
        ]);
        await write(store, 'w2', [statement({ at: minute(2) })]);
        const more = await write(store, 'w1', [statement({ at: minute(0) })]);
        assert.deepEqual(await collect(store.chainRecords('w1')), [...records, ...more.records]);
        assert.deepEqual(await collect(store.chainRecords('nothing')), []);
      });
    });

    describe('access()', () => {
      const at = (hhmm: string) => `2025-03-01T${hhmm}:00.000Z`;
      const orders = [{ table: 'public.orders', operation: 'select' }];

      async function seedAccess(): Promise<void> {
        await write(store, 'w1', [
          statement({ at: at('10:05'), pipeline: 'etl', rows: 5, masked: ['email'] }),
          statement({ at: at('10:20'), pipeline: 'etl', rows: 3, masked: ['ssn', 'email'] }),
          statement({ at: at('10:25'), pipeline: 'etl', rows: 100, outcome: 'not-run' }),
          statement({
            at: at('10:30'),
            identity: 'bob',
            tables: [{ table: 'sales.orders', operation: 'select' }],
          }),
          statement({
            at: at('10:35'),
            pipeline: 'etl',
            rows: 4,
            tables: [{ table: 'public.orders', operation: 'update' }],
          }),
          statement({ at: at('11:10'), pipeline: 'etl', rows: 2, masked: ['phone'] }),
          statement({ at: at('11:15'), tables: [{ table: 'public.customers', operation: 'select' }] }),
        ]);
        // A later batch adds to the 10:00 bucket's row already stored.
        await write(store, 'w2', [
          statement({ at: at('10:40'), pipeline: 'etl', rows: 1, masked: ['email', 'card'], tables: orders }),
          statement({ at: at('10:45'), pipeline: 'etl', rows: 0, outcome: 'error', tables: orders }),
        ]);
      }

      it('sums the hourly buckets per identity, pipeline, target, table and operation', async () => {
        await seedAccess();
        assert.deepEqual(sorted(await store.access({})), [
          {
            identity: 'alice',
            pipeline: '',
            target: 'shop',
            table: 'public.customers',
            operation: 'select',
            firstSeen: at('11:15'),
            lastSeen: at('11:15'),
            statements: 1,
            rows: 1,
            masked: [],
          },
          {
            identity: 'alice',
            pipeline: 'etl',
            target: 'shop',
            table: 'public.orders',
            operation: 'select',
            firstSeen: at('10:05'),
            lastSeen: at('11:10'),
            statements: 5,
            rows: 11,
            masked: ['card', 'email', 'phone', 'ssn'],
          },
          {
            identity: 'alice',
            pipeline: 'etl',
            target: 'shop',
            table: 'public.orders',
            operation: 'update',
            firstSeen: at('10:35'),
            lastSeen: at('10:35'),
            statements: 1,
            rows: 4,
            masked: [],
          },
          {
            identity: 'bob',
            pipeline: '',
            target: 'shop',
            table: 'sales.orders',
            operation: 'select',
            firstSeen: at('10:30'),
            lastSeen: at('10:30'),
            statements: 1,
            rows: 1,
            masked: [],
          },
        ]);
      });

      it('sums only the buckets the time range touches', async () => {
        await seedAccess();
        const select = async (since?: string, until?: string) =>
          (await store.access({ table: 'public.orders', pipeline: 'etl', since, until })).find(
            (row) => row.operation === 'select',
          );
        const late = await select(at('11:00'));
        assert.deepEqual(
          [late?.statements, late?.rows, late?.firstSeen, late?.lastSeen, late?.masked],
          [1, 2, at('11:10'), at('11:10'), ['phone']],
        );
        const early = await select(undefined, at('11:00'));
        assert.deepEqual(
          [early?.statements, early?.rows, early?.firstSeen, early?.lastSeen, early?.masked],
          [4, 9, at('10:05'), at('10:45'), ['card', 'email', 'ssn']],
        );
        assert.equal((await select(at('12:00'))) ?? null, null);
        assert.equal((await select(undefined, at('10:00'))) ?? null, null);
        assert.equal(
          (await select(at('10:40'), at('10:41')))?.statements,
          4,
          'a bucket whose activity the range overlaps counts whole',
        );
        assert.equal((await select(at('10:50'), at('11:05'))) ?? null, null, 'no activity in the range');
      });

      it('finds a table by bare name in any schema, or by schema.table', async () => {
        await seedAccess();
        const tables = async (table: string) =>
          [...new Set((await store.access({ table })).map((row) => row.table))].sort();
        assert.deepEqual(await tables('orders'), ['public.orders', 'sales.orders']);
        assert.deepEqual(await tables('public.orders'), ['public.orders']);
        assert.deepEqual(await tables('customers'), ['public.customers']);
        assert.deepEqual(await tables('rders'), []);
        const bob = await store.access({ table: 'orders', identity: 'bob' });
        assert.deepEqual(
          bob.map((row) => row.table),
          ['sales.orders'],
        );
        assert.deepEqual(await store.access({ target: 'elsewhere' }), []);
      });

      it('keeps masked column names as a set across batches, even when a batch masks none', async () => {
        const key = { pipeline: 'etl', tables: orders };
        await write(store, 'w1', [statement({ ...key, at: at('10:05'), masked: ['ssn', 'email'] })]);
        await write(store, 'w1', [statement({ ...key, at: at('10:10'), masked: [] })]);
        await write(store, 'w1', [statement({ ...key, at: at('10:15'), masked: ['email', 'card'] })]);
        await write(store, 'w1', [statement({ ...key, at: at('10:20'), masked: [] })]);
        const [row] = await store.access({});
        assert.deepEqual(row?.masked, ['card', 'email', 'ssn']);
        assert.equal(row?.statements, 4);
      });

      it('merges deltas for the same row within one batch', async () => {
        const delta: AccessDelta = {
          bucket: at('10:00'),
          identity: 'alice',
          pipeline: '',
          target: 'shop',
          table: 'public.orders',
          operation: 'select',
          firstSeen: at('10:10'),
          lastSeen: at('10:20'),
          statements: 2,
          rows: 10,
          masked: ['b', 'a'],
        };
        await store.append(
          [],
          [
            delta,
            {
              ...delta,
              firstSeen: at('10:01'),
              lastSeen: at('10:15'),
              statements: 1,
              rows: 1,
              masked: ['c', 'a'],
            },
          ],
        );
        assert.deepEqual(await store.access({}), [
          {
            identity: 'alice',
            pipeline: '',
            target: 'shop',
            table: 'public.orders',
            operation: 'select',
            firstSeen: at('10:01'),
            lastSeen: at('10:20'),
            statements: 3,
            rows: 11,
            masked: ['a', 'b', 'c'],
          },
        ]);
      });
    });

    describe('prune()', () => {
      it('removes old events, anchors each chain at the last removed, and the rest still verifies', async () => {
        const p = await write(
          store,
          'p',
          [1, 2, 3, 4, 5].map((n) => statement({ at: day(n), rows: n })),
        );
        const q = await write(store, 'q', [admin({ at: day(1) }), admin({ at: day(2) })]);

        assert.equal(await store.prune(day(3)), 4);
        assert.deepEqual(await store.anchor('p'), { seq: 2, hash: p.records[1]!.hash });
        assert.deepEqual(await store.anchor('q'), { seq: 2, hash: q.records[1]!.hash });
        assert.deepEqual(ids(await collect(store.events({}))), ['p#3', 'p#4', 'p#5']);
        assert.deepEqual(await store.head('p'), { seq: 5, hash: p.records[4]!.hash });
        assert.deepEqual(await store.head('q'), await store.anchor('q'), 'an emptied chain keeps its head');
        assert.deepEqual(await store.chains(), ['p', 'q'], 'and is still listed');

        const verified = await verify(store, 'p');
        assert.equal(verified.problem, undefined);
        assert.equal(verified.checked, 3);
        assert.equal((await verify(store, 'q')).problem, undefined);

        const [access] = await store.access({});
        assert.deepEqual([access?.statements, access?.rows, access?.firstSeen], [3, 12, day(3)]);

        assert.equal(await store.prune(day(3)), 0, 'pruning again removes nothing');
        assert.deepEqual(await store.anchor('p'), { seq: 2, hash: p.records[1]!.hash });
        assert.equal(await store.prune(day(1)), 0, 'an earlier cut does not move the anchor back');
        assert.deepEqual(await store.anchor('p'), { seq: 2, hash: p.records[1]!.hash });

        // The emptied chain continues from its anchor.
        const next = await write(store, 'q', [admin({ at: day(6) })]);
        assert.equal(next.records[0]?.seq, 3);
        const q2 = await verify(store, 'q');
        assert.deepEqual([q2.problem, q2.checked], [undefined, 1]);

        assert.equal(await store.prune(day(10)), 4);
        assert.deepEqual(await store.anchor('p'), { seq: 5, hash: p.records[4]!.hash });
        assert.deepEqual(await store.anchor('q'), { seq: 3, hash: next.records[0]!.hash });
        assert.deepEqual(await collect(store.events({})), []);
        assert.deepEqual(await store.access({}), []);
      });

      it('keeps a chain verifiable when its events are not in order of time', async () => {
        // A long statement is logged when it ends, after a short one that started later.
        await write(store, 'w1', [
          statement({ at: day(1) }),
          statement({ at: day(5) }),
          statement({ at: day(3) }),
          statement({ at: day(6) }),
        ]);
        const before = ids(await collect(store.events({})));
        const removed = await store.prune(day(4));
        const after = await collect(store.events({}));
        assert.equal(removed, before.length - after.length);
        assert.ok(removed >= 1, 'the oldest event is removed');
        assert.ok(!ids(after).includes('w1#1'));
        for (const id of ['w1#2', 'w1#4'])
          assert.ok(ids(after).includes(id), `${id} is newer than the cut: kept`);
        const verified = await verify(store, 'w1');
        assert.equal(verified.problem, undefined, verified.problem?.message);
        assert.equal(verified.checked, after.length);
      });
    });

    describe('verifying a stored chain', () => {
      async function seedChain(): Promise<AuditRecord[]> {
        const first = await write(store, 'v', [
          opened({ at: minute(0), session: 'sv' }),
          statement({ at: minute(1), session: 'sv', rows: 2, masked: ['email'] }),
          statement({
            at: minute(2),
            session: 'sv',
            rows: 5,
            tables: [{ table: 'orders', operation: 'delete' }],
          }),
        ]);
        const second = await write(store, 'v', [
          statement({ at: minute(3), session: 'sv', rows: 1 }),
          statement({ at: minute(4), session: 'sv', rows: 8 }),
          closed({ at: minute(5), session: 'sv' }),
        ]);
        // Another chain in the same store, left alone by every tamper below.
        await write(store, 'other', [statement({ at: minute(2) })]);
        return [...first.records, ...second.records];
      }

      it('finds a chain built by ChainAppender clean', async () => {
        await seedChain();
        const verifier = await verify(store, 'v');
        assert.equal(verifier.problem, undefined);
        assert.equal(verifier.checked, 6);
      });

      it('detects an edited body', async () => {
        await seedChain();
        await subject.tamper(
          `UPDATE audit_events SET body = replace(body, '"rows":5', '"rows":0') WHERE chain = $1 AND seq = $2`,
          ['v', 3],
        );
        const stored = (await collect(store.chainRecords('v')))[2]!;
        assert.match(stored.body, /"rows":0/, 'the tamper took');
        const { problem } = await verify(store, 'v');
        assert.deepEqual([problem?.kind, problem?.seq], ['edited', 3]);
        assert.equal((await verify(store, 'other')).problem, undefined);
      });

      it('detects an edited search column the body disagrees with', async () => {
        await seedChain();
        await subject.tamper('UPDATE audit_events SET identity = $1 WHERE chain = $2 AND seq = $3', [
          'somebody-else',
          'v',
          2,
        ]);
        const { problem } = await verify(store, 'v');
        assert.deepEqual([problem?.kind, problem?.seq], ['edited', 2]);
      });

      it('detects an edit re-hashed in place, at the next event', async () => {
        const records = await seedChain();
        const body = records[3]!.body.replace('"rows":1', '"rows":0');
        await subject.tamper('UPDATE audit_events SET body = $1, hash = $2 WHERE chain = $3 AND seq = $4', [
          body,
          linkHash(records[2]!.hash, body),
          'v',
          4,
        ]);
        const { problem } = await verify(store, 'v');
        assert.deepEqual([problem?.kind, problem?.seq], ['edited', 5]);
      });

      it('detects a deleted event', async () => {
        await seedChain();
        await subject.tamper('DELETE FROM audit_events WHERE chain = $1 AND seq = $2', ['v', 4]);
        const { problem } = await verify(store, 'v');
        assert.deepEqual([problem?.kind, problem?.seq], ['deleted', 4]);
      });

      it('detects reordered events', async () => {
        await seedChain();
        const move = (from: number, to: number) =>
          subject.tamper('UPDATE audit_events SET seq = $1 WHERE chain = $2 AND seq = $3', [to, 'v', from]);
        await move(2, -1);
        await move(3, 2);
        await move(-1, 3);
        const { problem } = await verify(store, 'v');
        assert.deepEqual([problem?.kind, problem?.seq], ['reordered', 2]);
      });

      it('detects an edited statement template, at the first event of each chain that names it', async () => {
        const records = await seedChain();
        const named = (seq: number) => JSON.parse(records[seq - 1]!.body).template as string;
        assert.equal(named(2), named(4), 'executions of one statement share a template');
        assert.notEqual(named(2), named(3));
        await subject.tamper(
          `UPDATE audit_templates SET body = replace(body, 'SELECT *', 'SELECT id') WHERE body LIKE $1`,
          ['%public.orders%'],
        );
        const stored = (await collect(store.chainRecords('v')))[1]!;
        assert.match(stored.template?.body ?? '', /SELECT id FROM orders/, 'the tamper took');
        const { problem } = await verify(store, 'v');
        assert.deepEqual([problem?.kind, problem?.seq], ['edited', 2]);
        assert.match(problem?.message ?? '', /statement template does not match its hash/);
        const other = (await verify(store, 'other')).problem;
        assert.deepEqual([other?.kind, other?.seq], ['edited', 1]);
      });

      it('detects a template edited and re-hashed in place', async () => {
        await seedChain();
        const [record] = await collect(store.events({ table: 'public.orders' }));
        const body = record!.template!.body.replace('"select"', '"update"');
        assert.notEqual(body, record!.template!.body);
        await subject.tamper('UPDATE audit_templates SET body = $1, hash = $2 WHERE hash = $3', [
          body,
          templateHash(body),
          record!.template!.hash,
        ]);
        const { problem } = await verify(store, 'v');
        assert.deepEqual([problem?.kind, problem?.seq], ['edited', 2]);
      });

      it("detects a template's tables column the template disagrees with", async () => {
        await seedChain();
        await subject.tamper(
          `UPDATE audit_templates SET tables = (SELECT tables FROM audit_templates WHERE body LIKE $1)
            WHERE body LIKE $2`,
          ['%"delete"%', '%public.orders%'],
        );
        assert.deepEqual(
          ids(await collect(store.events({ table: 'public.orders' }))),
          [],
          'the tamper hid the statements from a search',
        );
        const { problem } = await verify(store, 'v');
        assert.deepEqual([problem?.kind, problem?.seq], ['edited', 2]);
        assert.match(problem?.message ?? '', /tables column differs/);
      });

      it('detects an event pointed at another template', async () => {
        await seedChain();
        await subject.tamper(
          `UPDATE audit_events SET template = (SELECT template FROM audit_events WHERE chain = $1 AND seq = $2)
            WHERE chain = $1 AND seq = $3`,
          ['v', 3, 4],
        );
        const { problem } = await verify(store, 'v');
        assert.deepEqual([problem?.kind, problem?.seq], ['edited', 4]);
      });

      it('detects a deleted template', async () => {
        await seedChain();
        await subject.tamper('DELETE FROM audit_templates WHERE body LIKE $1', ['%"delete"%']);
        const { problem } = await verify(store, 'v');
        assert.deepEqual([problem?.kind, problem?.seq], ['edited', 3]);
        assert.match(problem?.message ?? '', /statement template is missing/);
      });

      it('detects an event moved from another chain', async () => {
        await seedChain();
        await subject.tamper('DELETE FROM audit_events WHERE chain = $1 AND seq = $2', ['v', 2]);
        await subject.tamper('UPDATE audit_events SET chain = $1, seq = $2 WHERE chain = $3 AND seq = $4', [
          'v',
          2,
          'other',
          1,
        ]);
        const { problem } = await verify(store, 'v');
        assert.deepEqual([problem?.kind, problem?.seq], ['reordered', 2]);
      });

      it('stores signed checkpoints per chain in order of seq, keeping the first at a seq', async () => {
        const records = await seedChain();
        const at = new Date(Date.parse(minute(10)));
        const late = SIGNER.sign({ chain: 'v', seq: 6, hash: records[5]!.hash }, at);
        const early = SIGNER.sign({ chain: 'v', seq: 2, hash: records[1]!.hash }, at);
        await store.addCheckpoint(late);
        await store.addCheckpoint(early);
        await store.addCheckpoint(SIGNER.sign({ chain: 'v', seq: 6, hash: records[5]!.hash }, new Date()));
        const stored = await store.checkpoints('v');
        assert.deepEqual(stored, [early, late]);
        assert.ok(stored.every(signatureHolds));
        assert.deepEqual(await store.checkpoints('other'), []);
        const verifier = await verify(store, 'v');
        assert.equal(verifier.problem, undefined);
        assert.equal(verifier.vouched?.seq, 6);
      });

      it('lists a chain whose events are all gone but whose checkpoint is not, and finds it cut off', async () => {
        const records = await seedChain();
        await store.addCheckpoint(SIGNER.sign({ chain: 'v', seq: 6, hash: records[5]!.hash }, new Date()));
        await subject.tamper('DELETE FROM audit_events WHERE chain = $1', ['v']);
        assert.ok((await store.chains()).includes('v'));
        const { problem } = await verify(store, 'v');
        assert.deepEqual([problem?.kind, problem?.seq], ['truncated', 1]);
      });

      it('detects newest events cut off behind a checkpoint, which the chain alone cannot', async () => {
        const records = await seedChain();
        await store.addCheckpoint(SIGNER.sign({ chain: 'v', seq: 6, hash: records[5]!.hash }, new Date()));
        await subject.tamper('DELETE FROM audit_events WHERE chain = $1 AND seq >= $2', ['v', 5]);
        const chainAlone = new ChainVerifier('v', await store.anchor('v'));
        for await (const record of store.chainRecords('v')) chainAlone.check(record);
        assert.equal(chainAlone.finish(), true, 'without the checkpoint the shorter chain looks whole');
        const { problem } = await verify(store, 'v');
        assert.deepEqual([problem?.kind, problem?.seq], ['truncated', 5]);
        assert.match(problem!.message, /events 5–6 were cut off/);
      });

      it('detects a chain rewritten with new hashes after an edit', async () => {
        const records = await seedChain();
        await store.addCheckpoint(SIGNER.sign({ chain: 'v', seq: 6, hash: records[5]!.hash }, new Date()));
        // Edit event 3 and re-hash it and every event after it, as an attacker with the store could.
        let previous = records[1]!.hash;
        for (const record of records.slice(2)) {
          const body = record.seq === 3 ? record.body.replace('"rows":5', '"rows":0') : record.body;
          previous = linkHash(previous, body);
          await subject.tamper('UPDATE audit_events SET body = $1, hash = $2 WHERE chain = $3 AND seq = $4', [
            body,
            previous,
            'v',
            record.seq,
          ]);
        }
        const { problem } = await verify(store, 'v');
        assert.deepEqual([problem?.kind, problem?.seq], ['rewritten', 6]);
      });
    });
  });
}
