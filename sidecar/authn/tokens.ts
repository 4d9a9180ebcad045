// The bearer-token methods the configuration asks for, in the chain's order: OIDC/JWT issuers
// (local, cheap, and only for tokens naming one of them), then the cluster's TokenReview (so that
// service-account tokens never travel to a third-party webhook), then the token webhook.
import { readFileSync } from 'node:fs';
import type { Logger } from '../../lib/log.js';
import type { Upstream } from '../forward/upstream.js';
import { JwtAuthenticator } from './jwt/authenticator.js';
import { JwtConfigError, legacyOidcIssuer, parseAuthenticationConfiguration, type JwtIssuer } from './jwt/config.js';
import { ClusterTokenReviewAuthenticator, SERVICE_ACCOUNT_EXTRAS } from './token-review.js';
import { loadWebhookKubeconfig, WebhookConfigError, WebhookTokenAuthenticator, type TokenReviewVersion, type WebhookTarget } from './webhook.js';
import type { TokenAuthenticator } from './bearer.js';

/** The sidecar options these methods read (a slice of SidecarConfig). */
export interface TokenAuthenticationOptions {
  authenticationConfig?: string | undefined;
  oidcIssuerUrl?: string | undefined;
  oidcClientId?: string | undefined;
  oidcUsernameClaim: string;
  oidcUsernamePrefix?: string | undefined;
  oidcGroupsClaim?: string | undefined;
  oidcGroupsPrefix?: string | undefined;
  oidcRequiredClaim: string[];
  oidcCaFile?: string | undefined;
  oidcSigningAlgs: string[];
  authenticationTokenWebhookConfigFile?: string | undefined;
  authenticationTokenWebhookVersion: TokenReviewVersion;
  authenticationTokenWebhookCacheAuthorizedTtl: number;
  authenticationTokenWebhookCacheUnauthorizedTtl: number;
  authenticationTokenWebhookTimeout: number;
  authenticationTokenWebhookAudiences: string[];
  clusterTokenReview: boolean;
  clusterTokenReviewAudiences: string[];
  clusterTokenReviewCacheTtl: number;
}

const OIDC_FLAGS = [
  'oidcIssuerUrl',
  'oidcClientId',
  'oidcUsernamePrefix',
  'oidcGroupsClaim',
  'oidcGroupsPrefix',
  'oidcCaFile',
] as const satisfies readonly (keyof TokenAuthenticationOptions)[];

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new JwtConfigError([`${what}: cannot read ${JSON.stringify(file)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`]);
  }
}

/** The JWT issuers configured, from the AuthenticationConfiguration file or the --oidc-* flags; throws JwtConfigError. */
export function configuredIssuers(options: TokenAuthenticationOptions): JwtIssuer[] {
  const legacySet =
    OIDC_FLAGS.some((key) => options[key] !== undefined) ||
    options.oidcRequiredClaim.length > 0 ||
    options.oidcUsernameClaim !== 'sub' ||
    options.oidcSigningAlgs.join(',') !== 'RS256';
  if (options.authenticationConfig !== undefined) {
    if (legacySet) throw new JwtConfigError(['authenticationConfig: the AuthenticationConfiguration file and the --oidc-* flags are mutually exclusive (as in the API server)']);
    return parseAuthenticationConfiguration(readText(options.authenticationConfig, 'authenticationConfig'), options.authenticationConfig);
  }
  if (!legacySet) return [];
  if (!options.oidcIssuerUrl || !options.oidcClientId) throw new JwtConfigError(['oidcIssuerUrl, oidcClientId: --oidc-issuer-url and --oidc-client-id must be given together when any --oidc-* flag is set']);
  return [
    legacyOidcIssuer({
      issuerUrl: options.oidcIssuerUrl,
      clientId: options.oidcClientId,
      usernameClaim: options.oidcUsernameClaim,
      ...(options.oidcUsernamePrefix !== undefined ? { usernamePrefix: options.oidcUsernamePrefix } : {}),
      ...(options.oidcGroupsClaim !== undefined ? { groupsClaim: options.oidcGroupsClaim } : {}),
      ...(options.oidcGroupsPrefix !== undefined ? { groupsPrefix: options.oidcGroupsPrefix } : {}),
      requiredClaims: options.oidcRequiredClaim,
      ...(options.oidcCaFile !== undefined ? { caPem: readText(options.oidcCaFile, 'oidcCaFile') } : {}),
      signingAlgs: options.oidcSigningAlgs,
    }),
  ];
}

function webhookTarget(options: TokenAuthenticationOptions): WebhookTarget | undefined {
  return options.authenticationTokenWebhookConfigFile === undefined ? undefined : loadWebhookKubeconfig(options.authenticationTokenWebhookConfigFile);
}

/** Every problem with the token options, each naming its option or file key; empty when they can be used. */
export function tokenAuthenticationProblems(options: TokenAuthenticationOptions): string[] {
  const problems: string[] = [];
  try {
    configuredIssuers(options);
  } catch (err) {
    if (!(err instanceof JwtConfigError)) throw err;
    problems.push(...err.problems);
  }
  try {
    webhookTarget(options);
  } catch (err) {
    if (!(err instanceof WebhookConfigError)) throw err;
    problems.push(`authenticationTokenWebhookConfigFile: ${err.message}`);
  }
  return problems;
}

export interface TokenAuthenticators {
  authenticators: TokenAuthenticator[];
  /** The extra keys these methods may produce, besides those a webhook makes up: the scoped account must impersonate them. */
  extraKeys: string[];
  start(): Promise<void>;
  close(): void;
}

/** Builds the configured methods; the options must have passed tokenAuthenticationProblems. */
export function tokenAuthenticators(options: TokenAuthenticationOptions, upstream: Upstream, log?: Logger): TokenAuthenticators {
  const authenticators: TokenAuthenticator[] = [];
  const extraKeys = new Set<string>();
  const issuers = configuredIssuers(options);
  const jwt = issuers.length > 0 ? new JwtAuthenticator(issuers, log) : undefined;
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
    start: async () => {
      await jwt?.start();
    },
    close: () => {
      jwt?.close();
      webhook?.close();
    },
  };
}
