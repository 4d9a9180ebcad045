// HTTP/2 sessions to the API server. Every request is a stream of its own, framed by HTTP/2: no byte
// of one request's body can be read as the start of another, whatever the client sent (on a shared
// HTTP/1.1 connection it could: request smuggling). A session carries at most maxStreams requests at
// once (the API server allows 100 by default); more open further sessions. Sessions that were told
// to go away, or broke, take no new streams.
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';
import type { SecureContext } from 'node:tls';

export interface SessionPoolOptions {
  url: URL;
  secureContext: SecureContext;
  /** The name the API server's certificate must carry; undefined for an IP address (checked against IP SANs). */
  servername: string | undefined;
  maxStreamsPerSession: number;
  /** A session with no stream open for this long is closed. */
  idleTimeoutMs: number;
  /**
   * While streams are open, the API server is pinged this often; a session whose ping is not
   * answered within healthTimeoutMs is cut, with its streams (as client-go's HTTP/2 health check
   * does): a connection whose peer vanished would otherwise hold its watches open for ever.
   */
  healthIntervalMs: number;
  healthTimeoutMs: number;
}

// Flow control: each stream may have this much on its way before the sidecar reads it, and a session
// as much as all its streams together, so that a client that stops reading one response (it may be
// anyone) stalls that stream only, never the others sharing its connection.
const STREAM_WINDOW_BYTES = 1024 * 1024;

interface Entry {
  session: ClientHttp2Session;
  open: number;
  /** Told to go away, closing, or broken: no new streams. */
  retired: boolean;
  idle?: NodeJS.Timeout;
}

export class SessionPool {
  private readonly entries: Entry[] = [];
  private closed = false;

  constructor(private readonly options: SessionPoolOptions) {}

  /** A new stream for this request on a session with room for it. */
  request(headers: OutgoingHttpHeaders, endStream: boolean): ClientHttp2Stream {
    if (this.closed) throw new Error('the connection pool to the API server is closed');
    const entry = this.withRoom() ?? this.open();
    const stream = entry.session.request(headers, { endStream });
    entry.open++;
    clearTimeout(entry.idle);
    entry.session.ref();
    stream.once('close', () => {
      entry.open--;
      if (entry.open === 0) this.idle(entry);
    });
    return stream;
  }

  /** Sessions and the streams each has open, for tests and metrics. */
  describe(): { open: number; retired: boolean }[] {
    return this.entries.map(({ open, retired }) => ({ open, retired }));
  }

  private withRoom(): Entry | undefined {
    return this.entries.find((entry) => !entry.retired && !entry.session.destroyed && entry.open < this.limitOf(entry.session));
  }

  private limitOf(session: ClientHttp2Session): number {
    const announced = session.remoteSettings.maxConcurrentStreams;
    return announced === undefined ? this.options.maxStreamsPerSession : Math.min(announced, this.options.maxStreamsPerSession);
  }

  private open(): Entry {
    const { url, secureContext, servername } = this.options;
    const session = connect(url, {
      secureContext,
      ...(servername ? { servername } : {}),
      settings: { initialWindowSize: STREAM_WINDOW_BYTES, enablePush: false },
    });
    const entry: Entry = { session, open: 0, retired: false };
    this.entries.push(entry);
    const retire = () => {
      entry.retired = true;
    };
    session.once('connect', () => session.setLocalWindowSize(STREAM_WINDOW_BYTES * this.options.maxStreamsPerSession));
    const health = setInterval(() => this.checkHealth(entry), this.options.healthIntervalMs).unref();
    session.once('goaway', retire);
    // Errors reach the streams on it; the session itself is only taken out of the pool.
    session.on('error', retire);
    session.once('close', () => {
      retire();
      clearTimeout(entry.idle);
      clearInterval(health);
      const at = this.entries.indexOf(entry);
      if (at >= 0) this.entries.splice(at, 1);
    });
    return entry;
  }

  private checkHealth(entry: Entry): void {
    const { session } = entry;
    if (entry.open === 0 || session.connecting || session.destroyed) return;
    const { healthTimeoutMs } = this.options;
    const cut = setTimeout(() => {
      entry.retired = true;
      session.destroy(new Error(`the API server did not answer a ping within ${healthTimeoutMs}ms`));
    }, healthTimeoutMs).unref();
    const sent = session.ping(() => clearTimeout(cut));
    if (!sent) clearTimeout(cut); // pings still outstanding: the earlier one decides
  }

  /** Nothing open on it: it no longer keeps the process alive, and closes unless used again soon. */
  private idle(entry: Entry): void {
    entry.session.unref();
    entry.idle = setTimeout(() => {
      entry.retired = true;
      entry.session.close();
    }, this.options.idleTimeoutMs).unref();
  }

  /** No new streams; open ones finish, then their sessions close. */
  close(): void {
    this.closed = true;
    for (const entry of this.entries) {
      entry.retired = true;
      entry.session.close();
    }
  }

  /** Cuts every session now. */
  destroy(): void {
    this.closed = true;
    for (const entry of this.entries) entry.session.destroy();
  }
}

export const CANCEL = constants.NGHTTP2_CANCEL;
export const REFUSED_STREAM = constants.NGHTTP2_REFUSED_STREAM;
