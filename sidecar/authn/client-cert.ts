// People by client certificate: signed by the identity CA, made for client authentication.
// username = CN, groups = O, uid = the uid attribute, as the API server's x509 authenticator maps
// them, from the subject read as the API server reads it (x509-subject.ts).
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { AuthenticationResult, Authenticator } from './chain.js';
import { subjectOf, UnreadableSubject, type X509Subject } from './x509-subject.js';

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

export class ClientCertificateAuthenticator implements Authenticator {
  readonly method = 'x509' as const;

  authenticate(req: IncomingMessage): Promise<AuthenticationResult> {
    return Promise.resolve(this.check(req.socket as TLSSocket));
  }

  private check(socket: TLSSocket): AuthenticationResult {
    // The X509Certificate, not getPeerCertificate(): that one converts every field and computes
    // three fingerprints on each call, several times the cost of this whole check (bench/).
    if (typeof socket.getPeerX509Certificate !== 'function') return { outcome: 'no-credential' };
    const peer = socket.getPeerX509Certificate();
    if (!peer) return { outcome: 'no-credential' };
    if (!socket.authorized) return { outcome: 'failure', reason: `certificate not verified by the identity CA: ${String(socket.authorizationError)}` };
    const now = Date.now();
    if (now < Date.parse(peer.validFrom) || now > Date.parse(peer.validTo)) return { outcome: 'failure', reason: 'certificate outside its validity period' };
    if (!(peer.keyUsage ?? []).includes(CLIENT_AUTH)) return { outcome: 'failure', reason: 'certificate is not for client authentication (no clientAuth extended key usage)' };
    let subject: X509Subject;
    try {
      subject = subjectOf(peer.raw);
    } catch (err) {
      if (!(err instanceof UnreadableSubject)) throw err;
      return { outcome: 'failure', reason: `certificate subject the API server would not read: ${err.message}` };
    }
    if (!subject.commonName) return { outcome: 'failure', reason: 'certificate has no common name' };
    const identity = { username: subject.commonName, groups: subject.organizations, ...(subject.uid !== undefined ? { uid: subject.uid } : {}), extra: {} };
    return { outcome: 'success', authenticated: { method: 'x509', identity } };
  }
}
