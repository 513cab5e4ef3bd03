import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { IdentityConfig, TargetConfig } from '../../src/config/index.ts';
import { Catalogs, EMPTY_CATALOG } from '../../src/masking/catalog.ts';
import { Masking } from '../../src/masking/masking.ts';
import { MaskingPolicy, NO_MASKING } from '../../src/masking/policy.ts';
import type { Decision, DecisionContext, SessionInfo, StatementSource } from '../../src/policy/decision.ts';
import { PolicyEngine } from '../../src/policy/engine.ts';
import { evaluate, type Policy } from '../../src/policy/rules.ts';
import { Code } from '../../src/protocol/postgres/messages.ts';
import {
  writeCommandComplete,
  writeDataRow,
  writeRowDescription,
} from '../../src/protocol/postgres/query.ts';
import { Writer } from '../../src/protocol/postgres/writer.ts';
import { loadParser } from '../../src/sql/analysis.ts';

before(() => loadParser());

const ana: IdentityConfig = { name: 'ana', kind: 'human', groups: ['analysts'] };
const etl: IdentityConfig = { name: 'etl_nightly', kind: 'service', groups: ['pipelines'] };
const bot: IdentityConfig = { name: 'support_bot', kind: 'agent', groups: [] };
const shop = { name: 'shop', user: 'app', labels: { env: 'prod' } } as unknown as TargetConfig;
const staging = { name: 'staging', user: 'app', labels: { env: 'staging' } } as unknown as TargetConfig;

let sessionIds = 0;
const session = (
  identity: IdentityConfig,
  extra: { applicationName?: string; target?: TargetConfig; searchPath?: readonly string[] } = {},
): SessionInfo => ({
  id: ++sessionIds,
  identity,
  target: extra.target ?? shop,
  clientAddress: '127.0.0.1',
  tls: false,
  applicationName: extra.applicationName ?? 'psql',
  pipeline: null,
  pipelineFixed: false,
  tag: `test/${sessionIds}`,
  ...(extra.searchPath ? { searchPath: extra.searchPath } : {}),
});

const context = (
  info: SessionInfo,
  sql: string,
  extra: {
    source?: StatementSource;
    searchPath?: readonly string[];
    prepared?: Readonly<Record<string, string>>;
  } = {},
): DecisionContext => ({
  session: info,
  source: extra.source ?? 'query',
  sql,
  name: '',
  prepared: (name) => extra.prepared?.[name],
  ...(extra.searchPath ? { searchPath: extra.searchPath } : {}),
});

/** A decision as data: a row limit is a function, so only whether there is one is compared. */
/**
 * A decision as compared: its statements are the analysis its text's shape shares with texts
 * that differ only in constants, so what audit reads of them (kinds, tables) is compared, not their text.
 */
const plain = (decision: Decision): unknown => {
  const statements = decision.statements?.map(({ kind, command, tables }) => ({ kind, command, tables }));
  if (decision.action === 'allow')
    return { ...decision, statements, transform: decision.transform === null ? null : 'row limit' };
  if (decision.action === 'review') return { ...decision, statements, approved: plain(decision.approved) };
  return { ...decision, statements };
};

const policy: Policy = {
  rules: [
    {
      name: 'analysts-read-only',
      match: { groups: ['analysts'], statementKinds: ['write', 'ddl'] },
      action: 'deny',
      message: 'Analysts only read.',
    },
    { name: 'hr-needs-approval', match: { tables: ['hr.*'] }, action: 'review' },
    { name: 'mask-pii', match: { columns: ['email', 'card_number'] }, action: 'mask' },
    {
      name: 'cap-agent-rows',
      match: { identityKinds: ['agent'], statementKinds: ['read'] },
      action: 'limit',
      maxRows: 2,
    },
    {
      name: 'agents-read-orders',
      match: { identityKinds: ['agent'], tables: ['public.orders'], access: 'read' },
      action: 'allow',
    },
    {
      name: 'etl-window',
      match: { identities: ['etl_nightly'], time: { from: '22:00', to: '04:00' } },
      action: 'allow',
    },
    { name: 'tagged-backfill', match: { tags: { pipeline: 'backfill' } }, action: 'review' },
    {
      name: 'no-prod-from-notebooks',
      match: { labels: { env: 'prod' }, applicationNames: ['jupyter*'] },
      action: 'deny',
    },
    { name: 'no-secrets', match: { sql: "'secret'" }, action: 'deny' },
  ],
  defaults: { service: 'deny' },
};

const texts = [
  'SELECT total FROM orders WHERE id = 1',
  'SELECT total FROM orders WHERE id = 2',
  '  SELECT total FROM orders WHERE id = 3  ',
  "SELECT total FROM orders WHERE note = 'secret'",
  "SELECT total FROM orders WHERE note = 'public'",
  'SELECT email FROM customers WHERE id = 7',
  'SELECT salary FROM hr.employees WHERE id = 8',
  'SELECT amount FROM salaries WHERE id = 9',
  "UPDATE customers SET status = 'x' WHERE id = 10",
  "SELECT 1 /* pipeline='backfill' */",
  "SELECT $$/*pipeline='backfill'*/$$ FROM orders",
  'SELECT $$nothing$$ FROM orders',
  'SELECT 1; SELECT total FROM orders WHERE id = 4',
  'BEGIN',
  'DECLARE c CURSOR FOR SELECT total FROM orders WHERE id = 5',
  'SET search_path = hr, public',
];

describe('kept verdicts', () => {
  it('give the verdict evaluate gives, for every identity, application name, target and search path', () => {
    const now = () => new Date('2026-11-24T23:30:00Z');
    const engine = new PolicyEngine(policy, undefined, now);
    const sessions = [
      session(ana),
      session(etl),
      session(bot),
      session(bot, { applicationName: 'jupyter-lab' }),
      session(ana, { target: staging, applicationName: 'jupyter-lab' }),
      session(bot, { searchPath: ['hr', 'public'] }),
    ];
    for (let round = 0; round < 3; round++) {
      for (const info of sessions) {
        for (const sql of texts) {
          for (const searchPath of [undefined, ['public'], ['hr', 'public']]) {
            const judged = context(info, sql, searchPath ? { searchPath } : {});
            const explained = engine.explain(judged);
            const expected = evaluate(policy, {
              identity: info.identity,
              target: info.target,
              applicationName: info.applicationName,
              statements: explained.statements!,
              now: now(),
              searchPath: searchPath ?? info.searchPath,
            });
            assert.deepEqual(explained.verdict, expected, `${info.identity.name} ${sql} ${searchPath}`);
            // A fresh engine keeps nothing: its decision is the one made without kept verdicts.
            const fresh = new PolicyEngine(policy, undefined, now).decide(judged);
            assert.deepEqual(plain(engine.decide(judged)), plain(fresh), `${info.identity.name} ${sql}`);
          }
        }
      }
    }
    assert.ok(
      engine.verdictHits > engine.verdictMisses,
      `${engine.verdictHits} hits, ${engine.verdictMisses} misses`,
    );
  });

  it('reuse a verdict across texts of one shape, each decision with its own text', () => {
    const engine = new PolicyEngine(policy);
    const info = session(bot);
    const first = engine.decide(context(info, 'SELECT email FROM orders WHERE id = 1'));
    const second = engine.decide(context(info, 'SELECT email FROM orders WHERE id = 2'));
    assert.equal(engine.verdictMisses, 1);
    assert.equal(engine.verdictHits, 1);
    assert.equal(first.sql, 'SELECT email FROM orders WHERE id = 1');
    assert.equal(second.sql, 'SELECT email FROM orders WHERE id = 2');
    // A lone statement's reasons do not quote it (the decision's sql is the statement): one verdict, one set.
    assert.equal(first.matched![0]!.reason, second.matched![0]!.reason);
    assert.doesNotMatch(first.matched![0]!.reason, /id = /);
    // Without a row limit, a decision holds nothing made per call: still, each has its own text.
    const person = session(ana);
    for (const id of [1, 2, 2, 3]) {
      const decision = engine.decide(context(person, `SELECT email FROM orders WHERE id = ${id}`));
      assert.equal(decision.action, 'allow');
      assert.equal(decision.sql, `SELECT email FROM orders WHERE id = ${id}`);
      assert.equal(decision.matched![0]!.rule, 'mask-pii');
    }
  });

  it('notice a session whose application name changed', () => {
    const engine = new PolicyEngine(policy);
    const info = session(ana);
    const sql = 'SELECT total FROM orders WHERE id = 1';
    assert.equal(engine.decide(context(info, sql)).action, 'allow');
    (info as { applicationName: string }).applicationName = 'jupyter-lab';
    assert.equal(engine.decide(context(info, sql)).rule, 'no-prod-from-notebooks');
  });

  it('give each decision a row limit of its own: it counts rows', () => {
    const engine = new PolicyEngine(policy);
    const info = session(bot);
    const sql = 'SELECT total FROM orders';
    const a = engine.decide(context(info, sql));
    const b = engine.decide(context(info, sql));
    assert.equal(a.action, 'allow');
    assert.equal(b.action, 'allow');
    if (a.action !== 'allow' || b.action !== 'allow') return;
    assert.ok(a.transform && b.transform);
    assert.notEqual(a.transform, b.transform);
    const row = Buffer.from([Code.DataRow, 0, 0, 0, 6, 0, 0]);
    for (let i = 0; i < 3; i++) a.transform.message(Code.DataRow, row);
    assert.equal(b.transform.message(Code.DataRow, row), row, 'the second decision has counted nothing');
  });

  it('give each decision a masking that reports to its own session', () => {
    const reports: [number, string[], number][] = [];
    const masking = new Masking(
      new MaskingPolicy({ ...NO_MASKING, heuristics: true }, Buffer.alloc(32, 1)),
      new Catalogs(async () => EMPTY_CATALOG),
      (info, report) => reports.push([info.id, [...report.columns], report.rows]),
    );
    const engine = new PolicyEngine(policy, undefined, undefined, masking);
    const sql = 'SELECT id, email FROM orders';
    const description = writeRowDescription(new Writer(), {
      type: 'RowDescription',
      fields: ['id', 'email'].map((name) => ({
        name,
        tableOid: 0,
        columnAttribute: 0,
        typeOid: 25,
        typeSize: -1,
        typeModifier: -1,
        format: 0 as const,
      })),
    }).flush();
    const row = writeDataRow(new Writer(), {
      type: 'DataRow',
      values: [Buffer.from('1'), Buffer.from('jane@example.com')],
    }).flush();
    const done = writeCommandComplete(new Writer(), { type: 'CommandComplete', tag: 'SELECT 2' }).flush();
    const sessions = [session(ana), session(ana)];
    for (const info of sessions) {
      const decision = engine.decide(context(info, sql));
      assert.equal(decision.action, 'allow');
      if (decision.action !== 'allow') return;
      assert.ok(decision.transform);
      decision.transform.message(Code.RowDescription, description);
      const masked = decision.transform.message(Code.DataRow, row);
      assert.ok(!masked.includes('jane@example.com'), 'the email is masked');
      decision.transform.message(Code.DataRow, row);
      decision.transform.message(Code.CommandComplete, done);
    }
    assert.equal(engine.verdictHits, 1, 'the second decision reused the first verdict');
    assert.deepEqual(reports, [
      [sessions[0]!.id, ['email'], 2],
      [sessions[1]!.id, ['email'], 2],
    ]);
  });

  it('hold a time window only until the end of the minute', () => {
    let clock = Date.parse('2026-11-24T21:59:59.500Z');
    const engine = new PolicyEngine(policy, undefined, () => new Date(clock));
    const info = session(etl);
    const write = (id: number) => engine.decide(context(info, `INSERT INTO orders VALUES (${id})`)).action;
    assert.equal(write(1), 'deny', 'before 22:00');
    clock += 400;
    assert.equal(write(2), 'deny', 'still 21:59');
    clock += 100;
    assert.equal(write(3), 'allow', '22:00:00.000');
    clock = Date.parse('2026-11-25T03:59:59.999Z');
    assert.equal(write(4), 'allow', 'before 04:00');
    clock += 1;
    assert.equal(write(5), 'deny', '04:00');
    clock = Date.parse('2026-11-24T23:00:00Z');
    assert.equal(write(6), 'allow', 'the clock went back');
  });

  it('read the text where rules do: sql patterns and sqlcommenter tags, also inside a literal', () => {
    const engine = new PolicyEngine(policy);
    const info = session(ana);
    const action = (sql: string) => engine.decide(context(info, sql)).action;
    for (let i = 0; i < 2; i++) {
      assert.equal(action("SELECT total FROM orders WHERE note = 'public'"), 'allow');
      assert.equal(action("SELECT total FROM orders WHERE note = 'secret'"), 'deny');
      assert.equal(action('SELECT $$nothing$$ FROM orders'), 'allow');
      assert.equal(action("SELECT $$/*pipeline='backfill'*/$$ FROM orders"), 'review');
    }
  });

  it('are dropped with the policy', () => {
    const engine = new PolicyEngine(policy);
    const info = session(ana);
    const sql = 'SELECT total FROM orders WHERE id = 1';
    assert.equal(engine.decide(context(info, sql)).action, 'allow');
    assert.ok(engine.keptVerdicts > 0);
    engine.setPolicy({ rules: [{ name: 'closed', match: { tables: ['orders'] }, action: 'deny' }] });
    assert.equal(engine.keptVerdicts, 0);
    const refused = engine.decide(context(info, sql));
    assert.equal(refused.action, 'deny');
    assert.equal(refused.rule, 'closed');
    engine.setPolicy(policy);
    assert.equal(engine.decide(context(info, sql)).action, 'allow');
  });

  it('tell identities apart by their config, not their name: a reload may change groups', () => {
    const engine = new PolicyEngine(policy);
    const sql = "UPDATE orders SET status = 'x' WHERE id = 1";
    const before = session({ name: 'sam', kind: 'human', groups: [] });
    const after = session({ name: 'sam', kind: 'human', groups: ['analysts'] });
    assert.equal(engine.decide(context(before, sql)).action, 'allow');
    assert.equal(engine.decide(context(after, sql)).action, 'deny');
    assert.equal(engine.decide(context(before, sql)).action, 'allow');
  });

  it('follow the search path of each call', () => {
    const engine = new PolicyEngine(policy);
    const info = session(bot);
    const sql = 'SELECT total FROM orders WHERE id = 1';
    assert.equal(engine.decide(context(info, sql)).action, 'allow');
    assert.equal(engine.decide(context(info, sql, { searchPath: ['hr', 'public'] })).action, 'review');
    assert.equal(engine.decide(context(info, sql, { searchPath: ['public'] })).action, 'allow');
    assert.equal(engine.decide(context(info, sql, { searchPath: ['$user', 'public'] })).action, 'deny');
  });

  it('are not kept for EXECUTE: what it runs is the session’s prepared statement', () => {
    const engine = new PolicyEngine(policy);
    const info = session(bot);
    const execute = (prepared: string, source: StatementSource = 'query') =>
      engine.decide(context(info, 'EXECUTE p(1)', { source, prepared: { p: prepared } }));
    assert.equal(execute('PREPARE p AS SELECT total FROM orders WHERE id = $1').action, 'allow');
    assert.equal(execute('PREPARE p AS SELECT salary FROM hr.employees WHERE id = $1').action, 'review');
    assert.equal(execute('PREPARE p AS SELECT total FROM orders WHERE id = $1').action, 'allow');
    assert.equal(engine.verdictHits + engine.verdictMisses, 0);
  });

  it('give a prepared statement’s Parse and Bind their own decisions, with the same text', () => {
    const engine = new PolicyEngine(policy);
    const info = session(ana);
    const sql = 'SELECT total FROM orders WHERE id = $1';
    const parse = engine.decide(context(info, sql, { source: 'parse' }));
    const bind = engine.decide(context(info, sql, { source: 'bind' }));
    const again = engine.decide(context(info, sql, { source: 'bind' }));
    assert.equal(parse.source, 'parse');
    assert.equal(bind.source, 'bind');
    assert.deepEqual(plain(again), plain(bind));
    assert.equal(again.sql, sql);
  });
});
