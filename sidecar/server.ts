// The TLS listeners: serving certificate and identity CA from files, swapped in when they change
// without dropping a connection. Client certificates are requested, never required.
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { readFileSync } from 'node:fs';
import { watchFile, type WatchedFile } from '../lib/watch-file.js';
import type { Logger } from '../lib/log.js';
import { parseHostPort } from '../lib/config.js';
import { StatusError, writeStatusToSocket } from './status.js';

export interface ListenerLimits {
  maxHeaderBytes: number;
  headersTimeoutMs: number;
}

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** The identity CA bundle; without it no client certificate is asked for. */
  clientCaFile?: string;
}

function secureContextOptions(files: TlsFiles) {
  return {
    cert: readFileSync(files.certFile),
    key: readFileSync(files.keyFile),
    ...(files.clientCaFile ? { ca: readFileSync(files.clientCaFile) } : {}),
  };
}

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** One or more HTTPS listeners sharing one certificate set, reloaded together. */
export class TlsListeners {
  private readonly servers: Server[] = [];
  private readonly watched: WatchedFile[] = [];

  constructor(
    private readonly files: TlsFiles,
    private readonly handlers: { request: RequestHandler; upgrade?: UpgradeHandler; checkContinue?: RequestHandler },
    private readonly log: Logger,
    private readonly limits: ListenerLimits = { maxHeaderBytes: 64 * 1024, headersTimeoutMs: 10_000 },
  ) {}

  async listen(addresses: string[]): Promise<{ address: string; port: number }[]> {
    const initial = secureContextOptions(this.files); // a bad file refuses to start, naming it
    const bound: { address: string; port: number }[] = [];
    for (const address of addresses) {
      const parsed = parseHostPort(address);
      if (!parsed) throw new Error(`not a host:port address: ${address}`);
      const { host, port } = parsed;
      const server = createServer(
        {
          ...initial,
          requestCert: this.files.clientCaFile !== undefined,
          rejectUnauthorized: false,
          minVersion: 'TLSv1.2',
          maxHeaderSize: this.limits.maxHeaderBytes,
          headersTimeout: this.limits.headersTimeoutMs,
          // A client gets as long for its TLS handshake as for its headers; Node's default is 120s.
          handshakeTimeout: this.limits.headersTimeoutMs,
          // Only for receiving the request: a watch may then stream for hours.
          requestTimeout: 0,
          connectionsCheckingInterval: 1000,
        },
        this.handlers.request,
      );
      server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => answerClientError(err, socket, this.limits));
      if (this.handlers.upgrade) server.on('upgrade', this.handlers.upgrade);
      // Without a listener Node answers `Expect: 100-continue` itself, before anyone has looked at the request.
      if (this.handlers.checkContinue) server.on('checkContinue', this.handlers.checkContinue);
      server.on('tlsClientError', (err) => this.log.debug({ err: err.message }, 'TLS handshake failed'));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host || undefined, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const info = server.address();
      bound.push({ address, port: typeof info === 'object' && info ? info.port : port });
      this.servers.push(server);
    }
    for (const file of [this.files.certFile, this.files.keyFile, this.files.clientCaFile]) {
      if (file) this.watched.push(watchFile(file, { onChange: () => this.reload() }));
    }
    return bound;
  }

  private reload(): void {
    try {
      const options = secureContextOptions(this.files);
      for (const server of this.servers) server.setSecureContext({ ...options });
      this.log.info('reloaded the serving certificate and identity CA');
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
    const ca = this.files.clientCaFile ? { ca: readFileSync(this.files.clientCaFile) } : {};
    for (const server of this.servers) server.setSecureContext({ cert: certPem, key: keyPem, ...ca });
    this.log.info('serving a new certificate');
  }

  /** Stops accepting; resolves once every open connection has ended. */
  async close(): Promise<void> {
    this.watched.forEach((w) => w.close());
    await Promise.all(
      this.servers.map(
        (server) =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeIdleConnections();
          }),
      ),
    );
  }

  /** Cuts whatever is still open, when the grace period is over. */
  closeAllConnections(): void {
    this.servers.forEach((server) => server.closeAllConnections());
  }
}

/** An error of the HTTP layer (the parser, the headers timeout), which can be answered on the connection. */
function isHttpError(err: NodeJS.ErrnoException): boolean {
  return err.code?.startsWith('HPE_') === true || err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
}

/** How long a connection answered with an error keeps being read (and what it sends dropped) before it is closed. */
const MAX_DRAIN_MS = 5000;

/** Connections already answered with an error: the rest of what they send is read and dropped. */
const answered = new WeakSet<Duplex>();

/**
 * Node answers protocol errors itself, as plain text; these are the limits a client can hit, as
 * Status. The answer is followed by a half-close, and what the client is still sending (the rest
 * of headers too large to read) is read and dropped for a while: closing with bytes unread would
 * reset the connection, and the client would never see the answer. The parser reports the same
 * error again for each further piece; the connection has been answered once. A TLS handshake that
 * failed or timed out comes here too, and has no HTTP to answer in: it is closed, or it would stay
 * open for as long as the client liked.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex, limits: ListenerLimits): void {
  if (answered.has(socket) && isHttpError(err)) return;
  if (!socket.writable || !isHttpError(err)) {
    socket.destroy();
    return;
  }
  answered.add(socket);
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    writeStatusToSocket(socket, new StatusError(431, 'BadRequest', `the request headers are larger than ${limits.maxHeaderBytes} bytes`));
  } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    writeStatusToSocket(socket, new StatusError(408, 'Timeout', `the request headers did not arrive within ${limits.headersTimeoutMs}ms`));
  } else {
    writeStatusToSocket(socket, new StatusError(400, 'BadRequest', 'malformed HTTP request'));
  }
  const drained = setTimeout(() => socket.destroy(), Math.min(limits.headersTimeoutMs, MAX_DRAIN_MS));
  drained.unref();
  socket.once('close', () => clearTimeout(drained));
}
