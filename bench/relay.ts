/**
 * A plain byte relay, the floor for any proxy written in Node: accepts on
 * 127.0.0.1:<listen port> and pipes every byte to and from <host>:<port>,
 * understanding nothing. Run as a child by the benchmark:
 *
 *   node --import tsx bench/relay.ts <listen-port> <upstream-host> <upstream-port>
 */
import net from 'node:net';

const [listenPort, upstreamHost, upstreamPort] = process.argv.slice(2);
if (!listenPort || !upstreamHost || !upstreamPort) {
  process.stderr.write('usage: relay.ts <listen-port> <upstream-host> <upstream-port>\n');
  process.exit(2);
}

const server = net.createServer({ noDelay: true }, (client) => {
  const upstream = net.connect({ host: upstreamHost, port: Number(upstreamPort), noDelay: true });
  const end = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', end).on('close', end);
  upstream.on('error', end).on('close', end);
  client.pipe(upstream);
  upstream.pipe(client);
});

server.listen({ host: '127.0.0.1', port: Number(listenPort) }, () => {
  const { port } = server.address() as net.AddressInfo;
  process.stdout.write(`relay listening on 127.0.0.1:${port} -> ${upstreamHost}:${upstreamPort}\n`);
});

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    server.close();
    process.exit(0);
  });
}
