// HTTP/2 for the clients that offer it in ALPN (client-go, kubectl and Go dashboards do), as the API
// server serves them: many requests and watches on one connection, each request a stream framed by
// HTTP/2. Upgrades (exec, attach, port-forward) cannot be made in HTTP/2; clients open an HTTP/1.1
// connection for them, which the listeners still serve. Every request goes through the same pipeline
// as an HTTP/1.1 one; the connection's client certificate is the one its listener pinned.
import { createServer, type Http2Server, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { Logger } from '../lib/log.js';
import { connectionOf, recordSessionConnection } from '../lib/client-exchange.js';
import type { AlpnProtocol, ClientTrust } from '../lib/tls-listeners.js';

type RequestHandler = (req: Http2ServerRequest, res: Http2ServerResponse) => void;

export interface Http2Limits {
  /** The most streams a client may have open on one connection. */
  maxConcurrentStreams: number;
  /** The most bytes of request headers (HPACK-decoded), as --max-header-bytes for HTTP/1.1. */
  maxHeaderBytes: number;
  /** A connection without an open stream for this long is closed (GOAWAY); the client opens another when it needs one. */
  idleTimeoutMs: number;
  /**
   * A new connection that has not begun a request within this long is closed, as --headers-timeout
   * closes an HTTP/1.1 one: an attacker must not hold connections open for the idle timeout by
   * opening them and saying nothing.
   */
  firstRequestTimeoutMs: number;
}

export interface Http2ClientsOptions {
  handlers: { request: RequestHandler; checkContinue?: RequestHandler };
  clientTrust: ClientTrust | undefined;
  limits: Http2Limits;
  log: Logger;
  /** A client connection chose HTTP/2. */
  onConnection?: () => void;
}

export class Http2Clients implements AlpnProtocol {
  readonly name = 'h2';
  private readonly server: Http2Server;
  private readonly sessions = new Set<ServerHttp2Session>();
  /** The connection being handed over: node:http2 makes its session synchronously, inside accept(). */
  private accepting: TLSSocket | undefined;

  private readonly clientTrust: ClientTrust | undefined;
  private readonly limits: Http2Limits;
  private readonly log: Logger;
  private readonly onConnection: () => void;

  constructor(options: Http2ClientsOptions) {
    const { handlers, limits } = options;
    this.clientTrust = options.clientTrust;
    this.limits = limits;
    this.log = options.log;
    this.onConnection = options.onConnection ?? (() => undefined);
    this.server = createServer({
      settings: { maxConcurrentStreams: limits.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderBytes, enablePush: false },
      maxHeaderListPairs: 512,
    });
    this.server.on('session', (session) => this.follow(session));
    this.server.on('request', (req, res) => this.serve(handlers.request, req, res));
    // Without a listener node:http2 answers `Expect: 100-continue` itself, before anyone has looked at the request.
    const { checkContinue } = handlers;
    if (checkContinue) this.server.on('checkContinue', (req, res) => this.serve(checkContinue, req, res));
    this.server.on('sessionError', (err) => this.log.debug({ err: err.message }, 'HTTP/2 connection error'));
  }

  accept(socket: TLSSocket): void {
    this.accepting = socket;
    try {
      this.server.emit('connection', socket);
    } finally {
      this.accepting = undefined;
    }
  }

  close(): void {
    for (const session of this.sessions) session.close();
  }

  destroyAll(): void {
    for (const session of this.sessions) session.destroy();
  }

  private follow(session: ServerHttp2Session): void {
    const socket = this.accepting;
    if (!socket) {
      session.destroy(new Error('an HTTP/2 session not handed over by a listener'));
      return;
    }
    recordSessionConnection(session, socket);
    this.sessions.add(session);
    this.onConnection();
    let open = 0;
    let idle: NodeJS.Timeout | undefined;
    const idleFor = (ms: number) => {
      idle = setTimeout(() => session.close(), ms).unref();
    };
    session.on('stream', (stream) => {
      open++;
      clearTimeout(idle);
      stream.once('close', () => {
        if (--open === 0 && !session.closed) idleFor(this.limits.idleTimeoutMs);
      });
    });
    session.once('close', () => {
      clearTimeout(idle);
      this.sessions.delete(session);
    });
    idleFor(this.limits.firstRequestTimeoutMs);
  }

  private serve(handler: RequestHandler, req: Http2ServerRequest, res: Http2ServerResponse): void {
    const socket = connectionOf(req);
    if (socket) this.clientTrust?.inProgress(socket, res);
    handler(req, res);
  }
}
