/**
 * The decision point with policy behind it: the SQL is analysed (cached by
 * shape), EXECUTE is resolved to what its prepared statement runs, the rules
 * are evaluated, and the verdict becomes the Decision the session enforces
 * and audit records. Anything that cannot be judged is refused (fail closed).
 *
 * Verdicts are kept too. The analysis cache gives texts of one shape the same
 * Analysis object, and what the rules read of a statement is its analysis,
 * except for `sql` patterns and sqlcommenter tags, which read the text
 * itself. So a verdict is kept under the analysis, the identity and target
 * (by object), the application name, the search path, and — only when the
 * policy has such rules — which `sql` patterns the text matches and its
 * comments. A verdict that consulted a time window holds until the end of
 * its UTC minute. Batches with a SQL-level PREPARE or EXECUTE (whose meaning
 * depends on the session's prepared statements) are judged afresh every time,
 * and a new policy drops every kept verdict. A kept verdict's matched rules
 * are made once (only a batch's reasons quote its statements, and batches
 * are analysed by exact text). A Decision
 * with a row limit (which counts rows) or with effects is made for each call;
 * any other is given again for the same text from the same source.
 *
 * The texts of Parse, Bind and Execute, which come again and again, find
 * their analysis by exact text before the analysis cache is asked.
 */

import type { Catalog } from '../masking/catalog.ts';
import type { Masking } from '../masking/masking.ts';
import { type Analysis, SqlSyntaxError, type StatementAnalysis } from '../sql/analysis.ts';
import { AnalysisCache } from '../sql/cache.ts';
import { Generations } from '../sql/generations.ts';
import type {
  Allow,
  Decide,
  Decision,
  DecisionContext,
  Deny,
  Effects,
  MatchedRule,
  ResultTransform,
  Review,
  SessionInfo,
  StatementSource,
} from './decision.ts';
import { rowLimit } from './limits.ts';
import {
  type CompiledPolicy,
  commentsOf,
  compilePolicy,
  type Judgement,
  judge,
  matchedRules,
  type Policy,
  type Verdict,
} from './rules.ts';

/** Where a decision's time goes: parse (text to analysis, from the cache when seen before) and policy (the rules). */
export interface StageTimings {
  timed(stage: 'parse' | 'policy', ms: number): void;
}

export interface Explanation {
  /** The statements judged (an EXECUTE replaced by what it runs); undefined when the SQL could not be read. */
  readonly statements: readonly StatementAnalysis[] | undefined;
  readonly verdict: Verdict | undefined;
  readonly decision: Decision;
}

/** Kept verdicts: up to twice this many (see Generations). */
const KEPT_VERDICTS = 5_000;
/** Analyses of prepared statements' texts kept by exact text: up to twice this many, each this long at most. */
const PREPARED_TEXTS = 1_000;
const PREPARED_TEXT_LENGTH = 8_192;
const MINUTE_MS = 60_000;

export class PolicyEngine {
  private compiled: CompiledPolicy;
  private kept = new Generations<Kept>(KEPT_VERDICTS);
  /** What the engine reads of each Analysis, and the verdict it last used for it (under this policy). */
  private shapes = new WeakMap<Analysis, Shape>();
  /**
   * The analyses of the texts of Parse, Bind and Execute, by exact text: a prepared statement's text
   * comes again and again, and this spares scanning it for its shape each time.
   */
  private readonly preparedTexts = new Generations<Analysis>(PREPARED_TEXTS);
  private readonly sessionKeys = new WeakMap<SessionInfo, SessionKey>();
  /** Verdicts reused and verdicts made (batches that cannot be kept count as neither). */
  verdictHits = 0;
  verdictMisses = 0;

  private timings: StageTimings | undefined;
  /** Time the decision being made has spent in analysisOf. */
  private parseMs = 0;

  constructor(
    policy: Policy,
    private readonly cache = new AnalysisCache(),
    /** The clock time windows are judged by; the system clock when not given. */
    private readonly now?: () => Date,
    /** Masking of results, when the config has any; undefined masks nothing. */
    private masking?: Masking,
  ) {
    this.compiled = compilePolicy(policy);
  }

  /** Where the just-in-time grants an identity holds on a target are read, for rules that match grants. */
  setGrants(grantsOf: (identity: string, target: string) => ReadonlySet<string>): void {
    this.grantsOf = grantsOf;
  }

  private grantsOf: ((identity: string, target: string) => ReadonlySet<string>) | undefined;

  /** The grants a session's identity holds now, when the rules read grants. */
  private grantsFor(session: SessionInfo): ReadonlySet<string> | undefined {
    if (!this.compiled.readsGrants || this.grantsOf === undefined) return undefined;
    return this.grantsOf(session.identity.name, session.target.name);
  }

  /** Takes a reloaded masking section; kept verdicts are dropped. */
  setMasking(masking: Masking | undefined): void {
    this.masking = masking;
    this.kept = new Generations(KEPT_VERDICTS);
  }

  /** Takes a reloaded policy; sessions see it from their next statement. Kept verdicts are dropped. */
  setPolicy(policy: Policy): void {
    this.compiled = compilePolicy(policy);
    this.kept = new Generations(KEPT_VERDICTS);
    this.shapes = new WeakMap();
  }

  /** How many verdicts are kept. */
  get keptVerdicts(): number {
    return this.kept.size;
  }

  readonly decide: Decide = (context) => {
    const timings = this.timings;
    if (timings === undefined) return this.decisionFor(context, undefined);
    const started = performance.now();
    this.parseMs = 0;
    const decision = this.decisionFor(context, undefined);
    const total = performance.now() - started;
    timings.timed('parse', this.parseMs);
    timings.timed('policy', total - this.parseMs);
    return decision;
  };

  /** From now on, tells `timings` how long each decision spent parsing and judging. */
  timeStages(timings: StageTimings): void {
    this.timings = timings;
  }

  explain(context: DecisionContext): Explanation {
    const details: Details = { statements: undefined, verdict: undefined };
    const decision = this.decisionFor(context, details);
    return { statements: details.statements, verdict: details.verdict, decision };
  }

  /** The decision; `details`, when given, receives the statements judged and the verdict. */
  private decisionFor(context: DecisionContext, details: Details | undefined): Decision {
    const { sql } = context;
    if (context.source === 'function-call') {
      return refused(context, {
        sqlstate: '42501',
        message: 'function calls by OID (the FunctionCall message) cannot be judged and are refused',
        hint: 'Call the function in a SQL statement instead.',
      });
    }
    if (sql === undefined) {
      return refused(context, { sqlstate: '26000', message: 'Warden does not know this prepared statement' });
    }
    let analysis: Analysis;
    try {
      analysis = this.analysisOf(sql, context.source);
    } catch (error) {
      if (!(error instanceof SqlSyntaxError)) throw error;
      // Fail closed: what Warden cannot read is never forwarded.
      return refused(context, { sqlstate: '42601', message: error.message, position: error.position });
    }
    const shape = this.shapeOf(analysis);
    if (shape.keepable && !this.compiled.hasInvalidSql)
      return this.judgeKept(context, sql, analysis, shape, details);

    const statements: StatementAnalysis[] = [];
    // PREPAREs earlier in this batch: `PREPARE p AS ...; EXECUTE p` in one Query.
    const preparedHere = new Map<string, StatementAnalysis>();
    // DECLAREs earlier in this batch: `DECLARE c CURSOR FOR ...; FETCH 10 FROM c`.
    const declaredHere = new Map<string, StatementAnalysis>();
    for (const statement of analysis.statements) {
      if (statement.declares) declaredHere.set(statement.declares.name, statement);
      const prepare = statement.prepares;
      if (prepare && context.source === 'bind' && prepare.name === context.name) {
        // A Bind of a statement SQL PREPARE made runs what was prepared, and prepares nothing.
        statements.push(prepare.statement);
        continue;
      }
      if (prepare) preparedHere.set(prepare.name, prepare.statement);
      if (statement.executes === undefined) {
        statements.push(analysis.statements.length === 1 ? withText(statement, sql) : statement);
        continue;
      }
      const inBatch = preparedHere.get(statement.executes);
      const executed = inBatch ? [inBatch] : this.prepared(context, statement.executes);
      if (executed === undefined) {
        return refused(context, {
          sqlstate: '26000',
          message: `prepared statement "${statement.executes}" does not exist`,
        });
      }
      statements.push(...executed);
    }
    const judgement = judge(this.compiled, {
      identity: context.session.identity,
      target: context.session.target,
      applicationName: context.session.applicationName,
      statements,
      now: this.now ? this.now() : new Date(),
      searchPath: resolvedPath(context),
      grants: this.grantsFor(context.session),
    });
    const matched = matchedRules(judgement.hits, statements);
    // FETCH returns what its cursor's DECLARE selected: masked as that (a cursor not known stays a FETCH).
    const results = statements.some((statement) => statement.fetches !== undefined)
      ? statements.map((statement) =>
          statement.fetches === undefined
            ? statement
            : (declaredHere.get(statement.fetches) ?? this.declared(context, statement.fetches) ?? statement),
        )
      : statements;
    const outcome = maskedOutcome(
      outcomeOf(judgement, context, statements.some(isCursor)),
      this.masking,
      results,
      context,
    );
    const effects = context.source === 'bind' ? undefined : effectsOf(statements);
    if (details) {
      details.statements = statements;
      details.verdict = verdictOf(judgement, matched);
    }
    return decisionOf(context, sql, judgement, outcome, matched, effects, statements, analysis.fingerprint);
  }

  /** A batch without PREPARE or EXECUTE: its verdict is kept, see the top of this file. */
  private judgeKept(
    context: DecisionContext,
    sql: string,
    analysis: Analysis,
    shape: Shape,
    details: Details | undefined,
  ): Decision {
    const analysed = analysis.statements;
    // The cache shares one analysis among texts of one shape: a lone statement's text is this one.
    const first = analysed.length === 1 ? textOf(analysed[0]!, sql) : undefined;
    const { session } = context;
    const sessionKey = this.sessionKey(session);
    const path = context.searchPath ?? session.searchPath;
    const texts =
      this.compiled.sqlPatterns.length > 0 || this.compiled.readsTags ? this.textKey(analysed, first) : '';
    // The verdict this analysis last used, if kept under the same key; else the one the key finds.
    let kept =
      shape.lastKept !== undefined &&
      shape.lastSession === sessionKey &&
      shape.lastPath === path &&
      shape.lastTexts === texts
        ? shape.lastKept
        : undefined;
    let key: string | undefined;
    if (kept === undefined) {
      key = `${shape.id}\u0000${sessionKey}\u0000${pathKey(path)}\u0000${texts}`;
      kept = this.kept.get(key);
    }
    // A mask plan reads the target's catalog: a verdict made with an older one is made again.
    const catalog = this.masking?.catalogOf(session.target);
    if (kept !== undefined && kept.catalog !== catalog) kept = undefined;
    let now: Date | undefined;
    if (kept !== undefined && kept.from !== -Infinity) {
      // The system clock without making a Date; a clock given is asked once, as for a judgement.
      if (this.now) now = this.now();
      const time = now ? now.getTime() : Date.now();
      if (time < kept.from || time >= kept.until) kept = undefined;
    }
    if (kept === undefined) {
      this.verdictMisses++;
      now ??= this.now ? this.now() : new Date();
      const judgement = judge(this.compiled, {
        identity: session.identity,
        target: session.target,
        applicationName: session.applicationName,
        statements: first === undefined ? analysed : [withText(analysed[0]!, sql)],
        now,
        searchPath: resolvedPath(context),
        grants: this.grantsFor(session),
      });
      const time = now.getTime();
      const from = judgement.timeDependent ? time - (time % MINUTE_MS) : -Infinity;
      kept = {
        judgement,
        outcome: maskedOutcome(
          outcomeOf(judgement, context, shape.cursor),
          this.masking,
          analysed, // masking reads no text: the shape's analysis is enough
          context,
        ),
        catalog,
        from,
        until: judgement.timeDependent ? from + MINUTE_MS : Infinity,
        matched: undefined,
        sql: undefined,
        source: undefined,
        decision: undefined,
      };
      this.kept.set(key ?? `${shape.id}\u0000${sessionKey}\u0000${pathKey(path)}\u0000${texts}`, kept);
    } else {
      this.verdictHits++;
    }
    shape.lastSession = sessionKey;
    shape.lastPath = path;
    shape.lastTexts = texts;
    shape.lastKept = kept;

    const { judgement } = kept;
    if (details) {
      details.statements = first === undefined ? [...analysed] : [withText(analysed[0]!, sql)];
    } else if (kept.sql === sql && kept.source === context.source && kept.decision !== undefined) {
      // The same text from the same source: the same decision, which holds nothing made per call.
      return kept.decision;
    }
    // Reasons quote only the statements of batches, which are analysed by exact text: made once.
    let { matched } = kept;
    if (matched === undefined) {
      matched = judgement.hits.length === 0 ? NOTHING_MATCHED : matchedRules(judgement.hits, analysed);
      kept.matched = matched;
    }
    if (details) details.verdict = verdictOf(judgement, matched);
    const effects = shape.effects && context.source !== 'bind' ? effectsOf(analysed) : undefined;
    const decision = decisionOf(
      context,
      sql,
      judgement,
      kept.outcome,
      matched,
      effects,
      analysed,
      analysis.fingerprint,
    );
    if (
      effects === undefined &&
      (kept.outcome.action === 'deny' || (kept.outcome.maxRows === undefined && !kept.outcome.masking))
    ) {
      // Nothing in it is made for this call (a row limit counts rows; effects are applied once).
      kept.sql = sql;
      kept.source = context.source;
      kept.decision = decision;
    }
    return decision;
  }

  /** The analysis of a text; a prepared statement's by its exact text (see preparedTexts). */
  private analysisOf(sql: string, source: StatementSource): Analysis {
    if (this.timings === undefined) return this.analysisOfText(sql, source);
    const started = performance.now();
    try {
      return this.analysisOfText(sql, source);
    } finally {
      this.parseMs += performance.now() - started;
    }
  }

  private analysisOfText(sql: string, source: StatementSource): Analysis {
    if (source === 'query' || source === 'startup-option' || sql.length > PREPARED_TEXT_LENGTH) {
      return this.cache.get(sql);
    }
    let analysis = this.preparedTexts.get(sql);
    if (analysis === undefined) {
      analysis = this.cache.get(sql);
      this.preparedTexts.set(sql, analysis);
    }
    return analysis;
  }

  private shapeOf(analysis: Analysis): Shape {
    let shape = this.shapes.get(analysis);
    if (shape === undefined) {
      const { statements } = analysis;
      shape = {
        id: ++shapeIds,
        // Their verdicts depend on the session's prepared statements or cursors.
        keepable: statements.every(
          (s) => s.prepares === undefined && s.executes === undefined && s.fetches === undefined,
        ),
        cursor: statements.some(isCursor),
        effects: statements.some(
          (s) =>
            s.prepares !== undefined ||
            s.deallocates !== undefined ||
            s.declares !== undefined ||
            s.closes !== undefined ||
            s.setting === 'search_path',
        ),
        lastSession: undefined,
        lastPath: undefined,
        lastTexts: undefined,
        lastKept: undefined,
      };
      this.shapes.set(analysis, shape);
    }
    return shape;
  }

  /** What a verdict reads of the texts themselves: which `sql` patterns each matches, and its comments. */
  private textKey(analysed: readonly StatementAnalysis[], first: string | undefined): string {
    const { sqlPatterns, readsTags } = this.compiled;
    let key = '';
    for (let i = 0; i < analysed.length; i++) {
      const text = i === 0 && first !== undefined ? first : analysed[i]!.text;
      key += '\u0000';
      for (const pattern of sqlPatterns) key += pattern.test(text) ? '1' : '0';
      if (readsTags) key += commentsOf(text);
    }
    return key;
  }

  /** The session's part of a kept verdict's key: identity and target (by object), application name. */
  private sessionKey(session: SessionInfo): string {
    const grants = this.grantsFor(session);
    if (grants === undefined) return this.baseSessionKey(session);
    // A verdict kept for one set of grants is not the verdict for another. The grant book
    // hands out the same set until the grants change, so its key is made once per set.
    let key = this.grantKeys.get(grants);
    if (key === undefined) {
      key = [...grants].sort().join(',');
      this.grantKeys.set(grants, key);
    }
    return `${this.baseSessionKey(session)}\u0000${key}`;
  }

  private readonly grantKeys = new WeakMap<ReadonlySet<string>, string>();

  private baseSessionKey(session: SessionInfo): string {
    const known = this.sessionKeys.get(session);
    if (
      known !== undefined &&
      known.identity === session.identity &&
      known.target === session.target &&
      known.applicationName === session.applicationName
    ) {
      return known.key;
    }
    const key = `${objectId(session.identity)}\u0000${objectId(session.target)}\u0000${session.applicationName}`;
    this.sessionKeys.set(session, {
      identity: session.identity,
      target: session.target,
      applicationName: session.applicationName,
      key,
    });
    return key;
  }

  /** The DECLARE that made the session's cursor `name`, if Warden saw it. */
  private declared(context: DecisionContext, name: string): StatementAnalysis | undefined {
    const text = context.cursor?.(name);
    if (text === undefined) return undefined;
    try {
      return this.cache.get(text).statements.find((statement) => statement.declares?.name === name);
    } catch {
      return undefined;
    }
  }

  /** What EXECUTE name runs: the statement a PREPARE (or a protocol Parse) gave that name. */
  private prepared(context: DecisionContext, name: string): readonly StatementAnalysis[] | undefined {
    const text = context.prepared(name);
    if (text === undefined) return undefined;
    try {
      const statements = this.cache.get(text).statements;
      const prepare = statements.length === 1 ? statements[0]!.prepares : undefined;
      return prepare?.name === name ? [prepare.statement] : statements;
    } catch {
      return undefined;
    }
  }
}

interface Details {
  statements: readonly StatementAnalysis[] | undefined;
  verdict: Verdict | undefined;
}

/** A kept verdict. */
interface Kept {
  readonly judgement: Judgement;
  readonly outcome: Outcome;
  /** The catalog its mask plan was made with (undefined without masking). */
  readonly catalog: Catalog | undefined;
  /** It holds for now() in [from, until) (a time window was consulted: one UTC minute). */
  readonly from: number;
  readonly until: number;
  /** The matched rules with their reasons, made when first needed. */
  matched: readonly MatchedRule[] | undefined;
  /** The last decision made with it, when nothing in it was made for that call; its text and source. */
  sql: string | undefined;
  source: StatementSource | undefined;
  decision: Decision | undefined;
}

interface SessionKey {
  readonly identity: object;
  readonly target: object;
  readonly applicationName: string;
  readonly key: string;
}

const NOTHING_MATCHED: readonly MatchedRule[] = [];

/** What the engine reads of an Analysis once. */
interface Shape {
  readonly id: number;
  /** No SQL-level PREPARE or EXECUTE in it: what runs is what was analysed. */
  readonly keepable: boolean;
  readonly cursor: boolean;
  /** Some statement changes session state Warden follows (PREPARE, DEALLOCATE, SET search_path). */
  readonly effects: boolean;
  /** The verdict last used for it, and the rest of the key it was kept under. */
  lastSession: string | undefined;
  lastPath: readonly string[] | undefined;
  lastTexts: string | undefined;
  lastKept: Kept | undefined;
}

let shapeIds = 0;

function pathKey(path: readonly string[] | undefined): string {
  return path === undefined ? '-' : `${path.length}:${path.join('\u0000')}`;
}

const OBJECT_IDS = new WeakMap<object, number>();
let objects = 0;

function objectId(value: object): number {
  let id = OBJECT_IDS.get(value);
  if (id === undefined) {
    id = ++objects;
    OBJECT_IDS.set(value, id);
  }
  return id;
}

function isCursor(statement: StatementAnalysis): boolean {
  return statement.command === 'DeclareCursorStmt';
}

/** What a verdict comes to, apart from the statement's text: a refusal, or an allow and its limits. */
type Outcome =
  | { readonly action: 'deny'; readonly message: string; readonly hint: string }
  | {
      readonly action: 'allow';
      readonly maxRows: number | undefined;
      readonly limitRule: string;
      /** The masking of the result, made for each call (it follows the result's columns) and its session. */
      readonly masking?: (session: SessionInfo) => ResultTransform;
      /** Set when a rule holds it for approval: then it is allowed only once approved. */
      readonly review?: string;
    };

/** The outcome once masking has seen the statements: refused, or allowed with a mask plan. */
function maskedOutcome(
  outcome: Outcome,
  masking: Masking | undefined,
  statements: readonly StatementAnalysis[],
  context: DecisionContext,
): Outcome {
  if (outcome.action === 'deny' || masking === undefined) return outcome;
  const verdict = masking.verdict(statements, context.session, resolvedPath(context));
  if (verdict.kind === 'clear') return outcome;
  if (verdict.kind === 'deny') return { action: 'deny', message: verdict.message, hint: verdict.hint };
  const { plans } = verdict;
  return { ...outcome, masking: (session) => masking.transform(plans, session) };
}

/** A row cap and a mask together: rows the cap drops are not masked. */
function chain(first: ResultTransform | null, then: ResultTransform | null): ResultTransform | null {
  if (first === null || then === null) return first ?? then;
  return {
    message: (type, frame) => {
      const out = first.message(type, frame);
      return out.length === 0 ? out : then.message(type, out);
    },
  };
}

function outcomeOf(judgement: Judgement, context: DecisionContext, cursor: boolean): Outcome {
  const byRule = () => (judgement.rule === undefined ? 'by default' : `by rule "${judgement.rule}"`);
  if (judgement.action === 'deny') {
    return {
      action: 'deny',
      message: `Warden refused this statement ${byRule()}: ${judgement.message}`,
      hint: `To see why: warden policy explain --identity ${context.session.identity.name} --target ${context.session.target.name} "<your SQL>"`,
    };
  }
  const review =
    judgement.action === 'review' ? `approval required ${byRule()}: ${judgement.message}` : undefined;
  const { maxRows } = judgement.limits;
  if (maxRows !== undefined && cursor) {
    // FETCH would read the rows past the cap: a limited result is read in one statement.
    return {
      action: 'deny',
      message: `rule "${judgement.rule}" limits results to ${maxRows} rows, which a cursor would not keep`,
      hint: 'Run the query without DECLARE CURSOR; its first rows are returned.',
    };
  }
  return review === undefined
    ? { action: 'allow', maxRows, limitRule: judgement.rule ?? 'limit' }
    : { action: 'allow', maxRows, limitRule: judgement.rule ?? 'limit', review };
}

/** The Decision of one call: its own text, reasons and row limit (which counts rows). */
function decisionOf(
  context: DecisionContext,
  sql: string,
  judgement: Judgement,
  outcome: Outcome,
  matched: readonly MatchedRule[],
  effects: Effects | undefined,
  statements: readonly StatementAnalysis[],
  fingerprint: string,
): Decision {
  const decision: DecisionDraft = {
    identity: context.session.identity.name,
    target: context.session.target.name,
    source: context.source,
    sql,
  };
  if (judgement.rule !== undefined) decision.rule = judgement.rule;
  decision.matched = matched;
  decision.statements = statements;
  decision.fingerprint = fingerprint;
  if (outcome.action === 'deny') {
    decision.action = 'deny';
    decision.sqlstate = '42501';
    decision.message = outcome.message;
    decision.hint = outcome.hint;
    return decision as Deny;
  }
  decision.action = 'allow';
  decision.transform = chain(
    outcome.maxRows === undefined ? null : rowLimit(outcome.maxRows, outcome.limitRule),
    outcome.masking ? outcome.masking(context.session) : null,
  );
  if (effects) decision.effects = effects;
  const { statementTimeoutMs } = judgement.limits;
  if (statementTimeoutMs !== undefined) decision.statementTimeoutMs = statementTimeoutMs;
  if (outcome.review === undefined) return decision as Allow;
  const review: Review = {
    action: 'review',
    identity: decision.identity,
    target: decision.target,
    source: decision.source,
    sql,
    ...(decision.rule === undefined ? {} : { rule: decision.rule }),
    matched,
    statements,
    fingerprint,
    message: outcome.review,
    approved: decision as Allow,
  };
  return review;
}

/** A Decision being made, its fields in the order they have always been in. */
interface DecisionDraft {
  identity: string;
  target: string;
  source: StatementSource;
  sql: string | undefined;
  rule?: string;
  matched?: readonly MatchedRule[];
  statements?: readonly StatementAnalysis[];
  fingerprint?: string;
  action?: 'allow' | 'deny';
  sqlstate?: string;
  message?: string;
  hint?: string;
  transform?: ResultTransform | null;
  effects?: Effects;
  statementTimeoutMs?: number;
}

function verdictOf(judgement: Judgement, matched: readonly MatchedRule[]): Verdict {
  return {
    action: judgement.action,
    rule: judgement.rule,
    message: judgement.message,
    matched,
    limits: judgement.limits,
  };
}

function refused(
  context: DecisionContext,
  details: Omit<Deny, 'action' | 'identity' | 'target' | 'source' | 'sql'>,
): Deny {
  return {
    action: 'deny',
    identity: context.session.identity.name,
    target: context.session.target.name,
    source: context.source,
    sql: context.sql,
    ...details,
  };
}

/** The cache shares one analysis among texts of one shape: the text itself is this one's. */
function withText(statement: StatementAnalysis, sql: string): StatementAnalysis {
  return statement.text === sql ? statement : { ...statement, text: sql.trim() };
}

/** The text withText gives the statement. */
function textOf(statement: StatementAnalysis, sql: string): string {
  return statement.text === sql ? sql : sql.trim();
}

/** "$user" in search_path is the upstream role Warden logs in as. */
function resolvedPath(context: DecisionContext): readonly string[] | undefined {
  const path = context.searchPath ?? context.session.searchPath;
  return path?.map((schema) => (schema === '$user' ? context.session.target.user : schema));
}

function effectsOf(statements: readonly StatementAnalysis[]): Effects | undefined {
  let effects: { -readonly [K in keyof Effects]: Effects[K] } | undefined;
  for (const statement of statements) {
    if (statement.prepares) {
      effects ??= {};
      effects.prepared = [
        ...(effects.prepared ?? []),
        { name: statement.prepares.name, sql: statement.text },
      ];
    }
    if (statement.deallocates !== undefined) {
      effects ??= {};
      const previous = effects.deallocated;
      effects.deallocated =
        statement.deallocates === 'all' || previous === 'all'
          ? 'all'
          : [...(previous ?? []), statement.deallocates];
    }
    if (statement.setting === 'search_path') {
      effects ??= {};
      effects.searchPath = statement.settingValue ?? null;
    }
    if (statement.declares) {
      effects ??= {};
      const { name, holdable } = statement.declares;
      effects.declared = [...(effects.declared ?? []), { name, sql: statement.text, holdable }];
    }
    if (statement.closes !== undefined) {
      effects ??= {};
      const previous = effects.closed;
      effects.closed =
        statement.closes === 'all' || previous === 'all'
          ? 'all'
          : [...(previous ?? []), statement.closes.name];
    }
  }
  return effects;
}
