// TokenReview answers, cached as the API server caches its token authenticators: keyed by an HMAC of
// the token under a key that lives only in this process (the token is never stored in clear),
// authenticated and refused answers for their own TTLs, errors never; identical reviews in flight merged.
import { LazyLru } from '../../lib/lazy-lru.js';
import type { Identity } from '../identity.js';
import { TokenDigest } from './token-digest.js';

export type ReviewVerdict = { authenticated: true; identity: Identity } | { authenticated: false; reason: string };

export interface ReviewCacheOptions {
  authorizedTtlMs: number;
  unauthorizedTtlMs: number;
  maxEntries?: number;
}

export class ReviewCache {
  private readonly digest = new TokenDigest();
  private readonly cache: LazyLru<string, ReviewVerdict>;
  private readonly inFlight = new Map<string, Promise<ReviewVerdict>>();

  constructor(private readonly options: ReviewCacheOptions) {
    this.cache = new LazyLru({ max: options.maxEntries ?? 10_000, ttlAutopurge: false });
  }

  /** The cached verdict, or the review's; a review that throws is not cached. */
  get(token: string, review: () => Promise<ReviewVerdict>): Promise<ReviewVerdict> {
    const key = this.digest.of(token);
    const cached = this.cache.get(key);
    if (cached) return Promise.resolve(cached);
    const pending = this.inFlight.get(key);
    if (pending) return pending;
    const started = review()
      .then((verdict) => {
        const ttl = verdict.authenticated ? this.options.authorizedTtlMs : this.options.unauthorizedTtlMs;
        if (ttl > 0) this.cache.set(key, verdict, { ttl });
        return verdict;
      })
      .finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, started);
    return started;
  }
}

/**
 * The identity of a TokenReview's user as the API server decoded it, or an error where chaperone cannot
 * give the same identity: no username (the API server would take ""), an empty group name (a null in
 * the list, or ""), an extra without values (the API server keeps the key; an impersonated extra cannot
 * be empty).
 */
export function identityFromUserInfo(user: { username: string; uid: string; groups: string[]; extra: ReadonlyMap<string, string[]> }): Identity {
  if (user.username === '') throw new Error('the TokenReview authenticated the token but gave no username');
  if (user.groups.includes('')) throw new Error('the TokenReview authenticated the token but gave a group without a name');
  const identity: Identity = { username: user.username, groups: user.groups, extra: {} };
  if (user.uid !== '') identity.uid = user.uid;
  for (const [key, values] of user.extra) {
    if (values.length === 0) throw new Error(`the TokenReview authenticated the token but gave the extra ${JSON.stringify(key)} no values`);
    identity.extra[key] = values;
  }
  return identity;
}
