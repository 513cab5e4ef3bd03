/**
 * The signed webhook channel against real sockets: deliveries go to a real
 * local receiver that checks their signatures the way an integrator would,
 * and decisions come in through Warden's own HTTP listener.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { type HttpServer, startHttp } from '../../src/api/http.ts';
import type { ApprovalRequest, DecideRequest, DecideResult } from '../../src/approvals/types.ts';
import {
  signWebhook,
  type Verification,
  verifyWebhook,
  WebhookChannel,
} from '../../src/approvals/webhook.ts';

const SECRET = 'whsec-test-0123456789';

const REQUEST: ApprovalRequest = {
  id: 'apr_7k2m9q4x',
  kind: 'statement',
  identity: 'alice',
  target: 'main',
  sql: 'DELETE FROM orders WHERE id = $1',
  parameters: ['42'],
  fingerprint: 'a1b2c3',
  tables: ['public.orders'],
  rule: 'review-deletes',
  message: 'DELETE on orders needs a review',
  grant: null,
  reason: '',
  approvers: { groups: ['dba'], identities: [], minApprovals: 1 },
  status: 'pending',
  createdAt: '2025-01-01T00:00:00.000Z',
  expiresAt: '2025-01-01T00:15:00.000Z',
  decisions: [],
};

interface Delivery {
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  readonly verified: Verification;
}

/** What the receiver answers next: a status, or no answer at all. */
type Answer = number | 'hang';

/** A webhook receiver as an integrator would write one: verify, record, answer. */
async function startReceiver() {
  const deliveries: Delivery[] = [];
  const answers: Answer[] = [];
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks);
      const verified = verifyWebhook(SECRET, request.headers, body, Date.now());
      deliveries.push({ headers: request.headers, body: body.toString('utf8'), verified });
      const answer = answers.shift() ?? 200;
      if (answer === 'hang') return;
      if (answer >= 300 && answer < 400) response.setHeader('Location', '/elsewhere');
      response.writeHead(answer).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks/warden`,
    deliveries,
    answers,
    /** Starts a test from a clean slate. */
    reset() {
      deliveries.length = 0;
      answers.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A port nothing listens on: bound once, then released. */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A log that keeps its warnings, to check that they happen and what they may not say. */
function recordingLog() {
  const warnings: { obj: object; msg: string }[] = [];
  return { warnings, warn: (obj: object, msg: string) => warnings.push({ obj, msg }) };
}

const noDecide: DecideRequest = async () => ({ ok: false, error: 'not used' });

describe('signWebhook and verifyWebhook', { timeout: 60_000 }, () => {
  const body = '{"event":"approval.requested"}';
  const now = 1_700_000_000_000;
  const headers = (timestamp: string, signature: string) => ({
    'x-warden-timestamp': timestamp,
    'x-warden-signature': signature,
  });

  it('signs HMAC-SHA256 over "<timestamp>.<body>" as openssl computes it', () => {
    // printf '%s' '1700000000.{"event":"approval.requested"}' | openssl dgst -sha256 -hmac whsec-test-0123456789
    assert.equal(
      signWebhook(SECRET, 1_700_000_000, body),
      'v1=99baa5b41d5d37fe4a013c6744bcedcaecc98f383c32f855ef2d6ea4ac5d8af6',
    );
  });

  it('accepts its own signature, for a string or the same bytes', () => {
    const signature = signWebhook(SECRET, 1_700_000_000, body);
    assert.deepEqual(verifyWebhook(SECRET, headers('1700000000', signature), body, now), { ok: true });
    assert.deepEqual(verifyWebhook(SECRET, headers('1700000000', signature), Buffer.from(body), now), {
      ok: true,
    });
  });

  it('refuses another secret, another body, or a timestamp that is not the signed one', () => {
    const signature = signWebhook(SECRET, 1_700_000_000, body);
    assert.equal(verifyWebhook('another-secret', headers('1700000000', signature), body, now).ok, false);
    assert.equal(verifyWebhook(SECRET, headers('1700000000', signature), `${body} `, now).ok, false);
    assert.equal(verifyWebhook(SECRET, headers('1700000001', signature), body, now).ok, false);
  });

  it('refuses a timestamp more than 5 minutes away, in the past or the future', () => {
    for (const timestamp of [1_700_000_000 - 301, 1_700_000_000 + 301]) {
      const result = verifyWebhook(
        SECRET,
        headers(String(timestamp), signWebhook(SECRET, timestamp, body)),
        body,
        now,
      );
      assert.deepEqual(result, {
        ok: false,
        why: "X-Warden-Timestamp is more than 5 minutes from this server's clock",
      });
    }
    const edge = 1_700_000_000 - 300;
    assert.equal(
      verifyWebhook(SECRET, headers(String(edge), signWebhook(SECRET, edge, body)), body, now).ok,
      true,
    );
  });

  it('refuses missing headers, a timestamp that is not whole seconds and a signature of the wrong length, without throwing', () => {
    const signature = signWebhook(SECRET, 1_700_000_000, body);
    assert.equal(verifyWebhook(SECRET, {}, body, now).ok, false);
    assert.equal(verifyWebhook(SECRET, { 'x-warden-signature': signature }, body, now).ok, false);
    assert.equal(verifyWebhook(SECRET, { 'x-warden-timestamp': '1700000000' }, body, now).ok, false);
    assert.equal(verifyWebhook(SECRET, headers('1.7e9', signature), body, now).ok, false);
    assert.equal(verifyWebhook(SECRET, headers('1700000000', 'v1=abc'), body, now).ok, false);
    assert.equal(verifyWebhook(SECRET, headers('1700000000', `${signature}00`), body, now).ok, false);
  });

  it('never names the secret or the expected signature in its reason', () => {
    const expected = signWebhook(SECRET, 1_700_000_000, body);
    const result = verifyWebhook(
      SECRET,
      headers('1700000000', signWebhook('wrong', 1_700_000_000, body)),
      body,
      now,
    );
    assert.equal(result.ok, false);
    if (!result.ok) {
      assert.ok(!result.why.includes(SECRET));
      assert.ok(!result.why.includes(expected.slice(3)));
    }
  });
});

describe('webhook deliveries to a real receiver', { timeout: 60_000 }, () => {
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  const channelTo = (url: string, more: { timeoutMs?: number; retries?: number } = {}) => {
    const log = recordingLog();
    const channel = new WebhookChannel({ url, secret: SECRET, decide: noDecide, backoffMs: 5, log, ...more });
    return { channel, log };
  };
  const secretIn = (log: ReturnType<typeof recordingLog>) => JSON.stringify(log.warnings).includes(SECRET);

  before(async () => {
    receiver = await startReceiver();
  });
  after(() => receiver.close());
  beforeEach(() => receiver.reset());

  it('publishes a new request as signed JSON that the receiver verifies', async () => {
    const { channel, log } = channelTo(receiver.url);
    await channel.published(REQUEST);
    assert.equal(receiver.deliveries.length, 1);
    const [delivery] = receiver.deliveries;
    assert.deepEqual(delivery!.verified, { ok: true });
    assert.equal(delivery!.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(delivery!.body), { event: 'approval.requested', request: REQUEST });
    assert.deepEqual(log.warnings, []);
  });

  it('tells the outcome of a settled request the same way', async () => {
    const { channel, log } = channelTo(receiver.url);
    const settled: ApprovalRequest = { ...REQUEST, status: 'rejected' };
    await channel.settled(settled);
    assert.equal(receiver.deliveries.length, 1);
    assert.deepEqual(receiver.deliveries[0]!.verified, { ok: true });
    assert.deepEqual(JSON.parse(receiver.deliveries[0]!.body), {
      event: 'approval.settled',
      request: settled,
    });
    assert.deepEqual(log.warnings, []);
  });

  it('retries a 5xx and is delivered once the receiver recovers', async () => {
    const { channel, log } = channelTo(receiver.url, { retries: 3 });
    receiver.answers.push(500, 503);
    await channel.published(REQUEST);
    assert.equal(receiver.deliveries.length, 3);
    assert.ok(receiver.deliveries.every((delivery) => delivery.verified.ok));
    assert.deepEqual(log.warnings, []);
  });

  it('gives up after the last retry with one warning that does not carry the secret', async () => {
    const { channel, log } = channelTo(receiver.url, { retries: 2 });
    receiver.answers.push(500, 500, 500, 500, 500);
    await channel.published(REQUEST);
    assert.equal(receiver.deliveries.length, 3);
    assert.equal(log.warnings.length, 1);
    assert.match(log.warnings[0]!.msg, /500/);
    assert.ok(!secretIn(log));
  });

  it('does not retry a 4xx: the receiver refused the delivery', async () => {
    const { channel, log } = channelTo(receiver.url);
    receiver.answers.push(400);
    await channel.published(REQUEST);
    assert.equal(receiver.deliveries.length, 1);
    assert.equal(log.warnings.length, 1);
    assert.match(log.warnings[0]!.msg, /400/);
  });

  it('does not follow a redirect, which would send the request elsewhere', async () => {
    const { channel, log } = channelTo(receiver.url);
    receiver.answers.push(307);
    await channel.published(REQUEST);
    assert.equal(receiver.deliveries.length, 1);
    assert.equal(log.warnings.length, 1);
    assert.match(log.warnings[0]!.msg, /redirect/);
  });

  it('abandons an attempt that gets no answer in time and retries it', async () => {
    const { channel, log } = channelTo(receiver.url, { timeoutMs: 100, retries: 1 });
    receiver.answers.push('hang', 'hang');
    const started = Date.now();
    await channel.published(REQUEST);
    assert.ok(Date.now() - started < 5_000, 'the timeout bounds each attempt');
    assert.equal(receiver.deliveries.length, 2);
    assert.equal(log.warnings.length, 1);
    assert.match(log.warnings[0]!.msg, /no answer in time/);
    assert.ok(!secretIn(log));
  });

  it('resolves without throwing when nothing listens at the URL', async () => {
    const port = await closedPort();
    const { channel, log } = channelTo(`http://127.0.0.1:${port}/hooks/warden`, { retries: 1 });
    await channel.published(REQUEST);
    await channel.settled(REQUEST);
    assert.equal(log.warnings.length, 2);
    assert.match(log.warnings[0]!.msg, /ECONNREFUSED/);
    assert.ok(!secretIn(log));
  });

  it('logs the receiver by origin only: a webhook path is often a credential', async () => {
    const port = await closedPort();
    const { channel, log } = channelTo(`http://127.0.0.1:${port}/hooks/T000/B000/tokenpart`, { retries: 0 });
    await channel.published(REQUEST);
    assert.equal(log.warnings.length, 1);
    assert.ok(!JSON.stringify(log.warnings).includes('tokenpart'));
    assert.equal((log.warnings[0]!.obj as { endpoint: string }).endpoint, `http://127.0.0.1:${port}`);
  });
});

describe('signed decisions through Warden’s HTTP listener', { timeout: 60_000 }, () => {
  const now = 1_700_000_000_000;
  const nowSeconds = now / 1000;
  const calls: Parameters<DecideRequest>[] = [];
  let next: DecideResult = { ok: true, request: { ...REQUEST, status: 'approved' } };
  const decide: DecideRequest = async (...args) => {
    calls.push(args);
    return next;
  };
  const channel = new WebhookChannel({
    url: 'http://127.0.0.1:9/unused',
    secret: SECRET,
    decide,
    now: () => now,
  });
  let server: HttpServer;

  const post = (body: string, headers: Record<string, string>) =>
    fetch(`http://127.0.0.1:${server.port}${channel.path}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...headers },
      body,
    });
  const signed = (body: string, timestamp = nowSeconds, secret = SECRET) =>
    post(body, {
      'X-Warden-Timestamp': String(timestamp),
      'X-Warden-Signature': signWebhook(secret, timestamp, body),
    });
  const decision = { id: REQUEST.id, verdict: 'approve', by: 'bob', reason: 'ticket OPS-12' };

  before(async () => {
    server = await startHttp(
      { host: '127.0.0.1', port: 0 },
      {
        metrics: async () => [],
        readiness: async () => ({ ready: true, checks: {} }),
        posts: new Map([[channel.path, channel.handle]]),
      },
    );
  });
  after(() => server.close());
  beforeEach(() => {
    calls.length = 0;
    next = { ok: true, request: { ...REQUEST, status: 'approved' } };
  });

  it('a validly signed decision is decided as coming from the webhook channel', async () => {
    const response = await signed(JSON.stringify(decision));
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /application\/json/);
    assert.deepEqual(await response.json(), { status: 'approved' });
    assert.deepEqual(calls, [
      [REQUEST.id, { by: 'bob', verdict: 'approve', reason: 'ticket OPS-12', channel: 'webhook' }],
    ]);
  });

  it('a rejection is passed on as one', async () => {
    next = { ok: true, request: { ...REQUEST, status: 'rejected' } };
    const response = await signed(
      JSON.stringify({ ...decision, verdict: 'reject', reason: 'not in a freeze' }),
    );
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { status: 'rejected' });
    assert.equal(calls[0]![1].verdict, 'reject');
  });

  it('a decision signed with another secret is refused with 401 and decides nothing', async () => {
    const response = await signed(JSON.stringify(decision), nowSeconds, 'not-the-secret');
    assert.equal(response.status, 401);
    assert.match(await response.text(), /X-Warden-Signature does not match/);
    assert.deepEqual(calls, []);
  });

  it('a body changed after signing is refused with 401', async () => {
    const body = JSON.stringify(decision);
    const response = await post(body.replace('approve', 'reject '), {
      'X-Warden-Timestamp': String(nowSeconds),
      'X-Warden-Signature': signWebhook(SECRET, nowSeconds, body),
    });
    assert.equal(response.status, 401);
    assert.deepEqual(calls, []);
  });

  it('a stale timestamp is refused with 401 even when correctly signed', async () => {
    const response = await signed(JSON.stringify(decision), nowSeconds - 6 * 60);
    assert.equal(response.status, 401);
    assert.match(await response.text(), /more than 5 minutes/);
    assert.deepEqual(calls, []);
  });

  it('a decision without the signature headers is refused with 401', async () => {
    const response = await post(JSON.stringify(decision), {});
    assert.equal(response.status, 401);
    assert.match(await response.text(), /X-Warden-Timestamp is missing/);
    assert.deepEqual(calls, []);
  });

  it('a signed body that is not JSON is refused with 400', async () => {
    const response = await signed('{"id": ');
    assert.equal(response.status, 400);
    assert.match(await response.text(), /not JSON/);
    assert.deepEqual(calls, []);
  });

  it('a decision without a reason, or with an empty one, is refused with 400 naming the field', async () => {
    const { reason: _reason, ...withoutReason } = decision;
    for (const body of [withoutReason, { ...decision, reason: '  ' }]) {
      const response = await signed(JSON.stringify(body));
      assert.equal(response.status, 400);
      assert.match(await response.text(), /"reason"/);
    }
    assert.deepEqual(calls, []);
  });

  it('a verdict other than approve or reject, or a missing id or by, is refused with 400 naming the field', async () => {
    const cases: [object, RegExp][] = [
      [{ ...decision, verdict: 'yes' }, /"verdict"/],
      [{ ...decision, id: 7 }, /"id"/],
      [{ ...decision, by: '' }, /"by"/],
      [[decision], /not a JSON object/],
    ];
    for (const [body, field] of cases) {
      const response = await signed(JSON.stringify(body));
      assert.equal(response.status, 400);
      assert.match(await response.text(), field);
    }
    assert.deepEqual(calls, []);
  });

  it('a decision the service refuses is answered 409 with its error', async () => {
    next = { ok: false, error: 'apr_7k2m9q4x is already approved' };
    const response = await signed(JSON.stringify(decision));
    assert.equal(response.status, 409);
    assert.deepEqual(await response.json(), { error: 'apr_7k2m9q4x is already approved' });
    assert.equal(calls.length, 1);
  });
});
