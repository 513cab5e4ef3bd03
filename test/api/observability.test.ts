/**
 * /metrics, /healthz and /readyz of a real Warden in front of the test
 * PostgreSQL, read over real HTTP after real clients ran statements through
 * it: the counts match what the clients did, every stage is timed, and
 * readiness follows the audit store.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import { type HttpServer, startHttp } from '../../src/api/http.ts';
import { processMetrics } from '../../src/observe/warden-metrics.ts';
import { connectError, seededWarden } from '../proxy/support.ts';

const SEED = `
CREATE TABLE customers (id int PRIMARY KEY, name text, email text);
INSERT INTO customers VALUES (1, 'Ada', 'ada@example.com'), (2, 'Bob', 'bob@example.com');
`;

const POLICY = `
policy:
  rules:
    - name: no-payroll
      match: { tables: [payroll] }
      action: deny
masking:
  key: metrics-test-masking-key-0123456789
  columns:
    - { table: public.customers, column: email, class: email }
  unmask:
    - { identities: [etl], classes: { email: clear } }
`;

/** The samples of a Prometheus text exposition, by `name{labels}` as written. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    assert.ok(match, `not a sample line: ${line}`);
    out.set(match[1]!, Number(match[2]!.replace('+Inf', 'Infinity')));
  }
  return out;
}

async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe('metrics and health endpoints, through real clients', { timeout: 120_000 }, () => {
  const env = seededWarden('observability', SEED, POLICY);
  let http: HttpServer;
  const url = (path: string) => `http://127.0.0.1:${http.port}${path}`;
  const scrape = async () => {
    const response = await fetch(url('/metrics'));
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    return response.text();
  };

  before(async () => {
    const { server } = env.warden;
    http = await startHttp(
      { host: '127.0.0.1', port: 0 },
      {
        metrics: async () => [...server.metrics.registry.snapshot(), ...processMetrics()],
        readiness: async () => server.readiness(),
      },
    );
    const alice = new pg.Client(env.warden.pgConfig('alice'));
    await alice.connect();
    await alice.query('SELECT name, email FROM customers ORDER BY id'); // masked for alice
    await alice.query('UPDATE customers SET name = $1 WHERE id = $2', ['Ada L.', 1]);
    await assert.rejects(alice.query('SELECT 1 / 0'), { code: '22012' });
    await assert.rejects(alice.query('SELECT * FROM payroll'), { code: '42501' });
    await alice.end();
    const etl = new pg.Client(env.warden.pgConfig('etl'));
    await etl.connect();
    await etl.query('SELECT email FROM customers');
    await etl.end();
    assert.equal((await connectError(env.warden.pgConfig('alice', { password: 'wdn_wrong' }))).code, '28P01');
    // Sessions count as closed once Warden has seen the client go.
    await until(
      async () => samples(await scrape()).get('warden_connections_active{kind="human"}') === 0,
      'the sessions are closed',
    );
  });

  after(async () => {
    await http?.close();
  });

  it('counts sessions by identity kind, and refused logins by SQLSTATE', async () => {
    const metrics = samples(await scrape());
    assert.equal(metrics.get('warden_connections_total{kind="human"}'), 1);
    assert.equal(metrics.get('warden_connections_total{kind="service"}'), 1);
    assert.equal(metrics.get('warden_connections_active{kind="service"}'), 0);
    assert.equal(metrics.get('warden_login_failures_total{sqlstate="28P01"}'), 1);
  });

  it('counts statements by decision and outcome, errors by SQLSTATE class, and masked results', async () => {
    const metrics = samples(await scrape());
    // pg's parameterised UPDATE is Parse, Bind, Execute: one statement that runs, judged at Parse and Bind.
    assert.equal(metrics.get('warden_statements_total{decision="allow",outcome="ok"}'), 3);
    assert.equal(metrics.get('warden_statements_total{decision="allow",outcome="error"}'), 1);
    assert.equal(metrics.get('warden_statements_total{decision="deny",outcome="error"}'), 1);
    assert.equal(
      metrics.get('warden_statement_errors_total{class="22"}'),
      1,
      'division by zero, from the server',
    );
    assert.equal(metrics.get('warden_statement_errors_total{class="42"}'), 1, "the denial, Warden's 42501");
    assert.equal(metrics.get('warden_statements_masked_total'), 1, "alice's SELECT of email; not etl's");
  });

  it('times each stage in a histogram: parse, policy, upstream and masking', async () => {
    const metrics = samples(await scrape());
    const count = (stage: string) => metrics.get(`warden_stage_seconds_count{stage="${stage}"}`) ?? 0;
    // Judged: each session's startup setting (client_encoding), alice's 3 Queries, her Parse and Bind, etl's Query.
    assert.equal(count('parse'), 8);
    assert.equal(count('policy'), 8);
    assert.equal(count('upstream'), 4, 'statements that ran');
    assert.equal(count('masking'), 2, 'results rewritten: the SELECTs of customers');
    for (const stage of ['parse', 'policy', 'upstream', 'masking']) {
      const sum = metrics.get(`warden_stage_seconds_sum{stage="${stage}"}`)!;
      assert.ok(sum > 0 && sum < 60, `${stage} took ${sum} s in all`);
      assert.equal(metrics.get(`warden_stage_seconds_bucket{stage="${stage}",le="+Inf"}`), count(stage));
    }
  });

  it('shows the audit queue and the process', async () => {
    await env.warden.server.audit!.flush();
    const metrics = samples(await scrape());
    assert.equal(metrics.get('warden_audit_queue_depth'), 0);
    assert.equal(metrics.get('warden_audit_store_failing'), 0);
    // 2 sessions opened and closed, 1 refused login, 5 statements (the denial included).
    assert.equal(metrics.get('warden_audit_events_committed_total'), 10);
    assert.ok(metrics.get('process_cpu_seconds_total')! > 0);
    assert.ok(metrics.get('process_resident_memory_bytes')! > 1e6);
  });

  it('writes valid exposition text: each metric has HELP and TYPE before its samples', async () => {
    const text = await scrape();
    const declared = new Set<string>();
    for (const line of text.split('\n')) {
      const type = /^# TYPE (\S+) (counter|gauge|histogram)$/.exec(line);
      if (type) declared.add(type[1]!);
      else if (line !== '' && !line.startsWith('# HELP ')) {
        const name = line.split(/[{ ]/)[0]!.replace(/_(bucket|sum|count)$/, '');
        assert.ok(declared.has(name) || declared.has(line.split(/[{ ]/)[0]!), `no TYPE before ${line}`);
      }
    }
  });

  it('answers /healthz, /readyz, and says what it does not serve', async () => {
    const health = await fetch(url('/healthz'));
    assert.equal(health.status, 200);
    assert.equal(await health.text(), 'ok\n');
    const ready = await fetch(url('/readyz'));
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { status: 'ready', checks: { listener: 'ok', audit: 'ok' } });
    const missing = await fetch(url('/nothing'));
    assert.equal(missing.status, 404);
    assert.match(await missing.text(), /no such endpoint: \/nothing/);
    const posted = await fetch(url('/metrics'), { method: 'POST', body: 'x' });
    assert.equal(posted.status, 405);
    assert.equal(posted.headers.get('allow'), 'GET, HEAD');
    await posted.text();
    const head = await fetch(url('/metrics'), { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
  });

  it('is not ready while the audit store cannot be written (statements would be refused), and ready again after', async () => {
    const db = new Database(join(env.warden.config.dataDir, 'warden.db'));
    db.exec('BEGIN EXCLUSIVE');
    const client = new pg.Client(env.warden.pgConfig('etl'));
    try {
      await client.connect();
      await client.query('SELECT 1');
      await until(async () => (await fetch(url('/readyz'))).status === 503, 'readyz turns 503');
      const body = (await (await fetch(url('/readyz'))).json()) as {
        status: string;
        checks: { audit: string };
      };
      assert.equal(body.status, 'not ready');
      assert.match(body.checks.audit, /cannot write its audit trail/);
      assert.equal(samples(await scrape()).get('warden_audit_store_failing'), 1);
    } finally {
      db.exec('COMMIT');
      db.close();
    }
    await until(async () => (await fetch(url('/readyz'))).status === 200, 'readyz is 200 again');
    await client.end();
  });
});
