import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { exportJWK, SignJWT, type JWK, type JWTVerifyGetKey } from 'jose';
import { JWKS_MAX_AGE_MS, jwksJson, remoteKeySet } from '../../../../sidecar/authn/jwt/remote-keys.js';

const COOLDOWN_MS = 10_000;
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });

async function jwk(kid: string): Promise<JWK> {
  return { ...(await exportJWK(publicKey)), kid, alg: 'ES256' };
}

/** A key set over a JWKS endpoint that counts its fetches and serves whatever keys it holds now (k1 at first). */
async function keySet() {
  const served = { fetches: 0, keys: [await jwk('k1')] };
  const getKey = remoteKeySet(async () => {
    served.fetches++;
    await new Promise((resolve) => setImmediate(resolve));
    return { keys: served.keys };
  }, COOLDOWN_MS);
  return { served, getKey, signed: await headerAndToken('k1') };
}

async function headerAndToken(kid: string) {
  const token = await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid }).sign(privateKey);
  return [{ alg: 'ES256', kid }, { payload: '', signature: '', protected: token.split('.')[0]! }] as const;
}

/** The key for a token: jose's getKey may answer with or without a promise. */
function keyFor(getKey: JWTVerifyGetKey, [header, token]: Awaited<ReturnType<typeof headerAndToken>>): Promise<unknown> {
  return Promise.resolve(getKey(header, token));
}

/** Runs `body` with Date.now moved on by `offsetMs` for its duration. */
async function later<T>(offsetMs: number, body: () => Promise<T>): Promise<T> {
  const now = Date.now;
  Date.now = () => now() + offsetMs;
  try {
    return await body();
  } finally {
    Date.now = now;
  }
}

describe('sidecar/authn/jwt/remote-keys: an issuer\'s JWKS, kept as jose keeps a remote key set', function () {
  it('fetches on first use, once for any number of tokens verified at the same time', async function () {
    const { served, getKey, signed } = await keySet();
    assert.equal(served.fetches, 0);
    const keys = await Promise.all(Array.from({ length: 10 }, () => keyFor(getKey, signed)));
    assert.equal(keys.length, 10);
    assert.equal(served.fetches, 1);
  });

  it('fetches again once the keys are ten minutes old, and not before', async function () {
    const { served, getKey, signed } = await keySet();
    await keyFor(getKey, signed);
    await later(JWKS_MAX_AGE_MS - 1000, () => keyFor(getKey, signed));
    assert.equal(served.fetches, 1);
    await later(JWKS_MAX_AGE_MS + 1000, () => keyFor(getKey, signed));
    assert.equal(served.fetches, 2);
  });

  it('for a key it does not hold, fetches at most once per cool-down, and finds a key the issuer added', async function () {
    const { served, getKey, signed } = await keySet();
    await keyFor(getKey, signed);
    const unknown = await headerAndToken('k2');
    for (let i = 0; i < 5; i++) await assert.rejects(keyFor(getKey, unknown), { code: 'ERR_JWKS_NO_MATCHING_KEY' });
    assert.equal(served.fetches, 1, 'within the cool-down of the first fetch');
    served.keys = [await jwk('k1'), await jwk('k2')];
    await later(COOLDOWN_MS + 1000, async () => {
      await keyFor(getKey, unknown);
      assert.equal(served.fetches, 2);
      await keyFor(getKey, unknown);
    });
    assert.equal(served.fetches, 2);
  });

  it('fails a verification when the fetch fails, and fetches again for the next one', async function () {
    let fail = true;
    let fetches = 0;
    const getKey = remoteKeySet(async () => {
      fetches++;
      if (fail) throw new Error('connection refused');
      return { keys: [await jwk('k1')] };
    }, COOLDOWN_MS);
    const signed = await headerAndToken('k1');
    await assert.rejects(keyFor(getKey, signed), /connection refused/);
    fail = false;
    await keyFor(getKey, signed);
    assert.equal(fetches, 2);
  });

  it('reads an answer as jose reads one: 200 only, JSON, a byte order mark dropped', function () {
    assert.throws(() => jwksJson(500, Buffer.from('{}')), /Expected 200 OK from the JSON Web Key Set HTTP response/);
    assert.throws(() => jwksJson(200, Buffer.from('not json')), /Failed to parse the JSON Web Key Set HTTP response as JSON/);
    assert.deepEqual(jwksJson(200, Buffer.from('\ufeff{"keys":[]}')), { keys: [] });
  });
});
