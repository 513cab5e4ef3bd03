import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { run } from '../proxy/support.ts';

const warden = (args: string[]) =>
  run(process.execPath, ['bin/warden.js', ...args], { env: { HOME: process.env.HOME } });

// No database: explain and test never connect, so the target's address is never used.
const CONFIG = `identities:
  - { name: alice, kind: human }
  - { name: etl, kind: service }
  - { name: bot, kind: agent }
targets:
  - name: shop
    host: 127.0.0.1
    user: warden
    tls: { mode: disable }
    access: { kinds: [human, service, agent] }
policy:
  rules:
    - name: bot-reads-orders
      match: { identityKinds: [agent], statementKinds: [read], tables: [orders] }
      action: allow
    - name: no-ssn
      match: { columns: [ssn] }
      action: deny
      message: social security numbers never leave the database
    - name: order-changes-need-review
      match: { identityKinds: [human], tables: [orders], access: write }
      action: review
      message: changing orders needs a second pair of eyes
    - name: etl-reads-in-pages
      match: { identities: [etl], statementKinds: [read] }
      action: limit
      maxRows: 100
`;

const PASSING = `cases:
  - name: nobody deletes a whole table
    identity: alice
    target: shop
    sql: DELETE FROM orders
    expect: deny
    rule: guardrail:write-without-where
  - identity: bot
    target: shop
    sql: SELECT id FROM orders WHERE id = 1
    expect: allow
    rule: bot-reads-orders
  - name: a person changing an order needs approval
    identity: alice
    target: shop
    sql: UPDATE orders SET note = 'x' WHERE id = 2
    expect: review
  - name: the pipeline reads at most 100 rows
    identity: etl
    target: shop
    sql: SELECT id FROM orders
    expect: limit
    applicationName: nightly
  - name: SQL Warden cannot read is refused
    identity: bot
    target: shop
    sql: selec 1
    expect: deny
`;

describe('warden policy explain and policy test', { timeout: 60_000 }, () => {
  let dir: string;
  let config: string;
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const explain = (identity: string, sql: string, ...extra: string[]) =>
    warden([
      'policy',
      'explain',
      '--config',
      config,
      '--identity',
      identity,
      '--target',
      'shop',
      ...extra,
      sql,
    ]);

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'warden-policy-'));
    config = file('warden.yaml', CONFIG);
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  it('explain names the guardrail that refuses DELETE without WHERE, and exits 0 on a denial', async () => {
    const result = await explain('alice', 'DELETE FROM t');
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /kind +write \(DeleteStmt\)/);
    assert.match(result.stdout, /tables +t \(write\)/);
    assert.match(result.stdout, /hasWhere +no/);
    assert.match(result.stdout, /^ {2}guardrail:write-without-where: deny$/m);
    assert.match(result.stdout, /^decision +deny$/m);
    assert.match(result.stdout, /rule +guardrail:write-without-where/);
    assert.match(result.stdout, /sqlstate +42501/);
  });

  it('explain shows the table rule that allows an agent, and the columns by clause', async () => {
    const result = await explain('bot', 'SELECT id, total FROM orders WHERE status = $1');
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /columns +select: id, total; where: status/);
    assert.match(result.stdout, /^ {2}bot-reads-orders: allow$/m);
    assert.match(result.stdout, /reason +kind agent, statement kind read, only orders/);
    assert.match(result.stdout, /^decision +allow$/m);
    assert.match(result.stdout, /rule +bot-reads-orders/);
  });

  it('explain shows the default denial of an agent that no rule allows', async () => {
    const result = await explain('bot', 'SELECT name FROM customers');
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /matched rules: none/);
    assert.match(result.stdout, /^decision +deny$/m);
    assert.match(result.stdout, /rule +none \(default\)/);
    assert.match(result.stdout, /no rule allows this for agent identities \(default: deny\)/);
  });

  it('explain tells a review from a denial and shows a row cap', async () => {
    const review = await explain('alice', "UPDATE orders SET note = 'x' WHERE id = 2");
    assert.match(review.stdout, /^decision +review \(held for approval; refused unless approved\)$/m);
    assert.match(review.stdout, /verdict +review/);
    assert.match(review.stdout, /message +approval required by rule "order-changes-need-review"/);
    const limited = await explain('etl', 'SELECT id FROM orders');
    assert.match(limited.stdout, /^decision +allow \(rows capped at 100\)$/m);
    assert.match(limited.stdout, /rule +etl-reads-in-pages/);
  });

  it('explain --json prints statements, matched rules and the decision as JSON', async () => {
    const result = await explain('alice', 'DELETE FROM t', '--json', '--application-name', 'psql');
    assert.equal(result.code, 0, result.stderr);
    const parsed = JSON.parse(result.stdout);
    assert.deepEqual(Object.keys(parsed), ['statements', 'matched', 'decision']);
    assert.equal(parsed.statements[0].command, 'DeleteStmt');
    assert.deepEqual(parsed.statements[0].tables, [{ name: 't', access: 'write' }]);
    assert.equal(parsed.matched[0].rule, 'guardrail:write-without-where');
    assert.equal(parsed.decision.action, 'deny');
    assert.equal(parsed.decision.rule, 'guardrail:write-without-where');
    assert.equal(parsed.decision.sqlstate, '42501');
  });

  it('explain refuses an unknown identity or target with exit 2 and names the known ones', async () => {
    const identity = await explain('ghost', 'SELECT 1');
    assert.equal(identity.code, 2);
    assert.match(identity.stderr, /no identity "ghost" .*known: alice, etl, bot/);
    const target = await warden([
      'policy',
      'explain',
      '--config',
      config,
      '--identity',
      'bot',
      '--target',
      'nowhere',
      'SELECT 1',
    ]);
    assert.equal(target.code, 2);
    assert.match(target.stderr, /no target "nowhere" .*known: shop/);
    const missing = await warden(['policy', 'explain', '--config', config, '--target', 'shop', 'SELECT 1']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /required option '-i, --identity <name>'/);
  });

  it('explain reports an invalid config like check-config, with exit 2', async () => {
    const bad = file('bad-config.yaml', 'policy:\n  rules:\n    - { name: x, action: maybe }\n');
    const result = await warden([
      'policy',
      'explain',
      '--config',
      bad,
      '--identity',
      'bot',
      '--target',
      'shop',
      'SELECT 1',
    ]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /bad-config\.yaml:3:\d+ policy\.rules\[0\]\.action/);
  });

  it('policy test passes a file whose cases all hold, and exits 0', async () => {
    const result = await warden(['policy', 'test', '--config', config, file('passing.yaml', PASSING)]);
    assert.equal(result.code, 0, `${result.stdout}${result.stderr}`);
    assert.match(result.stdout, /^ok +nobody deletes a whole table \(.*passing\.yaml:2\)$/m);
    assert.match(result.stdout, /^ok +bot on shop: SELECT id FROM orders WHERE id = 1/m);
    assert.doesNotMatch(result.stdout, /FAIL/);
    assert.match(result.stdout, /5 cases: 5 passed, 0 failed/);
  });

  it('policy test prints a FAIL line with what was expected and what came, and exits 1', async () => {
    const cases = file(
      'failing.yaml',
      `${PASSING}  - name: the agent may read customers
    identity: bot
    target: shop
    sql: SELECT name FROM customers
    expect: allow
  - name: a review is not a plain denial
    identity: alice
    target: shop
    sql: UPDATE orders SET note = 'x' WHERE id = 3
    expect: deny
  - name: the right action for the wrong reason
    identity: alice
    target: shop
    sql: DELETE FROM t
    expect: deny
    rule: no-ssn
`,
    );
    const result = await warden(['policy', 'test', '--config', config, cases]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stdout, /^FAIL +the agent may read customers \(.*failing\.yaml:29\)$/m);
    assert.match(
      result.stdout,
      /expected allow, got deny by default: no rule allows this for agent identities/,
    );
    assert.match(result.stdout, /expected deny, got review by order-changes-need-review/);
    assert.match(result.stdout, /expected deny by no-ssn, got deny by guardrail:write-without-where/);
    assert.match(result.stdout, /8 cases: 5 passed, 3 failed/);
  });

  it('policy test refuses a malformed cases file with file, line and fix, runs nothing, and exits 2', async () => {
    const cases = file(
      'malformed.yaml',
      `cases:
  - identity: bot
    target: shop
    sql: SELECT 1
    expect: maybe
  - identity: ghost
    target: shop
    sql: SELECT 1
    expct: deny
`,
    );
    const result = await warden(['policy', 'test', '--config', config, cases]);
    assert.equal(result.code, 2);
    assert.equal(result.stdout, '');
    assert.match(
      result.stderr,
      /malformed\.yaml:5:13 cases\[0\]\.expect: expected one of allow, deny, review, mask, limit, got "maybe"\n {2}fix: write one of: allow, deny/,
    );
    assert.match(result.stderr, /malformed\.yaml:6:5 cases\[1\]\.expect: missing "expect"/);
    assert.match(
      result.stderr,
      /malformed\.yaml:6:15 cases\[1\]\.identity: unknown identity "ghost"\n {2}fix: write one of: alice, etl, bot/,
    );
    assert.match(result.stderr, /malformed\.yaml:9:5 cases\[1\]\.expct: unknown key "expct"/);

    const syntax = await warden([
      'policy',
      'test',
      '--config',
      config,
      file('syntax.yaml', 'cases:\n  - sql: "SELECT 1\n'),
    ]);
    assert.equal(syntax.code, 2);
    assert.match(syntax.stderr, /syntax\.yaml:\d+:\d+ YAML syntax error: .*\n {2}fix: /);
  });

  it('prints help for both commands', async () => {
    for (const command of ['explain', 'test']) {
      const result = await warden(['policy', command, '--help']);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, new RegExp(`Usage: warden policy ${command}`));
    }
  });
});
