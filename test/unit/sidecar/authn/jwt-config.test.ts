import assert from 'node:assert/strict';
import YAML from 'yaml';
import { createCA } from '../../../../lib/pki.js';
import { JwtConfigError, legacyOidcIssuer, parseAuthenticationConfiguration, SIGNING_ALGORITHMS } from '../../../../lib/sidecar-config/jwt.js';
import { configuredIssuers, type TokenAuthenticationOptions } from '../../../../lib/sidecar-config/tokens.js';
import { identityFromClaims } from '../../../../sidecar/authn/jwt/claims.js';
import { TokenRejected } from '../../../../sidecar/authn/jwt/verify.js';

const ISSUER = 'https://issuer.example.com';

function configWith(jwt: object[]): string {
  return YAML.stringify({ apiVersion: 'apiserver.config.k8s.io/v1', kind: 'AuthenticationConfiguration', jwt });
}

function problems(jwt: object[]): string[] {
  try {
    parseAuthenticationConfiguration(configWith(jwt), 'auth.yaml');
  } catch (err) {
    if (err instanceof JwtConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

const plain = (over: Record<string, unknown> = {}) => ({
  issuer: { url: ISSUER, audiences: ['app'] },
  claimMappings: { username: { claim: 'sub', prefix: '' } },
  ...over,
});

describe('sidecar/authn/jwt/config: the API server\'s validation of AuthenticationConfiguration', function () {
  it('accepts a plain issuer and several issuers at once', function () {
    const issuers = parseAuthenticationConfiguration(configWith([plain(), plain({ issuer: { url: `${ISSUER}/two`, audiences: ['a', 'b'], audienceMatchPolicy: 'MatchAny' } })]), 'f');
    assert.equal(issuers.length, 2);
    assert.deepEqual(issuers[0]!.algorithms, SIGNING_ALGORITHMS);
  });

  const refusals: [string, object[], RegExp][] = [
    ['a claim without a prefix', [plain({ claimMappings: { username: { claim: 'sub' } } })], /jwt\[0\]\.claimMappings\.username\.prefix: Required value: prefix is required when claim is set/],
    ['claim and expression both', [plain({ claimMappings: { username: { claim: 'sub', expression: 'claims.sub' } } })], /claim and expression can't both be set/],
    ['no username mapping', [plain({ claimMappings: {} })], /claimMappings\.username: Required value/],
    ['an http issuer', [plain({ issuer: { url: 'http://issuer.example.com', audiences: ['a'] } })], /URL scheme must be https/],
    ['a discoveryURL equal to the URL', [plain({ issuer: { url: ISSUER, discoveryURL: `${ISSUER}/`, audiences: ['a'] } })], /discoveryURL must be different from URL/],
    ['no audiences', [plain({ issuer: { url: ISSUER, audiences: [] } })], /audiences: Required value/],
    ['two audiences without MatchAny', [plain({ issuer: { url: ISSUER, audiences: ['a', 'b'] } })], /audienceMatchPolicy must be MatchAny for multiple audiences/],
    ['the same issuer twice', [plain(), plain()], /jwt\[1\]\.issuer\.url: Duplicate value/],
    ['a bad certificate authority', [plain({ issuer: { url: ISSUER, audiences: ['a'], certificateAuthority: 'not a pem' } })], /certificateAuthority: Invalid value: "<omitted>"/],
    ['an egress selector', [plain({ issuer: { url: ISSUER, audiences: ['a'], egressSelectorType: 'cluster' } })], /egressSelectorType/],
    ['an unknown field', [plain({ claimMapings: {} })], /claimMapings/],
    ['a validation rule that is not bool', [plain({ claimValidationRules: [{ expression: 'claims.admin' }] })], /claimValidationRules\[0\]\.expression: .*must evaluate to bool/],
    ['a CEL syntax error, naming the rule', [plain({ claimMappings: { username: { expression: "claims.sub +" } } })], /claimMappings\.username\.expression: Invalid value: "claims\.sub \+": compilation failed/],
    ['an unknown variable', [plain({ userValidationRules: [{ expression: 'claims.sub == ""' }] })], /userValidationRules\[0\]\.expression: .*compilation failed/],
    ['a claim used as a comprehension range (type any)', [plain({ claimMappings: { username: { claim: 'sub', prefix: '' }, groups: { expression: 'claims.groups.map(g, g)' } } })], /cannot be range of a comprehension/],
    ['claims.email without claims.email_verified', [plain({ claimMappings: { username: { expression: 'claims.email' } } })], /claims\.email_verified must be used/],
    ['an extra key of kubernetes.io', [plain({ claimMappings: { username: { claim: 'sub', prefix: '' }, extra: [{ key: 'authentication.kubernetes.io/x', valueExpression: "'a'" }] } })], /reserved for Kubernetes use/],
    ['an extra key that is not domain-prefixed', [plain({ claimMappings: { username: { claim: 'sub', prefix: '' }, extra: [{ key: 'tenant', valueExpression: "'a'" }] } })], /must be a domain-prefixed path/],
    ['an extra key in upper case', [plain({ claimMappings: { username: { claim: 'sub', prefix: '' }, extra: [{ key: 'example.com/Tenant', valueExpression: "'a'" }] } })], /must be lowercase/],
    ['a claim name the API server unescapes (__dot__)', [plain({ claimMappings: { username: { expression: "claims.?a__dot__b.orValue('')" } } })], /"a__dot__b" is one the API server unescapes/],
    ['an index the API server unescapes', [plain({ claimValidationRules: [{ expression: "claims['x__dash__y'] == 'a'" }] })], /"x__dash__y" is one the API server unescapes/],
    ['an extra read through an escaped name', [plain({ userValidationRules: [{ expression: "has(user.extra.example__dot__com)" }] })], /"example__dot__com" is one the API server unescapes/],
    ['a message on a claim rule', [plain({ claimValidationRules: [{ claim: 'hd', requiredValue: 'x', message: 'no' }] })], /message: Invalid value: "no": may not be specified when claim is set/],
  ];
  for (const [what, jwt, pattern] of refusals) {
    it(`refuses ${what}`, function () {
      const found = problems(jwt);
      assert.ok(found.some((p) => pattern.test(p)), `expected ${pattern} among:\n${found.join('\n')}`);
    });
  }

  it('accepts claims.email with claims.email_verified used in a validation rule', function () {
    assert.deepEqual(problems([plain({ claimMappings: { username: { expression: 'claims.email' } }, claimValidationRules: [{ expression: 'claims.?email_verified.orValue(true) == true' }] })]), []);
  });

  it('refuses a file that is not an AuthenticationConfiguration', function () {
    assert.throws(() => parseAuthenticationConfiguration(YAML.stringify({ apiVersion: 'v1', kind: 'Config' }), 'f.yaml'), /f\.yaml: apiVersion: must be one of/);
  });
});

describe('sidecar/authn/jwt/config: the legacy --oidc-* flags', function () {
  const base: TokenAuthenticationOptions = {
    oidcUsernameClaim: 'sub',
    oidcRequiredClaim: [],
    oidcSigningAlgs: ['RS256'],
    authenticationTokenWebhookVersion: 'v1beta1',
    authenticationTokenWebhookCacheAuthorizedTtl: 120_000,
    authenticationTokenWebhookCacheUnauthorizedTtl: 30_000,
    authenticationTokenWebhookTimeout: 10_000,
    authenticationTokenWebhookAudiences: [],
    clusterTokenReview: false,
    clusterTokenReviewAudiences: [],
    clusterTokenReviewCacheTtl: 10_000,
  };
  const identity = (flags: Partial<TokenAuthenticationOptions>, claims: Record<string, unknown>) =>
    identityFromClaims(configuredIssuers({ ...base, oidcIssuerUrl: ISSUER, oidcClientId: 'app', ...flags })[0]!, claims);

  it('prefixes usernames from any claim but email with "<issuer>#", as the API server does', function () {
    assert.equal(identity({}, { sub: 'alice' }).username, `${ISSUER}#alice`);
    assert.equal(identity({ oidcUsernameClaim: 'email' }, { email: 'a@example.com' }).username, 'a@example.com');
    assert.equal(identity({ oidcUsernamePrefix: '-' }, { sub: 'alice' }).username, 'alice');
    assert.equal(identity({ oidcUsernamePrefix: 'oidc:' }, { sub: 'alice' }).username, 'oidc:alice');
  });

  it('refuses an email username whose email_verified is false', function () {
    assert.throws(() => identity({ oidcUsernameClaim: 'email' }, { email: 'a@example.com', email_verified: false }), (err: Error) => err instanceof TokenRejected && /email not verified/.test(err.message));
  });

  it('reads null claims as Go does (""), and refuses the empty username or group name no impersonation header can carry', function () {
    assert.deepEqual(identity({ oidcUsernamePrefix: 'u:', oidcGroupsClaim: 'groups', oidcGroupsPrefix: 'g:' }, { sub: null, groups: ['x', null] }), { username: 'u:', groups: ['g:x', 'g:'], extra: {} });
    assert.throws(() => identity({ oidcUsernamePrefix: '-' }, { sub: null }), (err: Error) => err instanceof TokenRejected && /username is empty/.test(err.message));
    assert.throws(() => identity({ oidcGroupsClaim: 'groups' }, { sub: 'a', groups: ['x', null] }), (err: Error) => err instanceof TokenRejected && /group has no name/.test(err.message));
    assert.throws(() => identity({ oidcGroupsClaim: 'groups' }, { sub: 'a', groups: '' }), /group has no name/);
  });

  it('maps groups with their prefix and checks required claims', function () {
    assert.deepEqual(identity({ oidcGroupsClaim: 'groups', oidcGroupsPrefix: 'g:' }, { sub: 'a', groups: ['x', 'y'] }).groups, ['g:x', 'g:y']);
    assert.throws(() => identity({ oidcRequiredClaim: ['hd=example.com'] }, { sub: 'a', hd: 'evil.com' }), /required claim hd value does not match/);
  });

  it('refuses the flags together with a configuration file, a client ID without an issuer, and HMAC', function () {
    assert.throws(() => configuredIssuers({ ...base, authenticationConfig: '/x', oidcIssuerUrl: ISSUER }), /mutually exclusive/);
    assert.throws(() => configuredIssuers({ ...base, oidcClientId: 'app' }), /must be given together/);
    assert.throws(() => legacyOidcIssuer({ issuerUrl: ISSUER, clientId: 'a', usernameClaim: 'sub', requiredClaims: [], signingAlgs: ['HS256'] }), /unsupported signing alg "HS256"/);
  });

  it('reads the CA from --oidc-ca-file into the issuer', function () {
    const ca = createCA({ commonName: 'x' });
    const issuer = legacyOidcIssuer({ issuerUrl: ISSUER, clientId: 'a', usernameClaim: 'sub', requiredClaims: [], signingAlgs: ['RS256'], caPem: ca.certPem });
    assert.equal(issuer.config.issuer.certificateAuthority, ca.certPem);
  });
});
