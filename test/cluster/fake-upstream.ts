// A stand-in API server for what this machine cannot run: a kubelet behind exec and port-forward.
// It speaks the real protocols at the edges the sidecar touches: SubjectAccessReview, WebSocket
// (v5.channel.k8s.io) and SPDY/3.1 upgrades, whose bytes it echoes, and it records every request's
// headers so tests can see exactly what the sidecar sent.
import { createServer, type Server } from 'node:https';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { createCA, issueCertificate, type CertificateAndKey } from '../../lib/pki.js';

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
}

export interface FakeUpstream {
  url: string;
  ca: CertificateAndKey;
  seen: SeenRequest[];
  /** Whether SubjectAccessReviews are allowed (default true). */
  allow: boolean;
  /** How long SubjectAccessReviews take to answer (default 0). */
  reviewDelayMs: number;
  close(): Promise<void>;
}

const SAR_PATH = '/apis/authorization.k8s.io/v1/subjectaccessreviews';

function record(seen: SeenRequest[], req: IncomingMessage): void {
  seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders });
}

function answerSubjectAccessReview(fake: FakeUpstream, req: IncomingMessage, res: ServerResponse): void {
  let body = '';
  req.on('data', (chunk: Buffer) => (body += chunk.toString()));
  req.on('end', () => {
    const review = JSON.parse(body) as { spec: unknown };
    setTimeout(() => {
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ apiVersion: 'authorization.k8s.io/v1', kind: 'SubjectAccessReview', spec: review.spec, status: { allowed: fake.allow, reason: fake.allow ? '' : 'fake says no' } }));
    }, fake.reviewDelayMs);
  });
}

function echoSpdy(req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const protocol = req.headers['x-stream-protocol-version'];
  const chosen = Array.isArray(protocol) ? protocol[0] : protocol;
  socket.write(
    ['HTTP/1.1 101 Switching Protocols', 'Connection: Upgrade', 'Upgrade: SPDY/3.1', ...(chosen ? [`X-Stream-Protocol-Version: ${chosen}`] : []), '', ''].join('\r\n'),
  );
  if (head.length > 0) socket.write(head);
  socket.pipe(socket);
}

export async function startFakeUpstream(): Promise<FakeUpstream> {
  const ca = createCA({ commonName: 'fake-apiserver-ca' });
  const serving = issueCertificate(ca, { commonName: 'fake-apiserver', usage: 'server', ipAddresses: ['127.0.0.1'], dnsNames: ['localhost'] });
  const seen: SeenRequest[] = [];
  const websockets = new WebSocketServer({ noServer: true, handleProtocols: (protocols) => (protocols.has('v5.channel.k8s.io') ? 'v5.channel.k8s.io' : false) });
  websockets.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));

  const fake: FakeUpstream = { url: '', ca, seen, allow: true, reviewDelayMs: 0, close: () => Promise.resolve() };
  const server: Server = createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
    record(seen, req);
    if (req.method === 'POST' && req.url === SAR_PATH) return answerSubjectAccessReview(fake, req, res);
    if (req.url === '/readyz') return void res.end('ok');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Success', path: req.url }));
  });
  const upgraded = new Set<Duplex>();
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    record(seen, req);
    upgraded.add(socket);
    socket.once('close', () => upgraded.delete(socket));
    if ((req.headers.upgrade ?? '').toLowerCase() === 'websocket') websockets.handleUpgrade(req, socket, head, (ws) => websockets.emit('connection', ws, req));
    else echoSpdy(req, socket, head);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  fake.url = `https://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  fake.close = async () => {
    websockets.clients.forEach((ws) => ws.terminate());
    upgraded.forEach((socket) => socket.destroy());
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return fake;
}
