// An HTTPS server an attacker (or a webhook the platform configured) runs: it records every request
// that reaches it, answers TokenReviews with "not authenticated", and can hold connections open
// without ever answering (a tarpit issuer).
import type { IncomingHttpHeaders } from 'node:http';
import { createServer } from 'node:https';
import type { Socket } from 'node:net';
import { createCA, issueCertificate } from '../../lib/pki.js';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface RecordingServer {
  url: string;
  caPem: string;
  requests: RecordedRequest[];
  /** TCP connections accepted, answered or not. */
  connections: number;
  /** A kubeconfig for a token webhook at /authenticate, its CA inline; `user` is the kubeconfig's user entry. */
  kubeconfig(user?: Record<string, unknown>): string;
  stop(): Promise<void>;
}

export async function startRecordingServer(options: { tarpit?: boolean } = {}): Promise<RecordingServer> {
  const ca = createCA({ commonName: 'red-team-recording-server-ca' });
  const serving = issueCertificate(ca, { commonName: 'recording-server', usage: 'server', ipAddresses: ['127.0.0.1'] });
  const sockets = new Set<Socket>();
  const requests: RecordedRequest[] = [];
  const server = createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
    if (options.tarpit) return;
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body });
      let apiVersion = 'authentication.k8s.io/v1';
      try {
        apiVersion = (JSON.parse(body) as { apiVersion?: string }).apiVersion ?? apiVersion;
      } catch {
        // not a TokenReview
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ apiVersion, kind: 'TokenReview', status: { authenticated: false } }));
    });
  });
  const result: RecordingServer = {
    url: '',
    caPem: ca.certPem,
    requests,
    connections: 0,
    kubeconfig: (user = {}) =>
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'webhook', cluster: { server: `${result.url}/authenticate`, 'certificate-authority-data': Buffer.from(ca.certPem).toString('base64') } }],
        users: [{ name: 'sidecar', user }],
        contexts: [{ name: 'webhook', context: { cluster: 'webhook', user: 'sidecar' } }],
        'current-context': 'webhook',
      }),
    stop: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  server.on('connection', (socket: Socket) => {
    result.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  result.url = `https://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  return result;
}
