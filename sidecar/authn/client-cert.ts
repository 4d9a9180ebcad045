// People by client certificate from the identity CA bundle: username = CN, groups = O, uid = the
// uid attribute, as the API server's x509 authenticator maps them. The certificate is the one of
// the connection's handshake, pinned by the listeners (server.ts) when it completed; it is verified
// against the bundle as it is now, for every request (the verdict is kept per connection until the
// bundle changes), never taken from OpenSSL's verdict at the handshake (socket.authorized), which
// reflects another bundle, or another certificate after a renegotiation.
import type { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { AuthenticationResult, Authenticator } from './chain.js';
import { NO_REVOCATIONS, revokedBecause, type Revocations } from '../../lib/sidecar-config/revocation.js';
import type { IdentityBundle, Verdict } from './identity-bundle.js';
import { connectionOf, type ClientRequest } from '../../lib/client-exchange.js';

interface Pin {
  /** The certificate the client presented in the handshake; undefined when it presented none. */
  peer: X509Certificate | undefined;
  /** The connection went through another handshake: nothing on it is trusted any more. */
  changed: boolean;
  /** The last verdict on `peer`, and the bundle generation it holds for. */
  cached?: { generation: number; verdict: Verdict };
}

const pins = new WeakMap<TLSSocket, Pin>();

/**
 * Called by the listeners when a connection's first handshake completes, before any request on it
 * is read. A later handshake (a renegotiation, which the listeners refuse) marks the connection
 * changed, and onRehandshake is told.
 */
export function pinHandshake(socket: TLSSocket, onRehandshake: () => void): void {
  const pin: Pin = { peer: socket.getPeerX509Certificate(), changed: false };
  pins.set(socket, pin);
  socket.on('secure', () => {
    pin.changed = true;
    onRehandshake();
  });
}

/** The certificate pinned at the connection's handshake, if it had one. */
export function pinnedCertificate(socket: TLSSocket): X509Certificate | undefined {
  return pins.get(socket)?.peer;
}

function isCurrent(verdict: Verdict, now: number): boolean {
  return !verdict.trusted || (now >= verdict.notBefore && now <= verdict.notAfter);
}

/**
 * The verdict on the connection's pinned certificate under the bundle as it is now: kept until the
 * bundle changes or the time leaves the window it was reached for. Undefined without a certificate.
 */
export function connectionVerdict(socket: TLSSocket, bundle: IdentityBundle, now = Date.now()): Verdict | undefined {
  const pin = pins.get(socket);
  if (!pin?.peer) return undefined;
  if (pin.cached?.generation !== bundle.generation || !isCurrent(pin.cached.verdict, now)) {
    pin.cached = { generation: bundle.generation, verdict: bundle.verify(pin.peer, now) };
  }
  return pin.cached.verdict;
}

function sameCertificate(a: X509Certificate | undefined, b: X509Certificate | undefined): boolean {
  return a === undefined || b === undefined ? a === b : a.raw.equals(b.raw);
}

export class ClientCertificateAuthenticator implements Authenticator {
  readonly method = 'x509' as const;

  constructor(
    private readonly bundle: IdentityBundle,
    private revocations: Revocations = NO_REVOCATIONS,
  ) {}

  /** Another revocation list (the installation configuration's), for the requests from now on, on open connections too. */
  useRevocations(revocations: Revocations): void {
    this.revocations = revocations;
  }

  authenticate(req: ClientRequest): Promise<AuthenticationResult> {
    const connection = connectionOf(req);
    if (!connection) return Promise.resolve({ outcome: 'failure', reason: 'the request came on a connection no listener accepted' });
    return Promise.resolve(this.check(connection));
  }

  private check(socket: TLSSocket): AuthenticationResult {
    // The X509Certificate, not getPeerCertificate(): that one converts every field and computes
    // three fingerprints on each call, several times the cost of this whole check (bench/).
    const current = typeof socket.getPeerX509Certificate === 'function' ? socket.getPeerX509Certificate() : undefined;
    const pin = pins.get(socket);
    if (!pin) {
      return current ? { outcome: 'failure', reason: 'the connection’s certificate was not pinned at its handshake (not accepted by the sidecar’s listeners)' } : { outcome: 'no-credential' };
    }
    if (pin.changed || !sameCertificate(pin.peer, current)) {
      socket.destroy();
      return { outcome: 'failure', reason: 'the client certificate changed after the handshake: connection closed' };
    }
    const now = Date.now();
    const verdict = connectionVerdict(socket, this.bundle, now);
    if (!verdict) return { outcome: 'no-credential' };
    if (!verdict.trusted) return { outcome: 'failure', reason: verdict.reason };
    if (!isCurrent(verdict, now)) return { outcome: 'failure', reason: 'certificate, or the CA that issued it, outside its validity period' };
    // Checked at every request, not kept with the verdict: a revocation applies to connections already open.
    const revoked = revokedBecause(this.revocations, pin.peer!.serialNumber, verdict.identity.username, now);
    if (revoked) return { outcome: 'failure', reason: revoked };
    return { outcome: 'success', authenticated: { method: 'x509', identity: verdict.identity } };
  }
}
