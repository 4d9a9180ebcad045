// Traffic for the faults, the soak and the hostile clients: loops of requests that run until told to
// stop, and a request that says which serving certificate answered it.
import type { IncomingHttpHeaders } from 'node:http';
import { request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { CertificateAndKey } from '../../../lib/pki.js';

export interface Loops<T> {
  results: T[];
  /** Lets each loop finish the request it is in, then resolves. */
  stop(): Promise<T[]>;
}

/** `workers` loops, each calling `once` again as soon as it resolves. */
export function loops<T>(workers: number, once: (worker: number) => Promise<T>): Loops<T> {
  const results: T[] = [];
  let running = true;
  const done = Array.from({ length: workers }, async (_, worker) => {
    while (running) results.push(await once(worker));
  });
  return {
    results,
    stop: async () => {
      running = false;
      await Promise.all(done);
      return results;
    },
  };
}

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** SHA-256 fingerprint of the certificate the server presented; '' when the request failed. */
  served: string;
  error?: string;
}

export interface CallOptions {
  port: number;
  path: string;
  /** The CA bundle the client trusts for the server. */
  ca: string;
  cert?: CertificateAndKey;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  timeoutMs?: number;
}

/** One request on a connection of its own; a failure is an answer with status 0, never a throw. */
export function call(options: CallOptions): Promise<Answer> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: options.port,
        path: options.path,
        method: options.method ?? 'GET',
        ca: options.ca,
        agent: false,
        headers: options.headers ?? {},
        ...(options.cert ? { cert: options.cert.certPem, key: options.cert.keyPem } : {}),
      },
      (res) => {
        const served = (res.socket as TLSSocket).getPeerCertificate?.()?.fingerprint256 ?? '';
        // Decoded whole: a character split between two chunks would otherwise come out as two U+FFFD.
        const chunks: Buffer[] = [];
        const body = () => Buffer.concat(chunks).toString('utf8');
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: body(), served }));
        res.on('error', (err) => resolve({ status: 0, headers: res.headers, body: body(), served, error: err.message }));
      },
    );
    req.setTimeout(options.timeoutMs ?? 30_000, () => req.destroy(new Error('timed out')));
    req.on('error', (err) => resolve({ status: 0, headers: {}, body: '', served: '', error: err.message }));
    req.end(options.body);
  });
}

export interface Stream {
  status: number;
  auditID: string | undefined;
  /** Bytes received so far. */
  received(): number;
  /** How the response ended: 'end' for a clean end of stream, 'error' for a cut one. */
  ended: Promise<'end' | 'error'>;
  close(): void;
}

/** A long-running request (a watch): resolves once the response head is in. */
export function openStream(options: CallOptions): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: options.port, path: options.path, ca: options.ca, agent: false, ...(options.cert ? { cert: options.cert.certPem, key: options.cert.keyPem } : {}) },
      (res) => {
        let bytes = 0;
        res.on('data', (chunk: Buffer) => (bytes += chunk.length));
        const ended = new Promise<'end' | 'error'>((done) => {
          res.once('end', () => done('end'));
          res.once('error', () => done('error'));
          res.once('aborted', () => done('error'));
        });
        const auditID = res.headers['audit-id'];
        resolve({ status: res.statusCode ?? 0, auditID: typeof auditID === 'string' ? auditID : undefined, received: () => bytes, ended, close: () => req.destroy() });
      },
    );
    req.on('error', reject);
    req.end();
  });
}
