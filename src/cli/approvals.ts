/**
 * `warden approvals list|show|approve|reject`: approval requests in the
 * store, decided from the command line. The decision goes into the store,
 * where the Warden holding the statement reads it (within a poll), and into
 * the audit trail as an event of this host's CLI chain.
 *
 * The command line trusts its operator to say who they are (`--as`): whoever
 * can run it can read the store and the config anyway. The rules still hold:
 * `--as` must be an approver of the request, and not the identity that asked.
 */
import { approvalEvent } from '../approvals/service.ts';
import { ApprovalStore, approversText } from '../approvals/store.ts';
import type { ApprovalRequest, RequestStatus, Verdict } from '../approvals/types.ts';
import { loadConfig } from '../config/index.ts';
import { openStore } from '../store/store.ts';
import { recordAdminEvent } from './audit.ts';
import { UsageError } from './errors.ts';

const STATUSES: readonly (RequestStatus | 'all')[] = [
  'pending',
  'approved',
  'rejected',
  'expired',
  'withdrawn',
  'all',
];

export async function approvalsListCommand(options: {
  readonly config: string;
  readonly status: string;
  readonly json?: boolean;
}): Promise<void> {
  if (!STATUSES.includes(options.status as RequestStatus)) {
    throw new UsageError(`--status must be one of ${STATUSES.join(', ')}, not "${options.status}"`);
  }
  const requests = await withApprovals(options.config, (store) =>
    store.list(options.status === 'all' ? undefined : (options.status as RequestStatus)),
  );
  if (options.json) {
    for (const request of requests) process.stdout.write(`${JSON.stringify(request)}\n`);
    return;
  }
  if (requests.length === 0) {
    process.stderr.write(`no ${options.status === 'all' ? '' : `${options.status} `}approval requests\n`);
    return;
  }
  for (const request of requests) process.stdout.write(`${listLine(request)}\n`);
}

export async function approvalsShowCommand(options: {
  readonly config: string;
  readonly id: string;
}): Promise<void> {
  const request = await withApprovals(options.config, (store) => store.get(options.id));
  if (request === undefined) throw new UsageError(`no approval request ${options.id}`);
  process.stdout.write(details(request));
}

export async function approvalsDecideCommand(
  verdict: Verdict,
  options: { readonly config: string; readonly id: string; readonly as: string; readonly reason: string },
): Promise<ApprovalRequest> {
  if (options.reason.trim() === '') throw new UsageError('--reason must say why');
  const config = await loadConfig(options.config);
  const identity = config.identities.find((candidate) => candidate.name === options.as);
  if (identity === undefined) throw new UsageError(`--as ${options.as}: no such identity in ${config.file}`);
  const opened = openStore(config.dataDir);
  let result: ReturnType<ApprovalStore['decide']>;
  try {
    result = new ApprovalStore(opened.db).decide(
      options.id,
      { name: identity.name, groups: identity.groups },
      { by: identity.name, verdict, reason: options.reason, channel: 'cli' },
    );
  } finally {
    opened.close();
  }
  if (!result.ok) throw new DecisionRefused(result.error);
  const { request } = result;
  await recordAdminEvent(
    config,
    approvalEvent(
      request,
      'approval.decision',
      {
        identity: identity.name,
        session: null,
        detail: `${verdict} (request ${request.status})`,
        reason: options.reason.trim(),
        channel: 'cli',
      },
      Date.now(),
    ),
  );
  const approvals = request.decisions.filter((d) => d.verdict === 'approve').length;
  process.stdout.write(
    request.status === 'pending'
      ? `${request.id}: approval recorded (${approvals} of ${request.approvers.minApprovals} needed)\n`
      : `${request.id}: ${request.status}\n`,
  );
  return request;
}

/** A decision the rules refuse (self-approval, not an approver, decided already): exit 1, the reason on stderr. */
export class DecisionRefused extends Error {
  override readonly name = 'DecisionRefused';
}

async function withApprovals<T>(file: string, work: (store: ApprovalStore) => T): Promise<T> {
  const config = await loadConfig(file);
  const opened = openStore(config.dataDir);
  try {
    return work(new ApprovalStore(opened.db));
  } finally {
    opened.close();
  }
}

function listLine(request: ApprovalRequest): string {
  const what = request.sql === null ? `grant ${request.grant?.role ?? ''}` : clip(oneLine(request.sql), 80);
  return [
    request.id,
    request.status.padEnd(9),
    request.identity,
    `on ${request.target}`,
    `rule ${request.rule ?? '(default)'}`,
    `expires ${request.expiresAt}`,
    what,
  ].join('  ');
}

function details(request: ApprovalRequest): string {
  const lines = [
    `request    ${request.id} (${request.kind})`,
    `status     ${request.status}`,
    `asked by   ${request.identity}`,
    `target     ${request.target}`,
    `rule       ${request.rule ?? '(default)'}: ${request.message}`,
    `tables     ${request.tables.join(', ') || '(none)'}`,
    `created    ${request.createdAt}`,
    `expires    ${request.expiresAt}`,
    `approvers  ${approversText(request.approvers)}; ${request.approvers.minApprovals} approval(s) needed`,
  ];
  if (request.sql !== null) lines.push('statement', ...request.sql.split('\n').map((line) => `  ${line}`));
  if (request.parameters !== null && request.parameters.length > 0) {
    lines.push(
      `parameters ${request.parameters.map((p, i) => `$${i + 1}=${p === null ? 'NULL' : p}`).join(' ')}`,
    );
  }
  for (const d of request.decisions)
    lines.push(`decision   ${d.verdict} by ${d.by} via ${d.channel} at ${d.at}: ${d.reason}`);
  return `${lines.join('\n')}\n`;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

function clip(text: string, length: number): string {
  return text.length <= length ? text : `${text.slice(0, length - 1)}…`;
}
