/**
 * Medians and tables: what the benchmark prints and saves.
 */
import { PATH_NAMES, type PathName } from './paths.ts';

export interface RunRecord {
  readonly round: number;
  readonly path: PathName;
  /** Position of the run within its round (0 = first). */
  readonly order: number;
  readonly tps?: number;
  readonly latencyMs?: number;
  readonly transactions?: number;
  readonly failedTransactions?: number;
  /** CPU seconds (utime + stime) the proxy used during the run. */
  readonly cpuSeconds?: number;
  readonly cpuUsPerTx?: number;
  readonly error?: string;
}

export interface PathSummary {
  readonly runs: number;
  readonly failures: number;
  readonly medianTps: number | null;
  readonly medianLatencyMs: number | null;
  /** Median over rounds of this path's TPS divided by direct's TPS in the same round. */
  readonly ratioToDirect: number | null;
  readonly cpuUsPerTx: number | null;
}

export interface WorkloadReport {
  readonly id: string;
  readonly title: string;
  readonly command: string;
  readonly notes: readonly string[];
  readonly runs: readonly RunRecord[];
  readonly summary: Partial<Record<PathName, PathSummary>>;
  /** warden-policy against warden-hook, when both ran. */
  readonly policyVsHook?: PairRatio;
  /** warden (audit on) against warden-noaudit, when both ran. */
  readonly auditVsOff?: PairRatio;
}

/** One path against another, round by round. */
export interface PairRatio {
  readonly path: PathName;
  readonly baseline: PathName;
  /** Median over rounds of path TPS / baseline TPS in the same round. */
  readonly tpsRatio: number | null;
  /** Median over rounds of the difference in CPU µs/tx (path - baseline). */
  readonly cpuUsPerTxDelta: number | null;
}

export function median(values: readonly number[]): number | null {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export function summarise(runs: readonly RunRecord[], paths: readonly PathName[]): WorkloadReport['summary'] {
  const summary: WorkloadReport['summary'] = {};
  const directByRound = new Map<number, number>();
  for (const run of runs)
    if (run.path === 'direct' && run.tps !== undefined) directByRound.set(run.round, run.tps);
  for (const name of paths) {
    const own = runs.filter((run) => run.path === name);
    const ok = own.filter((run) => run.tps !== undefined);
    const ratios = ok.flatMap((run) => {
      const direct = directByRound.get(run.round);
      return direct === undefined || direct === 0 ? [] : [run.tps! / direct];
    });
    summary[name] = {
      runs: own.length,
      failures: own.length - ok.length,
      medianTps: median(ok.map((run) => run.tps!)),
      medianLatencyMs: median(ok.map((run) => run.latencyMs!)),
      ratioToDirect: median(ratios),
      cpuUsPerTx: median(ok.flatMap((run) => (run.cpuUsPerTx === undefined ? [] : [run.cpuUsPerTx]))),
    };
  }
  return summary;
}

export function pairRatio(runs: readonly RunRecord[], name: PathName, baseline: PathName): PairRatio {
  const byRound = new Map<number, RunRecord>();
  for (const run of runs) if (run.path === baseline && run.tps !== undefined) byRound.set(run.round, run);
  const ratios: number[] = [];
  const deltas: number[] = [];
  for (const run of runs) {
    const base = byRound.get(run.round);
    if (run.path !== name || run.tps === undefined || base === undefined) continue;
    if (base.tps! > 0) ratios.push(run.tps / base.tps!);
    if (run.cpuUsPerTx !== undefined && base.cpuUsPerTx !== undefined)
      deltas.push(run.cpuUsPerTx - base.cpuUsPerTx);
  }
  return { path: name, baseline, tpsRatio: median(ratios), cpuUsPerTxDelta: median(deltas) };
}

const fixed = (value: number | null | undefined, digits: number) =>
  value === null || value === undefined ? 'n/a' : value.toFixed(digits);

function pad(cells: readonly string[], widths: readonly number[]): string {
  return cells
    .map((cell, index) => (index === 0 ? cell.padEnd(widths[index]!) : cell.padStart(widths[index]!)))
    .join('  ');
}

export function formatTable(report: WorkloadReport, skipped: ReadonlyMap<PathName, string>): string {
  const header = ['path', 'TPS', 'latency ms', 'ratio', 'CPU µs/tx', 'runs'];
  const rows: string[][] = [];
  const lines: string[] = [];
  for (const name of PATH_NAMES) {
    const summary = report.summary[name];
    if (summary === undefined) {
      if (skipped.has(name)) rows.push([name, 'skipped', '', '', '', '']);
      continue;
    }
    rows.push([
      name,
      fixed(summary.medianTps, 1),
      fixed(summary.medianLatencyMs, 3),
      fixed(summary.ratioToDirect, 2),
      name === 'direct' ? '-' : fixed(summary.cpuUsPerTx, 1),
      summary.failures === 0 ? String(summary.runs) : `${summary.runs - summary.failures}/${summary.runs} ok`,
    ]);
  }
  const widths = header.map((cell, index) => Math.max(cell.length, ...rows.map((row) => row[index]!.length)));
  lines.push(`${report.title}   (${report.command})`);
  for (const note of report.notes) lines.push(`  note: ${note}`);
  lines.push(pad(header, widths));
  lines.push(widths.map((width) => '-'.repeat(width)).join('  '));
  for (const row of rows) lines.push(pad(row, widths));
  for (const run of report.runs) {
    if (run.error !== undefined)
      lines.push(`  ! round ${run.round} ${run.path}: ${firstLines(run.error, 3)}`);
  }
  return lines.join('\n');
}

export function summaryLine(report: WorkloadReport): string {
  const ratio = (name: PathName) => fixed(report.summary[name]?.ratioToDirect, 2);
  const cpu = (name: PathName) => fixed(report.summary[name]?.cpuUsPerTx, 1);
  return (
    `${report.title.padEnd(34)} warden/direct ${ratio('warden')}  warden-2w/direct ${ratio('warden-2w')}  ` +
    `pgbouncer/direct ${ratio('pgbouncer')}  relay/direct ${ratio('relay')}  ` +
    `warden CPU ${cpu('warden')} µs/tx (2 workers ${cpu('warden-2w')}) vs pgbouncer ${cpu('pgbouncer')} µs/tx`
  );
}

/** The policy cost of one workload: warden-policy / warden-hook TPS and both paths' CPU per transaction. */
export function policyCostLine(report: WorkloadReport): string {
  return costLine(report, report.policyVsHook, ['policy', 'warden-policy'], ['hook', 'warden-hook']);
}

/** The audit cost of one workload: warden / warden-noaudit TPS and both paths' CPU per transaction. */
export function auditCostLine(report: WorkloadReport): string {
  return costLine(report, report.auditVsOff, ['on', 'warden'], ['off', 'warden-noaudit']);
}

function costLine(
  report: WorkloadReport,
  pair: PairRatio | undefined,
  [label, name]: readonly [string, PathName],
  [baseLabel, baseName]: readonly [string, PathName],
): string {
  const path = report.summary[name];
  const base = report.summary[baseName];
  const delta = pair?.cpuUsPerTxDelta;
  return (
    `${report.title.padEnd(34)} ${label}/${baseLabel} ${fixed(pair?.tpsRatio, 3)}  ` +
    `TPS ${fixed(path?.medianTps, 1)} / ${fixed(base?.medianTps, 1)}  ` +
    `CPU µs/tx ${label} ${fixed(path?.cpuUsPerTx, 1)} ${baseLabel} ${fixed(base?.cpuUsPerTx, 1)}` +
    (delta === null || delta === undefined ? '' : ` (${delta >= 0 ? '+' : ''}${delta.toFixed(1)})`)
  );
}

function firstLines(text: string, count: number): string {
  return text.split('\n').filter(Boolean).slice(0, count).join(' | ');
}
