import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A TCP proxy the chaos tests put between kdr and a dependency (moto, a broker) to break the network on
 * purpose: `refuse` closes new connections at once, `stall` accepts them and forwards nothing (and freezes
 * the open ones), `delay` holds every chunk for some milliseconds, `cut` drops every open connection once.
 */

export type ProxyMode =
  | { kind: 'pass' }
  | { kind: 'refuse' }
  | { kind: 'stall' }
  | { kind: 'delay'; ms: number };

export interface TcpProxy {
  port: number;
  setMode(mode: ProxyMode): void;
  /** Destroys every open connection (clients must reconnect). */
  cut(): void;
  connections(): number;
  close(): Promise<void>;
}

export async function startTcpProxy(
  target: { host: string; port: number },
  listenPort = 0,
): Promise<TcpProxy> {
  let mode: ProxyMode = { kind: 'pass' };
  const open = new Set<net.Socket>();
  let total = 0;
  const server = net.createServer((client) => {
    total++;
    if (mode.kind === 'refuse') {
      client.destroy();
      return;
    }
    open.add(client);
    const upstream = net.connect(target.port, target.host);
    open.add(upstream);
    const forget = () => {
      open.delete(client);
      open.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', forget).on('close', forget);
    upstream.on('error', forget).on('close', forget);
    const pipe = (from: net.Socket, to: net.Socket) => {
      // Chunks pass in order; a stall holds them until the mode changes.
      let chain = Promise.resolve();
      from.on('data', (chunk) => {
        from.pause();
        chain = chain.then(async () => {
          for (;;) {
            const now = mode;
            if (now.kind === 'stall') {
              await sleep(100);
              continue;
            }
            if (now.kind === 'delay') await sleep(now.ms);
            break;
          }
          if (!to.destroyed) to.write(chunk);
          from.resume();
        });
      });
    };
    pipe(client, upstream);
    pipe(upstream, client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPort, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    setMode: (next) => {
      mode = next;
    },
    cut: () => {
      for (const socket of open) socket.destroy();
      open.clear();
    },
    connections: () => total,
    close: async () => {
      for (const socket of open) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
