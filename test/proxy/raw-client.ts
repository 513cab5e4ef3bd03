/**
 * A bare protocol client for tests that need bytes no driver would send:
 * malformed frames, a paused reader, a connection cut mid-message. It logs
 * in with SCRAM (our client side of it) and then reads frames on demand.
 */
import net from 'node:net';
import { writePasswordFamily } from '../../src/protocol/postgres/auth.ts';
import { decodeBackend, encodeFrontend } from '../../src/protocol/postgres/codec.ts';
import type { BackendMessage, FrontendMessage } from '../../src/protocol/postgres/messages.ts';
import { ScramClient } from '../../src/protocol/postgres/scram.ts';
import { writeStartupFamily } from '../../src/protocol/postgres/startup.ts';
import { Writer } from '../../src/protocol/postgres/writer.ts';
import { FrameReader } from '../../src/proxy/frames.ts';

export class RawClient {
  readonly reader: FrameReader;

  private constructor(readonly socket: net.Socket) {
    this.reader = new FrameReader(socket, 1 << 30, true);
  }

  static async connect(port: number): Promise<RawClient> {
    const socket = net.connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.on('error', () => {});
    return new RawClient(socket);
  }

  /** Connects and sends a protocol 3.0 StartupMessage with these parameters. */
  static async start(port: number, parameters: ReadonlyArray<readonly [string, string]>): Promise<RawClient> {
    const client = await RawClient.connect(port);
    client.write(
      writeStartupFamily(new Writer(), { type: 'StartupMessage', major: 3, minor: 0, parameters }).flush(),
    );
    return client;
  }

  /** Connects and logs in; resolves after the first ReadyForQuery. */
  static async login(port: number, user: string, database: string, password: string): Promise<RawClient> {
    const client = await RawClient.start(port, [
      ['user', user],
      ['database', database],
    ]);
    let scram: ScramClient | undefined;
    for (;;) {
      const message = await client.next();
      if (message.type === 'AuthenticationSASL') {
        scram = new ScramClient(password, 'SCRAM-SHA-256', undefined, false);
        const data = Buffer.from(scram.first());
        client.write(
          writePasswordFamily(new Writer(), {
            type: 'SASLInitialResponse',
            mechanism: 'SCRAM-SHA-256',
            data,
          }).flush(),
        );
      } else if (message.type === 'AuthenticationSASLContinue') {
        const data = Buffer.from(scram!.final(message.data.toString()));
        client.write(writePasswordFamily(new Writer(), { type: 'SASLResponse', data }).flush());
      } else if (message.type === 'AuthenticationSASLFinal') {
        scram!.verify(message.data.toString());
      } else if (message.type === 'ErrorResponse') {
        throw new Error(`login failed: ${message.fields.C} ${message.fields.M}`);
      } else if (message.type === 'ReadyForQuery') {
        return client;
      }
    }
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  send(...messages: FrontendMessage[]): void {
    this.write(Buffer.concat(messages.map((message) => encodeFrontend(message))));
  }

  async next(): Promise<BackendMessage> {
    const frame = await this.reader.next();
    return decodeBackend(frame.type, frame.body);
  }

  /** Reads messages up to and including the next ReadyForQuery. */
  async untilReady(): Promise<BackendMessage[]> {
    const messages: BackendMessage[] = [];
    for (;;) {
      const message = await this.next();
      messages.push(message);
      if (message.type === 'ReadyForQuery') return messages;
    }
  }

  /** Resolves when the server side has closed the connection. */
  closed(): Promise<void> {
    if (this.socket.destroyed || this.socket.readableEnded) return Promise.resolve();
    return new Promise((resolve) => this.socket.once('close', () => resolve()));
  }

  /** Reads messages until the connection closes; returns them. */
  async drain(): Promise<BackendMessage[]> {
    const messages: BackendMessage[] = [];
    for (;;) {
      try {
        messages.push(await this.next());
      } catch {
        return messages;
      }
    }
  }

  close(): void {
    this.socket.destroy();
  }
}
