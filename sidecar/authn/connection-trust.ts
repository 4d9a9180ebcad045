// Client certificates of the identity CA on the sidecar's listeners. The certificate of a
// connection's first handshake is pinned for the authenticator (client-cert.ts), which verifies it
// against the bundle as it is at each request; when the bundle file changes, new connections are
// asked for certificates of the new bundle at once, and every open connection whose certificate the
// old bundle trusted and the new one does not is closed.
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Logger } from '../../lib/log.js';
import type { ClientTrust } from '../../lib/tls-listeners.js';
import type { ClientResponse } from '../../lib/client-exchange.js';
import { watchFile, type WatchedFile } from '../../lib/watch-file.js';
import { revokedBecause, type Revocations } from '../../lib/sidecar-config/revocation.js';
import { connectionVerdict, pinHandshake, pinnedCertificate } from './client-cert.js';
import { UnusableBundle, type IdentityBundle, type Verdict } from './identity-bundle.js';

/**
 * How long a request already in progress on a connection whose certificate the bundle stopped
 * trusting may go on (it was authorized before the change, as the API server would let it finish);
 * a watch or an exec session is cut then. No new request on it is served meanwhile.
 */
const IN_FLIGHT_GRACE_MS = 1000;

export class IdentityTrust implements ClientTrust {
  /** Open connections that presented a client certificate (those a change of the bundle may close), with their requests in progress; an upgraded one stays busy. */
  private readonly withCertificates = new Map<TLSSocket, { busy: number; closing: boolean }>();

  constructor(
    private readonly identity: IdentityBundle,
    private readonly log: Logger,
  ) {}

  pems(): readonly string[] {
    return this.identity.pems;
  }

  accepted(socket: TLSSocket): void {
    pinHandshake(socket, () => {
      this.log.warn({ remoteAddress: socket.remoteAddress }, 'a client started a second TLS handshake on a connection: closed it');
      socket.destroy();
    });
    if (!socket.getPeerX509Certificate()) return;
    this.withCertificates.set(socket, { busy: 0, closing: false });
    socket.once('close', () => this.withCertificates.delete(socket));
  }

  inProgress(socket: Duplex, res?: ClientResponse): void {
    const state = this.withCertificates.get(socket as TLSSocket);
    if (!state) return;
    state.busy++;
    res?.once('close', () => {
      state.busy--;
      if (state.closing && state.busy === 0) socket.destroy();
    });
  }

  follow(changed: () => void): WatchedFile[] {
    const { identity } = this;
    identity.unusable().forEach((why) => this.log.warn({ certificate: why }, 'the identity CA bundle holds a certificate that cannot vouch for anyone'));
    const watched = watchFile(identity.file, { onChange: (content) => this.reload(content, changed) });
    this.reload(watched.current(), changed); // in case it changed since it was read
    return [watched];
  }

  private reload(content: Buffer | undefined, changed: () => void): void {
    const { identity } = this;
    const trustedBefore = this.trustedConnections();
    if (!this.replaceBundle(content)) return;
    changed();
    this.log.info({ file: identity.file, certificates: identity.pems.length }, 'reloaded the identity CA bundle');
    identity.unusable().forEach((why) => this.log.warn({ certificate: why }, 'the identity CA bundle holds a certificate that cannot vouch for anyone'));
    for (const [socket, before] of trustedBefore) {
      const now = connectionVerdict(socket, identity);
      if (now?.trusted) continue;
      this.log.warn({ user: before.identity.username, issuer: before.issuer, reason: now?.reason, remoteAddress: socket.remoteAddress }, 'closing a connection whose client certificate the identity CA bundle no longer trusts');
      this.closeUntrusted(socket);
    }
  }

  private trustedConnections(): Map<TLSSocket, Extract<Verdict, { trusted: true }>> {
    const trusted = new Map<TLSSocket, Extract<Verdict, { trusted: true }>>();
    for (const socket of this.withCertificates.keys()) {
      const verdict = connectionVerdict(socket, this.identity);
      if (verdict?.trusted) trusted.set(socket, verdict);
    }
    return trusted;
  }

  /** Whether the bundle changed; a new one that cannot be used is logged, and the previous one kept. */
  private replaceBundle(content: Buffer | undefined): boolean {
    try {
      return this.identity.replace(content);
    } catch (err) {
      if (!(err instanceof UnusableBundle)) throw err;
      this.log.warn({ file: this.identity.file, err: err.message }, 'could not read the new identity CA bundle; keeping the previous one');
      return false;
    }
  }

  /**
   * Closes every open connection whose certificate these revocations refuse, as a change of the
   * bundle would: the authenticator refuses its next request, and this ends what is already under
   * way on it (a watch, an exec session).
   */
  closeRevoked(revocations: Revocations, now = Date.now()): void {
    for (const socket of this.withCertificates.keys()) {
      const verdict = connectionVerdict(socket, this.identity, now);
      const peer = pinnedCertificate(socket);
      if (!verdict?.trusted || !peer) continue;
      const reason = revokedBecause(revocations, peer.serialNumber, verdict.identity.username, now);
      if (!reason) continue;
      this.log.warn({ user: verdict.identity.username, reason, remoteAddress: socket.remoteAddress }, 'closing a connection whose client certificate was revoked');
      this.closeUntrusted(socket);
    }
  }

  /** Closes the connection now if it is idle, else once its requests in progress are done, or the grace is over. */
  private closeUntrusted(socket: TLSSocket): void {
    const state = this.withCertificates.get(socket);
    if (!state || state.busy === 0) {
      socket.destroy();
      return;
    }
    state.closing = true;
    setTimeout(() => socket.destroy(), IN_FLIGHT_GRACE_MS).unref();
  }
}
