// The HTTPS shell around answerReview: POST /mutate and GET /healthz. What reaches answerReview is
// parsed JSON; everything else is answered here (404, 405, 413, 415, 400).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../lib/log.js';
import { TlsListeners } from '../sidecar/server.js';
import { answerReview, MalformedReview, type ReviewContext } from './review.js';

/** An AdmissionReview holds the object and the old object; the API server caps each near 3 MiB. */
export const MAX_BODY_BYTES = 16 * 1024 * 1024;

class TooLarge extends Error {}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        req.removeAllListeners('data');
        req.resume();
        reject(new TooLarge());
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: string, contentType = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function isJson(contentType: string | undefined): boolean {
  return (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase() === 'application/json';
}

async function mutate(req: IncomingMessage, res: ServerResponse, ctx: ReviewContext): Promise<void> {
  if (!isJson(req.headers['content-type'])) {
    req.resume();
    send(res, 415, 'expected Content-Type: application/json\n');
    return;
  }
  let text: string;
  try {
    text = (await readBody(req)).toString('utf8');
  } catch (err) {
    send(res, err instanceof TooLarge ? 413 : 400, err instanceof TooLarge ? `the body is larger than ${MAX_BODY_BYTES} bytes\n` : 'could not read the body\n');
    return;
  }
  if (text.trim() === '') {
    send(res, 400, 'the body is empty: expected an admission.k8s.io/v1 AdmissionReview\n');
    return;
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    send(res, 400, 'the body is not JSON: expected an admission.k8s.io/v1 AdmissionReview\n');
    return;
  }
  try {
    send(res, 200, JSON.stringify(await answerReview(body, ctx)), 'application/json');
  } catch (err) {
    if (!(err instanceof MalformedReview)) throw err;
    send(res, 400, `${err.message}\n`);
  }
}

function handler(ctx: ReviewContext) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path === '/healthz') {
      req.resume();
      send(res, req.method === 'GET' || req.method === 'HEAD' ? 200 : 405, 'ok\n');
      return;
    }
    if (path !== '/mutate') {
      req.resume();
      send(res, 404, 'not found: the injector serves POST /mutate and GET /healthz\n');
      return;
    }
    if (req.method !== 'POST') {
      req.resume();
      res.setHeader('Allow', 'POST');
      send(res, 405, 'only POST\n');
      return;
    }
    mutate(req, res, ctx).catch((err: unknown) => {
      ctx.log.error({ err: (err as Error).message }, 'admission request failed');
      if (!res.headersSent) send(res, 500, 'internal error\n');
      else res.destroy();
    });
  };
}

export interface InjectorServer {
  port: number;
  /** Serves this certificate from now on (the controller's, when no files are configured). */
  setCertificate(certPem: string, keyPem: string): void;
  close(): Promise<void>;
}

export async function startInjectorServer(files: { certFile: string; keyFile: string }, listen: string, ctx: ReviewContext, log: Logger): Promise<InjectorServer> {
  const listeners = new TlsListeners(files, { request: handler(ctx) }, log);
  const [bound] = await listeners.listen([listen]);
  return { port: bound!.port, setCertificate: (certPem, keyPem) => listeners.setCertificate(certPem, keyPem), close: () => listeners.close() };
}
