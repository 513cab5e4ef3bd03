/**
 * The config as the rest of Warden sees it: readonly plain data, derived from
 * the schema's output (enums come from it; build() in load.ts must type-check
 * against these), with named files read into Buffers and paths made absolute.
 */
import type * as z from 'zod';
import type { MaskingConfig } from '../masking/policy.ts';
import type { Policy } from '../policy/rules.ts';
import type { StoreSpec } from '../store/open-audit.ts';
import type { identityKindSchema, ParsedConfig, tlsModeSchema } from './schema.ts';

export type IdentityKind = z.output<typeof identityKindSchema>;
export type TlsMode = z.output<typeof tlsModeSchema>;
type ParsedListen = ParsedConfig['listen'];
type ParsedAuth = ParsedConfig['auth'];

export interface IdentityConfig {
  readonly name: string;
  readonly kind: IdentityKind;
  readonly groups: readonly string[];
  /** Matches Slack users (by their verified email) to this identity. */
  readonly email?: string;
}

export interface TargetConfig {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly user: string;
  /** Resolved from `password` or `passwordFile`; never logged, never shown. */
  readonly password: string | undefined;
  readonly tls: {
    readonly mode: TlsMode;
    readonly ca: Buffer | undefined;
    readonly serverName: string | undefined;
  };
  readonly labels: Readonly<Record<string, string>>;
  readonly access: {
    readonly identities: readonly string[];
    readonly groups: readonly string[];
    readonly kinds: readonly IdentityKind[];
  };
  readonly connectTimeoutMs: number;
}

export interface WardenConfig {
  /** Absolute path of the file loaded. */
  readonly file: string;
  readonly listen: {
    readonly host: string;
    readonly port: number;
    readonly tls: { readonly cert: Buffer; readonly key: Buffer } | undefined;
    readonly requireTls: ParsedListen['requireTls'];
    readonly maxMessageSize: number;
    readonly workers: number;
  };
  /** The HTTP listener of metrics and health endpoints. */
  readonly http: { readonly enabled: boolean; readonly host: string; readonly port: number };
  readonly log: {
    readonly level: ParsedConfig['log']['level'];
    readonly format: ParsedConfig['log']['format'];
  };
  /** Absolute. */
  readonly dataDir: string;
  readonly auth: {
    readonly method: ParsedAuth['method'];
    readonly cleartext: ParsedAuth['cleartext'];
    readonly backoff: { readonly baseMs: number; readonly maxMs: number; readonly windowMs: number };
  };
  readonly identities: readonly IdentityConfig[];
  readonly targets: readonly TargetConfig[];
  readonly policy: Policy;
  readonly masking: MaskingConfig;
  readonly audit: {
    /** false: no trail at all (development, benchmarks of its cost). */
    readonly enabled: boolean;
    /** The url of a postgres store holds its password: never logged, never shown. */
    readonly store: StoreSpec;
    /** This instance's hash chain (workers append -w1, -w2...). */
    readonly chain: string;
    readonly redactLiterals: boolean;
    readonly onStoreFailure: 'deny' | 'spool';
    readonly queueLimit: number;
    readonly retentionDays: number | undefined;
    /** Signed checkpoints of the chain head (undefined: none); keyFile undefined: the data folder's key. */
    readonly checkpoints: { readonly everyMs: number; readonly keyFile: string | undefined } | undefined;
  };
  readonly approvals: ApprovalsConfig;
  readonly warnings: readonly string[];
}

export interface ApprovalsConfig {
  readonly approvers: { readonly groups: readonly string[]; readonly identities: readonly string[] };
  readonly minApprovals: number;
  readonly timeoutMs: number;
  readonly keepAliveMs: number;
  readonly mode: 'hold' | 'async';
  readonly asyncWindowMs: number;
  /** Where people approve (<id>: the request's id); the CLI command when not configured. */
  readonly where: string;
  /** Secrets: never logged, never shown. */
  readonly slack:
    | {
        readonly token: string;
        readonly channel: string;
        readonly signingSecret: string;
        /** Slack's Web API base URL, when not https://slack.com/api/. */
        readonly apiUrl?: string;
      }
    | undefined;
  readonly webhook: { readonly url: string; readonly secret: string } | undefined;
}
