// The bearer-token options of the sidecar's configuration, checked without building anything: the
// JWT issuers (an AuthenticationConfiguration file or the --oidc-* flags) and the token webhook's
// kubeconfig. The sidecar builds its authenticators from them (sidecar/authn/tokens.ts); the
// injector checks an installation configuration with the same code.
import { readFileSync } from 'node:fs';
import { KubeconfigError, loadWebhookKubeconfig as loadKubeconfig, type WebhookKubeconfig } from '../webhook-kubeconfig.js';
import { JwtConfigError, legacyOidcIssuer, parseAuthenticationConfiguration, type JwtIssuer, type LegacyOidcFlags } from './jwt.js';

export type TokenReviewVersion = 'v1' | 'v1beta1';

/** The webhook and the credentials to reach it, read as kube-apiserver reads its webhook kubeconfig. */
export type WebhookTarget = WebhookKubeconfig;

/** A kubeconfig that cannot be used; the message names the file and the field. */
export class WebhookConfigError extends Error {}

/**
 * The webhook kubeconfig (lib/webhook-kubeconfig.ts, kube-apiserver's rules), and the token
 * webhook's own: it is reached over https and its certificate is verified, always.
 */
export function loadWebhookKubeconfig(file: string): WebhookTarget {
  let target: WebhookTarget;
  try {
    target = loadKubeconfig(file);
  } catch (err) {
    throw err instanceof KubeconfigError ? new WebhookConfigError(err.message) : err;
  }
  if (target.url.protocol !== 'https:') throw new WebhookConfigError(`${file}: cluster.server must be an https URL, not ${JSON.stringify(target.url.href)}`);
  if (target.tls.rejectUnauthorized === false) throw new WebhookConfigError(`${file}: insecure-skip-tls-verify: chaperone always verifies the webhook's certificate`);
  return target;
}

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
  const legacySet = anyOidcFlagSet(options);
  if (options.authenticationConfig !== undefined) {
    if (legacySet) throw new JwtConfigError(['authenticationConfig: the AuthenticationConfiguration file and the --oidc-* flags are mutually exclusive (as in the API server)']);
    return parseAuthenticationConfiguration(readText(options.authenticationConfig, 'authenticationConfig'), options.authenticationConfig);
  }
  if (!legacySet) return [];
  if (!options.oidcIssuerUrl || !options.oidcClientId) throw new JwtConfigError(['oidcIssuerUrl, oidcClientId: --oidc-issuer-url and --oidc-client-id must be given together when any --oidc-* flag is set']);
  return [legacyOidcIssuer(legacyOidcFlags(options, options.oidcIssuerUrl, options.oidcClientId))];
}

/** Any --oidc-* flag given, or set away from its default. */
function anyOidcFlagSet(options: TokenAuthenticationOptions): boolean {
  return (
    OIDC_FLAGS.some((key) => options[key] !== undefined) ||
    options.oidcRequiredClaim.length > 0 ||
    options.oidcUsernameClaim !== 'sub' ||
    options.oidcSigningAlgs.join(',') !== 'RS256'
  );
}

function legacyOidcFlags(options: TokenAuthenticationOptions, issuerUrl: string, clientId: string): LegacyOidcFlags {
  return {
    issuerUrl,
    clientId,
    usernameClaim: options.oidcUsernameClaim,
    ...(options.oidcUsernamePrefix !== undefined ? { usernamePrefix: options.oidcUsernamePrefix } : {}),
    ...(options.oidcGroupsClaim !== undefined ? { groupsClaim: options.oidcGroupsClaim } : {}),
    ...(options.oidcGroupsPrefix !== undefined ? { groupsPrefix: options.oidcGroupsPrefix } : {}),
    requiredClaims: options.oidcRequiredClaim,
    ...(options.oidcCaFile !== undefined ? { caPem: readText(options.oidcCaFile, 'oidcCaFile') } : {}),
    signingAlgs: options.oidcSigningAlgs,
  };
}

export function webhookTarget(options: TokenAuthenticationOptions): WebhookTarget | undefined {
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
