/**
 * `warden policy explain` and `warden policy test`: the decision a statement
 * would get, computed by the same PolicyEngine the proxy runs, without a
 * database. Explain shows the reasoning; test turns a file of expected
 * decisions into a check a policy change must pass.
 */

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Document } from 'yaml';
import { sessionPipeline } from '../audit/statement.ts';
import { type ConfigIssue, displayPath } from '../config/errors.ts';
import { type IdentityConfig, loadConfig, type TargetConfig, type WardenConfig } from '../config/index.ts';
import { actionSchema, GUARDRAIL_NAMES } from '../config/schema.ts';
import { formatPath, parseSource, positionOf, type Source } from '../config/source.ts';
import { mayConnect } from '../identity/access.ts';
import type { MatchedRule } from '../policy/decision.ts';
import { type Explanation, PolicyEngine } from '../policy/engine.ts';
import type { Action } from '../policy/rules.ts';
import { loadParser, type StatementAnalysis } from '../sql/analysis.ts';
import { UsageError } from './errors.ts';

const out = (text = '') => process.stdout.write(`${text}\n`);
const err = (text: string) => process.stderr.write(`${text}\n`);

const ACTIONS: readonly Action[] = actionSchema.options;

export interface ExplainOptions {
  readonly config: string;
  readonly identity: string;
  readonly target: string;
  readonly applicationName?: string;
  readonly json?: boolean;
}

export async function policyExplainCommand(sql: string, options: ExplainOptions): Promise<void> {
  const config = await loadConfig(options.config);
  for (const warning of config.warnings) err(`warning: ${warning}`);
  const identity = findIdentity(config, options.identity, options.config);
  const target = findTarget(config, options.target, options.config);
  const applicationName = options.applicationName ?? '';
  await loadParser();
  const explanation = judge(new PolicyEngine(config.policy), { identity, target, applicationName, sql });
  if (options.json) {
    out(JSON.stringify(explanationJson(explanation), null, 2));
    return;
  }
  out(explanationText(explanation, { identity, target, applicationName }));
}

export interface TestSummary {
  readonly passed: number;
  readonly failed: number;
}

/** Runs every case and prints one line each and a summary; the caller turns failures into exit code 1. */
export async function policyTestCommand(
  casesFile: string,
  options: { config: string },
): Promise<TestSummary> {
  const config = await loadConfig(options.config);
  for (const warning of config.warnings) err(`warning: ${warning}`);
  const cases = await loadCases(casesFile, config);
  await loadParser();
  const engine = new PolicyEngine(config.policy);
  let failed = 0;
  for (const testCase of cases) {
    const explanation = judge(engine, testCase);
    const got = outcomeOf(explanation);
    const passed =
      got.action === testCase.expect && (testCase.rule === undefined || got.rule === testCase.rule);
    const label = `${testCase.name} (${displayPath(casesFile)}:${testCase.line})`;
    if (passed) {
      out(`ok    ${label}`);
      continue;
    }
    failed++;
    const expected = testCase.rule === undefined ? testCase.expect : `${testCase.expect} by ${testCase.rule}`;
    out(`FAIL  ${label}`);
    out(`      expected ${expected}, got ${got.action} by ${got.rule ?? 'default'}: ${got.message}`);
  }
  const passed = cases.length - failed;
  out();
  out(
    `${cases.length} ${cases.length === 1 ? 'case' : 'cases'}: ${passed} passed, ${failed} failed${failed === 0 ? '' : ` (${displayPath(casesFile)})`}`,
  );
  return { passed, failed };
}

interface Judged {
  readonly identity: IdentityConfig;
  readonly target: TargetConfig;
  readonly applicationName: string;
  readonly sql: string;
}

/** The context a fresh session would give the engine: no prepared statements, startup search_path. */
function judge(engine: PolicyEngine, input: Judged): Explanation {
  return engine.explain({
    session: {
      id: 0,
      identity: input.identity,
      target: input.target,
      clientAddress: 'cli',
      tls: false,
      applicationName: input.applicationName,
      pipeline: sessionPipeline(undefined, input.applicationName),
      pipelineFixed: false,
      tag: 'cli/0',
    },
    source: 'query',
    sql: input.sql,
    prepared: () => undefined,
  });
}

/**
 * What a case compares: the verdict's action, which keeps review apart from
 * deny (both reach the client as a denial). SQL that cannot be judged has no
 * verdict and is refused.
 */
function outcomeOf(explanation: Explanation): { action: Action; rule: string | undefined; message: string } {
  const { verdict, decision } = explanation;
  if (verdict !== undefined) return { action: verdict.action, rule: verdict.rule, message: verdict.message };
  return {
    action: decision.action,
    rule: decision.rule,
    message: decision.action === 'deny' ? decision.message : 'allowed',
  };
}

function findIdentity(config: WardenConfig, name: string, file: string): IdentityConfig {
  const identity = config.identities.find((candidate) => candidate.name === name);
  if (identity !== undefined) return identity;
  const known = config.identities.map((candidate) => candidate.name).join(', ') || 'none';
  throw new UsageError(
    `no identity "${name}" in ${file} (known: ${known}); pass one of them to --identity, or add it under identities:`,
  );
}

function findTarget(config: WardenConfig, name: string, file: string): TargetConfig {
  const target = config.targets.find((candidate) => candidate.name === name);
  if (target !== undefined) return target;
  const known = config.targets.map((candidate) => candidate.name).join(', ') || 'none';
  throw new UsageError(
    `no target "${name}" in ${file} (known: ${known}); pass one of them to --target, or add it under targets:`,
  );
}

// ---- explain output ----

const field = (label: string, value: string, indent = 2) =>
  `${' '.repeat(indent)}${label.padEnd(10)} ${value.replaceAll('\n', `\n${' '.repeat(indent + 11)}`)}`;

const listOr = (items: readonly string[], none = 'none') => (items.length === 0 ? none : items.join(', '));

function explanationText(
  explanation: Explanation,
  session: { identity: IdentityConfig; target: TargetConfig; applicationName: string },
): string {
  const { identity, target, applicationName } = session;
  const lines: string[] = [
    field('identity', `${identity.name} (${identity.kind}; groups: ${listOr(identity.groups)})`, 0),
    field('target', target.name, 0),
    field('app name', applicationName === '' ? '(none)' : applicationName, 0),
  ];
  if (!mayConnect(identity, target)) {
    lines.push(
      `note: ${identity.name} may not connect to ${target.name} at all (targets[].access): Warden refuses the connection before any statement`,
    );
  }
  const { statements, verdict, decision } = explanation;
  lines.push('');
  if (statements === undefined) {
    lines.push('statements: not analysed (the SQL cannot be judged, see the decision)');
  } else {
    statements.forEach((statement, index) => {
      lines.push(`statement ${index + 1} of ${statements.length}`, ...statementText(statement), '');
    });
    if (statements.length === 0) lines.push('statements: none (empty query)', '');
  }
  const matched = verdict?.matched ?? [];
  if (matched.length === 0) lines.push('matched rules: none');
  else lines.push('matched rules', ...matched.flatMap(matchedText));
  lines.push('');
  if (decision.action === 'review') {
    lines.push(
      field('decision', 'review (held for approval; refused unless approved)', 0),
      field('verdict', verdict?.action ?? 'review'),
      field('rule', verdict?.rule ?? 'none (default)'),
      field('message', decision.message),
    );
  } else if (decision.action === 'deny') {
    lines.push(
      field('decision', 'deny', 0),
      ...(verdict === undefined
        ? [field('rule', 'none (refused before the rules: Warden cannot judge this SQL)')]
        : [field('verdict', verdict.action), field('rule', verdict.rule ?? 'none (default)')]),
      field('message', decision.message),
      field('sqlstate', decision.sqlstate),
    );
    if (decision.position !== undefined) lines.push(field('position', String(decision.position)));
  } else {
    const limits = verdict === undefined ? [] : limitsText(verdict.limits);
    lines.push(
      field('decision', limits.length === 0 ? 'allow' : `allow (${limits.join(', ')})`, 0),
      ...(verdict === undefined
        ? []
        : [
            field('verdict', verdict.action),
            field('rule', verdict.rule ?? 'none (default)'),
            field('message', verdict.message),
          ]),
    );
  }
  return lines.join('\n');
}

function statementText(statement: StatementAnalysis): string[] {
  const tables = statement.tables.map(
    (table) => `${table.schema === undefined ? '' : `${table.schema}.`}${table.name} (${table.access})`,
  );
  const columns = Object.entries(statement.columns)
    .filter(([, names]) => names.length > 0)
    .map(([clause, names]) => `${clause}: ${names.join(', ')}`);
  return [
    field('sql', statement.text),
    field('kind', `${statement.kind} (${statement.command})`),
    field('tables', listOr(tables)),
    field('columns', columns.length === 0 ? 'none' : columns.join('; ')),
    field('functions', listOr(statement.functions)),
    field('hazards', listOr(statement.hazards)),
    field('hasWhere', statement.hasWhere ? 'yes' : 'no'),
  ];
}

function matchedText(match: MatchedRule): string[] {
  return [
    `  ${match.rule}: ${match.action}`,
    field('reason', match.reason, 4),
    ...(match.message === undefined ? [] : [field('message', match.message, 4)]),
  ];
}

function limitsText(limits: { maxRows?: number; statementTimeoutMs?: number }): string[] {
  return [
    ...(limits.maxRows === undefined ? [] : [`rows capped at ${limits.maxRows}`]),
    ...(limits.statementTimeoutMs === undefined ? [] : [`statement timeout ${limits.statementTimeoutMs} ms`]),
  ];
}

/** Plain data only: the Decision's result transform is code, so the JSON names the limits instead. */
function explanationJson(explanation: Explanation): unknown {
  const { statements, verdict, decision } = explanation;
  const common = {
    verdict: verdict?.action ?? null,
    rule: decision.rule ?? null,
  };
  return {
    statements: statements ?? null,
    matched: verdict?.matched ?? [],
    decision:
      decision.action === 'review'
        ? { action: 'review', ...common, message: decision.message }
        : decision.action === 'deny'
          ? {
              action: 'deny',
              ...common,
              message: decision.message,
              sqlstate: decision.sqlstate,
              ...(decision.hint === undefined ? {} : { hint: decision.hint }),
              ...(decision.position === undefined ? {} : { position: decision.position }),
            }
          : {
              action: 'allow',
              ...common,
              message: verdict?.message ?? null,
              ...(verdict?.limits.maxRows === undefined ? {} : { maxRows: verdict.limits.maxRows }),
              ...(decision.statementTimeoutMs === undefined
                ? {}
                : { statementTimeoutMs: decision.statementTimeoutMs }),
            },
  };
}

// ---- the cases file ----

interface TestCase extends Judged {
  readonly name: string;
  readonly expect: Action;
  readonly rule: string | undefined;
  /** Where the case starts in the cases file. */
  readonly line: number;
}

const CASE_KEYS = ['name', 'identity', 'target', 'sql', 'expect', 'rule', 'applicationName'] as const;
const CASE_EXAMPLE = '- { identity: agent, target: shop, sql: SELECT 1, expect: allow }';

/** Reads and checks the whole cases file; every problem is reported with its line and a fix (exit 2). */
async function loadCases(file: string, config: WardenConfig): Promise<TestCase[]> {
  const absolute = path.resolve(file);
  const text = await readFile(absolute, 'utf8').catch((error: NodeJS.ErrnoException) => {
    const why = error.code === 'ENOENT' ? 'no such file' : error.message;
    throw new UsageError(`cannot read the cases file ${file}: ${why}; pass the path of a YAML file of cases`);
  });
  const { source, issues: syntaxIssues } = parseSource(text, absolute);
  if (syntaxIssues.length > 0) throw casesError(syntaxIssues);
  const data = toData(source.document);
  if (data === undefined) {
    throw casesError([
      issue(source, [], 'cannot read the YAML (aliases nested too deep)', 'write the values out'),
    ]);
  }
  const issues: ConfigIssue[] = [];
  const cases: TestCase[] = [];
  if (!isRecord(data) || !('cases' in data)) {
    issues.push(
      issue(
        source,
        [],
        'expected a mapping with the key cases',
        `start the file with cases: and ${CASE_EXAMPLE}`,
      ),
    );
  } else {
    for (const key of Object.keys(data)) {
      if (key !== 'cases') {
        issues.push(
          issue(source, [key], `unknown key "${key}"`, 'remove it; the file has only cases:', 'key'),
        );
      }
    }
    const list = data.cases;
    if (!Array.isArray(list) || list.length === 0) {
      issues.push(
        issue(
          source,
          ['cases'],
          `expected a list of cases, got ${describe(list)}`,
          `write the cases below it, one per line, such as ${CASE_EXAMPLE}`,
        ),
      );
    } else {
      list.forEach((item: unknown, index) => {
        const testCase = checkCase(source, config, item, ['cases', index], issues);
        if (testCase !== undefined) cases.push(testCase);
      });
    }
  }
  if (issues.length > 0) throw casesError(issues);
  return cases;
}

function checkCase(
  source: Source,
  config: WardenConfig,
  item: unknown,
  at: readonly (string | number)[],
  issues: ConfigIssue[],
): TestCase | undefined {
  if (!isRecord(item)) {
    issues.push(
      issue(
        source,
        at,
        `expected a case (a mapping), got ${describe(item)}`,
        `write a case such as ${CASE_EXAMPLE}`,
      ),
    );
    return undefined;
  }
  const before = issues.length;
  for (const key of Object.keys(item)) {
    if (!(CASE_KEYS as readonly string[]).includes(key)) {
      issues.push(
        issue(
          source,
          [...at, key],
          `unknown key "${key}"`,
          `remove it; the keys of a case are ${CASE_KEYS.join(', ')}`,
          'key',
        ),
      );
    }
  }
  const text = (key: (typeof CASE_KEYS)[number], required: boolean, example: string): string | undefined => {
    const value = item[key];
    if (value === undefined) {
      if (required) issues.push(issue(source, [...at, key], `missing "${key}"`, `add ${key}: ${example}`));
      return undefined;
    }
    if (typeof value === 'string' && value.trim() !== '') return value;
    issues.push(
      issue(
        source,
        [...at, key],
        `expected ${key === 'sql' ? 'SQL text' : 'a string'}, got ${describe(value)}`,
        typeof value === 'number' || typeof value === 'boolean'
          ? `quote the value: ${key}: "${String(value)}"`
          : `write ${key}: ${example}`,
      ),
    );
    return undefined;
  };
  const identityNames = config.identities.map((identity) => identity.name);
  const targetNames = config.targets.map((target) => target.name);
  const name = text('name', false, 'agents cannot delete');
  const identityName = text('identity', true, identityNames[0] ?? 'alice');
  const targetName = text('target', true, targetNames[0] ?? 'shop');
  const sql = text('sql', true, 'SELECT 1');
  const expect = text('expect', true, 'deny');
  const rule = text('rule', false, 'guardrail:write-without-where');
  const applicationName = text('applicationName', false, 'psql');

  const identity = config.identities.find((candidate) => candidate.name === identityName);
  if (identityName !== undefined && identity === undefined) {
    issues.push(
      issue(
        source,
        [...at, 'identity'],
        `unknown identity "${identityName}"`,
        `write one of: ${listOr(identityNames)} (the identities in ${displayPath(config.file)})`,
      ),
    );
  }
  const target = config.targets.find((candidate) => candidate.name === targetName);
  if (targetName !== undefined && target === undefined) {
    issues.push(
      issue(
        source,
        [...at, 'target'],
        `unknown target "${targetName}"`,
        `write one of: ${listOr(targetNames)} (the targets in ${displayPath(config.file)})`,
      ),
    );
  }
  if (expect !== undefined && !(ACTIONS as readonly string[]).includes(expect)) {
    issues.push(
      issue(
        source,
        [...at, 'expect'],
        `expected one of ${ACTIONS.join(', ')}, got ${JSON.stringify(expect)}`,
        `write one of: ${ACTIONS.join(', ')}`,
      ),
    );
  }
  const ruleNames = [
    ...GUARDRAIL_NAMES.map((guardrail) => `guardrail:${guardrail}`),
    ...config.policy.rules.map((candidate) => candidate.name),
  ];
  if (rule !== undefined && !ruleNames.includes(rule)) {
    issues.push(
      issue(
        source,
        [...at, 'rule'],
        `unknown rule "${rule}": no rule in ${displayPath(config.file)} and no guardrail has this name`,
        `write one of: ${ruleNames.join(', ')}`,
      ),
    );
  }
  if (issues.length > before) return undefined;
  return {
    name: name ?? `${identityName} on ${targetName}: ${clip(sql!)}`,
    identity: identity!,
    target: target!,
    sql: sql!,
    applicationName: applicationName ?? '',
    expect: expect as Action,
    rule,
    line: positionOf(source, at).line,
  };
}

function toData(document: Document): unknown {
  try {
    return document.toJS({ maxAliasCount: 100 }) ?? null;
  } catch {
    // Aliases that expand without bound stop here.
    return undefined;
  }
}

function issue(
  source: Source,
  at: readonly (string | number)[],
  message: string,
  fix: string,
  where: 'value' | 'key' = 'value',
): ConfigIssue {
  // A key that is not in the file (a missing "expect") points at the case it belongs in.
  return { file: source.file, ...positionOf(source, at, where), path: formatPath(at), message, fix };
}

/** Same shape as config errors: `cases.yaml:4:13 cases[0].expect: …\n  fix: …`, one block per problem. */
function casesError(issues: readonly ConfigIssue[]): UsageError {
  const sorted = [...issues].sort((a, b) => a.line - b.line || a.column - b.column);
  const file = displayPath(sorted[0]?.file ?? '');
  return new UsageError(
    `the cases file ${file} is not valid; nothing was run:\n${sorted
      .map((problem) => {
        const what = problem.path === '' ? problem.message : `${problem.path}: ${problem.message}`;
        return `${displayPath(problem.file)}:${problem.line}:${problem.column} ${what}\n  fix: ${problem.fix}`;
      })
      .join('\n')}`,
  );
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return 'an empty value';
  if (Array.isArray(value)) return value.length === 0 ? 'an empty list' : 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string')
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  return `a ${typeof value} (${String(value)})`;
}

function clip(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 60 ? `${line.slice(0, 57)}...` : line;
}
