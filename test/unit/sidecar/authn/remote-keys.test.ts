import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { exportJWK, SignJWT, type JWK } from 'jose';
import { JWKS_MAX_AGE_MS, jwksJson, RemoteKeySet, type KeyFetchOutcome } from '../../../../sidecar/authn/jwt/remote-keys.js';

const COOLDOWN_MS = 10_000;
const ALGORITHMS = ['ES256'];

interface SigningKey {
  privateKey: KeyObject;
  jwk: JWK;
}

async function signingKey(kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256' } };
}

/** An issuer's JWKS endpoint: publishes the keys it is told to, counts fetches, can go down or be held mid-answer. */
class FakeIssuer {
  fetches = 0;
  up = true;
  /** Set to answer only once it resolves. */
  hold: Promise<void> | undefined;
  /** Served instead of the keys when set: an answer that is not a key set. */
  garbage: unknown;
  private readonly keys = new Map<string, SigningKey>();
  private published: string[] = [];

  /** Creates (or replaces) the key under `kid` and publishes it beside the others. */
  async add(kid: string): Promise<void> {
    this.keys.set(kid, await signingKey(kid));
    if (!this.published.includes(kid)) this.published.push(kid);
  }

  /** Publishes only these keys from now on; the others stay known to the test, to sign with. */
  publishOnly(...kids: string[]): void {
    this.published = kids;
  }

  readonly fetchJwks = async (): Promise<unknown> => {
    this.fetches++;
    await this.hold;
    await nextTurn();
    if (!this.up) throw new Error('connect ECONNREFUSED');
    return this.garbage ?? { keys: this.published.map((kid) => this.keys.get(kid)!.jwk) };
  };

  /** A token signed by the key under `kid`; the header names `headerKid` (none when null). */
  sign(kid: string, headerKid: string | null = kid): Promise<string> {
    const header = headerKid === null ? { alg: 'ES256' } : { alg: 'ES256', kid: headerKid };
    return new SignJWT({ sub: 'alice' }).setProtectedHeader(header).sign(this.keys.get(kid)!.privateKey);
  }
}

describe('sidecar/authn/jwt/remote-keys: an issuer\'s JWKS, kept as the API server keeps it, and fresh', function () {
  const realNow = Date.now;
  let now: number;
  let issuer: FakeIssuer;
  let failures: { message: string; ageMs: number }[];
  let fetched: KeyFetchOutcome[];
  let keys: RemoteKeySet;

  beforeEach(async function () {
    now = realNow();
    Date.now = () => now;
    issuer = new FakeIssuer();
    await issuer.add('k1');
    failures = [];
    fetched = [];
    keys = new RemoteKeySet({
      fetchJwks: issuer.fetchJwks,
      cooldownMs: COOLDOWN_MS,
      onRefreshFailed: (err, ageMs) => failures.push({ message: err.message, ageMs }),
      onFetched: (outcome) => fetched.push(outcome),
    });
  });

  afterEach(function () {
    Date.now = realNow;
  });

  const verified = async (token: string) => JSON.parse(Buffer.from(await keys.verify(token, ALGORITHMS)).toString()) as { sub: string };
  const refused = (token: string, why: RegExp | { code: string }) => assert.rejects(keys.verify(token, ALGORITHMS), why);
  /** Lets a background fetch run to its end. */
  const settle = async () => {
    for (let i = 0; i < 5; i++) await nextTurn();
  };

  it('fetches on first use, once for any number of tokens verified at the same time', async function () {
    const token = await issuer.sign('k1');
    assert.equal(issuer.fetches, 0);
    const all = await Promise.all(Array.from({ length: 10 }, () => verified(token)));
    assert.deepEqual(new Set(all.map((c) => c.sub)), new Set(['alice']));
    assert.equal(issuer.fetches, 1);
  });

  it('during an outage past the max age, verifies with the keys held, tries again at most once per cool-down, and logs each failure', async function () {
    const token = await issuer.sign('k1');
    await verified(token);
    issuer.up = false;
    now += JWKS_MAX_AGE_MS + 1000;
    for (let i = 0; i < 5; i++) assert.equal((await verified(token)).sub, 'alice');
    await settle();
    assert.equal(issuer.fetches, 2, 'one refresh for five tokens within the cool-down');
    assert.deepEqual(failures, [{ message: 'connect ECONNREFUSED', ageMs: JWKS_MAX_AGE_MS + 1000 }]);
    now += COOLDOWN_MS;
    await verified(token);
    await settle();
    assert.equal(issuer.fetches, 3);
    assert.equal(failures.length, 2);
    now += 60 * 60_000;
    assert.equal((await verified(token)).sub, 'alice', 'an hour into the outage');
  });

  it('does not make a token wait for a background refresh', async function () {
    const token = await issuer.sign('k1');
    await verified(token);
    let answer!: () => void;
    issuer.hold = new Promise((resolve) => (answer = resolve));
    now += JWKS_MAX_AGE_MS;
    assert.equal((await verified(token)).sub, 'alice', 'verified while the refresh hangs');
    assert.equal(issuer.fetches, 2);
    answer();
    await settle();
    assert.deepEqual(failures, []);
  });

  it('refuses a key the issuer removed once a refresh past the max age has fetched the keys again', async function () {
    await issuer.add('k2');
    const old = await issuer.sign('k1');
    await verified(old);
    issuer.publishOnly('k2');
    now += JWKS_MAX_AGE_MS - 1000;
    await verified(old);
    assert.equal(issuer.fetches, 1, 'not fetched again before the max age');
    now += 2000;
    await verified(old);
    await settle();
    assert.equal(issuer.fetches, 2, 'that token started a refresh');
    await refused(old, { code: 'ERR_JWKS_NO_MATCHING_KEY' });
    assert.equal((await verified(await issuer.sign('k2'))).sub, 'alice');
    assert.equal(issuer.fetches, 2);
  });

  it('keeps the keys held when the issuer answers with something that is not a key set', async function () {
    const token = await issuer.sign('k1');
    await verified(token);
    issuer.garbage = { keys: 'none' };
    now += JWKS_MAX_AGE_MS;
    await verified(token);
    await settle();
    assert.equal(failures.length, 1);
    assert.match(failures[0]!.message, /malformed/);
    await verified(token);
  });

  it('fetches once for a token naming a key not held, and verifies it with the key the issuer added', async function () {
    const first = await issuer.sign('k1');
    await verified(first);
    await issuer.add('k2');
    now += COOLDOWN_MS;
    assert.equal((await verified(await issuer.sign('k2'))).sub, 'alice');
    assert.equal(issuer.fetches, 2);
    await verified(await issuer.sign('k2'));
    await verified(first);
    assert.equal(issuer.fetches, 2);
  });

  it('shares one fetch among tokens naming unknown keys at the same time', async function () {
    await verified(await issuer.sign('k1'));
    now += COOLDOWN_MS;
    await issuer.add('k2');
    await issuer.add('k3');
    const tokens = await Promise.all(['k2', 'k3', 'k2', 'k3', 'k2'].map((kid) => issuer.sign(kid)));
    await Promise.all(tokens.map((token) => verified(token)));
    assert.equal(issuer.fetches, 2);
  });

  it('for tokens naming unknown keys, fetches at most once per cool-down, however many arrive', async function () {
    await verified(await issuer.sign('k1'));
    await issuer.add('k2');
    issuer.publishOnly('k1');
    now += COOLDOWN_MS;
    const unknown = await issuer.sign('k2');
    for (let i = 0; i < 5; i++) {
      await refused(unknown, { code: 'ERR_JWKS_NO_MATCHING_KEY' });
      now += COOLDOWN_MS / 10;
    }
    assert.equal(issuer.fetches, 2, 'one fetch within the cool-down');
    issuer.publishOnly('k1', 'k2');
    now += COOLDOWN_MS;
    await verified(unknown);
    assert.equal(issuer.fetches, 3);
  });

  it('fetches again for a token under a held kid that no held key verifies, and verifies it with the key now published there', async function () {
    const before = await issuer.sign('k1');
    await verified(before);
    await issuer.add('k1');
    now += COOLDOWN_MS;
    assert.equal((await verified(await issuer.sign('k1'))).sub, 'alice');
    assert.equal(issuer.fetches, 2);
    await refused(before, { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
  });

  it('never accepts a token because a fetch failed: it refuses what the keys held do not verify', async function () {
    await verified(await issuer.sign('k1'));
    await issuer.add('k2');
    const forged = await issuer.sign('k2', 'k1');
    issuer.up = false;
    now += COOLDOWN_MS;
    await refused(await issuer.sign('k2'), /ECONNREFUSED/);
    now += COOLDOWN_MS;
    await refused(forged, /ECONNREFUSED/);
    now += COOLDOWN_MS;
    await refused(await issuer.sign('k2', null), /ECONNREFUSED/);
    assert.equal(issuer.fetches, 4);
  });

  it('with no keys yet, refuses while the issuer is down, fetching at most once per cool-down, and verifies once it answers', async function () {
    const token = await issuer.sign('k1');
    issuer.up = false;
    await refused(token, /ECONNREFUSED/);
    issuer.up = true;
    await refused(token, /ECONNREFUSED/);
    assert.equal(issuer.fetches, 1);
    now += COOLDOWN_MS;
    assert.equal((await verified(token)).sub, 'alice');
    assert.equal(issuer.fetches, 2);
  });

  it('verifies a token without a kid with whichever key of the set verifies it, as go-oidc tries each', async function () {
    await issuer.add('k2');
    assert.equal((await verified(await issuer.sign('k2', null))).sub, 'alice');
    assert.equal((await verified(await issuer.sign('k1', null))).sub, 'alice');
    await issuer.add('k3');
    issuer.publishOnly('k1', 'k2');
    await refused(await issuer.sign('k3', null), { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
  });

  it('verifies with the keys a fetch brought while the held ones were being tried, without fetching again', async function () {
    for (let i = 2; i <= 40; i++) await issuer.add(`k${i}`);
    await verified(await issuer.sign('k1'));
    await issuer.add('new');
    now += JWKS_MAX_AGE_MS;
    let answer!: () => void;
    issuer.hold = new Promise((resolve) => (answer = resolve));
    await verified(await issuer.sign('k1'));
    // No kid: each of the 40 keys held is tried, while the refresh ends.
    const trying = verified(await issuer.sign('new', null));
    answer();
    assert.equal((await trying).sub, 'alice');
    assert.equal(issuer.fetches, 2);
  });

  it('tells of each first fetch and how it ended', async function () {
    const token = await issuer.sign('k1');
    issuer.up = false;
    await refused(token, /ECONNREFUSED/);
    assert.deepEqual(fetched, ['failure']);
    await refused(token, /ECONNREFUSED/);
    assert.deepEqual(fetched, ['failure'], 'no fetch within the cool-down, none told');
    issuer.up = true;
    now += COOLDOWN_MS;
    await verified(token);
    assert.deepEqual(fetched, ['failure', 'success']);
  });

  it('tells of each fetch for a token naming a key not held, and how it ended', async function () {
    await verified(await issuer.sign('k1'));
    await issuer.add('k2');
    now += COOLDOWN_MS;
    await verified(await issuer.sign('k2'));
    assert.deepEqual(fetched, ['success', 'success']);
    await issuer.add('k3');
    issuer.up = false;
    now += COOLDOWN_MS;
    await refused(await issuer.sign('k3'), /ECONNREFUSED/);
    assert.deepEqual(fetched, ['success', 'success', 'failure']);
  });

  it('tells of each background refresh and how it ended: an answer that is not a key set is a failure', async function () {
    const token = await issuer.sign('k1');
    await verified(token);
    now += JWKS_MAX_AGE_MS;
    await verified(token);
    await settle();
    assert.deepEqual(fetched, ['success', 'success']);
    issuer.up = false;
    now += JWKS_MAX_AGE_MS;
    await verified(token);
    await settle();
    issuer.up = true;
    issuer.garbage = { keys: 'none' };
    now += COOLDOWN_MS;
    await verified(token);
    await settle();
    assert.deepEqual(fetched, ['success', 'success', 'failure', 'failure']);
    assert.equal(failures.length, 2, 'each failure told to both');
  });

  it('says when the keys held were fetched: not before the first fetch, not changed by a failed refresh', async function () {
    const token = await issuer.sign('k1');
    issuer.up = false;
    await refused(token, /ECONNREFUSED/);
    assert.equal(keys.heldSince(), undefined, 'a failed first fetch holds nothing');
    issuer.up = true;
    now += COOLDOWN_MS;
    const first = now;
    await verified(token);
    assert.equal(keys.heldSince(), first);
    issuer.up = false;
    now += JWKS_MAX_AGE_MS;
    await verified(token);
    await settle();
    assert.equal(keys.heldSince(), first, 'the keys held are still those of the first fetch');
    issuer.up = true;
    now += COOLDOWN_MS;
    await verified(token);
    await settle();
    assert.equal(keys.heldSince(), now);
  });

  it('reads an answer as jose reads one: 200 only, JSON, a byte order mark dropped', function () {
    assert.throws(() => jwksJson(500, Buffer.from('{}')), /Expected 200 OK from the JSON Web Key Set HTTP response/);
    assert.throws(() => jwksJson(200, Buffer.from('not json')), /Failed to parse the JSON Web Key Set HTTP response as JSON/);
    assert.deepEqual(jwksJson(200, Buffer.from('\ufeff{"keys":[]}')), { keys: [] });
  });
});
