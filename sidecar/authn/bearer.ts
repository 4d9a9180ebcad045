// Bearer tokens as the API server's bearertoken authenticator reads them: the Authorization header
// (Node keeps the first of several, as Go's Header.Get does), trimmed, "Bearer" in any letter case,
// the token up to the next space. Token methods share this and report only on requests carrying one.
import type { AuthenticationMethod } from '../identity.js';
import type { AuthenticationResult, Authenticator } from './chain.js';
import { WEBSOCKET_BEARER_PROTOCOL_PREFIX } from '../sanitise.js';
import type { ClientRequest } from '../../lib/client-exchange.js';

export function bearerToken(req: ClientRequest): string | undefined {
  return authorizationBearer(req) ?? websocketProtocolBearer(req);
}

function authorizationBearer(req: ClientRequest): string | undefined {
  const header = req.headers.authorization?.trim();
  if (!header) return undefined;
  const parts = header.split(' ');
  if (parts.length < 2 || parts[0]!.toLowerCase() !== 'bearer') return undefined;
  return parts[1] || undefined;
}

/**
 * A WebSocket upgrade may carry the token as the subprotocol base64url.bearer.authorization.k8s.io.<token>,
 * as the API server's websocket protocol authenticator reads it (the browser way: Headlamp does this).
 * Several such subprotocols are not read as one.
 */
function websocketProtocolBearer(req: ClientRequest): string | undefined {
  if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') return undefined;
  const offered = (req.headers['sec-websocket-protocol'] ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p.toLowerCase().startsWith(WEBSOCKET_BEARER_PROTOCOL_PREFIX));
  if (offered.length !== 1) return undefined;
  const encoded = offered[0]!.slice(WEBSOCKET_BEARER_PROTOCOL_PREFIX.length);
  if (!/^[A-Za-z0-9_-]+$/.test(encoded)) return undefined;
  return Buffer.from(encoded, 'base64url').toString('utf8') || undefined;
}

/** A method that judges bearer tokens; requests without one are not its business. */
export abstract class TokenAuthenticator implements Authenticator {
  abstract readonly method: AuthenticationMethod;

  authenticate(req: ClientRequest): Promise<AuthenticationResult> {
    const token = bearerToken(req);
    if (token === undefined) return Promise.resolve({ outcome: 'no-credential' });
    return this.authenticateToken(token);
  }

  abstract authenticateToken(token: string): Promise<AuthenticationResult>;
}
