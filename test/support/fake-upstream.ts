// A stand-in API server for what this machine cannot run: a kubelet behind exec and port-forward.
// It speaks the real protocols at the edges the sidecar touches: SubjectAccessReview, WebSocket
// (v5.channel.k8s.io) and SPDY/3.1 upgrades, whose bytes it echoes, and it records every request's
// headers so tests can see exactly what the sidecar sent.
import { constants, createSecureServer, type Http2SecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { createCA, issueCertificate, type CertificateAndKey } from '../../lib/pki.js';

export interface SeenRequest {
  method: string;
  url: string;
  /** '2.0' for a request on an HTTP/2 stream; upgrades come over HTTP/1.1. */
  httpVersion: string;
  /** Without HTTP/2's pseudo-headers (:method, :path…), which method and url hold. */
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  /** The body, once it has all arrived. */
  body?: Buffer;
  /** The client reset the stream (or dropped the connection) before the body was complete. */
  aborted?: boolean;
  /** Turned away unprocessed by a GOAWAY that ended before it (refuseNextStream). */
  refused?: boolean;
}

type AnyRequest = IncomingMessage | Http2ServerRequest;
type AnyResponse = ServerResponse | Http2ServerResponse;

export interface FakeUpstream {
  url: string;
  ca: CertificateAndKey;
  seen: SeenRequest[];
  /** Whether SubjectAccessReviews are allowed (default true). */
  allow: boolean;
  /** How long SubjectAccessReviews take to answer (default 0). */
  reviewDelayMs: number;
  /** How long every other request takes to answer, once its body is in (default 0). */
  answerDelayMs: number;
  /** The next HTTP/2 request is refused the way a server going away refuses it: GOAWAY naming an earlier last stream. */
  refuseNextStream: boolean;
  close(): Promise<void>;
}

const SAR_PATH = '/apis/authorization.k8s.io/v1/subjectaccessreviews';

function record(seen: SeenRequest[], req: AnyRequest): SeenRequest {
  const headers = Object.fromEntries(Object.entries(req.headers).filter(([name]) => !name.startsWith(':')));
  const rawHeaders = req.rawHeaders.flatMap((value, i, all) => (i % 2 === 0 && !value.startsWith(':') ? [value, all[i + 1]!] : []));
  const entry: SeenRequest = { method: req.method ?? '', url: req.url ?? '', httpVersion: req.httpVersion, headers, rawHeaders };
  seen.push(entry);
  return entry;
}

function sendJson(res: AnyResponse, status: number, body: unknown): void {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(body));
}

function answerSubjectAccessReview(fake: FakeUpstream, req: AnyRequest, res: AnyResponse): void {
  let body = '';
  req.on('data', (chunk: Buffer) => (body += chunk.toString()));
  req.on('end', () => {
    const review = JSON.parse(body) as { spec: unknown };
    setTimeout(() => {
      sendJson(res, 201, { apiVersion: 'authorization.k8s.io/v1', kind: 'SubjectAccessReview', spec: review.spec, status: { allowed: fake.allow, reason: fake.allow ? '' : 'fake says no' } });
    }, fake.reviewDelayMs);
  });
}

/** The API server refusing an upgrade as Go writes it: a Status in a chunked body. */
function refuseUpgrade(socket: Duplex): void {
  const body = JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Forbidden', code: 403, message: 'refused by the stand-in' });
  socket.end(['HTTP/1.1 403 Forbidden', 'Content-Type: application/json', 'Transfer-Encoding: chunked', '', `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`].join('\r\n'));
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

  const fake: FakeUpstream = { url: '', ca, seen, allow: true, reviewDelayMs: 0, answerDelayMs: 0, refuseNextStream: false, close: () => Promise.resolve() };
  // HTTP/2 as the API server speaks it, and HTTP/1.1 for the upgrades that need it.
  const server: Http2SecureServer = createSecureServer({ cert: serving.certPem, key: serving.keyPem, allowHTTP1: true }, (req: AnyRequest, res: AnyResponse) => {
    const entry = record(seen, req);
    if (req.method === 'POST' && req.url === SAR_PATH) return answerSubjectAccessReview(fake, req, res);
    if (fake.refuseNextStream && 'stream' in req) {
      fake.refuseNextStream = false;
      entry.refused = true;
      return void req.stream.session?.goaway(constants.NGHTTP2_NO_ERROR, req.stream.id! - 2);
    }
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    // An HTTP/2 request whose stream the client reset ends too, with whatever data came: its stream's
    // reset code, known when the stream closes (before the request's end), tells it from a complete one.
    if ('stream' in req) req.stream.once('close', () => (entry.aborted ||= req.stream.rstCode !== 0));
    req.on('aborted', () => (entry.aborted = true));
    req.on('end', () => {
      entry.body = Buffer.concat(chunks);
      if (req.url === '/readyz') return void res.end('ok');
      setTimeout(() => sendJson(res, 200, { kind: 'Status', apiVersion: 'v1', status: 'Success', path: req.url }), fake.answerDelayMs);
    });
  });
  const sessions = new Set<{ destroy(): void }>();
  server.on('session', (session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });
  const upgraded = new Set<Duplex>();
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    record(seen, req);
    upgraded.add(socket);
    socket.once('close', () => upgraded.delete(socket));
    if (req.url?.includes('/refused-upgrade/')) return refuseUpgrade(socket);
    if ((req.headers.upgrade ?? '').toLowerCase() === 'websocket') websockets.handleUpgrade(req, socket, head, (ws) => websockets.emit('connection', ws, req));
    else echoSpdy(req, socket, head);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  fake.url = `https://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  fake.close = async () => {
    websockets.clients.forEach((ws) => ws.terminate());
    upgraded.forEach((socket) => socket.destroy());
    sessions.forEach((session) => session.destroy());
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return fake;
}
