/**
 * Every message of protocol 3.0 and 3.2 as plain data. Frontend messages are
 * what clients send; backend messages are what servers send. The byte codes
 * are those of the PostgreSQL documentation, "Message Formats".
 */

export const PROTOCOL_3_0 = 196608; // 3 << 16
export const PROTOCOL_3_2 = 196610;
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;

export type Format = 0 | 1;

// ---- frontend: startup family (no type byte) ----
export interface StartupMessage {
  readonly type: 'StartupMessage';
  readonly major: number;
  readonly minor: number;
  readonly parameters: ReadonlyArray<readonly [string, string]>;
}
export interface SSLRequest {
  readonly type: 'SSLRequest';
}
export interface GSSENCRequest {
  readonly type: 'GSSENCRequest';
}
export interface CancelRequest {
  readonly type: 'CancelRequest';
  readonly processId: number;
  /** 4 bytes under protocol 3.0; up to 256 bytes under 3.2. */
  readonly secretKey: Buffer;
}
export type StartupFamily = StartupMessage | SSLRequest | GSSENCRequest | CancelRequest;

// ---- frontend: typed messages ----
export interface PasswordMessage {
  readonly type: 'PasswordMessage';
  readonly password: string;
}
export interface SASLInitialResponse {
  readonly type: 'SASLInitialResponse';
  readonly mechanism: string;
  readonly data: Buffer | null;
}
export interface SASLResponse {
  readonly type: 'SASLResponse';
  readonly data: Buffer;
}
export interface Query {
  readonly type: 'Query';
  readonly sql: string;
}
export interface Parse {
  readonly type: 'Parse';
  readonly name: string;
  readonly sql: string;
  readonly parameterTypes: readonly number[];
}
export interface Bind {
  readonly type: 'Bind';
  readonly portal: string;
  readonly statement: string;
  readonly parameterFormats: readonly Format[];
  readonly parameters: ReadonlyArray<Buffer | null>;
  readonly resultFormats: readonly Format[];
}
export interface Describe {
  readonly type: 'Describe';
  readonly target: 'S' | 'P';
  readonly name: string;
}
export interface Execute {
  readonly type: 'Execute';
  readonly portal: string;
  readonly maxRows: number;
}
export interface Close {
  readonly type: 'Close';
  readonly target: 'S' | 'P';
  readonly name: string;
}
export interface Sync {
  readonly type: 'Sync';
}
export interface Flush {
  readonly type: 'Flush';
}
export interface Terminate {
  readonly type: 'Terminate';
}
export interface CopyData {
  readonly type: 'CopyData';
  readonly data: Buffer;
}
export interface CopyDone {
  readonly type: 'CopyDone';
}
export interface CopyFail {
  readonly type: 'CopyFail';
  readonly message: string;
}
export interface FunctionCall {
  readonly type: 'FunctionCall';
  readonly functionOid: number;
  readonly argumentFormats: readonly Format[];
  readonly arguments: ReadonlyArray<Buffer | null>;
  readonly resultFormat: Format;
}
export type FrontendMessage =
  | Query
  | Parse
  | Bind
  | Describe
  | Execute
  | Close
  | Sync
  | Flush
  | Terminate
  | CopyData
  | CopyDone
  | CopyFail
  | FunctionCall;
/** The 'p' message means one of these, depending on the authentication under way. */
export type PasswordFamily = PasswordMessage | SASLInitialResponse | SASLResponse;

// ---- backend ----
export type Authentication =
  | { readonly type: 'AuthenticationOk' }
  | { readonly type: 'AuthenticationKerberosV5' }
  | { readonly type: 'AuthenticationCleartextPassword' }
  | { readonly type: 'AuthenticationMD5Password'; readonly salt: Buffer }
  | { readonly type: 'AuthenticationGSS' }
  | { readonly type: 'AuthenticationGSSContinue'; readonly data: Buffer }
  | { readonly type: 'AuthenticationSSPI' }
  | { readonly type: 'AuthenticationSASL'; readonly mechanisms: readonly string[] }
  | { readonly type: 'AuthenticationSASLContinue'; readonly data: Buffer }
  | { readonly type: 'AuthenticationSASLFinal'; readonly data: Buffer };

export interface BackendKeyData {
  readonly type: 'BackendKeyData';
  readonly processId: number;
  readonly secretKey: Buffer;
}
export interface NegotiateProtocolVersion {
  readonly type: 'NegotiateProtocolVersion';
  readonly newestMinor: number;
  readonly unrecognized: readonly string[];
}
export interface ParameterStatus {
  readonly type: 'ParameterStatus';
  readonly name: string;
  readonly value: string;
}
export type TransactionStatus = 'I' | 'T' | 'E';
export interface ReadyForQuery {
  readonly type: 'ReadyForQuery';
  readonly status: TransactionStatus;
}
/** Field codes as single characters: S severity, V non-localised severity, C code, M message, D detail, H hint... */
export type NoticeFields = Readonly<Record<string, string>>;
export interface ErrorResponse {
  readonly type: 'ErrorResponse';
  readonly fields: NoticeFields;
}
export interface NoticeResponse {
  readonly type: 'NoticeResponse';
  readonly fields: NoticeFields;
}
export interface NotificationResponse {
  readonly type: 'NotificationResponse';
  readonly processId: number;
  readonly channel: string;
  readonly payload: string;
}
export interface FieldDescription {
  readonly name: string;
  readonly tableOid: number;
  readonly columnAttribute: number;
  readonly typeOid: number;
  readonly typeSize: number;
  readonly typeModifier: number;
  readonly format: Format;
}
export interface RowDescription {
  readonly type: 'RowDescription';
  readonly fields: readonly FieldDescription[];
}
export interface DataRow {
  readonly type: 'DataRow';
  readonly values: ReadonlyArray<Buffer | null>;
}
export interface CommandComplete {
  readonly type: 'CommandComplete';
  readonly tag: string;
}
export interface ParameterDescription {
  readonly type: 'ParameterDescription';
  readonly typeOids: readonly number[];
}
export interface CopyResponse {
  readonly type: 'CopyInResponse' | 'CopyOutResponse' | 'CopyBothResponse';
  readonly format: Format;
  readonly columnFormats: readonly Format[];
}
export interface FunctionCallResponse {
  readonly type: 'FunctionCallResponse';
  readonly value: Buffer | null;
}
export type BackendMessage =
  | Authentication
  | BackendKeyData
  | NegotiateProtocolVersion
  | ParameterStatus
  | ReadyForQuery
  | ErrorResponse
  | NoticeResponse
  | NotificationResponse
  | RowDescription
  | DataRow
  | CommandComplete
  | ParameterDescription
  | CopyResponse
  | CopyData
  | CopyDone
  | FunctionCallResponse
  | { readonly type: 'EmptyQueryResponse' }
  | { readonly type: 'ParseComplete' }
  | { readonly type: 'BindComplete' }
  | { readonly type: 'CloseComplete' }
  | { readonly type: 'NoData' }
  | { readonly type: 'PortalSuspended' };

/** Type bytes, named as in the documentation. */
export const Code = {
  // frontend
  Query: 0x51, // Q
  Parse: 0x50, // P
  Bind: 0x42, // B
  Describe: 0x44, // D
  Execute: 0x45, // E
  Close: 0x43, // C
  Sync: 0x53, // S
  Flush: 0x48, // H
  Terminate: 0x58, // X
  Password: 0x70, // p
  FunctionCall: 0x46, // F
  CopyFail: 0x66, // f
  // both directions
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  // backend
  Authentication: 0x52, // R
  BackendKeyData: 0x4b, // K
  NegotiateProtocolVersion: 0x76, // v
  ParameterStatus: 0x53, // S
  ReadyForQuery: 0x5a, // Z
  ErrorResponse: 0x45, // E
  NoticeResponse: 0x4e, // N
  NotificationResponse: 0x41, // A
  RowDescription: 0x54, // T
  DataRow: 0x44, // D
  CommandComplete: 0x43, // C
  EmptyQueryResponse: 0x49, // I
  ParseComplete: 0x31, // 1
  BindComplete: 0x32, // 2
  CloseComplete: 0x33, // 3
  NoData: 0x6e, // n
  PortalSuspended: 0x73, // s
  ParameterDescription: 0x74, // t
  CopyInResponse: 0x47, // G
  CopyOutResponse: 0x48, // H
  CopyBothResponse: 0x57, // W
  FunctionCallResponse: 0x56, // V
} as const;
