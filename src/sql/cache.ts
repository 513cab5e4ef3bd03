/**
 * Analysis is cached by the shape of the text (literals replaced, see
 * shape.ts), so a repeated shape costs no parse however its constants
 * change. SET (whose value Warden tracks) and multi-statement batches are
 * cached by their exact text instead. Bounded (see Generations): the least
 * recently used entries go first. Syntax errors are cached too.
 */
import { type Analysis, analyse, SqlSyntaxError } from './analysis.ts';
import { Generations } from './generations.ts';
import { shapeOf } from './shape.ts';

type Entry = Analysis | SqlSyntaxError | typeof BY_TEXT;
/** Marks a shape whose texts must each be analysed on their own. */
const BY_TEXT = Symbol('by exact text');

export class AnalysisCache {
  private readonly entries: Generations<Entry>;
  hits = 0;
  misses = 0;

  /** Keeps between `capacity / 2` and `capacity` entries. */
  constructor(capacity = 10_000) {
    this.entries = new Generations(Math.max(1, Math.ceil(capacity / 2)));
  }

  /** The analysis of `sql`; throws SqlSyntaxError for SQL the parser refuses. */
  get(sql: string): Analysis {
    const shape = shapeOf(sql);
    let key = shape === undefined ? `=${sql}` : `~${shape}`;
    let entry = this.entries.get(key);
    if (entry === BY_TEXT) {
      key = `=${sql}`;
      entry = this.entries.get(key);
    }
    if (entry === undefined) {
      this.misses++;
      try {
        entry = analyse(sql);
      } catch (error) {
        if (!(error instanceof SqlSyntaxError)) throw error;
        // A syntax error's message and position come from this text: keep it by text.
        entry = error;
      }
      if (shape !== undefined && (entry instanceof SqlSyntaxError || readsLiterals(entry))) {
        this.entries.set(key, BY_TEXT);
        key = `=${sql}`;
      }
      this.entries.set(key, entry);
    } else {
      this.hits++;
    }
    if (entry instanceof SqlSyntaxError) throw entry;
    return entry as Analysis;
  }

  get size(): number {
    return this.entries.size;
  }
}

/**
 * SET (Warden reads its value), COPY (masking reads its rows by the options'
 * literals) and batches of several statements (each
 * statement's own text is sliced from the input, and rules may read it) are
 * analysed per exact text.
 */
function readsLiterals(analysis: Analysis): boolean {
  return (
    analysis.statements.length > 1 ||
    // SET's value; COPY's options (a delimiter or NULL marker is a literal, and masking reads rows by it).
    analysis.statements.some(
      (statement) => statement.setting !== undefined || statement.command === 'CopyStmt',
    )
  );
}
