/**
 * A builder and a parser written by the same hand share their mistakes, so
 * here node-postgres' own codec (pg-protocol) is the oracle: its serializer
 * produces the client bytes we must decode, and its parser reads the server
 * bytes we encode. pg-protocol is a test oracle only, never our codec.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { serialize } from 'pg-protocol';
import {
  AuthenticationMD5Password,
  BackendKeyDataMessage,
  CommandCompleteMessage,
  CopyDataMessage,
  CopyResponse,
  DatabaseError,
  DataRowMessage,
  NoticeMessage,
  NotificationResponseMessage,
  type BackendMessage as OracleMessage,
  ParameterDescriptionMessage,
  ParameterStatusMessage,
  ReadyForQueryMessage,
  RowDescriptionMessage,
} from 'pg-protocol/dist/messages.js';
import { Parser } from 'pg-protocol/dist/parser.js';
import { parsePasswordFamily } from '../../src/protocol/postgres/auth.ts';
import { decodeFrontend, encodeBackend } from '../../src/protocol/postgres/codec.ts';
import { Framer } from '../../src/protocol/postgres/framer.ts';
import { type BackendMessage, Code, type FrontendMessage } from '../../src/protocol/postgres/messages.ts';
import { Reader } from '../../src/protocol/postgres/reader.ts';
import { parseStartupFamily } from '../../src/protocol/postgres/startup.ts';
import { bytewise, decodeFrontendFrame } from './support.ts';

/** Parses server bytes with pg-protocol, optionally fed one byte at a time. */
function oracleParse(bytes: Buffer, chunks: Buffer[] = [bytes]): OracleMessage[] {
  const parser = new Parser();
  const messages: OracleMessage[] = [];
  for (const chunk of chunks) parser.parse(chunk, (message) => messages.push(message));
  return messages;
}

/** Encodes one message with our codec and parses it back with pg-protocol. */
function viaOracle(message: BackendMessage): OracleMessage {
  const bytes = encodeBackend(message);
  const parsed = oracleParse(bytes);
  assert.equal(parsed.length, 1, 'pg-protocol sees exactly one message');
  const [only] = parsed;
  assert.ok(only);
  assert.equal(only.length, bytes.length - 1, 'pg-protocol reads the same length');
  return only;
}

describe('oracle: client bytes from pg-protocol serialize decode as the same messages', () => {
  it('decodes a simple Query', () => {
    assert.deepEqual(decodeFrontendFrame(serialize.query('SELECT 1; SELECT $$ü$$')), {
      type: 'Query',
      sql: 'SELECT 1; SELECT $$ü$$',
    });
  });

  it('decodes a Parse with a name, SQL and parameter type OIDs', () => {
    const bytes = serialize.parse({ name: 'stmt_1', text: 'SELECT $1::int4, $2::text', types: [23, 25] });
    assert.deepEqual(decodeFrontendFrame(bytes), {
      type: 'Parse',
      name: 'stmt_1',
      sql: 'SELECT $1::int4, $2::text',
      parameterTypes: [23, 25],
    });
    assert.deepEqual(decodeFrontendFrame(serialize.parse({ text: 'SELECT 1' })), {
      type: 'Parse',
      name: '',
      sql: 'SELECT 1',
      parameterTypes: [],
    });
  });

  it('decodes a Bind with a text, a binary and a NULL parameter, keeping NULL apart from empty text', () => {
    const bytes = serialize.bind({
      portal: 'p1',
      statement: 'stmt_1',
      values: ['42', Buffer.from([0xde, 0xad]), null, ''],
      binary: true,
    });
    assert.deepEqual(decodeFrontendFrame(bytes), {
      type: 'Bind',
      portal: 'p1',
      statement: 'stmt_1',
      parameterFormats: [0, 1, 0, 0],
      parameters: [Buffer.from('42'), Buffer.from([0xde, 0xad]), null, Buffer.alloc(0)],
      resultFormats: [1],
    });
  });

  it('decodes a Bind of 40000 parameters, whose counts pg-protocol writes as unsigned 16-bit', () => {
    const values = Array.from({ length: 40_000 }, (_, i) => String(i));
    const decoded = decodeFrontendFrame(serialize.bind({ values }));
    assert.ok(decoded.type === 'Bind');
    assert.equal(decoded.parameters.length, 40_000);
    assert.equal(decoded.parameterFormats.length, 40_000);
    assert.deepEqual(decoded.parameters[39_999], Buffer.from('39999'));
  });

  it('decodes Describe and Close of statements and portals, named and unnamed', () => {
    assert.deepEqual(decodeFrontendFrame(serialize.describe({ type: 'S', name: 'stmt_1' })), {
      type: 'Describe',
      target: 'S',
      name: 'stmt_1',
    });
    assert.deepEqual(decodeFrontendFrame(serialize.describe({ type: 'P' })), {
      type: 'Describe',
      target: 'P',
      name: '',
    });
    assert.deepEqual(decodeFrontendFrame(serialize.close({ type: 'S', name: 'stmt_1' })), {
      type: 'Close',
      target: 'S',
      name: 'stmt_1',
    });
    assert.deepEqual(decodeFrontendFrame(serialize.close({ type: 'P' })), {
      type: 'Close',
      target: 'P',
      name: '',
    });
  });

  it('decodes Execute with and without a portal and row limit', () => {
    assert.deepEqual(decodeFrontendFrame(serialize.execute()), { type: 'Execute', portal: '', maxRows: 0 });
    assert.deepEqual(decodeFrontendFrame(serialize.execute({ portal: 'cur', rows: 100 })), {
      type: 'Execute',
      portal: 'cur',
      maxRows: 100,
    });
  });

  it('decodes Sync, Flush and Terminate (pg-protocol end)', () => {
    assert.deepEqual(decodeFrontendFrame(serialize.sync()), { type: 'Sync' });
    assert.deepEqual(decodeFrontendFrame(serialize.flush()), { type: 'Flush' });
    assert.deepEqual(decodeFrontendFrame(serialize.end()), { type: 'Terminate' });
  });

  it('decodes CopyData, CopyDone and CopyFail', () => {
    const chunk = Buffer.from('1\tö\t\\N\n\0', 'utf8');
    assert.deepEqual(decodeFrontendFrame(serialize.copyData(chunk)), { type: 'CopyData', data: chunk });
    assert.deepEqual(decodeFrontendFrame(serialize.copyDone()), { type: 'CopyDone' });
    assert.deepEqual(decodeFrontendFrame(serialize.copyFail('client gave up')), {
      type: 'CopyFail',
      message: 'client gave up',
    });
  });

  it('decodes the startup packets: StartupMessage, SSLRequest and a 16-byte CancelRequest', () => {
    const startup = serialize.startup({ user: 'alice', database: 'ledger' });
    assert.equal(startup.readInt32BE(0), startup.length);
    assert.deepEqual(parseStartupFamily(startup.subarray(4)), {
      type: 'StartupMessage',
      major: 3,
      minor: 0,
      parameters: [
        ['user', 'alice'],
        ['database', 'ledger'],
        ['client_encoding', 'UTF8'],
      ],
    });
    assert.deepEqual(parseStartupFamily(serialize.requestSsl().subarray(4)), { type: 'SSLRequest' });
    const cancel = serialize.cancel(4242, -559038737);
    assert.deepEqual(parseStartupFamily(cancel.subarray(4)), {
      type: 'CancelRequest',
      processId: 4242,
      secretKey: Buffer.from([0xde, 0xad, 0xbe, 0xef]),
    });
  });

  it("decodes the 'p' messages: password, SASL initial response and SASL response", () => {
    const body = (bytes: Buffer) => {
      assert.equal(bytes[0], Code.Password);
      return new Reader(bytes.subarray(5));
    };
    assert.deepEqual(parsePasswordFamily(body(serialize.password('s3cret')), 'PasswordMessage'), {
      type: 'PasswordMessage',
      password: 's3cret',
    });
    const initial = serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', 'n,,n=*,r=nonce');
    assert.deepEqual(parsePasswordFamily(body(initial), 'SASLInitialResponse'), {
      type: 'SASLInitialResponse',
      mechanism: 'SCRAM-SHA-256',
      data: Buffer.from('n,,n=*,r=nonce'),
    });
    const final = serialize.sendSCRAMClientFinalMessage('c=biws,r=nonce,p=proof');
    assert.deepEqual(parsePasswordFamily(body(final), 'SASLResponse'), {
      type: 'SASLResponse',
      data: Buffer.from('c=biws,r=nonce,p=proof'),
    });
  });

  it('frames a whole pg-protocol extended-query pipeline fed one byte at a time', () => {
    const frames = [
      serialize.parse({ name: 's', text: 'SELECT $1', types: [25] }),
      serialize.bind({ statement: 's', values: ['x', null] }),
      serialize.describe({ type: 'P' }),
      serialize.execute(),
      serialize.sync(),
      serialize.query('COPY t FROM STDIN'),
      serialize.copyData(Buffer.from('a\n')),
      serialize.copyDone(),
      serialize.end(),
    ];
    const framer = new Framer(1 << 20);
    framer.typed = true;
    const decoded: FrontendMessage[] = [];
    for (const chunk of bytewise(Buffer.concat(frames))) {
      framer.push(chunk, (type, buffer, _start, bodyStart, end) => {
        decoded.push(decodeFrontend(type, Buffer.from(buffer.subarray(bodyStart, end))));
      });
    }
    assert.deepEqual(
      decoded,
      frames.map((f) => decodeFrontendFrame(f)),
    );
    assert.deepEqual(
      decoded.map((m) => m.type),
      ['Parse', 'Bind', 'Describe', 'Execute', 'Sync', 'Query', 'CopyData', 'CopyDone', 'Terminate'],
    );
  });
});

describe('oracle: server bytes from encodeBackend parse with pg-protocol as the same fields', () => {
  it('RowDescription: names, table and type OIDs (unsigned), attribute numbers, sizes, modifiers, formats', () => {
    const parsed = viaOracle({
      type: 'RowDescription',
      fields: [
        {
          name: 'id',
          tableOid: 16384,
          columnAttribute: 1,
          typeOid: 23,
          typeSize: 4,
          typeModifier: -1,
          format: 0,
        },
        {
          name: 'naïve',
          tableOid: 3_000_000_000,
          columnAttribute: 2,
          typeOid: 4_000_000_000,
          typeSize: -1,
          typeModifier: 36,
          format: 1,
        },
      ],
    });
    assert.ok(parsed instanceof RowDescriptionMessage);
    assert.equal(parsed.fieldCount, 2);
    assert.deepEqual(
      parsed.fields.map((f) => [
        f.name,
        f.tableID,
        f.columnID,
        f.dataTypeID,
        f.dataTypeSize,
        f.dataTypeModifier,
        f.format,
      ]),
      [
        ['id', 16384, 1, 23, 4, -1, 'text'],
        ['naïve', 3_000_000_000, 2, 4_000_000_000, -1, 36, 'binary'],
      ],
    );
  });

  it('DataRow: NULL stays null, the empty value stays an empty string', () => {
    const parsed = viaOracle({
      type: 'DataRow',
      values: [Buffer.from('1'), null, Buffer.alloc(0), Buffer.from('żółw')],
    });
    assert.ok(parsed instanceof DataRowMessage);
    assert.deepEqual(parsed.fields, ['1', null, '', 'żółw']);
  });

  it('CommandComplete: the tag', () => {
    const parsed = viaOracle({ type: 'CommandComplete', tag: 'UPDATE 12' });
    assert.ok(parsed instanceof CommandCompleteMessage);
    assert.equal(parsed.text, 'UPDATE 12');
  });

  it('ReadyForQuery: each transaction status', () => {
    for (const status of ['I', 'T', 'E'] as const) {
      const parsed = viaOracle({ type: 'ReadyForQuery', status });
      assert.ok(parsed instanceof ReadyForQueryMessage);
      assert.equal(parsed.status, status);
    }
  });

  it('ErrorResponse: severity, SQLSTATE, message, detail, hint, position and the schema fields', () => {
    const parsed = viaOracle({
      type: 'ErrorResponse',
      fields: {
        S: 'ERROR',
        V: 'ERROR',
        C: '42501',
        M: 'permission denied for table payroll',
        D: 'policy "hr-only" denies SELECT',
        H: 'request access in #data',
        P: '15',
        p: '3',
        q: 'SELECT 1',
        W: 'PL/pgSQL function f()',
        s: 'public',
        t: 'payroll',
        c: 'salary',
        d: 'numeric',
        n: 'payroll_pkey',
        F: 'aclchk.c',
        L: '3650',
        R: 'aclcheck_error',
      },
    });
    assert.ok(parsed instanceof DatabaseError);
    assert.deepEqual(
      {
        message: parsed.message,
        severity: parsed.severity,
        code: parsed.code,
        detail: parsed.detail,
        hint: parsed.hint,
        position: parsed.position,
        internalPosition: parsed.internalPosition,
        internalQuery: parsed.internalQuery,
        where: parsed.where,
        schema: parsed.schema,
        table: parsed.table,
        column: parsed.column,
        dataType: parsed.dataType,
        constraint: parsed.constraint,
        file: parsed.file,
        line: parsed.line,
        routine: parsed.routine,
      },
      {
        message: 'permission denied for table payroll',
        severity: 'ERROR',
        code: '42501',
        detail: 'policy "hr-only" denies SELECT',
        hint: 'request access in #data',
        position: '15',
        internalPosition: '3',
        internalQuery: 'SELECT 1',
        where: 'PL/pgSQL function f()',
        schema: 'public',
        table: 'payroll',
        column: 'salary',
        dataType: 'numeric',
        constraint: 'payroll_pkey',
        file: 'aclchk.c',
        line: '3650',
        routine: 'aclcheck_error',
      },
    );
  });

  it('NoticeResponse: severity, code and message', () => {
    const parsed = viaOracle({
      type: 'NoticeResponse',
      fields: { S: 'NOTICE', C: '00000', M: 'relation "t" already exists, skipping' },
    });
    assert.ok(parsed instanceof NoticeMessage);
    assert.deepEqual(
      [parsed.severity, parsed.code, parsed.message],
      ['NOTICE', '00000', 'relation "t" already exists, skipping'],
    );
  });

  it('NotificationResponse: process id, channel and payload', () => {
    const parsed = viaOracle({
      type: 'NotificationResponse',
      processId: 31337,
      channel: 'audit',
      payload: '{"n":1}',
    });
    assert.ok(parsed instanceof NotificationResponseMessage);
    assert.deepEqual([parsed.processId, parsed.channel, parsed.payload], [31337, 'audit', '{"n":1}']);
  });

  it('ParameterStatus: name and value', () => {
    const parsed = viaOracle({ type: 'ParameterStatus', name: 'server_encoding', value: 'UTF8' });
    assert.ok(parsed instanceof ParameterStatusMessage);
    assert.deepEqual([parsed.parameterName, parsed.parameterValue], ['server_encoding', 'UTF8']);
  });

  it('BackendKeyData with a protocol 3.0 four-byte key: process id and key as int32', () => {
    const parsed = viaOracle({
      type: 'BackendKeyData',
      processId: 4242,
      secretKey: Buffer.from([0xde, 0xad, 0xbe, 0xef]),
    });
    assert.ok(parsed instanceof BackendKeyDataMessage);
    assert.deepEqual(
      [parsed.processID, parsed.secretKey],
      [4242, Buffer.from([0xde, 0xad, 0xbe, 0xef]).readInt32BE(0)],
    );
  });

  it('AuthenticationOk, cleartext and MD5 (with its salt)', () => {
    assert.equal(viaOracle({ type: 'AuthenticationOk' }).name, 'authenticationOk');
    assert.equal(
      viaOracle({ type: 'AuthenticationCleartextPassword' }).name,
      'authenticationCleartextPassword',
    );
    const md5 = viaOracle({ type: 'AuthenticationMD5Password', salt: Buffer.from([1, 2, 3, 4]) });
    assert.ok(md5 instanceof AuthenticationMD5Password);
    assert.deepEqual(md5.salt, Buffer.from([1, 2, 3, 4]));
  });

  it('AuthenticationSASL, SASLContinue and SASLFinal: mechanisms and data', () => {
    const sasl = viaOracle({
      type: 'AuthenticationSASL',
      mechanisms: ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'],
    });
    assert.deepEqual(
      { ...sasl },
      {
        name: 'authenticationSASL',
        length: sasl.length,
        mechanisms: ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'],
      },
    );
    const serverFirst = 'r=cnonce+snonce,s=c2FsdA==,i=4096';
    const next = viaOracle({ type: 'AuthenticationSASLContinue', data: Buffer.from(serverFirst) });
    assert.deepEqual(
      { ...next },
      { name: 'authenticationSASLContinue', length: next.length, data: serverFirst },
    );
    const final = viaOracle({ type: 'AuthenticationSASLFinal', data: Buffer.from('v=c2lnbmF0dXJl') });
    assert.deepEqual(
      { ...final },
      { name: 'authenticationSASLFinal', length: final.length, data: 'v=c2lnbmF0dXJl' },
    );
  });

  it('CopyInResponse and CopyOutResponse: binary flag and column formats', () => {
    const copyIn = viaOracle({ type: 'CopyInResponse', format: 0, columnFormats: [0, 0, 0] });
    assert.ok(copyIn instanceof CopyResponse);
    assert.deepEqual([copyIn.name, copyIn.binary, copyIn.columnTypes], ['copyInResponse', false, [0, 0, 0]]);
    const copyOut = viaOracle({ type: 'CopyOutResponse', format: 1, columnFormats: [1, 1] });
    assert.ok(copyOut instanceof CopyResponse);
    assert.deepEqual([copyOut.name, copyOut.binary, copyOut.columnTypes], ['copyOutResponse', true, [1, 1]]);
  });

  it('CopyData and CopyDone', () => {
    const data = viaOracle({ type: 'CopyData', data: Buffer.from([0, 1, 2, 255]) });
    assert.ok(data instanceof CopyDataMessage);
    assert.deepEqual(data.chunk, Buffer.from([0, 1, 2, 255]));
    assert.equal(viaOracle({ type: 'CopyDone' }).name, 'copyDone');
  });

  it('ParameterDescription: type OIDs, unsigned', () => {
    const parsed = viaOracle({ type: 'ParameterDescription', typeOids: [23, 25, 4_294_967_295] });
    assert.ok(parsed instanceof ParameterDescriptionMessage);
    assert.deepEqual(parsed.dataTypeIDs, [23, 25, 4_294_967_295]);
  });

  it('the empty replies: ParseComplete, BindComplete, CloseComplete, NoData, PortalSuspended, EmptyQueryResponse', () => {
    const names = (
      [
        'ParseComplete',
        'BindComplete',
        'CloseComplete',
        'NoData',
        'PortalSuspended',
        'EmptyQueryResponse',
      ] as const
    ).map((type) => viaOracle({ type }).name);
    assert.deepEqual(names, [
      'parseComplete',
      'bindComplete',
      'closeComplete',
      'noData',
      'portalSuspended',
      'emptyQuery',
    ]);
  });

  it('a whole response stream, fed to pg-protocol one byte at a time, yields the same messages in order', () => {
    const stream = Buffer.concat(
      (
        [
          { type: 'AuthenticationOk' },
          { type: 'ParameterStatus', name: 'TimeZone', value: 'UTC' },
          { type: 'BackendKeyData', processId: 7, secretKey: Buffer.from([0, 0, 0, 9]) },
          { type: 'ReadyForQuery', status: 'I' },
          {
            type: 'RowDescription',
            fields: [
              {
                name: 'n',
                tableOid: 0,
                columnAttribute: 0,
                typeOid: 23,
                typeSize: 4,
                typeModifier: -1,
                format: 0,
              },
            ],
          },
          { type: 'DataRow', values: [Buffer.from('1')] },
          { type: 'DataRow', values: [null] },
          { type: 'CommandComplete', tag: 'SELECT 2' },
          { type: 'ReadyForQuery', status: 'T' },
        ] satisfies BackendMessage[]
      ).map((m) => encodeBackend(m)),
    );
    const whole = oracleParse(stream);
    const bytewiseParsed = oracleParse(stream, bytewise(stream));
    assert.deepEqual(
      bytewiseParsed.map((m) => m.name),
      [
        'authenticationOk',
        'parameterStatus',
        'backendKeyData',
        'readyForQuery',
        'rowDescription',
        'dataRow',
        'dataRow',
        'commandComplete',
        'readyForQuery',
      ],
    );
    assert.deepEqual(bytewiseParsed, whole);
  });
});
