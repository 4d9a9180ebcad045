// TokenReview answers, cached as the API server caches its token authenticators: keyed by an HMAC of
// the token under a key that lives only in this process (the token is never stored in clear),
// authenticated and refused answers for their own TTLs, errors never; identical reviews in flight merged.
import { createHmac, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Identity } from '../identity.js';

export type ReviewVerdict = { authenticated: true; identity: Identity } | { authenticated: false; reason: string };

export interface ReviewCacheOptions {
  authorizedTtlMs: number;
  unauthorizedTtlMs: number;
  maxEntries?: number;
}

export class ReviewCache {
  private readonly key = randomBytes(32);
  private readonly cache: LRUCache<string, ReviewVerdict>;
  private readonly inFlight = new Map<string, Promise<ReviewVerdict>>();

  constructor(private readonly options: ReviewCacheOptions) {
    this.cache = new LRUCache({ max: options.maxEntries ?? 10_000, ttlAutopurge: false });
  }

  private hash(token: string): string {
    return createHmac('sha256', this.key).update(token).digest('base64url');
  }

  /** The cached verdict, or the review's; a review that throws is not cached. */
  get(token: string, review: () => Promise<ReviewVerdict>): Promise<ReviewVerdict> {
    const key = this.hash(token);
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

const isStringList = (value: unknown): value is string[] => Array.isArray(value) && value.every((v) => typeof v === 'string');

/** The user of a TokenReview status (v1 and v1beta1 have one shape) as an identity; undefined when it is malformed or has no username. */
export function identityFromUserInfo(user: unknown): Identity | undefined {
  if (typeof user !== 'object' || user === null) return undefined;
  const { username, uid, groups, extra } = user as { username?: unknown; uid?: unknown; groups?: unknown; extra?: unknown };
  if (typeof username !== 'string' || username === '') return undefined;
  if (uid !== undefined && uid !== null && typeof uid !== 'string') return undefined;
  if (groups !== undefined && groups !== null && !isStringList(groups)) return undefined;
  if (extra !== undefined && extra !== null && (typeof extra !== 'object' || Array.isArray(extra))) return undefined;
  const identity: Identity = { username, groups: groups ?? [], extra: {} };
  if (uid) identity.uid = uid;
  for (const [key, values] of Object.entries(extra ?? {})) {
    if (values === null) continue;
    if (!isStringList(values)) return undefined;
    if (values.length > 0) identity.extra[key] = values;
  }
  return identity;
}
