/**
 * The PostgreSQL listener: accepts connections, hands each to the client
 * handshake, and keeps what connections share (config snapshot, TLS,
 * authenticator, back-off, cancel keys, live sessions).
 */
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import type { PostHandler, Readiness } from '../api/http.ts';
import { settingsOf, startApprovals } from '../approvals/setup.ts';
import { loggedCheckpoint, signingKey } from '../audit/checkpoints.ts';
import type { AuditEvent } from '../audit/events.ts';
import type { StatementRun } from '../audit/statement.ts';
import { type AuditSink, AuditWriter } from '../audit/writer.ts';
import type { WardenConfig } from '../config/index.ts';
import { ApiKeyAuthenticator, type Authenticator } from '../identity/authenticator.ts';
import { LoginBackoff } from '../identity/backoff.ts';
import { Catalogs } from '../masking/catalog.ts';
import { maskingKey } from '../masking/key.ts';
import { Masking } from '../masking/masking.ts';
import { MaskingPolicy, masksAnything } from '../masking/policy.ts';
import type { Log } from '../observe/log.ts';
import { WardenMetrics } from '../observe/warden-metrics.ts';
import type { Decide } from '../policy/decision.ts';
import { PolicyEngine } from '../policy/engine.ts';
import { certificateDer, serverEndPoint } from '../protocol/postgres/scram.ts';
import { loadParser } from '../sql/analysis.ts';
import { openStore, type Store } from '../store/store.ts';
import { CancelRegistry } from './cancel.ts';
import { cancelSession, type ListenerContext, serveClient } from './client.ts';
import { listenOn } from './listen.ts';
import { Session } from './session.ts';
import { UpstreamError } from './upstream.ts';

export interface WardenServer {
  readonly host: string;
  readonly port: number;
  readonly sessions: ReadonlySet<Session>;
  /** The audit trail's writer (undefined when audit is off). */
  readonly audit: AuditWriter | undefined;
  readonly metrics: WardenMetrics;
  /** POST endpoints of the approval channels (Slack, webhooks), for the HTTP listener. */
  readonly posts: ReadonlyMap<string, PostHandler>;
  /** Whether it should be sent connections, and why not. */
  readiness(): Readiness;
  /** Cancels the session owning a key (a CancelRequest routed here from another worker). */
  cancel(processId: number, secret: Buffer): void;
  /** Applies a new config: policy from the next statement on, the rest to new connections. */
  reload(config: WardenConfig): void;
  /** Stops listening and ends every session with a FATAL 57P01. */
  close(): Promise<void>;
}

export interface ServerOptions {
  /** The decision point; by default the policy of the config (reloaded with it). */
  readonly decide?: Decide;
  readonly authenticator?: Authenticator;
  /** An already open store (else one is opened in config.dataDir). */
  readonly store?: Store;
  /** This process's worker id (1..), when several share the port; 0 alone. */
  readonly workerId?: number;
  /** Where cancel keys of other workers go. */
  readonly routeCancel?: (processId: number, secret: Buffer) => void;
  /** false: no audit trail (tests of other concerns); by default the config's. */
  readonly audit?: false;
  /** Where refused logins and (at debug) sessions opened and closed are logged. */
  readonly log?: Log;
  /** Told when the audit store fails or recovers. */
  readonly onAuditState?: (state: 'failing' | 'recovered' | 'fatal', error?: string) => void;
}

export async function startServer(initial: WardenConfig, options: ServerOptions = {}): Promise<WardenServer> {
  let config = initial;
  let tlsSetup = tlsFor(config);
  await loadParser();
  const chain = options.workerId ? `${config.audit.chain}-w${options.workerId}` : config.audit.chain;
  const audit =
    options.audit === false || !config.audit.enabled
      ? undefined
      : await AuditWriter.start({
          store: config.audit.store,
          chain,
          redact: config.audit.redactLiterals,
          onFailure: config.audit.onStoreFailure,
          spoolFile: path.join(config.dataDir, `audit-spool-${chain}.jsonl`),
          queueLimit: config.audit.queueLimit,
          retentionDays: config.audit.retentionDays,
          onState: options.onAuditState,
          checkpoints: config.audit.checkpoints && {
            everyMs: config.audit.checkpoints.everyMs,
            keyPem: signingKey(config.audit.checkpoints.keyFile, config.dataDir)
              .key.export({ format: 'pem', type: 'pkcs8' })
              .toString(),
          },
          // The log's copy is the one outside the store: `warden audit verify --checkpoints <log>`.
          onCheckpoint: (checkpoint) =>
            options.log?.info({ checkpoint: loggedCheckpoint(checkpoint) }, 'audit checkpoint'),
        });
  const metrics = new WardenMetrics();
  if (audit) metrics.watchAudit(() => audit.stats);
  // Metrics count the events the trail records, whether or not there is a trail.
  const events: AuditSink = {
    record(event) {
      metrics.observe(event);
      if (options.log) logEvent(options.log, event);
      audit?.record(event);
    },
    get refusal() {
      return audit?.refusal;
    },
    statements: true,
  };
  const catalogs = new Catalogs();
  const maskingFor = (next: WardenConfig): Masking | undefined => {
    if (!masksAnything(next.masking)) return undefined;
    return new Masking(
      new MaskingPolicy(next.masking, maskingKey(next.masking.key, next.dataDir)),
      catalogs,
      (session, report) => Session.of(session)?.maskedResult(report.columns, report.rows),
    );
  };
  let masking = options.decide ? undefined : maskingFor(config);
  const engine = options.decide ? undefined : new PolicyEngine(config.policy, undefined, undefined, masking);
  engine?.timeStages(metrics);
  const ownStore = options.store ? undefined : openStore(config.dataDir);
  const store = options.store ?? ownStore!;
  const approvals = startApprovals(config, store.db, chain, events, options.log);
  engine?.setGrants(approvals.grants.rolesOf);
  const sessions = new Set<Session>();
  let sessionIds = 0;
  const context: ListenerContext = {
    config: () => config,
    tls: () => tlsSetup,
    authenticator: options.authenticator ?? new ApiKeyAuthenticator(store),
    backoff: new LoginBackoff(config.auth.backoff),
    cancels: new CancelRegistry<Session>(options.workerId ?? 0),
    routeCancel: options.routeCancel,
    decide: options.decide ?? engine!.decide,
    prepareTarget: async (target) => {
      if (masking === undefined) return;
      try {
        await catalogs.ready(target);
      } catch (error) {
        throw new UpstreamError(
          '08006',
          `Warden cannot read the catalog of target "${target.name}", which masking needs: ${(error as Error).message}`,
        );
      }
    },
    sessions,
    nextSessionId: () => ++sessionIds,
    audit: events,
    observer: metrics,
    approvals: approvals.service,
    chain,
  };
  const connections = new Set<net.Socket>();
  const server = net.createServer({ noDelay: true }, (socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
    void serveClient(socket, context);
  });
  try {
    await listenOn(server, config.listen, 'listen');
  } catch (error) {
    await audit?.close();
    ownStore?.close();
    throw error;
  }
  server.on('error', () => {}); // per-connection errors are handled on their sockets
  const address = server.address() as net.AddressInfo;
  let closing = false;
  return {
    host: address.address,
    port: address.port,
    sessions,
    audit,
    metrics,
    posts: approvals.posts,
    readiness: () => readinessOf(closing, audit),
    cancel: (processId, secret) => cancelSession(context, processId, secret),
    reload(next) {
      const nextTls = tlsFor(next);
      config = next;
      tlsSetup = nextTls;
      engine?.setPolicy(next.policy);
      approvals.service.reload(settingsOf(next, chain), next.identities);
      audit?.record({
        type: 'config.reload',
        at: new Date().toISOString(),
        identity: 'warden',
        file: next.file,
        ok: true,
        error: null,
      });
      if (engine) {
        masking = maskingFor(next);
        engine.setMasking(masking);
      }
      context.backoff.update(next.auth.backoff);
    },
    async close() {
      closing = true;
      approvals.service.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of [...sessions]) {
        session.fatal({
          sqlstate: '57P01',
          message: 'terminating connection because Warden is shutting down',
        });
      }
      // Connections still logging in have no session to end: cut them after the FATAL replies go out.
      setTimeout(() => {
        for (const socket of connections) socket.destroy();
      }, 200).unref();
      await closed;
      await audit?.close();
      ownStore?.close();
    },
  };
}

function tlsFor(config: WardenConfig): { context: tls.SecureContext; endPoint: Buffer } | undefined {
  const settings = config.listen.tls;
  if (!settings) return undefined;
  return {
    context: tls.createSecureContext({ cert: settings.cert, key: settings.key }),
    endPoint: serverEndPoint(certificateDer(settings.cert)),
  };
}

function readinessOf(closing: boolean, audit: AuditWriter | undefined): Readiness {
  const checks: Record<string, string> = { listener: closing ? 'shutting down' : 'ok' };
  let ready = !closing;
  if (audit === undefined) {
    checks.audit = 'off';
  } else {
    // Statements would be refused (store failing in deny mode, or the queue full): send connections elsewhere.
    const refusal = audit.refusal;
    if (refusal) ready = false;
    checks.audit =
      refusal?.message ?? (audit.stats.failing ? 'store failing; events are spooled until it is back' : 'ok');
  }
  return { ready, checks };
}

/** What of the event stream belongs in the log too: refused logins, and at debug sessions. */
function logEvent(log: Log, event: AuditEvent | StatementRun): void {
  if (event.type === 'login.failed') {
    const { identity, client, target, sqlstate } = event;
    log.info({ identity, client, target, sqlstate }, `login refused: ${event.reason}`);
  } else if (event.type === 'connection.open' && log.isLevelEnabled('debug')) {
    const { identity, session, client, target, pipeline } = event;
    log.debug({ identity, session, client, target, pipeline }, 'session opened');
  } else if (event.type === 'connection.close' && log.isLevelEnabled('debug')) {
    const { identity, session, durationMs, statements } = event;
    log.debug({ identity, session, durationMs, statements }, 'session closed');
  }
}
