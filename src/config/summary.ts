import { withoutSecrets } from './errors.ts';
import type { TargetConfig, WardenConfig } from './types.ts';

/**
 * What `warden check-config` prints: enough to see what Warden will do, never
 * a password (only whether one is set).
 */
export function redactedSummary(config: WardenConfig): string {
  const { listen, auth, identities, targets, warnings } = config;
  const lines = [
    `config: ${config.file}`,
    `listen: ${listen.host}:${listen.port}, tls ${listen.tls === undefined ? 'off' : 'on'}, requireTls ${listen.requireTls}, maxMessageSize ${formatSize(listen.maxMessageSize)}, workers ${listen.workers}`,
    `dataDir: ${config.dataDir}`,
    `auth: ${auth.method}, cleartext ${auth.cleartext}, backoff ${auth.backoff.baseMs}-${auth.backoff.maxMs} ms within ${auth.backoff.windowMs / 1000} s`,
    `identities (${identities.length}):`,
    ...identities.map(
      (identity) =>
        `  ${identity.name} (${identity.kind})${identity.groups.length > 0 ? ` groups: ${identity.groups.join(', ')}` : ''}`,
    ),
    `targets (${targets.length}):`,
    ...targets.map(describeTarget),
    ...(warnings.length > 0
      ? [`warnings (${warnings.length}):`, ...warnings.map((warning) => `  ${warning}`)]
      : []),
  ];
  return withoutSecrets(lines.join('\n'), secretsOf(config));
}

/** Every secret the config holds (target passwords, the masking key, the audit store URL and its password): what no output may show. */
export function secretsOf(config: WardenConfig): string[] {
  const secrets = config.targets.flatMap((target) =>
    target.password === undefined ? [] : [target.password],
  );
  if (config.masking.key !== undefined) secrets.push(config.masking.key);
  const { slack, webhook } = config.approvals;
  if (slack) secrets.push(slack.token, slack.signingSecret);
  if (webhook) secrets.push(webhook.secret);
  const { store } = config.audit;
  if (store.kind === 'postgres') {
    secrets.push(store.url);
    try {
      const password = decodeURIComponent(new URL(store.url).password);
      if (password !== '') secrets.push(password);
    } catch {
      // not a URL: the schema refused it already
    }
  }
  return secrets;
}

function describeTarget(target: TargetConfig): string {
  const labels = Object.entries(target.labels).map(([name, value]) => `${name}=${value}`);
  const { identities, groups, kinds } = target.access;
  const access = [
    identities.length > 0 ? `identities ${identities.join(', ')}` : '',
    groups.length > 0 ? `groups ${groups.join(', ')}` : '',
    kinds.length > 0 ? `kinds ${kinds.join(', ')}` : '',
  ].filter((part) => part !== '');
  return [
    `  ${target.name} -> ${target.user}@${target.host}:${target.port}/${target.database}`,
    `    tls ${target.tls.mode}${target.tls.serverName === undefined ? '' : ` (serverName ${target.tls.serverName})`}, password ${target.password === undefined ? 'none' : 'set'}, connectTimeout ${target.connectTimeoutMs} ms`,
    `    labels: ${labels.length > 0 ? labels.join(', ') : 'none'}`,
    `    access: ${access.length > 0 ? access.join('; ') : 'nobody'}`,
  ].join('\n');
}

function formatSize(bytes: number): string {
  for (const [unit, size] of [
    ['GB', 1024 ** 3],
    ['MB', 1024 ** 2],
    ['kB', 1024],
  ] as const) {
    if (bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return `${bytes}B`;
}
