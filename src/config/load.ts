import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { type MaskingConfig, NO_MASKING } from '../masking/policy.ts';
import type { MaskClass, Strategy } from '../masking/strategies.ts';
import type { Policy } from '../policy/rules.ts';
import { ConfigError, type ConfigIssue, displayPath, withoutSecrets } from './errors.ts';
import { describeIssue } from './issues.ts';
import { configSchema, DAY_NAMES, type ParsedConfig } from './schema.ts';
import { formatPath, nodeAt, parseSource, positionOf, type Source, substituteEnv } from './source.ts';
import type { WardenConfig } from './types.ts';

/** A file the config names, read after the config itself validated. */
interface FileRef {
  readonly configPath: readonly (string | number)[];
  readonly written: string;
  readonly absolute: string;
  readonly kind: 'certificate' | 'private key' | 'password';
}

interface Validated {
  readonly source: Source;
  readonly parsed: ParsedConfig;
  readonly files: readonly FileRef[];
  /** Password values seen in the file, kept out of every message. */
  readonly secrets: readonly string[];
}

type FileContents = ReadonlyMap<string, Buffer | NodeJS.ErrnoException>;

/** Parses and validates config text; files it names are read relative to `file`. Throws ConfigError. */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): WardenConfig {
  const validated = validate(text, path.resolve(file), env);
  const contents = new Map(
    validated.files.map((ref) => [ref.absolute, readOrError(() => readFileSync(ref.absolute))]),
  );
  return build(validated, checkFiles(validated, contents));
}

/** Reads and validates a config file and the certificates, keys and password files it names. Throws ConfigError. */
export async function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<WardenConfig> {
  const absolute = path.resolve(file);
  const text = await readFile(absolute, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new ConfigError([
      {
        file: absolute,
        line: 0,
        column: 0,
        path: '',
        message: `cannot read the config file: ${describeFileError(error)}`,
        fix: `create ${absolute}, or pass the path of an existing config file`,
      },
    ]);
  });
  return parseConfigAsync(text, absolute, env);
}

/** parseConfig with the named files read asynchronously: what loadConfig and the watcher use. */
export async function parseConfigAsync(
  text: string,
  file: string,
  env: NodeJS.ProcessEnv,
): Promise<WardenConfig> {
  const validated = validate(text, path.resolve(file), env);
  const entries = await Promise.all(
    validated.files.map(
      async (ref) => [ref.absolute, await readFile(ref.absolute).catch((error) => error)] as const,
    ),
  );
  return build(validated, checkFiles(validated, new Map(entries)));
}

function readOrError(read: () => Buffer): Buffer | NodeJS.ErrnoException {
  try {
    return read();
  } catch (error) {
    return error as NodeJS.ErrnoException;
  }
}

function validate(text: string, file: string, env: NodeJS.ProcessEnv): Validated {
  const { source, issues: syntaxIssues } = parseSource(text, file);
  if (syntaxIssues.length > 0) throw new ConfigError(syntaxIssues);
  const envIssues = substituteEnv(source, env);
  const data = toData(source);
  const secrets = passwordsIn(data);
  const result = configSchema.safeParse(data);
  const envPaths = new Set(envIssues.map((issue) => issue.path));
  const schemaIssues = result.success
    ? []
    : result.error.issues
        .flatMap((issue) => describeIssue(source, data, issue))
        .filter((i) => !envPaths.has(i.path));
  const issues = [...envIssues, ...schemaIssues];
  if (!result.success || issues.length > 0) throw configError(issues, secrets);
  return { source, parsed: result.data, files: filesNamed(result.data, path.dirname(file)), secrets };
}

function toData(source: Source): unknown {
  try {
    return source.document.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (error) {
    // Aliases that expand without bound (a "billion laughs" file) stop here.
    throw new ConfigError([
      {
        file: source.file,
        line: 1,
        column: 1,
        path: '',
        message: `cannot read the YAML: ${error instanceof Error ? error.message : String(error)}`,
        fix: 'write the values out instead of nesting aliases (*name) inside aliased values',
      },
    ]);
  }
}

function configError(issues: readonly ConfigIssue[], secrets: readonly string[]): ConfigError {
  const sorted = [...issues].sort((a, b) => a.line - b.line || a.column - b.column);
  return new ConfigError(
    sorted.map((issue) => ({
      ...issue,
      message: withoutSecrets(issue.message, secrets),
      fix: withoutSecrets(issue.fix, secrets),
    })),
  );
}

/** Secrets written in the config (target passwords, the masking key, the audit store URL): never shown in an error or warning. */
function passwordsIn(data: unknown): string[] {
  const { targets, masking, audit, approvals } = (data ?? {}) as {
    targets?: unknown;
    masking?: { key?: unknown } | null;
    audit?: { url?: unknown } | null;
    approvals?: {
      slack?: { token?: unknown; signingSecret?: unknown } | null;
      webhook?: { secret?: unknown } | null;
    } | null;
  };
  const secrets = Array.isArray(targets)
    ? targets.map((target: unknown) => (target as { password?: unknown } | null)?.password)
    : [];
  secrets.push(
    masking?.key,
    approvals?.slack?.token,
    approvals?.slack?.signingSecret,
    approvals?.webhook?.secret,
  );
  // The whole URL, and the password inside it on its own.
  if (typeof audit?.url === 'string') {
    secrets.push(audit.url);
    try {
      secrets.push(decodeURIComponent(new URL(audit.url).password) || undefined);
    } catch {
      // not a URL: the schema says so, without echoing it
    }
  }
  return secrets.filter((secret): secret is string => typeof secret === 'string');
}

function filesNamed(parsed: ParsedConfig, dir: string): FileRef[] {
  const ref = (configPath: (string | number)[], written: string, kind: FileRef['kind']): FileRef => ({
    configPath,
    written,
    absolute: path.resolve(dir, written),
    kind,
  });
  const files: FileRef[] = [];
  if (parsed.listen.tls !== undefined) {
    files.push(ref(['listen', 'tls', 'cert'], parsed.listen.tls.cert, 'certificate'));
    files.push(ref(['listen', 'tls', 'key'], parsed.listen.tls.key, 'private key'));
  }
  if (parsed.audit.checkpoints.keyFile !== undefined)
    files.push(ref(['audit', 'checkpoints', 'keyFile'], parsed.audit.checkpoints.keyFile, 'private key'));
  parsed.targets.forEach((target, index) => {
    if (target.passwordFile !== undefined)
      files.push(ref(['targets', index, 'passwordFile'], target.passwordFile, 'password'));
    if (target.tls.ca !== undefined)
      files.push(ref(['targets', index, 'tls', 'ca'], target.tls.ca, 'certificate'));
  });
  return files;
}

function describeFileError(error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'it is a directory';
    default:
      return error.message;
  }
}

/** Certificates and keys must parse, and the listening key must match its certificate. */
function checkFiles(validated: Validated, contents: FileContents): ReadonlyMap<string, Buffer> {
  const { source, parsed } = validated;
  const issues: ConfigIssue[] = [];
  const checked = new Map<string, Buffer>();
  const keys = new Map<string, KeyObject>();
  for (const ref of validated.files) {
    const content = contents.get(ref.absolute);
    const at = { file: source.file, ...positionOf(source, ref.configPath), path: formatPath(ref.configPath) };
    if (!Buffer.isBuffer(content)) {
      issues.push({
        ...at,
        message: `cannot read ${ref.kind} file ${ref.written} (${ref.absolute}): ${describeFileError(content as NodeJS.ErrnoException)}`,
        fix: `create the file, or write the path of an existing ${ref.kind} file (relative to ${path.dirname(source.file)})`,
      });
      continue;
    }
    try {
      if (ref.kind === 'certificate') new X509Certificate(content);
      if (ref.kind === 'private key') keys.set(ref.absolute, createPrivateKey(content));
      if (ref.configPath[0] === 'audit' && keys.get(ref.absolute)?.asymmetricKeyType !== 'ed25519') {
        issues.push({
          ...at,
          message: `${ref.written} (${ref.absolute}) is not an Ed25519 private key: audit checkpoints are signed with Ed25519`,
          fix: 'make one with: openssl genpkey -algorithm ed25519 -out audit-signing.pem (or leave keyFile out: Warden makes one in its data folder)',
        });
        continue;
      }
    } catch {
      issues.push({
        ...at,
        message: `${ref.written} (${ref.absolute}) is not a PEM ${ref.kind}`,
        fix: `point it at a PEM file that starts with -----BEGIN ${ref.kind === 'certificate' ? 'CERTIFICATE' : 'PRIVATE KEY'}-----`,
      });
      continue;
    }
    checked.set(ref.absolute, content);
  }
  const tls = parsed.listen.tls;
  if (tls !== undefined && issues.length === 0) {
    const dir = path.dirname(source.file);
    const certificate = new X509Certificate(checked.get(path.resolve(dir, tls.cert))!);
    if (!certificate.checkPrivateKey(keys.get(path.resolve(dir, tls.key))!)) {
      issues.push({
        file: source.file,
        ...positionOf(source, ['listen', 'tls', 'key']),
        path: 'listen.tls.key',
        message: `the private key ${tls.key} does not belong to the certificate ${tls.cert}`,
        fix: 'write the key file that was generated together with the certificate',
      });
    }
  }
  if (issues.length > 0) throw configError(issues, validated.secrets);
  return checked;
}

/** The validated config with defaults resolved, paths made absolute and named files read in. */
function build(validated: Validated, files: ReadonlyMap<string, Buffer>): WardenConfig {
  const { source, parsed } = validated;
  const dir = path.dirname(source.file);
  const fileAt = (written: string) => files.get(path.resolve(dir, written))!;
  // A password file ends with the newline `echo secret > file` leaves; the password does not.
  const passwordIn = (written: string) =>
    fileAt(written)
      .toString('utf8')
      .replace(/[\r\n]+$/, '');
  const targets = parsed.targets.map((target) => ({
    name: target.name,
    host: target.host,
    port: target.port,
    database: target.database ?? target.name,
    user: target.user,
    password: target.passwordFile === undefined ? target.password : passwordIn(target.passwordFile),
    tls: {
      mode: target.tls.mode,
      ca: target.tls.ca === undefined ? undefined : fileAt(target.tls.ca),
      serverName: target.tls.serverName,
    },
    labels: target.labels,
    access: target.access,
    connectTimeoutMs: target.connectTimeoutMs,
  }));
  const secrets = [
    ...validated.secrets,
    ...targets.flatMap((target) => (target.password === undefined ? [] : [target.password])),
  ];
  const { listen, auth } = parsed;
  return {
    file: source.file,
    listen: {
      host: listen.host,
      port: listen.port,
      tls:
        listen.tls === undefined ? undefined : { cert: fileAt(listen.tls.cert), key: fileAt(listen.tls.key) },
      requireTls: listen.requireTls,
      maxMessageSize: listen.maxMessageSize,
      workers: listen.workers,
    },
    http: parsed.http,
    log: parsed.log,
    dataDir: path.resolve(dir, parsed.dataDir ?? '.warden'),
    auth: {
      method: auth.method,
      cleartext: auth.cleartext,
      backoff: {
        baseMs: auth.backoff.baseMs,
        maxMs: auth.backoff.maxMs,
        windowMs: auth.backoff.windowSeconds * 1000,
      },
    },
    identities: parsed.identities,
    targets,
    policy: policyOf(parsed.policy),
    masking: maskingOf(parsed.masking),
    audit: {
      enabled: parsed.audit.enabled,
      store:
        parsed.audit.store === 'postgres'
          ? { kind: 'postgres', url: parsed.audit.url! }
          : { kind: 'sqlite', dataDir: path.resolve(dir, parsed.dataDir ?? '.warden') },
      chain: parsed.audit.chain ?? hostname(),
      redactLiterals: parsed.audit.redactLiterals,
      onStoreFailure: parsed.audit.onStoreFailure,
      queueLimit: parsed.audit.queueLimit,
      retentionDays: parsed.audit.retentionDays,
      checkpoints: parsed.audit.checkpoints.enabled
        ? {
            everyMs: parsed.audit.checkpoints.everySeconds * 1000,
            keyFile:
              parsed.audit.checkpoints.keyFile === undefined
                ? undefined
                : path.resolve(dir, parsed.audit.checkpoints.keyFile),
          }
        : undefined,
    },
    approvals: {
      approvers: parsed.approvals.approvers,
      minApprovals: parsed.approvals.minApprovals,
      timeoutMs: parsed.approvals.timeoutSeconds * 1000,
      keepAliveMs: parsed.approvals.keepAliveSeconds * 1000,
      mode: parsed.approvals.mode,
      asyncWindowMs: parsed.approvals.asyncWindowSeconds * 1000,
      where:
        parsed.approvals.where ??
        `warden approvals approve <id> --as <your identity> --reason "..." --config ${source.file}`,
      slack: parsed.approvals.slack,
      webhook: parsed.approvals.webhook,
    },
    warnings: warningsFor(source, parsed).map((warning) => withoutSecrets(warning, secrets)),
  };
}

function warningsFor(source: Source, parsed: ParsedConfig): string[] {
  const warn = (configPath: (string | number)[], message: string) => {
    const { line, column } = positionOf(source, configPath);
    return `${displayPath(source.file)}:${line}:${column} ${formatPath(configPath)}: ${message}`;
  };
  const warnings: string[] = [];
  if (parsed.listen.requireTls === 'always' && parsed.listen.tls === undefined) {
    warnings.push(
      warn(
        ['listen', 'requireTls'],
        'requireTls is always but listen.tls is not set, so every client will be refused; add listen.tls with cert and key',
      ),
    );
  }
  parsed.targets.forEach((target, index) => {
    const { identities, groups, kinds } = target.access;
    if (identities.length + groups.length + kinds.length > 0) return;
    warnings.push(
      warn(
        nodeAt(source, ['targets', index, 'access']) === undefined
          ? ['targets', index]
          : ['targets', index, 'access'],
        `nobody may connect to target "${target.name}" (access is empty); add access.identities, access.groups or access.kinds`,
      ),
    );
  });
  const reviews = parsed.policy.rules.findIndex((rule) => rule.action === 'review');
  const { approvers } = parsed.approvals;
  if (reviews >= 0 && approvers.groups.length + approvers.identities.length === 0) {
    warnings.push(
      warn(
        ['policy', 'rules', reviews, 'action'],
        'this rule holds statements for review, but approvals.approvers names nobody who may approve them; add approvals.approvers.groups or approvals.approvers.identities',
      ),
    );
  }
  return warnings;
}

/** The policy as the engine reads it: day names become numbers (0 = Sunday). */
function policyOf(policy: ParsedConfig['policy']): Policy {
  return {
    defaults: policy.defaults,
    guardrails: policy.guardrails,
    allowedFunctions: policy.allowedFunctions,
    rules: policy.rules.map(({ match: { time, ...match }, ...rule }) => ({
      ...rule,
      match: time
        ? {
            ...match,
            time: { from: time.from, to: time.to, days: time.days?.map((day) => DAY_NAMES.indexOf(day)) },
          }
        : match,
    })),
  };
}

/**
 * The masking section as src/masking reads it: strategies written by name become objects.
 * Without a masking section nothing is masked; with one, column names classify by default.
 */
function maskingOf(masking: ParsedConfig['masking']): MaskingConfig {
  if (masking === undefined) return NO_MASKING;
  const strategies: Partial<Record<MaskClass, Strategy>> = {};
  for (const [name, written] of Object.entries(masking.strategies)) {
    if (written !== undefined) strategies[name as MaskClass] = strategyOf(written);
  }
  return {
    key: masking.key,
    heuristics: masking.heuristics,
    columns: masking.columns.map((column) => ({ ...column, maskClass: column.class })),
    strategies,
    unmask: masking.unmask.map(({ classes, ...who }) => ({
      who,
      classes: Object.fromEntries(
        Object.entries(classes).map(([name, written]) => [
          name,
          written === 'clear' ? 'clear' : strategyOf(written!),
        ]),
      ),
    })),
    allowUses: masking.allowUses.map(({ table, column, clauses, ...who }) => ({
      who,
      table,
      column,
      clauses,
    })),
    unresolved: masking.unresolved,
  };
}

function strategyOf(written: WrittenStrategy): Strategy {
  if (typeof written === 'string')
    return written === 'partial' ? { kind: 'partial', keep: 4 } : ({ kind: written } as Strategy);
  if (written.strategy === 'partial') return { kind: 'partial', keep: written.keep ?? 4 };
  if (written.strategy === 'redact' && written.text !== undefined)
    return { kind: 'redact', text: written.text };
  return { kind: written.strategy } as Strategy;
}

type WrittenStrategy = NonNullable<NonNullable<ParsedConfig['masking']>['strategies'][MaskClass]>;
