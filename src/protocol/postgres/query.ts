import { ProtocolViolation } from './errors.ts';
import {
  Code,
  type CommandComplete,
  type DataRow,
  type ErrorResponse,
  type FieldDescription,
  type Format,
  type FunctionCall,
  type FunctionCallResponse,
  type NoticeFields,
  type NoticeResponse,
  type NotificationResponse,
  type Query,
  type ReadyForQuery,
  type RowDescription,
} from './messages.ts';
import type { Reader } from './reader.ts';
import type { Writer } from './writer.ts';

export function parseQuery(r: Reader): Query {
  const sql = r.cstring();
  r.finish('Query');
  return { type: 'Query', sql };
}

export function writeQuery(w: Writer, m: Query): Writer {
  return w.begin(Code.Query).cstring(m.sql).end();
}

export function parseReadyForQuery(r: Reader): ReadyForQuery {
  const status = String.fromCharCode(r.byte());
  r.finish('ReadyForQuery');
  if (status !== 'I' && status !== 'T' && status !== 'E') {
    throw new ProtocolViolation(`invalid transaction status ${JSON.stringify(status)}`);
  }
  return { type: 'ReadyForQuery', status };
}

export function writeReadyForQuery(w: Writer, m: ReadyForQuery): Writer {
  return w.begin(Code.ReadyForQuery).byte(m.status.charCodeAt(0)).end();
}

export function parseNoticeFields(r: Reader): NoticeFields {
  const fields: Record<string, string> = {};
  for (;;) {
    const code = r.byte();
    if (code === 0) break;
    fields[String.fromCharCode(code)] = r.cstring();
  }
  r.finish('ErrorResponse/NoticeResponse');
  return fields;
}

function writeNoticeFields(w: Writer, type: number, fields: NoticeFields): Writer {
  w.begin(type);
  for (const [code, value] of Object.entries(fields)) w.byte(code.charCodeAt(0)).cstring(value);
  return w.byte(0).end();
}

export function parseErrorResponse(r: Reader): ErrorResponse {
  return { type: 'ErrorResponse', fields: parseNoticeFields(r) };
}

export function writeErrorResponse(w: Writer, m: ErrorResponse): Writer {
  return writeNoticeFields(w, Code.ErrorResponse, m.fields);
}

export function parseNoticeResponse(r: Reader): NoticeResponse {
  return { type: 'NoticeResponse', fields: parseNoticeFields(r) };
}

export function writeNoticeResponse(w: Writer, m: NoticeResponse): Writer {
  return writeNoticeFields(w, Code.NoticeResponse, m.fields);
}

export function parseNotificationResponse(r: Reader): NotificationResponse {
  const processId = r.int32();
  const channel = r.cstring();
  const payload = r.cstring();
  r.finish('NotificationResponse');
  return { type: 'NotificationResponse', processId, channel, payload };
}

export function writeNotificationResponse(w: Writer, m: NotificationResponse): Writer {
  return w.begin(Code.NotificationResponse).int32(m.processId).cstring(m.channel).cstring(m.payload).end();
}

export function parseFormat(r: Reader): Format {
  const format = r.int16();
  if (format !== 0 && format !== 1) throw new ProtocolViolation(`invalid format code ${format}`);
  return format;
}

export function parseRowDescription(r: Reader): RowDescription {
  const count = r.int16();
  if (count < 0) throw new ProtocolViolation('negative field count');
  const fields: FieldDescription[] = [];
  for (let i = 0; i < count; i++) {
    fields.push({
      name: r.cstring(),
      tableOid: r.uint32(),
      columnAttribute: r.int16(),
      typeOid: r.uint32(),
      typeSize: r.int16(),
      typeModifier: r.int32(),
      format: parseFormat(r),
    });
  }
  r.finish('RowDescription');
  return { type: 'RowDescription', fields };
}

export function writeRowDescription(w: Writer, m: RowDescription): Writer {
  w.begin(Code.RowDescription).int16(m.fields.length);
  for (const f of m.fields) {
    w.cstring(f.name).uint32(f.tableOid).int16(f.columnAttribute).uint32(f.typeOid);
    w.int16(f.typeSize).int32(f.typeModifier).int16(f.format);
  }
  return w.end();
}

export function parseDataRow(r: Reader): DataRow {
  const count = r.int16();
  if (count < 0) throw new ProtocolViolation('negative column count');
  const values: (Buffer | null)[] = [];
  for (let i = 0; i < count; i++) values.push(r.nullableBytes());
  r.finish('DataRow');
  return { type: 'DataRow', values };
}

export function writeDataRow(w: Writer, m: DataRow): Writer {
  w.begin(Code.DataRow).int16(m.values.length);
  for (const value of m.values) w.nullableBytes(value);
  return w.end();
}

export function parseCommandComplete(r: Reader): CommandComplete {
  const tag = r.cstring();
  r.finish('CommandComplete');
  return { type: 'CommandComplete', tag };
}

export function writeCommandComplete(w: Writer, m: CommandComplete): Writer {
  return w.begin(Code.CommandComplete).cstring(m.tag).end();
}

// Counts of formats, values and parameter types are unsigned: PostgreSQL reads them with
// pq_getmsgint(msg, 2), so a Bind may carry up to 65535 parameters.
function parseFormats(r: Reader): Format[] {
  const count = r.uint16();
  const formats: Format[] = [];
  for (let i = 0; i < count; i++) formats.push(parseFormat(r));
  return formats;
}

function parseValues(r: Reader): (Buffer | null)[] {
  const count = r.uint16();
  const values: (Buffer | null)[] = [];
  for (let i = 0; i < count; i++) values.push(r.nullableBytes());
  return values;
}

export { parseFormats, parseValues };

export function writeFormats(w: Writer, formats: readonly Format[]): Writer {
  w.uint16(formats.length);
  for (const format of formats) w.int16(format);
  return w;
}

export function writeValues(w: Writer, values: ReadonlyArray<Buffer | null>): Writer {
  w.uint16(values.length);
  for (const value of values) w.nullableBytes(value);
  return w;
}

export function parseFunctionCall(r: Reader): FunctionCall {
  const functionOid = r.uint32();
  const argumentFormats = parseFormats(r);
  const args = parseValues(r);
  const resultFormat = parseFormat(r);
  r.finish('FunctionCall');
  return { type: 'FunctionCall', functionOid, argumentFormats, arguments: args, resultFormat };
}

export function writeFunctionCall(w: Writer, m: FunctionCall): Writer {
  w.begin(Code.FunctionCall).uint32(m.functionOid);
  writeFormats(w, m.argumentFormats);
  writeValues(w, m.arguments);
  return w.int16(m.resultFormat).end();
}

export function parseFunctionCallResponse(r: Reader): FunctionCallResponse {
  const value = r.nullableBytes();
  r.finish('FunctionCallResponse');
  return { type: 'FunctionCallResponse', value };
}

export function writeFunctionCallResponse(w: Writer, m: FunctionCallResponse): Writer {
  return w.begin(Code.FunctionCallResponse).nullableBytes(m.value).end();
}

/** A CommandComplete's tag, from a body that may be cut short (see MessageScanner.lastBody). */
export function commandTagOf(body: Buffer): string {
  const end = body.indexOf(0);
  return body.toString('utf8', 0, end < 0 ? body.length : end);
}

/** An ErrorResponse's SQLSTATE (field C), from a body that may be cut short; undefined if not in it. */
export function sqlstateOf(body: Buffer): string | undefined {
  let at = 0;
  while (at < body.length && body[at] !== 0) {
    const code = body[at]!;
    const end = body.indexOf(0, at + 1);
    if (end < 0) return undefined;
    if (code === 0x43 /* C */) return body.toString('latin1', at + 1, end);
    at = end + 1;
  }
  return undefined;
}
