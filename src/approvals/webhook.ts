/**
 * The signed webhook approval channel: Warden POSTs each new approval
 * request, and later its outcome, to a URL of the integrator's; the
 * integrator brings decisions back by POSTing to Warden's
 * `/approvals/webhook`. One shared secret signs both directions.
 *
 * The signature scheme (what an integrator implements):
 *
 *   X-Warden-Timestamp: <unix time in whole seconds>
 *   X-Warden-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
 *
 * The HMAC is over the exact bytes of the body as sent, so a receiver must
 * verify before parsing JSON (re-serialising changes the bytes). The
 * timestamp is part of the signed text and must be within 5 minutes of the
 * receiver's clock, either way: a captured delivery cannot be replayed later.
 * Within those 5 minutes a replay is the same decision by the same identity
 * again; approvals count distinct identities (ApproverRule.minApprovals), so
 * the service must refuse or ignore the repeat rather than count it.
 *
 * Outbound, Warden sends `Content-Type: application/json` and the body
 * `{"event":"approval.requested"|"approval.settled","request":<ApprovalRequest>}`.
 * Any 2xx is delivered; a network error, a timeout or a 5xx is retried a few
 * times with a short backoff; a 4xx is the receiver refusing and is not.
 * A retry after a slow answer may deliver twice: receivers dedupe by request
 * id and event.
 *
 * Inbound, the body is `{"id","verdict":"approve"|"reject","by","reason"}`,
 * all non-empty strings. Warden answers 401 (signature), 400 (body), 409 (the
 * service refused the decision: unknown id, already settled, not an
 * approver) or 200 with `{"status":<the request's status after it>}`.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import type { PostHandler, PostReply } from '../api/http.ts';
import type { ApprovalChannel, ApprovalRequest, DecideRequest, Verdict } from './types.ts';

export const TIMESTAMP_HEADER = 'X-Warden-Timestamp';
export const SIGNATURE_HEADER = 'X-Warden-Signature';

/** How far a signed timestamp may be from the receiver's clock, either way. */
export const MAX_SKEW_MS = 5 * 60_000;

/** The only signature version so far; the prefix lets a v2 coexist during a migration. */
const VERSION = 'v1=';

export type WebhookEvent = 'approval.requested' | 'approval.settled';

export interface WebhookOptions {
  /** Where requests and outcomes are POSTed. */
  readonly url: string;
  /** The HMAC key of both directions. Never logged, never put in an error. */
  readonly secret: string;
  /** Where signed decisions coming in are taken. */
  readonly decide: DecideRequest;
  /** Milliseconds since the epoch; a fixed clock in tests. */
  readonly now?: () => number;
  /** Per delivery attempt. */
  readonly timeoutMs?: number;
  /** Attempts after the first one. */
  readonly retries?: number;
  /** The wait before the first retry; it doubles for each next one, up to MAX_BACKOFF_MS. */
  readonly backoffMs?: number;
  readonly log?: { warn(obj: object, msg: string): void };
}

const DEFAULT_TIMEOUT_MS = 5_000;
const DEFAULT_RETRIES = 3;
const DEFAULT_BACKOFF_MS = 200;
/** A long outage must not hold a delivery (and what awaits it) for minutes. */
const MAX_BACKOFF_MS = 2_000;

/** The `v1=<hex>` value of X-Warden-Signature for a body sent at `timestamp` (unix seconds). */
export function signWebhook(secret: string, timestamp: number, body: string | Buffer): string {
  const mac = createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex');
  return `${VERSION}${mac}`;
}

export type Verification = { readonly ok: true } | { readonly ok: false; readonly why: string };

/**
 * Whether `body` was signed with `secret` less than MAX_SKEW_MS from `nowMs`.
 * `headers` as node:http gives them (names in lower case). The reason says
 * what is wrong, never what was expected.
 */
export function verifyWebhook(
  secret: string,
  headers: http.IncomingHttpHeaders,
  body: string | Buffer,
  nowMs: number,
): Verification {
  const timestamp = headers[TIMESTAMP_HEADER.toLowerCase()];
  const signature = headers[SIGNATURE_HEADER.toLowerCase()];
  if (typeof timestamp !== 'string' || timestamp === '')
    return { ok: false, why: `${TIMESTAMP_HEADER} is missing` };
  if (typeof signature !== 'string' || signature === '')
    return { ok: false, why: `${SIGNATURE_HEADER} is missing` };
  // Whole digits only: "1e9" or " 17" would sign differently from how they compare.
  if (!/^\d{1,15}$/.test(timestamp)) return { ok: false, why: `${TIMESTAMP_HEADER} is not unix seconds` };
  if (Math.abs(nowMs - Number(timestamp) * 1000) > MAX_SKEW_MS) {
    return { ok: false, why: `${TIMESTAMP_HEADER} is more than 5 minutes from this server's clock` };
  }
  const expected = Buffer.from(signWebhook(secret, Number(timestamp), body));
  const given = Buffer.from(signature);
  // timingSafeEqual throws on different lengths; a length says nothing about the secret.
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { ok: false, why: `${SIGNATURE_HEADER} does not match the body and timestamp` };
  }
  return { ok: true };
}

/** What one delivery attempt came to. */
type Attempt =
  | { readonly delivered: true }
  | { readonly delivered: false; readonly retry: boolean; readonly problem: string };

export class WebhookChannel implements ApprovalChannel {
  readonly name = 'webhook';
  readonly path = '/approvals/webhook';
  readonly #options: WebhookOptions;
  readonly #now: () => number;

  constructor(options: WebhookOptions) {
    // With an empty key anyone who reads the scheme could sign a decision; the config schema
    // should never let one through, and this is the last place to notice.
    if (options.secret === '') throw new TypeError('the webhook channel needs a non-empty secret');
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  published(request: ApprovalRequest): Promise<void> {
    return this.#deliver('approval.requested', request);
  }

  settled(request: ApprovalRequest): Promise<void> {
    return this.#deliver('approval.settled', request);
  }

  /** Signed decisions coming in. An arrow, so it can be handed to the HTTP listener as is. */
  readonly handle: PostHandler = async (body, headers) => {
    const verified = verifyWebhook(this.#options.secret, headers, body, this.#now());
    if (!verified.ok) return text(401, verified.why);
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      return text(400, 'the body is not JSON');
    }
    const decision = decisionOf(parsed);
    if (typeof decision === 'string') return text(400, decision);
    const { id, ...rest } = decision;
    const result = await this.#options.decide(id, { ...rest, channel: 'webhook' });
    return result.ok ? json(200, { status: result.request.status }) : json(409, { error: result.error });
  };

  /** Never throws: a receiver that is down is logged and the approval goes on without it. */
  async #deliver(event: WebhookEvent, request: ApprovalRequest): Promise<void> {
    const body = JSON.stringify({ event, request });
    const retries = Math.max(0, this.#options.retries ?? DEFAULT_RETRIES);
    const backoffMs = this.#options.backoffMs ?? DEFAULT_BACKOFF_MS;
    for (let attempt = 0; ; attempt++) {
      const outcome = await this.#attempt(body);
      if (outcome.delivered) return;
      if (!outcome.retry || attempt >= retries) {
        // The origin only: a webhook URL's path or query often is a credential of its own.
        this.#options.log?.warn(
          {
            channel: this.name,
            event,
            request: request.id,
            endpoint: originOf(this.#options.url),
            attempts: attempt + 1,
          },
          `webhook delivery failed: ${outcome.problem}`,
        );
        return;
      }
      await sleep(Math.min(backoffMs * 2 ** attempt, MAX_BACKOFF_MS));
    }
  }

  async #attempt(body: string): Promise<Attempt> {
    // Signed at each attempt, so a retry after a backoff still carries a fresh timestamp.
    const timestamp = Math.floor(this.#now() / 1000);
    try {
      const response = await fetch(this.#options.url, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          [TIMESTAMP_HEADER]: String(timestamp),
          [SIGNATURE_HEADER]: signWebhook(this.#options.secret, timestamp, body),
        },
        body,
        signal: AbortSignal.timeout(this.#options.timeoutMs ?? DEFAULT_TIMEOUT_MS),
        // A redirect would re-send the request (its SQL) to wherever the receiver points; it is
        // reported as a wrong URL instead of followed.
        redirect: 'manual',
      });
      // The answer's body is not used; cancelling it frees the connection.
      await response.body?.cancel().catch(() => undefined);
      if (response.ok) return { delivered: true };
      if (response.status >= 500) {
        return { delivered: false, retry: true, problem: `the receiver answered ${response.status}` };
      }
      const hint = response.status < 400 ? ' (a redirect: set url to the final address)' : '';
      return { delivered: false, retry: false, problem: `the receiver answered ${response.status}${hint}` };
    } catch (error) {
      return { delivered: false, retry: true, problem: networkProblem(error) };
    }
  }
}

/** The decision in an inbound body, or what is wrong with it (naming the field). */
function decisionOf(parsed: unknown): { id: string; by: string; verdict: Verdict; reason: string } | string {
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    return 'the body is not a JSON object';
  const fields = parsed as Record<string, unknown>;
  const blank = (value: unknown) => typeof value !== 'string' || value.trim() === '';
  if (blank(fields.id)) return '"id" must be a non-empty string';
  if (fields.verdict !== 'approve' && fields.verdict !== 'reject') {
    return '"verdict" must be "approve" or "reject"';
  }
  if (blank(fields.by)) return '"by" must be a non-empty string';
  // A decision without its reason leaves the audit trail unable to say why.
  if (blank(fields.reason)) return '"reason" must be a non-empty string';
  return {
    id: fields.id as string,
    by: fields.by as string,
    verdict: fields.verdict,
    reason: fields.reason as string,
  };
}

/**
 * Why fetch failed, in words that cannot carry the secret: the error's name
 * or system code, not the request it was given.
 */
function networkProblem(error: unknown): string {
  if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) {
    return 'no answer in time';
  }
  const cause = error instanceof Error ? (error.cause as { code?: unknown } | undefined) : undefined;
  if (typeof cause?.code === 'string') return `network error ${cause.code}`;
  return 'network error';
}

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return 'an invalid URL';
  }
}

function text(status: number, message: string): PostReply {
  return { status, type: 'text/plain', body: `${message}\n` };
}

function json(status: number, value: object): PostReply {
  return { status, type: 'application/json', body: `${JSON.stringify(value)}\n` };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
