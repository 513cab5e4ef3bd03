/**
 * Masking on the wire: a result transform that reads each RowDescription,
 * decides per column (plan.ts) and rewrites the private values of every
 * DataRow as it streams by, one row at a time, lengths recomputed. Rows of
 * a result with no private column pass untouched. A batch's statements each
 * have their own plan: the next one starts after each CommandComplete.
 *
 * A driver that Executes a statement it described earlier gets no
 * RowDescription in the response: the session hands over the one it kept for
 * the statement. When it kept none, the column types are not known here:
 * private values are then sent as NULL, valid for any type.
 *
 * COPY ... TO STDOUT answers with a CopyOutResponse and one CopyData per
 * row instead: the statement's plan says the format and the columns, and
 * copy.ts rewrites each row in that format.
 */
import type { ResultTransform } from '../policy/decision.ts';
import { parseCopyResponse } from '../protocol/postgres/copy.ts';
import type { FieldDescription } from '../protocol/postgres/messages.ts';
import { Code } from '../protocol/postgres/messages.ts';
import { parseRowDescription } from '../protocol/postgres/query.ts';
import { Reader } from '../protocol/postgres/reader.ts';
import { type CopyRows, copyRows } from './copy.ts';
import type { MaskMemos } from './memo.ts';
import type { Masked, StatementPlan } from './plan.ts';
import { maskAt, type Rewrite, rewriteOf, spliceInto, spliceValues } from './rewrite.ts';

/** What one masked result counted: for audit. */
export interface MaskReport {
  readonly columns: readonly string[];
  rows: number;
}

export function maskResult(
  plans: readonly StatementPlan[],
  key: Buffer,
  memos: MaskMemos,
  onReport?: (report: MaskReport) => void,
): ResultTransform {
  let statement = 0;
  /** The columns to rewrite in the current result; undefined until its RowDescription. */
  let rewrites: Rewrite[] | undefined;
  let report: MaskReport | undefined;
  /** The rows of the current COPY TO STDOUT, when it masks any column. */
  let copy: CopyRows | undefined;

  const current = (): StatementPlan | undefined => plans[Math.min(statement, plans.length - 1)];

  const describe = (fields: readonly FieldDescription[]): void => {
    const plan = current();
    rewrites = [];
    if (plan === undefined) return;
    fields.forEach((field, index) => {
      // A column the server names as a table's column holds that column's value: the catalog decides.
      const masked =
        field.tableOid !== 0
          ? plan.plain(field.tableOid, field.columnAttribute, field.name)
          : atPosition(plan, index, fields.length);
      if (masked) rewrites!.push(rewriteOf(index, masked, field.typeOid, field.format, memos, key));
    });
    report =
      rewrites.length > 0 ? { columns: rewrites.map((r) => fields[r.index]!.name), rows: 0 } : undefined;
  };

  /** Rows with no description seen: the plan's positions, values sent as NULL. */
  const blind = (count: number): Rewrite[] => {
    const plan = current();
    const out: Rewrite[] = [];
    for (let index = 0; plan !== undefined && index < count; index++) {
      const masked = atPosition(plan, index, count);
      if (masked) out.push(rewriteOf(index, { ...masked, strategy: { kind: 'null' } }, 0, 0, undefined, key));
    }
    return out;
  };

  /** Masks the DataRow at buffer[start, end) (see maskRow); its new size, or -1 when it passes as it is. */
  const masked = (buffer: Buffer, start: number, end: number): number => {
    rewrites ??= blind(buffer.readInt16BE(start + 5));
    if (rewrites.length === 0) return -1;
    if (report) report.rows++;
    return maskRow(buffer, start, end, rewrites);
  };

  return {
    dataRow(buffer, start, end, out) {
      const size = masked(buffer, start, end);
      if (size < 0) {
        out.append(buffer, start, end);
        return;
      }
      out.reserve(size);
      out.at = spliceInto(
        buffer,
        start,
        end,
        size,
        rowCount,
        valueStarts,
        valueEnds,
        replacements,
        out.bytes,
        out.at,
      );
    },
    message(type, frame) {
      switch (type) {
        case Code.RowDescription:
          describe(parseRowDescription(new Reader(frame, 5, frame.length)).fields);
          return frame;
        case Code.DataRow: {
          const size = masked(frame, 0, frame.length);
          if (size < 0) return frame;
          return spliceValues(frame, size, rowCount, valueStarts, valueEnds, replacements);
        }
        case Code.CopyOutResponse: {
          const response = parseCopyResponse(new Reader(frame, 5, frame.length), 'CopyOutResponse');
          copy = copyRows(current(), response, memos, key);
          report = copy && { columns: copy.masked, rows: 0 };
          return frame;
        }
        case Code.CopyData: {
          if (copy === undefined) return frame;
          const out = copy.rewrite(frame);
          if (report) report.rows = copy.rows;
          return out;
        }
        case Code.CommandComplete:
        case Code.EmptyQueryResponse:
          if (report) onReport?.(report);
          statement++;
          rewrites = undefined;
          report = undefined;
          copy = undefined;
          return frame;
        default:
          return frame;
      }
    },
  };
}

// Where the rewritten values of the current row are, and what they become (rows are rewritten one at a
// time, on one thread).
const valueStarts: number[] = [];
const valueEnds: number[] = [];
const replacements: (Buffer | null)[] = [];
/** How many values maskRow replaced in the current row. */
let rowCount = 0;

/**
 * Masks the values at `rewrites` (in column order) of the DataRow at
 * buffer[start, end): the columns are walked by their lengths and the
 * masked values made (kept in the arrays above); returns the size of the
 * row once they replace the originals.
 */
function maskRow(buffer: Buffer, start: number, end: number, rewrites: readonly Rewrite[]): number {
  const columns = buffer.readInt16BE(start + 5);
  let at = start + 7;
  let size = end - start;
  let next = 0;
  for (let column = 0; column < columns && next < rewrites.length; column++) {
    const length = buffer.readInt32BE(at);
    const valueEnd = length < 0 ? at + 4 : at + 4 + length;
    const rewrite = rewrites[next]!;
    if (rewrite.index === column) {
      const value = length < 0 ? null : maskAt(buffer, at + 4, valueEnd, rewrite);
      valueStarts[next] = at;
      valueEnds[next] = valueEnd;
      replacements[next] = value;
      size += (value === null ? 0 : value.length) - Math.max(length, 0);
      next++;
    }
    at = valueEnd;
  }
  rowCount = next;
  return size;
}

/**
 * What the plan says of column `index` of `count` by position: certain when the counts agree; else
 * what any computed column may hold.
 */
function atPosition(plan: StatementPlan, index: number, count: number): Masked | undefined {
  return plan.positional?.length === count
    ? plan.positional[index]
    : (plan.computed ?? plan.positional?.[index]);
}
