/**
 * Cost of SQL analysis per statement: a cold analyse() (parse + walk +
 * fingerprint) and a cached lookup, for a few typical shapes. Prints µs.
 *   node --import tsx bench/analysis.ts
 */
import { analyse, loadParser } from '../src/sql/analysis.ts';
import { AnalysisCache } from '../src/sql/cache.ts';

const SHAPES: Record<string, string> = {
  'pgbench select': 'SELECT abalance FROM pgbench_accounts WHERE aid = 48213;',
  'pgbench update': 'UPDATE pgbench_accounts SET abalance = abalance + -3429 WHERE aid = 48213;',
  'join + aggregate':
    "SELECT c.city, count(*), sum(o.total) FROM customers c JOIN orders o ON o.customer_id = c.id WHERE o.ordered_at > now() - interval '7 days' GROUP BY c.city ORDER BY 2 DESC LIMIT 10",
  'cte write':
    'WITH moved AS (DELETE FROM queue WHERE id IN (SELECT id FROM queue LIMIT 100) RETURNING *) INSERT INTO done SELECT * FROM moved',
};

const timeUs = (iterations: number, fn: (i: number) => void): number => {
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) fn(i);
  return Number(process.hrtime.bigint() - start) / 1000 / iterations;
};

const t0 = process.hrtime.bigint();
await loadParser();
process.stdout.write(`parser load: ${(Number(process.hrtime.bigint() - t0) / 1e6).toFixed(1)} ms\n`);
for (const [name, sql] of Object.entries(SHAPES)) {
  // Distinct constants so nothing is cached at any level.
  const cold = timeUs(2000, (i) => analyse(sql.replace(/\d+/, String(i))));
  const cache = new AnalysisCache();
  cache.get(sql);
  const cached = timeUs(200_000, () => cache.get(sql));
  process.stdout.write(
    `${name.padEnd(18)} analyse ${cold.toFixed(1).padStart(6)} µs   cached ${cached.toFixed(2).padStart(5)} µs\n`,
  );
}
