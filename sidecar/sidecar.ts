// Wires the parts of the sidecar together from its configuration and starts serving.
import { createLogger, type Logger } from '../lib/log.js';
import { collectWhenIdle } from '../lib/idle-collection.js';
import { AccessGate } from './access.js';
import { AuthenticatorChain, type Authenticator } from './authn/chain.js';
import { ClientCertificateAuthenticator } from './authn/client-cert.js';
import { IdentityBundle } from './authn/identity-bundle.js';
import { IdentityTrust } from './authn/connection-trust.js';
import { tokenAuthenticators, type TokenAuthenticators } from './authn/tokens.js';
import { CachingReviewer } from './authz/review.js';
import { subjectAccessReviewsVia } from './authz/sar-transport.js';
import type { AuditStats } from './audit/auditor.js';
import { createAuditor } from './audit/setup.js';
import { AuditGenerations } from './audit/generations.js';
import type { SidecarConfig } from '../lib/sidecar-config/options.js';
import type { Installation } from './installation.js';
import { ConfigError } from '../lib/config.js';
import { Upstream } from './forward/upstream.js';
import { Pipeline } from './pipeline.js';
import { HttpForwarder } from './forward/http.js';
import { UpgradeForwarder } from './forward/upgrade.js';
import { TlsListeners } from '../lib/tls-listeners.js';
import { Http2Clients } from './http2-clients.js';
import { parseRevocations } from '../lib/sidecar-config/revocation.js';
import { SidecarMetrics } from './metrics.js';
import { OpsServer, type ReadinessCheck } from './ops.js';

export interface RunningSidecar {
  listening: { address: string; port: number }[];
  opsPort: number;
  metrics: SidecarMetrics;
  /** Audit events written, dropped and waiting, per sink (for /metrics). */
  auditStats(): AuditStats;
  /** Stops accepting, ends watches and upgrades cleanly, lets requests in flight finish within shutdownTimeout. */
  stop(): Promise<void>;
}

/**
 * installation: the installation configuration the config was loaded with (sidecar/installation.ts);
 * the sidecar then follows it, and a new version's sign-in methods, guard lists and audit serve the
 * requests that follow.
 */
export async function startSidecar(config: SidecarConfig, log: Logger = createLogger('sidecar', config.logLevel), installation?: Installation): Promise<RunningSidecar> {
  const metrics = new SidecarMetrics();
  const audit = new AuditGenerations(createAuditor(config, log));
  metrics.watchAudit(() => audit.stats());
  const upstream = new Upstream({
    url: config.upstream,
    caFile: config.upstreamCaFile,
    tokenFile: config.tokenFile,
    timeoutMs: config.upstreamTimeout,
    onTokenChange: (present) => {
      metrics.tokenReloads.inc({ present: String(present) });
      log.info({ present }, present ? 'service-account token loaded' : 'service-account token missing: refusing requests');
    },
  });
  const authenticators: Authenticator[] = [];
  // One bundle for both: the listeners watch it and close what it stops trusting; the authenticator verifies against it.
  const identityBundle = config.clientCaFile ? new IdentityBundle(config.clientCaFile) : undefined; // a bad bundle refuses to start, naming it
  const clientCertificates = identityBundle ? new ClientCertificateAuthenticator(identityBundle, parseRevocations(config.clientCertificateRevocations)) : undefined;
  const clientTrust = identityBundle ? new IdentityTrust(identityBundle, log) : undefined;
  if (clientCertificates) authenticators.push(clientCertificates);
  let tokens = await startTokenAuthenticators(config, upstream, log, metrics);
  const chain = new AuthenticatorChain([...authenticators, ...tokens.authenticators], config.anonymous);
  watchSignIn(metrics, chain, () => tokens);
  const access = new AccessGate({ policyFile: config.accessPolicyFile, readOnly: config.readOnly, log });
  const pipeline = new Pipeline({
    authenticators: chain,
    reviewer: new CachingReviewer(subjectAccessReviewsVia(upstream), {
      allowedTtlMs: config.authzAllowedTtl,
      deniedTtlMs: config.authzDeniedTtl,
      maxEntries: config.authzCacheSize,
      onLookup: (hit) => metrics.authorizationCache.inc({ result: hit ? 'hit' : 'miss' }),
    }),
    guard: { allow: config.guardAllow, deny: config.guardDeny },
    access,
    token: upstream,
    http: new HttpForwarder(upstream),
    upgrades: new UpgradeForwarder(upstream),
    audit: audit.current(),
    metrics,
    log,
    upstreamTimeoutMs: config.upstreamTimeout,
    maxRequestBodyBytes: config.maxRequestBodyBytes,
    maxUpgrades: config.maxUpgrades,
  });
  const stopFollowing = installation?.follow(upstream, log, async (secret) => {
    let next: SidecarConfig;
    try {
      next = await installation.configFor(secret);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      metrics.installationConfigChanges.inc({ outcome: 'refused' });
      log.error({ installationConfig: installation.ref, resourceVersion: secret.resourceVersion, problems: err.problems }, 'the new installation configuration is invalid: keeping the one in use');
      return;
    }
    const previous = tokens;
    tokens = await startTokenAuthenticators(next, upstream, log, metrics);
    chain.replace([...authenticators, ...tokens.authenticators], next.anonymous);
    pipeline.useGuard({ allow: next.guardAllow, deny: next.guardDeny });
    const revocations = parseRevocations(next.clientCertificateRevocations);
    clientCertificates?.useRevocations(revocations);
    clientTrust?.closeRevoked(revocations);
    const auditor = createAuditor(next, log);
    audit.replace(auditor, pipeline.useAudit(auditor));
    previous.close();
    metrics.installationConfigChanges.inc({ outcome: 'applied' });
    log.info({ installationConfig: installation.ref, resourceVersion: secret.resourceVersion, authenticators: chain.readiness().map((r) => r.method) }, 'installation configuration applied');
  });
  const ops = new OpsServer(readinessChecks(upstream, chain, access), metrics);
  const opsPort = await ops.listen(config.opsListen);
  const listeners = tlsListeners(config, { pipeline, clientTrust, metrics, log });
  const listening = await listeners.listen([config.listen, ...(config.extraListen ? [config.extraListen] : [])]);
  const stopCollecting = collectWhenIdle({ activity: () => pipeline.requestsBegun, gc: globalThis.gc, log });
  log.info({ listening, opsPort, upstream: config.upstream, authenticators: chain.readiness().map((r) => r.method), access: access.describe() }, 'chaperone sidecar serving');
  return {
    listening,
    opsPort,
    metrics,
    auditStats: () => audit.stats(),
    stop: async () => {
      await stopFollowing?.(); // no version is applied while, or after, the parts it changes close
      stopCollecting();
      const drained = listeners.close();
      pipeline.endStreams();
      const graceOver = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), config.shutdownTimeout).unref());
      if ((await Promise.race([drained, graceOver])) === 'timeout') {
        log.warn('requests still in flight at the end of the shutdown grace period: closing them');
        listeners.closeAllConnections();
        await drained;
      }
      await ops.close();
      await audit.close(); // every request has ended: deliver what the sinks still hold
      tokens.close();
      access.close();
      upstream.close();
    },
  };
}

/** client-go keeps an idle connection 90 s; one the sidecar closes sooner is opened again with a new handshake. */
const HTTP2_IDLE_TIMEOUT_MS = 120_000;

/** The pod's listener and the extra one: HTTP/1.1, and HTTP/2 for the clients that choose it (unless --http2=false). */
function tlsListeners(
  config: SidecarConfig,
  { pipeline, clientTrust, metrics, log }: { pipeline: Pipeline; clientTrust: IdentityTrust | undefined; metrics: SidecarMetrics; log: Logger },
): TlsListeners {
  // Expect: 100-continue: the body is asked for only once the request is authorized and on its way.
  const handlers = { request: pipeline.handle, checkContinue: pipeline.handle };
  const http2 = config.http2
    ? new Http2Clients({
        handlers,
        clientTrust,
        limits: {
          maxConcurrentStreams: config.http2MaxStreams,
          maxHeaderBytes: config.maxHeaderBytes,
          idleTimeoutMs: HTTP2_IDLE_TIMEOUT_MS,
          firstRequestTimeoutMs: config.headersTimeout,
        },
        log,
        onConnection: () => metrics.http2Connections.inc(),
      })
    : undefined;
  return new TlsListeners(
    { certFile: config.tlsCertFile, keyFile: config.tlsKeyFile, ...(clientTrust ? { clientTrust } : {}) },
    { ...handlers, upgrade: pipeline.handleUpgrade },
    log,
    { maxHeaderBytes: config.maxHeaderBytes, headersTimeoutMs: config.headersTimeout, ...(http2 ? { alsoOffered: http2 } : {}) },
  );
}

const UPSTREAM_CHECK_TIMEOUT_MS = 2000;
/**
 * The ops port is open to the pod's network and unauthenticated: without a bound, every /readyz
 * anyone sends would be a request to the API server under the scoped token.
 */
const UPSTREAM_CHECK_INTERVAL_MS = 2000;

/** ask's answer, asked again only once it is intervalMs old; callers meanwhile share one question. */
function askedAtMostEvery(intervalMs: number, ask: () => Promise<boolean>): () => Promise<boolean> {
  let last: { at: number; answer: boolean } | undefined;
  let asking: Promise<boolean> | undefined;
  return () => {
    if (last && Date.now() - last.at < intervalMs) return Promise.resolve(last.answer);
    asking ??= ask().then((answer) => {
      last = { at: Date.now(), answer };
      asking = undefined;
      return answer;
    });
    return asking;
  };
}

/** The sign-in methods' readiness and the OIDC issuers' keys, as the configuration in use has them. */
function watchSignIn(metrics: SidecarMetrics, chain: AuthenticatorChain, tokens: () => TokenAuthenticators): void {
  metrics.watchAuthenticators(() => chain.readiness().map(({ method, notReady }) => ({ method, ready: notReady === undefined })));
  metrics.watchOidcKeys(() => tokens().oidcKeysHeld());
}

async function startTokenAuthenticators(config: SidecarConfig, upstream: Upstream, log: Logger, metrics: SidecarMetrics): Promise<TokenAuthenticators> {
  const tokens = tokenAuthenticators(config, upstream, { log, onKeysFetched: metrics.countOidcKeyFetch });
  await tokens.start();
  if (tokens.extraKeys.length > 0) log.info({ extraKeys: tokens.extraKeys }, 'the scoped service account must be allowed to impersonate these userextras');
  return tokens;
}

/**
 * Ready means some person's request could be served now: a token, a reachable API server, the access
 * policy. A sign-in method that cannot serve (an issuer unreachable) fails only its own tokens, so it
 * is reported beside `ok`, never as a failure: it must not keep the dashboard from starting for the
 * people who sign in another way.
 */
function readinessChecks(upstream: Upstream, chain: AuthenticatorChain, access: AccessGate): ReadinessCheck[] {
  const reachable = askedAtMostEvery(UPSTREAM_CHECK_INTERVAL_MS, () => upstream.reachable(UPSTREAM_CHECK_TIMEOUT_MS));
  return [
    // Always listed, so that /readyz also says which impersonation mode and policy are in force.
    { name: 'access-policy', check: () => Promise.resolve(access.problem()), detail: () => access.describe() },
    { name: 'service-account-token', check: () => Promise.resolve(upstream.bearerToken() ? undefined : 'the token file is missing or empty') },
    {
      name: 'upstream',
      check: async () => ((await reachable()) ? undefined : 'the API server did not answer /readyz'),
    },
    {
      name: 'authenticators',
      check: () => Promise.resolve(undefined),
      detail: () =>
        chain
          .readiness()
          .map(({ method, notReady }) => (notReady ? `${method} (not able to authenticate: ${notReady})` : method))
          .join(', ') || 'none (anonymous only)',
    },
  ];
}
