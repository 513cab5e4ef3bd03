/**
 * `npm run bench:masking`: the cost of masking on the wire, and its memory.
 *
 * 1. A 10k-row result of 4 columns, 2 of them masked (email: hash, ssn:
 *    redact), read through Warden by an identity that sees them masked and
 *    by one that sees them clear (the same Warden, the same query: the
 *    clear one takes the undecoded fast path), in alternating rounds.
 *    Prints the median of masked rows/s ÷ clear rows/s, twice: reading the
 *    same rows again (Warden remembers the masks of values it has seen) and
 *    reading values never seen before (every hash computed), with
 *    Warden's own CPU time per row (utime + stime from /proc), which a
 *    busy machine disturbs less than the rates.
 * 2. About 1 GB through a masked column (a view of 1M rows of 1 kB, the
 *    column classified by its name), streamed by a client that keeps no
 *    rows, while Warden's resident memory is sampled. Prints the peak.
 *
 * Warden runs as `warden start` (a child process, so its memory is its
 * own). It creates the database warden_maskbench_<pid> on 127.0.0.1:5432
 * (user postgres) and drops it at the end. A benchmark: it judges nothing.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { cpuSeconds, freePort, spawnManaged, stopAll } from './children.ts';
import { profileFlags, REPO_ROOT } from './paths.ts';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const READS_PER_ROUND = 20;
const BIG_ROWS = Number(process.env.BENCH_BIG_ROWS ?? 1_000_000);
const database = `warden_maskbench_${process.pid}`;
const admin = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' };
const folder = mkdtempSync(path.join(os.tmpdir(), 'warden-maskbench-'));

async function sql(text: string, db = database): Promise<void> {
  const client = new pg.Client({ ...admin, database: db });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

function peakRss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  await sql(`CREATE DATABASE ${database}`, 'postgres');
  await sql(`
    CREATE TABLE people (id int, email text, city text, ssn text);
    INSERT INTO people SELECT g, 'person' || g || '@example.com', 'city ' || (g % 100), lpad(g::text, 9, '0')
      FROM generate_series(1, 10000) g;
    CREATE VIEW big AS SELECT g AS id, repeat('a', 1000) AS email FROM generate_series(1, ${BIG_ROWS}) g;`);
  const port = await freePort();
  const file = path.join(folder, 'warden.yaml');
  writeFileSync(
    file,
    `listen: { host: 127.0.0.1, port: ${port} }
http: { host: 127.0.0.1, port: 0 }
dataDir: ./data
identities:
  - { name: masked, kind: service }
  - { name: clear, kind: service, groups: [trusted] }
targets:
  - name: ${database}
    host: 127.0.0.1
    port: 5432
    user: postgres
    tls: { mode: disable }
    access: { identities: [masked, clear] }
masking:
  key: bench-masking-key-0123456789
  strategies: { email: hash, national_id: redact }
  unmask:
    - { groups: [trusted], classes: { "*": clear } }
`,
  );
  const bin = path.join(REPO_ROOT, 'bin', 'warden.js');
  const keyOf = (identity: string) =>
    execFileSync(process.execPath, [bin, 'key', 'create', '--identity', identity, '--config', file], {
      encoding: 'utf8',
    })
      .trim()
      .split('\n')
      .pop()!
      .trim();
  const keys = { masked: keyOf('masked'), clear: keyOf('clear') };
  const startWarden = async () => {
    const child = spawnManaged(
      'warden',
      process.execPath,
      [...profileFlags('warden-masking'), bin, 'start', '--config', file],
      { cwd: REPO_ROOT },
    );
    await child.waitForLine(/listening/, 30_000);
    return child;
  };
  let warden = await startWarden();
  const connect = async (identity: 'masked' | 'clear') => {
    const client = new pg.Client({
      host: '127.0.0.1',
      port,
      database,
      user: identity,
      password: keys[identity],
    });
    await client.connect();
    return client;
  };

  // 1. 10k rows, 2 of 4 columns masked, against the same read in the clear: the same query again and
  // again (masks of values seen before are remembered), then every read of values never seen before
  // (a suffix per read makes each email new: every mask costs its HMAC).
  const query = 'SELECT id, email, city, ssn FROM people';
  const clients = { masked: await connect('masked'), clear: await connect('clear') };
  const check = await clients.masked.query(`${query} WHERE id = 1`);
  if (check.rows[0].email === 'person1@example.com') throw new Error('the masked identity read email clear');
  const compare = async (name: string, queryOf: (round: number, read: number) => string) => {
    if (ROUNDS === 0) return; // BENCH_ROUNDS=0: the memory part alone
    // A warm-up read each, not counted: the first rounds would measure the JIT.
    for (const identity of ['masked', 'clear'] as const)
      for (let i = 0; i < READS_PER_ROUND; i++) await clients[identity].query(queryOf(0, i));
    const ratios: number[] = [];
    const cpu = { masked: [] as number[], clear: [] as number[] };
    for (let round = 1; round <= ROUNDS; round++) {
      const rate: Record<string, number> = {};
      const order = round % 2 === 0 ? (['clear', 'masked'] as const) : (['masked', 'clear'] as const);
      for (const identity of order) {
        const start = process.hrtime.bigint();
        const cpuBefore = cpuSeconds(warden.pid);
        let rows = 0;
        for (let i = 0; i < READS_PER_ROUND; i++)
          rows += (await clients[identity].query(queryOf(round, i))).rowCount ?? 0;
        rate[identity] = rows / (Number(process.hrtime.bigint() - start) / 1e9);
        cpu[identity].push(((cpuSeconds(warden.pid) - cpuBefore) / rows) * 1e6);
      }
      ratios.push(rate.masked! / rate.clear!);
      console.log(
        `${name} round ${round}: masked ${rate.masked!.toFixed(0)} rows/s, clear ${rate.clear!.toFixed(0)} rows/s, ratio ${(rate.masked! / rate.clear!).toFixed(3)}`,
      );
    }
    console.log(
      `10k rows, 2 of 4 columns masked, ${name}: masked/clear = ${median(ratios).toFixed(3)} (median of ${ROUNDS} rounds); ` +
        `Warden CPU µs/row masked ${median(cpu.masked).toFixed(2)}, clear ${median(cpu.clear).toFixed(2)}`,
    );
  };
  await compare('same rows read again', () => query);
  await compare('new values every read', (round, read) =>
    query.replace('email', `email || '.${round}.${read}' AS email`),
  );
  await clients.masked.end();
  await clients.clear.end();

  // 2. About 1 GB through a masked column, rows not kept by the client, through a Warden started
  // afresh (the heap the first part grew is reported, then left behind).
  console.log(`Warden RSS after part 1: ${(peakRss(warden.pid) / 2 ** 20).toFixed(0)} MB`);
  await warden.stop();
  warden = await startWarden();
  await (await connect('masked')).end(); // the first session reads the catalog
  const before = peakRss(warden.pid);
  let peak = before;
  const sampler = setInterval(() => {
    peak = Math.max(peak, peakRss(warden.pid));
  }, 50);
  const client = await connect('masked');
  let rows = 0;
  let bytes = 0;
  const start = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const streamed = client.query(new pg.Query('SELECT id, email FROM big'));
    streamed.on('row', (row: { email: string }) => {
      rows++;
      bytes += 1000; // what the server sent for the column; the client sees the masked value
      if (row.email.startsWith('aaaa')) reject(new Error('the masked identity read the column clear'));
    });
    streamed.on('end', () => resolve());
    streamed.on('error', reject);
  });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  clearInterval(sampler);
  await client.end();
  console.log(
    `${(bytes / 2 ** 30).toFixed(2)} GiB (${rows} rows) through a masked column in ${seconds.toFixed(1)} s: ` +
      `Warden RSS ${(before / 2 ** 20).toFixed(0)} MB before, peak ${(peak / 2 ** 20).toFixed(0)} MB`,
  );
}

try {
  await main();
} finally {
  await stopAll();
  await sql(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`, 'postgres').catch(() => {});
  rmSync(folder, { recursive: true, force: true });
}
