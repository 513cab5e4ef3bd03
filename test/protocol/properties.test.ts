import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parsePasswordFamily, writePasswordFamily } from '../../src/protocol/postgres/auth.ts';
import {
  decodeBackend,
  decodeFrontend,
  encodeBackend,
  encodeFrontend,
} from '../../src/protocol/postgres/codec.ts';
import { Framer } from '../../src/protocol/postgres/framer.ts';
import type {
  Authentication,
  BackendMessage,
  Bind,
  CopyResponse,
  FieldDescription,
  Format,
  FrontendMessage,
  FunctionCall,
  NoticeFields,
  PasswordFamily,
  StartupFamily,
} from '../../src/protocol/postgres/messages.ts';
import { Code } from '../../src/protocol/postgres/messages.ts';
import { Reader } from '../../src/protocol/postgres/reader.ts';
import {
  MAX_STARTUP_PACKET,
  parseStartupFamily,
  writeStartupFamily,
} from '../../src/protocol/postgres/startup.ts';
import { Writer } from '../../src/protocol/postgres/writer.ts';
import {
  assertViolation,
  body,
  bytewise,
  decodeBackendFrame,
  decodeFrontendFrame,
  splitAt,
} from './support.ts';

// ---- arbitraries ----

/** Records with an ordinary prototype, like the decoder's (deepStrictEqual compares prototypes). */
function record<T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  return fc.record(model, { noNullPrototype: true }) as fc.Arbitrary<T>;
}

/** Any Unicode text a C string can carry: everything but the zero byte. */
const cstring = fc.string({ unit: 'binary', maxLength: 24 }).map((s) => s.replaceAll('\0', ''));
const nonEmptyCstring = cstring.filter((s) => s.length > 0);
const bytes = fc.uint8Array({ maxLength: 48 }).map((u) => Buffer.from(u));
const nullableBytes = fc.option(bytes, { nil: null, freq: 4 });
const format = fc.constantFrom<Format>(0, 1);
const int16 = fc.integer({ min: -0x8000, max: 0x7fff });
const int32 = fc.integer({ min: -0x80000000, max: 0x7fffffff });
const uint32 = fc.integer({ min: 0, max: 0xffffffff });
const target = fc.constantFrom<'S' | 'P'>('S', 'P');
const cancelKey = fc.uint8Array({ minLength: 4, maxLength: 256 }).map((u) => Buffer.from(u));
const noticeFields: fc.Arbitrary<NoticeFields> = fc
  .uniqueArray(
    fc.tuple(
      fc.integer({ min: 1, max: 0xff }).map((c) => String.fromCharCode(c)),
      cstring,
    ),
    {
      selector: ([code]) => code,
      maxLength: 8,
    },
  )
  .map((entries) => Object.fromEntries(entries));

const bind: fc.Arbitrary<Bind> = record({
  type: fc.constant('Bind'),
  portal: cstring,
  statement: cstring,
  parameterFormats: fc.array(format, { maxLength: 6 }),
  parameters: fc.array(nullableBytes, { maxLength: 6 }),
  resultFormats: fc.array(format, { maxLength: 6 }),
});

const functionCall: fc.Arbitrary<FunctionCall> = record({
  type: fc.constant('FunctionCall'),
  functionOid: uint32,
  argumentFormats: fc.array(format, { maxLength: 4 }),
  arguments: fc.array(nullableBytes, { maxLength: 4 }),
  resultFormat: format,
});

const frontendMessage: fc.Arbitrary<FrontendMessage> = fc.oneof(
  record({ type: fc.constant('Query'), sql: cstring }),
  record({
    type: fc.constant('Parse'),
    name: cstring,
    sql: cstring,
    parameterTypes: fc.array(uint32, { maxLength: 6 }),
  }),
  bind,
  record({ type: fc.constant('Describe'), target, name: cstring }),
  record({ type: fc.constant('Execute'), portal: cstring, maxRows: int32 }),
  record({ type: fc.constant('Close'), target, name: cstring }),
  fc.constant({ type: 'Sync' } as const),
  fc.constant({ type: 'Flush' } as const),
  fc.constant({ type: 'Terminate' } as const),
  record({ type: fc.constant('CopyData'), data: bytes }),
  fc.constant({ type: 'CopyDone' } as const),
  record({ type: fc.constant('CopyFail'), message: cstring }),
  functionCall,
);

const startupFamily: fc.Arbitrary<StartupFamily> = fc.oneof(
  record({
    type: fc.constant('StartupMessage'),
    major: fc.constant(3),
    minor: fc.integer({ min: 0, max: 0xffff }),
    parameters: fc.array(fc.tuple(nonEmptyCstring, cstring), { maxLength: 5 }),
  }),
  fc.constant({ type: 'SSLRequest' } as const),
  fc.constant({ type: 'GSSENCRequest' } as const),
  record({ type: fc.constant('CancelRequest'), processId: int32, secretKey: cancelKey }),
);

const passwordFamily: fc.Arbitrary<PasswordFamily> = fc.oneof(
  record({ type: fc.constant('PasswordMessage'), password: cstring }),
  record({ type: fc.constant('SASLInitialResponse'), mechanism: cstring, data: nullableBytes }),
  record({ type: fc.constant('SASLResponse'), data: bytes }),
);

const authentication: fc.Arbitrary<Authentication> = fc.oneof(
  fc.constantFrom<Authentication>(
    { type: 'AuthenticationOk' },
    { type: 'AuthenticationKerberosV5' },
    { type: 'AuthenticationCleartextPassword' },
    { type: 'AuthenticationGSS' },
    { type: 'AuthenticationSSPI' },
  ),
  record({
    type: fc.constant('AuthenticationMD5Password'),
    salt: fc.uint8Array({ minLength: 4, maxLength: 4 }).map((u) => Buffer.from(u)),
  }),
  record({ type: fc.constant('AuthenticationGSSContinue'), data: bytes }),
  record({
    type: fc.constant('AuthenticationSASL'),
    mechanisms: fc.array(nonEmptyCstring, { maxLength: 3 }),
  }),
  record({ type: fc.constant('AuthenticationSASLContinue'), data: bytes }),
  record({ type: fc.constant('AuthenticationSASLFinal'), data: bytes }),
);

const fieldDescription: fc.Arbitrary<FieldDescription> = record({
  name: cstring,
  tableOid: uint32,
  columnAttribute: int16,
  typeOid: uint32,
  typeSize: int16,
  typeModifier: int32,
  format,
});

const copyResponse: fc.Arbitrary<CopyResponse> = record({
  type: fc.constantFrom('CopyInResponse', 'CopyOutResponse', 'CopyBothResponse'),
  format,
  columnFormats: fc.array(format, { maxLength: 6 }),
});

const backendMessage: fc.Arbitrary<BackendMessage> = fc.oneof(
  authentication,
  record({ type: fc.constant('BackendKeyData'), processId: int32, secretKey: cancelKey }),
  record({
    type: fc.constant('NegotiateProtocolVersion'),
    newestMinor: int32,
    unrecognized: fc.array(cstring, { maxLength: 4 }),
  }),
  record({ type: fc.constant('ParameterStatus'), name: cstring, value: cstring }),
  record({ type: fc.constant('ReadyForQuery'), status: fc.constantFrom('I', 'T', 'E') }),
  record({ type: fc.constant('ErrorResponse'), fields: noticeFields }),
  record({ type: fc.constant('NoticeResponse'), fields: noticeFields }),
  record({ type: fc.constant('NotificationResponse'), processId: int32, channel: cstring, payload: cstring }),
  record({ type: fc.constant('RowDescription'), fields: fc.array(fieldDescription, { maxLength: 5 }) }),
  record({ type: fc.constant('DataRow'), values: fc.array(nullableBytes, { maxLength: 8 }) }),
  record({ type: fc.constant('CommandComplete'), tag: cstring }),
  record({ type: fc.constant('ParameterDescription'), typeOids: fc.array(uint32, { maxLength: 6 }) }),
  copyResponse,
  record({ type: fc.constant('CopyData'), data: bytes }),
  record({ type: fc.constant('FunctionCallResponse'), value: nullableBytes }),
  fc.constantFrom<BackendMessage>(
    { type: 'CopyDone' },
    { type: 'EmptyQueryResponse' },
    { type: 'ParseComplete' },
    { type: 'BindComplete' },
    { type: 'CloseComplete' },
    { type: 'NoData' },
    { type: 'PortalSuspended' },
  ),
);

/** Offsets into a stream, as seeds reduced modulo its length once the stream is known. */
const cutSeeds = fc.array(fc.nat(), { maxLength: 24 });

// ---- helpers ----

interface Frame {
  readonly type: number;
  readonly bytes: Buffer;
  readonly body: Buffer;
}

/** Feeds the chunks one by one and copies each frame out (the framer's buffer is only valid during the call). */
function feed(framer: Framer, chunks: readonly Buffer[], afterFrame?: (frame: Frame) => void): Frame[] {
  const frames: Frame[] = [];
  for (const chunk of chunks) {
    framer.push(chunk, (type, buffer, start, bodyStart, end) => {
      const frame = {
        type,
        bytes: Buffer.from(buffer.subarray(start, end)),
        body: Buffer.from(buffer.subarray(bodyStart, end)),
      };
      frames.push(frame);
      afterFrame?.(frame);
    });
  }
  return frames;
}

/** The stream cut at offsets drawn from the seeds. */
function chunks(stream: Buffer, seeds: readonly number[]): Buffer[] {
  return splitAt(
    stream,
    seeds.map((seed) => seed % (stream.length + 1)),
  );
}

function typedFramer(max = 1 << 20): Framer {
  const framer = new Framer(max);
  framer.typed = true;
  return framer;
}

function encodeStartup(message: StartupFamily): Buffer {
  return writeStartupFamily(new Writer(), message).flush();
}

// ---- properties ----

describe('round trip of every message', () => {
  it('decodes every encoded FrontendMessage to an equal message, and re-encodes it to the same bytes', () => {
    fc.assert(
      fc.property(frontendMessage, (message) => {
        const encoded = encodeFrontend(message);
        const decoded = decodeFrontendFrame(encoded);
        assert.deepEqual(decoded, message);
        assert.deepEqual(encodeFrontend(decoded), encoded);
      }),
      { numRuns: 500 },
    );
  });

  it('decodes every encoded BackendMessage to an equal message, and re-encodes it to the same bytes', () => {
    fc.assert(
      fc.property(backendMessage, (message) => {
        const encoded = encodeBackend(message);
        const decoded = decodeBackendFrame(encoded);
        assert.deepEqual(decoded, message);
        assert.deepEqual(encodeBackend(decoded), encoded);
      }),
      { numRuns: 500 },
    );
  });

  it('decodes every encoded startup-family packet to an equal message', () => {
    fc.assert(
      fc.property(startupFamily, (message) => {
        const encoded = encodeStartup(message);
        assert.equal(encoded.readInt32BE(0), encoded.length);
        assert.deepEqual(parseStartupFamily(encoded.subarray(4)), message);
      }),
      { numRuns: 300 },
    );
  });

  it("decodes every encoded 'p' message to an equal message when told which one to expect", () => {
    fc.assert(
      fc.property(passwordFamily, (message) => {
        const encoded = writePasswordFamily(new Writer(), message).flush();
        assert.equal(encoded[0], Code.Password);
        assert.equal(encoded.readInt32BE(1), encoded.length - 1);
        assert.deepEqual(parsePasswordFamily(new Reader(encoded.subarray(5)), message.type), message);
      }),
      { numRuns: 300 },
    );
  });

  it('rejects every strict prefix of a fixed-shape frontend body with a ProtocolViolation, never another error', () => {
    // A CopyData body is raw bytes (any prefix is valid) and the empty messages have no prefix: left out.
    const shaped = frontendMessage.filter(
      (m) => !['CopyData', 'Sync', 'Flush', 'Terminate', 'CopyDone'].includes(m.type),
    );
    fc.assert(
      fc.property(shaped, fc.nat(), (message, seed) => {
        const encoded = encodeFrontend(message);
        const content = encoded.subarray(5);
        const cut = seed % content.length;
        assertViolation(() => decodeFrontend(encoded[0]!, content.subarray(0, cut)));
      }),
      { numRuns: 300 },
    );
  });

  it('rejects every backend body with an extra byte appended, except those whose body is raw data', () => {
    // These end in raw bytes (BackendKeyData: a key of 4 to 256 bytes), so one more byte is still valid.
    const raw = [
      'CopyData',
      'AuthenticationGSSContinue',
      'AuthenticationSASLContinue',
      'AuthenticationSASLFinal',
      'BackendKeyData',
    ];
    fc.assert(
      fc.property(
        backendMessage.filter((m) => !raw.includes(m.type)),
        fc.integer({ min: 0, max: 0xff }),
        (message, extra) => {
          const encoded = encodeBackend(message);
          const content = Buffer.concat([encoded.subarray(5), Buffer.from([extra])]);
          assertViolation(() => decodeBackend(encoded[0]!, content));
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('Framer: frames come out whole and in order however the stream is split', () => {
  it('yields exactly the encoded frontend frames, in order, for any split of their concatenation', () => {
    fc.assert(
      fc.property(fc.array(frontendMessage, { minLength: 1, maxLength: 8 }), cutSeeds, (messages, seeds) => {
        const encoded = messages.map((m) => encodeFrontend(m));
        const stream = Buffer.concat(encoded);
        const framer = typedFramer();
        const frames = feed(framer, chunks(stream, seeds));
        assert.deepEqual(
          frames.map((f) => f.bytes),
          encoded,
        );
        assert.deepEqual(
          frames.map((f) => decodeFrontend(f.type, f.body)),
          messages,
        );
        assert.equal(framer.buffered, 0);
      }),
      { numRuns: 300 },
    );
  });

  it('yields exactly the encoded backend frames, in order, for any split of their concatenation', () => {
    fc.assert(
      fc.property(fc.array(backendMessage, { minLength: 1, maxLength: 8 }), cutSeeds, (messages, seeds) => {
        const encoded = messages.map((m) => encodeBackend(m));
        const stream = Buffer.concat(encoded);
        const framer = typedFramer();
        const frames = feed(framer, chunks(stream, seeds));
        assert.deepEqual(
          frames.map((f) => f.bytes),
          encoded,
        );
        assert.deepEqual(
          frames.map((f) => decodeBackend(f.type, f.body)),
          messages,
        );
        assert.equal(framer.buffered, 0);
      }),
      { numRuns: 300 },
    );
  });

  it('yields the same frames when the stream arrives one byte at a time', () => {
    fc.assert(
      fc.property(fc.array(frontendMessage, { minLength: 1, maxLength: 6 }), (messages) => {
        const encoded = messages.map((m) => encodeFrontend(m));
        const framer = typedFramer();
        const frames = feed(framer, bytewise(Buffer.concat(encoded)));
        assert.deepEqual(
          frames.map((f) => f.bytes),
          encoded,
        );
      }),
      { numRuns: 100 },
    );
  });

  it('yields the same frames for a two-chunk split at every offset of a fixed stream (start, middle and end of each frame)', () => {
    const encoded = [
      encodeFrontend({ type: 'Parse', name: '', sql: 'SELECT $1', parameterTypes: [23] }),
      encodeFrontend({
        type: 'Bind',
        portal: '',
        statement: '',
        parameterFormats: [0],
        parameters: [Buffer.from('1')],
        resultFormats: [],
      }),
      encodeFrontend({ type: 'Execute', portal: '', maxRows: 0 }),
      encodeFrontend({ type: 'Sync' }),
    ];
    const stream = Buffer.concat(encoded);
    for (let cut = 0; cut <= stream.length; cut++) {
      const frames = feed(typedFramer(), splitAt(stream, [cut]));
      assert.deepEqual(
        frames.map((f) => f.bytes),
        encoded,
        `split at ${cut}`,
      );
    }
  });

  it('reports the type byte, frame start and body start of each typed frame', () => {
    const query = encodeFrontend({ type: 'Query', sql: 'SELECT 1' });
    const stream = Buffer.concat([encodeFrontend({ type: 'Sync' }), query]);
    const seen: [number, number, number, number][] = [];
    typedFramer().push(stream, (type, _buffer, start, bodyStart, end) =>
      seen.push([type, start, bodyStart, end]),
    );
    assert.deepEqual(seen, [
      [Code.Sync, 0, 5, 5],
      [Code.Query, 5, 10, 5 + query.length],
    ]);
  });
});

describe('Framer: startup mode', () => {
  it('reads the untyped startup packet, then typed messages once the owner flips typed, for any split', () => {
    fc.assert(
      fc.property(
        startupFamily.filter((m) => m.type === 'StartupMessage'),
        fc.array(frontendMessage, { maxLength: 6 }),
        cutSeeds,
        (startup, messages, seeds) => {
          const startupBytes = encodeStartup(startup);
          const encoded = messages.map((m) => encodeFrontend(m));
          const stream = Buffer.concat([startupBytes, ...encoded]);
          const framer = new Framer(1 << 20);
          let first = true;
          const frames = feed(framer, chunks(stream, seeds), () => {
            if (first) framer.typed = true;
            first = false;
          });
          const [startupFrame, ...typed] = frames;
          assert.ok(startupFrame);
          assert.equal(startupFrame.type, 0, 'a startup packet has no type byte');
          assert.deepEqual(startupFrame.bytes, startupBytes);
          assert.deepEqual(parseStartupFamily(startupFrame.body), startup);
          assert.deepEqual(
            typed.map((f) => f.bytes),
            encoded,
          );
          assert.deepEqual(
            typed.map((f) => decodeFrontend(f.type, f.body)),
            messages,
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  it('gives the body of a startup packet as the bytes after its length field', () => {
    const startup = encodeStartup({
      type: 'StartupMessage',
      major: 3,
      minor: 0,
      parameters: [['user', 'u']],
    });
    const seen: [number, number, number, number][] = [];
    new Framer(1024).push(startup, (type, _buffer, start, bodyStart, end) =>
      seen.push([type, start, bodyStart, end]),
    );
    assert.deepEqual(seen, [[0, 0, 4, startup.length]]);
  });

  it('keeps the bytes after an SSLRequest pending when the owner stops, for the TLS handshake to take', () => {
    const clientHello = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
    const stream = Buffer.concat([encodeStartup({ type: 'SSLRequest' }), clientHello]);
    const framer = new Framer(1024);
    const frames = feed(framer, [stream], (frame) => {
      assert.deepEqual(parseStartupFamily(frame.body), { type: 'SSLRequest' });
      framer.stop();
    });
    assert.equal(frames.length, 1);
    assert.equal(framer.buffered, clientHello.length);
    assert.deepEqual(framer.takeRemainder(), clientHello);
    assert.equal(framer.buffered, 0);
    assert.equal(framer.takeRemainder(), null);
  });

  it('reads a second startup packet (StartupMessage after a refused SSLRequest) while typed stays false', () => {
    const ssl = encodeStartup({ type: 'SSLRequest' });
    const startup = encodeStartup({
      type: 'StartupMessage',
      major: 3,
      minor: 0,
      parameters: [['user', 'u']],
    });
    const frames = feed(new Framer(1024), bytewise(Buffer.concat([ssl, startup])));
    assert.deepEqual(
      frames.map((f) => parseStartupFamily(f.body).type),
      ['SSLRequest', 'StartupMessage'],
    );
  });
});

describe('Framer: length limits are checked before any byte is buffered', () => {
  const header = (type: number, declared: number) => body((w) => w.byte(type).int32(declared));

  it('throws as soon as a header declares more than maxMessageSize, without waiting for the body', () => {
    const framer = typedFramer(1024);
    assertViolation(
      () => framer.push(header(Code.Query, 1025), () => assert.fail('no frame expected')),
      /message 'Q' of 1025 bytes exceeds the limit of 1024/,
    );
    assert.equal(framer.buffered, 0);
  });

  it('throws on an oversized declared length even when the header itself arrives split', () => {
    const framer = typedFramer(1024);
    const bytes = header(Code.CopyData, 0x7fffffff);
    framer.push(bytes.subarray(0, 3), () => assert.fail('no frame expected'));
    assert.equal(framer.buffered, 3, 'a partial header waits');
    assertViolation(
      () => framer.push(bytes.subarray(3), () => assert.fail('no frame expected')),
      /exceeds the limit/,
    );
  });

  it('accepts a message of exactly maxMessageSize and waits for its body', () => {
    const framer = typedFramer(1024);
    framer.push(header(Code.CopyData, 1024), () => assert.fail('no frame expected yet'));
    assert.equal(framer.buffered, 5);
    const frames = feed(framer, [Buffer.alloc(1020, 1)]);
    assert.equal(frames.length, 1);
    assert.equal(frames[0]?.body.length, 1020);
  });

  it('throws when a typed message declares a length below 4 (the length counts itself)', () => {
    for (const declared of [3, 0, -1, -0x80000000]) {
      const framer = typedFramer(1024);
      assertViolation(
        () => framer.push(header(Code.Sync, declared), () => {}),
        new RegExp(`invalid length ${declared}`),
      );
    }
  });

  it('throws when a startup packet declares fewer than 8 or more than 10000 bytes', () => {
    for (const declared of [7, 4, 0, -1, MAX_STARTUP_PACKET + 1]) {
      const framer = new Framer(1 << 20);
      assertViolation(
        () =>
          framer.push(
            body((w) => w.int32(declared)),
            () => {},
          ),
        new RegExp(`invalid startup packet length ${declared}`),
      );
    }
  });

  it('accepts a startup packet of exactly 10000 bytes', () => {
    const framer = new Framer(1024);
    const packet = Buffer.concat([
      body((w) => w.int32(MAX_STARTUP_PACKET)),
      Buffer.alloc(MAX_STARTUP_PACKET - 4),
    ]);
    assert.equal(feed(framer, [packet]).length, 1);
  });

  it('applies the startup limit, not maxMessageSize, before typed is set', () => {
    const framer = new Framer(16);
    const startup = encodeStartup({
      type: 'StartupMessage',
      major: 3,
      minor: 0,
      parameters: [['user', 'x'.repeat(64)]],
    });
    assert.equal(feed(framer, [startup]).length, 1);
  });
});
