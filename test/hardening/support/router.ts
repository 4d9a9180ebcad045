// One upstream for the soak's one sidecar, made of two: the real API server for every request, and
// the stand-in (test/support/fake-upstream.ts) for exec, attach and port-forward upgrades, which the
// local control plane cannot serve without a kubelet. Requests pass through as they are, identity
// headers included; each side answers as itself. HTTP/2 streams go to the API server, HTTP/1.1
// upgrades to the stand-in.
import { connect as connectHttp2, constants, createSecureServer, type ServerHttp2Stream } from 'node:http2';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { connect } from 'node:tls';
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
  // The sidecar speaks HTTP/2 to its API server: each stream is passed on as a stream to the real one.
  const api = connectHttp2(apiServer.url, { ca: apiServer.caPem });
  api.on('error', () => undefined);
  const relay = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    const upstream = api.request({ ...headers, ':authority': new URL(apiServer.url).host });
    upstream.on('response', (answer) => {
      const { ':status': status, ...rest } = answer;
      if (!stream.destroyed) stream.respond({ ':status': status, ...rest });
      upstream.pipe(stream);
    });
    const cancel = () => {
      if (!upstream.closed) upstream.close(constants.NGHTTP2_CANCEL);
      if (!stream.closed) stream.close(constants.NGHTTP2_CANCEL);
    };
    upstream.on('error', cancel);
    stream.on('error', cancel);
    stream.once('close', cancel);
    stream.pipe(upstream);
  };
  const sockets = new Set<Duplex>();
  const sessions = new Set<{ destroy(): void }>();
  const server = createSecureServer({ cert: serving.certPem, key: serving.keyPem, allowHTTP1: true });
  server.on('stream', relay);
  server.on('session', (session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
  });
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
      sessions.forEach((s) => s.destroy());
      await new Promise<void>((resolve) => server.close(() => resolve()));
      api.destroy();
    },
  };
}
