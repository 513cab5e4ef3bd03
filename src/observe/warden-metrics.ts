/**
 * What Warden counts, read from the same events the audit trail records
 * (connections, failed logins, statements with their decision, outcome and
 * time upstream), plus the stage timings only the data path knows (parse,
 * policy, masking) and the audit writer's queue. Series are made once and
 * kept, so counting a statement is a few additions.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { AuditEvent } from '../audit/events.ts';
import type { StatementRun } from '../audit/statement.ts';
import type { AuditStats } from '../audit/writer.ts';
import {
  type Cell,
  Counter,
  type Distribution,
  Gauge,
  Histogram,
  type MetricSnapshot,
  Registry,
} from './metrics.ts';

/** Seconds, from 5 µs (a cached parse) to 10 s (a long query). */
const LATENCY_BUCKETS = [
  0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
  0.25, 0.5, 1, 2.5, 5, 10,
];

export type Stage = 'parse' | 'policy' | 'upstream' | 'masking';
export type SessionFailure = 'protocol' | 'internal' | 'server-lost';

export class WardenMetrics {
  readonly registry = new Registry();
  private readonly connections = this.registry.add(
    new Counter('warden_connections_total', 'Sessions opened, by identity kind.', ['kind']),
  );
  private readonly active = this.registry.add(
    new Gauge('warden_connections_active', 'Sessions open now, by identity kind.', ['kind']),
  );
  private readonly loginFailures = this.registry.add(
    new Counter('warden_login_failures_total', 'Logins refused, by the SQLSTATE sent.', ['sqlstate']),
  );
  private readonly statements = this.registry.add(
    new Counter(
      'warden_statements_total',
      'Statements judged, by decision and outcome (ok, error, not-run: discarded after an earlier error).',
      ['decision', 'outcome'],
    ),
  );
  private readonly masked = this.registry.add(
    new Counter('warden_statements_masked_total', 'Statements whose results had columns masked.'),
  );
  private readonly errors = this.registry.add(
    new Counter(
      'warden_statement_errors_total',
      "Statements that ended in an error (the server's or Warden's), by SQLSTATE class.",
      ['class'],
    ),
  );
  private readonly sessionFailures = this.registry.add(
    new Counter(
      'warden_session_failures_total',
      'Sessions Warden ended with a FATAL error: protocol violation, internal error, or the server lost.',
      ['reason'],
    ),
  );
  private readonly stages = this.registry.add(
    new Histogram(
      'warden_stage_seconds',
      'Time per statement in each stage: parse (SQL text to analysis, cached by shape), policy (rules), ' +
        'upstream (forwarded to answered), masking (rewriting result rows).',
      ['stage'],
      LATENCY_BUCKETS,
    ),
  );
  private readonly stage: Readonly<Record<Stage, Distribution>> = {
    parse: this.stages.series('parse'),
    policy: this.stages.series('policy'),
    upstream: this.stages.series('upstream'),
    masking: this.stages.series('masking'),
  };
  /** Kind of each open session, by its tag: the close event does not repeat it. */
  private readonly kinds = new Map<string, string>();
  private readonly byDecision = new Map<string, Cell>();

  /** Counts an event as the audit trail sees it. */
  observe(event: AuditEvent | StatementRun): void {
    switch (event.type) {
      case 'statement': {
        this.statement(event.decision, event.outcome, event.sqlstate);
        if (event.masked.length > 0) this.masked.series().value++;
        if (event.decision === 'allow' && event.outcome !== 'not-run')
          this.stage.upstream.observe(event.durationMs / 1000);
        return;
      }
      case 'connection.open':
        this.kinds.set(event.session, event.kind);
        this.connections.series(event.kind).value++;
        this.active.series(event.kind).value++;
        return;
      case 'connection.close': {
        const kind = this.kinds.get(event.session);
        if (kind === undefined) return;
        this.kinds.delete(event.session);
        this.active.series(kind).value--;
        return;
      }
      case 'login.failed':
        this.loginFailures.series(event.sqlstate).value++;
        return;
    }
  }

  private statement(decision: string, outcome: string, sqlstate: string | null): void {
    const key = `${decision}/${outcome}`;
    let cell = this.byDecision.get(key);
    if (cell === undefined) {
      cell = this.statements.series(decision, outcome);
      this.byDecision.set(key, cell);
    }
    cell.value++;
    if (sqlstate !== null) this.errors.series(sqlstate.slice(0, 2)).value++;
  }

  /** Time spent in a stage by one statement, in milliseconds. */
  timed(stage: Stage, ms: number): void {
    this.stage[stage].observe(ms / 1000);
  }

  sessionFailed(reason: SessionFailure): void {
    this.sessionFailures.series(reason).value++;
  }

  /** The audit writer's queue and counts, read at each scrape. */
  watchAudit(stats: () => AuditStats): void {
    const add = (metric: Counter) => this.registry.add(metric);
    const read = (pick: (s: AuditStats) => number) => (metric: Counter) => {
      metric.series().value = pick(stats());
    };
    add(
      new Gauge(
        'warden_audit_queue_depth',
        'Audit events recorded, not yet committed or spooled.',
        [],
        read((s) => s.queued),
      ),
    );
    add(
      new Gauge(
        'warden_audit_lag_seconds',
        'Age of the oldest audit event not yet safe.',
        [],
        read((s) => s.lagMs / 1000),
        'max',
      ),
    );
    add(
      new Gauge(
        'warden_audit_store_failing',
        '1 while the audit store cannot be written.',
        [],
        read((s) => Number(s.failing)),
        'max',
      ),
    );
    add(
      new Counter(
        'warden_audit_events_committed_total',
        'Audit events written to the store.',
        [],
        read((s) => s.committed),
      ),
    );
    add(
      new Counter(
        'warden_audit_events_spooled_total',
        'Audit events written to the spool file.',
        [],
        read((s) => s.spooled),
      ),
    );
    add(
      new Counter(
        'warden_audit_events_dropped_total',
        'Audit events not kept (the queue held twice its limit).',
        [],
        read((s) => s.dropped),
      ),
    );
  }
}

let processRegistry: Registry | undefined;

/** The process's own figures (CPU, memory, event-loop delay): one set per process, however many servers it runs. */
export function processMetrics(): MetricSnapshot[] {
  processRegistry ??= processFigures(new Registry());
  return processRegistry.snapshot();
}

function processFigures(registry: Registry): Registry {
  const delay = monitorEventLoopDelay({ resolution: 20 });
  delay.enable();
  const started = Date.now() / 1000 - process.uptime();
  const read = (value: () => number) => (metric: Counter) => {
    metric.series().value = value();
  };
  registry.add(
    new Counter(
      'process_cpu_seconds_total',
      'User and system CPU time of Warden processes.',
      [],
      read(() => {
        const { user, system } = process.cpuUsage();
        return (user + system) / 1e6;
      }),
    ),
  );
  registry.add(
    new Gauge(
      'process_resident_memory_bytes',
      'Resident memory of Warden processes.',
      [],
      read(process.memoryUsage.rss),
    ),
  );
  registry.add(
    new Gauge(
      'process_start_time_seconds',
      'Start time of the process, Unix seconds.',
      [],
      read(() => started),
      'max',
    ),
  );
  registry.add(
    new Gauge(
      'nodejs_eventloop_delay_p99_seconds',
      'Event-loop delay, 99th percentile since the last scrape (a busy loop delays every session).',
      [],
      read(() => {
        const p99 = delay.percentile(99) / 1e9;
        delay.reset();
        return p99;
      }),
      'max',
    ),
  );
  return registry;
}
