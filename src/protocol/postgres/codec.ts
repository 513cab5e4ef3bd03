/**
 * Whole-message decode and encode, by direction. The proxy decodes only the
 * messages a decision needs; tests and tools use these for everything.
 */
import { parseAuthentication, writeAuthentication } from './auth.ts';
import { parseCopyFail, parseCopyResponse, writeCopyData, writeCopyFail, writeCopyResponse } from './copy.ts';
import { ProtocolViolation } from './errors.ts';
import {
  parseBind,
  parseClose,
  parseDescribe,
  parseExecute,
  parseParameterDescription,
  parseParse,
  writeBind,
  writeClose,
  writeDescribe,
  writeExecute,
  writeParameterDescription,
  writeParse,
} from './extended.ts';
import { type BackendMessage, Code, type FrontendMessage } from './messages.ts';
import {
  parseCommandComplete,
  parseDataRow,
  parseErrorResponse,
  parseFunctionCall,
  parseFunctionCallResponse,
  parseNoticeResponse,
  parseNotificationResponse,
  parseQuery,
  parseReadyForQuery,
  parseRowDescription,
  writeCommandComplete,
  writeDataRow,
  writeErrorResponse,
  writeFunctionCall,
  writeFunctionCallResponse,
  writeNoticeResponse,
  writeNotificationResponse,
  writeQuery,
  writeReadyForQuery,
  writeRowDescription,
} from './query.ts';
import { Reader } from './reader.ts';
import {
  parseBackendKeyData,
  parseNegotiateProtocolVersion,
  parseParameterStatus,
  writeBackendKeyData,
  writeNegotiateProtocolVersion,
  writeParameterStatus,
} from './startup.ts';
import { Writer } from './writer.ts';

function empty<T>(r: Reader, message: T & { type: string }): T {
  r.finish(message.type);
  return message;
}

/** Decodes one typed frontend message (not the 'p' family: see parsePasswordFamily). */
export function decodeFrontend(type: number, body: Buffer): FrontendMessage {
  const r = new Reader(body);
  switch (type) {
    case Code.Query:
      return parseQuery(r);
    case Code.Parse:
      return parseParse(r);
    case Code.Bind:
      return parseBind(r);
    case Code.Describe:
      return parseDescribe(r);
    case Code.Execute:
      return parseExecute(r);
    case Code.Close:
      return parseClose(r);
    case Code.Sync:
      return empty(r, { type: 'Sync' });
    case Code.Flush:
      return empty(r, { type: 'Flush' });
    case Code.Terminate:
      return empty(r, { type: 'Terminate' });
    case Code.CopyData:
      return { type: 'CopyData', data: r.rest() };
    case Code.CopyDone:
      return empty(r, { type: 'CopyDone' });
    case Code.CopyFail:
      return parseCopyFail(r);
    case Code.FunctionCall:
      return parseFunctionCall(r);
    default:
      throw new ProtocolViolation(`unknown frontend message type ${describeType(type)}`);
  }
}

export function decodeBackend(type: number, body: Buffer): BackendMessage {
  const r = new Reader(body);
  switch (type) {
    case Code.Authentication:
      return parseAuthentication(r);
    case Code.BackendKeyData:
      return parseBackendKeyData(r);
    case Code.NegotiateProtocolVersion:
      return parseNegotiateProtocolVersion(r);
    case Code.ParameterStatus:
      return parseParameterStatus(r);
    case Code.ReadyForQuery:
      return parseReadyForQuery(r);
    case Code.ErrorResponse:
      return parseErrorResponse(r);
    case Code.NoticeResponse:
      return parseNoticeResponse(r);
    case Code.NotificationResponse:
      return parseNotificationResponse(r);
    case Code.RowDescription:
      return parseRowDescription(r);
    case Code.DataRow:
      return parseDataRow(r);
    case Code.CommandComplete:
      return parseCommandComplete(r);
    case Code.ParameterDescription:
      return parseParameterDescription(r);
    case Code.CopyInResponse:
      return parseCopyResponse(r, 'CopyInResponse');
    case Code.CopyOutResponse:
      return parseCopyResponse(r, 'CopyOutResponse');
    case Code.CopyBothResponse:
      return parseCopyResponse(r, 'CopyBothResponse');
    case Code.CopyData:
      return { type: 'CopyData', data: r.rest() };
    case Code.CopyDone:
      return empty(r, { type: 'CopyDone' });
    case Code.FunctionCallResponse:
      return parseFunctionCallResponse(r);
    case Code.EmptyQueryResponse:
      return empty(r, { type: 'EmptyQueryResponse' });
    case Code.ParseComplete:
      return empty(r, { type: 'ParseComplete' });
    case Code.BindComplete:
      return empty(r, { type: 'BindComplete' });
    case Code.CloseComplete:
      return empty(r, { type: 'CloseComplete' });
    case Code.NoData:
      return empty(r, { type: 'NoData' });
    case Code.PortalSuspended:
      return empty(r, { type: 'PortalSuspended' });
    default:
      throw new ProtocolViolation(`unknown backend message type ${describeType(type)}`);
  }
}

export function encodeFrontend(m: FrontendMessage, w = new Writer()): Buffer {
  switch (m.type) {
    case 'Query':
      writeQuery(w, m);
      break;
    case 'Parse':
      writeParse(w, m);
      break;
    case 'Bind':
      writeBind(w, m);
      break;
    case 'Describe':
      writeDescribe(w, m);
      break;
    case 'Execute':
      writeExecute(w, m);
      break;
    case 'Close':
      writeClose(w, m);
      break;
    case 'Sync':
    case 'Flush':
    case 'Terminate':
    case 'CopyDone':
      w.begin(Code[m.type]).end();
      break;
    case 'CopyData':
      writeCopyData(w, m.data);
      break;
    case 'CopyFail':
      writeCopyFail(w, m);
      break;
    case 'FunctionCall':
      writeFunctionCall(w, m);
      break;
  }
  return w.flush();
}

export function encodeBackend(m: BackendMessage, w = new Writer()): Buffer {
  switch (m.type) {
    case 'AuthenticationOk':
    case 'AuthenticationKerberosV5':
    case 'AuthenticationCleartextPassword':
    case 'AuthenticationMD5Password':
    case 'AuthenticationGSS':
    case 'AuthenticationGSSContinue':
    case 'AuthenticationSSPI':
    case 'AuthenticationSASL':
    case 'AuthenticationSASLContinue':
    case 'AuthenticationSASLFinal':
      writeAuthentication(w, m);
      break;
    case 'BackendKeyData':
      writeBackendKeyData(w, m);
      break;
    case 'NegotiateProtocolVersion':
      writeNegotiateProtocolVersion(w, m);
      break;
    case 'ParameterStatus':
      writeParameterStatus(w, m);
      break;
    case 'ReadyForQuery':
      writeReadyForQuery(w, m);
      break;
    case 'ErrorResponse':
      writeErrorResponse(w, m);
      break;
    case 'NoticeResponse':
      writeNoticeResponse(w, m);
      break;
    case 'NotificationResponse':
      writeNotificationResponse(w, m);
      break;
    case 'RowDescription':
      writeRowDescription(w, m);
      break;
    case 'DataRow':
      writeDataRow(w, m);
      break;
    case 'CommandComplete':
      writeCommandComplete(w, m);
      break;
    case 'ParameterDescription':
      writeParameterDescription(w, m);
      break;
    case 'CopyInResponse':
    case 'CopyOutResponse':
    case 'CopyBothResponse':
      writeCopyResponse(w, m);
      break;
    case 'CopyData':
      writeCopyData(w, m.data);
      break;
    case 'FunctionCallResponse':
      writeFunctionCallResponse(w, m);
      break;
    // Messages that are only a type byte and a length.
    case 'CopyDone':
    case 'EmptyQueryResponse':
    case 'ParseComplete':
    case 'BindComplete':
    case 'CloseComplete':
    case 'NoData':
    case 'PortalSuspended':
      w.begin(Code[m.type]).end();
      break;
  }
  return w.flush();
}

export function describeType(type: number): string {
  return type >= 0x20 && type < 0x7f
    ? `'${String.fromCharCode(type)}'`
    : `0x${type.toString(16).padStart(2, '0')}`;
}
