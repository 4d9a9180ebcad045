// The bearer-token methods the configuration asks for, in the chain's order: OIDC/JWT issuers
// (local, cheap, and only for tokens naming one of them), then the cluster's TokenReview (so that
// service-account tokens never travel to a third-party webhook), then the token webhook.
import type { Upstream } from '../forward/upstream.js';
import { JwtAuthenticator, type IssuerKeysHeld, type JwtAuthenticatorOptions } from './jwt/authenticator.js';
import { configuredIssuers, webhookTarget, type TokenAuthenticationOptions } from '../../lib/sidecar-config/tokens.js';
import { ClusterTokenReviewAuthenticator, SERVICE_ACCOUNT_EXTRAS } from './token-review.js';
import { WebhookTokenAuthenticator } from './webhook.js';
import type { TokenAuthenticator } from './bearer.js';

export interface TokenAuthenticators {
  authenticators: TokenAuthenticator[];
  /** The extra keys these methods may produce, besides those a webhook makes up: the scoped account must impersonate them. */
  extraKeys: string[];
  /** Every OIDC issuer configured, and when the keys held for it were fetched. */
  oidcKeysHeld(): IssuerKeysHeld[];
  start(): Promise<void>;
  close(): void;
}

/** Builds the configured methods; the options must have passed tokenAuthenticationProblems. */
export function tokenAuthenticators(options: TokenAuthenticationOptions, upstream: Upstream, observe: Pick<JwtAuthenticatorOptions, 'log' | 'onKeysFetched'> = {}): TokenAuthenticators {
  const authenticators: TokenAuthenticator[] = [];
  const extraKeys = new Set<string>();
  const issuers = configuredIssuers(options);
  const jwt = issuers.length > 0 ? new JwtAuthenticator(issuers, observe) : undefined;
  if (jwt) {
    authenticators.push(jwt);
    jwt.extraKeys().forEach((key) => extraKeys.add(key));
  }
  if (options.clusterTokenReview) {
    const ttl = options.clusterTokenReviewCacheTtl;
    authenticators.push(new ClusterTokenReviewAuthenticator(upstream, { audiences: options.clusterTokenReviewAudiences, cache: { authorizedTtlMs: ttl, unauthorizedTtlMs: ttl } }));
    SERVICE_ACCOUNT_EXTRAS.forEach((key) => extraKeys.add(key));
  }
  const target = webhookTarget(options);
  const webhook = target
    ? new WebhookTokenAuthenticator({
        target,
        version: options.authenticationTokenWebhookVersion,
        timeoutMs: options.authenticationTokenWebhookTimeout,
        audiences: options.authenticationTokenWebhookAudiences,
        cache: { authorizedTtlMs: options.authenticationTokenWebhookCacheAuthorizedTtl, unauthorizedTtlMs: options.authenticationTokenWebhookCacheUnauthorizedTtl },
      })
    : undefined;
  if (webhook) authenticators.push(webhook);
  return {
    authenticators,
    extraKeys: [...extraKeys].sort(),
    oidcKeysHeld: () => jwt?.keysHeld() ?? [],
    start: async () => {
      await jwt?.start();
    },
    close: () => {
      jwt?.close();
      webhook?.close();
    },
  };
}
