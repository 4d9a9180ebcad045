// Tokens the cluster itself accepts (service-account tokens above all), judged by the cluster's own
// TokenReview API under the scoped service account, cached like the webhook's answers. Opt-in: the
// scoped service account then needs `create tokenreviews`, and to impersonate the extras such
// identities carry. The sidecar's own token is never accepted as a person.
import type { Upstream } from '../forward/upstream.js';
import type { AuthenticationResult } from './chain.js';
import { TokenAuthenticator } from './bearer.js';
import { ReviewCache, type ReviewCacheOptions, type ReviewVerdict } from './review-cache.js';
import { verdictOf } from './webhook.js';

/** The extras the API server gives service-account identities. */
export const SERVICE_ACCOUNT_EXTRAS = [
  'authentication.kubernetes.io/credential-id',
  'authentication.kubernetes.io/node-name',
  'authentication.kubernetes.io/node-uid',
  'authentication.kubernetes.io/pod-name',
  'authentication.kubernetes.io/pod-uid',
] as const;

export interface ClusterTokenReviewOptions {
  cache: ReviewCacheOptions;
  /** Audiences the token must be for; empty means the API server's own. */
  audiences: readonly string[];
}

/** The username inside the sidecar's own token, read without verifying: it is our own file. */
function ownUsername(token: string | undefined): string | undefined {
  try {
    const sub = (JSON.parse(Buffer.from(token?.split('.')[1] ?? '', 'base64url').toString('utf8')) as { sub?: unknown }).sub;
    return typeof sub === 'string' ? sub : undefined;
  } catch {
    return undefined;
  }
}

export class ClusterTokenReviewAuthenticator extends TokenAuthenticator {
  readonly method = 'cluster-token-review' as const;
  private readonly cache: ReviewCache;

  constructor(
    private readonly upstream: Upstream,
    private readonly options: ClusterTokenReviewOptions,
  ) {
    super();
    this.cache = new ReviewCache(options.cache);
  }

  async authenticateToken(token: string): Promise<AuthenticationResult> {
    const own = this.upstream.bearerToken();
    if (own !== undefined && token === own) return { outcome: 'failure', reason: "the token is the sidecar's own service-account token" };
    try {
      const verdict = await this.cache.get(token, () => this.review(token));
      if (!verdict.authenticated) return { outcome: 'failure', reason: verdict.reason };
      if (verdict.identity.username === ownUsername(own)) return { outcome: 'failure', reason: "the token belongs to the sidecar's own service account" };
      return { outcome: 'success', authenticated: { method: 'cluster-token-review', identity: verdict.identity } };
    } catch (err) {
      return { outcome: 'failure', reason: `the cluster's TokenReview could not be asked: ${(err as Error).message}` };
    }
  }

  private async review(token: string): Promise<ReviewVerdict> {
    const { audiences } = this.options;
    const response = await this.upstream.json('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      spec: { token, ...(audiences.length > 0 ? { audiences } : {}) },
    });
    if (response.status !== 201 && response.status !== 200) {
      const message = (response.body as { message?: unknown }).message;
      throw new Error(`TokenReview was refused (${response.status}): ${typeof message === 'string' ? message : 'no message'}`);
    }
    return verdictOf(response.body, { version: 'v1', audiences, from: 'cluster' });
  }
}
