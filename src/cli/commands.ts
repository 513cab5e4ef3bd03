import cluster from 'node:cluster';
import { writeFile } from 'node:fs/promises';
import { type HttpServer, startHttp } from '../api/http.ts';
import {
  formatConfigError,
  loadConfig,
  redactedSummary,
  secretsOf,
  type WardenConfig,
  watchConfig,
} from '../config/index.ts';
import { type CreatedKey, createApiKey, listApiKeys, revokeApiKey } from '../identity/keys.ts';
import { discover, MAX_SAMPLE_ROWS, proposalYaml } from '../masking/discover.ts';
import { createLog } from '../observe/log.ts';
import { processMetrics } from '../observe/warden-metrics.ts';
import { startServer } from '../proxy/server.ts';
import { currentWorkerId, runPrimary, workerChannel } from '../proxy/workers.ts';
import { openStore, StoreError } from '../store/store.ts';
import { recordAdminEvent } from './audit.ts';
import { UsageError } from './errors.ts';

const out = (text: string) => process.stdout.write(`${text}\n`);
const err = (text: string) => process.stderr.write(`${text}\n`);

export async function startCommand(file: string): Promise<void> {
  let config = await loadConfig(file);
  const log = createLog({ ...config.log, secrets: () => secretsOf(config) });
  if (cluster.isPrimary && config.listen.workers > 1) {
    for (const warning of config.warnings) log.warn(`warning: ${warning}`);
    await runPrimary({
      count: config.listen.workers,
      log: { info: (text) => log.info(text), error: (text) => log.error(text) },
      http: config.http.enabled ? config.http : undefined,
    });
    return;
  }
  const workerId = currentWorkerId();
  const worker = workerId === 0 ? '' : ` (worker ${workerId})`;
  if (workerId === 0) for (const warning of config.warnings) log.warn(`warning: ${warning}`);
  const channel = workerId === 0 ? undefined : workerChannel();
  const server = await startServer(config, {
    workerId,
    routeCancel: channel?.routeCancel,
    log,
    onAuditState: (state, error) => {
      if (state === 'recovered') log.info(`audit store recovered${worker}`);
      else
        log.error(
          { error },
          `audit store ${state === 'fatal' ? 'lost' : 'failing'}${worker}: ${error ?? ''}`,
        );
    },
  });
  const status = () => ({
    metrics: [...server.metrics.registry.snapshot(), ...processMetrics()],
    readiness: server.readiness(),
  });
  let http: HttpServer | undefined;
  if (channel) {
    channel.onCancel((processId, secret) => server.cancel(processId, secret));
    channel.onStatus(status);
    channel.ready(server.host, server.port);
  } else {
    log.info(
      { host: server.host, port: server.port },
      `warden listening on ${server.host}:${server.port} (${config.listen.tls ? 'TLS available' : 'no TLS'})`,
    );
    if (config.http.enabled) {
      try {
        http = await startHttp(config.http, {
          metrics: async () => status().metrics,
          readiness: async () => server.readiness(),
          posts: server.posts,
        });
      } catch (error) {
        await server.close();
        throw error;
      }
      log.info(`http on http://${http.host}:${http.port} (/metrics, /healthz, /readyz)`);
    }
  }
  const watcher = watchConfig(
    file,
    (next: WardenConfig) => {
      server.reload(next);
      log.info(`config reloaded from ${file}${worker}`);
      for (const warning of next.warnings) log.warn(`warning: ${warning}`);
      // The sockets are already bound: a new address or data folder applies only after a restart.
      if (next.listen.host !== config.listen.host || next.listen.port !== config.listen.port) {
        log.warn(
          `warning: listen address changed to ${next.listen.host}:${next.listen.port}; restart Warden to apply it`,
        );
      }
      if (
        next.http.host !== config.http.host ||
        next.http.port !== config.http.port ||
        next.http.enabled !== config.http.enabled
      )
        log.warn('warning: http settings changed; restart Warden to apply them');
      if (next.dataDir !== config.dataDir)
        log.warn(`warning: dataDir changed to ${next.dataDir}; restart Warden to apply it`);
      config = { ...next, listen: config.listen, http: config.http, dataDir: config.dataDir };
    },
    (error) =>
      log.error(`config change refused, still serving the previous config:\n${formatConfigError(error)}`),
  );
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  watcher.close();
  await http?.close();
  await server.close();
  if (workerId === 0) log.info('warden stopped');
  // A worker's IPC channel would keep it alive.
  else process.disconnect?.();
}

export async function checkConfigCommand(file: string): Promise<void> {
  const config = await loadConfig(file);
  out(redactedSummary(config));
  for (const warning of config.warnings) err(`warning: ${warning}`);
  out(`${file}: OK`);
}

export async function keyCreateCommand(options: {
  identity: string;
  config: string;
  label?: string;
}): Promise<void> {
  const config = await loadConfig(options.config);
  const identity = config.identities.find((candidate) => candidate.name === options.identity);
  if (!identity) {
    const known = config.identities.map((candidate) => candidate.name).join(', ') || 'none';
    throw new UsageError(
      `no identity "${options.identity}" in ${options.config} (known: ${known}); add it under identities: first`,
    );
  }
  const store = openStore(config.dataDir);
  let key: CreatedKey;
  try {
    key = createApiKey(store, identity.name, options.label);
  } finally {
    store.close();
  }
  // Recorded before the secret is shown: a key the trail does not know of is revoked, its secret never printed.
  try {
    await recordAdminEvent(config, { type: 'key.create', subject: identity.name, keyId: key.keyId });
  } catch (error) {
    const again = openStore(config.dataDir);
    try {
      revokeApiKey(again, key.keyId);
    } finally {
      again.close();
    }
    throw new StoreError(
      `${(error as Error).message}; key ${key.keyId} was revoked at once and its secret not shown: create it once the audit store works`,
    );
  }
  err(`created key ${key.keyId} for ${identity.kind} "${identity.name}". It is shown only this once:`);
  out(key.secret);
}

export async function keyListCommand(options: { config: string; identity?: string }): Promise<void> {
  const config = await loadConfig(options.config);
  const store = openStore(config.dataDir);
  try {
    const keys = listApiKeys(store, options.identity);
    if (keys.length === 0) {
      out('no keys');
      return;
    }
    out(['KEY ID', 'IDENTITY', 'CREATED', 'STATUS', 'LABEL'].join('\t'));
    for (const key of keys) {
      const status = key.revokedAt ? `revoked ${key.revokedAt}` : 'active';
      out([key.keyId, key.identity, key.createdAt, status, key.label ?? ''].join('\t'));
    }
  } finally {
    store.close();
  }
}

export async function keyRevokeCommand(keyId: string, file: string): Promise<void> {
  const config = await loadConfig(file);
  const store = openStore(config.dataDir);
  let subject: string;
  try {
    subject = listApiKeys(store).find((key) => key.keyId === keyId && key.revokedAt === null)?.identity ?? '';
    if (!revokeApiKey(store, keyId)) {
      throw new UsageError(`no active key with id "${keyId}" (see \`warden key list --config ${file}\`)`);
    }
    out(`revoked key ${keyId}`);
  } finally {
    store.close();
  }
  // The revocation stands even when the trail cannot record it; the exit code says it was not recorded.
  try {
    await recordAdminEvent(config, { type: 'key.revoke', subject, keyId });
  } catch (error) {
    throw new StoreError(`key ${keyId} is revoked, but ${(error as Error).message}`);
  }
}

/** Proposes masking.columns for a target from a sample of its rows; writes counts, never values. */
export async function discoverCommand(options: {
  target: string;
  config: string;
  out?: string;
  sample: string;
}): Promise<void> {
  const sampleRows = Number(options.sample);
  if (!/^\d+$/.test(options.sample) || sampleRows < 1 || sampleRows > MAX_SAMPLE_ROWS) {
    throw new UsageError(
      `--sample must be a whole number of rows from 1 to ${MAX_SAMPLE_ROWS}, not "${options.sample}"`,
    );
  }
  const config = await loadConfig(options.config);
  for (const warning of config.warnings) err(`warning: ${warning}`);
  const target = config.targets.find((candidate) => candidate.name === options.target);
  if (!target) {
    const known = config.targets.map((candidate) => candidate.name).join(', ') || 'none';
    throw new UsageError(
      `no target "${options.target}" in ${options.config} (known: ${known}); pass one of them to --target, or add it under targets:`,
    );
  }
  const discovery = await discover(target, { sampleRows });
  const yaml = proposalYaml(discovery);
  const summary = `proposed ${discovery.columns.length} columns from ${discovery.tables} tables of target "${target.name}"`;
  if (options.out === undefined) {
    process.stdout.write(yaml);
    err(summary);
    return;
  }
  await writeFile(options.out, yaml);
  err(`${summary}; wrote ${options.out} for review`);
}
