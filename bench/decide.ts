/**
 * Cost of the policy decision per statement, in process: PolicyEngine.decide
 * with the 20 rules of bench/policy.yaml on what pgbench sends (its texts
 * change constants on every call), as the bench identity, and `evaluate`
 * alone on the same statements (the rules without kept verdicts). Prints µs.
 *   node --import tsx bench/decide.ts
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../src/config/index.ts';
import type { DecisionContext, SessionInfo, StatementSource } from '../src/policy/decision.ts';
import { PolicyEngine } from '../src/policy/engine.ts';
import { evaluate } from '../src/policy/rules.ts';
import { analyse, loadParser } from '../src/sql/analysis.ts';

const BENCH_DIR = path.dirname(new URL(import.meta.url).pathname);
const config = parseConfig(
  [
    'listen: { host: 127.0.0.1, port: 6432 }',
    'dataDir: ./data',
    'identities:',
    '  - { name: bench, kind: service, groups: [pgbench, batch] }',
    'targets:',
    '  - name: bench',
    '    host: 127.0.0.1',
    '    port: 5432',
    '    user: postgres',
    '    tls: { mode: disable }',
    '    labels: { env: bench, tier: oltp }',
    '    access: { identities: [bench] }',
    readFileSync(path.join(BENCH_DIR, 'policy.yaml'), 'utf8'),
  ].join('\n'),
  path.join(BENCH_DIR, 'decide-bench.yaml'),
);
await loadParser();

const session: SessionInfo = {
  id: 1,
  identity: config.identities[0]!,
  target: config.targets[0]!,
  clientAddress: '127.0.0.1',
  tls: false,
  pipeline: null,
  pipelineFixed: false,
  tag: 'bench/1',
  applicationName: 'pgbench',
};
const random = (n: number) => 1 + Math.floor(Math.random() * n);

/** What pgbench sends per transaction: [source, text] (prepared: Bind and Execute of one text). */
const WORKLOADS: Record<string, () => [StatementSource, string][]> = {
  'select-only simple': () => [
    ['query', `SELECT abalance FROM pgbench_accounts WHERE aid = ${random(1e6)};`],
  ],
  'select-only prepared': () => [
    ['bind', 'SELECT abalance FROM pgbench_accounts WHERE aid = $1;'],
    ['execute', 'SELECT abalance FROM pgbench_accounts WHERE aid = $1;'],
  ],
  'TPC-B simple': () => {
    const [aid, bid, tid, delta] = [random(1e6), random(10), random(100), random(10_000) - 5000];
    return [
      ['query', 'BEGIN;'],
      ['query', `UPDATE pgbench_accounts SET abalance = abalance + ${delta} WHERE aid = ${aid};`],
      ['query', `SELECT abalance FROM pgbench_accounts WHERE aid = ${aid};`],
      ['query', `UPDATE pgbench_tellers SET tbalance = tbalance + ${delta} WHERE tid = ${tid};`],
      ['query', `UPDATE pgbench_branches SET bbalance = bbalance + ${delta} WHERE bid = ${bid};`],
      [
        'query',
        `INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (${tid}, ${bid}, ${aid}, ${delta}, CURRENT_TIMESTAMP);`,
      ],
      ['query', 'END;'],
    ];
  },
};

const contextOf = ([source, sql]: [StatementSource, string]): DecisionContext => ({
  session,
  source,
  sql,
  name: '',
  prepared: () => undefined,
});

const ITERATIONS = Number(process.env.DECIDE_ITERATIONS ?? 200_000);
for (const [name, workload] of Object.entries(WORKLOADS)) {
  const transactions = Array.from({ length: 1000 }, () => workload().map(contextOf));
  const engine = new PolicyEngine(config.policy);
  for (const transaction of transactions) for (const context of transaction) engine.decide(context);
  let calls = 0;
  let start = process.hrtime.bigint();
  for (let i = 0; calls < ITERATIONS; i++) {
    for (const context of transactions[i % transactions.length]!) {
      const decision = engine.decide(context);
      if (decision.action !== 'allow')
        throw new Error(`${name}: ${context.sql} was refused: ${decision.message}`);
      calls++;
    }
  }
  const decideUs = Number(process.hrtime.bigint() - start) / 1000 / calls;

  const inputs = transactions.flat().map((context) => ({
    identity: session.identity,
    target: session.target,
    applicationName: session.applicationName,
    statements: analyse(context.sql!).statements,
    now: new Date(),
  }));
  const evaluations = Math.min(ITERATIONS, 50_000);
  start = process.hrtime.bigint();
  for (let i = 0; i < evaluations; i++) evaluate(config.policy, inputs[i % inputs.length]!);
  const evaluateUs = Number(process.hrtime.bigint() - start) / 1000 / evaluations;
  process.stdout.write(
    `${name.padEnd(22)} decide ${decideUs.toFixed(2).padStart(6)} µs/call   evaluate ${evaluateUs.toFixed(2).padStart(6)} µs/call\n`,
  );
}
