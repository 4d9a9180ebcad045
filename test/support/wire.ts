// Requests written byte by byte over TLS, for what no HTTP client sends: any header names in any
// letter case and order, headers that never end, clients that never read.
import { connect, type TLSSocket } from 'node:tls';
import type { CertificateAndKey } from '../../lib/pki.js';

export interface Target {
  port: number;
  /** The CA of the sidecar's serving certificate. */
  ca: string;
}

export interface RawAnswer {
  status: number;
  headers: Map<string, string>;
  body: string;
}

/** A TLS connection to the target, presenting the certificate when there is one. */
export function openTls(target: Target, cert?: CertificateAndKey): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect(
      { host: '127.0.0.1', port: target.port, ca: target.ca, servername: 'localhost', ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}) },
      () => {
        socket.off('error', reject);
        resolve(socket);
      },
    );
    socket.once('error', reject);
  });
}

export function parseAnswer(text: string): RawAnswer {
  const end = text.indexOf('\r\n\r\n');
  const head = (end < 0 ? text : text.slice(0, end)).split('\r\n');
  const headers = new Map<string, string>();
  for (const line of head.slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(head[0] ?? '')?.[1] ?? 0), headers, body: end < 0 ? '' : text.slice(end + 4) };
}

/**
 * Sends the bytes and reads until the server closes the connection (send Connection: close). The
 * client does not half-close: a TLS server takes that for a client gone.
 */
export async function exchange(target: Target, request: string | Buffer, cert?: CertificateAndKey): Promise<RawAnswer> {
  const socket = await openTls(target, cert);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('close', () => resolve(parseAnswer(Buffer.concat(chunks).toString('latin1'))));
    socket.on('error', reject);
    socket.write(request);
  });
}

/**
 * Writes the bytes and reads until the server closes the connection or quietMs pass without a byte:
 * the whole text (latin1), and every response in it, for what a pipelined or smuggled request made
 * the server answer.
 */
export async function converse(target: Target, cert: CertificateAndKey | undefined, bytes: string | Buffer, quietMs = 1500): Promise<{ text: string; answers: RawAnswer[] }> {
  const socket = await openTls(target, cert);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let quiet: NodeJS.Timeout;
    const done = () => {
      clearTimeout(quiet);
      socket.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const answers = text
        .split(/(?=HTTP\/1\.1 \d{3} )/)
        .filter((part) => part.startsWith('HTTP/1.1 '))
        .map(parseAnswer);
      resolve({ text, answers });
    };
    const wait = () => {
      clearTimeout(quiet);
      quiet = setTimeout(done, quietMs);
    };
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      wait();
    });
    socket.once('close', done);
    socket.once('error', done);
    socket.write(bytes);
    wait();
  });
}
