// The API server as the sidecar reaches it: its URL, HTTP/2 sessions that verify its certificate,
// and the scoped service-account token, re-read whenever the kubelet rotates it.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import { watchFile, type WatchedFile } from '../../lib/watch-file.js';
import { SessionPool } from './sessions.js';

export interface UpstreamOptions {
  url: string;
  caFile: string;
  tokenFile: string;
  timeoutMs: number;
  /** Requests at once on one HTTP/2 connection; more open another. */
  maxStreamsPerConnection?: number;
  onTokenChange?: (present: boolean) => void;
}

export interface JsonResponse {
  status: number;
  body: unknown;
}

const DEFAULT_STREAMS_PER_CONNECTION = 100;
const IDLE_CONNECTION_MS = 90_000;
// client-go's defaults for the same check (ReadIdleTimeout, PingTimeout).
const HEALTH_INTERVAL_MS = 30_000;
const HEALTH_TIMEOUT_MS = 15_000;

export class Upstream {
  readonly url: URL;
  /** Every request but upgrades: one HTTP/2 stream each. */
  readonly sessions: SessionPool;
  // One TLS context for every connection: given only `ca`, each new connection would build its own
  // (a third of a millisecond and some 35 KB each).
  private readonly secureContext: SecureContext;
  private readonly token: WatchedFile;

  constructor(private readonly options: UpstreamOptions) {
    this.url = new URL(options.url);
    if (this.url.protocol !== 'https:') throw new Error(`the upstream must be https, not ${this.url.protocol}`);
    this.secureContext = createSecureContext({ ca: readFileSync(options.caFile) });
    this.sessions = new SessionPool({
      url: this.url,
      secureContext: this.secureContext,
      servername: this.servername(),
      maxStreamsPerSession: options.maxStreamsPerConnection ?? DEFAULT_STREAMS_PER_CONNECTION,
      idleTimeoutMs: IDLE_CONNECTION_MS,
      healthIntervalMs: HEALTH_INTERVAL_MS,
      healthTimeoutMs: HEALTH_TIMEOUT_MS,
    });
    this.token = watchFile(options.tokenFile, { onChange: (content) => options.onTokenChange?.(content !== undefined) });
  }

  /** The scoped token, or undefined while the file is missing or empty: then nothing is forwarded. */
  bearerToken(): string | undefined {
    return this.token.current()?.toString('utf8').trim() || undefined;
  }

  async refreshToken(): Promise<void> {
    await this.token.refresh();
  }

  private host(): string {
    return this.url.hostname.replace(/^\[|\]$/g, '');
  }

  /** SNI carries names only (RFC 6066); an IP is verified against the certificate's IP SANs. */
  private servername(): string | undefined {
    return isIP(this.host()) ? undefined : this.host();
  }

  /** TLS options for the HTTP/1.1 connections that upgrades need, one per upgrade. */
  tlsOptions(): { host: string; port: number; secureContext: SecureContext; servername?: string } {
    const servername = this.servername();
    return { host: this.host(), port: Number(this.url.port || 443), secureContext: this.secureContext, ...(servername ? { servername } : {}) };
  }

  /** Whether the API server answers its /readyz under the scoped token, within the timeout. */
  async reachable(timeoutMs: number): Promise<boolean> {
    const token = this.bearerToken();
    if (!token) return false;
    try {
      const { status } = await this.call('GET', '/readyz', token, undefined, timeoutMs);
      return status === 200;
    } catch {
      return false;
    }
  }

  /** A JSON request under the scoped service account's own identity (SubjectAccessReview, TokenReview). */
  async json(method: string, path: string, body: unknown): Promise<JsonResponse> {
    const token = this.bearerToken();
    if (!token) throw new Error(`no service-account token in ${this.options.tokenFile}`);
    const { status, text } = await this.call(method, path, token, JSON.stringify(body), this.options.timeoutMs);
    try {
      return { status, body: JSON.parse(text) as unknown };
    } catch {
      throw new Error(`the API server answered ${status} with a body that is not JSON`);
    }
  }

  private call(method: string, path: string, token: string, payload: string | undefined, timeoutMs: number): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const stream = this.sessions.request(
        {
          ':method': method,
          ':path': path,
          authorization: `Bearer ${token}`,
          accept: 'application/json',
          ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
        },
        payload === undefined,
      );
      const timer = setTimeout(() => stream.destroy(new Error(`no answer from the API server within ${timeoutMs}ms`)), timeoutMs);
      let status = 0;
      const chunks: Buffer[] = [];
      stream.on('response', (headers) => (status = Number(headers[':status'])));
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        clearTimeout(timer);
        resolve({ status, text: Buffer.concat(chunks).toString('utf8') });
      });
      stream.on('error', (err: Error) => {
        clearTimeout(timer);
        reject(err);
      });
      if (payload !== undefined) stream.end(payload);
    });
  }

  close(): void {
    this.token.close();
    this.sessions.destroy();
  }
}
