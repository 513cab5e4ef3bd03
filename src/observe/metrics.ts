/**
 * Counters, gauges and histograms in the Prometheus text format (0.0.4).
 * Our own small kind rather than prom-client: the data path counts every
 * statement, so an update must cost a map lookup and an add (no label
 * hashing per call), and workers' values must merge in the primary (a
 * snapshot is plain data that crosses the cluster channel).
 */

export type MetricType = 'counter' | 'gauge' | 'histogram';

/** One metric's values, plain data: what a worker sends the primary. */
export interface MetricSnapshot {
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  readonly labelNames: readonly string[];
  /** Histograms: upper bounds of the buckets (+Inf implied). */
  readonly buckets?: readonly number[];
  /** Gauges: how workers' values combine. */
  readonly merge?: 'sum' | 'max';
  readonly series: readonly SeriesSnapshot[];
}

export interface SeriesSnapshot {
  readonly labels: readonly string[];
  /** Counter or gauge value; a histogram's sum. */
  readonly value: number;
  /** Histograms: observations per bucket (not cumulative), the last for +Inf. */
  readonly counts?: readonly number[];
}

abstract class Metric {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[] = [],
  ) {}

  abstract snapshot(): MetricSnapshot;
}

/** A counter or gauge series: a number the owner adds to. */
export class Cell {
  value = 0;

  constructor(readonly labels: readonly string[]) {}
}

export class Counter extends Metric {
  private readonly cells = new Map<string, Cell>();

  constructor(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    /** Sets the values at each scrape instead of their being kept up to date (figures another part keeps). */
    private readonly read?: (metric: Counter) => void,
  ) {
    super(name, help, labelNames);
  }

  /** The series of these label values: keep it, and add to `.value` on hot paths. */
  series(...labels: string[]): Cell {
    const key = labels.join('\u0000');
    let cell = this.cells.get(key);
    if (cell === undefined) {
      cell = new Cell(labels);
      this.cells.set(key, cell);
    }
    return cell;
  }

  snapshot(): MetricSnapshot {
    return { ...this.described('counter'), series: this.seriesSnapshot() };
  }

  protected described(type: MetricType) {
    return { name: this.name, help: this.help, type, labelNames: this.labelNames };
  }

  protected seriesSnapshot(): SeriesSnapshot[] {
    this.read?.(this);
    return [...this.cells.values()].map((cell) => ({ labels: cell.labels, value: cell.value }));
  }
}

export class Gauge extends Counter {
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    read?: (metric: Counter) => void,
    /** How the values of several workers combine. */
    private readonly merge: 'sum' | 'max' = 'sum',
  ) {
    super(name, help, labelNames, read);
  }

  override snapshot(): MetricSnapshot {
    return { ...this.described('gauge'), merge: this.merge, series: this.seriesSnapshot() };
  }
}

/** Observations of one series of a histogram. */
export class Distribution {
  readonly counts: number[];
  sum = 0;

  constructor(
    readonly labels: readonly string[],
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Array(bounds.length + 1).fill(0);
  }

  observe(value: number): void {
    const { bounds } = this;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
  }
}

export class Histogram extends Metric {
  private readonly distributions = new Map<string, Distribution>();

  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    readonly buckets: readonly number[],
  ) {
    super(name, help, labelNames);
  }

  series(...labels: string[]): Distribution {
    const key = labels.join('\u0000');
    let distribution = this.distributions.get(key);
    if (distribution === undefined) {
      distribution = new Distribution(labels, this.buckets);
      this.distributions.set(key, distribution);
    }
    return distribution;
  }

  snapshot(): MetricSnapshot {
    return {
      name: this.name,
      help: this.help,
      type: 'histogram',
      labelNames: this.labelNames,
      buckets: this.buckets,
      series: [...this.distributions.values()].map((d) => ({
        labels: d.labels,
        value: d.sum,
        counts: [...d.counts],
      })),
    };
  }
}

/** A process's metrics, in the order they were made. */
export class Registry {
  private readonly metrics: Metric[] = [];

  add<T extends Metric>(metric: T): T {
    this.metrics.push(metric);
    return metric;
  }

  snapshot(): MetricSnapshot[] {
    return this.metrics.map((metric) => metric.snapshot());
  }
}

/**
 * Several processes' snapshots as one: counters and histograms add up,
 * gauges add up or take the largest, series matched by their labels.
 */
export function mergeSnapshots(all: readonly (readonly MetricSnapshot[])[]): MetricSnapshot[] {
  const merged = new Map<string, { metric: MetricSnapshot; series: Map<string, SeriesSnapshot> }>();
  for (const snapshots of all) {
    for (const metric of snapshots) {
      let entry = merged.get(metric.name);
      if (entry === undefined) {
        entry = { metric, series: new Map() };
        merged.set(metric.name, entry);
      }
      for (const series of metric.series) {
        const key = series.labels.join('\u0000');
        const before = entry.series.get(key);
        entry.series.set(key, before === undefined ? series : combined(metric, before, series));
      }
    }
  }
  return [...merged.values()].map(({ metric, series }) => ({ ...metric, series: [...series.values()] }));
}

function combined(metric: MetricSnapshot, a: SeriesSnapshot, b: SeriesSnapshot): SeriesSnapshot {
  if (metric.type === 'histogram') {
    return { labels: a.labels, value: a.value + b.value, counts: a.counts!.map((n, i) => n + b.counts![i]!) };
  }
  const max = metric.type === 'gauge' && metric.merge === 'max';
  return { labels: a.labels, value: max ? Math.max(a.value, b.value) : a.value + b.value };
}

/** The Prometheus text exposition of the snapshots. */
export function exposition(snapshots: readonly MetricSnapshot[]): string {
  const lines: string[] = [];
  for (const metric of snapshots) {
    lines.push(`# HELP ${metric.name} ${escapeHelp(metric.help)}`, `# TYPE ${metric.name} ${metric.type}`);
    for (const series of metric.series) {
      const pairs = metric.labelNames.map((name, i) => `${name}="${escapeLabel(series.labels[i] ?? '')}"`);
      if (metric.type !== 'histogram') {
        lines.push(`${metric.name}${braces(pairs)} ${number(series.value)}`);
        continue;
      }
      let cumulative = 0;
      const bounds = [...metric.buckets!.map(number), '+Inf'];
      bounds.forEach((bound, i) => {
        cumulative += series.counts![i]!;
        lines.push(`${metric.name}_bucket${braces([...pairs, `le="${bound}"`])} ${cumulative}`);
      });
      lines.push(`${metric.name}_sum${braces(pairs)} ${number(series.value)}`);
      lines.push(`${metric.name}_count${braces(pairs)} ${cumulative}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

const braces = (pairs: readonly string[]) => (pairs.length === 0 ? '' : `{${pairs.join(',')}}`);
const number = (value: number) => (Number.isFinite(value) ? String(value) : value > 0 ? '+Inf' : '-Inf');
const escapeHelp = (text: string) => text.replaceAll('\\', '\\\\').replaceAll('\n', '\\n');
const escapeLabel = (text: string) => escapeHelp(text).replaceAll('"', '\\"');
