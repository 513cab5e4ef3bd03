/**
 * Warden's HTTP listener: `/metrics` (Prometheus text format), `/healthz`
 * (the process answers: for a liveness probe) and `/readyz` (it should be
 * sent connections: for a load balancer or readiness probe). The API and
 * dashboard will be served here too.
 */
import http from 'node:http';
import type net from 'node:net';
import { exposition, type MetricSnapshot } from '../observe/metrics.ts';
import { listenOn } from '../proxy/listen.ts';

export interface Readiness {
  readonly ready: boolean;
  /** What was checked and what it found: `ok`, or why not. */
  readonly checks: Readonly<Record<string, string>>;
}

/** Where the answers come from: one process's server, or the primary asking its workers. */
export interface HttpSources {
  metrics(): Promise<readonly MetricSnapshot[]>;
  readiness(): Promise<Readiness>;
  /** Endpoints that take a POST (Slack's interactivity, signed webhook decisions), by path. */
  readonly posts?: ReadonlyMap<string, PostHandler>;
}

/** What a POST endpoint answers. */
export interface PostReply {
  readonly status: number;
  /** Content-Type; text/plain when not given. */
  readonly type?: string;
  readonly body: string;
}

/**
 * A POST endpoint: given the raw body (signatures are computed over the exact
 * bytes) and the request's headers. It must not throw for bad input: it
 * answers 4xx with a reason.
 */
export type PostHandler = (body: Buffer, headers: http.IncomingHttpHeaders) => Promise<PostReply>;

/** A POST body larger than this is refused (413) before it is read further. */
export const MAX_POST_BYTES = 1024 * 1024;

export interface HttpServer {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

const PROMETHEUS_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export async function startHttp(
  listen: { readonly host: string; readonly port: number },
  sources: HttpSources,
): Promise<HttpServer> {
  const server = http.createServer((request, response) => {
    void answer(request, response, sources).catch((error: Error) => {
      if (!response.headersSent) reply(response, 500, 'text/plain', `internal error: ${error.message}\n`);
      else response.destroy();
    });
  });
  // A scrape or probe that stalls must not hold a socket for ever.
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  await listenOn(server, listen, 'http');
  server.on('clientError', (_error, socket) => socket.destroy());
  const address = server.address() as net.AddressInfo;
  return {
    host: address.address,
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function answer(
  request: http.IncomingMessage,
  response: http.ServerResponse,
  sources: HttpSources,
): Promise<void> {
  const path = new URL(request.url ?? '/', 'http://warden').pathname;
  const post = sources.posts?.get(path);
  if (post !== undefined) {
    if (request.method !== 'POST') {
      response.setHeader('Allow', 'POST');
      reply(response, 405, 'text/plain', `${request.method} is not allowed on ${path}; use POST\n`);
      return;
    }
    const body = await bodyOf(request);
    if (body === undefined) {
      reply(response, 413, 'text/plain', `the body is larger than ${MAX_POST_BYTES} bytes\n`);
      request.destroy();
      return;
    }
    const answered = await post(body, request.headers);
    reply(response, answered.status, answered.type ?? 'text/plain', answered.body);
    return;
  }
  const route = ROUTES[path];
  if (route === undefined) {
    reply(response, 404, 'text/plain', `no such endpoint: ${path} (try /metrics, /healthz or /readyz)\n`);
    return;
  }
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.setHeader('Allow', 'GET, HEAD');
    reply(response, 405, 'text/plain', `${request.method} is not allowed on ${path}; use GET\n`);
    return;
  }
  await route(response, sources);
}

const ROUTES: Readonly<
  Record<string, (response: http.ServerResponse, sources: HttpSources) => Promise<void> | void>
> = {
  '/metrics': async (response, sources) => {
    reply(response, 200, PROMETHEUS_TYPE, exposition(await sources.metrics()));
  },
  '/healthz': (response) => {
    reply(response, 200, 'text/plain', 'ok\n');
  },
  '/readyz': async (response, sources) => {
    const readiness = await sources.readiness();
    reply(
      response,
      readiness.ready ? 200 : 503,
      'application/json',
      `${JSON.stringify({ status: readiness.ready ? 'ready' : 'not ready', checks: readiness.checks })}\n`,
    );
  },
};

/** The whole body, or undefined once it passes MAX_POST_BYTES. */
async function bodyOf(request: http.IncomingMessage): Promise<Buffer | undefined> {
  const declared = Number(request.headers['content-length']);
  if (declared > MAX_POST_BYTES) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_POST_BYTES) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function reply(response: http.ServerResponse, status: number, type: string, body: string): void {
  response.writeHead(status, {
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  response.end(response.req.method === 'HEAD' ? undefined : body);
}
