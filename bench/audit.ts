/**
 * `npm run bench:audit`: how many audit events a second the writer commits
 * (goal: at least 50k/s on the embedded SQLite store). Statement events as a
 * session makes them (a SELECT with literals, a table, a decision with a
 * matched rule) are recorded as fast as the loop allows, in bursts the size
 * of a busy second, and the clock stops when the last is committed: the
 * worker thread redacts, chains, hashes and writes them in group commits.
 *
 * Events a second is wall-clock time, and so depends on what else the
 * machine runs. The CPU figure does not: the process's CPU time (user +
 * system, every thread) across the round, per event. Of it, the event loop's
 * share is its busy time (event-loop utilisation); the rest is the audit
 * worker's (and the threads that serve it: GC, SQLite's I/O). Goal: a few µs
 * per event in all. With PostgreSQL, the server's own CPU is not counted.
 *
 *   npm run bench:audit                 (BENCH_AUDIT_EVENTS=200000, BENCH_ROUNDS=3)
 *   BENCH_AUDIT_PG=postgres://postgres@127.0.0.1:5432/test npm run bench:audit   (also the PostgreSQL store)
 *
 * Statement throughput with audit on and off is in `npm run bench -- --paths direct,warden,warden-noaudit`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { StatementRun } from '../src/audit/statement.ts';
import { AuditWriter } from '../src/audit/writer.ts';
import type { StoreSpec } from '../src/store/open-audit.ts';

const EVENTS = Number(process.env.BENCH_AUDIT_EVENTS ?? 200_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const BURST = 20_000;

// Shared by every event, as a session's events share their decision's (see StatementTrace.run).
const KINDS = ['read'];
const TABLES = [{ table: 'pgbench_accounts', operation: 'select' }];
const MATCHED = [{ rule: 'readers', action: 'allow' }];
const NO_MASKED: string[] = [];

function statement(i: number): StatementRun {
  return {
    type: 'statement',
    atMs: Date.now(),
    identity: 'bench',
    session: `bench/${i % 64}`,
    target: 'shop',
    sessionPipeline: 'nightly_etl',
    pipelineFixed: false,
    applicationName: 'pgbench',
    source: 'query',
    sql: `SELECT abalance FROM pgbench_accounts WHERE aid = ${i} AND note = 'x${i}'`,
    fingerprint: '5d5e0f6a0f0b4a2c',
    kinds: KINDS,
    tables: TABLES,
    decision: 'allow',
    rule: 'readers',
    matched: MATCHED,
    outcome: 'ok',
    sqlstate: null,
    rows: 1,
    masked: NO_MASKED,
    maskedRows: 0,
    durationMs: 0.123,
  };
}

interface RoundResult {
  readonly perSecond: number;
  /** µs of the event loop per event spent in record(). */
  readonly recordUs: number;
  /** µs of process CPU per event, every thread. */
  readonly cpuUs: number;
  /** µs per event the event loop was busy (recording, posting batches, acknowledgements). */
  readonly mainUs: number;
}

async function round(store: StoreSpec, dir: string): Promise<RoundResult> {
  const writer = await AuditWriter.start({
    store,
    chain: `bench-${process.pid}-${Date.now()}`,
    redact: true,
    onFailure: 'deny',
    spoolFile: path.join(dir, 'spool.jsonl'),
    queueLimit: EVENTS + 1,
  });
  const cpu = process.cpuUsage();
  const loop = performance.eventLoopUtilization();
  const started = performance.now();
  let recordMicros = 0;
  for (let i = 0; i < EVENTS; i += BURST) {
    const burstCpu = process.cpuUsage();
    for (let j = i; j < Math.min(EVENTS, i + BURST); j++) writer.record(statement(j));
    const spent = process.cpuUsage(burstCpu);
    recordMicros += spent.user + spent.system;
    await new Promise((resolve) => setImmediate(resolve));
  }
  await writer.flush();
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  const busyMs = performance.eventLoopUtilization(loop).active;
  await writer.close();
  return {
    perSecond: EVENTS / seconds,
    recordUs: recordMicros / EVENTS,
    cpuUs: (used.user + used.system) / EVENTS,
    mainUs: (busyMs * 1000) / EVENTS,
  };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

const stores: [string, StoreSpec | undefined][] = [
  ['sqlite', undefined],
  [
    'postgres',
    process.env.BENCH_AUDIT_PG ? { kind: 'postgres', url: process.env.BENCH_AUDIT_PG } : undefined,
  ],
];
process.stdout.write(
  `Audit writer: ${EVENTS} statement events per round, ${ROUNDS} rounds, ${os.cpus().length} cores, node ${process.version}\n`,
);
for (const [name, given] of stores) {
  if (name === 'postgres' && given === undefined) {
    process.stdout.write('postgres: skipped (set BENCH_AUDIT_PG to a database URL to run it)\n');
    continue;
  }
  const results: RoundResult[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'warden-audit-bench-'));
    try {
      results.push(await round(given ?? { kind: 'sqlite', dataDir: dir }, dir));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const rounds = (pick: (r: RoundResult) => number, digits = 0) =>
    results.map((r) => pick(r).toFixed(digits)).join(', ');
  const cpu = median(results.map((r) => r.cpuUs));
  const main = median(results.map((r) => r.mainUs));
  process.stdout.write(
    `${name.padEnd(9)} ${Math.round(median(results.map((r) => r.perSecond)))} events/s committed (median; rounds: ${rounds((r) => r.perSecond)})\n` +
      `${''.padEnd(9)} ${cpu.toFixed(2)} µs CPU/event, all threads (rounds: ${rounds((r) => r.cpuUs, 2)}): ` +
      `event loop ${main.toFixed(2)} (record() ${median(results.map((r) => r.recordUs)).toFixed(2)}), worker and the rest ${(cpu - main).toFixed(2)}\n`,
  );
}
