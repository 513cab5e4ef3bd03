/**
 * Statement templates. Most of a statement event repeats across the
 * statement's executions: its redacted text, sqlcommenter tags,
 * fingerprint, kinds, tables, where it came from, who ran it where (identity,
 * target, pipeline, application name) and how Warden judged it. That part
 * is stored once, as a template: its canonical JSON, keyed by the SHA-256 of
 * that JSON. Each execution's body names its template by that hash and
 * holds the rest: when, in which session, how it went.
 *
 * The chain still covers every field: an event's hash covers its body, the
 * body the template's hash, and that hash the template's content. So
 * verifying checks, besides the chain, that each template still hashes to
 * the key its events name (src/audit/chain.ts).
 *
 * Events stored before templates existed keep their whole body; readers
 * see both kinds alike through `eventOf`.
 */
import { hash } from 'node:crypto';
import type { AuditRecord } from '../store/audit.ts';
import { canonicalJson, type StatementEvent, type TableAccess } from './events.ts';

/** The fields of a statement event that its template holds, in canonical (sorted) order. */
export const TEMPLATE_FIELDS = [
  'applicationName',
  'decision',
  'fingerprint',
  'identity',
  'kinds',
  'matched',
  'pipeline',
  'rule',
  'source',
  'tables',
  'tags',
  'target',
  'text',
] as const;

export type TemplateField = (typeof TEMPLATE_FIELDS)[number];
export type TemplateFields = Pick<StatementEvent, TemplateField>;

export interface StatementTemplate {
  /** SHA-256 of `body`, hex: what event bodies name it by. */
  readonly hash: string;
  /** Canonical JSON of its fields. */
  readonly body: string;
  /** The tables it touches, each name once, in order: what a search by table reads. */
  readonly tables: readonly string[];
}

export function templateOf(fields: TemplateFields): StatementTemplate {
  const template: Record<string, unknown> = {};
  for (const field of TEMPLATE_FIELDS) template[field] = fields[field];
  const body = canonicalJson(template);
  return { hash: templateHash(body), body, tables: tableNames(fields.tables) };
}

export function templateHash(body: string): string {
  return hash('sha256', body);
}

/** Each table name once, in the order the statement names them. */
export function tableNames(tables: readonly TableAccess[]): string[] {
  if (tables.length === 1) return [tables[0]!.table];
  return [...new Set(tables.map((t) => t.table))];
}

/**
 * The JSON text of each field of a statement's own part, as its body
 * writes them; `template` is the template's hash (unquoted).
 */
export interface StatementJson {
  at: string;
  chain: string;
  durationMs: string;
  masked: string;
  maskedRows: string;
  outcome: string;
  rows: string;
  seq: string;
  session: string;
  sqlstate: string;
  template: string;
}

/**
 * The canonical JSON of a templated statement event in its chain. Written
 * field by field (keys in sorted order): it is the audit worker's hottest
 * string, and every writer of statement bodies goes through here.
 */
export function statementBody(j: StatementJson): string {
  return (
    `{"at":${j.at},"chain":${j.chain},"durationMs":${j.durationMs},"masked":${j.masked}` +
    `,"maskedRows":${j.maskedRows},"outcome":${j.outcome},"rows":${j.rows},"seq":${j.seq}` +
    `,"session":${j.session},"sqlstate":${j.sqlstate},"template":"${j.template}","type":"statement"}`
  );
}

/** A number as JSON writes it (null for NaN and infinities). */
export function numberJson(value: number): string {
  return Number.isFinite(value) ? String(value) : 'null';
}

/** The body fields of a statement event, JSON-encoded one by one: the slow, general path to statementBody. */
export function statementJson(
  event: StatementEvent,
  chain: string,
  seq: number,
  template: StatementTemplate,
): StatementJson {
  const text = JSON.stringify;
  return {
    at: text(event.at),
    chain: text(chain),
    durationMs: numberJson(event.durationMs),
    masked: canonicalJson(event.masked),
    maskedRows: numberJson(event.maskedRows),
    outcome: text(event.outcome),
    rows: numberJson(event.rows),
    seq: String(seq),
    session: text(event.session),
    sqlstate: text(event.sqlstate),
    template: template.hash,
  };
}

/**
 * A record's event as readers want it: its body with its template's fields
 * filled in (`template`, the hash, stays). undefined when the body is not a
 * JSON object; a template that is missing or unreadable leaves its fields out
 * (verify says what is wrong).
 */
export function eventOf(record: AuditRecord): Record<string, unknown> | undefined {
  const body = jsonObject(record.body);
  if (body === undefined || typeof body.template !== 'string' || record.template === undefined) return body;
  const template = jsonObject(record.template.body);
  return template === undefined ? body : { ...template, ...body };
}

export function jsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(text) as unknown;
    return value !== null && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
