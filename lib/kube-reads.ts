// GETs by path over one pool of kept-alive connections. @kubernetes/client-node builds a new agent,
// and so a new TLS connection, for every request; on the admission path (a namespace and six objects
// read per pod) that was tens of milliseconds of CPU each, and seconds of queueing at 50 concurrent
// pod creations (docs/benchmarks.md). The kubeconfig still decides every request's credentials (a
// rotated token is picked up); only the connections are shared.
import { Agent, request, type AgentOptions, type RequestOptions } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';

/** The TLS settings client-go's options carry, as a string that changes when any of them does. */
function tlsSettingsKey(options: RequestOptions): string {
  const pem = (value: RequestOptions['ca']) => (value === undefined ? null : [value].flat().map((part) => (typeof part === 'string' ? part : Buffer.from(part as Uint8Array).toString('base64'))));
  return JSON.stringify([pem(options.ca), pem(options.cert), pem(options.key as RequestOptions['ca']), options.rejectUnauthorized ?? null, options.servername ?? null]);
}

/** The TLS settings that are set, for the agent. */
function agentTlsOptions(options: RequestOptions): AgentOptions {
  return {
    ...(options.ca ? { ca: options.ca } : {}),
    ...(options.cert ? { cert: options.cert } : {}),
    ...(options.key ? { key: options.key } : {}),
    ...(options.rejectUnauthorized !== undefined ? { rejectUnauthorized: options.rejectUnauthorized } : {}),
    ...(options.servername ? { servername: options.servername } : {}),
  };
}

export class KubeReadError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface KubeReader {
  /** The object at this API path, or undefined when there is none (404). */
  get<T>(path: string): Promise<T | undefined>;
}

function messageOf(body: string): string {
  try {
    const message = (JSON.parse(body) as { message?: unknown }).message;
    if (typeof message === 'string') return message;
  } catch {
    // not a Status: the text itself
  }
  return body.slice(0, 200);
}

export class KeepAliveKubeReader implements KubeReader {
  private agent: { key: string; agent: Agent } | undefined;

  constructor(
    private readonly kubeconfig: KubeConfig,
    private readonly timeoutMs = 10_000,
  ) {}

  /** The shared agent for these TLS settings; a new one only when they change (a renewed client certificate). */
  private agentFor(options: RequestOptions): Agent {
    const key = tlsSettingsKey(options);
    if (this.agent?.key !== key) {
      this.agent?.agent.destroy();
      this.agent = { key, agent: new Agent({ keepAlive: true, ...agentTlsOptions(options) }) };
    }
    return this.agent.agent;
  }

  async get<T>(path: string): Promise<T | undefined> {
    const server = this.kubeconfig.getCurrentCluster()?.server;
    if (!server) throw new Error('the kubeconfig names no cluster');
    const options: RequestOptions = {};
    await this.kubeconfig.applyToHTTPSOptions(options);
    const { headers } = options;
    const agent = this.agentFor(options);
    const url = new URL(path, server);
    return new Promise((resolve, reject) => {
      const req = request(url, { method: 'GET', agent, headers: { ...headers, accept: 'application/json' }, timeout: this.timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (status === 404) resolve(undefined);
          else if (status !== 200) reject(new KubeReadError(status, `GET ${path}: HTTP ${status}: ${messageOf(body)}`));
          else {
            try {
              resolve(JSON.parse(body) as T);
            } catch (err) {
              reject(new Error(`GET ${path}: not JSON: ${(err as Error).message}`));
            }
          }
        });
      });
      req.on('timeout', () => req.destroy(new Error(`GET ${path}: no answer within ${this.timeoutMs}ms`)));
      req.on('error', reject);
      req.end();
    });
  }

  close(): void {
    this.agent?.agent.destroy();
    this.agent = undefined;
  }
}
