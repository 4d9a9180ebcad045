// The API server as the sidecar reaches it: its URL, a keep-alive agent that verifies its
// certificate, and the scoped service-account token, re-read whenever the kubelet rotates it.
import { Agent, request } from 'node:https';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { createSecureContext } from 'node:tls';
import { watchFile, type WatchedFile } from '../../lib/watch-file.js';

export interface UpstreamOptions {
  url: string;
  caFile: string;
  tokenFile: string;
  timeoutMs: number;
  onTokenChange?: (present: boolean) => void;
}

export interface JsonResponse {
  status: number;
  body: unknown;
}

export class Upstream {
  readonly url: URL;
  readonly agent: Agent;
  private readonly ca: Buffer;
  private readonly token: WatchedFile;

  constructor(private readonly options: UpstreamOptions) {
    this.url = new URL(options.url);
    if (this.url.protocol !== 'https:') throw new Error(`the upstream must be https, not ${this.url.protocol}`);
    this.ca = readFileSync(options.caFile);
    // One TLS context for every connection: given only `ca`, each new connection would build its
    // own (a third of a millisecond and some 35 KB each). No cap on sockets: every watch holds one
    // for as long as it runs, and a cap would queue every later request behind them (with a cap of
    // 256, the 257th watch, and all after it, hung).
    this.agent = new Agent({ keepAlive: true, secureContext: createSecureContext({ ca: this.ca }) });
    this.token = watchFile(options.tokenFile, { onChange: (content) => options.onTokenChange?.(content !== undefined) });
  }

  /** The scoped token, or undefined while the file is missing or empty: then nothing is forwarded. */
  bearerToken(): string | undefined {
    return this.token.current()?.toString('utf8').trim() || undefined;
  }

  async refreshToken(): Promise<void> {
    await this.token.refresh();
  }

  /** TLS options for connections made outside the agent (upgrades). */
  tlsOptions(): { host: string; port: number; ca: Buffer; servername?: string } {
    const host = this.url.hostname.replace(/^\[|\]$/g, '');
    // SNI carries names only (RFC 6066); an IP is verified against the certificate's IP SANs.
    return { host, port: Number(this.url.port || 443), ca: this.ca, ...(isIP(host) ? {} : { servername: host }) };
  }

  /** Whether the API server answers its /readyz under the scoped token, within the timeout. */
  async reachable(timeoutMs: number): Promise<boolean> {
    const token = this.bearerToken();
    if (!token) return false;
    return new Promise((resolve) => {
      const req = request(new URL('/readyz', this.url), { agent: this.agent, timeout: timeoutMs, headers: { authorization: `Bearer ${token}` } }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(false));
      req.end();
    });
  }

  /** A JSON request under the scoped service account's own identity (SubjectAccessReview, TokenReview). */
  json(method: string, path: string, body: unknown): Promise<JsonResponse> {
    const token = this.bearerToken();
    if (!token) return Promise.reject(new Error(`no service-account token in ${this.options.tokenFile}`));
    const payload = JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        new URL(path, this.url),
        {
          method,
          agent: this.agent,
          timeout: this.options.timeoutMs,
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/json',
            accept: 'application/json',
            'content-length': Buffer.byteLength(payload),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            try {
              resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as unknown });
            } catch {
              reject(new Error(`the API server answered ${res.statusCode} with a body that is not JSON`));
            }
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer from the API server within ${this.options.timeoutMs}ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  close(): void {
    this.token.close();
    this.agent.destroy();
  }
}
