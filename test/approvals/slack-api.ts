/**
 * A Slack Web API of our own, for tests: the methods the Slack approval
 * channel calls (chat.postMessage, chat.update, views.open, users.info), the
 * bot token check, and a record of every call so tests can read the blocks
 * that were sent.
 */
import http from 'node:http';
import type net from 'node:net';

export interface SlackCall {
  readonly method: string;
  readonly args: Record<string, unknown>;
}

/** A workspace member as users.info answers: who they are is only the email Slack confirmed. */
export interface SlackUser {
  readonly id: string;
  readonly is_email_confirmed: boolean;
  readonly profile: { readonly email: string };
}

export interface SlackMessage {
  readonly channel: string;
  readonly blocks: unknown[];
  readonly text: string;
}

export interface FakeSlack {
  /** The Web API base URL, for the channel's `slackApiUrl` (config: `approvals.slack.apiUrl`). */
  readonly url: string;
  readonly calls: SlackCall[];
  /** Posted messages by ts: their blocks as last posted or updated. */
  readonly messages: Map<string, SlackMessage>;
  close(): Promise<void>;
}

/** Answers calls made with `token` (others get invalid_auth); users.info knows `users`. */
export async function startFakeSlack(token: string, users: readonly SlackUser[] = []): Promise<FakeSlack> {
  const calls: SlackCall[] = [];
  const messages = new Map<string, SlackMessage>();
  let sequence = 0;
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const method = new URL(request.url ?? '/', 'http://slack').pathname.replace(/^\/api\//, '');
      const args = argsOf(Buffer.concat(chunks).toString('utf8'), request.headers['content-type'] ?? '');
      calls.push({ method, args });
      const answer = (body: object) => {
        response.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8' });
        response.end(JSON.stringify(body));
      };
      if (request.headers.authorization !== `Bearer ${token}`)
        return answer({ ok: false, error: 'invalid_auth' });
      switch (method) {
        case 'chat.postMessage': {
          sequence += 1;
          const ts = `1700000000.${String(sequence).padStart(6, '0')}`;
          const channel = String(args.channel);
          messages.set(ts, { channel, blocks: args.blocks as unknown[], text: String(args.text) });
          return answer({ ok: true, channel, ts });
        }
        case 'chat.update': {
          const ts = String(args.ts);
          const message = messages.get(ts);
          if (message === undefined || message.channel !== args.channel) {
            return answer({ ok: false, error: 'message_not_found' });
          }
          messages.set(ts, {
            channel: message.channel,
            blocks: args.blocks as unknown[],
            text: String(args.text),
          });
          return answer({ ok: true, channel: message.channel, ts });
        }
        case 'views.open':
          if (typeof args.trigger_id !== 'string') return answer({ ok: false, error: 'invalid_trigger' });
          return answer({ ok: true, view: { id: `V${calls.length}`, ...(args.view as object) } });
        case 'users.info': {
          const user = users.find((candidate) => candidate.id === args.user);
          return answer(user === undefined ? { ok: false, error: 'user_not_found' } : { ok: true, user });
        }
        default:
          return answer({ ok: false, error: 'unknown_method' });
      }
    });
  });
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/api/`,
    calls,
    messages,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

/** The Web API takes form bodies (the SDK's default, objects JSON-encoded in a field) and JSON bodies. */
function argsOf(body: string, type: string): Record<string, unknown> {
  if (type.startsWith('application/json')) return JSON.parse(body) as Record<string, unknown>;
  const args: Record<string, unknown> = {};
  for (const [key, value] of new URLSearchParams(body)) {
    args[key] = /^[[{]/.test(value) ? JSON.parse(value) : value;
  }
  return args;
}

// ---------------------------------------------------------------------------
// Reading what was sent.

export type Block = { type: string; block_id?: string; elements?: Record<string, unknown>[] } & Record<
  string,
  unknown
>;

export function blocksOf(call: SlackCall): Block[] {
  return call.args.blocks as Block[];
}

export function buttonsOf(blocks: readonly Block[]): Record<string, unknown>[] {
  return blocks.filter((block) => block.type === 'actions').flatMap((block) => block.elements ?? []);
}

/** Every mrkdwn and plain text in the blocks, in order: what a reader sees. */
export function textOf(blocks: readonly Block[]): string {
  const out: string[] = [];
  const walk = (value: unknown): void => {
    if (Array.isArray(value)) value.forEach(walk);
    else if (typeof value === 'object' && value !== null) {
      const record = value as Record<string, unknown>;
      if ((record.type === 'mrkdwn' || record.type === 'plain_text') && typeof record.text === 'string') {
        out.push(record.text);
      }
      Object.values(record).forEach(walk);
    }
  };
  walk(blocks);
  return out.join('\n');
}
