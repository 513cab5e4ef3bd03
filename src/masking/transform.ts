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
import { maskAt, type Rewrite, spliceValues } from './rewrite.ts';

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
      if (masked) {
        const { typeOid, format } = field;
        rewrites!.push({ index, masked, typeOid, format, memo: memos.for(masked, typeOid, format) });
      }
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
      if (masked)
        out.push({
          index,
          masked: { ...masked, strategy: { kind: 'null' } },
          typeOid: 0,
          format: 0,
          memo: undefined,
        });
    }
    return out;
  };

  return {
    message(type, frame) {
      switch (type) {
        case Code.RowDescription:
          describe(parseRowDescription(new Reader(frame, 5, frame.length)).fields);
          return frame;
        case Code.DataRow: {
          rewrites ??= blind(frame.readInt16BE(5));
          if (rewrites.length === 0) return frame;
          if (report) report.rows++;
          return rewriteRow(frame, rewrites, key);
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

/**
 * A DataRow with the values at `rewrites` (in column order) masked: the
 * frame's columns are walked by their lengths, the masked values made, and
 * the new row written into one buffer with the untouched bytes copied
 * around them.
 */
function rewriteRow(frame: Buffer, rewrites: readonly Rewrite[], key: Buffer): Buffer {
  const columns = frame.readInt16BE(5);
  let at = 7;
  let size = frame.length;
  let next = 0;
  for (let column = 0; column < columns && next < rewrites.length; column++) {
    const length = frame.readInt32BE(at);
    const end = length < 0 ? at + 4 : at + 4 + length;
    const rewrite = rewrites[next]!;
    if (rewrite.index === column) {
      const value = length < 0 ? null : maskAt(frame, at + 4, end, rewrite, key);
      valueStarts[next] = at;
      valueEnds[next] = end;
      replacements[next] = value;
      size += (value === null ? 0 : value.length) - Math.max(length, 0);
      next++;
    }
    at = end;
  }
  return spliceValues(frame, size, next, valueStarts, valueEnds, replacements);
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
