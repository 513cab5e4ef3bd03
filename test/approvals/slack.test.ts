/**
 * The Slack approval channel against a local server that answers like
 * Slack's Web API, with interactivity requests sent over real HTTP to
 * Warden's own listener: what approvers see, how a click becomes a decision,
 * and what is refused before anything is decided.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { type HttpServer, startHttp } from '../../src/api/http.ts';
import { SlackChannel, signSlackRequest } from '../../src/approvals/slack.ts';
import type { ApprovalRequest, DecideRequest } from '../../src/approvals/types.ts';
import {
  type Block,
  blocksOf,
  buttonsOf,
  type FakeSlack,
  type SlackCall,
  type SlackUser,
  startFakeSlack,
  textOf,
} from './slack-api.ts';

const TOKEN = 'xoxb-test-0123456789-abcdefSECRET';
const SIGNING_SECRET = 'slack-signing-secret-for-tests-0123';
const CHANNEL = 'C0APPROVALS';

// ---------------------------------------------------------------------------
// The workspace: who clicks, and the Warden identity their verified email is.

const USERS: readonly SlackUser[] = [
  { id: 'U_ALICE', is_email_confirmed: true, profile: { email: 'alice@example.com' } },
  { id: 'U_BOB', is_email_confirmed: true, profile: { email: 'bob@example.com' } },
  { id: 'U_DAVE', is_email_confirmed: true, profile: { email: 'dave@example.com' } },
  // Claims alice's address, which Slack never confirmed: it must not count as alice.
  { id: 'U_MALLORY', is_email_confirmed: false, profile: { email: 'alice@example.com' } },
  { id: 'U_STRANGER', is_email_confirmed: true, profile: { email: 'someone@elsewhere.example' } },
];

const IDENTITIES: Readonly<Record<string, string>> = {
  'alice@example.com': 'alice',
  'bob@example.com': 'bob',
  'dave@example.com': 'dave',
};

// ---------------------------------------------------------------------------
// The approval service's side, as a small state holder: it keeps requests,
// refuses what the real service refuses, and settles the channel like it does.

class Approvals {
  readonly requests = new Map<string, ApprovalRequest>();
  readonly calls: Parameters<DecideRequest>[] = [];
  onSettled: (request: ApprovalRequest) => void = () => {};

  add(request: ApprovalRequest): ApprovalRequest {
    this.requests.set(request.id, request);
    return request;
  }

  readonly decide: DecideRequest = async (id, decision) => {
    this.calls.push([id, decision]);
    const request = this.requests.get(id);
    if (request === undefined) return { ok: false, error: `no approval request ${id}` };
    if (request.status !== 'pending') return { ok: false, error: `${id} is already ${request.status}` };
    if (decision.by === request.identity) return { ok: false, error: 'you cannot approve your own request' };
    if (!request.approvers.identities.includes(decision.by)) {
      return { ok: false, error: `${decision.by} is not an approver of ${id}` };
    }
    const decisions = [...request.decisions, { ...decision, at: new Date().toISOString() }];
    const approvals = decisions.filter((made) => made.verdict === 'approve').length;
    const status =
      decision.verdict === 'reject'
        ? 'rejected'
        : approvals >= request.approvers.minApprovals
          ? 'approved'
          : 'pending';
    const next: ApprovalRequest = { ...request, decisions, status };
    this.requests.set(id, next);
    if (status !== 'pending') this.onSettled(next);
    return { ok: true, request: next };
  };
}

let requestCount = 0;

function heldRequest(overrides: Partial<ApprovalRequest> = {}): ApprovalRequest {
  requestCount += 1;
  const created = Date.now();
  return {
    id: `apr_test${String(requestCount).padStart(4, '0')}`,
    kind: 'statement',
    identity: 'dave',
    target: 'production',
    sql: 'UPDATE accounts SET balance = balance * 2 WHERE id = $1',
    parameters: ['42'],
    fingerprint: 'fp-update-accounts',
    tables: ['public.accounts'],
    rule: 'writes-need-review',
    message: 'writes to accounts need an approval',
    grant: null,
    reason: '',
    approvers: { groups: [], identities: ['alice', 'bob', 'dave'], minApprovals: 1 },
    status: 'pending',
    createdAt: new Date(created).toISOString(),
    expiresAt: new Date(created + 10 * 60_000).toISOString(),
    decisions: [],
    ...overrides,
  };
}

// ---------------------------------------------------------------------------
// Waiting for what the channel sends without being awaited.

async function until<T>(find: () => T | undefined, what: string): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

// ---------------------------------------------------------------------------

describe('Slack request signatures', { timeout: 60_000 }, () => {
  it("matches Slack's own worked example", () => {
    // docs: api.slack.com/authentication/verifying-requests-from-slack
    const body =
      'token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c';
    assert.equal(
      signSlackRequest('8f742231b10e8888abcd99yyyzzz85a5', 1531420618, body),
      'v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503',
    );
    assert.equal(
      signSlackRequest('8f742231b10e8888abcd99yyyzzz85a5', '1531420618', Buffer.from(body)),
      'v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503',
    );
  });
});

describe('the Slack approval channel', { timeout: 60_000 }, () => {
  let slack: FakeSlack;
  let warden: HttpServer;
  let channel: SlackChannel;
  const approvals = new Approvals();
  const warnings: { obj: object; msg: string }[] = [];
  /** The channel's clock: tests move it to make a signed timestamp stale. */
  let clock = Date.now();

  before(async () => {
    slack = await startFakeSlack(TOKEN, USERS);
    channel = new SlackChannel({
      token: TOKEN,
      channel: CHANNEL,
      signingSecret: SIGNING_SECRET,
      decide: approvals.decide,
      identityByEmail: (email) => IDENTITIES[email],
      slackApiUrl: slack.url,
      retryConfig: { retries: 0 },
      now: () => clock,
      log: { warn: (obj, msg) => warnings.push({ obj, msg }) },
    });
    // What the real service does once a decision ends a request.
    approvals.onSettled = (request) => void channel.settled(request);
    warden = await startHttp(
      { host: '127.0.0.1', port: 0 },
      {
        metrics: async () => [],
        readiness: async () => ({ ready: true, checks: {} }),
        posts: new Map([[channel.path, channel.handle]]),
      },
    );
  });

  after(async () => {
    await warden?.close();
    await slack?.close();
  });

  /** POSTs an interactivity payload to Warden the way Slack does: form-encoded, signed. */
  async function interact(
    payload: object | string,
    sign: { secret?: string; timestamp?: number; headers?: Record<string, string> } = {},
  ): Promise<{ status: number; body: string; type: string | null }> {
    const body = new URLSearchParams({
      payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    }).toString();
    const timestamp = String(sign.timestamp ?? Math.floor(clock / 1000));
    const headers = sign.headers ?? {
      'x-slack-request-timestamp': timestamp,
      'x-slack-signature': independentSignature(sign.secret ?? SIGNING_SECRET, timestamp, body),
    };
    return post(body, headers);
  }

  async function post(
    body: string,
    headers: Record<string, string>,
  ): Promise<{ status: number; body: string; type: string | null }> {
    const response = await fetch(`http://127.0.0.1:${warden.port}${channel.path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body,
    });
    return {
      status: response.status,
      body: await response.text(),
      type: response.headers.get('content-type'),
    };
  }

  /** Published through the channel, with the chat.postMessage call it made. */
  async function publish(overrides: Partial<ApprovalRequest> = {}): Promise<{
    request: ApprovalRequest;
    posted: SlackCall;
    ts: string;
  }> {
    const request = approvals.add(heldRequest(overrides));
    const before = slack.calls.length;
    await channel.published(request);
    const posted = slack.calls.slice(before).find((call) => call.method === 'chat.postMessage');
    assert.ok(posted, 'chat.postMessage was called');
    const ts = [...slack.messages].find(([, message]) =>
      textOf(message.blocks as Block[]).includes(request.id),
    );
    assert.ok(ts, 'the fake Slack holds the message');
    return { request, posted, ts: ts[0] };
  }

  /** Clicks a button as `user` and returns the dialog that opened. */
  async function click(
    request: ApprovalRequest,
    action: 'warden_approve' | 'warden_reject',
    user: string,
  ): Promise<Record<string, unknown>> {
    const before = slack.calls.length;
    const answer = await interact(blockActions(request.id, action, user));
    assert.equal(answer.status, 200);
    assert.equal(answer.body, '');
    const opened = slack.calls.slice(before).find((call) => call.method === 'views.open');
    assert.ok(opened, 'views.open was called');
    return opened.args.view as Record<string, unknown>;
  }

  /** Submits an opened dialog as `user` with a reason, as Slack would send it back. */
  function submission(view: Record<string, unknown>, user: string, reason: string): object {
    return {
      type: 'view_submission',
      team: { id: 'T1' },
      user: { id: user },
      view: {
        id: 'V1',
        callback_id: view.callback_id,
        private_metadata: view.private_metadata,
        state: { values: { reason: { reason: { type: 'plain_text_input', value: reason } } } },
      },
    };
  }

  it('publishes a request with its facts, its SQL and two buttons that carry its id', async () => {
    const { request, posted } = await publish();
    assert.equal(posted.args.channel, CHANNEL);
    assert.match(String(posted.args.text), new RegExp(`Approval needed: ${request.id}`));
    const blocks = blocksOf(posted);
    assert.deepEqual(blocks[0], {
      type: 'header',
      text: { type: 'plain_text', text: `Approval needed: ${request.id}` },
    });
    const text = textOf(blocks);
    for (const fact of [
      '*Identity:*\ndave',
      '*Target:*\nproduction',
      'public.accounts',
      'writes-need-review',
    ]) {
      assert.ok(text.includes(fact), `shows ${JSON.stringify(fact)}`);
    }
    assert.ok(text.includes('writes to accounts need an approval'));
    assert.ok(text.includes('```UPDATE accounts SET balance = balance * 2 WHERE id = $1```'));
    assert.ok(text.includes("$1 = '42'"));
    assert.ok(text.includes(`*Expires:*\n<!date^${Math.floor(Date.parse(request.expiresAt) / 1000)}^`));
    const buttons = buttonsOf(blocks);
    assert.deepEqual(
      buttons.map(({ action_id, style, value }) => ({ action_id, style, value })),
      [
        { action_id: 'warden_approve', style: 'primary', value: request.id },
        { action_id: 'warden_reject', style: 'danger', value: request.id },
      ],
    );
  });

  it('shows SQL as text: no mention, no early end of the code block, long SQL truncated with a note', async () => {
    const sql = `SELECT '<!channel>' AS ping, '\`\`\`' AS fence, 1 < 2 AND 3 > 2 -- ${'x'.repeat(4000)}`;
    const { posted } = await publish({ sql, parameters: [null, "it's", ''] });
    const blocks = blocksOf(posted);
    const text = textOf(blocks);
    assert.ok(!text.includes('<!channel>'), 'the mention is escaped');
    assert.ok(text.includes('&lt;!channel&gt;'));
    assert.ok(text.includes('1 &lt; 2 AND 3 &gt; 2'));
    const sqlSection = text.split('\n').find((line) => line.startsWith('```SELECT'));
    assert.ok(sqlSection);
    // One opening and one closing fence only: the SQL's backticks cannot form another.
    const sqlBlock = text.slice(text.indexOf('*SQL:*'), text.indexOf('_(truncated'));
    assert.equal(sqlBlock.split('```').length, 3);
    assert.ok(text.includes(`_(truncated: ${sql.length} characters in all)_`));
    for (const block of blocks) {
      const section = (block.text as { text?: string } | undefined)?.text ?? '';
      assert.ok(section.length <= 3000, `a section of ${section.length} characters`);
    }
    assert.ok(text.includes("$1 = NULL\n$2 = 'it''s'\n$3 = ''"), 'NULL, quotes and empty strings stay apart');
  });

  it('settled updates the same message with the outcome, who decided and why, and no buttons', async () => {
    const { request, ts } = await publish();
    const before = slack.calls.length;
    const settled: ApprovalRequest = {
      ...request,
      status: 'approved',
      decisions: [
        {
          by: 'alice',
          verdict: 'approve',
          reason: 'ticket OPS-42',
          channel: 'cli',
          at: new Date().toISOString(),
        },
      ],
    };
    await channel.settled(settled);
    const updates = slack.calls.slice(before).filter((call) => call.method === 'chat.update');
    assert.equal(updates.length, 1);
    const [update] = updates;
    assert.equal(update!.args.ts, ts);
    assert.equal(update!.args.channel, CHANNEL);
    const blocks = blocksOf(update!);
    assert.deepEqual(buttonsOf(blocks), []);
    const text = textOf(blocks);
    assert.ok(text.includes(`Approved: ${request.id}`));
    assert.ok(text.includes('*Outcome: approved*'));
    assert.ok(text.includes('Approved by *alice* (cli, '));
    assert.ok(text.includes('ticket OPS-42'));
    assert.ok(text.includes('UPDATE accounts SET balance'), 'the facts stay');
    assert.deepEqual(slack.messages.get(ts)?.blocks, blocks);
  });

  it('settled says when a request expired or was withdrawn', async () => {
    for (const status of ['expired', 'withdrawn'] as const) {
      const { request, ts } = await publish();
      await channel.settled({ ...request, status });
      const text = textOf(slack.messages.get(ts)!.blocks as Block[]);
      assert.ok(text.includes(`*Outcome: ${status}*`));
      assert.deepEqual(buttonsOf(slack.messages.get(ts)!.blocks as Block[]), []);
    }
  });

  it('a signed button click opens a dialog that asks for a reason and carries the request and verdict', async () => {
    const { request } = await publish();
    for (const [action, verdict, title] of [
      ['warden_approve', 'approve', 'Approve'],
      ['warden_reject', 'reject', 'Reject'],
    ] as const) {
      const view = await click(request, action, 'U_ALICE');
      assert.equal(view.type, 'modal');
      assert.equal(view.callback_id, 'warden_decision');
      assert.deepEqual(JSON.parse(String(view.private_metadata)), { id: request.id, verdict });
      assert.deepEqual(view.title, { type: 'plain_text', text: title });
      const input = (view.blocks as Block[]).find((block) => block.type === 'input');
      assert.ok(input, 'the dialog has an input');
      assert.equal(input.block_id, 'reason');
      const element = input.element as { type?: unknown; action_id?: unknown };
      assert.equal(element.type, 'plain_text_input');
      assert.equal(element.action_id, 'reason');
      assert.notEqual(input.optional, true, 'the reason is required');
    }
    const trigger = slack.calls.filter((call) => call.method === 'views.open').at(-1)?.args.trigger_id;
    assert.equal(trigger, `trigger-${request.id}`);
    assert.equal(
      approvals.calls.filter(([id]) => id === request.id).length,
      0,
      'a click alone decides nothing',
    );
  });

  it('a signed submission decides as the Warden identity of the verified email, with the reason', async () => {
    const { request, ts } = await publish();
    const view = await click(request, 'warden_approve', 'U_ALICE');
    const answer = await interact(submission(view, 'U_ALICE', '  checked with the account owner  '));
    assert.equal(answer.status, 200);
    assert.equal(answer.body, '', 'an empty 200 closes the dialog');
    assert.deepEqual(approvals.calls.at(-1), [
      request.id,
      { by: 'alice', verdict: 'approve', reason: 'checked with the account owner', channel: 'slack' },
    ]);
    assert.equal(approvals.requests.get(request.id)?.status, 'approved');
    // The service settles it, and the message shows it.
    const blocks = await until(() => {
      const shown = slack.messages.get(ts)?.blocks as Block[];
      return textOf(shown).includes('*Outcome: approved*') ? shown : undefined;
    }, 'the message to show the approval');
    assert.deepEqual(buttonsOf(blocks), []);
    assert.ok(textOf(blocks).includes('Approved by *alice* (slack, '));
  });

  it('a rejection is decided the same way', async () => {
    const { request } = await publish();
    const view = await click(request, 'warden_reject', 'U_BOB');
    const answer = await interact(submission(view, 'U_BOB', 'not during the freeze'));
    assert.equal(answer.status, 200);
    assert.deepEqual(approvals.calls.at(-1), [
      request.id,
      { by: 'bob', verdict: 'reject', reason: 'not during the freeze', channel: 'slack' },
    ]);
    assert.equal(approvals.requests.get(request.id)?.status, 'rejected');
  });

  it('while more approvals are needed, the message shows who approved so far and keeps its buttons', async () => {
    const { request, ts } = await publish({
      approvers: { groups: [], identities: ['alice', 'bob'], minApprovals: 2 },
    });
    const first = await interact(
      submission(await click(request, 'warden_approve', 'U_ALICE'), 'U_ALICE', 'ok by me'),
    );
    assert.equal(first.status, 200);
    assert.equal(approvals.requests.get(request.id)?.status, 'pending');
    const partial = await until(() => {
      const shown = slack.messages.get(ts)?.blocks as Block[];
      return textOf(shown).includes('*Approved so far* (1 of 2)') ? shown : undefined;
    }, 'the message to show the first approval');
    assert.ok(textOf(partial).includes('Approved by *alice* (slack, '));
    assert.equal(buttonsOf(partial).length, 2);

    const second = await interact(
      submission(await click(request, 'warden_approve', 'U_BOB'), 'U_BOB', 'me too'),
    );
    assert.equal(second.status, 200);
    const final = await until(() => {
      const shown = slack.messages.get(ts)?.blocks as Block[];
      return textOf(shown).includes('*Outcome: approved*') ? shown : undefined;
    }, 'the message to show the outcome');
    assert.deepEqual(buttonsOf(final), []);
    assert.ok(textOf(final).includes('Approved by *bob* (slack, '));
  });

  it('a bad signature is refused with 401 before anything is read or decided', async () => {
    const { request } = await publish();
    const decided = approvals.calls.length;
    const slackCalls = slack.calls.length;
    const payload = submission(
      {
        callback_id: 'warden_decision',
        private_metadata: JSON.stringify({ id: request.id, verdict: 'approve' }),
      },
      'U_ALICE',
      'forged',
    );
    const wrongSecret = await interact(payload, { secret: 'not-the-signing-secret' });
    assert.equal(wrongSecret.status, 401);
    assert.match(wrongSecret.body, /bad signature/);

    // A signature of another body: the request was changed on the way.
    const timestamp = String(Math.floor(clock / 1000));
    const signed = new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
    const tampered = await post(signed.replace('forged', 'forgeD'), {
      'x-slack-request-timestamp': timestamp,
      'x-slack-signature': independentSignature(SIGNING_SECRET, timestamp, signed),
    });
    assert.equal(tampered.status, 401);

    // Not even the right length: refused, not a crash in the comparison.
    const short = await post(signed, {
      'x-slack-request-timestamp': timestamp,
      'x-slack-signature': 'v0=abc',
    });
    assert.equal(short.status, 401);
    assert.match(short.body, /bad signature/);

    assert.equal(approvals.calls.length, decided, 'nothing was decided');
    assert.equal(slack.calls.length, slackCalls, 'Slack was not asked anything');
  });

  it('a timestamp more than 5 minutes from now is refused, either way', async () => {
    const { request } = await publish();
    const decided = approvals.calls.length;
    const payload = blockActions(request.id, 'warden_approve', 'U_ALICE');
    const seconds = Math.floor(clock / 1000);
    for (const timestamp of [seconds - 301, seconds + 301]) {
      const answer = await interact(payload, { timestamp });
      assert.equal(answer.status, 401);
      assert.match(answer.body, /stale timestamp/);
    }
    // A request signed 6 minutes ago, checked by a clock that moved on.
    const signedAt = clock;
    const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
    const headers = {
      'x-slack-request-timestamp': String(Math.floor(signedAt / 1000)),
      'x-slack-signature': independentSignature(SIGNING_SECRET, String(Math.floor(signedAt / 1000)), body),
    };
    assert.equal((await post(body, headers)).status, 200, 'accepted while fresh');
    clock = signedAt + 6 * 60_000;
    try {
      const replayed = await post(body, headers);
      assert.equal(replayed.status, 401);
      assert.match(replayed.body, /stale timestamp/);
    } finally {
      clock = Date.now();
    }
    assert.equal(
      (await interact(payload, { timestamp: seconds - 240 })).status,
      200,
      '4 minutes is within bounds',
    );
    assert.equal(approvals.calls.length, decided);
  });

  it('a request without the signature headers is refused with 401', async () => {
    const payload = blockActions('apr_none', 'warden_approve', 'U_ALICE');
    const timestamp = String(Math.floor(clock / 1000));
    const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
    const signature = independentSignature(SIGNING_SECRET, timestamp, body);
    const incomplete: Record<string, string>[] = [
      {},
      { 'x-slack-request-timestamp': timestamp },
      { 'x-slack-signature': signature },
      { 'x-slack-request-timestamp': 'yesterday', 'x-slack-signature': signature },
    ];
    for (const headers of incomplete) {
      const answer = await interact(payload, { headers });
      assert.equal(answer.status, 401, JSON.stringify(headers));
    }
  });

  it('a signed body that is not a form with a JSON payload is a 400', async () => {
    for (const body of [
      'nothing=here',
      'payload=not%20json',
      `payload=${encodeURIComponent('"a string"')}`,
    ]) {
      const timestamp = String(Math.floor(clock / 1000));
      const answer = await post(body, {
        'x-slack-request-timestamp': timestamp,
        'x-slack-signature': independentSignature(SIGNING_SECRET, timestamp, body),
      });
      assert.equal(answer.status, 400, body);
    }
    // A submission whose metadata is not ours.
    const answer = await interact(
      submission({ callback_id: 'warden_decision', private_metadata: 'garbage' }, 'U_ALICE', 'why'),
    );
    assert.equal(answer.status, 400);
  });

  it('other interactions are answered 200 and change nothing', async () => {
    const decided = approvals.calls.length;
    const calls = slack.calls.length;
    for (const payload of [
      { type: 'view_closed', user: { id: 'U_ALICE' }, view: { callback_id: 'warden_decision' } },
      { type: 'view_submission', user: { id: 'U_ALICE' }, view: { callback_id: 'someone_elses_dialog' } },
      { type: 'block_actions', trigger_id: 't', user: { id: 'U_ALICE' }, actions: [{ action_id: 'other' }] },
    ]) {
      const answer = await interact(payload);
      assert.equal(answer.status, 200);
      assert.equal(answer.body, '');
    }
    assert.equal(approvals.calls.length, decided);
    assert.equal(slack.calls.length, calls);
  });

  it('an email Slack has not verified decides nothing, even if it is an approver’s address', async () => {
    const { request } = await publish();
    const decided = approvals.calls.length;
    const view = await click(request, 'warden_approve', 'U_MALLORY');
    const answer = await interact(submission(view, 'U_MALLORY', 'trust me'));
    assert.equal(answer.status, 200);
    assert.match(answer.type ?? '', /^application\/json/);
    const reply = JSON.parse(answer.body) as { response_action: string; errors: { reason: string } };
    assert.equal(reply.response_action, 'errors');
    assert.match(reply.errors.reason, /no verified email/);
    assert.equal(approvals.calls.length, decided);
    assert.equal(approvals.requests.get(request.id)?.status, 'pending');
  });

  it('a verified email that is no Warden identity decides nothing', async () => {
    const { request } = await publish();
    const decided = approvals.calls.length;
    const answer = await interact(
      submission(await click(request, 'warden_approve', 'U_STRANGER'), 'U_STRANGER', 'hi'),
    );
    const reply = JSON.parse(answer.body) as { response_action: string; errors: { reason: string } };
    assert.equal(reply.response_action, 'errors');
    assert.match(reply.errors.reason, /not a Warden identity/);
    assert.equal(approvals.calls.length, decided);
  });

  it('an empty reason is asked for again, without deciding', async () => {
    const { request } = await publish();
    const decided = approvals.calls.length;
    const answer = await interact(
      submission(await click(request, 'warden_approve', 'U_ALICE'), 'U_ALICE', '   '),
    );
    const reply = JSON.parse(answer.body) as { response_action: string; errors: { reason: string } };
    assert.equal(reply.response_action, 'errors');
    assert.match(reply.errors.reason, /reason/);
    assert.equal(approvals.calls.length, decided);
  });

  it('what the service refuses is shown in the dialog: approving your own request, deciding twice', async () => {
    const { request } = await publish();
    const own = await interact(
      submission(await click(request, 'warden_approve', 'U_DAVE'), 'U_DAVE', 'looks fine'),
    );
    assert.equal(own.status, 200);
    assert.deepEqual(JSON.parse(own.body), {
      response_action: 'errors',
      errors: { reason: 'you cannot approve your own request' },
    });
    assert.deepEqual(approvals.calls.at(-1), [
      request.id,
      { by: 'dave', verdict: 'approve', reason: 'looks fine', channel: 'slack' },
    ]);
    assert.equal(approvals.requests.get(request.id)?.status, 'pending');

    const view = await click(request, 'warden_reject', 'U_ALICE');
    assert.equal((await interact(submission(view, 'U_ALICE', 'no'))).body, '');
    const again = await interact(submission(view, 'U_ALICE', 'no, really'));
    assert.deepEqual(JSON.parse(again.body), {
      response_action: 'errors',
      errors: { reason: `${request.id} is already rejected` },
    });
  });

  it('never logged the token', () => {
    assert.ok(!JSON.stringify(warnings).includes(TOKEN));
  });
});

describe('the Slack approval channel when Slack cannot be reached', { timeout: 60_000 }, () => {
  let down: FakeSlack;
  let wrongToken: FakeSlack;
  let warden: HttpServer;
  const warnings: { obj: object; msg: string }[] = [];
  const approvals = new Approvals();

  const channelTo = (slackApiUrl: string, token = TOKEN) =>
    new SlackChannel({
      token,
      channel: CHANNEL,
      signingSecret: SIGNING_SECRET,
      decide: approvals.decide,
      identityByEmail: (email) => IDENTITIES[email],
      slackApiUrl,
      retryConfig: { retries: 0 },
      log: { warn: (obj, msg) => warnings.push({ obj, msg }) },
    });

  before(async () => {
    down = await startFakeSlack(TOKEN, USERS);
    await down.close(); // nothing listens at its address any more
    wrongToken = await startFakeSlack('xoxb-some-other-workspace', USERS);
  });

  after(async () => {
    await warden?.close();
    await wrongToken?.close();
  });

  it('published and settled resolve, and the failure is logged without the token', async () => {
    const channel = channelTo(down.url);
    const request = approvals.add(heldRequest());
    await channel.published(request);
    await channel.settled({ ...request, status: 'expired' });
    const failed = warnings.filter((warning) => JSON.stringify(warning.obj).includes('chat.postMessage'));
    assert.equal(failed.length, 1);
    assert.equal((failed[0]!.obj as { request: string }).request, request.id);
    assert.ok(!JSON.stringify(warnings).includes(TOKEN));
  });

  it('an answer of ok:false (invalid_auth) is logged, with Slack’s error and without the token', async () => {
    const channel = channelTo(wrongToken.url);
    const request = approvals.add(heldRequest());
    const before = warnings.length;
    await channel.published(request);
    await channel.settled({ ...request, status: 'withdrawn' });
    const logged = warnings.slice(before);
    assert.equal(logged.length, 1, 'the post failed; with no message there is nothing to update');
    assert.match(JSON.stringify(logged[0]!.obj), /invalid_auth/);
    assert.equal(wrongToken.calls.filter((call) => call.method === 'chat.postMessage').length, 1);
    assert.ok(!JSON.stringify(warnings).includes(TOKEN));
  });

  it('a click while Slack is down is answered, not crashed on; a submission decides nothing', async () => {
    const channel = channelTo(down.url);
    warden = await startHttp(
      { host: '127.0.0.1', port: 0 },
      {
        metrics: async () => [],
        readiness: async () => ({ ready: true, checks: {} }),
        posts: new Map([[channel.path, channel.handle]]),
      },
    );
    const request = approvals.add(heldRequest());
    const send = async (payload: object) => {
      const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
      const timestamp = String(Math.floor(Date.now() / 1000));
      return fetch(`http://127.0.0.1:${warden.port}${channel.path}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          'x-slack-request-timestamp': timestamp,
          'x-slack-signature': independentSignature(SIGNING_SECRET, timestamp, body),
        },
        body,
      });
    };
    const clicked = await send(blockActions(request.id, 'warden_approve', 'U_ALICE'));
    assert.equal(clicked.status, 502);
    await clicked.text();
    const submitted = await send({
      type: 'view_submission',
      user: { id: 'U_ALICE' },
      view: {
        callback_id: 'warden_decision',
        private_metadata: JSON.stringify({ id: request.id, verdict: 'approve' }),
        state: { values: { reason: { reason: { type: 'plain_text_input', value: 'fine' } } } },
      },
    });
    assert.equal(submitted.status, 200);
    const reply = (await submitted.json()) as { response_action: string; errors: { reason: string } };
    assert.equal(reply.response_action, 'errors');
    assert.match(reply.errors.reason, /could not look up your Slack profile/);
    assert.equal(approvals.calls.length, 0);
    assert.ok(!JSON.stringify(warnings).includes(TOKEN));
  });
});

/** A button click as Slack sends it. */
function blockActions(id: string, action: 'warden_approve' | 'warden_reject' | string, user: string): object {
  return {
    type: 'block_actions',
    team: { id: 'T1' },
    user: { id: user },
    trigger_id: `trigger-${id}`,
    channel: { id: CHANNEL },
    container: { type: 'message', channel_id: CHANNEL },
    actions: [{ type: 'button', block_id: 'warden_decision', action_id: action, value: id }],
  };
}

/**
 * Signed here with node:crypto directly rather than with signSlackRequest, so
 * a mistake in the channel's scheme cannot be echoed by the tests (that one is
 * checked against Slack's published example above).
 */
function independentSignature(secret: string, timestamp: string, body: string): string {
  return `v0=${createHmac('sha256', secret).update(`v0:${timestamp}:${body}`).digest('hex')}`;
}
