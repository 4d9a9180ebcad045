// How a client's request body is delimited, decided once from its headers, before anything else.
// Node's HTTP/1.1 parser refuses most ambiguous framings itself (Content-Length with
// Transfer-Encoding, two lengths, two codings); what it lets through that the API server would not
// take, or that would change meaning on the way, is refused here: a transfer coding other than
// chunked alone (Go answers 501 to "gzip, chunked"; forwarded, the body would lose its coding), a
// body on GET or HEAD, which no Kubernetes client sends and the API server never reads, and a body on
// an upgrade, whose bytes would become the tunnel's.
import type { IncomingMessage } from 'node:http';
import { badRequest } from '../../lib/status.js';

export type Framing = 'none' | 'length' | 'chunked';

export function bodyFraming(req: IncomingMessage): Framing {
  const coding = req.headers['transfer-encoding'];
  if (coding !== undefined && coding.trim().toLowerCase() !== 'chunked') throw badRequest(`chaperone accepts no transfer coding but chunked, not ${JSON.stringify(coding)}`);
  const framing: Framing = coding !== undefined ? 'chunked' : Number(req.headers['content-length'] ?? 0) > 0 ? 'length' : 'none';
  if (framing !== 'none' && (req.method === 'GET' || req.method === 'HEAD')) throw badRequest(`chaperone accepts no body on a ${req.method} request`);
  return framing;
}
