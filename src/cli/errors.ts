/** A mistake in how a command was called; the message says what to do instead. Exit code 2. */
export class UsageError extends Error {
  readonly code = 'WARDEN_ERR_USAGE';
  override readonly name = 'UsageError';
}
