// An issuer's JWKS kept as jose's createRemoteJWKSet keeps it: fetched on first use and again once
// ten minutes old, and at most once per cool-down for a token naming a key it does not hold; one
// fetch at a time. Not jose's own: it builds a fetch `Headers`, which loads Node's built-in undici
// (3 MiB in every sidecar that trusts an issuer, for one GET every few minutes).
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';

/** jose's default: keys older than this are fetched again before a token is verified. */
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

export function remoteKeySet(fetchJwks: () => Promise<unknown>, cooldownMs: number): JWTVerifyGetKey {
  let local: ReturnType<typeof createLocalJWKSet> | undefined;
  let fetchedAt = Number.NEGATIVE_INFINITY;
  let pending: Promise<void> | undefined;
  const fresherThan = (ms: number) => Date.now() < fetchedAt + ms;
  const reload = () =>
    (pending ??= fetchJwks()
      .then((json) => {
        local = createLocalJWKSet(json as JSONWebKeySet);
        fetchedAt = Date.now();
      })
      .finally(() => (pending = undefined)));
  return async (header, token) => {
    if (!local || !fresherThan(JWKS_MAX_AGE_MS)) await reload();
    try {
      return await local!(header, token);
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey) || fresherThan(cooldownMs)) throw err;
      await reload();
      return local!(header, token);
    }
  };
}
