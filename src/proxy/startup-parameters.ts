/**
 * Which startup parameters reach the server. The client's `user` and
 * `database` name a Warden identity and target and are replaced; `options`
 * is unpacked into its `-c name=value` settings; every setting is judged
 * like a SET statement before it is forwarded. Anything else is refused.
 */

/** Session settings a client may pass at startup (lower case). Custom `a.b` names are settings too. */
const KNOWN_SETTINGS = new Set([
  'application_name',
  'client_encoding',
  'datestyle',
  'timezone',
  'intervalstyle',
  'extra_float_digits',
  'search_path',
  'statement_timeout',
  'lock_timeout',
  'idle_in_transaction_session_timeout',
  'idle_session_timeout',
  'transaction_timeout',
  'default_transaction_isolation',
  'default_transaction_read_only',
  'default_transaction_deferrable',
  'bytea_output',
  'client_min_messages',
  'lc_messages',
  'lc_monetary',
  'lc_numeric',
  'lc_time',
  'standard_conforming_strings',
  'synchronous_commit',
  'work_mem',
  'jit',
  'geqo',
  'row_security',
  'role',
  'session_authorization',
  'default_text_search_config',
  'timezone_abbreviations',
  'gin_fuzzy_search_limit',
  'enable_seqscan',
]);

export interface StartupRequest {
  readonly user: string;
  readonly database: string;
  /** Settings to judge and then forward, in the order given. */
  readonly settings: ReadonlyArray<readonly [string, string]>;
  /** `warden.*` settings: for Warden itself (e.g. warden.pipeline), never forwarded. */
  readonly wardenSettings: ReadonlyMap<string, string>;
  /** `_pq_.*` protocol options, which Warden does not support: reported in NegotiateProtocolVersion. */
  readonly protocolOptions: readonly string[];
}

export class StartupRefusal extends Error {
  constructor(
    readonly sqlstate: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

export function readStartupParameters(parameters: ReadonlyArray<readonly [string, string]>): StartupRequest {
  let user: string | undefined;
  let database: string | undefined;
  const settings: [string, string][] = [];
  const wardenSettings = new Map<string, string>();
  const protocolOptions: string[] = [];
  const addSetting = (name: string, value: string) => {
    const lower = name.toLowerCase();
    if (lower.startsWith('warden.')) wardenSettings.set(lower, value);
    else if (KNOWN_SETTINGS.has(lower) || /^[a-z_][a-z0-9_$]*\.[a-z_][a-z0-9_$]*$/.test(lower))
      settings.push([name, value]);
    else {
      throw new StartupRefusal(
        '42704',
        `startup parameter "${name}" is not one Warden forwards`,
        'Set it after connecting with SET, or remove it from the connection string.',
      );
    }
  };
  for (const [name, value] of parameters) {
    if (name === 'user') user = value;
    else if (name === 'database') database = value;
    else if (name === 'replication') {
      // CopyBoth and the replication protocol exist only for these connections.
      if (!/^(false|off|no|0)$/i.test(value)) {
        throw new StartupRefusal('0A000', 'replication connections are not supported through Warden');
      }
    } else if (name.startsWith('_pq_.')) protocolOptions.push(name);
    else if (name === 'options') {
      for (const [setting, settingValue] of parseOptions(value)) addSetting(setting, settingValue);
    } else addSetting(name, value);
  }
  if (!user)
    throw new StartupRefusal('28000', 'no identity given: set the user name to your Warden identity');
  return { user, database: database || user, settings, wardenSettings, protocolOptions };
}

/**
 * Splits the `options` parameter as the server does: words separated by
 * spaces, a backslash escapes the next character; `-c name=value`,
 * `-cname=value` and `--name=value` set a variable. Other switches are
 * refused: they are server command-line flags, not session settings.
 */
export function parseOptions(options: string): [string, string][] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  for (let i = 0; i < options.length; i++) {
    const c = options[i]!;
    if (c === '\\' && i + 1 < options.length) {
      word += options[++i];
      inWord = true;
    } else if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  const settings: [string, string][] = [];
  for (let i = 0; i < words.length; i++) {
    const current = words[i]!;
    let assignment: string | undefined;
    if (current === '-c') assignment = words[++i];
    else if (current.startsWith('-c')) assignment = current.slice(2);
    else if (current.startsWith('--')) assignment = current.slice(2);
    if (assignment === undefined) {
      throw new StartupRefusal(
        '42601',
        `unsupported switch "${current}" in options`,
        'Only -c name=value settings are accepted.',
      );
    }
    const eq = assignment.indexOf('=');
    if (eq <= 0) throw new StartupRefusal('42601', `"${assignment}" in options is not name=value`);
    settings.push([assignment.slice(0, eq).replaceAll('-', '_'), assignment.slice(eq + 1)]);
  }
  return settings;
}
