/**
 * Analysis is cached by statement text and search_path (which decides what
 * an unqualified name means), so a repeated shape costs no parse. Bounded:
 * the least recently used entry goes first. Syntax errors are cached too.
 */
import { type Analysis, analyse, SqlSyntaxError } from './analysis.ts';

export class AnalysisCache {
  private readonly entries = new Map<string, Analysis | SqlSyntaxError>();
  hits = 0;
  misses = 0;

  constructor(private readonly capacity = 10_000) {}

  /** The analysis of `sql` under `searchPath`; throws SqlSyntaxError for SQL the parser refuses. */
  get(sql: string, searchPath = ''): Analysis {
    const key = `${searchPath}\u0000${sql}`;
    let entry = this.entries.get(key);
    if (entry !== undefined) {
      this.hits++;
      // Re-insert: Map order is the recency order.
      this.entries.delete(key);
    } else {
      this.misses++;
      try {
        entry = analyse(sql);
      } catch (error) {
        if (!(error instanceof SqlSyntaxError)) throw error;
        entry = error;
      }
      if (this.entries.size >= this.capacity) this.entries.delete(this.entries.keys().next().value!);
    }
    this.entries.set(key, entry);
    if (entry instanceof SqlSyntaxError) throw entry;
    return entry;
  }

  get size(): number {
    return this.entries.size;
  }
}
