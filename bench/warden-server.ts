/**
 * Warden in one process for the warden-hook and warden-policy paths: the same
 * startServer as `warden start`, with the decision point chosen here.
 *
 *   node --import tsx bench/warden-server.ts <warden.yaml> hook|policy
 *
 * hook:   decide = allowAll (the decision hook alone: no analysis, no rules).
 * policy: no decide given, so startServer judges every statement with the
 *         config's policy section (PolicyEngine), as `warden start` does.
 *
 * BENCH_DECIDE_TIMING=1 wraps decide in a timer and prints, at exit, the
 * calls and the mean µs per call (for profiling; it adds two hrtime calls).
 */
import { loadConfig } from '../src/config/index.ts';
import { allowAll, type Decide } from '../src/policy/decision.ts';
import { PolicyEngine } from '../src/policy/engine.ts';
import { startServer } from '../src/proxy/server.ts';

const [file, mode] = process.argv.slice(2);
if (file === undefined || (mode !== 'hook' && mode !== 'policy')) {
  process.stderr.write('usage: warden-server.ts <warden.yaml> hook|policy\n');
  process.exit(2);
}

const config = await loadConfig(file);
for (const warning of config.warnings) process.stderr.write(`warning: ${warning}\n`);

let decide: Decide | undefined = mode === 'hook' ? allowAll : undefined;
let report = () => {};
if (process.env.BENCH_DECIDE_TIMING === '1') {
  const inner = decide ?? new PolicyEngine(config.policy).decide;
  let calls = 0;
  let nanoseconds = 0n;
  decide = (context) => {
    const start = process.hrtime.bigint();
    try {
      return inner(context);
    } finally {
      nanoseconds += process.hrtime.bigint() - start;
      calls++;
    }
  };
  report = () =>
    process.stdout.write(
      `decide (${mode}): ${calls} calls, ${calls === 0 ? 'n/a' : (Number(nanoseconds) / 1000 / calls).toFixed(2)} µs/call\n`,
    );
}

const server = await startServer(config, decide ? { decide } : {});
process.stdout.write(
  `warden listening on ${server.host}:${server.port} (decide: ${mode === 'hook' ? 'allowAll' : `policy, ${config.policy.rules.length} rules`})\n`,
);

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    if (stopping) return;
    stopping = true;
    report();
    void server.close().finally(() => process.exit(0));
  });
}
