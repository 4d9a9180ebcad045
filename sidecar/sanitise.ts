// Strip whatever a client could use to speak for someone else, and whatever belongs to one hop only.
import type { OutgoingHttpHeaders } from 'node:http';

/** Headers that carry identity: only the sidecar may set these on the way out. */
export function isIdentityHeader(lowerName: string): boolean {
  return (
    lowerName === 'authorization' ||
    lowerName === 'proxy-authorization' ||
    lowerName === 'audit-id' ||
    lowerName.startsWith('impersonate-') ||
    lowerName.startsWith('x-remote-')
  );
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'http2-settings',
]);

/** Headers the API server reads as where a request came from (utilnet.SourceIPs), which its audit log records. */
function isOriginHeader(lowerName: string): boolean {
  return lowerName === 'x-real-ip' || lowerName === 'forwarded' || lowerName.startsWith('x-forwarded-');
}

function isDropped(lowerName: string, namedByConnection: Set<string>): boolean {
  // Some servers and proxies read "_" as "-" in header names (nginx, CGI): such a spelling of a
  // dropped name is dropped too.
  const name = lowerName.replaceAll('_', '-');
  // HTTP/2's pseudo-headers (:path, :authority...) are the forwarder's to set for the API server.
  return name.startsWith(':') || isIdentityHeader(name) || isOriginHeader(name) || HOP_BY_HOP.has(name) || namedByConnection.has(lowerName) || namedByConnection.has(name);
}

/** Header names a client listed in Connection are hop-by-hop too (RFC 9110 §7.6.1). */
function connectionTokens(rawHeaders: readonly string[]): Set<string> {
  const tokens = new Set<string>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() !== 'connection') continue;
    for (const token of rawHeaders[i + 1]!.split(',')) {
      const name = token.trim().toLowerCase();
      if (name) tokens.add(name);
    }
  }
  return tokens;
}

/** Browsers cannot set Authorization on a WebSocket, so Kubernetes clients put the token in a subprotocol. */
export const WEBSOCKET_BEARER_PROTOCOL_PREFIX = 'base64url.bearer.authorization.k8s.io.';

/** Sec-WebSocket-Protocol without the subprotocols that carry a bearer token; undefined when nothing is left. */
function withoutBearerProtocols(value: string): string | undefined {
  const kept = value
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '' && !p.toLowerCase().startsWith(WEBSOCKET_BEARER_PROTOCOL_PREFIX));
  return kept.length > 0 ? kept.join(', ') : undefined;
}

/**
 * The headers to send upstream, built from the client's raw header list (every occurrence, in any
 * letter case) with identity, forwarding and hop-by-hop headers removed, and bearer tokens taken
 * out of WebSocket subprotocols. Repeated headers stay repeated.
 */
export function sanitiseHeaders(rawHeaders: readonly string[]): OutgoingHttpHeaders {
  const namedByConnection = connectionTokens(rawHeaders);
  // A Map: names are the client's, and "constructor" or "__proto__" must be names like any other.
  const out = new Map<string, string[]>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const lower = rawHeaders[i]!.toLowerCase();
    if (isDropped(lower, namedByConnection)) continue;
    const value = lower === 'sec-websocket-protocol' ? withoutBearerProtocols(rawHeaders[i + 1]!) : rawHeaders[i + 1]!;
    if (value === undefined) continue;
    const values = out.get(lower);
    if (values) values.push(value);
    else out.set(lower, [value]);
  }
  return Object.fromEntries([...out].map(([name, values]) => [name, values.length === 1 ? values[0]! : values]));
}

/**
 * Headers an HTTP/2 request carries once at most (Node's http2 client refuses a second). A client
 * that repeats one is refused with a 400 before anything is forwarded: which of the two it meant is
 * not for the sidecar to guess.
 */
const SINGLE_VALUE = new Set([
  'access-control-allow-credentials', 'access-control-max-age', 'access-control-request-method', 'age', 'content-encoding',
  'content-language', 'content-length', 'content-location', 'content-md5', 'content-range', 'content-type', 'date', 'dnt',
  'etag', 'expires', 'from', 'if-match', 'if-modified-since', 'if-none-match', 'if-range', 'if-unmodified-since',
  'last-modified', 'location', 'max-forwards', 'range', 'referer', 'retry-after', 'tk', 'upgrade-insecure-requests',
  'user-agent', 'x-content-type-options',
]);

/** The first header of the set that appears more than once, if any. */
export function repeatedSingleValueHeader(headers: OutgoingHttpHeaders): string | undefined {
  return Object.keys(headers).find((name) => SINGLE_VALUE.has(name) && Array.isArray(headers[name]));
}
