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
import { ApprovalStore, approversText, mayDecide } from '../approvals/store.ts';
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

/** How long a grant request waits for a decision: a person asks ahead, unlike a held statement. */
const GRANT_REQUEST_MS = 24 * 3_600_000;

/** `1h`, `30m`, `2d`, `90s`: a duration in ms; undefined for anything else. */
export function durationMs(text: string): number | undefined {
  const match = /^(\d+)(s|m|h|d)$/.exec(text.trim());
  if (!match) return undefined;
  const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 's' | 'm' | 'h' | 'd'];
  const ms = Number(match[1]) * unit;
  return ms > 0 ? ms : undefined;
}

/**
 * `warden grant request`: asks for a time-bound grant of a role on a
 * target; approvers decide it as any request (`warden approvals approve`),
 * and from the approval on, rules that match the role apply for `--for`.
 */
export async function grantRequestCommand(options: {
  readonly config: string;
  readonly as: string;
  readonly target: string;
  readonly role: string;
  readonly for: string;
  readonly reason: string;
}): Promise<ApprovalRequest> {
  const forMs = durationMs(options.for);
  if (forMs === undefined)
    throw new UsageError(`--for must be a duration such as 30m, 1h or 2d, not "${options.for}"`);
  if (options.reason.trim() === '') throw new UsageError('--reason must say why');
  if (!/^[A-Za-z0-9_.:-]+$/.test(options.role))
    throw new UsageError(`--role "${options.role}" is not a role name`);
  const config = await loadConfig(options.config);
  if (!config.identities.some((identity) => identity.name === options.as)) {
    throw new UsageError(`--as ${options.as}: no such identity in ${config.file}`);
  }
  if (!config.targets.some((target) => target.name === options.target)) {
    throw new UsageError(`--target ${options.target}: no such target in ${config.file}`);
  }
  const opened = openStore(config.dataDir);
  let request: ApprovalRequest;
  try {
    request = new ApprovalStore(opened.db).create({
      kind: 'grant',
      identity: options.as,
      target: options.target,
      sql: null,
      parameters: null,
      fingerprint: null,
      tables: [],
      rule: null,
      message: `grant of role ${options.role} on ${options.target} for ${options.for}`,
      grant: { role: options.role, forMs },
      reason: options.reason.trim(),
      approvers: { ...config.approvals.approvers, minApprovals: config.approvals.minApprovals },
      mode: 'async',
      instance: 'cli',
      timeoutMs: GRANT_REQUEST_MS,
      validForMs: forMs,
    });
  } finally {
    opened.close();
  }
  await recordAdminEvent(
    config,
    approvalEvent(
      request,
      'approval.request',
      {
        identity: options.as,
        session: null,
        detail: `grant ${options.role} for ${options.for}`,
        reason: request.reason,
      },
      Date.now(),
    ),
  );
  process.stdout.write(`${request.id}\n`);
  process.stderr.write(
    `asked for ${options.role} on ${options.target} for ${options.for}: an approver runs\n  warden approvals approve ${request.id} --as <approver> --reason "..." --config ${config.file}\n`,
  );
  return request;
}

export async function grantListCommand(options: {
  readonly config: string;
  readonly json?: boolean;
}): Promise<void> {
  const grants = await withApprovals(options.config, (store) => store.grants());
  for (const grant of grants) {
    const until = new Date(
      Date.parse(grant.decisions.at(-1)?.at ?? grant.createdAt) + (grant.grant?.forMs ?? 0),
    );
    process.stdout.write(
      options.json
        ? `${JSON.stringify(grant)}\n`
        : `${grant.id}  ${grant.identity}  ${grant.grant?.role ?? ''} on ${grant.target}  until ${until.toISOString()}\n`,
    );
  }
  if (grants.length === 0 && !options.json) process.stderr.write('no grants in force\n');
}

/** Ends a grant early: an approver of it, or its holder, with a reason. */
export async function grantRevokeCommand(options: {
  readonly config: string;
  readonly id: string;
  readonly as: string;
  readonly reason: string;
}): Promise<void> {
  if (options.reason.trim() === '') throw new UsageError('--reason must say why');
  const config = await loadConfig(options.config);
  const identity = config.identities.find((candidate) => candidate.name === options.as);
  if (identity === undefined) throw new UsageError(`--as ${options.as}: no such identity in ${config.file}`);
  const opened = openStore(config.dataDir);
  let grant: ApprovalRequest | undefined;
  try {
    const store = new ApprovalStore(opened.db);
    grant = store.get(options.id);
    if (grant === undefined || grant.kind !== 'grant') throw new UsageError(`no grant ${options.id}`);
    const allowed =
      grant.identity === identity.name ||
      mayDecide(grant.approvers, { name: identity.name, groups: identity.groups });
    if (!allowed)
      throw new DecisionRefused(
        `${identity.name} may not revoke ${options.id}: only its holder or its approvers may`,
      );
    if (!store.revoke(options.id))
      throw new DecisionRefused(`${options.id} is not in force (it is ${grant.status}, or its time is up)`);
  } finally {
    opened.close();
  }
  await recordAdminEvent(
    config,
    approvalEvent(
      grant,
      'approval.settle',
      {
        identity: identity.name,
        session: null,
        detail: 'revoked',
        reason: options.reason.trim(),
        channel: 'cli',
      },
      Date.now(),
    ),
  );
  process.stdout.write(`${options.id}: revoked\n`);
}
