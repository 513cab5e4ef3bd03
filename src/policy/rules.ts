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
 *
 * A Policy is compiled once (compilePolicy, memoised per Policy object, which
 * is read as immutable): globs become string compares or RegExps, `sql` a
 * RegExp, time windows minute ranges. `judge` evaluates the compiled form and
 * says why each rule matched without the statement's text, so that a caller
 * keeping judgements (PolicyEngine) can give each statement its own reasons;
 * `evaluate` is both together.
 */

import type { IdentityConfig, IdentityKind, TargetConfig } from '../config/index.ts';
import type { GUARDRAIL_NAMES } from '../config/schema.ts';
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
  /** The identity holds an approved, unexpired just-in-time grant of one of these roles on the target. */
  readonly grants?: readonly string[];
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

/** The built-in guardrails, as named in warden.yaml (the config schema holds the one list). */
export type GuardrailName = (typeof GUARDRAIL_NAMES)[number];

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
  /** Roles of the just-in-time grants the identity holds on the target now (src/approvals/grants.ts). */
  readonly grants?: ReadonlySet<string>;
}

export type { MatchedRule };

/** What the rules decided, with every matched rule and why. */
export interface Verdict extends Pick<Judgement, 'action' | 'rule' | 'message' | 'limits'> {
  readonly matched: readonly MatchedRule[];
}

const STRENGTH: Record<Action, number> = { allow: 0, limit: 1, mask: 1, review: 2, deny: 3 };
const DEFAULTS: Record<IdentityKind, 'allow' | 'deny'> = { human: 'allow', service: 'allow', agent: 'deny' };

export interface Guardrail {
  readonly name: GuardrailName;
  readonly message: string;
  applies(statement: StatementAnalysis, policy: Policy): string | undefined;
}

/** The first of the hazards named (in that order) that the statement has. */
function hazard(statement: StatementAnalysis, first: Hazard, second?: Hazard): Hazard | undefined {
  const { hazards } = statement;
  if (hazards.length === 0) return undefined;
  if (hazards.includes(first)) return first;
  return second !== undefined && hazards.includes(second) ? second : undefined;
}

const ALTER_STATEMENT = /^Alter.*Stmt$/;

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
      (s.kind === 'ddl' && s.command !== 'AlterSystemStmt' && ALTER_STATEMENT.test(s.command))
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
      let hidden = '';
      for (const name of s.functions) {
        if (isOpaque(name) && !allowedFunction(policy, name)) hidden += hidden === '' ? name : `, ${name}`;
      }
      return hidden === '' ? undefined : hidden;
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

function allowedFunction(policy: Policy, name: string): boolean {
  const allowed = policy.allowedFunctions;
  if (!allowed) return false;
  for (const pattern of allowed) if (glob(pattern, name)) return true;
  return false;
}

export function evaluate(policy: Policy, input: PolicyInput): Verdict {
  const judgement = judge(compilePolicy(policy), input);
  return {
    action: judgement.action,
    rule: judgement.rule,
    message: judgement.message,
    matched: matchedRules(judgement.hits, input.statements),
    limits: judgement.limits,
  };
}

/** A rule that matched, and why, without the text of the statement it matched (see matchedRules). */
export interface Hit {
  readonly rule: string;
  readonly action: Action;
  readonly why: string;
  /** The statement it matched: an index into the statements judged. */
  readonly statement: number;
  readonly message: string | undefined;
}

/** A Verdict before the statements' texts are put into its reasons. */
export interface Judgement {
  readonly action: Action;
  /** The rule that decided (undefined when the default did). */
  readonly rule: string | undefined;
  readonly message: string;
  readonly hits: readonly Hit[];
  readonly limits: { readonly maxRows?: number; readonly statementTimeoutMs?: number };
  /** Some rule's time window was consulted: the judgement holds for this UTC minute only. */
  readonly timeDependent: boolean;
}

/**
 * The Verdict's matched rules. In a batch of several statements each hit's
 * reason ends with the text of the statement it matched; a lone statement is
 * the Decision's own text, so its reasons do not repeat it (and do not change
 * with its constants).
 */
export function matchedRules(hits: readonly Hit[], statements: readonly StatementAnalysis[]): MatchedRule[] {
  const quote = statements.length > 1;
  const matched: MatchedRule[] = new Array(hits.length);
  for (let i = 0; i < hits.length; i++) {
    const hit = hits[i]!;
    matched[i] = {
      rule: hit.rule,
      action: hit.action,
      reason: quote ? `${hit.why}: ${clip(statements[hit.statement]!.text)}` : hit.why,
      message: hit.message,
    };
  }
  return matched;
}

/** evaluate, on a compiled policy, with reasons that leave out the statements' texts. */
export function judge(compiled: CompiledPolicy, input: PolicyInput): Judgement {
  const { statements } = input;
  const hits: Hit[] = [];
  const limits: { maxRows?: number; statementTimeoutMs?: number } = {};
  const state: JudgeState = { timeDependent: false };
  for (const { guardrail, action, rule } of compiled.guardrails) {
    for (let i = 0; i < statements.length; i++) {
      const reason = guardrail.applies(statements[i]!, compiled.policy);
      if (reason === undefined) continue;
      hits.push({ rule, action, why: reason, statement: i, message: guardrail.message });
      break;
    }
  }
  for (const rule of compiled.rules) {
    if (statements.length === 0 || !sessionMatches(rule, input)) continue;
    for (let i = 0; i < statements.length; i++) {
      const statement = statements[i]!;
      if (!statementMatches(rule, statement, input, state)) continue;
      hits.push({
        rule: rule.name,
        action: rule.action,
        why: whyMatches(rule, statement, input),
        statement: i,
        message: rule.message,
      });
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
  const { timeDependent } = state;
  // The strongest action wins; among equals, the first match (guardrails, then rules in file order).
  let winner: Hit | undefined;
  let allowed = false;
  for (const hit of hits) {
    if (winner === undefined || STRENGTH[hit.action] > STRENGTH[winner.action]) winner = hit;
    if (hit.action === 'allow') allowed = true;
  }
  const judged = (action: Action, rule: string | undefined, message: string): Judgement => ({
    action,
    rule,
    message,
    hits,
    limits,
    timeDependent,
  });
  if (winner !== undefined && STRENGTH[winner.action] >= STRENGTH.review)
    return judged(winner.action, winner.rule, messageOf(winner));
  // Mask and limit shape what is allowed; they do not allow by themselves. Access comes from an
  // allow rule, or from the default for the identity's kind.
  if (!allowed && allHousekeeping(statements))
    return judged(winner?.action ?? 'allow', winner?.rule, HOUSEKEEPING);
  const { kind } = input.identity;
  const fallback = compiled.policy.defaults?.[kind] ?? DEFAULTS[kind];
  if (!allowed && fallback === 'deny')
    return judged('deny', undefined, `no rule allows this for ${kind} identities (default: deny)`);
  if (winner === undefined) return judged('allow', undefined, 'allowed by default');
  return judged(winner.action, winner.rule, messageOf(winner));
}

interface JudgeState {
  timeDependent: boolean;
}

function messageOf(winner: Hit): string {
  return winner.message ?? `${winner.action} by rule ${winner.rule}`;
}

const HOUSEKEEPING =
  'allowed by default: touches no data (transaction control, settings, a SELECT of no table)';
const HOUSEKEEPING_COMMANDS = new Set(['VariableSetStmt', 'VariableShowStmt', 'DeallocateStmt']);

function allHousekeeping(statements: readonly StatementAnalysis[]): boolean {
  for (const statement of statements) if (!isHousekeeping(statement)) return false;
  return true;
}

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

// ---------------------------------------------------------------------------------------------
// The compiled policy

/** A policy ready to judge with: see compilePolicy. */
export interface CompiledPolicy {
  readonly policy: Policy;
  /** The guardrails that are on, with their action and the rule name they are reported under. */
  readonly guardrails: readonly {
    readonly guardrail: Guardrail;
    readonly action: 'deny' | 'review';
    readonly rule: string;
  }[];
  readonly rules: readonly CompiledRule[];
  /** Every rule's `sql` RegExp, in rule order: what of a text other than its shape a judgement reads. */
  readonly sqlPatterns: readonly RegExp[];
  /** Some rule matches sqlcommenter tags (which are read from the text's comments). */
  readonly readsTags: boolean;
  /** Some rule matches just-in-time grants: a verdict then depends on the grants held. */
  readonly readsGrants: boolean;
  /** Some rule's `sql` is not a valid regular expression (judging throws when it reaches it). */
  readonly hasInvalidSql: boolean;
}

interface CompiledRule {
  readonly name: string;
  readonly action: Action;
  readonly message: string | undefined;
  readonly maxRows: number | undefined;
  readonly statementTimeoutMs: number | undefined;
  /** An allow rule must cover all the statement touches; any other applies when it covers a part. */
  readonly every: boolean;
  readonly identities: readonly string[] | undefined;
  readonly groups: readonly string[] | undefined;
  readonly identityKinds: readonly IdentityKind[] | undefined;
  readonly targets: readonly string[] | undefined;
  readonly labels: readonly (readonly [string, string])[] | undefined;
  readonly statementKinds: readonly StatementKind[] | undefined;
  readonly tables: readonly TablePattern[] | undefined;
  readonly access: 'read' | 'write' | undefined;
  readonly columns: readonly ColumnPattern[] | undefined;
  readonly functions: readonly Glob[] | undefined;
  readonly hasWhere: boolean | undefined;
  readonly sql: string | undefined;
  /** undefined with `sql` set: not a valid regular expression. */
  readonly sqlRegex: RegExp | undefined;
  readonly applicationNames: readonly Glob[] | undefined;
  readonly tags: readonly (readonly [string, string])[] | undefined;
  readonly grants: readonly string[] | undefined;
  readonly time: TimeWindow | undefined;
}

interface TablePattern {
  /** With a dot: matched against schema.table; without, against the table name. */
  readonly qualified: boolean;
  readonly glob: Glob;
}

interface ColumnPattern {
  readonly star: boolean;
  readonly glob: Glob;
}

interface TimeWindow {
  readonly days: readonly number[] | undefined;
  /** false: days only, any time of day. */
  readonly window: boolean;
  readonly from: number;
  readonly to: number;
}

const COMPILED = new WeakMap<Policy, CompiledPolicy>();

/** The policy compiled for judging; memoised per Policy object (policies are not changed in place). */
export function compilePolicy(policy: Policy): CompiledPolicy {
  let compiled = COMPILED.get(policy);
  if (compiled === undefined) {
    compiled = compile(policy);
    COMPILED.set(policy, compiled);
  }
  return compiled;
}

function compile(policy: Policy): CompiledPolicy {
  const guardrails: { guardrail: Guardrail; action: 'deny' | 'review'; rule: string }[] = [];
  for (const guardrail of GUARDRAILS) {
    const action = policy.guardrails?.[guardrail.name] ?? 'deny';
    if (action === 'allow') continue;
    guardrails.push({ guardrail, action, rule: `guardrail:${guardrail.name}` });
  }
  const rules = policy.rules.map(compileRule);
  const sqlPatterns: RegExp[] = [];
  for (const rule of rules) if (rule.sqlRegex !== undefined) sqlPatterns.push(rule.sqlRegex);
  return {
    policy,
    guardrails,
    rules,
    sqlPatterns,
    readsTags: rules.some((rule) => rule.tags !== undefined),
    readsGrants: rules.some((rule) => rule.grants !== undefined),
    hasInvalidSql: rules.some((rule) => rule.sql !== undefined && rule.sqlRegex === undefined),
  };
}

function compileRule(rule: Rule): CompiledRule {
  const { match } = rule;
  let sqlRegex: RegExp | undefined;
  if (match.sql !== undefined) {
    try {
      sqlRegex = new RegExp(match.sql, 'i');
    } catch {
      sqlRegex = undefined; // thrown again when a statement reaches it, as before compilation
    }
  }
  return {
    name: rule.name,
    action: rule.action,
    message: rule.message,
    maxRows: rule.maxRows,
    statementTimeoutMs: rule.statementTimeoutMs,
    every: rule.action === 'allow',
    identities: match.identities || undefined,
    groups: match.groups || undefined,
    identityKinds: match.identityKinds || undefined,
    targets: match.targets || undefined,
    labels: match.labels ? Object.entries(match.labels) : undefined,
    statementKinds: match.statementKinds || undefined,
    tables: match.tables?.map((pattern) => ({ qualified: pattern.includes('.'), glob: new Glob(pattern) })),
    access: match.access,
    columns: match.columns?.map((pattern) => ({ star: pattern === '*', glob: new Glob(pattern) })),
    functions: match.functions?.map((pattern) => new Glob(pattern)),
    hasWhere: match.hasWhere,
    sql: match.sql,
    sqlRegex,
    applicationNames: match.applicationNames?.map((pattern) => new Glob(pattern)),
    tags: match.tags ? Object.entries(match.tags) : undefined,
    time: match.time ? compileTime(match.time) : undefined,
    grants: match.grants || undefined,
  };
}

function compileTime(time: NonNullable<Match['time']>): TimeWindow {
  const days = time.days ? time.days : undefined;
  if (time.from === undefined || time.to === undefined) return { days, window: false, from: 0, to: 0 };
  return { days, window: true, from: minuteOfDay(time.from), to: minuteOfDay(time.to) };
}

function minuteOfDay(clock: string): number {
  const [h, m] = clock.split(':').map(Number);
  return h! * 60 + (m ?? 0);
}

// ---------------------------------------------------------------------------------------------
// Matching: conditions on who and where first (once per batch), then on each statement

/** The conditions that depend on the session only: identity, groups, kind, target, labels. */
function sessionMatches(rule: CompiledRule, input: PolicyInput): boolean {
  const { identity, target } = input;
  if (rule.identities !== undefined && !rule.identities.includes(identity.name)) return false;
  if (rule.groups !== undefined && firstGroup(rule.groups, identity.groups) === undefined) return false;
  if (rule.identityKinds !== undefined && !rule.identityKinds.includes(identity.kind)) return false;
  if (rule.targets !== undefined && !rule.targets.includes(target.name)) return false;
  if (rule.labels !== undefined) {
    for (const [key, value] of rule.labels) if (target.labels[key] !== value) return false;
  }
  if (rule.grants !== undefined && !rule.grants.some((role) => input.grants?.has(role))) return false;
  return true;
}

function firstGroup(wanted: readonly string[], groups: readonly string[]): string | undefined {
  for (const group of groups) if (wanted.includes(group)) return group;
  return undefined;
}

/** The rest of the conditions, in the order `whyMatches` reports them. */
function statementMatches(
  rule: CompiledRule,
  statement: StatementAnalysis,
  input: PolicyInput,
  state: JudgeState,
): boolean {
  if (rule.statementKinds !== undefined && !rule.statementKinds.includes(statement.kind)) return false;
  if (rule.tables !== undefined) {
    const { tables } = statement;
    if (rule.every) {
      // Every table the statement touches, in the access given: `access: read` allows no write.
      if (tables.length === 0) return false;
      for (const table of tables) if (!tableCovered(rule, table, input.searchPath)) return false;
    } else if (firstTable(rule, tables, input.searchPath) === undefined) {
      return false;
    }
  }
  if (rule.columns !== undefined) {
    const columns = flatColumns(statement.columns);
    if (rule.every) {
      for (let i = 0; i < columns.all.length; i++) {
        if (!columnCovered(rule.columns, columns.all[i]!, columns.names[i]!, true)) return false;
      }
    } else if (firstColumn(rule.columns, columns, false) === undefined) {
      return false;
    }
  }
  if (rule.functions !== undefined) {
    if (rule.every) {
      for (const fn of statement.functions) if (!anyGlob(rule.functions, fn)) return false;
    } else if (firstFunction(rule.functions, statement.functions) === undefined) {
      return false;
    }
  }
  if (rule.hasWhere !== undefined && statement.hasWhere !== rule.hasWhere) return false;
  if (rule.sql !== undefined) {
    // An invalid pattern throws here, where it always did.
    const regex = rule.sqlRegex ?? new RegExp(rule.sql, 'i');
    if (!regex.test(statement.text)) return false;
  }
  if (rule.applicationNames !== undefined && !anyGlob(rule.applicationNames, input.applicationName))
    return false;
  if (rule.tags !== undefined && !tagsMatch(rule.tags, statement.text)) return false;
  if (rule.time !== undefined) {
    state.timeDependent = true;
    if (!withinTime(rule.time, input.now)) return false;
  }
  return true;
}

/** Why a rule that matches (statementMatches said so) matches: built only then. */
function whyMatches(rule: CompiledRule, statement: StatementAnalysis, input: PolicyInput): string {
  const { identity, target } = input;
  const why: string[] = [];
  if (rule.identities) why.push(`identity ${identity.name}`);
  if (rule.groups) why.push(`group ${firstGroup(rule.groups, identity.groups)}`);
  if (rule.identityKinds) why.push(`kind ${identity.kind}`);
  if (rule.targets) why.push(`target ${target.name}`);
  if (rule.labels) why.push(`labels ${pairs(rule.labels)}`);
  if (rule.grants) why.push(`grant ${rule.grants.find((role) => input.grants?.has(role))}`);
  if (rule.statementKinds) why.push(`statement kind ${statement.kind}`);
  if (rule.tables) {
    if (rule.every) {
      why.push(`only ${statement.tables.map(tableName).join(', ')}`);
    } else {
      const table = firstTable(rule, statement.tables, input.searchPath)!;
      why.push(`${table.access} of ${tableName(table)}`);
    }
  }
  if (rule.columns) {
    const columns = flatColumns(statement.columns);
    if (rule.every) {
      why.push(columns.all.length === 0 ? 'no column' : `only columns ${columns.all.join(', ')}`);
    } else {
      why.push(`column ${firstColumn(rule.columns, columns, false)}`);
    }
  }
  if (rule.functions) {
    if (rule.every) {
      why.push(statement.functions.length === 0 ? 'no function' : `only ${statement.functions.join(', ')}`);
    } else {
      why.push(`function ${firstFunction(rule.functions, statement.functions)}`);
    }
  }
  if (rule.hasWhere !== undefined) why.push(rule.hasWhere ? 'has WHERE' : 'no WHERE');
  if (rule.sql !== undefined) why.push(`SQL matches /${rule.sql}/`);
  if (rule.applicationNames) why.push(`application_name ${input.applicationName}`);
  if (rule.tags) why.push(`tags ${pairs(rule.tags)}`);
  if (rule.time) why.push('time window');
  return why.join(', ') || 'every statement';
}

function pairs(entries: readonly (readonly [string, string])[]): string {
  return entries.map(([key, value]) => `${key}=${value}`).join(',');
}

function tableCovered(
  rule: CompiledRule,
  table: TableRef,
  searchPath: readonly string[] | undefined,
): boolean {
  if (rule.access !== undefined && table.access !== rule.access) return false;
  for (const pattern of rule.tables!) if (tableMatches(pattern, table, rule.every, searchPath)) return true;
  return false;
}

function firstTable(
  rule: CompiledRule,
  tables: readonly TableRef[],
  searchPath: readonly string[] | undefined,
): TableRef | undefined {
  for (const table of tables) if (tableCovered(rule, table, searchPath)) return table;
  return undefined;
}

const PUBLIC_ONLY: readonly string[] = ['public'];

/**
 * A pattern with a dot is matched against schema.table; without one, against
 * the table name in any schema. An unqualified name could be in any schema
 * of the search_path: a rule that refuses or restricts matches if any of
 * them does, a rule that allows only if all of them do.
 */
function tableMatches(
  pattern: TablePattern,
  table: TableRef,
  allow: boolean,
  searchPath: readonly string[] | undefined,
): boolean {
  if (!pattern.qualified) return globMatches(pattern.glob, table.name);
  if (table.schema !== undefined) return globMatches(pattern.glob, `${table.schema}.${table.name}`);
  const schemas = searchPath && searchPath.length > 0 ? searchPath : PUBLIC_ONLY;
  for (const schema of schemas) {
    const matches = globMatches(pattern.glob, `${schema}.${table.name}`);
    if (allow && !matches) return false; // allow: every schema must match
    if (!allow && matches) return true; // refuse or restrict: any schema may
  }
  return allow;
}

function tableName(table: TableRef): string {
  return table.schema ? `${table.schema}.${table.name}` : table.name;
}

/** A statement's column references, all clauses together, each with its last part (email of c.email). */
interface FlatColumns {
  readonly all: readonly string[];
  readonly names: readonly string[];
}

const FLAT_COLUMNS = new WeakMap<StatementAnalysis['columns'], FlatColumns>();

/** Analyses are shared (cached by shape): so are their flattened columns. */
function flatColumns(columns: StatementAnalysis['columns']): FlatColumns {
  let flat = FLAT_COLUMNS.get(columns);
  if (flat === undefined) {
    const all = Object.values(columns).flat();
    flat = { all, names: all.map((column) => column.slice(column.lastIndexOf('.') + 1)) };
    FLAT_COLUMNS.set(columns, flat);
  }
  return flat;
}

function firstColumn(
  patterns: readonly ColumnPattern[],
  columns: FlatColumns,
  allow: boolean,
): string | undefined {
  for (let i = 0; i < columns.all.length; i++) {
    if (columnCovered(patterns, columns.all[i]!, columns.names[i]!, allow)) return columns.all[i];
  }
  return undefined;
}

/**
 * Column references are matched as written (c.email) and by their last part
 * (email). A star (*, c.*) names columns Warden cannot list without the
 * catalog: it may hold any column for a rule that refuses, and only what a
 * `*` pattern allows for a rule that allows.
 */
function columnCovered(
  patterns: readonly ColumnPattern[],
  column: string,
  name: string,
  allow: boolean,
): boolean {
  for (const pattern of patterns) {
    if (name === '*') {
      if (allow ? pattern.star : true) return true;
    } else if (globMatches(pattern.glob, column) || globMatches(pattern.glob, name)) {
      return true;
    }
  }
  return false;
}

function firstFunction(patterns: readonly Glob[], functions: readonly string[]): string | undefined {
  for (const fn of functions) if (anyGlob(patterns, fn)) return fn;
  return undefined;
}

function anyGlob(patterns: readonly Glob[], value: string): boolean {
  for (const pattern of patterns) if (globMatches(pattern, value)) return true;
  return false;
}

const NO_TAGS: ReadonlyMap<string, string> = new Map();

function tagsMatch(wanted: readonly (readonly [string, string])[], text: string): boolean {
  if (wanted.length === 0) return true;
  const tags = text.includes('/*') ? sqlcommenterTags(text) : NO_TAGS;
  for (const [key, value] of wanted) if (tags.get(key) !== value) return false;
  return true;
}

function withinTime(time: TimeWindow, now: Date): boolean {
  if (time.days !== undefined && !time.days.includes(now.getUTCDay())) return false;
  if (!time.window) return true;
  const minutes = now.getUTCHours() * 60 + now.getUTCMinutes();
  const { from, to } = time;
  return from <= to ? minutes >= from && minutes < to : minutes >= from || minutes < to;
}

// ---------------------------------------------------------------------------------------------
// Globs

const EXACT = 0;
const PREFIX = 1;
const PATTERN = 2;

/**
 * A glob compiled once: a string compare when it has no wildcard, a prefix
 * test for `abc*`, a RegExp otherwise. All three agree with the RegExp that
 * `glob` describes (whose `.` matches no line terminator).
 */
class Glob {
  readonly kind: number;
  /** EXACT: the pattern; PREFIX: the pattern without its star. */
  readonly text: string;
  readonly regex: RegExp | undefined;

  constructor(pattern: string) {
    const star = pattern.indexOf('*');
    const wild = star >= 0 || pattern.includes('?');
    if (!wild) {
      this.kind = EXACT;
      this.text = pattern;
      this.regex = undefined;
    } else if (star === pattern.length - 1 && !pattern.includes('?')) {
      this.kind = PREFIX;
      this.text = pattern.slice(0, -1);
      this.regex = undefined;
    } else {
      this.kind = PATTERN;
      this.text = pattern;
      this.regex = new RegExp(
        `^${pattern
          .replace(/[.+^${}()|[\]\\]/g, '\\$&')
          .replace(/\*/g, '.*')
          .replace(/\?/g, '.')}$`,
      );
    }
  }
}

function globMatches(pattern: Glob, value: string): boolean {
  if (pattern.kind === EXACT) return value === pattern.text;
  if (pattern.kind === PREFIX)
    return value.startsWith(pattern.text) && !lineTerminatorIn(value, pattern.text.length);
  return pattern.regex!.test(value);
}

/** What a RegExp's `.` does not match. */
function lineTerminatorIn(value: string, from: number): boolean {
  for (let i = from; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x0a || c === 0x0d || c === 0x2028 || c === 0x2029) return true;
  }
  return false;
}

const GLOBS = new Map<string, Glob>();
const GLOBS_KEPT = 1024;

/** Shell-style glob: * any run of characters, ? one; case-sensitive like quoted identifiers. */
export function glob(pattern: string, value: string): boolean {
  let compiled = GLOBS.get(pattern);
  if (compiled === undefined) {
    if (GLOBS.size >= GLOBS_KEPT) GLOBS.clear();
    compiled = new Glob(pattern);
    GLOBS.set(pattern, compiled);
  }
  return globMatches(compiled, value);
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

/** The comments of a text, which are all that its sqlcommenter tags are read from ('' when none). */
export function commentsOf(sql: string): string {
  if (!sql.includes('/*')) return '';
  let comments = '';
  for (const comment of sql.matchAll(/\/\*([\s\S]*?)\*\//g)) comments += `${comment[1]}*/`;
  return comments;
}

function clip(text: string): string {
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}
