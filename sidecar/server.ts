// The TLS listeners: serving certificate and identity CA from files, swapped in when they change
// without dropping a connection. Client certificates are requested, never required.
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { readFileSync } from 'node:fs';
import { watchFile, type WatchedFile } from '../lib/watch-file.js';
import type { Logger } from '../lib/log.js';
import { parseHostPort } from '../lib/config.js';

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
    private readonly handlers: { request: RequestHandler; upgrade?: UpgradeHandler },
    private readonly log: Logger,
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
        },
        this.handlers.request,
      );
      if (this.handlers.upgrade) server.on('upgrade', this.handlers.upgrade);
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
}
