// How a fleet of watches reaches a server: each watch on an HTTP/1.1 connection of its own, or as
// HTTP/2 streams sharing connections, as client-go's watches share a client's connections.
import { connect, constants, type ClientHttp2Session } from 'node:http2';
import { request } from 'node:https';
import type { Readable } from 'node:stream';
import type { Credentials } from './load.js';

export type WatchProtocol = 'http/1.1' | 'h2';

export interface WatchConnections {
  /** Sends one watch's request; resolves with its body once answered 200, rejects on any other answer. */
  open(path: string): Promise<Readable>;
  /** How many connections carry the watches, and at most how many watches each (HTTP/2 only). */
  shape(): { connections: number; streamsPerConnection: number } | undefined;
  close(): void;
}

const OPEN_TIMEOUT_MS = 30_000;
/** The flow-control windows Go's HTTP/2 transport (client-go's) gives the server: 4 MiB a stream, 1 GiB a connection. */
const GO_STREAM_WINDOW = 4 * 2 ** 20;
const GO_CONNECTION_WINDOW = 2 ** 30;

const headersOf = (credentials: Credentials) => ({ accept: 'application/json', ...(credentials.bearer ? { authorization: `Bearer ${credentials.bearer}` } : {}) });
const tlsOf = (credentials: Credentials) => ({ rejectUnauthorized: false, servername: 'localhost', ...(credentials.cert ? { cert: credentials.cert.certPem, key: credentials.cert.keyPem } : {}) });
const openTimeout = (opened: () => number) => new Error(`a watch did not open within ${OPEN_TIMEOUT_MS / 1000}s (${opened()} are open)`);

/** Splits a stream of text into lines, keeping a line cut between chunks until its end arrives. */
export class LineSplitter {
  private buffered = '';

  push(chunk: string): string[] {
    const lines = (this.buffered + chunk).split('\n');
    this.buffered = lines.pop()!;
    return lines;
  }
}

/**
 * How many HTTP/2 connections `watches` streams need when the server allows `maxConcurrentStreams`
 * on each (undefined or 0 from a server that announced none: one connection carries them all).
 */
export function http2Shape(watches: number, maxConcurrentStreams: number | undefined): { connections: number; streamsPerConnection: number } {
  const streamsPerConnection = maxConcurrentStreams ? Math.min(maxConcurrentStreams, watches) : watches;
  return { connections: Math.ceil(watches / streamsPerConnection), streamsPerConnection };
}

export class Http1Watches implements WatchConnections {
  private readonly requests: { destroy(): void }[] = [];

  constructor(
    private readonly base: string,
    private readonly credentials: Credentials,
  ) {}

  open(path: string): Promise<Readable> {
    return new Promise((resolve, reject) => {
      const req = request(`${this.base}${path}`, { agent: false, headers: headersOf(this.credentials), ...tlsOf(this.credentials) });
      const timer = setTimeout(() => req.destroy(openTimeout(() => this.requests.length)), OPEN_TIMEOUT_MS);
      req.on('response', (res) => {
        clearTimeout(timer);
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`a watch was answered ${res.statusCode}`));
          return;
        }
        this.requests.push(req);
        resolve(res);
      });
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      req.end();
    });
  }

  shape(): undefined {
    return undefined;
  }

  close(): void {
    for (const req of this.requests) req.destroy();
  }
}

/** The watches as streams over as few connections as the server's SETTINGS allow, opened as needed. */
export class Http2Watches implements WatchConnections {
  private readonly sessions: Promise<ClientHttp2Session>[] = [];
  private readonly opened: ClientHttp2Session[] = [];
  private streamsPerConnection?: number;
  private sent = 0;
  private answered = 0;

  constructor(
    private readonly base: string,
    private readonly credentials: Credentials,
    private readonly watches: number,
  ) {}

  /** Connects the first session and reads how many streams the server allows on one. */
  async connect(): Promise<void> {
    const first = await this.session(0);
    this.streamsPerConnection = http2Shape(this.watches, first.remoteSettings.maxConcurrentStreams).streamsPerConnection;
  }

  private session(index: number): Promise<ClientHttp2Session> {
    this.sessions[index] ??= new Promise((resolve, reject) => {
      const session = connect(this.base, { ...tlsOf(this.credentials), ALPNProtocols: ['h2'], settings: { initialWindowSize: GO_STREAM_WINDOW } });
      session.once('connect', () => session.setLocalWindowSize(GO_CONNECTION_WINDOW));
      session.once('remoteSettings', () => {
        this.opened.push(session);
        resolve(session);
      });
      session.once('error', (err: Error) => reject(new Error(`${this.base}: HTTP/2 connection ${index + 1}: ${err.message}`)));
      session.on('error', () => undefined); // after the settings: reported by the streams
    });
    return this.sessions[index];
  }

  async open(path: string): Promise<Readable> {
    if (this.streamsPerConnection === undefined) throw new Error('Http2Watches.connect() first');
    const session = await this.session(Math.floor(this.sent++ / this.streamsPerConnection));
    return new Promise((resolve, reject) => {
      const stream = session.request({ [constants.HTTP2_HEADER_PATH]: path, ...headersOf(this.credentials) });
      const timer = setTimeout(() => stream.destroy(openTimeout(() => this.answered)), OPEN_TIMEOUT_MS);
      stream.once('response', (headers) => {
        clearTimeout(timer);
        const status = headers[':status'];
        if (status !== 200) {
          stream.destroy();
          reject(new Error(`a watch was answered ${status}`));
          return;
        }
        this.answered++;
        resolve(stream);
      });
      stream.once('error', (err: Error) => {
        clearTimeout(timer);
        reject(err);
      });
      stream.end();
    });
  }

  shape(): { connections: number; streamsPerConnection: number } {
    return { connections: this.opened.length, streamsPerConnection: this.streamsPerConnection ?? 0 };
  }

  close(): void {
    for (const session of this.opened) session.destroy();
  }
}

export async function watchConnections(protocol: WatchProtocol, base: string, credentials: Credentials, watches: number): Promise<WatchConnections> {
  if (protocol === 'http/1.1') return new Http1Watches(base, credentials);
  const connections = new Http2Watches(base, credentials, watches);
  await connections.connect();
  return connections;
}
