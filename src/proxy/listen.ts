/**
 * Binding a listener (PostgreSQL or HTTP) with an error that says which
 * setting to change, instead of a bare EADDRINUSE stack.
 */
import type net from 'node:net';

/** A listener of Warden's cannot bind its address; the message names the setting to change. */
export class ListenError extends Error {
  readonly code = 'WARDEN_ERR_LISTEN';
  override readonly name = 'ListenError';
}

/** Listens, or rejects with a ListenError naming `setting` (listen, http) and how to fix it. */
export function listenOn(
  server: net.Server,
  address: { readonly host: string; readonly port: number },
  setting: string,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const failed = (error: Error) => {
      const code = (error as NodeJS.ErrnoException).code;
      const why =
        code === 'EADDRINUSE'
          ? 'the port is in use'
          : code === 'EADDRNOTAVAIL'
            ? 'the address is not one of this host'
            : code === 'EACCES'
              ? 'permission denied (ports below 1024 need privileges)'
              : error.message;
      reject(
        new ListenError(
          `cannot listen on ${address.host}:${address.port} (${setting}): ${why}; change ${setting}.port or ${setting}.host`,
        ),
      );
    };
    server.once('error', failed);
    server.listen({ host: address.host, port: address.port }, () => {
      server.off('error', failed);
      resolve();
    });
  });
}
