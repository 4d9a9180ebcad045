// The API server's way into the cluster network, for a control plane without one: its egress
// selector ("cluster": webhooks, and anything else it dials at a Service's cluster IP) sends each
// connection through this HTTP CONNECT proxy on a Unix socket, as it would through Konnectivity. The
// proxy plays kube-proxy: a Service's cluster IP and port lead to whatever address the test routes
// them to (a process on this machine); anything else is refused. So a webhook configuration that
// names a Service is called as installed, at that Service, with its DNS name checked by TLS.
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import path from 'node:path';

export interface EgressProxy {
  /** kube-apiserver's --egress-selector-config-file. */
  configFile: string;
  /** Connections to <cluster IP>:<port> go to the target (host:port) from now on. */
  route(clusterIpAndPort: string, target: { host: string; port: number }): void;
  /** Every CONNECT the API server asked for, in order (`host:port`). */
  readonly requested: readonly string[];
  stop(): Promise<void>;
}

export async function startEgressProxy(dir: string): Promise<EgressProxy> {
  const socketPath = path.join(dir, 'egress.sock');
  const routes = new Map<string, { host: string; port: number }>();
  const requested: string[] = [];
  const open = new Set<Socket>();
  const server: Server = createServer((client) => {
    open.add(client);
    client.on('close', () => open.delete(client));
    client.on('error', () => client.destroy());
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      client.off('data', onData);
      const target = /^CONNECT (\S+) HTTP\/1\.[01]\r\n/.exec(head.subarray(0, end).toString('latin1'))?.[1];
      const route = target === undefined ? undefined : routes.get(target);
      if (target !== undefined) requested.push(target);
      if (!route) {
        client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
        return;
      }
      const upstream = connect(route.port, route.host, () => {
        client.write('HTTP/1.1 200 Connection established\r\n\r\n');
        const rest = head.subarray(end + 4);
        if (rest.length > 0) upstream.write(rest);
        client.pipe(upstream).pipe(client);
      });
      open.add(upstream);
      upstream.on('close', () => open.delete(upstream));
      upstream.on('error', () => client.destroy());
    };
    client.on('data', onData);
  });
  server.listen(socketPath);
  await once(server, 'listening');
  const configFile = path.join(dir, 'egress-selector.yaml');
  await writeFile(
    configFile,
    [
      'apiVersion: apiserver.k8s.io/v1beta1',
      'kind: EgressSelectorConfiguration',
      'egressSelections:',
      '  - name: cluster',
      '    connection:',
      '      proxyProtocol: HTTPConnect',
      '      transport:',
      '        uds:',
      `          udsName: ${socketPath}`,
      '',
    ].join('\n'),
  );
  return {
    configFile,
    route: (clusterIpAndPort, target) => void routes.set(clusterIpAndPort, target),
    requested,
    async stop() {
      for (const socket of open) socket.destroy();
      server.close();
      await once(server, 'close').catch(() => undefined);
    },
  };
}
