/**
 * The row cap of a `limit` rule: a result transform that lets the first
 * maxRows rows of each result (DataRow, or CopyData of COPY TO STDOUT) through, drops the rest as they stream by
 * (the server still produces them; the client never sees them), and tells
 * the client with a notice before the result's CommandComplete, whose row
 * count then says what was delivered.
 */
import { encodeBackend } from '../protocol/postgres/codec.ts';
import { Code } from '../protocol/postgres/messages.ts';
import { parseCommandComplete } from '../protocol/postgres/query.ts';
import { Reader } from '../protocol/postgres/reader.ts';
import type { ResultTransform } from './decision.ts';

const NOTHING = Buffer.alloc(0);

export function rowLimit(maxRows: number, rule: string): ResultTransform {
  let rows = 0;
  return {
    message(type, frame) {
      // COPY ... TO STDOUT sends one row per CopyData: it is capped alike.
      if (type === Code.DataRow || type === Code.CopyData) return ++rows > maxRows ? NOTHING : frame;
      if (type !== Code.CommandComplete) return frame;
      const seen = rows;
      rows = 0;
      if (seen <= maxRows) return frame;
      const { tag } = parseCommandComplete(new Reader(frame, 5, frame.length));
      const notice = encodeBackend({
        type: 'NoticeResponse',
        fields: {
          S: 'NOTICE',
          V: 'NOTICE',
          C: '01000',
          M: `Warden returned the first ${maxRows} of ${seen} rows (rule "${rule}" limits results to ${maxRows} rows)`,
        },
      });
      const command = encodeBackend({ type: 'CommandComplete', tag: tag.replace(/\d+$/, String(maxRows)) });
      return Buffer.concat([notice, command]);
    },
  };
}
