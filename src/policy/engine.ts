/**
 * The decision point with policy behind it: the SQL is analysed (cached by
 * shape), EXECUTE is resolved to what its prepared statement runs, the rules
 * are evaluated, and the verdict becomes the Decision the session enforces
 * and audit records. Anything that cannot be judged is refused (fail closed).
 */
import { type Analysis, SqlSyntaxError, type StatementAnalysis } from '../sql/analysis.ts';
import { AnalysisCache } from '../sql/cache.ts';
import type { Decide, Decision, DecisionContext, Deny, Effects } from './decision.ts';
import { rowLimit } from './limits.ts';
import { evaluate, type Policy, type Verdict } from './rules.ts';

export interface Explanation {
  /** The statements judged (an EXECUTE replaced by what it runs); undefined when the SQL could not be read. */
  readonly statements: readonly StatementAnalysis[] | undefined;
  readonly verdict: Verdict | undefined;
  readonly decision: Decision;
}

export class PolicyEngine {
  constructor(
    private policy: Policy,
    private readonly cache = new AnalysisCache(),
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Takes a reloaded policy; sessions see it from their next statement. */
  setPolicy(policy: Policy): void {
    this.policy = policy;
  }

  readonly decide: Decide = (context) => this.explain(context).decision;

  explain(context: DecisionContext): Explanation {
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
      analysis = this.cache.get(sql);
    } catch (error) {
      if (!(error instanceof SqlSyntaxError)) throw error;
      // Fail closed: what Warden cannot read is never forwarded.
      return refused(context, { sqlstate: '42601', message: error.message, position: error.position });
    }
    const statements: StatementAnalysis[] = [];
    // PREPAREs earlier in this batch: `PREPARE p AS ...; EXECUTE p` in one Query.
    const preparedHere = new Map<string, StatementAnalysis>();
    for (const statement of analysis.statements) {
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
    const verdict = evaluate(this.policy, {
      identity: context.session.identity,
      target: context.session.target,
      applicationName: context.session.applicationName,
      statements,
      now: this.now(),
      searchPath: resolvedPath(context),
    });
    const base = {
      identity: context.session.identity.name,
      target: context.session.target.name,
      source: context.source,
      sql,
      ...(verdict.rule !== undefined ? { rule: verdict.rule } : {}),
      matched: verdict.matched,
    };
    if (verdict.action === 'deny' || verdict.action === 'review') {
      const byRule = verdict.rule === undefined ? 'by default' : `by rule "${verdict.rule}"`;
      const decision: Deny =
        verdict.action === 'deny'
          ? {
              ...base,
              action: 'deny',
              sqlstate: '42501',
              message: `Warden refused this statement ${byRule}: ${verdict.message}`,
              hint: `To see why: warden policy explain --identity ${base.identity} --target ${base.target} "<your SQL>"`,
            }
          : {
              ...base,
              action: 'deny',
              sqlstate: '42501',
              message: `approval required ${byRule}: ${verdict.message}`,
              hint: 'Approvals are not available in this Warden yet: ask an administrator to run it, or to change the rule.',
            };
      return { statements, verdict, decision };
    }
    const { maxRows, statementTimeoutMs } = verdict.limits;
    if (maxRows !== undefined && statements.some((s) => s.command === 'DeclareCursorStmt')) {
      // FETCH would read the rows past the cap: a limited result is read in one statement.
      return {
        statements,
        verdict,
        decision: {
          ...base,
          action: 'deny',
          sqlstate: '42501',
          message: `rule "${verdict.rule}" limits results to ${maxRows} rows, which a cursor would not keep`,
          hint: 'Run the query without DECLARE CURSOR; its first rows are returned.',
        },
      };
    }
    const effects = context.source === 'bind' ? undefined : effectsOf(statements);
    return {
      statements,
      verdict,
      decision: {
        ...base,
        action: 'allow',
        transform: maxRows === undefined ? null : rowLimit(maxRows, verdict.rule ?? 'limit'),
        ...(effects ? { effects } : {}),
        ...(statementTimeoutMs !== undefined ? { statementTimeoutMs } : {}),
      },
    };
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

function refused(
  context: DecisionContext,
  details: Omit<Deny, 'action' | 'identity' | 'target' | 'source' | 'sql'>,
): Explanation {
  return {
    statements: undefined,
    verdict: undefined,
    decision: {
      action: 'deny',
      identity: context.session.identity.name,
      target: context.session.target.name,
      source: context.source,
      sql: context.sql,
      ...details,
    },
  };
}

/** The cache shares one analysis among texts of one shape: the text itself is this one's. */
function withText(statement: StatementAnalysis, sql: string): StatementAnalysis {
  return statement.text === sql ? statement : { ...statement, text: sql.trim() };
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
  }
  return effects;
}
