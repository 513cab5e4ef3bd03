/**
 * Warden's log: pino, one JSON object per line (format json, for log
 * collectors) or one readable line (format text, for a terminal). Every
 * line passes a scrubber on its way out: the config's secrets (target
 * passwords, the masking key, the audit store URL) and any password inside
 * a connection URL are replaced, so no line can carry one, whatever message
 * or error it quotes. Statements are never logged: the audit trail has them.
 */
import { pino } from 'pino';

export type Log = pino.Logger;
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface LogOptions {
  readonly level: LogLevel;
  readonly format: 'json' | 'text';
  /** The secrets no line may show; asked at each line, so a reloaded config's are covered. */
  readonly secrets: () => readonly string[];
  /** Where lines go: stdout unless given (tests). */
  readonly write?: (line: string) => void;
}

const REDACTED = '[redacted]';
/** `scheme://user:password@host`: the password part. */
const URL_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^\s:/@"]*:)[^\s@"/]+@/gi;
/** Fields whose values are secrets by name, wherever a log call puts them. */
const SECRET_FIELDS = ['password', 'secret', 'token', 'apiKey', 'authorization', 'key', 'url'];

export function createLog(options: LogOptions): Log {
  const write = options.write ?? ((line: string) => process.stdout.write(line));
  const format = options.format === 'text' ? textLine : (line: string) => line;
  return pino(
    {
      level: options.level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: SECRET_FIELDS.flatMap((field) => [field, `*.${field}`]), censor: REDACTED },
    },
    { write: (line: string) => write(format(scrub(line, options.secrets()))) },
  );
}

/** The line with every secret (as written, and as JSON escapes it) and every URL password replaced. */
export function scrub(line: string, secrets: readonly string[]): string {
  let result = line.replace(URL_PASSWORD, `$1${REDACTED}@`);
  for (const secret of secrets) {
    // Short values would match ordinary text: config validation asks for longer secrets anyway.
    if (secret.length < 4) continue;
    result = result.replaceAll(secret, REDACTED);
    const escaped = JSON.stringify(secret).slice(1, -1);
    if (escaped !== secret) result = result.replaceAll(escaped, REDACTED);
  }
  return result;
}

const LEVEL_NAMES: Readonly<Record<number, string>> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};
const NOT_FIELDS = new Set(['level', 'time', 'msg', 'pid', 'hostname']);

/** A JSON line as `time LEVEL message key=value...`. */
function textLine(line: string): string {
  const entry = JSON.parse(line) as Record<string, unknown>;
  const fields = Object.entries(entry)
    .filter(([name]) => !NOT_FIELDS.has(name))
    .map(([name, value]) => `${name}=${typeof value === 'string' ? value : JSON.stringify(value)}`);
  const level = LEVEL_NAMES[entry.level as number] ?? String(entry.level);
  return `${entry.time} ${level} ${entry.msg ?? ''}${fields.length > 0 ? ` ${fields.join(' ')}` : ''}\n`;
}
