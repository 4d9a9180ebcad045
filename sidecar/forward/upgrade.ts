// Upgraded connections: exec, attach, cp and port-forward over WebSocket or SPDY/3.1, each over an
// HTTP/1.1 connection of its own to the API server (upgrades do not exist in HTTP/2), used once and
// never shared, with the same headers and the same last check as every other request.
import { request } from 'node:https';
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import { assertIdentityHeaders, UnauthorizedForward } from './http.js';
import type { Upstream } from './upstream.js';

export interface UpgradeRequest {
  req: IncomingMessage;
  socket: Duplex;
  head: Buffer;
  headers: OutgoingHttpHeaders;
  identityHeaders: OutgoingHttpHeaders;
  /**
   * How long a request whose client went away is kept for the API server's answer (--upstream-timeout):
   * until answered, the API server may not have it, so it is not withdrawn sooner.
   */
  timeoutMs: number;
  /** The status line the API server answered with: 101 when the connection was upgraded. */
  onResponse: (statusCode: number) => void;
  onError: (error: Error) => void;
  /** The client's connection is closed and the API server's side settled: the request is over. */
  onClose: () => void;
}

function rawHead(statusCode: number, statusMessage: string, rawHeaders: readonly string[], extra: string[] = []): string {
  const lines = [`HTTP/1.1 ${statusCode} ${statusMessage}`];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) lines.push(`${rawHeaders[i]}: ${rawHeaders[i + 1]}`);
  return `${[...lines, ...extra].join('\r\n')}\r\n\r\n`;
}

/** How the API server framed its answer on its connection; the sidecar frames it anew on the client's. */
const FRAMING_HEADERS = new Set(['transfer-encoding', 'content-length', 'connection', 'keep-alive']);

function withoutFraming(rawHeaders: readonly string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) if (!FRAMING_HEADERS.has(rawHeaders[i]!.toLowerCase())) kept.push(rawHeaders[i]!, rawHeaders[i + 1]!);
  return kept;
}

/** A refusal's body is a Status of a few hundred bytes; anything much larger is cut, never relayed unframed. */
const MAX_REFUSAL_BYTES = 64 * 1024;

export class UpgradeForwarder {
  private readonly open = new Set<Duplex>();

  constructor(private readonly upstream: Upstream) {}

  forward(upgrade: UpgradeRequest): void {
    const { req, socket, head } = upgrade;
    const headers: OutgoingHttpHeaders = { ...upgrade.headers, connection: 'Upgrade', upgrade: req.headers.upgrade ?? '' };
    assertIdentityHeaders(headers, upgrade.identityHeaders);
    const tls = this.upstream.tlsOptions();
    const outgoing = request({ ...tls, method: req.method, path: req.url, headers, agent: false });
    if (outgoing.path !== req.url) throw new UnauthorizedForward('the path on the wire is not the one authorized');
    assertIdentityHeaders(outgoing.getHeaders(), upgrade.identityHeaders);

    const closeBoth = (upstreamSocket?: Duplex) => {
      socket.destroy();
      upstreamSocket?.destroy();
    };
    // The client went away. Until the API server answers, the request may still be on its way to it:
    // it is left to arrive and be answered, or cut at the upstream timeout (withdrawn sooner, it could
    // be in the sidecar's log as forwarded and in no other). onClose comes once both are over, so the
    // event has the API server's answer.
    let settled = false; // answered, failed, or given up on
    let clientClosed = false;
    let closed = false;
    const close = () => {
      if (clientClosed && settled && !closed) {
        closed = true;
        upgrade.onClose();
      }
    };
    const settle = () => {
      settled = true;
      close();
    };
    socket.on('error', () => undefined); // 'close' follows
    socket.once('close', () => {
      clientClosed = true;
      if (settled) outgoing.destroy();
      else {
        setTimeout(() => {
          outgoing.destroy();
          settle();
        }, upgrade.timeoutMs).unref();
      }
      close();
    });
    outgoing.on('error', (err) => {
      upgrade.onError(err);
      settle();
    });
    outgoing.on('response', (res) => {
      // Refused or failed upstream (403, 404, 400): the answer goes back whole, with a length the
      // sidecar counted (Node has already taken the API server's chunking off the body), then the
      // connection closes.
      upgrade.onResponse(res.statusCode ?? 0);
      settle();
      if (socket.destroyed) return void outgoing.destroy();
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size <= MAX_REFUSAL_BYTES) chunks.push(chunk);
      });
      res.once('end', () => {
        const body = size <= MAX_REFUSAL_BYTES ? Buffer.concat(chunks) : Buffer.alloc(0);
        socket.end(Buffer.concat([Buffer.from(rawHead(res.statusCode ?? 502, res.statusMessage ?? '', withoutFraming(res.rawHeaders), [`Content-Length: ${body.length}`, 'Connection: close']), 'latin1'), body]));
      });
      res.once('error', () => socket.destroy());
    });
    outgoing.on('upgrade', (res, upstreamSocket, upstreamHead) => {
      upgrade.onResponse(101);
      settle();
      if (socket.destroyed) return void upstreamSocket.destroy();
      this.open.add(socket);
      socket.once('close', () => this.open.delete(socket));
      socket.write(rawHead(101, res.statusMessage ?? 'Switching Protocols', res.rawHeaders));
      if (upstreamHead.length > 0) socket.write(upstreamHead);
      if (head.length > 0) upstreamSocket.write(head);
      upstreamSocket.on('error', () => closeBoth(upstreamSocket));
      socket.on('error', () => closeBoth(upstreamSocket));
      upstreamSocket.once('close', () => socket.end());
      socket.once('close', () => upstreamSocket.destroy());
      upstreamSocket.pipe(socket);
      socket.pipe(upstreamSocket);
    });
    outgoing.end();
  }

  /** Ends every upgraded connection, for shutdown. */
  closeAll(): void {
    for (const socket of this.open) socket.end();
  }
}
