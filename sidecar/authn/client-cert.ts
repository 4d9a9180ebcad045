// People by client certificate: signed by the identity CA, made for client authentication.
// username = CN, groups = O, as the API server's x509 authenticator maps them.
import type { IncomingMessage } from 'node:http';
import type { TLSSocket, PeerCertificate } from 'node:tls';
import type { AuthenticationResult, Authenticator } from './chain.js';

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

function values(field: string | string[] | undefined): string[] {
  if (field === undefined) return [];
  return Array.isArray(field) ? field : [field];
}

/** Several CNs: the last one counts, as in Go's pkix.Name. */
function commonName(subject: PeerCertificate['subject']): string {
  return values(subject.CN).at(-1) ?? '';
}

export class ClientCertificateAuthenticator implements Authenticator {
  readonly method = 'x509' as const;

  authenticate(req: IncomingMessage): Promise<AuthenticationResult> {
    return Promise.resolve(this.check(req.socket as TLSSocket));
  }

  private check(socket: TLSSocket): AuthenticationResult {
    if (typeof socket.getPeerCertificate !== 'function') return { outcome: 'no-credential' };
    const peer = socket.getPeerCertificate();
    if (!peer || Object.keys(peer).length === 0) return { outcome: 'no-credential' };
    if (!socket.authorized) return { outcome: 'failure', reason: `certificate not verified by the identity CA: ${String(socket.authorizationError)}` };
    const now = Date.now();
    if (now < Date.parse(peer.valid_from) || now > Date.parse(peer.valid_to)) return { outcome: 'failure', reason: 'certificate outside its validity period' };
    if (!(peer.ext_key_usage ?? []).includes(CLIENT_AUTH)) return { outcome: 'failure', reason: 'certificate is not for client authentication (no clientAuth extended key usage)' };
    const username = commonName(peer.subject);
    if (!username) return { outcome: 'failure', reason: 'certificate has no common name' };
    return { outcome: 'success', authenticated: { method: 'x509', identity: { username, groups: values(peer.subject.O), extra: {} } } };
  }
}
