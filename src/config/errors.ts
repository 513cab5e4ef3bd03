import path from 'node:path';

/**
 * WARDEN_ERR_CONFIG — warden.yaml (or a file it names) is missing, is not
 * valid YAML, or does not match the schema. The error lists every problem
 * with file, line and a fix; Warden refuses to start, and a running Warden
 * keeps its old config.
 */
export const CONFIG_ERROR_CODE = 'WARDEN_ERR_CONFIG';

export interface ConfigIssue {
  /** Absolute path of the config file. */
  readonly file: string;
  /** 1-based; 0 when the problem is the file as a whole (e.g. it does not exist). */
  readonly line: number;
  /** 1-based; 0 together with line 0. */
  readonly column: number;
  /** Config path such as `targets[0].port`; empty for the document itself. */
  readonly path: string;
  readonly message: string;
  /** What to write instead. */
  readonly fix: string;
}

export class ConfigError extends Error {
  readonly code = CONFIG_ERROR_CODE;
  override readonly name = 'ConfigError';
  readonly issues: readonly ConfigIssue[];

  constructor(issues: readonly ConfigIssue[]) {
    super(formatIssues(issues));
    this.issues = issues;
  }
}

/** One block per issue: `warden.yaml:12:5 targets[0].port: expected …\n  fix: …`. */
export function formatConfigError(error: ConfigError): string {
  return formatIssues(error.issues);
}

function formatIssues(issues: readonly ConfigIssue[]): string {
  return issues
    .map((issue) => {
      const where =
        issue.line > 0 ? `${displayPath(issue.file)}:${issue.line}:${issue.column}` : displayPath(issue.file);
      const what = issue.path === '' ? issue.message : `${issue.path}: ${issue.message}`;
      return `${where} ${what}\n  fix: ${issue.fix}`;
    })
    .join('\n');
}

/** Relative to the working directory when the file is below it, as a user would type it. */
export function displayPath(file: string): string {
  const relative = path.relative(process.cwd(), file);
  return relative === '' || relative.startsWith('..') || path.isAbsolute(relative) ? file : relative;
}

/**
 * Replaces every secret in `text`. Messages are built not to echo secrets in
 * the first place; this is the second line, for a password that also appears
 * as some other value. Secrets shorter than 4 characters are left alone —
 * replacing every "a" would make the text unreadable and hide nothing.
 */
export function withoutSecrets(text: string, secrets: readonly string[]): string {
  return secrets
    .filter((secret) => secret.length >= 4)
    .reduce((result, secret) => result.replaceAll(secret, '[redacted]'), text);
}
