/**
 * The `warden` command. Each subcommand is a small function; errors a
 * person can act on are printed without a stack and exit non-zero.
 */
import { Command, CommanderError, Option } from 'commander';
import { ConfigError, formatConfigError } from '../config/index.ts';
import { DEFAULT_SAMPLE_ROWS } from '../masking/discover.ts';
import { ListenError } from '../proxy/listen.ts';
import { UpstreamError } from '../proxy/upstream.ts';
import { StoreError } from '../store/store.ts';
import {
  approvalsDecideCommand,
  approvalsListCommand,
  approvalsShowCommand,
  DecisionRefused,
  grantListCommand,
  grantRequestCommand,
  grantRevokeCommand,
} from './approvals.ts';
import {
  accessCommand,
  auditExportCommand,
  auditPublicKeyCommand,
  auditSearchCommand,
  auditTailCommand,
  auditVerifyCommand,
  CSV_COLUMNS,
  EVENT_TYPES,
} from './audit.ts';
import {
  checkConfigCommand,
  discoverCommand,
  keyCreateCommand,
  keyListCommand,
  keyRevokeCommand,
  startCommand,
} from './commands.ts';
import { UsageError } from './errors.ts';
import { policyExplainCommand, policyTestCommand } from './policy.ts';

/** Exit codes: 0 ok, 1 runtime failure, 2 bad usage or invalid config. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

const program = new Command()
  .name('warden')
  .description('Identity-aware governance proxy for PostgreSQL')
  .showHelpAfterError()
  .exitOverride();

program
  .command('start')
  .description('start the proxy with a config file; SIGHUP or editing the file reloads it')
  .requiredOption('-c, --config <file>', 'path to warden.yaml')
  .action(async (options: { config: string }) => startCommand(options.config));

program
  .command('check-config')
  .description('validate a config file and print what it sets up (never secrets)')
  .argument('<file>', 'path to warden.yaml')
  .action(async (file: string) => checkConfigCommand(file));

const key = program.command('key').description('manage API keys of service accounts and agents');
key
  .command('create')
  .description(
    'create an API key for an identity; the key is printed once and stored only as a SCRAM verifier',
  )
  .requiredOption('-i, --identity <name>', 'identity the key belongs to')
  .requiredOption('-c, --config <file>', 'path to warden.yaml')
  .option('-l, --label <text>', 'a note to recognise the key by')
  .action(async (options: { identity: string; config: string; label?: string }) => keyCreateCommand(options));
key
  .command('list')
  .description('list API keys (ids, identities, dates; never secrets)')
  .requiredOption('-c, --config <file>', 'path to warden.yaml')
  .option('-i, --identity <name>', 'only keys of this identity')
  .action(async (options: { config: string; identity?: string }) => keyListCommand(options));
key
  .command('revoke')
  .description('revoke an API key by id; new logins with it fail at once')
  .argument('<key-id>', 'the id shown by `warden key list`')
  .requiredOption('-c, --config <file>', 'path to warden.yaml')
  .action(async (keyId: string, options: { config: string }) => keyRevokeCommand(keyId, options.config));

const policy = program
  .command('policy')
  .description('see and test the decisions of a policy without a database');
policy
  .command('explain')
  .description(
    'show how Warden reads a statement, every rule that matches it and the decision; exits 0 whatever the decision',
  )
  .argument('<sql>', 'the SQL to judge, quoted as one argument')
  .option('-c, --config <file>', 'path to warden.yaml', 'warden.yaml')
  .requiredOption('-i, --identity <name>', 'identity the statement runs as')
  .requiredOption('-t, --target <name>', 'target it runs on')
  .option('-a, --application-name <name>', 'application_name of the session (default: none)')
  .option('--json', 'print a JSON object {statements, matched, decision} instead')
  .action(
    async (
      sql: string,
      options: { config: string; identity: string; target: string; applicationName?: string; json?: boolean },
    ) => policyExplainCommand(sql, options),
  );
policy
  .command('test')
  .description('check a YAML file of cases (identity, target, sql, expected action) against the policy')
  .argument('<cases>', 'YAML file with a list under cases:')
  .option('-c, --config <file>', 'path to warden.yaml', 'warden.yaml')
  .addHelpText(
    'after',
    `
Each case: identity, target, sql, expect (allow | deny | review | mask | limit),
and optionally name, rule (the rule that must decide) and applicationName:

  cases:
    - name: nobody deletes a whole table
      identity: alice
      target: shop
      sql: DELETE FROM orders
      expect: deny
      rule: guardrail:write-without-where

Exit codes: 0 every case passed, 1 some case failed, 2 bad usage, config or cases file.`,
  )
  .action(async (cases: string, options: { config: string }) => {
    const { failed } = await policyTestCommand(cases, options);
    process.exitCode = failed === 0 ? EXIT.ok : EXIT.failure;
  });

const TIME_HELP = 'an ISO 8601 time (2024-05-01T09:00:00Z) or a time ago (30m, 2h, 7d)';

/** The filters search and export share. */
function eventFilters(command: Command): Command {
  return command
    .requiredOption('-c, --config <file>', 'path to warden.yaml')
    .option('-i, --identity <name>', 'only events of this identity (or operator, or claimed login name)')
    .option('-p, --pipeline <name>', 'only events of this pipeline')
    .option('--table <name>', 'only statements on this table (a bare name matches it in any schema)')
    .option('-t, --target <name>', 'only events on this target')
    .addOption(new Option('--type <type>', 'only events of this type').choices(EVENT_TYPES))
    .option('--since <time>', `only events at or after this time: ${TIME_HELP}`)
    .option('--until <time>', `only events before this time: ${TIME_HELP}`);
}

const audit = program
  .command('audit')
  .description('check and read the audit trail: who ran what, when, and what Warden decided');
audit
  .command('verify')
  .description(
    'check every hash chain of the trail for edited, deleted, reordered, rewritten or cut-off events',
  )
  .requiredOption('-c, --config <file>', 'path to warden.yaml')
  .option(
    '--public-key <file...>',
    'checkpoints must be signed with one of these keys (PEM; from warden audit public-key)',
  )
  .option('--checkpoints <logfile...>', "also hold the chains to the checkpoints in Warden's JSON log")
  .addHelpText(
    'after',
    '\nExit codes: 0 every chain verified, 1 some chain has a problem, 2 bad usage or config.',
  )
  .action(async (options: Parameters<typeof auditVerifyCommand>[0]) => {
    const { problems } = await auditVerifyCommand(options);
    process.exitCode = problems === 0 ? EXIT.ok : EXIT.failure;
  });
audit
  .command('public-key')
  .description("print the public key of this Warden's checkpoint signing key, for auditors to verify with")
  .requiredOption('-c, --config <file>', 'path to warden.yaml')
  .action(async (options: { config: string }) => auditPublicKeyCommand(options));
eventFilters(
  audit
    .command('search')
    .description(
      'print the events that match, oldest first: at, chain#seq, type, identity, pipeline, summary',
    ),
)
  .option('-l, --limit <count>', 'print at most this many events', '100')
  .option('--json', "print each event's stored JSON (what its hash covers), one per line")
  .action(async (options: Parameters<typeof auditSearchCommand>[0]) => auditSearchCommand(options));
eventFilters(
  audit
    .command('export')
    .description('write every matching event, oldest first, as JSON lines or CSV, streaming (no limit)'),
)
  .addOption(
    new Option('-f, --format <format>', 'jsonl: the stored JSON plus its hash; csv: one row per event')
      .choices(['jsonl', 'csv'])
      .makeOptionMandatory(),
  )
  .addHelpText(
    'after',
    `
CSV columns: ${CSV_COLUMNS.join(',')}
(decision to text are set for statements only; masked columns are separated by ;)`,
  )
  .action(async (options: Parameters<typeof auditExportCommand>[0]) => auditExportCommand(options));
audit
  .command('tail')
  .description('print the newest events; with --follow, keep printing new ones until Ctrl-C')
  .requiredOption('-c, --config <file>', 'path to warden.yaml')
  .option('-n, --lines <count>', 'how many of the newest events to print', '20')
  .option('-f, --follow', 'then print events as they are recorded, until SIGINT or SIGTERM')
  .action(async (options: { config: string; lines: string; follow?: boolean }) => auditTailCommand(options));

program
  .command('access')
  .description(
    'who touched a table: identities, pipelines and operations on it, with first and last time, statements, rows and masked columns',
  )
  .requiredOption('--table <name>', 'the table (a bare name matches it in any schema)')
  .requiredOption('-c, --config <file>', 'path to warden.yaml')
  .option('-i, --identity <name>', 'only this identity')
  .option('-p, --pipeline <name>', 'only this pipeline')
  .option('-t, --target <name>', 'only this target')
  .option('--since <time>', `only access at or after this time (to the hour): ${TIME_HELP}`)
  .option('--until <time>', `only access before this time (to the hour): ${TIME_HELP}`)
  .option('--json', 'print a JSON array instead')
  .action(async (options: Parameters<typeof accessCommand>[0]) => accessCommand(options));

const approvals = program
  .command('approvals')
  .description('statements held for review: list them, read one, approve or reject it (with a reason)');
approvals
  .command('list')
  .description('approval requests, newest first: id, status, who asked, target, rule, expiry, statement')
  .requiredOption('-c, --config <file>', 'path to warden.yaml')
  .option('-s, --status <status>', 'pending, approved, rejected, expired, withdrawn or all', 'pending')
  .option('--json', 'one JSON object per request')
  .action(async (options: Parameters<typeof approvalsListCommand>[0]) => approvalsListCommand(options));
approvals
  .command('show <id>')
  .description('one request in full: the statement, its parameters, approvers and decisions')
  .requiredOption('-c, --config <file>', 'path to warden.yaml')
  .action(async (id: string, options: { config: string }) => approvalsShowCommand({ ...options, id }));
for (const verdict of ['approve', 'reject'] as const) {
  approvals
    .command(`${verdict} <id>`)
    .description(`${verdict} a request: the held statement ${verdict === 'approve' ? 'runs' : 'is refused'}`)
    .requiredOption('-c, --config <file>', 'path to warden.yaml')
    .requiredOption('--as <identity>', 'the Warden identity deciding (an approver, not the one who asked)')
    .requiredOption(
      '-r, --reason <text>',
      'why: shown to the client (on rejection) and kept in the audit trail',
    )
    .action(async (id: string, options: { config: string; as: string; reason: string }) => {
      await approvalsDecideCommand(verdict, { ...options, id });
    });
}

const grant = program
  .command('grant')
  .description('just-in-time grants: ask for a role on a target for a while; approvers decide it');
grant
  .command('request')
  .description('ask for a time-bound grant (prints its request id; approve it with warden approvals approve)')
  .requiredOption('-c, --config <file>', 'path to warden.yaml')
  .requiredOption('--as <identity>', 'the identity asking for the grant')
  .requiredOption('-t, --target <name>', 'the target it is for')
  .requiredOption('--role <role>', 'the grant role, as rules match it (match: { grants: [role] })')
  .requiredOption('--for <duration>', 'how long it lasts once approved: 30m, 1h, 2d')
  .requiredOption('-r, --reason <text>', 'why: approvers read it, the audit trail keeps it')
  .action(async (options: Parameters<typeof grantRequestCommand>[0]) => {
    await grantRequestCommand(options);
  });
grant
  .command('list')
  .description('grants in force: id, holder, role and target, and until when')
  .requiredOption('-c, --config <file>', 'path to warden.yaml')
  .option('--json', 'one JSON object per grant')
  .action(async (options: { config: string; json?: boolean }) => grantListCommand(options));
grant
  .command('revoke <id>')
  .description('end a grant before its time (its holder or an approver)')
  .requiredOption('-c, --config <file>', 'path to warden.yaml')
  .requiredOption('--as <identity>', 'who revokes it')
  .requiredOption('-r, --reason <text>', 'why')
  .action(async (id: string, options: { config: string; as: string; reason: string }) =>
    grantRevokeCommand({ ...options, id }),
  );

program
  .command('discover')
  .description(
    "sample a target's tables with its own credentials and propose masking.columns entries for review (counts only, never values)",
  )
  .requiredOption('-t, --target <name>', 'target to sample')
  .option('-c, --config <file>', 'path to warden.yaml', 'warden.yaml')
  .option('-o, --out <file>', 'write the proposal to this file (default: stdout)')
  .option('-n, --sample <rows>', 'rows to sample per table', String(DEFAULT_SAMPLE_ROWS))
  .action(async (options: { target: string; config: string; out?: string; sample: string }) =>
    discoverCommand(options),
  );

program
  .command('demo')
  .description(
    'start an embedded PostgreSQL with personal data and Warden in front of it, and show how to connect',
  )
  .option('-p, --port <port>', 'port for Warden', '6543')
  .action(async (options: { port: string }) => {
    const { runDemo } = await import('../demo/run.ts');
    await runDemo({ port: Number(options.port) });
  });

try {
  await program.parseAsync(process.argv);
} catch (error) {
  process.exitCode = exitCodeFor(error);
}

function exitCodeFor(error: unknown): number {
  if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
  if (error instanceof ConfigError) {
    process.stderr.write(`${formatConfigError(error)}\n`);
    return EXIT.usage;
  }
  if (error instanceof UsageError) {
    process.stderr.write(`warden: ${error.message}\n`);
    return EXIT.usage;
  }
  if (error instanceof UpstreamError) {
    // The target cannot be reached, refused the login, or refused a query (warden discover).
    process.stderr.write(`warden: ${error.message}\n`);
    return EXIT.failure;
  }
  if (error instanceof StoreError || error instanceof ListenError || error instanceof DecisionRefused) {
    process.stderr.write(`warden: ${error.message}\n`);
    return EXIT.failure;
  }
  process.stderr.write(`warden: ${(error as Error).stack ?? String(error)}\n`);
  return EXIT.failure;
}
