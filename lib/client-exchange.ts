// A client's request and its response on the TLS listeners, over HTTP/1.1 (node:http) or HTTP/2
// (node:http2's compatibility objects), and what differs between the two where it matters: the
// connection a request came on, and whether its client is still there.
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse, ServerHttp2Session } from 'node:http2';
import type { TLSSocket } from 'node:tls';

export type ClientRequest = IncomingMessage | Http2ServerRequest;
export type ClientResponse = ServerResponse | Http2ServerResponse;

export function isHttp2Request(req: ClientRequest): req is Http2ServerRequest {
  return (req as Partial<Http2ServerRequest>).stream !== undefined;
}

/**
 * The TLS connection of each HTTP/2 session, recorded when the listener hands the connection over:
 * node:http2 shows a session's socket only through a proxy, which is not the object the listener
 * pinned the connection's certificate on.
 */
const sessionConnections = new WeakMap<ServerHttp2Session, TLSSocket>();

export function recordSessionConnection(session: ServerHttp2Session, socket: TLSSocket): void {
  sessionConnections.set(session, socket);
}

/** The TLS connection the request came on; undefined for an HTTP/2 session that no listener recorded. */
export function connectionOf(req: ClientRequest): TLSSocket | undefined {
  if (!isHttp2Request(req)) return req.socket as TLSSocket;
  const { session } = req.stream;
  return session ? sessionConnections.get(session as ServerHttp2Session) : undefined;
}

/**
 * The response can no longer reach its client: the connection closed, or (HTTP/2) its stream was
 * reset or closed. node:http2's response object has no `destroyed` of its own: its stream's says it.
 */
export function responseGone(res: ClientResponse): boolean {
  if (!isHttp2Response(res)) return res.destroyed;
  const { stream } = res;
  return stream === undefined || stream.destroyed || stream.closed;
}

function isHttp2Response(res: ClientResponse): res is Http2ServerResponse {
  return 'stream' in res;
}

/**
 * Starts the response with its status and headers; sent at once when flush is set (a watch: its
 * client waits for them before the first event). node:http2's compatibility response has the same
 * writeHead and flushHeaders as node:http's; only their declared types differ.
 */
export function writeHead(res: ClientResponse, statusCode: number, headers: OutgoingHttpHeaders, flush = false): void {
  const http1Like = res as ServerResponse;
  http1Like.writeHead(statusCode, headers);
  if (flush) http1Like.flushHeaders();
}
