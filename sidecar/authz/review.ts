// SubjectAccessReview: "may this identity do this?", asked of the API server, cached briefly.
import { hash } from 'node:crypto';
import { LazyLru } from '../../lib/lazy-lru.js';
import type { Identity } from '../identity.js';
import type { RequestInfo } from './request-info.js';
import { serviceUnavailable } from '../../lib/status.js';

export interface ResourceAttributes {
  namespace?: string;
  verb: string;
  group: string;
  version?: string;
  resource: string;
  subresource?: string;
  name?: string;
}

export interface NonResourceAttributes {
  path: string;
  verb: string;
}

export type Attributes = { resource: ResourceAttributes } | { nonResource: NonResourceAttributes };

export interface Decision {
  allowed: boolean;
  reason: string;
}

export interface AccessReviewer {
  /** Resolves with the decision; rejects with a 503 StatusError when no decision could be had. */
  review(identity: Identity, attributes: Attributes): Promise<Decision>;
}

/** The attributes the API server's authorizer sees for a request. */
export function attributesOf(info: RequestInfo): Attributes {
  if (!info.isResourceRequest) return { nonResource: { path: info.path, verb: info.verb } };
  return {
    resource: {
      verb: info.verb,
      group: info.apiGroup,
      version: info.apiVersion,
      resource: info.resource,
      ...(info.namespace ? { namespace: info.namespace } : {}),
      ...(info.subresource ? { subresource: info.subresource } : {}),
      ...(info.name ? { name: info.name } : {}),
    },
  };
}

export interface SubjectAccessReviewStatus {
  allowed?: boolean;
  denied?: boolean;
  reason?: string;
  evaluationError?: string;
}

/** Sends one SubjectAccessReview body and returns its status; throws when none came back. */
export type SubjectAccessReviewTransport = (body: object) => Promise<SubjectAccessReviewStatus>;

export function subjectAccessReviewBody(identity: Identity, attributes: Attributes): object {
  return {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SubjectAccessReview',
    spec: {
      user: identity.username,
      ...(identity.uid ? { uid: identity.uid } : {}),
      groups: identity.groups,
      ...(Object.keys(identity.extra).length > 0 ? { extra: identity.extra } : {}),
      ...('resource' in attributes ? { resourceAttributes: attributes.resource } : { nonResourceAttributes: attributes.nonResource }),
    },
  };
}

export interface CacheOptions {
  allowedTtlMs: number;
  deniedTtlMs: number;
  maxEntries: number;
  /** Told of every lookup, for metrics. */
  onLookup?: (hit: boolean) => void;
}

export interface CacheStats {
  hits: number;
  misses: number;
}

/**
 * A reviewer that caches decisions (allowed and denied for their own TTLs, bounded in size) and
 * merges identical reviews in flight into one. Failures are never cached.
 */
export class CachingReviewer implements AccessReviewer {
  private readonly decisions: LazyLru<string, Decision>;
  private readonly inFlight = new Map<string, Promise<Decision>>();
  readonly stats: CacheStats = { hits: 0, misses: 0 };

  constructor(
    private readonly send: SubjectAccessReviewTransport,
    private readonly options: CacheOptions,
  ) {
    this.decisions = new LazyLru({ max: options.maxEntries, ttlAutopurge: false });
  }

  async review(identity: Identity, attributes: Attributes): Promise<Decision> {
    const body = subjectAccessReviewBody(identity, attributes);
    const key = hash('sha256', JSON.stringify(body), 'base64url');
    const cached = this.decisions.get(key);
    this.options.onLookup?.(cached !== undefined);
    if (cached) {
      this.stats.hits++;
      return cached;
    }
    this.stats.misses++;
    const pending = this.inFlight.get(key);
    if (pending) return pending;
    const asked = this.ask(body).then((decision) => {
      const ttl = decision.allowed ? this.options.allowedTtlMs : this.options.deniedTtlMs;
      // A TTL of 0 means "do not cache" here; to lru-cache it would mean "keep for ever".
      if (ttl > 0) this.decisions.set(key, decision, { ttl });
      return decision;
    });
    this.inFlight.set(key, asked);
    try {
      return await asked;
    } finally {
      this.inFlight.delete(key);
    }
  }

  private async ask(body: object): Promise<Decision> {
    let status: SubjectAccessReviewStatus;
    try {
      status = await this.send(body);
    } catch (err) {
      throw serviceUnavailable(`chaperone could not ask the API server for an authorization decision: ${(err as Error).message}`);
    }
    if (status.evaluationError && !status.allowed && !status.denied) {
      throw serviceUnavailable(`the API server could not evaluate the authorization: ${status.evaluationError}`);
    }
    return { allowed: status.allowed === true, reason: status.reason ?? '' };
  }
}
