// How a client's request body is delimited, decided once from its headers, before anything else.
// Node's HTTP/1.1 parser refuses most ambiguous framings itself (Content-Length with
// Transfer-Encoding, two lengths, two codings); what it lets through that the API server would not
// take, or that would change meaning on the way, is refused here: a transfer coding other than
// chunked alone (Go answers 501 to "gzip, chunked"; forwarded, the body would lose its coding), a
// body on GET or HEAD, which no Kubernetes client sends and the API server never reads, and a body on
// an upgrade, whose bytes would become the tunnel's. HTTP/2 frames the body itself: nghttp2 resets a
// stream whose data is longer or shorter than its Content-Length, and a request whose HEADERS end its
// stream has none.
import { badRequest } from '../../lib/status.js';
import { isHttp2Request, type ClientRequest } from '../../lib/client-exchange.js';
import type { Http2ServerRequest } from 'node:http2';

export type Framing = 'none' | 'length' | 'chunked';

export function bodyFraming(req: ClientRequest): Framing {
  if (isHttp2Request(req)) return http2Framing(req);
  const coding = req.headers['transfer-encoding'];
  if (coding !== undefined && coding.trim().toLowerCase() !== 'chunked') throw badRequest(`chaperone accepts no transfer coding but chunked, not ${JSON.stringify(coding)}`);
  const framing: Framing = coding !== undefined ? 'chunked' : Number(req.headers['content-length'] ?? 0) > 0 ? 'length' : 'none';
  if (framing !== 'none' && (req.method === 'GET' || req.method === 'HEAD')) throw badRequest(`chaperone accepts no body on a ${req.method} request`);
  return framing;
}

/**
 * A GET or HEAD is sent on without a body, as the API server reads none: what data frames such a
 * stream still carries are dropped (they cannot run into another request), but a declared one is refused.
 */
function http2Framing(req: Http2ServerRequest): Framing {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (req.method === 'GET' || req.method === 'HEAD') {
    if (declared > 0) throw badRequest(`chaperone accepts no body on a ${req.method} request`);
    return 'none';
  }
  if (declared > 0) return 'length';
  return req.stream.endAfterHeaders ? 'none' : 'chunked';
}
