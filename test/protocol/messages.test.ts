import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parsePasswordFamily, writePasswordFamily } from '../../src/protocol/postgres/auth.ts';
import {
  decodeBackend,
  decodeFrontend,
  encodeBackend,
  encodeFrontend,
} from '../../src/protocol/postgres/codec.ts';
import {
  type Authentication,
  type BackendMessage,
  CANCEL_REQUEST_CODE,
  Code,
  type FrontendMessage,
  GSSENC_REQUEST_CODE,
  type PasswordFamily,
  PROTOCOL_3_0,
  PROTOCOL_3_2,
  SSL_REQUEST_CODE,
  type StartupFamily,
} from '../../src/protocol/postgres/messages.ts';
import { Reader } from '../../src/protocol/postgres/reader.ts';
import { parseStartupFamily, writeStartupFamily } from '../../src/protocol/postgres/startup.ts';
import { Writer } from '../../src/protocol/postgres/writer.ts';
import { assertViolation, body, decodeBackendFrame, decodeFrontendFrame } from './support.ts';

function roundTripFrontend(message: FrontendMessage): Buffer {
  const bytes = encodeFrontend(message);
  assert.deepEqual(decodeFrontendFrame(bytes), message);
  return bytes;
}

function roundTripBackend(message: BackendMessage): Buffer {
  const bytes = encodeBackend(message);
  assert.deepEqual(decodeBackendFrame(bytes), message);
  return bytes;
}

function encodeStartup(message: StartupFamily): Buffer {
  return writeStartupFamily(new Writer(), message).flush();
}

function roundTripStartup(message: StartupFamily): Buffer {
  const bytes = encodeStartup(message);
  assert.equal(
    bytes.readInt32BE(0),
    bytes.length,
    'a startup packet length counts itself and has no type byte',
  );
  assert.deepEqual(parseStartupFamily(bytes.subarray(4)), message);
  return bytes;
}

function roundTripPassword(message: PasswordFamily): Buffer {
  const bytes = writePasswordFamily(new Writer(), message).flush();
  assert.equal(bytes[0], Code.Password);
  assert.equal(bytes.readInt32BE(1), bytes.length - 1);
  assert.deepEqual(parsePasswordFamily(new Reader(bytes.subarray(5)), message.type), message);
  return bytes;
}

const cancelBody = (keyLength: number) =>
  body((w) => w.int32(CANCEL_REQUEST_CODE).int32(4242).bytes(Buffer.alloc(keyLength, 7)));

const keyDataBody = (keyLength: number) => body((w) => w.int32(4242).bytes(Buffer.alloc(keyLength, 9)));

describe('startup family (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest, and the server side of startup)', () => {
  it('round-trips a protocol 3.0 StartupMessage with its parameters in order', () => {
    const bytes = roundTripStartup({
      type: 'StartupMessage',
      major: 3,
      minor: 0,
      parameters: [
        ['user', 'alice'],
        ['database', 'ledger'],
        ['application_name', 'psql ✓'],
        ['options', ''],
      ],
    });
    assert.equal(bytes.readInt32BE(4), PROTOCOL_3_0);
  });

  it('round-trips a StartupMessage without parameters', () => {
    roundTripStartup({ type: 'StartupMessage', major: 3, minor: 0, parameters: [] });
  });

  it('decodes a protocol 3.2 StartupMessage (minor = 2) and keeps the minor version', () => {
    const content = body((w) => w.int32(PROTOCOL_3_2).cstring('user').cstring('bob').byte(0));
    assert.deepEqual(parseStartupFamily(content), {
      type: 'StartupMessage',
      major: 3,
      minor: 2,
      parameters: [['user', 'bob']],
    });
  });

  it('refuses protocol 2.0, which PostgreSQL no longer speaks', () => {
    const content = body((w) =>
      w
        .int32(2 << 16)
        .cstring('user')
        .cstring('bob')
        .byte(0),
    );
    assertViolation(() => parseStartupFamily(content), /unsupported frontend protocol 2\.0/);
  });

  it('refuses a StartupMessage whose parameter list lacks the final zero', () => {
    const content = body((w) => w.int32(PROTOCOL_3_0).cstring('user').cstring('bob'));
    assertViolation(() => parseStartupFamily(content), /terminating zero/);
  });

  it('refuses a parameter name without a value', () => {
    const content = body((w) => w.int32(PROTOCOL_3_0).cstring('user'));
    assertViolation(() => parseStartupFamily(content));
  });

  it('refuses bytes after the final zero of a StartupMessage', () => {
    const content = body((w) => w.int32(PROTOCOL_3_0).byte(0).byte(1));
    assertViolation(() => parseStartupFamily(content), /trailing/);
  });

  it('refuses a startup packet too short to hold its code', () => {
    assertViolation(() => parseStartupFamily(Buffer.from([0, 3])));
  });

  it('round-trips SSLRequest and GSSENCRequest and refuses them with trailing bytes', () => {
    assert.equal(roundTripStartup({ type: 'SSLRequest' }).length, 8);
    assert.equal(roundTripStartup({ type: 'GSSENCRequest' }).length, 8);
    assertViolation(() => parseStartupFamily(body((w) => w.int32(SSL_REQUEST_CODE).byte(0))), /SSLRequest/);
    assertViolation(
      () => parseStartupFamily(body((w) => w.int32(GSSENC_REQUEST_CODE).byte(0))),
      /GSSENCRequest/,
    );
  });

  it('round-trips a protocol 3.0 CancelRequest with a 4-byte key (16-byte packet)', () => {
    const bytes = roundTripStartup({
      type: 'CancelRequest',
      processId: 1234,
      secretKey: Buffer.from([1, 2, 3, 4]),
    });
    assert.equal(bytes.length, 16);
  });

  it('accepts CancelRequest keys of 4 and 256 bytes (protocol 3.2 range)', () => {
    for (const size of [4, 256]) {
      const message = parseStartupFamily(cancelBody(size));
      assert.equal(message.type, 'CancelRequest');
      assert.equal(message.type === 'CancelRequest' && message.secretKey.length, size);
    }
    roundTripStartup({ type: 'CancelRequest', processId: -1, secretKey: Buffer.alloc(256, 0xee) });
  });

  it('refuses CancelRequest keys of 0, 3 and 257 bytes', () => {
    for (const size of [0, 3, 257]) {
      assertViolation(() => parseStartupFamily(cancelBody(size)), new RegExp(`key of ${size} bytes`));
    }
  });

  it('accepts BackendKeyData keys of 4 and 256 bytes and refuses 3 and 257', () => {
    for (const size of [4, 256]) {
      roundTripBackend({ type: 'BackendKeyData', processId: 77, secretKey: Buffer.alloc(size, 9) });
      assert.equal(decodeBackend(Code.BackendKeyData, keyDataBody(size)).type, 'BackendKeyData');
    }
    for (const size of [3, 257]) {
      assertViolation(() => decodeBackend(Code.BackendKeyData, keyDataBody(size)), /BackendKeyData key/);
    }
  });

  it('round-trips ParameterStatus and refuses one without its value', () => {
    roundTripBackend({ type: 'ParameterStatus', name: 'server_version', value: '18.1' });
    roundTripBackend({ type: 'ParameterStatus', name: 'application_name', value: '' });
    assertViolation(() =>
      decodeBackend(
        Code.ParameterStatus,
        body((w) => w.cstring('TimeZone')),
      ),
    );
  });

  it('round-trips NegotiateProtocolVersion with and without unrecognised options', () => {
    roundTripBackend({ type: 'NegotiateProtocolVersion', newestMinor: 0, unrecognized: [] });
    roundTripBackend({
      type: 'NegotiateProtocolVersion',
      newestMinor: 2,
      unrecognized: ['_pq_.compression', '_pq_.other'],
    });
  });

  it('refuses NegotiateProtocolVersion with a negative or overstated option count', () => {
    const negative = body((w) => w.int32(0).int32(-1));
    assertViolation(() => decodeBackend(Code.NegotiateProtocolVersion, negative), /negative option count/);
    const overstated = body((w) => w.int32(0).int32(2).cstring('_pq_.one'));
    assertViolation(() => decodeBackend(Code.NegotiateProtocolVersion, overstated));
  });
});

describe('authentication family (R requests and the p responses)', () => {
  const requests: Authentication[] = [
    { type: 'AuthenticationOk' },
    { type: 'AuthenticationKerberosV5' },
    { type: 'AuthenticationCleartextPassword' },
    { type: 'AuthenticationMD5Password', salt: Buffer.from([0xde, 0xad, 0xbe, 0xef]) },
    { type: 'AuthenticationGSS' },
    { type: 'AuthenticationGSSContinue', data: Buffer.from([0, 1, 2, 0]) },
    { type: 'AuthenticationSSPI' },
    { type: 'AuthenticationSASL', mechanisms: ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'] },
    { type: 'AuthenticationSASL', mechanisms: [] },
    { type: 'AuthenticationSASLContinue', data: Buffer.from('r=abc,s=c2FsdA==,i=4096') },
    { type: 'AuthenticationSASLFinal', data: Buffer.from('v=c2lnbmF0dXJl') },
    { type: 'AuthenticationSASLFinal', data: Buffer.alloc(0) },
  ];
  for (const request of requests) {
    it(`round-trips ${request.type}${'mechanisms' in request && request.mechanisms.length === 0 ? ' with no mechanisms' : ''}`, () => {
      roundTripBackend(request);
    });
  }

  it('writes the request codes of the documentation (Ok 0, cleartext 3, MD5 5, SASL 10, final 12)', () => {
    const code = (m: Authentication) => encodeBackend(m).readInt32BE(5);
    assert.equal(code({ type: 'AuthenticationOk' }), 0);
    assert.equal(code({ type: 'AuthenticationCleartextPassword' }), 3);
    assert.equal(code({ type: 'AuthenticationMD5Password', salt: Buffer.alloc(4) }), 5);
    assert.equal(code({ type: 'AuthenticationSASL', mechanisms: [] }), 10);
    assert.equal(code({ type: 'AuthenticationSASLFinal', data: Buffer.alloc(0) }), 12);
  });

  it('refuses an unknown authentication request code', () => {
    assertViolation(
      () =>
        decodeBackend(
          Code.Authentication,
          body((w) => w.int32(4)),
        ),
      /unknown authentication request 4/,
    );
  });

  it('refuses an MD5 request with a salt of 3 or 5 bytes', () => {
    assertViolation(() =>
      decodeBackend(
        Code.Authentication,
        body((w) => w.int32(5).bytes(Buffer.alloc(3))),
      ),
    );
    assertViolation(
      () =>
        decodeBackend(
          Code.Authentication,
          body((w) => w.int32(5).bytes(Buffer.alloc(5))),
        ),
      /trailing/,
    );
  });

  it('refuses AuthenticationOk with trailing bytes', () => {
    assertViolation(
      () =>
        decodeBackend(
          Code.Authentication,
          body((w) => w.int32(0).byte(0)),
        ),
      /AuthenticationOk/,
    );
  });

  it('refuses a SASL mechanism list without its final zero', () => {
    const content = body((w) => w.int32(10).cstring('SCRAM-SHA-256'));
    assertViolation(() => decodeBackend(Code.Authentication, content), /terminating zero/);
  });

  it('refuses an empty Authentication body', () => {
    assertViolation(() => decodeBackend(Code.Authentication, Buffer.alloc(0)));
  });

  it('round-trips a PasswordMessage (cleartext or md5 hash)', () => {
    roundTripPassword({ type: 'PasswordMessage', password: 'md5a3556571e93b0d20722ba62be61e8c2d' });
  });

  it('round-trips SASLInitialResponse with data, with empty data and with NULL data, keeping empty and NULL apart', () => {
    roundTripPassword({
      type: 'SASLInitialResponse',
      mechanism: 'SCRAM-SHA-256',
      data: Buffer.from('n,,n=,r=nonce'),
    });
    const empty = roundTripPassword({
      type: 'SASLInitialResponse',
      mechanism: 'SCRAM-SHA-256',
      data: Buffer.alloc(0),
    });
    const nul = roundTripPassword({ type: 'SASLInitialResponse', mechanism: 'SCRAM-SHA-256', data: null });
    assert.equal(empty.readInt32BE(empty.length - 4), 0);
    assert.equal(nul.readInt32BE(nul.length - 4), -1);
  });

  it('round-trips a SASLResponse, whose body is the raw data', () => {
    roundTripPassword({ type: 'SASLResponse', data: Buffer.from('c=biws,r=nonce,p=proof') });
  });

  it('refuses a PasswordMessage without its terminating zero or with trailing bytes', () => {
    assertViolation(() => parsePasswordFamily(new Reader(Buffer.from('secret')), 'PasswordMessage'));
    const trailing = body((w) => w.cstring('secret').byte(1));
    assertViolation(() => parsePasswordFamily(new Reader(trailing), 'PasswordMessage'), /trailing/);
  });

  it('refuses a SASLInitialResponse whose data length runs past the message', () => {
    const content = body((w) => w.cstring('SCRAM-SHA-256').int32(100).bytes(Buffer.from('n,,')));
    assertViolation(() => parsePasswordFamily(new Reader(content), 'SASLInitialResponse'));
  });

  it("refuses to guess the meaning of a 'p' message in decodeFrontend: only the auth exchange knows it", () => {
    assertViolation(
      () =>
        decodeFrontend(
          Code.Password,
          body((w) => w.cstring('secret')),
        ),
      /'p'/,
    );
  });
});

describe('simple query and results (Query, RowDescription, DataRow, CommandComplete, ReadyForQuery)', () => {
  it('round-trips a Query, including an empty one and non-ASCII text', () => {
    roundTripFrontend({ type: 'Query', sql: 'SELECT 1; SELECT 2' });
    roundTripFrontend({ type: 'Query', sql: '' });
    roundTripFrontend({ type: 'Query', sql: "SELECT 'żółw 🐢'" });
  });

  it('refuses a Query without a terminating zero or with bytes after it', () => {
    assertViolation(() => decodeFrontend(Code.Query, Buffer.from('SELECT 1')), /terminating zero/);
    assertViolation(
      () =>
        decodeFrontend(
          Code.Query,
          body((w) => w.cstring('SELECT 1').cstring('x')),
        ),
      /Query/,
    );
  });

  it('round-trips a RowDescription with unsigned OIDs, negative sizes and both formats', () => {
    roundTripBackend({
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
          name: 'payload',
          tableOid: 4_294_967_295,
          columnAttribute: -7,
          typeOid: 3_000_000_000,
          typeSize: -1,
          typeModifier: 68,
          format: 1,
        },
      ],
    });
    roundTripBackend({ type: 'RowDescription', fields: [] });
  });

  it('refuses a RowDescription with format code 2', () => {
    const content = body((w) =>
      w.int16(1).cstring('a').uint32(0).int16(0).uint32(23).int16(4).int32(-1).int16(2),
    );
    assertViolation(() => decodeBackend(Code.RowDescription, content), /invalid format code 2/);
  });

  it('refuses a RowDescription with a negative field count or a truncated field', () => {
    assertViolation(
      () =>
        decodeBackend(
          Code.RowDescription,
          body((w) => w.int16(-1)),
        ),
      /negative field count/,
    );
    const truncated = body((w) => w.int16(1).cstring('a').uint32(0).int16(0).uint32(23).int16(4));
    assertViolation(() => decodeBackend(Code.RowDescription, truncated));
  });

  it('round-trips a DataRow keeping NULL and the empty string apart', () => {
    const bytes = roundTripBackend({
      type: 'DataRow',
      values: [null, Buffer.alloc(0), Buffer.from('abc'), Buffer.from([0, 0xff])],
    });
    const decoded = decodeBackendFrame(bytes);
    assert.ok(decoded.type === 'DataRow');
    assert.equal(decoded.values[0], null);
    assert.notEqual(decoded.values[1], null);
    assert.equal(decoded.values[1]?.length, 0);
    roundTripBackend({ type: 'DataRow', values: [] });
  });

  it('refuses a DataRow whose value length is -2, runs past the message, or whose count overstates the values', () => {
    assertViolation(
      () =>
        decodeBackend(
          Code.DataRow,
          body((w) => w.int16(1).int32(-2)),
        ),
      /invalid value length -2/,
    );
    const longValue = body((w) => w.int16(1).int32(10).bytes(Buffer.from('abc')));
    assertViolation(() => decodeBackend(Code.DataRow, longValue));
    const overstated = body((w) => w.int16(3).nullableBytes(Buffer.from('a')).nullableBytes(null));
    assertViolation(() => decodeBackend(Code.DataRow, overstated));
    assertViolation(
      () =>
        decodeBackend(
          Code.DataRow,
          body((w) => w.int16(-1)),
        ),
      /negative column count/,
    );
  });

  it('refuses a DataRow with a value left over after the counted columns', () => {
    const extra = body((w) => w.int16(1).nullableBytes(Buffer.from('a')).nullableBytes(Buffer.from('b')));
    assertViolation(() => decodeBackend(Code.DataRow, extra), /DataRow/);
  });

  it('round-trips CommandComplete and EmptyQueryResponse', () => {
    roundTripBackend({ type: 'CommandComplete', tag: 'INSERT 0 1' });
    roundTripBackend({ type: 'CommandComplete', tag: 'SELECT 1000000' });
    roundTripBackend({ type: 'EmptyQueryResponse' });
  });

  it('refuses a CommandComplete without its terminating zero', () => {
    assertViolation(() => decodeBackend(Code.CommandComplete, Buffer.from('SELECT 1')));
  });

  it('round-trips ReadyForQuery in each transaction status (I, T, E)', () => {
    for (const status of ['I', 'T', 'E'] as const) {
      const bytes = roundTripBackend({ type: 'ReadyForQuery', status });
      assert.deepEqual(bytes, Buffer.from([Code.ReadyForQuery, 0, 0, 0, 5, status.charCodeAt(0)]));
    }
  });

  it('refuses ReadyForQuery with an unknown transaction status, no status, or two bytes', () => {
    assertViolation(
      () => decodeBackend(Code.ReadyForQuery, Buffer.from('X')),
      /invalid transaction status "X"/,
    );
    assertViolation(() => decodeBackend(Code.ReadyForQuery, Buffer.alloc(0)));
    assertViolation(() => decodeBackend(Code.ReadyForQuery, Buffer.from('II')), /trailing/);
  });
});

describe('extended query (Parse, Bind, Describe, Execute, Close, Sync, Flush and their replies)', () => {
  it('round-trips Parse with named and unnamed statements and unsigned type OIDs', () => {
    roundTripFrontend({
      type: 'Parse',
      name: 'stmt_1',
      sql: 'SELECT $1::int, $2',
      parameterTypes: [23, 0, 4_294_967_295],
    });
    roundTripFrontend({ type: 'Parse', name: '', sql: 'SELECT 1', parameterTypes: [] });
  });

  it('refuses a Parse whose type count overstates the OIDs present', () => {
    const content = body((w) => w.cstring('').cstring('SELECT $1').int16(2).uint32(23));
    assertViolation(() => decodeFrontend(Code.Parse, content));
  });

  it('round-trips Bind with text, binary, empty and NULL parameters', () => {
    roundTripFrontend({
      type: 'Bind',
      portal: 'p1',
      statement: 'stmt_1',
      parameterFormats: [0, 1, 0, 0],
      parameters: [Buffer.from('42'), Buffer.from([0, 0, 0, 42]), Buffer.alloc(0), null],
      resultFormats: [1],
    });
    roundTripFrontend({
      type: 'Bind',
      portal: '',
      statement: '',
      parameterFormats: [],
      parameters: [],
      resultFormats: [],
    });
  });

  it('keeps a NULL parameter (-1) apart from an empty one (0) in Bind', () => {
    const bytes = encodeFrontend({
      type: 'Bind',
      portal: '',
      statement: '',
      parameterFormats: [],
      parameters: [null, Buffer.alloc(0)],
      resultFormats: [],
    });
    const decoded = decodeFrontendFrame(bytes);
    assert.ok(decoded.type === 'Bind');
    assert.equal(decoded.parameters[0], null);
    assert.deepEqual(decoded.parameters[1], Buffer.alloc(0));
  });

  it('round-trips a Bind with 40000 parameters, as PostgreSQL reads the counts as unsigned 16-bit', () => {
    const parameters = Array.from({ length: 40_000 }, (_, i) =>
      i % 3 === 0 ? null : Buffer.from(String(i)),
    );
    roundTripFrontend({
      type: 'Bind',
      portal: '',
      statement: 'bulk',
      parameterFormats: parameters.map(() => 0 as const),
      parameters,
      resultFormats: [0],
    });
  });

  it('round-trips a Parse with 40000 parameter types', () => {
    roundTripFrontend({
      type: 'Parse',
      name: 'bulk',
      sql: 'INSERT …',
      parameterTypes: Array(40_000).fill(25),
    });
  });

  it('reads a value count of 0xFFFF as 65535 (not -1) and so refuses a Bind that lacks those values', () => {
    const content = body((w) => w.cstring('').cstring('').uint16(0).uint16(0xffff).uint16(0));
    assertViolation(() => decodeFrontend(Code.Bind, content), /int32 needs 4 bytes/);
  });

  it('refuses a Bind with parameter format code 2 or result format code -1', () => {
    const badParam = body((w) => w.cstring('').cstring('').int16(1).int16(2).int16(0).int16(0));
    assertViolation(() => decodeFrontend(Code.Bind, badParam), /invalid format code 2/);
    const badResult = body((w) => w.cstring('').cstring('').int16(0).int16(0).int16(1).int16(-1));
    assertViolation(() => decodeFrontend(Code.Bind, badResult), /invalid format code -1/);
  });

  it('refuses a Bind whose parameter runs past the message or that is cut before the result formats', () => {
    const long = body((w) => w.cstring('').cstring('').int16(0).int16(1).int32(100).bytes(Buffer.from('x')));
    assertViolation(() => decodeFrontend(Code.Bind, long));
    const cut = body((w) => w.cstring('').cstring('').int16(0).int16(0));
    assertViolation(() => decodeFrontend(Code.Bind, cut));
  });

  it('round-trips Describe and Close for statements and portals', () => {
    for (const target of ['S', 'P'] as const) {
      roundTripFrontend({ type: 'Describe', target, name: 'x' });
      roundTripFrontend({ type: 'Describe', target, name: '' });
      roundTripFrontend({ type: 'Close', target, name: 'x' });
      roundTripFrontend({ type: 'Close', target, name: '' });
    }
  });

  it("refuses Describe and Close with a target other than 'S' or 'P'", () => {
    const content = body((w) => w.byte(0x58).cstring('x'));
    assertViolation(() => decodeFrontend(Code.Describe, content), /invalid target "X"/);
    assertViolation(() => decodeFrontend(Code.Close, content), /invalid target "X"/);
  });

  it('round-trips Execute with no row limit and with a limit', () => {
    roundTripFrontend({ type: 'Execute', portal: '', maxRows: 0 });
    roundTripFrontend({ type: 'Execute', portal: 'cursor', maxRows: 100 });
  });

  it('refuses an Execute missing its row limit', () => {
    assertViolation(() =>
      decodeFrontend(
        Code.Execute,
        body((w) => w.cstring('p').int16(0)),
      ),
    );
  });

  it('round-trips Sync, Flush and Terminate as 5-byte frames and refuses them with a body', () => {
    for (const type of ['Sync', 'Flush', 'Terminate'] as const) {
      assert.equal(roundTripFrontend({ type }).length, 5);
      assertViolation(() => decodeFrontend(Code[type], Buffer.from([0])), new RegExp(type));
    }
  });

  it('round-trips ParseComplete, BindComplete, CloseComplete, NoData and PortalSuspended, refusing trailing bytes', () => {
    for (const type of [
      'ParseComplete',
      'BindComplete',
      'CloseComplete',
      'NoData',
      'PortalSuspended',
    ] as const) {
      assert.equal(roundTripBackend({ type }).length, 5);
      assertViolation(() => decodeBackend(Code[type], Buffer.from([1])), new RegExp(type));
    }
  });

  it('round-trips ParameterDescription, including unsigned OIDs and an empty list', () => {
    roundTripBackend({ type: 'ParameterDescription', typeOids: [23, 25, 4_294_967_295] });
    roundTripBackend({ type: 'ParameterDescription', typeOids: [] });
  });

  it('round-trips a ParameterDescription of 40000 parameters (count is unsigned 16-bit)', () => {
    roundTripBackend({ type: 'ParameterDescription', typeOids: Array(40_000).fill(23) });
  });

  it('refuses a ParameterDescription with fewer OIDs than counted', () => {
    assertViolation(() =>
      decodeBackend(
        Code.ParameterDescription,
        body((w) => w.int16(2).uint32(23)),
      ),
    );
  });
});

describe('COPY (CopyIn/Out/BothResponse, CopyData, CopyDone, CopyFail)', () => {
  for (const type of ['CopyInResponse', 'CopyOutResponse', 'CopyBothResponse'] as const) {
    it(`round-trips ${type} in text and binary`, () => {
      roundTripBackend({ type, format: 0, columnFormats: [0, 0, 0] });
      roundTripBackend({ type, format: 1, columnFormats: [1, 1] });
      roundTripBackend({ type, format: 0, columnFormats: [] });
    });
  }

  it('writes the overall COPY format as one byte and the column formats as int16', () => {
    const bytes = encodeBackend({ type: 'CopyOutResponse', format: 1, columnFormats: [1] });
    assert.deepEqual(
      bytes.subarray(5),
      body((w) => w.byte(1).int16(1).int16(1)),
    );
  });

  it('refuses a COPY response with overall format 2 or column format 2', () => {
    assertViolation(
      () =>
        decodeBackend(
          Code.CopyInResponse,
          body((w) => w.byte(2).int16(0)),
        ),
      /invalid copy format 2/,
    );
    const badColumn = body((w) => w.byte(0).int16(1).int16(2));
    assertViolation(() => decodeBackend(Code.CopyOutResponse, badColumn), /invalid format code 2/);
  });

  it('refuses a COPY response cut before its column formats', () => {
    assertViolation(() =>
      decodeBackend(
        Code.CopyInResponse,
        body((w) => w.byte(0).int16(2).int16(0)),
      ),
    );
  });

  it('round-trips CopyData in both directions with any bytes, zeros included, and empty', () => {
    const data = Buffer.from([0, 1, 2, 0, 255, 10]);
    roundTripFrontend({ type: 'CopyData', data });
    roundTripBackend({ type: 'CopyData', data });
    roundTripFrontend({ type: 'CopyData', data: Buffer.alloc(0) });
  });

  it('round-trips CopyDone in both directions and refuses it with a body', () => {
    roundTripFrontend({ type: 'CopyDone' });
    roundTripBackend({ type: 'CopyDone' });
    assertViolation(() => decodeFrontend(Code.CopyDone, Buffer.from([0])), /CopyDone/);
    assertViolation(() => decodeBackend(Code.CopyDone, Buffer.from([0])), /CopyDone/);
  });

  it('round-trips CopyFail and refuses one without its terminating zero', () => {
    roundTripFrontend({ type: 'CopyFail', message: 'client aborted: bad row 12' });
    assertViolation(() => decodeFrontend(Code.CopyFail, Buffer.from('aborted')), /terminating zero/);
  });
});

describe('function call (FunctionCall, FunctionCallResponse)', () => {
  it('round-trips a FunctionCall with binary, NULL and empty arguments', () => {
    roundTripFrontend({
      type: 'FunctionCall',
      functionOid: 2_147_483_648,
      argumentFormats: [1],
      arguments: [Buffer.from([0, 0, 0, 1]), null, Buffer.alloc(0)],
      resultFormat: 1,
    });
    roundTripFrontend({
      type: 'FunctionCall',
      functionOid: 1,
      argumentFormats: [],
      arguments: [],
      resultFormat: 0,
    });
  });

  it('refuses a FunctionCall with result format 2 or cut before its result format', () => {
    const bad = body((w) => w.uint32(1).int16(0).int16(0).int16(2));
    assertViolation(() => decodeFrontend(Code.FunctionCall, bad), /invalid format code 2/);
    const cut = body((w) => w.uint32(1).int16(0).int16(0));
    assertViolation(() => decodeFrontend(Code.FunctionCall, cut));
  });

  it('round-trips FunctionCallResponse with a value, an empty value and NULL, keeping NULL apart', () => {
    roundTripBackend({ type: 'FunctionCallResponse', value: Buffer.from('result') });
    const empty = roundTripBackend({ type: 'FunctionCallResponse', value: Buffer.alloc(0) });
    const nul = roundTripBackend({ type: 'FunctionCallResponse', value: null });
    assert.notDeepEqual(empty, nul);
  });

  it('refuses a FunctionCallResponse with trailing bytes', () => {
    assertViolation(
      () =>
        decodeBackend(
          Code.FunctionCallResponse,
          body((w) => w.int32(0).byte(0)),
        ),
      /trailing/,
    );
  });
});

describe('notices and notifications (ErrorResponse, NoticeResponse, NotificationResponse)', () => {
  const fields = {
    S: 'ERROR',
    V: 'ERROR',
    C: '42501',
    M: 'permission denied for table payroll',
    D: 'policy "no-hr" denies SELECT',
    H: 'ask #data-access',
    P: '15',
    W: 'SQL function "f" statement 1',
    s: 'public',
    t: 'payroll',
    c: 'salary',
    d: 'numeric',
    n: 'payroll_pkey',
    F: 'aclchk.c',
    L: '3650',
    R: 'aclcheck_error',
  };

  it('round-trips an ErrorResponse with every documented field', () => {
    roundTripBackend({ type: 'ErrorResponse', fields });
  });

  it('round-trips a NoticeResponse and one with no fields at all', () => {
    roundTripBackend({
      type: 'NoticeResponse',
      fields: { S: 'NOTICE', V: 'NOTICE', C: '00000', M: 'table exists' },
    });
    roundTripBackend({ type: 'NoticeResponse', fields: {} });
  });

  it('writes each field as its code byte and a string, ending with a zero byte', () => {
    const bytes = encodeBackend({ type: 'ErrorResponse', fields: { S: 'FATAL', C: '08P01' } });
    assert.deepEqual(
      bytes.subarray(5),
      body((w) => w.byte(0x53).cstring('FATAL').byte(0x43).cstring('08P01').byte(0)),
    );
  });

  it('refuses an ErrorResponse without the final zero byte or with a field value cut short', () => {
    const noEnd = body((w) => w.byte(0x53).cstring('ERROR'));
    assertViolation(() => decodeBackend(Code.ErrorResponse, noEnd));
    const cut = body((w) => w.byte(0x53).bytes(Buffer.from('ERR')));
    assertViolation(() => decodeBackend(Code.NoticeResponse, cut), /terminating zero/);
    const trailing = body((w) => w.byte(0).byte(0x53));
    assertViolation(() => decodeBackend(Code.ErrorResponse, trailing), /trailing/);
  });

  it('round-trips NotificationResponse with and without a payload', () => {
    roundTripBackend({
      type: 'NotificationResponse',
      processId: 31337,
      channel: 'audit',
      payload: '{"id":1}',
    });
    roundTripBackend({ type: 'NotificationResponse', processId: 1, channel: 'ping', payload: '' });
  });

  it('refuses a NotificationResponse without its payload', () => {
    assertViolation(() =>
      decodeBackend(
        Code.NotificationResponse,
        body((w) => w.int32(1).cstring('audit')),
      ),
    );
  });
});

describe('unknown type bytes', () => {
  it('refuses a frontend type byte that no client message uses, naming it', () => {
    assertViolation(() => decodeFrontend(0x5a, Buffer.alloc(0)), /unknown frontend message type 'Z'/);
    assertViolation(() => decodeFrontend(0x00, Buffer.alloc(0)), /unknown frontend message type 0x00/);
  });

  it('refuses a backend type byte that no server message uses, naming it', () => {
    assertViolation(() => decodeBackend(Code.Query, Buffer.alloc(0)), /unknown backend message type 'Q'/);
    assertViolation(() => decodeBackend(0xff, Buffer.alloc(0)), /unknown backend message type 0xff/);
  });
});
