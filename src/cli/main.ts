/**
 * The `warden` command. Each subcommand is a small function; errors a
 * person can act on are printed without a stack and exit non-zero.
 */
import { Command, CommanderError } from 'commander';
import { ConfigError, formatConfigError } from '../config/index.ts';
import { StoreError } from '../store/store.ts';
import {
  checkConfigCommand,
  keyCreateCommand,
  keyListCommand,
  keyRevokeCommand,
  startCommand,
} from './commands.ts';
import { UsageError } from './errors.ts';

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
  if (error instanceof StoreError) {
    process.stderr.write(`warden: ${error.message}\n`);
    return EXIT.failure;
  }
  process.stderr.write(`warden: ${(error as Error).stack ?? String(error)}\n`);
  return EXIT.failure;
}
