// The TLS listeners: serving certificate and identity CA bundle from files, swapped in when they
// change without dropping a connection, except those whose client certificate the new bundle no
// longer trusts. Client certificates are requested, never required. A connection's TLS identity
// cannot change under it: renegotiation is refused twice over (OpenSSL's SSL_OP_NO_RENEGOTIATION
// and Node's disableRenegotiation(), whichever sees it first closes the connection), and the
// certificate of the first handshake is pinned for the authenticator (authn/client-cert.ts), which
// verifies it against the bundle as it is at each request.
import { constants } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { readFileSync } from 'node:fs';
import { watchFile, type WatchedFile } from '../lib/watch-file.js';
import type { Logger } from '../lib/log.js';
import { parseHostPort } from '../lib/config.js';
import { connectionVerdict, pinHandshake } from './authn/client-cert.js';
import { UnusableBundle, type IdentityBundle, type Verdict } from './authn/identity-bundle.js';
import { StatusError, writeStatusToSocket } from './status.js';

export interface ListenerLimits {
  maxHeaderBytes: number;
  headersTimeoutMs: number;
}

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** The identity CA bundle (its file is watched here); without it no client certificate is asked for. */
  identity?: IdentityBundle;
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

/**
 * How long a request already in progress on a connection whose certificate the bundle stopped
 * trusting may go on (it was authorised before the change, as the API server would let it finish);
 * a watch or an exec session is cut then. No new request on it is served meanwhile.
 */
const IN_FLIGHT_GRACE_MS = 1000;

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** One or more HTTPS listeners sharing one certificate set, reloaded together. */
export class TlsListeners {
  private readonly servers: Server[] = [];
  private readonly watched: WatchedFile[] = [];
  /** Open connections that presented a client certificate (those a change of the bundle may close), with their requests in progress; an upgraded one stays busy. */
  private readonly withCertificates = new Map<TLSSocket, { busy: number; closing: boolean }>();
  private serving: Serving | undefined;

  constructor(
    private readonly files: TlsFiles,
    private readonly handlers: { request: RequestHandler; upgrade?: UpgradeHandler; checkContinue?: RequestHandler },
    private readonly log: Logger,
    private readonly limits: ListenerLimits = { maxHeaderBytes: 64 * 1024, headersTimeoutMs: 10_000 },
  ) {}

  private contextOptions(serving: Serving) {
    const { identity } = this.files;
    return { ...serving, ...(identity ? { ca: identity.pems } : {}), secureOptions: SECURE_OPTIONS };
  }

  async listen(addresses: string[]): Promise<{ address: string; port: number }[]> {
    this.serving = readServing(this.files); // a bad file refuses to start, naming it
    const { identity } = this.files;
    const bound: { address: string; port: number }[] = [];
    for (const address of addresses) {
      const parsed = parseHostPort(address);
      if (!parsed) throw new Error(`not a host:port address: ${address}`);
      const { host, port } = parsed;
      const server = createServer(
        {
          ...this.contextOptions(this.serving),
          requestCert: identity !== undefined,
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
        (req, res) => {
          this.inProgress(req.socket, res);
          this.handlers.request(req, res);
        },
      );
      // Before the HTTP layer sees the connection, so before any request on it is read.
      server.prependListener('secureConnection', (socket: TLSSocket) => this.accepted(socket));
      server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.answerClientError(err, socket));
      const { upgrade, checkContinue } = this.handlers;
      if (upgrade) {
        server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
          this.inProgress(socket);
          upgrade(req, socket, head);
        });
      }
      // Without a listener Node answers `Expect: 100-continue` itself, before anyone has looked at the request.
      if (checkContinue) {
        server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
          this.inProgress(req.socket, res);
          checkContinue(req, res);
        });
      }
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
    for (const file of [this.files.certFile, this.files.keyFile]) this.watched.push(watchFile(file, { onChange: () => this.reloadServing() }));
    if (identity) {
      identity.unusable().forEach((why) => this.log.warn({ certificate: why }, 'the identity CA bundle holds a certificate that cannot vouch for anyone'));
      const watched = watchFile(identity.file, { onChange: (content) => this.reloadIdentity(content) });
      this.watched.push(watched);
      this.reloadIdentity(watched.current()); // in case it changed since it was read
    }
    return bound;
  }

  private accepted(socket: TLSSocket): void {
    // Node's refusal: it only reports the renegotiation, as an error, which closes the connection
    // (answerClientError). OpenSSL's refuses it outright (SECURE_OPTIONS).
    socket.disableRenegotiation();
    if (!this.files.identity) return;
    pinHandshake(socket, () => {
      this.log.warn({ remoteAddress: socket.remoteAddress }, 'a client started a second TLS handshake on a connection: closed it');
      socket.destroy();
    });
    if (!socket.getPeerX509Certificate()) return;
    this.withCertificates.set(socket, { busy: 0, closing: false });
    socket.once('close', () => this.withCertificates.delete(socket));
  }

  /** A request began on the connection; it ends when the response does (never, for an upgrade). */
  private inProgress(socket: Duplex, res?: ServerResponse): void {
    const state = this.withCertificates.get(socket as TLSSocket);
    if (!state) return;
    state.busy++;
    res?.once('close', () => {
      state.busy--;
      if (state.closing && state.busy === 0) socket.destroy();
    });
  }

  /** Closes the connection now if it is idle, else once its requests in progress are done, or the grace is over. */
  private closeUntrusted(socket: TLSSocket): void {
    const state = this.withCertificates.get(socket);
    if (!state || state.busy === 0) {
      socket.destroy();
      return;
    }
    state.closing = true;
    setTimeout(() => socket.destroy(), IN_FLIGHT_GRACE_MS).unref();
  }

  /** Every listener serves this from now on, with the bundle as it is now; throws, changing nothing, if the pair does not load. */
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
   * The bundle changed: new connections are verified against it at once, and every open connection
   * whose certificate it trusted before and trusts no more is closed.
   */
  private reloadIdentity(content: Buffer | undefined): void {
    const identity = this.files.identity;
    if (!identity) return;
    const trustedBefore = new Map<TLSSocket, Verdict>();
    for (const socket of this.withCertificates.keys()) {
      const verdict = connectionVerdict(socket, identity);
      if (verdict?.trusted) trustedBefore.set(socket, verdict);
    }
    try {
      if (!identity.replace(content)) return;
    } catch (err) {
      if (!(err instanceof UnusableBundle)) throw err;
      this.log.warn({ file: identity.file, err: err.message }, 'could not read the new identity CA bundle; keeping the previous one');
      return;
    }
    if (this.serving) this.apply(this.serving);
    this.log.info({ file: identity.file, certificates: identity.pems.length }, 'reloaded the identity CA bundle');
    identity.unusable().forEach((why) => this.log.warn({ certificate: why }, 'the identity CA bundle holds a certificate that cannot vouch for anyone'));
    for (const [socket, before] of trustedBefore) {
      const now = connectionVerdict(socket, identity);
      if (now?.trusted) continue;
      const user = before.trusted ? before.identity.username : undefined;
      this.log.warn({ user, issuer: before.trusted ? before.issuer : undefined, reason: now?.reason, remoteAddress: socket.remoteAddress }, 'closing a connection whose client certificate the identity CA bundle no longer trusts');
      this.closeUntrusted(socket);
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
    const { maxHeaderBytes, headersTimeoutMs } = this.limits;
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
