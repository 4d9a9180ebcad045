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
  'forwarded',
]);

function isDropped(lowerName: string, namedByConnection: Set<string>): boolean {
  return isIdentityHeader(lowerName) || HOP_BY_HOP.has(lowerName) || lowerName.startsWith('x-forwarded-') || namedByConnection.has(lowerName);
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

/**
 * The headers to send upstream, built from the client's raw header list (every occurrence, in any
 * letter case) with identity, forwarding and hop-by-hop headers removed. Repeated headers stay
 * repeated.
 */
export function sanitiseHeaders(rawHeaders: readonly string[]): OutgoingHttpHeaders {
  const namedByConnection = connectionTokens(rawHeaders);
  const out: Record<string, string[]> = {};
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const lower = rawHeaders[i]!.toLowerCase();
    if (isDropped(lower, namedByConnection)) continue;
    (out[lower] ??= []).push(rawHeaders[i + 1]!);
  }
  return Object.fromEntries(Object.entries(out).map(([name, values]) => [name, values.length === 1 ? values[0]! : values]));
}
