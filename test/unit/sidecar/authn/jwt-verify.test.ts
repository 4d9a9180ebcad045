import assert from 'node:assert/strict';
import { createSign, generateKeyPairSync } from 'node:crypto';
import { CompactSign, SignJWT, exportJWK } from 'jose';
import { createCA } from '../../../../lib/pki.js';
import { toStringList } from '../../../../lib/cel/expressions.js';
import { RemoteKeySet } from '../../../../sidecar/authn/jwt/remote-keys.js';
import { IssuerKeys, NOT_BEFORE_LEEWAY_MS, TokenRejected, untrustedIssuer, verifyJwt } from '../../../../sidecar/authn/jwt/verify.js';
import { startTestProvider, type TestProvider } from '../../../../local-cluster/identity/oidc-provider.js';

const ISSUER = 'https://issuer.example.com';
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ALL = ['ES256', 'RS256'];

/** The issuer's one key, k1, served by a JWKS endpoint that always answers. */
async function keySet(): Promise<RemoteKeySet> {
  const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] };
  return new RemoteKeySet({ fetchJwks: () => Promise.resolve(jwks), cooldownMs: 0 });
}

async function token(claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT({ iss: ISSUER, aud: 'app', sub: 'alice', exp: Math.floor(Date.now() / 1000) + 60, ...claims }).setProtectedHeader({ alg: 'ES256', kid: 'k1', ...header }).sign(privateKey);
}

async function rejected(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (err: Error) => err instanceof TokenRejected && pattern.test(err.message));
}

describe('sidecar/authn/jwt/verify: signature and standard claims, as the API server checks them', function () {
  it('reads the unverified issuer as the API server does, Google\'s legacy one included', function () {
    assert.equal(untrustedIssuer(`x.${Buffer.from('{"iss":"https://a"}').toString('base64url')}.y`), 'https://a');
    assert.equal(untrustedIssuer(`x.${Buffer.from('{"iss":"accounts.google.com"}').toString('base64url')}.y`), 'https://accounts.google.com');
    for (const bad of ['x.y', '{"iss":"x"}', `x.${Buffer.from('{"iss":1}').toString('base64url')}.y`, 'a.b=.c', 'a.b.c.d']) assert.equal(untrustedIssuer(bad), undefined, bad);
  });

  it('accepts a good token and returns its claims', async function () {
    const claims = await verifyJwt(await token({ groups: ['a'] }), await keySet(), { issuerUrl: ISSUER, audiences: ['other', 'app'], algorithms: ALL });
    assert.deepEqual(claims.groups, ['a']);
  });

  it('checks exp strictly and nbf with one minute of leeway; iat not at all', async function () {
    const keys = await keySet();
    const options = { issuerUrl: ISSUER, audiences: ['app'], algorithms: ALL };
    const now = Math.floor(Date.now() / 1000);
    await rejected(verifyJwt(await token({ exp: now - 1 }), keys, options), /expired/);
    await rejected(verifyJwt(await token({ exp: undefined }), keys, options), /expired/);
    await rejected(verifyJwt(await token({ nbf: now + NOT_BEFORE_LEEWAY_MS / 1000 + 30 }), keys, options), /not valid before/);
    await verifyJwt(await token({ nbf: now + 30 }), keys, options);
    await verifyJwt(await token({ iat: now + 3600 }), keys, options);
    await rejected(verifyJwt(await token({ iat: 'yesterday' }), keys, options), /iat is not a number/);
  });

  it('refuses the wrong issuer, the wrong audience, a non-string sub, and algorithms off the list', async function () {
    const keys = await keySet();
    const options = { issuerUrl: ISSUER, audiences: ['app'], algorithms: ALL };
    await rejected(verifyJwt(await token({ iss: 'https://other' }), keys, options), /different provider/);
    await rejected(verifyJwt(await token({ aud: ['x', 'y'] }), keys, options), /expected audience/);
    await rejected(verifyJwt(await token({ sub: 7 }), keys, options), /sub is not a string/);
    await rejected(verifyJwt(await token({}), keys, { ...options, algorithms: ['RS256'] }), /algorithm not allowed/);
    const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ iss: ISSUER, aud: 'app', exp: 2e9 })).toString('base64url')}.`;
    await rejected(verifyJwt(none, keys, options), /not allowed|malformed/);
  });
});

describe('sidecar/authn/jwt/verify: what the API server reads otherwise is refused (test/hardening/identity-parity.test.ts checks against a real one)', function () {
  const options = { issuerUrl: ISSUER, audiences: ['app'], algorithms: ALL };
  const now = () => Math.floor(Date.now() / 1000);
  /** A token over exactly these bytes: a JSON text written member by member. */
  async function raw(payload: string | Uint8Array, header = '{"alg":"ES256","kid":"k1"}'): Promise<string> {
    const bytes = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
    const token = await new CompactSign(bytes).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(privateKey);
    if (header === '{"alg":"ES256","kid":"k1"}') return token;
    // Signed again under the header as written (jose would write its own).
    const input = `${Buffer.from(header).toString('base64url')}.${token.split('.')[1]}`;
    const der = createSign('sha256').update(input).sign({ key: privateKey, dsaEncoding: 'ieee-p1363' });
    return `${input}.${der.toString('base64url')}`;
  }
  const head = () => `"iss":"${ISSUER}","aud":"app","exp":${now() + 60}`;

  it('refuses a case variant of a claim the API server reads into a struct, and reads the others by their exact names', async function () {
    const keys = await keySet();
    for (const member of ['"Exp":1', '"EXP":1', '"ISS":"x"', '"i\u017f\u017f":"x"', '"Sub":"bob"', '"AUD":"x"', '"Nbf":1', '"IAT":1', '"Nonce":"n"', '"AT_HASH":"h"', '"_Claim_Names":{}', '"_CLAIM_SOURCES":{}']) {
      await rejected(verifyJwt(await raw(`{${head()},"sub":"alice",${member}}`), keys, options), /is read as \w+ by the API server/);
    }
    const claims = await verifyJwt(await raw(`{${head()},"sub":"alice","Groups":["x"],"EMAIL":"e","Email_Verified":false,"Name":"n"}`), keys, options);
    assert.deepEqual(claims.Groups, ['x']);
  });

  it('refuses duplicate members, bytes that are not UTF-8, lone surrogates and numbers beyond float64', async function () {
    const keys = await keySet();
    await rejected(verifyJwt(await raw(`{${head()},"sub":"alice","sub":"bob"}`), keys, options), /"sub" appears twice/);
    await rejected(verifyJwt(await raw(`{${head()},"sub":"alice","x":{"a":1,"a":2}}`), keys, options), /"a" appears twice/);
    await rejected(verifyJwt(await raw(Buffer.concat([Buffer.from(`{${head()},"sub":"al`), Buffer.from([0xe2, 0x82]), Buffer.from('ice"}')])), keys, options), /not valid UTF-8/);
    await rejected(verifyJwt(await raw(`{${head()},"sub":"alice\\ud800"}`), keys, options), /unpaired surrogate/);
    await rejected(verifyJwt(await raw(`{${head()},"sub":"alice","weight":1e400}`), keys, options), /beyond float64/);
  });

  it('reads exp, nbf and iat as go-oidc does, and refuses what Go would read otherwise', async function () {
    const keys = await keySet();
    const timed = (members: string) => raw(`{"iss":"${ISSUER}","aud":"app","sub":"alice",${members}}`);
    for (const ok of [`"exp":"${now() + 60}"`, `"exp":${now() + 60}.9`, `"exp":${(now() + 60) / 10}e1`, `"exp":${now() + 60},"iat":"12"`, `"exp":${now() + 60},"nbf":null`, `"exp":${now() + 60},"iat":1e300`]) {
      await verifyJwt(await timed(ok), keys, options);
    }
    for (const [members, pattern] of [
      [`"exp":"0${now() + 60}"`, /exp is not a number/],
      [`"exp":" ${now() + 60}"`, /exp is not a number/],
      ['"exp":null', /exp is not a number/],
      ['"exp":9223372036854775807', /beyond what chaperone reads/],
      ['"exp":1e300', /beyond what chaperone reads/],
      [`"exp":${now() + 60},"nbf":1e300`, /beyond what chaperone reads/],
      [`"exp":${now() + 60},"iat":null`, /iat is not a number/],
      [`"exp":${now() + 60},"iat":true`, /iat is not a number/],
      [`"exp":${now() + 60},"iat":"1e400"`, /iat is not a number/],
    ] as const) {
      await rejected(verifyJwt(await timed(members), keys, options), pattern);
    }
  });

  it('checks distributed claims as go-oidc does in every token', async function () {
    const keys = await keySet();
    const base = `${head()},"sub":"alice"`;
    await verifyJwt(await raw(`{${base},"_claim_names":{"roles":"s1"},"_claim_sources":{"s1":{"endpoint":"https://x","access_token":null}}}`), keys, options);
    for (const [members, pattern] of [
      ['"_claim_names":{"roles":"s1"}', /source does not exist/],
      ['"_claim_names":{"roles":"s1"},"_claim_sources":{"s2":{}}', /source does not exist/],
      ['"_claim_names":{"roles":null},"_claim_sources":{}', /failed to obtain source/],
      ['"_claim_names":{"roles":1}', /_claim_names is not a map of strings/],
      ['"_claim_names":{"roles":"s1"},"_claim_sources":{"s1":{"Endpoint":5}}', /endpoint is not a string/],
      ['"_claim_sources":{"s1":"x"}', /a claim source is not an object/],
    ] as const) {
      await rejected(verifyJwt(await raw(`{${base},${members}}`), keys, options), pattern);
    }
  });

  it('reads the header as go-jose does: no duplicate members, string alg and kid, none of jwk, x5c, b64, crit', async function () {
    const keys = await keySet();
    const payload = `{${head()},"sub":"alice"}`;
    await verifyJwt(await raw(payload, '{"alg":"ES256","kid":"k1","typ":7}'), keys, options);
    for (const [header, pattern] of [
      ['{"alg":"HS256","alg":"ES256","kid":"k1"}', /"alg" appears twice/],
      ['{"alg":"ES256","kid":7}', /kid is not a string/],
      ['{"alg":"ES256","kid":"k1","nonce":1}', /nonce is not a string/],
      ['{"alg":"ES256","kid":"k1","b64":true}', /header has b64/],
      ['{"alg":"ES256","kid":"k1","crit":["b64"],"b64":true}', /header has b64|header has crit/],
      ['{"alg":"ES256","kid":"k1","jwk":{}}', /header has jwk/],
      ['{"alg":"ES256","kid":"k1","x5c":[]}', /header has x5c/],
    ] as const) {
      await rejected(verifyJwt(await raw(payload, header), keys, options), pattern);
    }
  });
});

describe('sidecar/authn/jwt/verify: keys from discovery and JWKS', function () {
  this.timeout(20_000);
  const ca = createCA({ commonName: 'test-ca' });
  let provider: TestProvider;

  before(async function () {
    provider = await startTestProvider(ca, { alice: { claims: {} } });
  });

  after(async function () {
    await provider?.stop();
  });

  it('discovers the keys and verifies the provider\'s tokens', async function () {
    const keys = new IssuerKeys({ issuerUrl: provider.issuer, caPem: ca.certPem });
    await keys.start();
    assert.equal(keys.notReady(), undefined);
    const claims = await verifyJwt(await provider.idToken('alice'), keys.keys(), { issuerUrl: provider.issuer, audiences: ['chaperone-test'], algorithms: ['RS256'] });
    assert.equal(claims.sub, 'alice');
    keys.close();
  });

  it('refetches the JWKS for an unknown kid at most once per cool-down, however many such tokens arrive', async function () {
    const keys = new IssuerKeys({ issuerUrl: provider.issuer, caPem: ca.certPem });
    await keys.start();
    const options = { issuerUrl: provider.issuer, audiences: ['chaperone-test'], algorithms: ['RS256'] };
    await verifyJwt(await provider.idToken('alice'), keys.keys(), options);
    const before = provider.jwksFetches();
    const { privateKey: stranger } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    for (let i = 0; i < 20; i++) {
      const forged = await new SignJWT({ iss: provider.issuer, aud: 'chaperone-test', exp: 2e9 }).setProtectedHeader({ alg: 'RS256', kid: `unknown-${i}` }).sign(stranger);
      await rejected(verifyJwt(forged, keys.keys(), options), /no key of the issuer matches/);
    }
    assert.ok(provider.jwksFetches() - before <= 1, `fetched the JWKS ${provider.jwksFetches() - before} times`);
    keys.close();
  });

  it('is not ready while discovery fails (an issuer it cannot trust), and says why', async function () {
    const keys = new IssuerKeys({ issuerUrl: provider.issuer, caPem: createCA({ commonName: 'other' }).certPem });
    await keys.start();
    assert.match(keys.notReady() ?? '', /certificate.*the CA given does not vouch for its certificate; check the issuer's certificateAuthority in the AuthenticationConfiguration/);
    assert.throws(() => keys.keys(), /not initialized/);
    keys.close();
  });

  it("says where the issuer's CA goes when no CA it trusts signed the issuer's certificate", async function () {
    const keys = new IssuerKeys({ issuerUrl: provider.issuer });
    await keys.start();
    assert.match(keys.notReady() ?? '', /no CA this sidecar trusts signed its certificate; give the CA that did as the issuer's certificateAuthority in the AuthenticationConfiguration \(for injected pods, the installation configuration/);
    keys.close();
  });

  it('refuses a discovery document naming another issuer', async function () {
    const keys = new IssuerKeys({ issuerUrl: `${provider.issuer}/`, caPem: ca.certPem });
    await keys.start();
    assert.match(keys.notReady() ?? '', /issuer did not match/);
    keys.close();
  });
});

describe('sidecar/authn/jwt/cel: results as the API server converts them', function () {
  it('turns strings and lists into string lists, dropping empties, and refuses other types', function () {
    assert.deepEqual(toStringList('a'), ['a']);
    assert.equal(toStringList(''), undefined);
    assert.equal(toStringList(null), undefined);
    assert.deepEqual(toStringList(['a', '', 'b']), ['a', 'b']);
    assert.equal(toStringList(['']), undefined);
    assert.throws(() => toStringList([1]), /string or a list of strings/);
    assert.throws(() => toStringList(3n), /not int/);
  });
});
