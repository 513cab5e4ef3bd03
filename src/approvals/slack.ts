/**
 * The Slack approval channel: each held statement is posted to one channel
 * as a message with Approve and Reject buttons; a click opens a dialog that
 * asks for the reason, and its submission is turned into a decision for the
 * approval service. Who decided is never taken from Slack's user name: the
 * clicking user's email, verified by Slack, is mapped to a Warden identity.
 *
 * Every request Slack sends to `/slack/interactivity` is signed with the
 * app's signing secret (https://api.slack.com/authentication/verifying-requests-from-slack);
 * nothing in the body is read before the signature and its timestamp pass.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import {
  type KnownBlock,
  type Logger,
  LogLevel,
  type RetryOptions,
  type View,
  WebClient,
} from '@slack/web-api';
import type { PostHandler, PostReply } from '../api/http.ts';
import type {
  ApprovalChannel,
  ApprovalDecision,
  ApprovalRequest,
  DecideRequest,
  RequestStatus,
  Verdict,
} from './types.ts';

export interface SlackChannelOptions {
  /** The bot token (xoxb-…): never logged, never in an error message. */
  readonly token: string;
  /** The id of the Slack channel requests are posted in. */
  readonly channel: string;
  /** The app's signing secret: verifies that interactivity requests come from Slack. */
  readonly signingSecret: string;
  /** Brings a decision back to the approval service. */
  readonly decide: DecideRequest;
  /** The Warden identity of a Slack user's verified email, if there is one. */
  readonly identityByEmail: (email: string) => string | undefined;
  /** Where the Web API is (tests point it at a local server). */
  readonly slackApiUrl?: string;
  /** How often a failed call to Slack is tried again (tests: `{ retries: 0 }`). */
  readonly retryConfig?: RetryOptions;
  /** The clock, in ms, for the timestamp check. */
  readonly now?: () => number;
  /** Where failures to reach Slack go; they are never thrown. */
  readonly log?: { warn(obj: object, msg: string): void };
}

/** A posted message: what `chat.update` needs to find it again. */
interface Posted {
  readonly channel: string;
  readonly ts: string;
}

/** Slack refuses a request older than this, and so do we: a captured request cannot be replayed later. */
const MAX_CLOCK_SKEW_S = 5 * 60;
/** Slack's section text holds 3000 characters; the SQL gets most of it, with room for the fences and a note. */
const MAX_SQL_CHARS = 2500;
const MAX_PARAMETERS_CHARS = 2500;
const MAX_FIELD_CHARS = 1900;
/** A decision's reason: what the dialog takes. */
const MAX_REASON_CHARS = 500;

const CALLBACK_ID = 'warden_decision';
const ACTIONS: Readonly<Record<string, Verdict>> = { warden_approve: 'approve', warden_reject: 'reject' };

/**
 * A couple of quick retries, not the SDK's default of ten over thirty
 * minutes: a request expires long before that, and a click in Slack waits on
 * its calls (Slack gives up on an answer after 3 seconds).
 */
const DEFAULT_RETRIES: RetryOptions = { retries: 2, factor: 2, minTimeout: 500, maxTimeout: 2000 };

const EMPTY: PostReply = { status: 200, body: '' };

/** The `v0=` signature Slack puts in `x-slack-signature` for this body at this timestamp (seconds). */
export function signSlackRequest(
  signingSecret: string,
  timestamp: number | string,
  body: string | Buffer,
): string {
  // Computed over the body's exact bytes: re-encoding a parsed form would not match.
  const hmac = createHmac('sha256', signingSecret);
  hmac.update(`v0:${timestamp}:`);
  hmac.update(body);
  return `v0=${hmac.digest('hex')}`;
}

export class SlackChannel implements ApprovalChannel {
  readonly name = 'slack';
  readonly path = '/slack/interactivity';
  readonly #options: SlackChannelOptions;
  readonly #client: WebClient;
  readonly #now: () => number;
  /**
   * Per request id: its posting, then each rewrite chained after it, so a
   * late "approved so far" can never overwrite the final outcome. Held in
   * memory: a message posted by another process (or before a restart) is not
   * rewritten, though its buttons still decide.
   */
  readonly #messages = new Map<string, Promise<Posted | undefined>>();

  constructor(options: SlackChannelOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#client = new WebClient(options.token, {
      ...(options.slackApiUrl === undefined ? {} : { slackApiUrl: options.slackApiUrl }),
      retryConfig: options.retryConfig ?? DEFAULT_RETRIES,
      timeout: 10_000,
      // The SDK would print to the console; failures are reported once, by us, through `log`.
      logger: SILENT,
    });
  }

  async published(request: ApprovalRequest): Promise<void> {
    const posting = this.#post(request);
    this.#messages.set(request.id, posting);
    await posting;
  }

  async settled(request: ApprovalRequest): Promise<void> {
    await this.#rewrite(request, true);
  }

  /** Slack's interactivity endpoint: button clicks and dialog submissions. */
  readonly handle: PostHandler = async (body, headers) => {
    const refused = this.#verify(body, headers);
    if (refused !== undefined) return { status: 401, body: `${refused}\n` };
    const payload = payloadOf(body);
    if (payload === undefined) {
      return { status: 400, body: 'expected a form body whose payload field holds a JSON object\n' };
    }
    const type = at(payload, 'type');
    if (type === 'block_actions') return this.#askReason(payload);
    if (type === 'view_submission' && at(payload, 'view', 'callback_id') === CALLBACK_ID) {
      return this.#decide(payload);
    }
    // Other interactions (a closed dialog, a shortcut) need no answer but a 200.
    return EMPTY;
  };

  /** Why the request is not Slack's, or undefined when it is. */
  #verify(body: Buffer, headers: http.IncomingHttpHeaders): string | undefined {
    const timestamp = headers['x-slack-request-timestamp'];
    const signature = headers['x-slack-signature'];
    if (typeof timestamp !== 'string' || typeof signature !== 'string') {
      return 'missing x-slack-request-timestamp or x-slack-signature';
    }
    const seconds = Number(timestamp);
    if (!/^\d+$/.test(timestamp) || Math.abs(this.#now() / 1000 - seconds) > MAX_CLOCK_SKEW_S) {
      return 'stale timestamp';
    }
    const expected = Buffer.from(signSlackRequest(this.#options.signingSecret, timestamp, body));
    const given = Buffer.from(signature);
    // timingSafeEqual throws on different lengths; a length says nothing about the secret.
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'bad signature';
    return undefined;
  }

  /** A button was clicked: every decision needs a reason, so ask for one in a dialog. */
  async #askReason(payload: object): Promise<PostReply> {
    const actions = at(payload, 'actions');
    const action = Array.isArray(actions)
      ? (actions as unknown[]).find((candidate) => ACTIONS[String(at(candidate, 'action_id'))] !== undefined)
      : undefined;
    if (action === undefined) return EMPTY;
    const verdict = ACTIONS[String(at(action, 'action_id'))]!;
    const id = text(at(action, 'value'));
    const trigger = text(at(payload, 'trigger_id'));
    if (id === undefined || trigger === undefined) {
      return { status: 400, body: 'the action has no request id or no trigger_id\n' };
    }
    try {
      await this.#client.views.open({ trigger_id: trigger, view: reasonDialog(id, verdict) });
    } catch (error) {
      this.#warn('views.open', id, error);
      // Not a 200: Slack then shows the clicker that something went wrong.
      return { status: 502, body: 'could not open the decision dialog in Slack\n' };
    }
    return EMPTY;
  }

  /** The dialog was submitted: find who it was, and decide. */
  async #decide(payload: object): Promise<PostReply> {
    const metadata = jsonOf(text(at(payload, 'view', 'private_metadata')) ?? '');
    const id = text(at(metadata, 'id'));
    const verdict = at(metadata, 'verdict');
    const user = text(at(payload, 'user', 'id'));
    if (id === undefined || (verdict !== 'approve' && verdict !== 'reject') || user === undefined) {
      return { status: 400, body: 'the submission has no request id, verdict or user\n' };
    }
    const reason = text(at(payload, 'view', 'state', 'values', 'reason', 'reason', 'value'))?.trim() ?? '';
    if (reason === '') return dialogError('Give a reason: it goes into the audit trail.');

    let profile: { is_email_confirmed?: boolean; profile?: { email?: string } } | undefined;
    try {
      profile = (await this.#client.users.info({ user })).user;
    } catch (error) {
      this.#warn('users.info', id, error);
      return dialogError('Warden could not look up your Slack profile; try again in a moment.');
    }
    // Only an email Slack has verified says who someone is: anyone can type an unconfirmed one.
    const email = profile?.is_email_confirmed === true ? profile.profile?.email : undefined;
    if (email === undefined || email === '') {
      return dialogError(
        'Your Slack account has no verified email address, so Warden cannot tell who you are.',
      );
    }
    const by = this.#options.identityByEmail(email);
    if (by === undefined) return dialogError(`${email} is not a Warden identity that may decide requests.`);

    const result = await this.#options.decide(id, { by, verdict, reason, channel: 'slack' });
    if (!result.ok) return dialogError(result.error);
    // More approvals needed: show who approved so far. Not awaited: Slack wants
    // its answer within 3 seconds, and the decision is already recorded.
    if (result.request.status === 'pending') void this.#rewrite(result.request, false);
    return EMPTY;
  }

  async #post(request: ApprovalRequest): Promise<Posted | undefined> {
    try {
      const result = await this.#client.chat.postMessage({
        channel: this.#options.channel,
        text: fallbackText(request),
        blocks: messageBlocks(request),
      });
      if (result.ts === undefined) throw new Error('Slack answered without the message ts');
      return { channel: result.channel ?? this.#options.channel, ts: result.ts };
    } catch (error) {
      this.#warn('chat.postMessage', request.id, error);
      return undefined;
    }
  }

  /** Rewrites the request's message once its posting and earlier rewrites are done; `last` forgets it after. */
  async #rewrite(request: ApprovalRequest, last: boolean): Promise<void> {
    const previous = this.#messages.get(request.id);
    // Not posted by this process, or already settled.
    if (previous === undefined) return;
    const next = previous.then(async (posted) => {
      if (posted === undefined) return undefined;
      try {
        await this.#client.chat.update({
          channel: posted.channel,
          ts: posted.ts,
          text: fallbackText(request),
          blocks: messageBlocks(request),
        });
      } catch (error) {
        this.#warn('chat.update', request.id, error);
      }
      return posted;
    });
    if (last) this.#messages.delete(request.id);
    else this.#messages.set(request.id, next);
    await next;
  }

  #warn(method: string, request: string, error: unknown): void {
    // The SDK's errors name the method and Slack's error code; the token is
    // cut out anyway, in case a transport error ever quotes a header.
    const described = error instanceof Error ? error.message : String(error);
    this.#options.log?.warn(
      { method, request, error: described.replaceAll(this.#options.token, '[redacted]') },
      `slack: ${method} failed; the request can still be decided through another channel`,
    );
  }
}

/** The message for a request: the facts, the outcome so far, and the buttons while it is pending. */
function messageBlocks(request: ApprovalRequest): KnownBlock[] {
  const blocks: KnownBlock[] = [
    { type: 'header', text: { type: 'plain_text', text: `${HEADLINES[request.status]}: ${request.id}` } },
    { type: 'section', fields: factFields(request).map((field) => ({ type: 'mrkdwn', text: field })) },
  ];
  if (request.message !== '') {
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: `*Why:* ${mrkdwn(request.message)}` } });
  }
  if (request.reason !== '') {
    blocks.push({
      type: 'section',
      text: { type: 'mrkdwn', text: `*Requester's reason:* ${mrkdwn(request.reason)}` },
    });
  }
  if (request.sql !== null) blocks.push(codeSection('SQL', request.sql, MAX_SQL_CHARS));
  if (request.parameters !== null && request.parameters.length > 0) {
    // Written as SQL literals, so NULL and an empty string (or the text 'NULL') stay apart.
    const lines = request.parameters.map(
      (value, index) => `$${index + 1} = ${value === null ? 'NULL' : `'${value.replaceAll("'", "''")}'`}`,
    );
    blocks.push(codeSection('Parameters', lines.join('\n'), MAX_PARAMETERS_CHARS));
  }
  blocks.push(...outcomeBlocks(request));
  if (request.status === 'pending') {
    blocks.push({
      type: 'actions',
      block_id: 'warden_decision',
      elements: [
        {
          type: 'button',
          action_id: 'warden_approve',
          style: 'primary',
          value: request.id,
          text: { type: 'plain_text', text: 'Approve' },
        },
        {
          type: 'button',
          action_id: 'warden_reject',
          style: 'danger',
          value: request.id,
          text: { type: 'plain_text', text: 'Reject' },
        },
      ],
    });
  }
  return blocks;
}

const HEADLINES: Readonly<Record<RequestStatus, string>> = {
  pending: 'Approval needed',
  approved: 'Approved',
  rejected: 'Rejected',
  expired: 'Expired',
  withdrawn: 'Withdrawn',
  revoked: 'Revoked',
};

function factFields(request: ApprovalRequest): string[] {
  const fields = [
    `*Identity:*\n${mrkdwn(request.identity)}`,
    `*Target:*\n${mrkdwn(request.target)}`,
    `*Tables:*\n${request.tables.length === 0 ? '(none)' : mrkdwn(request.tables.join(', '))}`,
    `*Rule:*\n${request.rule === null ? '(none)' : mrkdwn(request.rule)}`,
    `*Expires:*\n${slackDate(request.expiresAt)}`,
    `*Approvals needed:*\n${request.approvers.minApprovals}`,
  ];
  if (request.grant !== null) {
    fields.push(
      `*Role:*\n${mrkdwn(request.grant.role)}`,
      `*For:*\n${Math.round(request.grant.forMs / 60_000)} min`,
    );
  }
  return fields;
}

/** Who decided what so far, and why (one section each, so many reasons cannot overflow one); none while nobody has. */
function outcomeBlocks(request: ApprovalRequest): KnownBlock[] {
  const approvals = request.decisions.filter((decision) => decision.verdict === 'approve').length;
  const headline =
    request.status !== 'pending'
      ? OUTCOMES[request.status]
      : approvals > 0
        ? `*Approved so far* (${approvals} of ${request.approvers.minApprovals})`
        : undefined;
  if (headline === undefined) return [];
  return [headline, ...request.decisions.map(decisionLine)].map((line) => ({
    type: 'section',
    text: { type: 'mrkdwn', text: line },
  }));
}

const OUTCOMES: Readonly<Record<Exclude<RequestStatus, 'pending'>, string>> = {
  approved: '*Outcome: approved*',
  rejected: '*Outcome: rejected*',
  expired: '*Outcome: expired*: nobody decided in time',
  withdrawn: '*Outcome: withdrawn*: the statement no longer waits',
  revoked: '*Outcome: revoked*: the grant ended before its time',
};

function decisionLine(decision: ApprovalDecision): string {
  const verb = decision.verdict === 'approve' ? 'Approved' : 'Rejected';
  const reason = mrkdwn(decision.reason, MAX_REASON_CHARS);
  return `${verb} by *${mrkdwn(decision.by, 100)}* (${decision.channel}, ${slackDate(decision.at)}): ${reason}`;
}

function codeSection(title: string, code: string, max: number): KnownBlock {
  const whole = mrkdwn(code, Number.POSITIVE_INFINITY, true);
  const shown = whole.length <= max ? whole : mrkdwn(code, max, true);
  const note = shown === whole ? '' : `\n_(truncated: ${code.length} characters in all)_`;
  return { type: 'section', text: { type: 'mrkdwn', text: `*${title}:*\n\`\`\`${shown}\`\`\`${note}` } };
}

/** The plain text of notifications and clients without blocks. */
function fallbackText(request: ApprovalRequest): string {
  const { status, id, identity, target, message } = request;
  return mrkdwn(`${HEADLINES[status]}: ${id}: ${identity} on ${target}: ${message}`, 3000);
}

/** The dialog that asks for the reason of an approval or a rejection. */
function reasonDialog(id: string, verdict: Verdict): View {
  const title = verdict === 'approve' ? 'Approve' : 'Reject';
  return {
    type: 'modal',
    callback_id: CALLBACK_ID,
    private_metadata: JSON.stringify({ id, verdict }),
    title: { type: 'plain_text', text: title },
    submit: { type: 'plain_text', text: title },
    close: { type: 'plain_text', text: 'Cancel' },
    blocks: [
      {
        type: 'section',
        text: { type: 'mrkdwn', text: `${title} *${mrkdwn(id)}*: the reason goes into the audit trail.` },
      },
      {
        type: 'input',
        block_id: 'reason',
        optional: false,
        label: { type: 'plain_text', text: 'Reason' },
        element: {
          type: 'plain_text_input',
          action_id: 'reason',
          multiline: true,
          max_length: MAX_REASON_CHARS,
        },
      },
    ],
  };
}

/** What a dialog submission answers to show an error under the reason field (the dialog stays open). */
function dialogError(why: string): PostReply {
  return {
    status: 200,
    type: 'application/json',
    body: JSON.stringify({ response_action: 'errors', errors: { reason: why } }),
  };
}

/** The JSON object in the form's `payload` field, or undefined. */
function payloadOf(body: Buffer): object | undefined {
  const payload = new URLSearchParams(body.toString('utf8')).get('payload');
  return payload === null ? undefined : jsonOf(payload);
}

function jsonOf(source: string): object | undefined {
  try {
    const value: unknown = JSON.parse(source);
    return typeof value === 'object' && value !== null ? value : undefined;
  } catch {
    return undefined;
  }
}

/** The value at a path in parsed JSON, or undefined wherever the path breaks. */
function at(value: unknown, ...path: string[]): unknown {
  for (const key of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/**
 * Slack reads `<…>` as links and mentions (`<!channel>`) and `&` as an
 * entity, in code blocks too: SQL and identities are user input, so they must
 * not ping a channel or hide text.
 */
const ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;' };
/**
 * In a code block, a ``` in the code would close the block and let the rest
 * read as message text (a fake "Rule: none" under the real one): a zero-width
 * space after each backtick keeps them from forming a fence.
 */
const CODE_ESCAPES: Readonly<Record<string, string>> = { ...ESCAPES, '`': '`\u200b' };

/**
 * The value escaped for Slack's mrkdwn, cut to `max` characters with … when
 * longer. Counted after escaping (Slack's limits count what it receives), and
 * cut between characters, never inside an escape or a surrogate pair.
 */
function mrkdwn(value: string, max = MAX_FIELD_CHARS, code = false): string {
  const escapes = code ? CODE_ESCAPES : ESCAPES;
  const pieces = Array.from(value, (char) => escapes[char] ?? char);
  const whole = pieces.join('');
  if (whole.length <= max) return whole;
  let out = '';
  for (const piece of pieces) {
    if (out.length + piece.length > max - 1) break;
    out += piece;
  }
  return `${out}…`;
}

/** A time each reader sees in their own time zone, with the ISO text where Slack cannot format it. */
function slackDate(iso: string): string {
  const seconds = Math.floor(Date.parse(iso) / 1000);
  if (Number.isNaN(seconds)) return mrkdwn(iso);
  return `<!date^${seconds}^{date_short_pretty} {time_secs}|${mrkdwn(iso)}>`;
}

const SILENT: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  setLevel: () => {},
  getLevel: () => LogLevel.ERROR,
  setName: () => {},
};
