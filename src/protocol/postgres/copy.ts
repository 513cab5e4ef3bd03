import { ProtocolViolation } from './errors.ts';
import { Code, type CopyFail, type CopyResponse, type Format } from './messages.ts';
import { parseFormats, writeFormats } from './query.ts';
import type { Reader } from './reader.ts';
import type { Writer } from './writer.ts';

const RESPONSE_CODES = {
  CopyInResponse: Code.CopyInResponse,
  CopyOutResponse: Code.CopyOutResponse,
  CopyBothResponse: Code.CopyBothResponse,
} as const;

export function parseCopyResponse(r: Reader, type: CopyResponse['type']): CopyResponse {
  // The overall format is an Int8 here, unlike the Int16 column formats.
  const overall = r.byte();
  if (overall !== 0 && overall !== 1) throw new ProtocolViolation(`invalid copy format ${overall}`);
  const format: Format = overall;
  const columnFormats = parseFormats(r);
  r.finish(type);
  return { type, format, columnFormats };
}

export function writeCopyResponse(w: Writer, m: CopyResponse): Writer {
  w.begin(RESPONSE_CODES[m.type]).byte(m.format);
  return writeFormats(w, m.columnFormats).end();
}

export function parseCopyFail(r: Reader): CopyFail {
  const message = r.cstring();
  r.finish('CopyFail');
  return { type: 'CopyFail', message };
}

export function writeCopyFail(w: Writer, m: CopyFail): Writer {
  return w.begin(Code.CopyFail).cstring(m.message).end();
}

export function writeCopyData(w: Writer, data: Uint8Array): Writer {
  return w.begin(Code.CopyData).bytes(data).end();
}
