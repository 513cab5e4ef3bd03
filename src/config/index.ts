export { CONFIG_ERROR_CODE, ConfigError, type ConfigIssue, formatConfigError } from './errors.ts';
export { loadConfig, parseConfig } from './load.ts';
export { configSchema } from './schema.ts';
export { redactedSummary, secretsOf } from './summary.ts';
export type { IdentityConfig, IdentityKind, TargetConfig, TlsMode, WardenConfig } from './types.ts';
export { type WatchOptions, watchConfig } from './watch.ts';
