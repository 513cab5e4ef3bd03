/** Messages Warden writes itself, built once per use with the shared codec. */
import type { NoticeFields, TransactionStatus } from '../protocol/postgres/messages.ts';
import { writeErrorResponse, writeNoticeResponse, writeReadyForQuery } from '../protocol/postgres/query.ts';
import { Writer } from '../protocol/postgres/writer.ts';

export interface ErrorDetails {
  readonly sqlstate: string;
  readonly message: string;
  readonly detail?: string;
  readonly hint?: string;
  /** 1-based character position in the statement. */
  readonly position?: number;
}

export function errorFields(severity: 'ERROR' | 'FATAL', error: ErrorDetails): NoticeFields {
  const fields: Record<string, string> = { S: severity, V: severity, C: error.sqlstate, M: error.message };
  if (error.detail) fields.D = error.detail;
  if (error.hint) fields.H = error.hint;
  if (error.position !== undefined) fields.P = String(error.position);
  return fields;
}

export function errorResponse(severity: 'ERROR' | 'FATAL', error: ErrorDetails): Buffer {
  return writeErrorResponse(new Writer(), {
    type: 'ErrorResponse',
    fields: errorFields(severity, error),
  }).flush();
}

export function errorThenReady(error: ErrorDetails, status: TransactionStatus): Buffer {
  const w = new Writer();
  writeErrorResponse(w, { type: 'ErrorResponse', fields: errorFields('ERROR', error) });
  return writeReadyForQuery(w, { type: 'ReadyForQuery', status }).flush();
}

/** A NOTICE the client shows as it comes (psql prints it at once): Warden speaking between replies. */
export function noticeResponse(message: string, hint?: string): Buffer {
  const fields: Record<string, string> = { S: 'NOTICE', V: 'NOTICE', C: '00000', M: message };
  if (hint) fields.H = hint;
  return writeNoticeResponse(new Writer(), { type: 'NoticeResponse', fields }).flush();
}
