// One upstream for the soak's one sidecar, made of two: the real API server for every request, and
// the stand-in (test/cluster/fake-upstream.ts) for exec, attach and port-forward upgrades, which the
// local control plane cannot serve without a kubelet. Requests pass through as they are, identity
// headers included; each side answers as itself.
import { Agent, createServer, type Server } from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { connect } from 'node:tls';
import { createProxyServer } from 'http-proxy-3';
import { createCA, issueCertificate, type CertificateAndKey } from '../../../lib/pki.js';

export interface Router {
  url: string;
  /** The CA of the router's serving certificate: the sidecar's --upstream-ca-file. */
  ca: CertificateAndKey;
  close(): Promise<void>;
}

interface Upstream {
  url: string;
  caPem: string;
}

function requestHead(req: IncomingMessage): string {
  const lines = [`${req.method} ${req.url} HTTP/1.1`];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

export async function startRouter(apiServer: Upstream, upgrades: Upstream): Promise<Router> {
  const ca = createCA({ commonName: 'chaperone-hardening-router-ca' });
  const serving = issueCertificate(ca, { commonName: 'router', usage: 'server', ipAddresses: ['127.0.0.1'], dnsNames: ['localhost'] });
  const agent = new Agent({ keepAlive: true, ca: apiServer.caPem });
  const proxy = createProxyServer({ target: apiServer.url, agent, secure: true, toProxy: true, prependPath: false });
  proxy.on('error', (_err, _req, res) => {
    if ('writeHead' in res && !res.headersSent) res.writeHead(502).end();
    else res.destroy();
  });
  const sockets = new Set<Duplex>();
  const server: Server = createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => proxy.web(req, res));
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const target = new URL(upgrades.url);
    const upstream = connect({ host: target.hostname, port: Number(target.port), ca: upgrades.caPem, servername: 'localhost' }, () => {
      upstream.write(requestHead(req));
      if (head.length > 0) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    for (const s of [socket, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.once('close', () => {
        sockets.delete(s);
        socket.destroy();
        upstream.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    url: `https://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`,
    ca,
    close: async () => {
      sockets.forEach((s) => s.destroy());
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      proxy.close();
      agent.destroy();
    },
  };
}
