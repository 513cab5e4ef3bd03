/**
 * Policy rules and their evaluation. Pure: statements come in analysed,
 * identities and targets as config; a Verdict comes out listing every rule
 * that matched and why. Nothing here knows bytes or sockets.
 *
 * Order (documented for policy authors, and deterministic):
 * 1. Built-in guardrails, then the rules in file order, are all checked; a
 *    rule matches a batch when it matches any statement in it.
 * 2. The strongest action among the matches wins: deny > review > mask and
 *    limit > allow. The first matching rule with that action gives the message.
 * 3. Mask and limit shape what is allowed but do not allow by themselves:
 *    without a matching allow rule, statements that touch no data
 *    (transaction control, SET/SHOW of a setting) are allowed, and anything
 *    else gets the default for the identity's kind (agents: deny unless a
 *    rule allows).
 */
import type { IdentityConfig, IdentityKind, TargetConfig } from '../config/index.ts';
import type { Hazard, StatementAnalysis, StatementKind, TableRef } from '../sql/analysis.ts';
import { isOpaque } from '../sql/functions.ts';
import type { MatchedRule } from './decision.ts';

export type Action = 'allow' | 'deny' | 'review' | 'mask' | 'limit';

export interface Match {
  readonly identities?: readonly string[];
  readonly groups?: readonly string[];
  readonly identityKinds?: readonly IdentityKind[];
  readonly targets?: readonly string[];
  /** Every label given must equal the target's. */
  readonly labels?: Readonly<Record<string, string>>;
  readonly statementKinds?: readonly StatementKind[];
  /** Globs over schema.table; a pattern without a dot matches the table name in any schema. */
  readonly tables?: readonly string[];
  /** With tables: only reads or only writes of them. */
  readonly access?: 'read' | 'write';
  /** Globs over column references as written (email, c.email). */
  readonly columns?: readonly string[];
  /** Globs over function names. */
  readonly functions?: readonly string[];
  readonly hasWhere?: boolean;
  /** A regular expression over the statement text: a last resort. */
  readonly sql?: string;
  /** Globs over application_name. */
  readonly applicationNames?: readonly string[];
  /** sqlcommenter tags in the statement's comments: /* pipeline='nightly_etl' *\/ */
  readonly tags?: Readonly<Record<string, string>>;
  /** Days (0 = Sunday) and an HH:MM window in UTC; from > to wraps midnight. */
  readonly time?: { readonly days?: readonly number[]; readonly from?: string; readonly to?: string };
}

export interface Rule {
  readonly name: string;
  readonly match: Match;
  readonly action: Action;
  readonly message?: string;
  /** For limit: the most rows a statement may return. */
  readonly maxRows?: number;
  /** For limit: a statement timeout. */
  readonly statementTimeoutMs?: number;
}

export type GuardrailName =
  | 'write-without-where'
  | 'destructive-ddl'
  | 'role-management'
  | 'copy-program-or-server-file'
  | 'dangerous-functions'
  | 'opaque-functions'
  | 'alter-system'
  | 'set-role';

export interface Policy {
  readonly rules: readonly Rule[];
  /** Each built-in guardrail's action; 'allow' turns one off. All are 'deny' unless set. */
  readonly guardrails?: Partial<Record<GuardrailName, 'deny' | 'review' | 'allow'>>;
  /** Functions with hidden effects that may be called anyway (globs). */
  readonly allowedFunctions?: readonly string[];
  /** What happens when no rule matches, by identity kind. */
  readonly defaults?: Partial<Record<IdentityKind, 'allow' | 'deny'>>;
}

export interface PolicyInput {
  readonly identity: IdentityConfig;
  readonly target: TargetConfig;
  readonly applicationName: string;
  readonly statements: readonly StatementAnalysis[];
  readonly now: Date;
  /** Schemas an unqualified table name may be in (the session's search_path); default public. */
  readonly searchPath?: readonly string[];
}

export type { MatchedRule };

export interface Verdict {
  readonly action: Action;
  /** The rule that decided (undefined when the default did). */
  readonly rule: string | undefined;
  readonly message: string;
  readonly matched: readonly MatchedRule[];
  readonly limits: { readonly maxRows?: number; readonly statementTimeoutMs?: number };
}

const STRENGTH: Record<Action, number> = { allow: 0, limit: 1, mask: 1, review: 2, deny: 3 };
const DEFAULTS: Record<IdentityKind, 'allow' | 'deny'> = { human: 'allow', service: 'allow', agent: 'deny' };

interface Guardrail {
  readonly name: GuardrailName;
  readonly message: string;
  applies(statement: StatementAnalysis, policy: Policy): string | undefined;
}

const hazard = (statement: StatementAnalysis, ...names: Hazard[]) =>
  names.find((name) => statement.hazards.includes(name));

/** The built-in pack: each returns the reason it applies, or undefined. */
export const GUARDRAILS: readonly Guardrail[] = [
  {
    name: 'write-without-where',
    message: 'UPDATE or DELETE without a WHERE clause (or with one that is always true) is refused',
    applies: (s) => (s.unboundedWrite ? 'UPDATE or DELETE without a real WHERE' : undefined),
  },
  {
    name: 'destructive-ddl',
    message: 'DROP, TRUNCATE and ALTER of existing objects are refused',
    applies: (s) =>
      s.command === 'DropStmt' ||
      s.command === 'TruncateStmt' ||
      s.command === 'RenameStmt' ||
      (/^Alter.*Stmt$/.test(s.command) && s.command !== 'AlterSystemStmt' && s.kind === 'ddl')
        ? s.command
        : undefined,
  },
  {
    name: 'role-management',
    message: 'GRANT, REVOKE and role changes are refused',
    applies: (s) => (s.kind === 'dcl' ? s.command : undefined),
  },
  {
    name: 'copy-program-or-server-file',
    message: 'COPY to or from a program or a file on the server is refused',
    applies: (s) => hazard(s, 'copy-program', 'copy-server-file'),
  },
  {
    name: 'dangerous-functions',
    message: 'functions that reach files, other servers, other sessions or settings are refused',
    applies: (s) => (hazard(s, 'dangerous-function') ? s.functions.join(', ') : undefined),
  },
  {
    name: 'opaque-functions',
    message:
      'functions and code blocks whose effect cannot be seen from the call are refused unless allowed by name',
    applies: (s, policy) => {
      if (hazard(s, 'do-block')) return 'DO block';
      const hidden = s.functions.filter(
        (name) => isOpaque(name) && !(policy.allowedFunctions ?? []).some((g) => glob(g, name)),
      );
      return hidden.length > 0 ? hidden.join(', ') : undefined;
    },
  },
  {
    name: 'alter-system',
    message: 'ALTER SYSTEM and LOAD change the server itself and are refused',
    applies: (s) => hazard(s, 'alter-system', 'load-library'),
  },
  {
    name: 'set-role',
    message:
      'SET ROLE and SET SESSION AUTHORIZATION would change who Warden is on the server and are refused',
    applies: (s) => hazard(s, 'set-role', 'set-session-authorization'),
  },
];

export function evaluate(policy: Policy, input: PolicyInput): Verdict {
  const matched: MatchedRule[] = [];
  const limits: { maxRows?: number; statementTimeoutMs?: number } = {};
  for (const guardrail of GUARDRAILS) {
    const action = policy.guardrails?.[guardrail.name] ?? 'deny';
    if (action === 'allow') continue;
    for (const statement of input.statements) {
      const reason = guardrail.applies(statement, policy);
      if (reason === undefined) continue;
      matched.push({
        rule: `guardrail:${guardrail.name}`,
        action,
        reason: `${reason}: ${clip(statement.text)}`,
        message: guardrail.message,
      });
      break;
    }
  }
  for (const rule of policy.rules) {
    for (const statement of input.statements) {
      const reason = matches(rule, statement, input);
      if (reason === undefined) continue;
      matched.push({ rule: rule.name, action: rule.action, reason, message: rule.message });
      if (rule.action === 'limit') {
        if (rule.maxRows !== undefined) limits.maxRows = Math.min(limits.maxRows ?? Infinity, rule.maxRows);
        if (rule.statementTimeoutMs !== undefined) {
          limits.statementTimeoutMs = Math.min(
            limits.statementTimeoutMs ?? Infinity,
            rule.statementTimeoutMs,
          );
        }
      }
      break;
    }
  }
  // The strongest action wins; among equals, the first match (guardrails, then rules in file order).
  const winner = matched.reduce<MatchedRule | undefined>(
    (best, next) => (best === undefined || STRENGTH[next.action] > STRENGTH[best.action] ? next : best),
    undefined,
  );
  if (winner !== undefined && STRENGTH[winner.action] >= STRENGTH.review) {
    return { action: winner.action, rule: winner.rule, message: messageOf(winner), matched, limits };
  }
  // Mask and limit shape what is allowed; they do not allow by themselves. Access comes from an
  // allow rule, or from the default for the identity's kind.
  const allowed = matched.some((m) => m.action === 'allow');
  if (!allowed && input.statements.every(isHousekeeping)) {
    return { action: winner?.action ?? 'allow', rule: winner?.rule, message: HOUSEKEEPING, matched, limits };
  }
  const fallback = policy.defaults?.[input.identity.kind] ?? DEFAULTS[input.identity.kind];
  if (!allowed && fallback === 'deny') {
    return {
      action: 'deny',
      rule: undefined,
      message: `no rule allows this for ${input.identity.kind} identities (default: deny)`,
      matched,
      limits,
    };
  }
  if (winner === undefined)
    return { action: 'allow', rule: undefined, message: 'allowed by default', matched, limits };
  return { action: winner.action, rule: winner.rule, message: messageOf(winner), matched, limits };
}

function messageOf(winner: MatchedRule): string {
  return winner.message ?? `${winner.action} by rule ${winner.rule}`;
}

const HOUSEKEEPING =
  'allowed by default: touches no data (transaction control, settings, a SELECT of no table)';
const HOUSEKEEPING_COMMANDS = new Set(['VariableSetStmt', 'VariableShowStmt', 'DeallocateStmt']);

/**
 * Statements that touch no data: BEGIN/COMMIT/ROLLBACK, SET/SHOW of a
 * setting (SET ROLE and friends carry hazards and are not among them), a
 * SELECT that reads no table and calls only plain functions.
 * Without a rule they are allowed for every kind, so drivers that set
 * client_encoding at startup or wrap reads in transactions just work.
 */
function isHousekeeping(statement: StatementAnalysis): boolean {
  if (statement.kind === 'transaction' || statement.kind === 'empty') return true;
  // SELECT 1, SELECT now(): a pool's health check reads no table.
  if (statement.kind === 'read' && statement.tables.length === 0 && statement.hazards.length === 0)
    return true;
  return HOUSEKEEPING_COMMANDS.has(statement.command) && statement.hazards.length === 0;
}

/** Returns why the rule matches the statement, or undefined. Every condition given must hold. */
function matches(rule: Rule, statement: StatementAnalysis, input: PolicyInput): string | undefined {
  const { match } = rule;
  const why: string[] = [];
  const { identity, target } = input;
  if (match.identities) {
    if (!match.identities.includes(identity.name)) return undefined;
    why.push(`identity ${identity.name}`);
  }
  if (match.groups) {
    const group = identity.groups.find((g) => match.groups!.includes(g));
    if (group === undefined) return undefined;
    why.push(`group ${group}`);
  }
  if (match.identityKinds) {
    if (!match.identityKinds.includes(identity.kind)) return undefined;
    why.push(`kind ${identity.kind}`);
  }
  if (match.targets) {
    if (!match.targets.includes(target.name)) return undefined;
    why.push(`target ${target.name}`);
  }
  if (match.labels) {
    for (const [key, value] of Object.entries(match.labels))
      if (target.labels[key] !== value) return undefined;
    why.push(
      `labels ${Object.entries(match.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(',')}`,
    );
  }
  if (match.statementKinds) {
    if (!match.statementKinds.includes(statement.kind)) return undefined;
    why.push(`statement kind ${statement.kind}`);
  }
  // An allow rule must cover everything the statement touches (a join cannot bring in a table the
  // rule does not name); a rule that refuses or restricts applies when it covers any part of it.
  const every = rule.action === 'allow';
  if (match.tables) {
    const covered = (t: TableRef) =>
      (match.access === undefined || t.access === match.access) &&
      match.tables!.some((pattern) => tableMatches(pattern, t, rule.action, input.searchPath));
    if (every) {
      // Every table the statement touches, in the access given: `access: read` allows no write.
      if (statement.tables.length === 0 || !statement.tables.every(covered)) return undefined;
      why.push(`only ${statement.tables.map(tableName).join(', ')}`);
    } else {
      const table = statement.tables.find(covered);
      if (!table) return undefined;
      why.push(`${table.access} of ${tableName(table)}`);
    }
  }
  if (match.columns) {
    const all = Object.values(statement.columns).flat();
    const covered = (c: string) => match.columns!.some((pattern) => columnMatches(pattern, c, every));
    if (every) {
      if (!all.every(covered)) return undefined;
      why.push(all.length === 0 ? 'no column' : `only columns ${all.join(', ')}`);
    } else {
      const column = all.find(covered);
      if (column === undefined) return undefined;
      why.push(`column ${column}`);
    }
  }
  if (match.functions) {
    const covered = (f: string) => match.functions!.some((pattern) => glob(pattern, f));
    if (every) {
      if (!statement.functions.every(covered)) return undefined;
      why.push(statement.functions.length === 0 ? 'no function' : `only ${statement.functions.join(', ')}`);
    } else {
      const fn = statement.functions.find(covered);
      if (fn === undefined) return undefined;
      why.push(`function ${fn}`);
    }
  }
  if (match.hasWhere !== undefined) {
    if (statement.hasWhere !== match.hasWhere) return undefined;
    why.push(match.hasWhere ? 'has WHERE' : 'no WHERE');
  }
  if (match.sql !== undefined) {
    if (!new RegExp(match.sql, 'i').test(statement.text)) return undefined;
    why.push(`SQL matches /${match.sql}/`);
  }
  if (match.applicationNames) {
    if (!match.applicationNames.some((pattern) => glob(pattern, input.applicationName))) return undefined;
    why.push(`application_name ${input.applicationName}`);
  }
  if (match.tags) {
    const tags = sqlcommenterTags(statement.text);
    for (const [key, value] of Object.entries(match.tags)) if (tags.get(key) !== value) return undefined;
    why.push(
      `tags ${Object.entries(match.tags)
        .map(([k, v]) => `${k}=${v}`)
        .join(',')}`,
    );
  }
  if (match.time) {
    if (!withinTime(match.time, input.now)) return undefined;
    why.push('time window');
  }
  return `${why.join(', ') || 'every statement'}: ${clip(statement.text)}`;
}

/**
 * A pattern with a dot is matched against schema.table; without one, against
 * the table name in any schema. An unqualified name could be in any schema
 * of the search_path: a rule that refuses or restricts matches if any of
 * them does, a rule that allows only if all of them do.
 */
function tableMatches(
  pattern: string,
  table: TableRef,
  action: Action,
  searchPath?: readonly string[],
): boolean {
  if (!pattern.includes('.')) return glob(pattern, table.name);
  if (table.schema !== undefined) return glob(pattern, `${table.schema}.${table.name}`);
  const schemas = searchPath && searchPath.length > 0 ? searchPath : ['public'];
  const matchesIn = (schema: string) => glob(pattern, `${schema}.${table.name}`);
  return action === 'allow' ? schemas.every(matchesIn) : schemas.some(matchesIn);
}

function tableName(table: TableRef): string {
  return table.schema ? `${table.schema}.${table.name}` : table.name;
}

/**
 * Column references are matched as written (c.email) and by their last part
 * (email). A star (*, c.*) names columns Warden cannot list without the
 * catalog: it may hold any column for a rule that refuses, and only what a
 * `*` pattern allows for a rule that allows.
 */
function columnMatches(pattern: string, column: string, allow: boolean): boolean {
  const name = column.split('.').at(-1)!;
  if (name === '*') return allow ? pattern === '*' : true;
  return glob(pattern, column) || glob(pattern, name);
}

/** Shell-style glob: * any run of characters, ? one; case-sensitive like quoted identifiers. */
export function glob(pattern: string, value: string): boolean {
  const source = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${source}$`).test(value);
}

/** sqlcommenter: key='value' pairs (URL-encoded) inside a /* *\/ comment. */
export function sqlcommenterTags(sql: string): Map<string, string> {
  const tags = new Map<string, string>();
  for (const comment of sql.matchAll(/\/\*([\s\S]*?)\*\//g)) {
    for (const pair of comment[1]!.matchAll(/([\w.-]+)\s*=\s*'([^']*)'/g)) {
      try {
        tags.set(decodeURIComponent(pair[1]!), decodeURIComponent(pair[2]!));
      } catch {
        tags.set(pair[1]!, pair[2]!); // not URL-encoded after all: keep as written
      }
    }
  }
  return tags;
}

function withinTime(window: NonNullable<Match['time']>, now: Date): boolean {
  if (window.days && !window.days.includes(now.getUTCDay())) return false;
  if (window.from === undefined || window.to === undefined) return true;
  const minutes = now.getUTCHours() * 60 + now.getUTCMinutes();
  const [from, to] = [window.from, window.to].map((t) => {
    const [h, m] = t.split(':').map(Number);
    return h! * 60 + (m ?? 0);
  }) as [number, number];
  return from <= to ? minutes >= from && minutes < to : minutes >= from || minutes < to;
}

function clip(text: string): string {
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}
