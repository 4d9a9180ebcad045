// An issuer's JWKS kept as the API server keeps it (go-oidc's RemoteKeySet): a token is verified with
// the keys held; a token naming a key not held, or that no held key verifies, has the keys fetched
// again and is verified against the new set. A failed fetch keeps the keys held and never accepts a
// token, so an issuer that is down refuses only tokens its held keys do not verify.
// Beyond go-oidc, which keeps keys until a token names one it does not know, keys older than the max
// age are fetched again in the background (the held ones verify meanwhile): a key the issuer removed
// stops verifying about that long after, once the issuer answers.
// Every fetch, for a token or in the background, starts at most once per cool-down and one at a time,
// so tokens naming unknown keys cannot make the sidecar hammer the issuer. The set fetched replaces
// the one held (never merged): no more keys are held than one answer, whose size the fetch caps.
// Not jose's createRemoteJWKSet: it builds a fetch `Headers`, which loads Node's built-in undici
// (3 MiB in every sidecar that trusts an issuer, for one GET every few minutes).
import { compactVerify, createLocalJWKSet, errors, type JSONWebKeySet } from 'jose';

/** How old the keys held may be before a token starts fetching them again (jose's default). */
export const JWKS_MAX_AGE_MS = 10 * 60_000;

/** The JSON of an answer whose status is 200, as jose reads a JWKS answer. */
export function jwksJson(status: number, body: Uint8Array): unknown {
  if (status !== 200) throw new errors.JOSEError('Expected 200 OK from the JSON Web Key Set HTTP response');
  try {
    // As fetch's Response.json(): UTF-8, a leading byte order mark dropped.
    return JSON.parse(new TextDecoder().decode(body)) as unknown;
  } catch (cause) {
    throw new errors.JOSEError('Failed to parse the JSON Web Key Set HTTP response as JSON', { cause });
  }
}

export type KeyFetchOutcome = 'success' | 'failure';

export interface RemoteKeySetOptions {
  fetchJwks: () => Promise<unknown>;
  /** The least time between the starts of two fetches. */
  cooldownMs: number;
  /** A background fetch failed: the keys held, fetched `ageMs` ago, stay in use. */
  onRefreshFailed?: (err: Error, ageMs: number) => void;
  /** Every fetch ended, whatever started it: the first token, a token no key held verifies, a background refresh. */
  onFetched?: (outcome: KeyFetchOutcome) => void;
}

type LocalKeySet = ReturnType<typeof createLocalJWKSet>;

/** What makes a token worth fetching the keys again for: no key held verifies it. */
const notVerifiedByHeld = (err: unknown) => err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWSSignatureVerificationFailed;

export class RemoteKeySet {
  private held: LocalKeySet | undefined;
  private fetchedAt = Number.NEGATIVE_INFINITY;
  private attemptedAt = Number.NEGATIVE_INFINITY;
  private pending: Promise<LocalKeySet> | undefined;
  private lastFailure: unknown = new errors.JOSEError('the keys have not been fetched yet');

  constructor(private readonly options: RemoteKeySetOptions) {}

  /** When the keys held were fetched (Date.now() time); undefined while none are held. */
  heldSince(): number | undefined {
    return this.held ? this.fetchedAt : undefined;
  }

  /** The token's payload once a key of the issuer verifies its signature under one of the algorithms. */
  async verify(token: string, algorithms: readonly string[]): Promise<Uint8Array> {
    const held = this.held;
    if (!held) return verifyWith(await this.fetchForToken(), token, algorithms);
    if (Date.now() >= this.fetchedAt + JWKS_MAX_AGE_MS) this.refreshInBackground();
    try {
      return await verifyWith(held, token, algorithms);
    } catch (err) {
      if (!notVerifiedByHeld(err)) throw err;
      // A fetch may have ended while the signature was being checked: its keys first, without another.
      const newer = this.held === held ? undefined : this.held;
      return verifyWith(newer ?? (await this.fetchForToken(err)), token, algorithms);
    }
  }

  /** The fetch under way, or a new one; within the cool-down of the last, `refusal` (or that fetch's failure). */
  private fetchForToken(refusal?: unknown): Promise<LocalKeySet> {
    const fetching = this.pending ?? this.startFetch();
    if (fetching) return fetching;
    throw refusal ?? this.lastFailure;
  }

  private refreshInBackground(): void {
    if (this.pending) return;
    const heldSince = this.fetchedAt;
    this.startFetch()?.catch((err: Error) => this.options.onRefreshFailed?.(err, Date.now() - heldSince));
  }

  private startFetch(): Promise<LocalKeySet> | undefined {
    if (Date.now() < this.attemptedAt + this.options.cooldownMs) return undefined;
    this.attemptedAt = Date.now();
    const fetching = this.options
      .fetchJwks()
      .then((json) => {
        this.held = createLocalJWKSet(json as JSONWebKeySet);
        this.fetchedAt = Date.now();
        this.options.onFetched?.('success');
        return this.held;
      })
      .catch((err: unknown) => {
        this.lastFailure = err;
        this.options.onFetched?.('failure');
        throw err;
      })
      .finally(() => (this.pending = undefined));
    this.pending = fetching;
    return fetching;
  }
}

/**
 * Verifies with the key the token's header picks from the set; where it picks several (no kid, or a
 * kid shared), with the first of them that verifies, as go-oidc tries every such key.
 */
async function verifyWith(keys: LocalKeySet, token: string, algorithms: readonly string[]): Promise<Uint8Array> {
  const options = { algorithms: [...algorithms] };
  try {
    return (await compactVerify(token, keys, options)).payload;
  } catch (err) {
    if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw err;
    for await (const key of err) {
      const verified = await compactVerify(token, key, options).catch(() => undefined);
      if (verified) return verified.payload;
    }
    throw new errors.JWSSignatureVerificationFailed();
  }
}
