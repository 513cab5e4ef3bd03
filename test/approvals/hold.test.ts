/**
 * Held statements through a real Warden, with real clients: a rule's
 * `review` holds the statement on the live connection (a notice names the
 * request), the real `warden approvals` CLI decides it from another process,
 * and the statement runs or is refused with the session going on. Cancel,
 * disconnect, timeout, transactions, the extended protocol, many holds at
 * once, async mode, and a restart.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { ApprovalService } from '../../src/approvals/service.ts';
import { ApprovalStore } from '../../src/approvals/store.ts';
import type { ApprovalRequest } from '../../src/approvals/types.ts';
import { eventOf } from '../../src/audit/templates.ts';
import { SqliteAuditStore } from '../../src/store/sqlite-audit.ts';
import { openStore } from '../../src/store/store.ts';
import { run, seededWarden } from '../proxy/support.ts';

const SEED = `CREATE TABLE orders (id int PRIMARY KEY, note text);
  INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 50) g;`;

const policy = (approvals: string) => `
policy:
  rules:
    - name: order-writes-need-review
      match: { tables: [orders], access: write }
      action: review
      message: changes to orders need a second pair of eyes
  defaults: { human: allow, service: allow, agent: allow }
approvals:
  approvers: { groups: [analysts], identities: [etl] }
${approvals}
`;

interface Notices {
  readonly all: string[];
  /** The id of the first hold notice, once it comes. */
  request(): Promise<string>;
}

function notices(client: pg.Client): Notices {
  const all: string[] = [];
  client.on('notice', (notice) => all.push(notice.message ?? ''));
  return {
    all,
    async request() {
      for (let i = 0; i < 400; i++) {
        const found = all.map((m) => /request (apr_[a-z2-7]+)/.exec(m)?.[1]).find(Boolean);
        if (found) return found;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      assert.fail(`no hold notice; notices: ${all.join(' | ')}`);
    },
  };
}

describe('statements held for approval', { timeout: 120_000 }, () => {
  const env = seededWarden('approvals', SEED, policy('  timeoutSeconds: 60\n  keepAliveSeconds: 1'));
  const clients: pg.Client[] = [];

  const connect = async (identity = 'alice'): Promise<{ client: pg.Client; notices: Notices }> => {
    const client = new pg.Client(env.warden.pgConfig(identity));
    client.on('error', () => {});
    const seen = notices(client);
    await client.connect();
    clients.push(client);
    return { client, notices: seen };
  };
  const file = () => join(env.warden.dir, 'warden.yaml');
  const cli = (...args: string[]) =>
    run(process.execPath, ['bin/warden.js', 'approvals', ...args, '--config', file()], {
      env: { HOME: process.env.HOME, UPSTREAM_PASSWORD: env.upstream.password ?? '' },
    });
  const withStore = <T>(work: (store: ApprovalStore) => T): T => {
    const opened = openStore(env.warden.config.dataDir);
    try {
      return work(new ApprovalStore(opened.db));
    } finally {
      opened.close();
    }
  };
  const request = (id: string): ApprovalRequest => withStore((store) => store.get(id)!);
  const decide = (id: string, by: 'alice' | 'etl', verdict: 'approve' | 'reject', reason: string) =>
    withStore((store) =>
      store.decide(
        id,
        { name: by, groups: by === 'alice' ? ['analysts'] : ['pipelines'] },
        {
          by,
          verdict,
          reason,
          channel: 'cli',
        },
      ),
    );
  const exists = async (id: number) =>
    (await env.direct.query('SELECT 1 FROM orders WHERE id = $1', [id])).rowCount === 1;

  after(async () => {
    for (const client of clients) await client.end().catch(() => {});
  });

  it('holds a statement until an approver approves it with the CLI; then it runs, and the trail says so', async () => {
    const { client, notices: seen } = await connect();
    const deleted = client.query('DELETE FROM orders WHERE id = 1');
    const id = await seen.request();
    assert.match(
      seen.all[0]!,
      /holding this statement for approval: request apr_\w+ \(approval required by rule "order-writes-need-review": changes to orders need a second pair of eyes\)/,
    );
    assert.ok(await exists(1), 'nothing reached the server yet');
    const held = request(id);
    assert.deepEqual(
      [held.status, held.identity, held.sql, held.rule, held.tables],
      ['pending', 'alice', 'DELETE FROM orders WHERE id = 1', 'order-writes-need-review', ['orders']],
    );

    const listed = await cli('list');
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(
      listed.stdout,
      new RegExp(
        `^${id}  pending +alice  on \\w+  rule order-writes-need-review .*DELETE FROM orders WHERE id = 1$`,
        'm',
      ),
    );
    const approved = await cli('approve', id, '--as', 'etl', '--reason', 'cleanup ticket 42');
    assert.equal(approved.code, 0, approved.stderr);
    assert.equal(approved.stdout, `${id}: approved\n`);

    assert.equal((await deleted).rowCount, 1);
    assert.equal(await exists(1), false);
    assert.equal(
      (await client.query('SELECT count(*)::int AS n FROM orders')).rows[0].n,
      49,
      'the session goes on',
    );

    await env.warden.server.audit!.flush();
    const opened = openStore(env.warden.config.dataDir);
    try {
      const events: Record<string, unknown>[] = [];
      for await (const record of new SqliteAuditStore(opened.db).events({})) events.push(eventOf(record)!);
      const about = events.filter((e) => e.request === id);
      assert.deepEqual(
        about.map((e) => [e.type, e.identity, e.detail]),
        [
          ['approval.request', 'alice', 'held by rule order-writes-need-review'],
          ['approval.decision', 'etl', 'approve (request approved)'],
          ['approval.settle', 'alice', 'approved'],
        ],
      );
      assert.equal(about[1]!.reason, 'cleanup ticket 42');
      assert.equal(about[1]!.channel, 'cli');
      const statement = events.find((e) => e.type === 'statement' && e.rule === 'order-writes-need-review');
      assert.ok(statement, 'the statement is in the trail');
      assert.deepEqual([statement.decision, statement.outcome, statement.rows], ['allow', 'ok', 1]);
    } finally {
      opened.close();
    }
  });

  it('refuses a rejected statement with the approver and reason, and the session goes on', async () => {
    const { client, notices: seen } = await connect();
    // Caught at once: the refusal may come before the CLI has returned.
    const deleted = client.query('DELETE FROM orders WHERE id = 2').then(
      () => assert.fail('a rejected statement ran'),
      (error: pg.DatabaseError) => error,
    );
    const id = await seen.request();
    const rejected = await cli('reject', id, '--as', 'etl', '--reason', 'not during the sale');
    assert.equal(rejected.code, 0, rejected.stderr);
    const error = await deleted;
    assert.equal(error.code, '42501');
    assert.equal(error.message, `approval request ${id} was rejected by etl: not during the sale`);
    assert.ok(await exists(2));
    assert.equal((await client.query('SELECT 1 AS one')).rows[0].one, 1);
  });

  it('lets nobody decide their own request, nor anyone who is not an approver', async () => {
    const { client, notices: seen } = await connect();
    const deleted = client.query('DELETE FROM orders WHERE id = 3');
    const id = await seen.request();
    const own = await cli('approve', id, '--as', 'alice', '--reason', 'trust me');
    assert.equal(own.code, 1);
    assert.match(own.stderr, /alice asked for this, and nobody decides their own request/);
    const outsider = await cli('approve', id, '--as', 'outsider', '--reason', 'why not');
    assert.equal(outsider.code, 1);
    assert.match(
      outsider.stderr,
      /outsider is not an approver of this request \(approvers: groups analysts; identities etl\)/,
    );
    assert.equal(request(id).status, 'pending');
    assert.equal(decide(id, 'etl', 'approve', 'fine').ok, true);
    assert.equal((await deleted).rowCount, 1);
  });

  it('sends keep-alive notices while it waits', async () => {
    const { client, notices: seen } = await connect();
    const deleted = client.query('DELETE FROM orders WHERE id = 4');
    const id = await seen.request();
    await new Promise((resolve) => setTimeout(resolve, 2_300));
    assert.ok(
      seen.all.filter((m) => m.startsWith(`still waiting for approval of request ${id}`)).length >= 2,
      seen.all.join(' | '),
    );
    decide(id, 'etl', 'approve', 'ok');
    assert.equal((await deleted).rowCount, 1);
  });

  it('fails the server transaction too when a held statement in a transaction block is refused', async () => {
    const { client, notices: seen } = await connect();
    await client.query('BEGIN');
    await client.query('SELECT count(*) FROM orders');
    const updated = client.query("UPDATE orders SET note = 'changed' WHERE id = 5");
    const id = await seen.request();
    decide(id, 'etl', 'reject', 'no');
    await assert.rejects(updated, { code: '42501' });
    await assert.rejects(client.query('SELECT 1'), { code: '25P02' });
    await client.query('ROLLBACK');
    assert.equal((await client.query('SELECT 1 AS one')).rows[0].one, 1);
  });

  it('withdraws the request when the client cancels; the connection survives', async () => {
    const sql = env.warden.postgresJs('alice');
    try {
      const pending = sql`DELETE FROM orders WHERE id = ${6}`.execute();
      let id: string | undefined;
      for (let i = 0; i < 400 && id === undefined; i++) {
        id = withStore((store) => store.list('pending').find((r) => r.sql?.includes('$1'))?.id);
        if (id === undefined) await new Promise((resolve) => setTimeout(resolve, 25));
      }
      assert.ok(id, 'a request for the extended-protocol statement');
      assert.deepEqual(request(id).parameters, ['6']);
      pending.cancel();
      await assert.rejects(pending, (error: Error & { code?: string }) => {
        assert.equal(error.code, '57014');
        assert.match(
          error.message,
          /canceling statement due to user request \(approval request apr_\w+ withdrawn\)/,
        );
        return true;
      });
      assert.equal(request(id).status, 'withdrawn');
      assert.ok(await exists(6));
      assert.equal((await sql`SELECT 1 AS one`)[0]!.one, 1);
      // A decision that comes after is refused: nothing is waiting for it.
      const late = await cli('approve', id, '--as', 'etl', '--reason', 'too late');
      assert.equal(late.code, 1);
      assert.match(late.stderr, /is withdrawn already/);
    } finally {
      await sql.end();
    }
  });

  it('runs an approved extended-protocol statement with its parameters', async () => {
    const sql = env.warden.postgresJs('alice');
    try {
      const pending =
        sql`UPDATE orders SET note = ${'approved note'} WHERE id = ${7} RETURNING note`.execute();
      let id: string | undefined;
      for (let i = 0; i < 400 && id === undefined; i++) {
        id = withStore(
          (store) => store.list('pending').find((r) => r.sql?.startsWith('UPDATE orders SET note = $1'))?.id,
        );
        if (id === undefined) await new Promise((resolve) => setTimeout(resolve, 25));
      }
      assert.ok(id);
      assert.deepEqual(request(id).parameters, ['approved note', '7']);
      decide(id, 'etl', 'approve', 'looks right');
      assert.deepEqual([...(await pending)], [{ note: 'approved note' }]);
    } finally {
      await sql.end();
    }
  });

  it('tells an extended-protocol client where to approve, though its pipeline waits behind the held Bind', async () => {
    const { client, notices: seen } = await connect();
    // node-postgres sends Parse, Bind, Describe, Execute and Sync at once: the Bind is held.
    const deleted = client.query({ text: 'DELETE FROM orders WHERE id = $1', values: [16] });
    const id = await seen.request();
    assert.deepEqual(request(id).parameters, ['16']);
    decide(id, 'etl', 'approve', 'fine');
    assert.equal((await deleted).rowCount, 1);
    assert.equal(await exists(16), false);
  });

  it('withdraws the request when the client disconnects', async () => {
    const { client, notices: seen } = await connect();
    client.query('DELETE FROM orders WHERE id = 8').catch(() => {});
    const id = await seen.request();
    (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    for (let i = 0; i < 400 && request(id).status === 'pending'; i++)
      await new Promise((r) => setTimeout(r, 25));
    assert.equal(request(id).status, 'withdrawn');
    assert.ok(await exists(8));
  });

  it('holds many connections at once and releases each with its own decision', async () => {
    const held = await Promise.all(
      [10, 11, 12, 13, 14, 15].map(async (n) => {
        const { client, notices: seen } = await connect(n % 2 === 0 ? 'alice' : 'agent');
        const result = client.query(`DELETE FROM orders WHERE id = ${n}`).then(
          (r) => r.rowCount,
          (error: pg.DatabaseError) => error.code,
        );
        return { n, id: await seen.request(), result };
      }),
    );
    assert.equal(new Set(held.map((h) => h.id)).size, 6);
    for (const { n, id } of held) decide(id, 'etl', n % 3 === 0 ? 'reject' : 'approve', 'batch review');
    for (const { n, result } of held) assert.equal(await result, n % 3 === 0 ? '42501' : 1, `order ${n}`);
    assert.deepEqual(
      (await env.direct.query('SELECT id FROM orders WHERE id BETWEEN 10 AND 15 ORDER BY id')).rows.map(
        (r) => r.id,
      ),
      [12, 15],
    );
  });
});

describe('a held statement that nobody decides', { timeout: 60_000 }, () => {
  const env = seededWarden('approvals_timeout', SEED, policy('  timeoutSeconds: 1'));

  it('times out with an error saying so, and the session goes on', async () => {
    const client = new pg.Client(env.warden.pgConfig('alice'));
    client.on('notice', () => {});
    await client.connect();
    try {
      await assert.rejects(client.query('DELETE FROM orders WHERE id = 1'), (error: pg.DatabaseError) => {
        assert.equal(error.code, '57014');
        assert.match(error.message, /approval request apr_\w+ timed out: no decision within 1 s/);
        return true;
      });
      assert.equal((await client.query('SELECT count(*)::int AS n FROM orders')).rows[0].n, 50);
    } finally {
      await client.end();
    }
  });
});

describe('async approvals', { timeout: 60_000 }, () => {
  const env = seededWarden('approvals_async', SEED, policy('  mode: async\n  asyncWindowSeconds: 600'));

  it('refuses at once with the request id; once approved, that exact statement runs', async () => {
    const client = new pg.Client(env.warden.pgConfig('agent'));
    await client.connect();
    try {
      const first = await client
        .query('DELETE FROM orders WHERE id = 9')
        .catch((error: pg.DatabaseError) => error);
      assert.ok(first instanceof Error);
      assert.equal((first as pg.DatabaseError).code, '42501');
      const id = /approval request (apr_\w+) is pending/.exec(first.message)?.[1];
      assert.ok(id, first.message);
      const again = await client.query('DELETE FROM orders WHERE id = 9').catch((error: Error) => error);
      assert.match(
        (again as Error).message,
        new RegExp(`approval request ${id} is pending`),
        'the same request, not a new one',
      );

      const opened = openStore(env.warden.config.dataDir);
      try {
        const decided = new ApprovalStore(opened.db).decide(
          id,
          { name: 'etl', groups: [] },
          {
            by: 'etl',
            verdict: 'approve',
            reason: 'ok for the agent',
            channel: 'cli',
          },
        );
        assert.equal(decided.ok, true);
      } finally {
        opened.close();
      }
      assert.equal((await client.query('DELETE FROM orders WHERE id = 9')).rowCount, 1);
      const other = await client.query('DELETE FROM orders WHERE id = 10').catch((error: Error) => error);
      assert.match(
        (other as Error).message,
        /approval request apr_\w+ is pending/,
        'another literal is another statement',
      );
      assert.doesNotMatch((other as Error).message, new RegExp(id));
    } finally {
      await client.end();
    }
  });
});

describe('a restart', { timeout: 60_000 }, () => {
  const env = seededWarden('approvals_restart', SEED, policy(''));

  it('withdraws the requests this instance held: no statement is left waiting for a connection that is gone', () => {
    const opened = openStore(env.warden.config.dataDir);
    try {
      const store = new ApprovalStore(opened.db);
      const base = {
        kind: 'statement' as const,
        identity: 'alice',
        target: 'shop',
        sql: 'DELETE FROM orders',
        parameters: null,
        fingerprint: null,
        tables: ['orders'],
        rule: 'r',
        message: 'm',
        grant: null,
        reason: '',
        approvers: { groups: [], identities: ['etl'], minApprovals: 1 },
        timeoutMs: 60_000,
      };
      const mine = store.create({ ...base, mode: 'hold', instance: 'node-a' });
      const other = store.create({ ...base, mode: 'hold', instance: 'node-b' });
      const parked = store.create({ ...base, mode: 'async', instance: 'node-a' });
      const settings = {
        approvers: base.approvers,
        timeoutMs: 60_000,
        keepAliveMs: 1000,
        mode: 'hold' as const,
        asyncWindowMs: 1000,
        instance: 'node-a',
        where: '',
      };
      assert.equal(new ApprovalService(store, settings, [], [], undefined).start(), 1);
      assert.deepEqual(
        [store.get(mine.id)!.status, store.get(other.id)!.status, store.get(parked.id)!.status],
        ['withdrawn', 'pending', 'pending'],
      );
    } finally {
      opened.close();
    }
  });
});
