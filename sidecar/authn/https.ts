// One bounded HTTPS exchange for the authenticators' own calls (OIDC discovery and keys, webhook
// TokenReviews): a timeout, a cap on the answer's size, and errors that say what went wrong where.
import type { Agent } from 'node:https';
import { request } from 'node:https';

export interface HttpsAnswer {
  status: number;
  contentType: string;
  body: Buffer;
}

export interface HttpsCall {
  method: 'GET' | 'POST';
  agent: Agent;
  timeoutMs: number;
  /** The most bytes of answer read; more is an error. */
  maxBytes?: number;
  body?: string;
  headers?: Record<string, string>;
}

const DEFAULT_MAX_BYTES = 1024 * 1024;

export function httpsCall(url: string, call: HttpsCall): Promise<HttpsAnswer> {
  const maxBytes = call.maxBytes ?? DEFAULT_MAX_BYTES;
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: call.method,
        agent: call.agent,
        headers: {
          accept: 'application/json',
          ...(call.body !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(call.body)) } : {}),
          ...call.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBytes) {
            req.destroy(new Error(`${url} answered with more than ${maxBytes} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'] ?? '', body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    const timer = setTimeout(() => req.destroy(new Error(`no answer from ${url} within ${call.timeoutMs}ms`)), call.timeoutMs);
    req.on('close', () => clearTimeout(timer));
    req.on('error', (err: NodeJS.ErrnoException) => {
      // Node's advice for a certificate it cannot verify (--use-system-ca) means nothing in the image.
      const message = err.message.replace(/; if the root CA is installed locally, try running Node\.js with --use-system-ca$/, '');
      const wrapped: NodeJS.ErrnoException = new Error(message.startsWith('no answer') || message.includes(url) ? message : `${url}: ${message}`);
      if (err.code !== undefined) wrapped.code = err.code;
      reject(wrapped);
    });
    req.end(call.body);
  });
}

/** Parses a JSON answer; throws a short reason when it is not JSON. */
export function jsonBody(answer: HttpsAnswer, what: string): unknown {
  try {
    return JSON.parse(answer.body.toString('utf8')) as unknown;
  } catch {
    throw new Error(`${what} answered ${answer.status} with a body that is not JSON (${answer.contentType || 'no content type'})`);
  }
}
