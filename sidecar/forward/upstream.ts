// The API server as the sidecar reaches it: its URL, a keep-alive agent that verifies its
// certificate, and the scoped service-account token, re-read whenever the kubelet rotates it.
import { Agent, request } from 'node:https';
import { readFileSync } from 'node:fs';
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
  private readonly token: WatchedFile;

  constructor(private readonly options: UpstreamOptions) {
    this.url = new URL(options.url);
    if (this.url.protocol !== 'https:') throw new Error(`the upstream must be https, not ${this.url.protocol}`);
    this.agent = new Agent({ keepAlive: true, ca: readFileSync(options.caFile), maxSockets: 256 });
    this.token = watchFile(options.tokenFile, { onChange: (content) => options.onTokenChange?.(content !== undefined) });
  }

  /** The scoped token, or undefined while the file is missing or empty: then nothing is forwarded. */
  bearerToken(): string | undefined {
    return this.token.current()?.toString('utf8').trim() || undefined;
  }

  async refreshToken(): Promise<void> {
    await this.token.refresh();
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
