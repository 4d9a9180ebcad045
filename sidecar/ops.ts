// The ops listener: /healthz (the process is alive), /readyz (it can serve a person), /metrics.
// Plain HTTP on its own port, for the kubelet's probes and Prometheus; it serves nothing else.
import { createServer, type Server } from 'node:http';
import { parseHostPort } from '../lib/config.js';
import type { SidecarMetrics } from './metrics.js';

export interface ReadinessCheck {
  name: string;
  /** Undefined when fine, else why not. */
  check(): Promise<string | undefined>;
  /** What /readyz shows beside `ok`. */
  detail?(): string;
}

export class OpsServer {
  private server: Server | undefined;

  constructor(
    private readonly checks: readonly ReadinessCheck[],
    private readonly metrics: SidecarMetrics,
  ) {}

  async listen(address: string): Promise<number> {
    const parsed = parseHostPort(address);
    if (!parsed) throw new Error(`not a host:port address: ${address}`);
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
      } else if (path === '/healthz' || path === '/livez') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      } else if (path === '/readyz') {
        void this.readiness().then((failures) => {
          const body = this.checks.map((c) => (failures.has(c.name) ? `[-]${c.name} failed: ${failures.get(c.name)}` : `[+]${c.name} ok${c.detail ? `: ${c.detail()}` : ''}`)).join('\n');
          res.writeHead(failures.size === 0 ? 200 : 503, { 'content-type': 'text/plain' }).end(`${body}\n${failures.size === 0 ? 'readyz check passed' : 'readyz check failed'}\n`);
        });
      } else if (path === '/metrics') {
        void this.metrics.registry.metrics().then((text) => res.writeHead(200, { 'content-type': this.metrics.registry.contentType }).end(text));
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(parsed.port, parsed.host || undefined, () => resolve());
    });
    this.server = server;
    const info = server.address();
    return typeof info === 'object' && info ? info.port : parsed.port;
  }

  /** The checks that failed, by name, with why. Written in the API server's /readyz style. */
  async readiness(): Promise<Map<string, string>> {
    const results = await Promise.all(this.checks.map(async (c) => [c.name, await c.check()] as const));
    return new Map(results.filter((r): r is readonly [string, string] => r[1] !== undefined));
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }
}
