// What an operator graphs: requests, authentication outcomes, cache behaviour, upstream latency,
// open streams, token reloads, the age of each OIDC issuer's keys. Served on the ops listener as /metrics.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AuditStats } from './audit/auditor.js';
import type { SinkStats } from './audit/sinks/sink.js';
import type { IssuerKeysHeld } from './authn/jwt/authenticator.js';
import type { KeyFetchOutcome } from './authn/jwt/remote-keys.js';

const KEY_FETCH_OUTCOMES: readonly KeyFetchOutcome[] = ['success', 'failure'];

export class SidecarMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'chaperone_requests_total',
    help: 'Requests the sidecar answered, by HTTP status code and Kubernetes verb.',
    labelNames: ['code', 'verb'] as const,
    registers: [this.registry],
  });
  readonly authentications = new Counter({
    name: 'chaperone_authentications_total',
    help: 'Authentication attempts by method and outcome (success, failure).',
    labelNames: ['method', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly authorizationCache = new Counter({
    name: 'chaperone_authorization_cache_total',
    help: 'Authorization decisions looked up in the cache, by result (hit, miss).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly upstreamLatency = new Histogram({
    name: 'chaperone_upstream_request_duration_seconds',
    help: 'Time from forwarding a request to the API server until its response headers arrived.',
    labelNames: ['verb'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly openWatches = new Gauge({ name: 'chaperone_open_watches', help: 'Long-running responses (watches, logs) now streaming.', registers: [this.registry] });
  readonly openUpgrades = new Gauge({ name: 'chaperone_open_upgrades', help: 'Upgraded connections (exec, attach, port-forward) now open.', registers: [this.registry] });
  readonly http2Connections = new Counter({
    name: 'chaperone_http2_connections_total',
    help: 'Client connections that chose HTTP/2 in the TLS handshake (the others speak HTTP/1.1).',
    registers: [this.registry],
  });
  readonly tokenReloads = new Counter({
    name: 'chaperone_token_reloads_total',
    help: 'Times the service-account token file changed, by whether a token is now present.',
    labelNames: ['present'] as const,
    registers: [this.registry],
  });

  readonly installationConfigChanges = new Counter({
    name: 'chaperone_installation_config_changes_total',
    help: 'New versions of the installation configuration seen, by outcome (applied, refused: the one in use stays).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  /** Every OIDC issuer configured now, and when its keys held were fetched: what the two metrics below read. */
  private oidcKeysHeld: () => IssuerKeysHeld[] = () => [];

  /**
   * Labelled by the issuer URL as configured, never by what a token says: as many series as issuers
   * configured. Each issuer's two outcomes are shown from 0, so that increase() sees its first failure.
   */
  private readonly oidcKeyFetches = new Counter({
    name: 'chaperone_oidc_key_fetches_total',
    help: "Fetches of an OIDC issuer's signing keys (JWKS): the first, for a token no key held verifies, and in the background; by issuer and outcome (success, failure).",
    labelNames: ['issuer', 'outcome'] as const,
    registers: [this.registry],
    collect: () => {
      for (const { issuer } of this.oidcKeysHeld()) for (const outcome of KEY_FETCH_OUTCOMES) this.oidcKeyFetches.inc({ issuer, outcome }, 0);
    },
  });

  /** Computed whenever Prometheus scrapes; no series for an issuer before its keys were first fetched (nothing held can be stale). */
  private readonly oidcKeysAge = new Gauge({
    name: 'chaperone_oidc_keys_age_seconds',
    help: "Seconds since the OIDC issuer's signing keys held were fetched; absent until a token has had them fetched.",
    labelNames: ['issuer'] as const,
    registers: [this.registry],
    collect: () => {
      this.oidcKeysAge.reset();
      const now = Date.now();
      for (const { issuer, fetchedAt } of this.oidcKeysHeld()) if (fetchedAt !== undefined) this.oidcKeysAge.set({ issuer }, (now - fetchedAt) / 1000);
    },
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'chaperone_' });
  }

  readonly countOidcKeyFetch = (issuer: string, outcome: KeyFetchOutcome): void => {
    this.oidcKeyFetches.inc({ issuer, outcome });
  };

  /** The issuers whose keys the OIDC metrics report, read at each scrape (they change with the configuration). */
  watchOidcKeys(held: () => IssuerKeysHeld[]): void {
    this.oidcKeysHeld = held;
  }

  /** 1 for each sign-in method that cannot serve yet (an issuer whose keys could not be fetched), else 0. */
  watchAuthenticators(notReady: () => { method: string; ready: boolean }[]): void {
    new Gauge({
      name: 'chaperone_authenticator_ready',
      help: 'Whether each sign-in method can authenticate now (1) or not (0: an issuer unreachable, keys not fetched).',
      labelNames: ['method'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const { method, ready } of notReady()) this.set({ method }, ready ? 1 : 0);
      },
    });
  }

  /** Audit events per sink, read from the sinks' own counts whenever Prometheus scrapes. */
  watchAudit(stats: () => AuditStats): void {
    const bySink = (pick: (s: SinkStats) => number) =>
      function (this: Gauge<'sink'>) {
        for (const [sink, counts] of Object.entries(stats().sinks)) if (counts) this.set({ sink }, pick(counts));
      };
    new Gauge({ name: 'chaperone_audit_events_written', help: 'Audit events written or delivered, per sink, since start.', labelNames: ['sink'] as const, registers: [this.registry], collect: bySink((s) => s.written) });
    new Gauge({ name: 'chaperone_audit_events_dropped', help: 'Audit events lost (drop mode, failed writes), per sink, since start.', labelNames: ['sink'] as const, registers: [this.registry], collect: bySink((s) => s.dropped) });
    new Gauge({ name: 'chaperone_audit_events_buffered', help: 'Audit events waiting to be sent, per sink.', labelNames: ['sink'] as const, registers: [this.registry], collect: bySink((s) => s.buffered) });
  }
}
