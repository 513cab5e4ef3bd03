/**
 * Masking on the wire: a result transform that reads each RowDescription,
 * decides per column (plan.ts) and rewrites the private values of every
 * DataRow as it streams by, one row at a time, lengths recomputed. Rows of
 * a result with no private column pass untouched. A batch's statements each
 * have their own plan: the next one starts after each CommandComplete.
 *
 * When rows arrive without a RowDescription in the same response (a driver
 * that Executes a statement it described earlier), the column types are not
 * known here: private values are then sent as NULL, valid for any type.
 */
import type { ResultTransform } from '../policy/decision.ts';
import type { FieldDescription } from '../protocol/postgres/messages.ts';
import { Code } from '../protocol/postgres/messages.ts';
import { parseDataRow, parseRowDescription, writeDataRow } from '../protocol/postgres/query.ts';
import { Reader } from '../protocol/postgres/reader.ts';
import { Writer } from '../protocol/postgres/writer.ts';
import type { Masked, StatementPlan } from './plan.ts';
import { maskValue } from './strategies.ts';

/** A column to rewrite: its position, how, and its type and format as described. */
interface Rewrite {
  readonly index: number;
  readonly masked: Masked;
  readonly typeOid: number;
  readonly format: 0 | 1;
}

/** What one masked result counted: for audit. */
export interface MaskReport {
  readonly columns: readonly string[];
  rows: number;
}

export function maskResult(
  plans: readonly StatementPlan[],
  key: Buffer,
  onReport?: (report: MaskReport) => void,
): ResultTransform {
  let statement = 0;
  /** The columns to rewrite in the current result; undefined until its RowDescription. */
  let rewrites: Rewrite[] | undefined;
  let report: MaskReport | undefined;
  const writer = new Writer();

  const current = (): StatementPlan | undefined => plans[Math.min(statement, plans.length - 1)];

  const describe = (fields: readonly FieldDescription[]): void => {
    const plan = current();
    rewrites = [];
    if (plan === undefined) return;
    fields.forEach((field, index) => {
      const masked =
        (field.tableOid !== 0 ? plan.plain(field.tableOid, field.columnAttribute, field.name) : undefined) ??
        atPosition(plan, index, fields.length);
      if (masked) rewrites!.push({ index, masked, typeOid: field.typeOid, format: field.format });
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
        out.push({ index, masked: { ...masked, strategy: { kind: 'null' } }, typeOid: 0, format: 0 });
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
          // A fresh array per row: rewritten in place.
          const values = parseDataRow(new Reader(frame, 5, frame.length)).values as (Buffer | null)[];
          for (const { index, masked, typeOid, format } of rewrites) {
            values[index] = maskValue(
              values[index] ?? null,
              typeOid,
              format,
              masked.strategy,
              masked.maskClass,
              key,
            );
          }
          if (report) report.rows++;
          return writeDataRow(writer, { type: 'DataRow', values }).flush();
        }
        case Code.CommandComplete:
        case Code.EmptyQueryResponse:
          if (report) onReport?.(report);
          statement++;
          rewrites = undefined;
          report = undefined;
          return frame;
        default:
          return frame;
      }
    },
  };
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
