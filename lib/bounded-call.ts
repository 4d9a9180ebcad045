// One bounded HTTP(S) exchange, for every call chaperone makes on its own behalf to something other
// than the API server (OIDC discovery and keys, token and audit webhooks): a timeout, a cap on the
// answer's size, and errors that name where they happened.
import { request as httpRequest, type Agent as HttpAgent, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest, type Agent as HttpsAgent, type RequestOptions } from 'node:https';

export interface Answer {
  status: number;
  contentType: string;
  body: Buffer;
}

export interface Call {
  method: 'GET' | 'POST';
  agent: HttpAgent | HttpsAgent;
  timeoutMs: number;
  /** The most bytes of answer read; more is an error. */
  maxBytes?: number;
  /** A JSON body. */
  body?: string;
  headers?: OutgoingHttpHeaders;
  /** TLS options of this call (a client certificate), beyond the agent's. */
  tls?: Pick<RequestOptions, 'cert' | 'key' | 'ca' | 'servername' | 'rejectUnauthorized'>;
  /** How errors name the other end; the URL without its query, unless given. */
  where?: string;
}

const DEFAULT_MAX_BYTES = 1024 * 1024;

/** Node's advice for a certificate it cannot verify (--use-system-ca) means nothing in the image. */
const NODE_CA_HINT = /; if the root CA is installed locally, try running Node\.js with --use-system-ca$/;

export function boundedCall(url: URL, call: Call): Promise<Answer> {
  const maxBytes = call.maxBytes ?? DEFAULT_MAX_BYTES;
  const where = call.where ?? `${url.origin}${url.pathname}`;
  return new Promise((resolve, reject) => {
    const options = {
      method: call.method,
      agent: call.agent,
      ...call.tls,
      headers: {
        accept: 'application/json',
        ...(call.body !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(call.body)) } : {}),
        ...call.headers,
      },
    };
    const onResponse = (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) return void req.destroy(new Error(`${where} answered with more than ${maxBytes} bytes`));
        chunks.push(chunk);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'] ?? '', body: Buffer.concat(chunks) }));
      res.on('error', reject);
    };
    const req = url.protocol === 'https:' ? httpsRequest(url, options, onResponse) : httpRequest(url, options, onResponse);
    const timer = setTimeout(() => req.destroy(new Error(`no answer from ${where} within ${call.timeoutMs}ms`)), call.timeoutMs);
    req.on('close', () => clearTimeout(timer));
    req.on('error', (err: NodeJS.ErrnoException) => {
      const message = err.message.replace(NODE_CA_HINT, '');
      const wrapped: NodeJS.ErrnoException = new Error(message.includes(where) ? message : `${where}: ${message}`);
      if (err.code !== undefined) wrapped.code = err.code;
      reject(wrapped);
    });
    req.end(call.body);
  });
}

/** Parses a JSON answer; throws a short reason when it is not JSON. */
export function jsonBody(answer: Answer, what: string): unknown {
  try {
    return JSON.parse(answer.body.toString('utf8')) as unknown;
  } catch {
    throw new Error(`${what} answered ${answer.status} with a body that is not JSON (${answer.contentType || 'no content type'})`);
  }
}
