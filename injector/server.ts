// The HTTPS shell around answerReview: POST /mutate, GET /healthz and GET /metrics. What reaches
// answerReview is parsed JSON; everything else is answered here (404, 405, 413, 415, 400).
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../lib/log.js';
import { DEFAULT_LIMITS, TlsListeners } from '../lib/tls-listeners.js';
import { injectorMetrics, type AdmissionOutcome } from './metrics.js';
import { answerReview, MalformedReview, reviewText, type AdmissionResponse, type ReviewContext } from './review.js';

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

/** What an answer came to, for the metrics: [outcome, reason]. */
type Counted = [AdmissionOutcome, string];

function counted(response: AdmissionResponse): Counted {
  if (!response.allowed) return ['denied', response.status?.reason ?? ''];
  return [response.patch ? 'injected' : 'unchanged', ''];
}

async function mutate(req: IncomingMessage, res: ServerResponse, ctx: ReviewContext): Promise<Counted> {
  if (!isJson(req.headers['content-type'])) {
    req.resume();
    send(res, 415, 'expected Content-Type: application/json\n');
    return ['malformed', 'UnsupportedMediaType'];
  }
  let text: string;
  try {
    text = (await readBody(req)).toString('utf8');
  } catch (err) {
    send(res, err instanceof TooLarge ? 413 : 400, err instanceof TooLarge ? `the body is larger than ${MAX_BODY_BYTES} bytes\n` : 'could not read the body\n');
    return ['malformed', err instanceof TooLarge ? 'RequestEntityTooLarge' : 'BadRequest'];
  }
  if (text.trim() === '') {
    send(res, 400, 'the body is empty: expected an admission.k8s.io/v1 AdmissionReview\n');
    return ['malformed', 'BadRequest'];
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    send(res, 400, 'the body is not JSON: expected an admission.k8s.io/v1 AdmissionReview\n');
    return ['malformed', 'BadRequest'];
  }
  try {
    const review = await answerReview(body, ctx);
    send(res, 200, reviewText(review), 'application/json');
    return counted(review.response);
  } catch (err) {
    if (!(err instanceof MalformedReview)) throw err;
    send(res, 400, `${err.message}\n`);
    return ['malformed', 'BadRequest'];
  }
}

function metrics(req: IncomingMessage, res: ServerResponse, log: Logger): void {
  req.resume();
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    send(res, 405, 'only GET\n');
    return;
  }
  injectorMetrics.registry.metrics().then(
    (text) => send(res, 200, text, injectorMetrics.registry.contentType),
    (err: unknown) => {
      log.error({ err: (err as Error).message }, 'could not collect the metrics');
      send(res, 500, 'could not collect the metrics\n');
    },
  );
}

function handler(ctx: ReviewContext) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path === '/healthz') {
      req.resume();
      send(res, req.method === 'GET' || req.method === 'HEAD' ? 200 : 405, 'ok\n');
      return;
    }
    if (path === '/metrics') {
      metrics(req, res, ctx.log);
      return;
    }
    if (path !== '/mutate') {
      req.resume();
      send(res, 404, 'not found: the injector serves POST /mutate, GET /healthz and GET /metrics\n');
      return;
    }
    if (req.method !== 'POST') {
      req.resume();
      res.setHeader('Allow', 'POST');
      send(res, 405, 'only POST\n');
      return;
    }
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    mutate(req, res, ctx).then(
      ([outcome, reason]) => injectorMetrics.admission(outcome, reason, seconds()),
      (err: unknown) => {
        injectorMetrics.admission('error', 'InternalError', seconds());
        ctx.log.error({ err: (err as Error).message }, 'admission request failed');
        if (!res.headersSent) send(res, 500, 'internal error\n');
        else res.destroy();
      },
    );
  };
}

export interface InjectorServer {
  port: number;
  /** Requests that have arrived since it started. */
  requestsBegun(): number;
  /** Serves this certificate from now on (the controller's, when no files are configured). */
  setCertificate(certPem: string, keyPem: string): void;
  close(): Promise<void>;
}

/**
 * Longer than the API server keeps an idle connection to a webhook for reuse (90s, its transport's
 * IdleConnTimeout): it is always the API server that closes one, so no review is sent on a connection
 * the injector is closing at that moment (Node's default of 5s made that race likely).
 */
export const KEEP_ALIVE_TIMEOUT_MS = 120_000;

export async function startInjectorServer(files: { certFile: string; keyFile: string }, listen: string, ctx: ReviewContext, log: Logger): Promise<InjectorServer> {
  let begun = 0;
  const handle = handler(ctx);
  const request = (req: IncomingMessage, res: ServerResponse) => {
    begun++;
    handle(req, res);
  };
  const listeners = new TlsListeners(files, { request }, log, { ...DEFAULT_LIMITS, keepAliveTimeoutMs: KEEP_ALIVE_TIMEOUT_MS });
  const [bound] = await listeners.listen([listen]);
  // The files until the controller hands over a certificate of its own.
  let served: string | undefined;
  injectorMetrics.servingCertificateFrom(() => {
    try {
      return served ?? readFileSync(files.certFile, 'utf8');
    } catch {
      return undefined;
    }
  });
  return {
    port: bound!.port,
    requestsBegun: () => begun,
    setCertificate: (certPem, keyPem) => {
      served = certPem;
      listeners.setCertificate(certPem, keyPem);
    },
    close: () => listeners.close(),
  };
}
