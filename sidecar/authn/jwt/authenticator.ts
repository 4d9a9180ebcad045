// OIDC/JWT bearer tokens from the issuers of an AuthenticationConfiguration (or the --oidc-* flags):
// the token's unverified iss picks the issuer, as in the API server; that issuer's keys, claim rules
// and mappings decide. A token no issuer claims is a failure, so it never falls through to anonymous.
// A token that authenticated is taken again for SUCCESS_TTL_MS without checking its signature, as the
// API server caches what its token authenticators said yes to (tokencache, 10 s), but never past the
// token's own expiry; refusals are not cached.
import { LazyLru } from '../../../lib/lazy-lru.js';
import type { Logger } from '../../../lib/log.js';
import type { Identity } from '../../identity.js';
import type { AuthenticationResult } from '../chain.js';
import { TokenAuthenticator } from '../bearer.js';
import { TokenDigest } from '../token-digest.js';
import { CREDENTIAL_ID_EXTRA, identityFromClaims } from './claims.js';
import type { JwtIssuer } from '../../../lib/sidecar-config/jwt.js';
import { IssuerKeys, TokenRejected, untrustedIssuer, verifyJwt } from './verify.js';
import type { KeyFetchOutcome } from './remote-keys.js';

interface ServedIssuer {
  issuer: JwtIssuer;
  keys: IssuerKeys;
}

/** An issuer, by its URL as configured, and when the keys held for it were fetched (undefined: none yet). */
export interface IssuerKeysHeld {
  issuer: string;
  fetchedAt: number | undefined;
}

export interface JwtAuthenticatorOptions {
  log?: Logger;
  /** Each fetch of an issuer's keys ended so; `issuer` is its URL as configured. */
  onKeysFetched?: (issuer: string, outcome: KeyFetchOutcome) => void;
  /** How long a token that authenticated is taken again without checking it. */
  successTtlMs?: number;
}

const SUCCESS_TTL_MS = 10_000;

export class JwtAuthenticator extends TokenAuthenticator {
  readonly method = 'oidc' as const;
  private readonly byUrl = new Map<string, ServedIssuer>();
  /** By an HMAC of the token under a key of this process alone: the token is never kept in clear. */
  private readonly verified = new LazyLru<string, { identity: Identity; until: number }>({ max: 10_000 });
  private readonly digest = new TokenDigest();

  private readonly successTtlMs: number;

  constructor(issuers: readonly JwtIssuer[], { log, onKeysFetched, successTtlMs = SUCCESS_TTL_MS }: JwtAuthenticatorOptions = {}) {
    super();
    this.successTtlMs = successTtlMs;
    for (const issuer of issuers) {
      const { url, discoveryURL, certificateAuthority } = issuer.config.issuer;
      const keys = new IssuerKeys({
        issuerUrl: url,
        ...(discoveryURL ? { discoveryUrl: discoveryURL } : {}),
        ...(certificateAuthority ? { caPem: certificateAuthority } : {}),
        onError: (message) => log?.warn({ issuer: url }, message),
        onKeysFetched: (outcome) => onKeysFetched?.(url, outcome),
      });
      this.byUrl.set(url, { issuer, keys });
    }
  }

  /** Fetches every issuer's discovery document once; failures are retried in the background. */
  async start(): Promise<void> {
    await Promise.all([...this.byUrl.values()].map(({ keys }) => keys.start()));
  }

  notReady(): string | undefined {
    const reasons = [...this.byUrl.values()].map(({ keys }) => keys.notReady()).filter((r) => r !== undefined);
    return reasons.length > 0 ? reasons.join('; ') : undefined;
  }

  /** Every issuer configured, and when the keys held for it were fetched. */
  keysHeld(): IssuerKeysHeld[] {
    return [...this.byUrl].map(([issuer, { keys }]) => ({ issuer, fetchedAt: keys.keysFetchedAt() }));
  }

  /** Every extra key these issuers can produce: the scoped service account must be allowed to impersonate each. */
  extraKeys(): string[] {
    const keys = new Set([CREDENTIAL_ID_EXTRA]);
    for (const { issuer } of this.byUrl.values()) issuer.config.claimMappings.extra.forEach((e) => keys.add(e.key));
    return [...keys];
  }

  async authenticateToken(token: string): Promise<AuthenticationResult> {
    const key = this.digest.of(token);
    const cached = this.verified.get(key);
    if (cached && Date.now() < cached.until) return { outcome: 'success', authenticated: { method: 'oidc', identity: cached.identity } };
    const iss = untrustedIssuer(token);
    const served = iss === undefined ? undefined : this.byUrl.get(iss);
    if (!served) return { outcome: 'failure', reason: 'the token is not a JWT from a configured issuer' };
    const { issuer, keys } = served;
    try {
      const claims = await verifyJwt(token, keys.keys(), {
        issuerUrl: issuer.config.issuer.url,
        audiences: issuer.config.issuer.audiences,
        algorithms: issuer.algorithms,
      });
      const identity = identityFromClaims(issuer, claims);
      const until = Math.min(Date.now() + this.successTtlMs, typeof claims.exp === 'number' ? claims.exp * 1000 : Infinity);
      if (until > Date.now()) this.verified.set(key, { identity, until });
      return { outcome: 'success', authenticated: { method: 'oidc', identity } };
    } catch (err) {
      if (!(err instanceof TokenRejected)) throw err;
      return { outcome: 'failure', reason: `issuer ${issuer.config.issuer.url}: ${err.message}` };
    }
  }

  close(): void {
    for (const { keys } of this.byUrl.values()) keys.close();
  }
}
