/**
 * The metric kinds and their text exposition: what Prometheus reads, and
 * how the primary sums its workers' snapshots.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  Counter,
  exposition,
  Gauge,
  Histogram,
  mergeSnapshots,
  Registry,
} from '../../src/observe/metrics.ts';

describe('metrics', { timeout: 10_000 }, () => {
  it('writes counters, gauges and cumulative histogram buckets in the text format', () => {
    const registry = new Registry();
    const statements = registry.add(new Counter('t_statements_total', 'Statements.', ['decision']));
    statements.series('allow').value += 3;
    statements.series('deny').value++;
    registry.add(
      new Gauge('t_depth', 'Depth.', [], (gauge) => {
        gauge.series().value = 7;
      }),
    );
    const latency = registry.add(new Histogram('t_seconds', 'Latency.', ['stage'], [0.001, 0.01]));
    const parse = latency.series('parse');
    parse.observe(0.0005);
    parse.observe(0.001); // on a bound: counted in it (le is inclusive)
    parse.observe(0.5);
    assert.equal(
      exposition(registry.snapshot()),
      [
        '# HELP t_statements_total Statements.',
        '# TYPE t_statements_total counter',
        't_statements_total{decision="allow"} 3',
        't_statements_total{decision="deny"} 1',
        '# HELP t_depth Depth.',
        '# TYPE t_depth gauge',
        't_depth 7',
        '# HELP t_seconds Latency.',
        '# TYPE t_seconds histogram',
        't_seconds_bucket{stage="parse",le="0.001"} 2',
        't_seconds_bucket{stage="parse",le="0.01"} 2',
        't_seconds_bucket{stage="parse",le="+Inf"} 3',
        't_seconds_sum{stage="parse"} 0.5015',
        't_seconds_count{stage="parse"} 3',
        '',
      ].join('\n'),
    );
  });

  it('escapes label values and help text', () => {
    const registry = new Registry();
    registry
      .add(new Counter('t_total', 'Line one\nback\\slash', ['name']))
      .series('a "quoted"\\name\n').value = 1;
    const text = exposition(registry.snapshot());
    assert.match(text, /^# HELP t_total Line one\\nback\\\\slash$/m);
    assert.match(text, /^t_total\{name="a \\"quoted\\"\\\\name\\n"\} 1$/m);
  });

  it('sums workers: counters and histograms add, gauges add or take the largest', () => {
    const worker = (connections: number, lag: number, observed: number[]) => {
      const registry = new Registry();
      registry.add(new Counter('t_total', 'T.', ['kind'])).series('human').value = connections;
      registry.add(new Gauge('t_active', 'A.', [])).series().value = connections;
      registry.add(new Gauge('t_lag', 'L.', [], undefined, 'max')).series().value = lag;
      const histogram = registry.add(new Histogram('t_seconds', 'S.', [], [1]));
      for (const value of observed) histogram.series().observe(value);
      return registry.snapshot();
    };
    const merged = exposition(mergeSnapshots([worker(2, 0.5, [0.5, 2]), worker(3, 0.25, [0.1])]));
    assert.match(merged, /^t_total\{kind="human"\} 5$/m);
    assert.match(merged, /^t_active 5$/m);
    assert.match(merged, /^t_lag 0\.5$/m);
    assert.match(merged, /^t_seconds_bucket\{le="1"\} 2$/m);
    assert.match(merged, /^t_seconds_bucket\{le="\+Inf"\} 3$/m);
    assert.match(merged, /^t_seconds_sum 2\.6$/m);
  });
});
