// HTTPS listeners, the sidecar's and the injector's: the serving certificate from files, swapped in
// when they change without dropping a connection. A connection's TLS identity cannot change under
// it: renegotiation is refused twice over (OpenSSL's SSL_OP_NO_RENEGOTIATION and Node's
// disableRenegotiation(), whichever sees it first closes the connection). Client certificates are
// asked for, never required, when a ClientTrust is given: it decides what they are worth (the
// sidecar's identity CA, sidecar/authn/connection-trust.ts) and may close connections it stops
// trusting. HTTP/1.1 is always served; another protocol (the sidecar's HTTP/2) is offered in ALPN
// before it when given, and the connections that choose it are handed over after their handshake.
import { constants } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { readFileSync } from 'node:fs';
import { watchFile, type WatchedFile } from './watch-file.js';
import type { Logger } from './log.js';
import { parseHostPort } from './config.js';
import { StatusError, writeStatusToSocket } from './status.js';
import type { ClientResponse } from './client-exchange.js';

/** The listeners' limits, and what they offer besides HTTP/1.1. */
export interface ListenerOptions {
  maxHeaderBytes: number;
  headersTimeoutMs: number;
  /** How long an idle kept-alive connection stays open; Node's default (5s) unless given. */
  keepAliveTimeoutMs?: number;
  /** Offered in ALPN before HTTP/1.1, serving the connections that choose it. */
  alsoOffered?: AlpnProtocol;
}

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** What client certificates are asked for with, and worth; without it none is asked for. */
  clientTrust?: ClientTrust;
}

/** The listeners' side of client certificates: which CAs to ask with, and each connection's life. */
export interface ClientTrust {
  /** The CA certificates a client is asked to present a certificate of, as they are now. */
  pems(): readonly string[];
  /** A connection was accepted; before any request on it is read. */
  accepted(socket: TLSSocket): void;
  /** A request began on the connection; it ends when the response closes (an upgrade: with the connection). */
  inProgress(socket: Duplex, res?: ClientResponse): void;
  /** Starts following its sources; `changed` then serves its CAs to new connections. */
  follow(changed: () => void): WatchedFile[];
}

/** A protocol offered in ALPN before HTTP/1.1, which serves the connections that choose it. */
export interface AlpnProtocol {
  /** Its ALPN name: h2. */
  readonly name: string;
  /** A connection chose it: its handshake is done, its certificate pinned (ClientTrust.accepted). */
  accept(socket: TLSSocket): void;
  /** No new requests; those in progress finish. */
  close(): void;
  /** Cuts every connection it serves. */
  destroyAll(): void;
}

interface Serving {
  cert: string | Buffer;
  key: string | Buffer;
}

function readServing(files: TlsFiles): Serving {
  return { cert: readFileSync(files.certFile), key: readFileSync(files.keyFile) };
}

/** No renegotiation, ever: a client could otherwise present another certificate on a connection already trusted. */
const SECURE_OPTIONS = constants.SSL_OP_NO_RENEGOTIATION;

/** How long a connection answered with an error keeps being read (and what it sends dropped) before it is closed. */
const MAX_DRAIN_MS = 5000;

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

export const DEFAULT_LIMITS: ListenerOptions = { maxHeaderBytes: 64 * 1024, headersTimeoutMs: 10_000 };

/** One or more HTTPS listeners sharing one certificate set, reloaded together. */
export class TlsListeners {
  private readonly servers: Server[] = [];
  private readonly watched: WatchedFile[] = [];
  private serving: Serving | undefined;

  constructor(
    private readonly files: TlsFiles,
    private readonly handlers: { request: RequestHandler; upgrade?: UpgradeHandler; checkContinue?: RequestHandler },
    private readonly log: Logger,
    private readonly options: ListenerOptions = DEFAULT_LIMITS,
  ) {}

  private get offered(): AlpnProtocol | undefined {
    return this.options.alsoOffered;
  }

  private contextOptions(serving: Serving) {
    const { clientTrust } = this.files;
    return { ...serving, ...(clientTrust ? { ca: [...clientTrust.pems()] } : {}), secureOptions: SECURE_OPTIONS };
  }

  private alpnProtocols(): string[] {
    return [...(this.offered ? [this.offered.name] : []), 'http/1.1'];
  }

  async listen(addresses: string[]): Promise<{ address: string; port: number }[]> {
    this.serving = readServing(this.files); // a bad file refuses to start, naming it
    const bound: { address: string; port: number }[] = [];
    for (const address of addresses) {
      const parsed = parseHostPort(address);
      if (!parsed) throw new Error(`not a host:port address: ${address}`);
      const server = this.createServer(this.serving);
      const port = await listenOn(server, parsed.host, parsed.port);
      bound.push({ address, port });
      this.servers.push(server);
    }
    const { clientTrust } = this.files;
    for (const file of [this.files.certFile, this.files.keyFile]) this.watched.push(watchFile(file, { onChange: () => this.reloadServing() }));
    if (clientTrust) this.watched.push(...clientTrust.follow(() => this.serving && this.apply(this.serving)));
    return bound;
  }

  private createServer(serving: Serving): Server {
    const { clientTrust } = this.files;
    const server = createServer(
      {
        ...this.contextOptions(serving),
        requestCert: clientTrust !== undefined,
        rejectUnauthorized: false,
        ALPNProtocols: this.alpnProtocols(),
        minVersion: 'TLSv1.2',
        maxHeaderSize: this.options.maxHeaderBytes,
        headersTimeout: this.options.headersTimeoutMs,
        // A client gets as long for its TLS handshake as for its headers; Node's default is 120s.
        handshakeTimeout: this.options.headersTimeoutMs,
        // Only for receiving the request: a watch may then stream for hours.
        requestTimeout: 0,
        connectionsCheckingInterval: 1000,
      },
      (req, res) => {
        clientTrust?.inProgress(req.socket, res);
        this.handlers.request(req, res);
      },
    );
    if (this.options.keepAliveTimeoutMs !== undefined) server.keepAliveTimeout = this.options.keepAliveTimeoutMs;
    this.dispatchConnections(server);
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.answerClientError(err, socket));
    this.followUpgradesAndContinues(server);
    server.on('tlsClientError', (err) => this.log.debug({ err: err.message }, 'TLS handshake failed'));
    return server;
  }

  /**
   * Each connection is accepted (renegotiation refused, certificate pinned) before any request on it
   * is read, then served by HTTP/1.1 (node:https's own listener) or by the protocol it chose in ALPN.
   */
  private dispatchConnections(server: Server): void {
    const http1 = server.listeners('secureConnection') as ((socket: TLSSocket) => void)[];
    server.removeAllListeners('secureConnection');
    server.on('secureConnection', (socket: TLSSocket) => {
      this.accepted(socket);
      if (this.offered && socket.alpnProtocol === this.offered.name) this.offered.accept(socket);
      else for (const listener of http1) listener.call(server, socket);
    });
  }

  private followUpgradesAndContinues(server: Server): void {
    const { clientTrust } = this.files;
    const { upgrade, checkContinue } = this.handlers;
    if (upgrade) {
      server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
        clientTrust?.inProgress(socket);
        upgrade(req, socket, head);
      });
    }
    // Without a listener Node answers `Expect: 100-continue` itself, before anyone has looked at the request.
    if (checkContinue) {
      server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
        clientTrust?.inProgress(req.socket, res);
        checkContinue(req, res);
      });
    }
  }

  private accepted(socket: TLSSocket): void {
    // Node's refusal: it only reports the renegotiation, as an error, which closes the connection
    // (answerClientError). OpenSSL's refuses it outright (SECURE_OPTIONS).
    socket.disableRenegotiation();
    this.files.clientTrust?.accepted(socket);
  }

  /** Every listener serves this from now on, with the client CAs as they are now; throws, changing nothing, if the pair does not load. */
  private apply(serving: Serving): void {
    const options = this.contextOptions(serving);
    for (const server of this.servers) server.setSecureContext({ ...options });
    this.serving = serving;
  }

  private reloadServing(): void {
    try {
      this.apply(readServing(this.files));
      this.log.info('reloaded the serving certificate');
    } catch (err) {
      // Half-written files are normal during a rotation: keep serving with what we had.
      this.log.warn({ err: (err as Error).message }, 'could not reload TLS files; keeping the previous ones');
    }
  }

  /**
   * Serves this certificate from now on (new connections; open ones keep theirs), with the CA the
   * listeners already have: for a certificate that comes from elsewhere than the files.
   */
  setCertificate(certPem: string, keyPem: string): void {
    this.apply({ cert: certPem, key: keyPem });
    this.log.info('serving a new certificate');
  }

  /** Stops accepting; resolves once every open connection has ended. */
  async close(): Promise<void> {
    this.watched.forEach((w) => w.close());
    const closed = Promise.all(
      this.servers.map(
        (server) =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeIdleConnections();
          }),
      ),
    );
    this.offered?.close();
    await closed;
  }

  /** Cuts whatever is still open, when the grace period is over. */
  closeAllConnections(): void {
    this.servers.forEach((server) => server.closeAllConnections());
    this.offered?.destroyAll();
  }

  /**
   * Node answers protocol errors itself, as plain text; these are the limits a client can hit, as
   * Status. The answer is followed by a half-close, and what the client is still sending (the rest
   * of headers too large to read) is read and dropped for a while: closing with bytes unread would
   * reset the connection, and the client would never see the answer. The parser reports the same
   * error again for each further piece; the connection has been answered once. A TLS handshake
   * that failed or timed out, or a refused renegotiation, comes here too, and has no HTTP to answer
   * in: it is closed, or it would stay open for as long as the client liked.
   */
  private answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    if (answered.has(socket) && isHttpError(err)) return;
    if (!socket.writable || !isHttpError(err)) {
      if (err.code === 'ERR_TLS_RENEGOTIATION_DISABLED' || /no renegotiation/i.test(err.message)) {
        this.log.warn({ remoteAddress: (socket as TLSSocket).remoteAddress }, 'refused a TLS renegotiation: closed the connection');
      }
      socket.destroy();
      return;
    }
    answered.add(socket);
    const { maxHeaderBytes, headersTimeoutMs } = this.options;
    if (err.code === 'HPE_HEADER_OVERFLOW') {
      writeStatusToSocket(socket, new StatusError(431, 'BadRequest', `the request headers are larger than ${maxHeaderBytes} bytes`));
    } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      writeStatusToSocket(socket, new StatusError(408, 'Timeout', `the request headers did not arrive within ${headersTimeoutMs}ms`));
    } else {
      writeStatusToSocket(socket, new StatusError(400, 'BadRequest', 'malformed HTTP request'));
    }
    const drained = setTimeout(() => socket.destroy(), Math.min(headersTimeoutMs, MAX_DRAIN_MS));
    drained.unref();
    socket.once('close', () => clearTimeout(drained));
  }
}

/** Connections already answered with an error: the rest of what they send is read and dropped. */
const answered = new WeakSet<Duplex>();

/** An error of the HTTP layer (the parser, the headers timeout), which can be answered on the connection. */
function isHttpError(err: NodeJS.ErrnoException): boolean {
  return err.code?.startsWith('HPE_') === true || err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
}

/** Listens; resolves with the port bound (the one asked for, or the one chosen for port 0). */
async function listenOn(server: Server, host: string, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host || undefined, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const info = server.address();
  return typeof info === 'object' && info ? info.port : port;
}
