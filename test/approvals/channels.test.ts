/**
 * The Slack and webhook approval channels deciding a held statement end to
 * end: a real Warden holds alice's DELETE on her live node-postgres
 * connection, its channel shows the request (to a local Slack Web API, to a
 * local webhook receiver), and the decision comes back over real HTTP to
 * Warden's own listener, signed the way Slack or an integrator signs it.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { type HttpServer, startHttp } from '../../src/api/http.ts';
import { signSlackRequest } from '../../src/approvals/slack.ts';
import { ApprovalStore } from '../../src/approvals/store.ts';
import type { ApprovalRequest } from '../../src/approvals/types.ts';
import { signWebhook, type Verification, verifyWebhook } from '../../src/approvals/webhook.ts';
import { openStore } from '../../src/store/store.ts';
import {
  clientConfig,
  createTestDatabase,
  findTestServer,
  type TestDatabase,
  type TestServer,
} from '../fixtures/postgres.ts';
import { type PgError, startWarden, type WardenHandle, waitFor } from '../proxy/support.ts';
import {
  type Block,
  buttonsOf,
  type FakeSlack,
  type SlackUser,
  startFakeSlack,
  textOf,
} from './slack-api.ts';

const SEED = `CREATE TABLE orders (id int PRIMARY KEY, note text);
  INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 10) g;`;

/** The helper's identities, with the emails Slack users are matched by. */
const IDENTITIES_YAML = `identities:
  - { name: alice, kind: human, groups: [analysts], email: alice@example.com }
  - { name: etl, kind: service, groups: [pipelines], email: etl-oncall@example.com }
  - { name: agent, kind: agent }
  - { name: outsider, kind: human }`;

/** Writes to orders are held; only the pipelines group (etl) may decide them. `channel` is indented 2 spaces. */
const policy = (channel: string) => `
policy:
  rules:
    - name: order-writes-need-review
      match: { tables: [orders], access: write }
      action: review
      message: changes to orders need a second pair of eyes
  defaults: { human: allow, service: allow, agent: allow }
approvals:
  approvers: { groups: [pipelines] }
  timeoutSeconds: 60
  keepAliveSeconds: 1
${channel}
`;

interface Answer {
  readonly status: number;
  readonly type: string | null;
  readonly body: string;
}

/** What channelWarden sets up: filled in before the suite's tests run. */
interface ChannelWarden {
  readonly direct: pg.Client;
  readonly warden: WardenHandle;
  /** Warden's HTTP listener, serving the channels' POST endpoints as `warden` does. */
  readonly http: HttpServer;
  /** A node-postgres client through Warden, ended after the suite. */
  connect(identity?: string): Promise<pg.Client>;
  /** The request as Warden's approval store holds it. */
  request(id: string): ApprovalRequest;
  /** Whether the order is still there, asked past Warden. */
  exists(id: number): Promise<boolean>;
  /** POSTs to Warden's HTTP listener. */
  post(path: string, body: string, headers: Record<string, string>): Promise<Answer>;
}

/**
 * For the describe() it is called in: a seeded database, a Warden in front
 * of it whose `approvals:` has the channel `channelYaml` resolves to (started
 * first: it may need a server's address), and Warden's HTTP listener.
 */
function channelWarden(name: string, channelYaml: () => Promise<string>): ChannelWarden {
  const env = {} as {
    upstream: TestServer;
    database: TestDatabase;
    direct: pg.Client;
    warden: WardenHandle;
    http: HttpServer;
  };
  const clients: pg.Client[] = [];
  before(async () => {
    const channel = await channelYaml();
    env.upstream = await findTestServer();
    env.database = await createTestDatabase(env.upstream, name);
    env.direct = new pg.Client(clientConfig(env.upstream, env.database.name));
    await env.direct.connect();
    await env.direct.query(SEED);
    env.warden = await startWarden({
      upstream: env.upstream,
      database: env.database.name,
      identitiesYaml: IDENTITIES_YAML,
      policy: policy(channel),
    });
    env.http = await startHttp(
      { host: '127.0.0.1', port: 0 },
      {
        metrics: async () => [],
        readiness: async () => ({ ready: true, checks: {} }),
        posts: env.warden.server.posts,
      },
    );
  });
  after(async () => {
    for (const client of clients) await client.end().catch(() => {});
    await env.http?.close();
    await env.direct?.end();
    await env.warden?.close();
    await env.database?.drop();
    await env.upstream?.close();
  });
  return {
    get direct() {
      return env.direct;
    },
    get warden() {
      return env.warden;
    },
    get http() {
      return env.http;
    },
    async connect(identity = 'alice') {
      const client = new pg.Client(env.warden.pgConfig(identity));
      client.on('error', () => {});
      await client.connect();
      clients.push(client);
      return client;
    },
    request(id) {
      const opened = openStore(env.warden.config.dataDir);
      try {
        const found = new ApprovalStore(opened.db).get(id);
        assert.ok(found, `the store holds ${id}`);
        return found;
      } finally {
        opened.close();
      }
    },
    async exists(id) {
      return (await env.direct.query('SELECT 1 FROM orders WHERE id = $1', [id])).rowCount === 1;
    },
    async post(path, body, headers) {
      const response = await fetch(`http://127.0.0.1:${env.http.port}${path}`, {
        method: 'POST',
        headers,
        body,
      });
      return {
        status: response.status,
        type: response.headers.get('content-type'),
        body: await response.text(),
      };
    },
  };
}

interface Held {
  readonly result: Promise<pg.QueryResult>;
  /** Whether the client has had its answer (rows or an error). */
  settled(): boolean;
}

/** Sends a statement that Warden will hold; its answer comes once the request is decided. */
function hold(client: pg.Client, sql: string): Held {
  const result = client.query(sql);
  let settled = false;
  result.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  return { result, settled: () => settled };
}

/** The decided request's decisions without their times, to compare. */
function decisionsOf(request: ApprovalRequest): object[] {
  return request.decisions.map(({ by, verdict, reason, channel }) => ({ by, verdict, reason, channel }));
}

/** A client's answer, had the hold been released, would have reached it well within this. */
const SETTLE_MS = 300;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------

const TOKEN = 'xoxb-channels-test-0123456789-SECRET';
const SIGNING_SECRET = 'slack-signing-secret-channels-0123';
const CHANNEL = 'C0APPROVALS';

const USERS: readonly SlackUser[] = [
  { id: 'U_ALICE', is_email_confirmed: true, profile: { email: 'alice@example.com' } },
  // Slack's address differs in case from the config's: emails match either way.
  { id: 'U_ETL', is_email_confirmed: true, profile: { email: 'ETL-oncall@example.com' } },
];

describe('a held statement decided in Slack', { timeout: 120_000 }, () => {
  let slack: FakeSlack;
  const env = channelWarden('slack_channel', async () => {
    slack = await startFakeSlack(TOKEN, USERS);
    return `  slack: { token: ${TOKEN}, channel: ${CHANNEL}, signingSecret: ${SIGNING_SECRET}, apiUrl: '${slack.url}' }`;
  });
  // Registered after channelWarden's: Warden is closed first, while Slack still answers.
  after(async () => {
    await slack?.close();
  });

  /** POSTs an interactivity payload to Warden the way Slack does: form-encoded, signed. */
  const interact = (payload: object): Promise<Answer> => {
    const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
    const timestamp = Math.floor(Date.now() / 1000);
    return env.post('/slack/interactivity', body, {
      'content-type': 'application/x-www-form-urlencoded',
      'x-slack-request-timestamp': String(timestamp),
      'x-slack-signature': signSlackRequest(SIGNING_SECRET, timestamp, body),
    });
  };

  /** The message posted for the next request after `since` calls: the request's id (from its buttons) and the message's ts. */
  const posted = async (since: number): Promise<{ id: string; ts: string; blocks: Block[] }> => {
    await waitFor(
      () => slack.calls.slice(since).some((call) => call.method === 'chat.postMessage'),
      'chat.postMessage',
    );
    const call = slack.calls.slice(since).find((candidate) => candidate.method === 'chat.postMessage')!;
    assert.equal(call.args.channel, CHANNEL);
    const blocks = call.args.blocks as Block[];
    const buttons = buttonsOf(blocks);
    assert.deepEqual(
      buttons.map((button) => button.action_id),
      ['warden_approve', 'warden_reject'],
    );
    const id = String(buttons[0]!.value);
    assert.match(id, /^apr_/);
    assert.equal(buttons[1]!.value, id, 'both buttons carry the request id');
    const message = [...slack.messages].find(([, candidate]) =>
      textOf(candidate.blocks as Block[]).includes(id),
    );
    assert.ok(message, 'the fake Slack holds the message');
    return { id, ts: message[0], blocks };
  };

  /** Clicks a button of the request as `user`: Warden opens the dialog that asks for a reason; returns it. */
  const click = async (
    id: string,
    action: 'warden_approve' | 'warden_reject',
    user: string,
  ): Promise<Record<string, unknown>> => {
    const since = slack.calls.length;
    const trigger = `trigger-${id}-${user}`;
    const answer = await interact({
      type: 'block_actions',
      user: { id: user },
      trigger_id: trigger,
      channel: { id: CHANNEL },
      actions: [{ type: 'button', block_id: 'warden_decision', action_id: action, value: id }],
    });
    assert.deepEqual([answer.status, answer.body], [200, '']);
    const opened = slack.calls.slice(since).find((call) => call.method === 'views.open');
    assert.ok(opened, 'views.open was called');
    assert.equal(opened.args.trigger_id, trigger);
    return opened.args.view as Record<string, unknown>;
  };

  /** Submits the dialog as `user` with a reason, as Slack sends it back. */
  const submit = (view: Record<string, unknown>, user: string, reason: string): Promise<Answer> =>
    interact({
      type: 'view_submission',
      user: { id: user },
      view: {
        id: 'V1',
        callback_id: view.callback_id,
        private_metadata: view.private_metadata,
        state: { values: { reason: { reason: { type: 'plain_text_input', value: reason } } } },
      },
    });

  /** The message as last updated, once it shows the outcome. */
  const outcome = async (ts: string, status: 'approved' | 'rejected'): Promise<Block[]> => {
    const shown = () => slack.messages.get(ts)?.blocks as Block[];
    await waitFor(() => textOf(shown()).includes(`*Outcome: ${status}*`), `the message to show ${status}`);
    assert.ok(
      slack.calls.some((call) => call.method === 'chat.update' && call.args.ts === ts),
      'updated with chat.update',
    );
    return shown();
  };

  it('an approval in Slack by the identity of a verified email runs the held DELETE, and the message shows it', async () => {
    const client = await env.connect('alice');
    const since = slack.calls.length;
    const held = hold(client, 'DELETE FROM orders WHERE id = 1');
    const { id, ts, blocks } = await posted(since);
    const text = textOf(blocks);
    for (const fact of [
      '*Identity:*\nalice',
      'order-writes-need-review',
      '```DELETE FROM orders WHERE id = 1```',
    ]) {
      assert.ok(text.includes(fact), `the message shows ${JSON.stringify(fact)}`);
    }
    assert.equal(env.request(id).status, 'pending');
    assert.ok(await env.exists(1), 'nothing reached the server yet');

    const view = await click(id, 'warden_approve', 'U_ETL');
    assert.deepEqual(JSON.parse(String(view.private_metadata)), { id, verdict: 'approve' });
    const answer = await submit(view, 'U_ETL', 'cleanup ticket 42');
    assert.deepEqual([answer.status, answer.body], [200, ''], 'an empty 200 closes the dialog');
    assert.ok(
      slack.calls.some((call) => call.method === 'users.info' && call.args.user === 'U_ETL'),
      'who decided came from Slack’s profile, not the payload',
    );

    assert.equal((await held.result).rowCount, 1);
    assert.equal(await env.exists(1), false);
    const decided = env.request(id);
    assert.equal(decided.status, 'approved');
    assert.deepEqual(decisionsOf(decided), [
      { by: 'etl', verdict: 'approve', reason: 'cleanup ticket 42', channel: 'slack' },
    ]);

    const shown = await outcome(ts, 'approved');
    assert.deepEqual(buttonsOf(shown), [], 'no buttons once decided');
    assert.ok(textOf(shown).includes('Approved by *etl* (slack, '));
    assert.ok(textOf(shown).includes('cleanup ticket 42'));
  });

  it('the requester’s own approval from Slack is refused in the dialog; the statement stays held until someone else decides', async () => {
    const client = await env.connect('alice');
    const since = slack.calls.length;
    const held = hold(client, 'DELETE FROM orders WHERE id = 2');
    const { id, ts } = await posted(since);

    const own = await submit(await click(id, 'warden_approve', 'U_ALICE'), 'U_ALICE', 'my own cleanup');
    assert.equal(own.status, 200);
    assert.match(own.type ?? '', /^application\/json/);
    assert.deepEqual(JSON.parse(own.body), {
      response_action: 'errors',
      errors: { reason: 'alice asked for this, and nobody decides their own request' },
    });
    const pending = env.request(id);
    assert.equal(pending.status, 'pending');
    assert.deepEqual(pending.decisions, []);
    await sleep(SETTLE_MS);
    assert.equal(held.settled(), false, 'the client still waits');
    assert.ok(await env.exists(2));

    const view = await click(id, 'warden_reject', 'U_ETL');
    assert.deepEqual(JSON.parse(String(view.private_metadata)), { id, verdict: 'reject' });
    const rejected = await submit(view, 'U_ETL', 'not during the freeze');
    assert.deepEqual([rejected.status, rejected.body], [200, '']);
    await assert.rejects(held.result, (error: PgError) => {
      assert.equal(error.code, '42501');
      assert.equal(error.message, `approval request ${id} was rejected by etl: not during the freeze`);
      return true;
    });
    assert.ok(await env.exists(2), 'the rejected DELETE never ran');
    assert.equal(
      (await client.query('SELECT count(*)::int AS n FROM orders')).rows[0].n,
      9,
      'the session goes on',
    );

    const shown = await outcome(ts, 'rejected');
    assert.deepEqual(buttonsOf(shown), []);
    assert.ok(textOf(shown).includes('Rejected by *etl* (slack, '));
    assert.ok(!textOf(shown).includes('my own cleanup'), 'the refused decision is not shown');
  });
});

// ---------------------------------------------------------------------------

const WEBHOOK_SECRET = 'whsec-channels-test-0123456789';

interface Delivery {
  readonly type: string | undefined;
  readonly verified: Verification;
  readonly event: string;
  readonly request: ApprovalRequest;
}

/** An integrator's webhook receiver: verifies each delivery, records it, answers 200. */
async function startReceiver(secret: string) {
  const deliveries: Delivery[] = [];
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks);
      const verified = verifyWebhook(secret, request.headers, body, Date.now());
      const { event, request: sent } = JSON.parse(body.toString('utf8')) as {
        event: string;
        request: ApprovalRequest;
      };
      deliveries.push({ type: request.headers['content-type'], verified, event, request: sent });
      response.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks/warden`,
    deliveries,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

describe('a held statement decided through the signed webhook', { timeout: 120_000 }, () => {
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  const env = channelWarden('webhook_channel', async () => {
    receiver = await startReceiver(WEBHOOK_SECRET);
    return `  webhook: { url: '${receiver.url}', secret: ${WEBHOOK_SECRET} }`;
  });
  after(async () => {
    await receiver?.close();
  });

  /** The first delivery of `event` after `since` deliveries, once it comes; checked as the receiver checks it. */
  const delivery = async (event: string, since: number): Promise<Delivery> => {
    const find = () => receiver.deliveries.slice(since).find((candidate) => candidate.event === event);
    await waitFor(() => find() !== undefined, `the ${event} delivery`);
    const found = find()!;
    assert.deepEqual(found.verified, { ok: true }, 'signed with the shared secret');
    assert.equal(found.type, 'application/json');
    return found;
  };

  /** POSTs a decision to Warden, signed with `secret` over `signed` (the body itself unless told). */
  const decide = (body: string, sign: { secret?: string; signed?: string } = {}): Promise<Answer> => {
    const timestamp = Math.floor(Date.now() / 1000);
    return env.post('/approvals/webhook', body, {
      'content-type': 'application/json',
      'x-warden-timestamp': String(timestamp),
      'x-warden-signature': signWebhook(sign.secret ?? WEBHOOK_SECRET, timestamp, sign.signed ?? body),
    });
  };

  it('a signed rejection refuses the held DELETE with 42501, and the receiver is told of the request and its outcome', async () => {
    const client = await env.connect('alice');
    const since = receiver.deliveries.length;
    const held = hold(client, 'DELETE FROM orders WHERE id = 1');
    const { request } = await delivery('approval.requested', since);
    const { id } = request;
    assert.match(id, /^apr_/);
    assert.deepEqual(
      [request.status, request.identity, request.sql, request.rule, request.tables],
      ['pending', 'alice', 'DELETE FROM orders WHERE id = 1', 'order-writes-need-review', ['orders']],
    );
    assert.deepEqual(request.approvers.groups, ['pipelines']);

    const answer = await decide(
      JSON.stringify({ id, verdict: 'reject', by: 'etl', reason: 'not during the freeze' }),
    );
    assert.equal(answer.status, 200);
    assert.deepEqual(JSON.parse(answer.body), { status: 'rejected' });
    await assert.rejects(held.result, (error: PgError) => {
      assert.equal(error.code, '42501');
      assert.equal(error.message, `approval request ${id} was rejected by etl: not during the freeze`);
      return true;
    });
    assert.ok(await env.exists(1), 'the rejected DELETE never ran');

    const settled = await delivery('approval.settled', since);
    assert.equal(settled.request.id, id);
    assert.equal(settled.request.status, 'rejected');
    assert.deepEqual(decisionsOf(settled.request), [
      { by: 'etl', verdict: 'reject', reason: 'not during the freeze', channel: 'webhook' },
    ]);
    assert.equal(
      (await client.query('SELECT count(*)::int AS n FROM orders')).rows[0].n,
      10,
      'the session goes on',
    );
  });

  it('a decision with a bad signature gets 401 and changes nothing: the statement stays held until a signed one decides', async () => {
    const client = await env.connect('alice');
    const since = receiver.deliveries.length;
    const held = hold(client, 'DELETE FROM orders WHERE id = 2');
    const { id } = (await delivery('approval.requested', since)).request;

    const forged = JSON.stringify({ id, verdict: 'approve', by: 'etl', reason: 'forged' });
    const wrongSecret = await decide(forged, { secret: 'not-the-webhook-secret' });
    assert.equal(wrongSecret.status, 401);
    assert.match(wrongSecret.body, /X-Warden-Signature does not match/);
    // A signed rejection changed on the way into an approval.
    const tampered = await decide(forged, {
      signed: JSON.stringify({ id, verdict: 'reject', by: 'etl', reason: 'forged' }),
    });
    assert.equal(tampered.status, 401);

    const pending = env.request(id);
    assert.equal(pending.status, 'pending');
    assert.deepEqual(pending.decisions, []);
    await sleep(SETTLE_MS);
    assert.equal(held.settled(), false, 'the client still waits');
    assert.ok(await env.exists(2));
    assert.deepEqual(
      receiver.deliveries.slice(since).map((made) => made.event),
      ['approval.requested'],
      'no outcome was sent',
    );

    const approved = await decide(
      JSON.stringify({ id, verdict: 'approve', by: 'etl', reason: 'ticket OPS-7' }),
    );
    assert.equal(approved.status, 200);
    assert.deepEqual(JSON.parse(approved.body), { status: 'approved' });
    assert.equal((await held.result).rowCount, 1);
    assert.equal(await env.exists(2), false);
    assert.equal((await delivery('approval.settled', since)).request.status, 'approved');
  });
});
