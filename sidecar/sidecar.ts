// Wires the parts of the sidecar together from its configuration and starts serving.
import { createLogger, type Logger } from '../lib/log.js';
import { AuthenticatorChain, type Authenticator } from './authn/chain.js';
import { ClientCertificateAuthenticator } from './authn/client-cert.js';
import { CachingReviewer } from './authz/review.js';
import { subjectAccessReviewsVia } from './authz/sar-transport.js';
import type { AuditRecorder } from './audit/record.js';
import type { SidecarConfig } from './config.js';
import { Upstream } from './forward/upstream.js';
import { Pipeline } from './pipeline.js';
import { TlsListeners } from './server.js';

export interface RunningSidecar {
  listening: { address: string; port: number }[];
  stop(): Promise<void>;
}

/** Until the audit issue lands its sinks: one debug log line per request. */
function logRecorder(log: Logger): AuditRecorder {
  return {
    record: (r) =>
      log.debug(
        { auditID: r.auditID, user: r.authenticated?.identity.username, verb: r.info.verb, uri: r.requestURI, code: r.responseCode, forwarded: r.forwarded },
        'request',
      ),
  };
}

export async function startSidecar(config: SidecarConfig, log: Logger = createLogger('sidecar', config.logLevel)): Promise<RunningSidecar> {
  const upstream = new Upstream({
    url: config.upstream,
    caFile: config.upstreamCaFile,
    tokenFile: config.tokenFile,
    timeoutMs: config.upstreamTimeout,
    onTokenChange: (present) => log.info({ present }, present ? 'service-account token loaded' : 'service-account token missing: refusing requests'),
  });
  const authenticators: Authenticator[] = [];
  if (config.clientCaFile) authenticators.push(new ClientCertificateAuthenticator());
  const pipeline = new Pipeline({
    authenticators: new AuthenticatorChain(authenticators, config.anonymous),
    reviewer: new CachingReviewer(subjectAccessReviewsVia(upstream), {
      allowedTtlMs: config.authzAllowedTtl,
      deniedTtlMs: config.authzDeniedTtl,
      maxEntries: config.authzCacheSize,
    }),
    guard: { allow: config.guardAllow, deny: config.guardDeny },
    upstream,
    audit: logRecorder(log),
    log,
    upstreamTimeoutMs: config.upstreamTimeout,
  });
  const listeners = new TlsListeners(
    { certFile: config.tlsCertFile, keyFile: config.tlsKeyFile, ...(config.clientCaFile ? { clientCaFile: config.clientCaFile } : {}) },
    { request: pipeline.handle },
    log,
  );
  const listening = await listeners.listen([config.listen, ...(config.extraListen ? [config.extraListen] : [])]);
  log.info({ listening, upstream: config.upstream, authenticators: authenticators.map((a) => a.method) }, 'chaperone sidecar serving');
  return {
    listening,
    stop: async () => {
      await listeners.close();
      pipeline.close();
      upstream.close();
    },
  };
}
