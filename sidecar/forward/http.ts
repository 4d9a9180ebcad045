// Forwards an authorized request to the API server, as one HTTP/2 stream of its own, and streams the
// response back. The sidecar frames everything that leaves: the body the client's HTTP/1.1 parser
// delimited goes out as that stream's data, and nothing else can ride along with it.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { ClientHttp2Stream } from 'node:http2';
import type { Readable } from 'node:stream';
import { isIdentityHeader, repeatedSingleValueHeader } from '../sanitise.js';
import { badRequest, StatusError } from '../../lib/status.js';
import { BodyLimit } from './body-limit.js';
import { bodyFraming } from './framing.js';
import { CANCEL, REFUSED_STREAM } from './sessions.js';
import type { Upstream } from './upstream.js';
import { responseGone, writeHead, type ClientRequest, type ClientResponse } from '../../lib/client-exchange.js';

/** The request about to leave is not the one the sidecar authorized: a bug, and it must not go. The client learns only that. */
export class UnauthorizedForward extends StatusError {
  constructor(why: string) {
    super(500, 'InternalError', 'chaperone stopped a request on its way out that was not the one it authorized', { internal: why });
  }
}

/**
 * The request did not reach the API server: no connection to it, or the stream refused
 * (REFUSED_STREAM promises that nothing of it ran). The audit event says not forwarded.
 */
export class NotForwarded extends StatusError {
  constructor(cause: Error) {
    super(503, 'ServiceUnavailable', `chaperone could not reach the API server: ${cause.message}`);
  }
}

/** The API server did not start answering within the timeout. */
export class UpstreamTimeout extends StatusError {
  constructor(message: string) {
    super(504, 'Timeout', message);
  }
}

function normalise(value: OutgoingHttpHeaders[string]): string {
  if (value === undefined) return '';
  return Array.isArray(value) ? value.map(String).join('\u0000') : String(value);
}

/**
 * The last check before a request leaves: the identity headers on the wire are exactly the ones the
 * sidecar chose. Anything else is a bug, and the request must not go.
 */
export function assertIdentityHeaders(outgoing: OutgoingHttpHeaders, chosen: OutgoingHttpHeaders): void {
  const expected = new Map(Object.entries(chosen).map(([name, value]) => [name.toLowerCase(), normalise(value)]));
  const seen = new Set<string>();
  for (const [name, value] of Object.entries(outgoing)) {
    const lower = name.toLowerCase();
    if (!isIdentityHeader(lower)) continue;
    if (seen.has(lower)) throw new UnauthorizedForward(`identity header ${lower} appears twice`);
    seen.add(lower);
    if (expected.get(lower) !== normalise(value)) throw new UnauthorizedForward(`identity header ${lower} is not the one chaperone set`);
  }
  for (const name of expected.keys()) if (!seen.has(name)) throw new UnauthorizedForward(`identity header ${name} went missing`);
}

/** The API server's answer as it arrived: status, headers, and the body still to be read. */
export interface UpstreamResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: Readable;
}

export interface ForwardRequest {
  req: ClientRequest;
  res: ClientResponse;
  /** A body larger than this is cut off and the request refused (BodyTooLarge). */
  maxBodyBytes: number;
  /** The complete outgoing header set: sanitised client headers plus the identity headers. */
  headers: OutgoingHttpHeaders;
  /** The identity headers among them, as chosen by the sidecar. */
  identityHeaders: OutgoingHttpHeaders;
  /**
   * A watch or a log stream: never cut by a timeout, and its response headers go to the client at
   * once (client-go's Watch waits for them before the first event).
   */
  longRunning: boolean;
  /** How long the API server may take to start answering a request that is not long-running. */
  timeoutMs: number;
  /** Its stream to the API server exists: once the client has gone, the request is recorded when that stream is over. */
  onOpened: () => void;
  /**
   * The request left for the API server: its HEADERS are on a connected session (said again for a
   * stream sent once more). From then on the API server may have it, unless it refuses the stream.
   */
  onForwarded: () => void;
  /** Its whole body (or none) has been handed to that stream. */
  onBodySent: () => void;
  /** The stream to the API server is over (answered, reset or failed): what it recorded is settled. */
  onUpstreamClosed?: () => void;
  onResponse: (response: UpstreamResponse) => void;
  onError: (error: Error) => void;
}

/** Headers of HTTP/2's own, or of one HTTP/1.1 hop, which must not be copied onto the client's response. */
function isResponseHeaderToDrop(name: string): boolean {
  return name.startsWith(':') || ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade'].includes(name);
}

function responseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined && !isResponseHeaderToDrop(name)) out[name] = value;
  return out;
}

export class HttpForwarder {
  constructor(private readonly upstream: Upstream) {}

  forward(request: ForwardRequest): void {
    const { req, res } = request;
    const path = req.url ?? '';
    const repeated = repeatedSingleValueHeader(request.headers);
    if (repeated) throw badRequest(`two ${repeated} headers: chaperone forwards one of each`);
    const framing = bodyFraming(req);
    const withBody = framing !== 'none';
    // Framing is the sidecar's: HTTP/2 data frames; the client's Content-Length only where its parser
    // used it to delimit the body, and so is exactly what will be sent.
    const { 'content-length': declared, ...headers } = request.headers;
    delete headers.expect; // answered here, once the request is on its way
    const outgoing: OutgoingHttpHeaders = {
      ...headers,
      ...(framing === 'length' && declared !== undefined ? { 'content-length': declared } : {}),
      ':method': req.method ?? 'GET',
      ':path': path,
      ':authority': this.upstream.url.host,
      ':scheme': 'https',
    };
    assertIdentityHeaders(outgoing, request.identityHeaders);
    if (outgoing[':path'] !== path || !path.startsWith('/')) throw new UnauthorizedForward('the path on the wire is not the one authorized');

    // A client that asked to be told (Expect: 100-continue) sends its body only once the request is on its way.
    if (/^100-continue$/i.test(String(req.headers.expect ?? ''))) res.writeContinue();
    // Every body goes upstream with an exact length, so that a stream ended early (Node's close()
    // ends the sending side before its reset) is a length mismatch the API server refuses, never a
    // shorter body that looks complete. A chunked body is read whole first (at most the body cap);
    // a body with a length streams.
    if (framing === 'chunked') this.readWhole(request, (body) => this.send(request, { ...outgoing, 'content-length': body.length }, body));
    else this.send(request, outgoing, withBody ? 'stream' : undefined);
  }

  /** The whole body of a chunked request, once the client's parser says it arrived complete; nothing otherwise. */
  private readWhole(request: ForwardRequest, then: (body: Buffer) => void): void {
    const { req, res } = request;
    const limit = new BodyLimit(request.maxBodyBytes);
    const chunks: Buffer[] = [];
    const timer = this.timeout(request, () => undefined);
    limit.on('data', (chunk: Buffer) => chunks.push(chunk));
    limit.once('error', (err) => {
      clearTimeout(timer);
      request.onError(err);
    });
    limit.once('end', () => {
      clearTimeout(timer);
      if (req.complete && !responseGone(res) && !res.writableEnded) then(Buffer.concat(chunks));
    });
    req.pipe(limit);
  }

  /** --upstream-timeout, for a request that is not long-running: the cut, then a 504. */
  private timeout(request: ForwardRequest, cut: () => void): NodeJS.Timeout | undefined {
    if (request.longRunning) return undefined;
    const timer = setTimeout(() => {
      cut();
      request.onError(new UpstreamTimeout(`the API server did not answer within ${request.timeoutMs}ms`));
    }, request.timeoutMs);
    request.res.once('close', () => clearTimeout(timer));
    return timer;
  }

  private send(request: ForwardRequest, outgoing: OutgoingHttpHeaders, body: Buffer | 'stream' | undefined): void {
    const { req, res } = request;
    let stream: ClientHttp2Stream;
    let answered = false;
    const fail = (err: Error) => {
      clearTimeout(timer);
      if (answered) res.destroy(err);
      else request.onError(err);
    };
    const open = (retried: boolean) => {
      stream = this.upstream.sessions.request(outgoing, body === undefined);
      const opened = stream;
      // A stream is pending until its session connects; it then takes its id and its HEADERS leave.
      let left = !opened.pending;
      if (left) request.onForwarded();
      else
        opened.once('ready', () => {
          left = true;
          request.onForwarded();
        });
      opened.on('error', (err: NodeJS.ErrnoException) => {
        const refused = opened.rstCode === REFUSED_STREAM;
        // A connection that was told to go away refuses the streams it never began: nothing of them
        // ran, so a request without a body is sent once more, on another connection.
        if (!retried && !answered && body === undefined && refused && !responseGone(res)) open(true);
        else fail(left && !refused ? err : new NotForwarded(err));
      });
      stream.once('response', (headers) => this.answer(request, stream, headers, () => {
        clearTimeout(timer);
        answered = true;
      }));
      // A stream refused and sent again on another connection is not over: its successor is.
      opened.once('close', () => {
        if (opened === stream) request.onUpstreamClosed?.();
      });
    };
    open(false);
    request.onOpened();
    let bodySent = false;
    let timedOut = false;
    let stopBody = () => undefined as void;
    const sent = () => {
      bodySent = true;
      request.onBodySent();
    };
    // Cut while its body was still on the way, the request is reset (its declared length tells the API
    // server it is short) and no more of the body goes, nor is said to have gone. Cut once the body was
    // all there, it is left to finish: whether the API server had begun it cannot be known, so it
    // decides, and its answer is read and dropped.
    const timer = this.timeout(request, () => {
      timedOut = true;
      if (bodySent) return void stream.resume();
      stopBody();
      stream.close(CANCEL);
    });
    // The client went away, or the sidecar ended the stream (shutdown). Once opened, a stream is never
    // withdrawn before the API server answers it (HTTP/2 would drop a request whose HEADERS had not
    // left yet, and the event would say forwarded for a request the API server never saw): a body
    // not yet all sent is ended short (sendBody), which the API server refuses, and the stream is
    // cut once answered (answer), or at the upstream timeout. The API server then records what it
    // did, and its answer tells the audit event the same. Answered already, it is cut now.
    res.once('close', () => {
      if (stream.closed || (timedOut && bodySent)) return;
      if (answered) return void stream.close(CANCEL);
      setTimeout(() => {
        if (!stream.closed) stream.close(CANCEL);
      }, request.timeoutMs).unref();
    });
    if (body === 'stream') {
      stopBody = this.sendBody(request, stream!, sent);
    } else {
      if (body) stream!.end(body);
      else req.resume();
      sent();
    }
  }

  /**
   * The body as the client's parser delimits it, then the end of the stream. A body that does not
   * arrive whole (the client went away, its framing broke half-way, it grew past the cap) is ended
   * short instead: its declared length tells the API server it is short, and the API server refuses
   * it with an answer, so the request is in its log as surely as in the sidecar's. Returns what stops
   * the body where it is, short, for the timeout's cut.
   */
  private sendBody(request: ForwardRequest, stream: ClientHttp2Stream, sent: () => void): () => void {
    const { req } = request;
    const limit = new BodyLimit(request.maxBodyBytes);
    let stopped = false;
    const endShort = () => {
      stopped = true;
      limit.unpipe(stream);
      if (!stream.closed && !stream.writableEnded) stream.end();
    };
    req.once('aborted', endShort);
    req.once('error', endShort);
    limit.once('error', (err) => {
      endShort();
      request.onError(err);
    });
    // The parser's own word that the message arrived whole and well-formed: a readable stream can
    // end without it (a framing error half-way through the body ends the request early).
    // Sent once every byte its Content-Length declares is in the stream, though 'end' comes a tick
    // later: from then on the API server may have it all and begin.
    const declared = Number(req.headers['content-length']);
    let handed = 0;
    let announced = false;
    const announce = () => {
      if (announced || stopped) return;
      announced = true;
      sent();
    };
    limit.once('end', () => {
      if (stopped) return;
      if (!req.complete) return endShort();
      stream.end();
      announce();
    });
    req.pipe(limit).pipe(stream, { end: false });
    limit.on('data', (chunk: Buffer) => {
      handed += chunk.length;
      if (handed === declared) announce();
    });
    return endShort;
  }

  private answer(request: ForwardRequest, stream: ClientHttp2Stream, headers: IncomingHttpHeaders, started: () => void): void {
    const { res } = request;
    started();
    // Answered after the sidecar gave up on it (--upstream-timeout): the client has its 504.
    if (res.writableEnded) return void stream.resume();
    const statusCode = Number(headers[':status']);
    request.onResponse({ statusCode, headers, body: stream });
    // Its client is gone: the answer is read and dropped, and a stream that would go on (a watch) is cut.
    if (responseGone(res)) return void (request.longRunning ? stream.close(CANCEL) : stream.resume());
    writeHead(res, statusCode, responseHeaders(headers), request.longRunning);
    // A response the API server did not finish (it went away, it reset the stream) is cut for the
    // client too, so the client sees it broken rather than complete; unless the sidecar ended it
    // itself, for shutdown.
    stream.once('close', () => {
      if (!stream.readableEnded && !res.writableEnded) res.destroy();
    });
    stream.pipe(res);
  }
}
