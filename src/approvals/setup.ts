/**
 * The approval service of one Warden process, as its config asks: the store
 * it keeps requests in, the channels that show them (a signed webhook, Slack)
 * and the HTTP endpoints those channels bring decisions back through.
 */
import type { PostHandler } from '../api/http.ts';
import type { AuditSink } from '../audit/writer.ts';
import type { WardenConfig } from '../config/index.ts';
import type { Db } from '../store/store.ts';
import { GrantBook } from './grants.ts';
import { ApprovalService, type ApprovalSettings } from './service.ts';
import { SlackChannel } from './slack.ts';
import { ApprovalStore } from './store.ts';
import type { ApprovalChannel, DecideRequest } from './types.ts';
import { WebhookChannel } from './webhook.ts';

export interface Approvals {
  readonly service: ApprovalService;
  /** The just-in-time grants identities hold, for rules that match grants. */
  readonly grants: GrantBook;
  /** POST endpoints for the HTTP listener, by path. */
  readonly posts: ReadonlyMap<string, PostHandler>;
}

interface Log {
  warn(obj: object, msg: string): void;
}

export function settingsOf(config: WardenConfig, instance: string): ApprovalSettings {
  const { approvals } = config;
  return {
    approvers: { ...approvals.approvers, minApprovals: approvals.minApprovals },
    timeoutMs: approvals.timeoutMs,
    keepAliveMs: approvals.keepAliveMs,
    mode: approvals.mode,
    asyncWindowMs: approvals.asyncWindowMs,
    instance,
    where: approvals.where,
  };
}

export function startApprovals(
  config: WardenConfig,
  db: Db,
  instance: string,
  audit: AuditSink | undefined,
  log?: Log,
): Approvals {
  const channels: (ApprovalChannel & { readonly path: string; readonly handle: PostHandler })[] = [];
  // Channels are made before the service they decide through: they reach it through this.
  let service: ApprovalService | undefined;
  const decide: DecideRequest = (id, decision) => service!.decide(id, decision);
  const { webhook, slack } = config.approvals;
  if (webhook) channels.push(new WebhookChannel({ url: webhook.url, secret: webhook.secret, decide, log }));
  if (slack) {
    channels.push(
      new SlackChannel({
        token: slack.token,
        channel: slack.channel,
        signingSecret: slack.signingSecret,
        ...(slack.apiUrl === undefined ? {} : { slackApiUrl: slack.apiUrl }),
        decide,
        // Identities as configured when the decision comes (a reload may add emails).
        identityByEmail: (email) => service?.identityByEmail(email),
        log,
      }),
    );
  }
  const store = new ApprovalStore(db);
  service = new ApprovalService(store, settingsOf(config, instance), config.identities, channels, audit);
  service.start();
  return {
    service,
    grants: new GrantBook(store),
    posts: new Map(channels.map((channel) => [channel.path, channel.handle])),
  };
}
