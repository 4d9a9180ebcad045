// Forwards an authorised request to the API server and streams the response back unchanged.
import type { ClientRequest, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { createProxyServer } from 'http-proxy-3';
import { isIdentityHeader } from '../sanitise.js';
import type { Upstream } from './upstream.js';

/** The request about to leave is not the one the sidecar authorised: a bug, and it must not go. */
export class UnauthorisedForward extends Error {}

/** What was authorised rides along with the request, for the last check in 'proxyReq'. */
const CHOSEN = Symbol('chaperone.authorised');
interface Authorised {
  identityHeaders: OutgoingHttpHeaders;
  path: string;
  onResponse: (response: IncomingMessage) => void;
  proxyReq?: ClientRequest;
}
type WithAuthorised = IncomingMessage & { [CHOSEN]?: Authorised };

/** http-proxy-3 drops a query separator with nothing after it; nothing else may change. */
function samePath(sent: string, authorised: string): boolean {
  return sent === authorised || (authorised.endsWith('?') && sent === authorised.slice(0, -1));
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
    if (seen.has(lower)) throw new UnauthorisedForward(`identity header ${lower} appears twice`);
    seen.add(lower);
    if (expected.get(lower) !== normalise(value)) throw new UnauthorisedForward(`identity header ${lower} is not the one chaperone set`);
  }
  for (const name of expected.keys()) if (!seen.has(name)) throw new UnauthorisedForward(`identity header ${name} went missing`);
}

/** The API server did not start answering within the timeout. */
export class UpstreamTimeout extends Error {}

export interface ForwardRequest {
  req: IncomingMessage;
  res: ServerResponse;
  /** What to send as the body, when not the request itself (a size-limited view of it). */
  body?: Readable;
  /** The complete outgoing header set: sanitised client headers plus the identity headers. */
  headers: OutgoingHttpHeaders;
  /** The identity headers among them, as chosen by the sidecar. */
  identityHeaders: OutgoingHttpHeaders;
  /** Undefined for long-running requests (watches, streams), which must never be cut. */
  timeoutMs: number | undefined;
  onResponse: (response: IncomingMessage) => void;
  onError: (error: Error) => void;
}

export class HttpForwarder {
  private readonly proxy;

  constructor(private readonly upstream: Upstream) {
    // toProxy + prependPath:false send the request target as received. By default http-proxy-3
    // re-parses it as a URL, which resolves dot segments and drops fragments: the API server would
    // then act on another path than the one the sidecar authorised.
    this.proxy = createProxyServer({
      target: upstream.url,
      agent: upstream.agent,
      secure: true,
      changeOrigin: true,
      xfwd: false,
      toProxy: true,
      prependPath: false,
    });
    this.proxy.on('proxyReq', (proxyReq: ClientRequest, req: IncomingMessage) => {
      const authorised = (req as WithAuthorised)[CHOSEN];
      try {
        if (!authorised) throw new UnauthorisedForward('nothing was authorised for this request');
        assertIdentityHeaders(proxyReq.getHeaders(), authorised.identityHeaders);
        if (!samePath(proxyReq.path, authorised.path)) throw new UnauthorisedForward(`the path on the wire is not the one authorised`);
        authorised.proxyReq = proxyReq;
      } catch (err) {
        proxyReq.destroy(err as Error);
      }
    });
    this.proxy.on('proxyRes', (proxyRes: IncomingMessage, req: IncomingMessage, res: ServerResponse) => {
      // Connection is hop-by-hop: the client's request decides it. http-proxy-3 would otherwise answer
      // keep-alive (the sanitised request has no Connection header) to a client that asked to close.
      proxyRes.headers.connection = res.shouldKeepAlive ? 'keep-alive' : 'close';
      (req as WithAuthorised)[CHOSEN]?.onResponse(proxyRes);
    });
  }

  forward(request: ForwardRequest): void {
    assertIdentityHeaders(request.headers, request.identityHeaders);
    // http-proxy-3 copies req.headers to the outgoing request; replacing them is how the sanitised
    // set, and only it, goes out.
    request.req.headers = request.headers as IncomingMessage['headers'];
    let timer: NodeJS.Timeout | undefined;
    const authorised: Authorised = {
      identityHeaders: request.identityHeaders,
      path: request.req.url ?? '',
      onResponse: (response) => {
        clearTimeout(timer);
        request.onResponse(response);
      },
    };
    (request.req as WithAuthorised)[CHOSEN] = authorised;
    if (request.timeoutMs !== undefined) {
      const timeoutMs = request.timeoutMs;
      timer = setTimeout(() => authorised.proxyReq?.destroy(new UpstreamTimeout(`the API server did not answer within ${timeoutMs}ms`)), timeoutMs);
      request.res.once('close', () => clearTimeout(timer));
    }
    this.proxy.web(request.req, request.res, request.body ? { buffer: request.body } : {}, (err: Error) => {
      clearTimeout(timer);
      request.onError(err);
    });
  }

  close(): void {
    this.proxy.close();
  }
}
