/**
 * Warden's own queries to a target (its catalog, `warden discover`): a
 * connection with the target's credentials, simple-protocol queries whose
 * rows are handed over as they arrive, and a clean Terminate at the end.
 */
import type { Duplex } from 'node:stream';
import type { TargetConfig } from '../config/index.ts';
import { Code, type NoticeFields } from '../protocol/postgres/messages.ts';
import { parseDataRow, parseErrorResponse, writeQuery } from '../protocol/postgres/query.ts';
import { Reader } from '../protocol/postgres/reader.ts';
import { Writer } from '../protocol/postgres/writer.ts';
import { FrameReader } from './frames.ts';
import { connectUpstream, UpstreamError } from './upstream.ts';

const MAX_MESSAGE_SIZE = 64 << 20;
const TERMINATE = Buffer.from([Code.Terminate, 0, 0, 0, 4]);

export class UpstreamQueries {
  private constructor(
    readonly target: TargetConfig,
    private readonly socket: Duplex,
    private readonly reader: FrameReader,
  ) {}

  /** Logs in to the target with its credentials; `applicationName` says who asks, in pg_stat_activity. */
  static async open(target: TargetConfig, applicationName: string): Promise<UpstreamQueries> {
    const upstream = await connectUpstream(target, [
      ['application_name', applicationName],
      ['client_encoding', 'UTF8'],
    ]);
    const reader = new FrameReader(upstream.socket, MAX_MESSAGE_SIZE, true);
    if (upstream.leftover.length > 0) reader.feed(upstream.leftover);
    return new UpstreamQueries(target, upstream.socket, reader);
  }

  /**
   * Runs one simple-protocol query and hands each row's values (text) to
   * `onRow` as they arrive. The server's error becomes an UpstreamError with
   * its SQLSTATE, saying what Warden was `doing`.
   */
  async query(
    sql: string,
    doing: string,
    onRow: (values: readonly (string | null)[]) => void,
  ): Promise<void> {
    const where = `target "${this.target.name}" (${this.target.host}:${this.target.port})`;
    this.socket.write(writeQuery(new Writer(), { type: 'Query', sql }).flush());
    let failure: NoticeFields | undefined;
    for (;;) {
      const frame = await this.reader.next().catch((error: Error) => {
        throw new UpstreamError('08006', `lost ${where} while ${doing}: ${error.message}`);
      });
      const body = new Reader(frame.raw, frame.bodyStart, frame.raw.length);
      if (frame.type === Code.DataRow) {
        if (failure === undefined)
          onRow(parseDataRow(body).values.map((value) => value?.toString('utf8') ?? null));
      } else if (frame.type === Code.ErrorResponse) {
        failure = parseErrorResponse(body).fields;
      } else if (frame.type === Code.ReadyForQuery) {
        break;
      }
    }
    if (failure !== undefined)
      throw new UpstreamError(failure.C ?? '08P01', `${where} failed ${doing}: ${failure.M ?? 'no message'}`);
  }

  close(): void {
    this.socket.end(TERMINATE);
    this.socket.destroy();
  }
}
