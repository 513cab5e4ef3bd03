/**
 * The audit worker's side of src/audit/wire.ts: reads posted batches and
 * adds their events to the chain. A statement becomes its event here, as
 * statementEvent (src/audit/statement.ts) would make it, without making it:
 * its template is looked up by its decision, session, redacted text and
 * comments (which are all a template is made of), and its body written
 * from a few JSON pieces. test/audit/wire.test.ts holds the two paths to
 * the same bytes.
 */
import { commentsOf, sqlcommenterTags } from '../policy/rules.ts';
import type { TableAccess } from './events.ts';
import type { ChainAppender } from './records.ts';
import { PIPELINE_TAG, redacted, type StatementRun } from './statement.ts';
import {
  numberJson,
  type StatementJson,
  type StatementTemplate,
  statementBody,
  templateOf,
} from './templates.ts';
import { EVENT, OUTCOMES, type SessionKnown, SLOT, WIDTH, type WireBatch } from './wire.ts';

/** Its id also keys its templates. */
interface SessionContext extends SessionKnown {
  /** The session's tag, as JSON. */
  readonly json: string;
}

interface DecisionContext {
  readonly source: string;
  readonly fingerprint: string | null;
  readonly kinds: StatementRun['kinds'];
  readonly tables: readonly TableAccess[];
  readonly decision: StatementRun['decision'];
  readonly rule: string | null;
  readonly matched: StatementRun['matched'];
  /** Its templates, by session id, redacted text (null for none), then the text's comments. */
  readonly templates: Map<number, Map<string | null, Map<string, TemplateUse>>>;
}

interface ValueContext {
  readonly value: string | readonly string[];
  readonly json: string;
}

/** A template, and the pipeline its statements are searched by. */
interface TemplateUse {
  readonly template: StatementTemplate;
  readonly pipeline: string | null;
}

type Entry = SessionContext | DecisionContext | ValueContext;

function cached<K, V>(map: Map<K, V>, key: K, make: () => V): V {
  let value = map.get(key);
  if (value === undefined) {
    value = make();
    map.set(key, value);
  }
  return value;
}

/** Templates remembered before the memory starts over (each batch's are found again as needed). */
const TEMPLATES_KEPT = 20_000;
const NO_MASKED: readonly string[] = [];
const OUTCOME_JSON = OUTCOMES.map((outcome) => JSON.stringify(outcome));

export class Inbox {
  /** Dictionary entries, by id. */
  private entries: Entry[] = [];
  private templatesKept = 0;
  private lastAt = { ms: Number.NaN, iso: '', json: '' };
  /** Filled in per statement: statementBody's argument, made once. */
  private readonly json: StatementJson;

  constructor(
    private readonly chain: ChainAppender,
    private readonly redact: boolean,
  ) {
    this.json = {
      at: '',
      chain: chain.chainJson,
      durationMs: '',
      masked: '',
      maskedRows: '',
      outcome: '',
      rows: '',
      seq: '',
      session: '',
      sqlstate: '',
      template: '',
    };
  }

  /** Adds a batch's events to the chain, in order. */
  read(batch: WireBatch): void {
    this.learn(batch);
    const { numbers, events } = batch;
    let event = 0;
    let text = 0;
    for (let at = 0; at < batch.count * WIDTH; at += WIDTH) {
      if (numbers[at + SLOT.kind] === EVENT) {
        this.chain.add(events[event++]!);
        continue;
      }
      const length = numbers[at + SLOT.sqlLength]!;
      let sql: string | null = null;
      if (length >= 0) {
        sql = batch.texts.slice(text, text + length);
        text += length;
      }
      this.addStatement(numbers, at, sql);
    }
  }

  private addStatement(n: Float64Array, at: number, sql: string | null): void {
    const session = this.entries[n[at + SLOT.session]!] as SessionContext;
    const decision = this.entries[n[at + SLOT.decision]!] as DecisionContext;
    const use = this.templateOf(decision, session, sql);
    const time = this.timeOf(n[at + SLOT.atMs]!);
    const sqlstate = n[at + SLOT.sqlstate]!;
    const masked = n[at + SLOT.masked]!;
    const outcome = OUTCOMES[n[at + SLOT.outcome]!]!;
    const rows = n[at + SLOT.rows]!;

    const { json } = this;
    json.at = time.json;
    json.durationMs = numberJson(n[at + SLOT.durationMs]!);
    json.masked = masked === 0 ? '[]' : (this.entries[masked] as ValueContext).json;
    json.maskedRows = numberJson(n[at + SLOT.maskedRows]!);
    json.outcome = OUTCOME_JSON[n[at + SLOT.outcome]!]!;
    json.rows = numberJson(rows);
    json.seq = String(this.chain.seq + 1);
    json.session = session.json;
    json.sqlstate = sqlstate === 0 ? 'null' : (this.entries[sqlstate] as ValueContext).json;
    json.template = use.template.hash;
    this.chain.addStatement(
      statementBody(json),
      {
        at: time.iso,
        identity: session.identity,
        pipeline: use.pipeline,
        target: session.target,
        template: use.template,
        tables: decision.tables,
        rows,
        masked:
          masked === 0 ? NO_MASKED : ((this.entries[masked] as ValueContext).value as readonly string[]),
      },
      decision.decision === 'allow' && outcome !== 'not-run',
    );
  }

  /** The template of a statement of this decision, session and text, with the fields statementEvent gives it. */
  private templateOf(decision: DecisionContext, session: SessionContext, sql: string | null): TemplateUse {
    if (this.templatesKept >= TEMPLATES_KEPT) this.forgetTemplates();
    const text = sql === null ? null : this.redact ? (redacted(sql) ?? null) : sql;
    // sqlcommenter tags are read from the whole text, literals included: the comments decide them.
    const comments = sql === null ? '' : commentsOf(sql);
    const byText = cached(decision.templates, session.id, () => new Map());
    const byComments = cached(byText, text, () => new Map<string, TemplateUse>());
    const known = byComments.get(comments);
    if (known !== undefined) return known;
    const tags = sql?.includes('/*') ? Object.fromEntries(sqlcommenterTags(sql)) : {};
    const tagged = tags[PIPELINE_TAG];
    const pipeline = !session.fixed && tagged ? tagged : session.pipeline;
    const template = templateOf({
      applicationName: session.applicationName,
      decision: decision.decision,
      fingerprint: decision.fingerprint,
      identity: session.identity,
      kinds: decision.kinds,
      matched: decision.matched,
      pipeline,
      rule: decision.rule,
      source: decision.source,
      tables: decision.tables,
      tags,
      target: session.target,
      text,
    });
    const use = { template, pipeline };
    byComments.set(comments, use);
    this.templatesKept++;
    return use;
  }

  private forgetTemplates(): void {
    for (const entry of this.entries)
      if (entry !== undefined && 'templates' in entry) entry.templates.clear();
    this.templatesKept = 0;
  }

  /** ISO time (and as JSON) of ms since the epoch; a batch's statements often share their millisecond. */
  private timeOf(ms: number): { iso: string; json: string } {
    if (ms !== this.lastAt.ms) {
      const iso = new Date(ms).toISOString();
      this.lastAt = { ms, iso, json: `"${iso}"` };
    }
    return this.lastAt;
  }

  /** Takes in the batch's new dictionary entries (after forgetting all, if it starts over). */
  private learn(batch: WireBatch): void {
    if (batch.reset) {
      this.entries = [];
      this.templatesKept = 0;
    }
    const text = JSON.stringify;
    for (const [id, tag, identity, target, pipeline, fixed, applicationName] of batch.sessions) {
      this.entries[id] = { id, identity, target, pipeline, fixed, applicationName, json: text(tag) };
    }
    for (const [id, source, fingerprint, kinds, tables, decision, rule, matched] of batch.decisions) {
      this.entries[id] = {
        source,
        fingerprint,
        kinds,
        tables,
        decision,
        rule,
        matched,
        templates: new Map(),
      };
    }
    for (const [id, value] of batch.values) this.entries[id] = { value, json: text(value) };
  }
}
