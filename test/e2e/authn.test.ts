// Token identities, with the real API server as the oracle. A control plane of its own is given the
// same AuthenticationConfiguration and the same token webhook (a pam_hook look-alike) as a sidecar;
// for every token the identity from a SelfSubjectReview sent straight to the API server must equal
// the one from a SelfSubjectReview sent through the sidecar, and rejections must match, except where
// the sidecar's guard refuses on purpose. Tokens come from a real OpenID provider (oidc-provider),
// plus crafted attack tokens.
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SignJWT } from 'jose';
import YAML from 'yaml';
import type { V1ClusterRole } from '@kubernetes/client-node';
import { createCA } from '../../lib/pki.js';
import { parseAuthenticationConfiguration } from '../../lib/sidecar-config/jwt.js';
import { JWKS_MAX_AGE_MS } from '../../sidecar/authn/jwt/remote-keys.js';
import { JWKS_REFETCH_COOLDOWN_MS } from '../../sidecar/authn/jwt/verify.js';
import { createNamespace, createServiceAccount, grantClusterWide, mintServiceAccountToken, serviceAccountSubject, waitForAuditEvents } from '../../local-cluster/kube.js';
import { sampleValue, scrape } from '../../local-cluster/metrics.js';
import { rawRequest, type RawResponse, type TestSidecar } from '../../local-cluster/sidecar.js';
import { OTHER_CLIENT, startTestProvider, type TestAccount, type TestProvider } from '../../local-cluster/identity/oidc-provider.js';
import { startPamHook, type PamHook } from '../../local-cluster/identity/pam-hook.js';
import { waitFor } from '../../local-cluster/wait.js';
import { withControlPlane, withSharedControlPlane, withSidecar } from '../support/fixtures.js';

const CLUSTER_TOKEN_REVIEW_ROLE = path.resolve(import.meta.dirname, '../../manifests/components/cluster-token-review/cluster-token-review-clusterrole.yaml');
const SELF_SUBJECT_REVIEW = '/apis/authentication.k8s.io/v1/selfsubjectreviews';
const REVIEW_BODY = JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' });

interface UserInfo {
  username?: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

interface Outcome {
  status: number;
  user?: UserInfo;
  body: string;
}

function outcome(response: RawResponse): Outcome {
  if (response.status !== 201) return { status: response.status, body: response.body };
  const review = JSON.parse(response.body) as { status?: { userInfo?: UserInfo } };
  return { status: 201, user: review.status?.userInfo ?? {}, body: response.body };
}

/** POST a SelfSubjectReview with the bearer token: "who am I?", answered by whoever authenticates the request. */
function selfSubjectReview(url: string, ca: string, token: string): Promise<RawResponse> {
  return rawRequest(`${url}${SELF_SUBJECT_REVIEW}`, {
    method: 'POST',
    ca,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: REVIEW_BODY,
  });
}

const statusMessage = (body: string): string => (JSON.parse(body) as { message: string }).message;
const now = () => Math.floor(Date.now() / 1000);
const b64 = (value: object | string) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

describe('token identities: OIDC/JWT and webhook tokens, the API server as the oracle', function () {
  this.timeout(180_000);
  const ca = createCA({ commonName: 'chaperone-test-oidc-ca' });
  let dir: string;
  let claimsIssuer: TestProvider;
  let emailIssuer: TestProvider;
  let celIssuer: TestProvider;
  let celAttackIssuer: TestProvider;
  let regexIssuer: TestProvider;
  let stranger: TestProvider;
  let outageIssuer: TestProvider;
  let apiServerOnlyConfig: string;
  let pamHook: PamHook;
  let authnConfig: string;
  let apiServerAuthnConfig: string;
  let webhookConfig: string;
  let caFile: string;

  const claimsAccounts: Record<string, TestAccount> = {
    alice: { claims: { hd: 'example.com', groups: ['dev', 'ops'] } },
    'single-group': { claims: { hd: 'example.com', groups: 'admins' } },
    'no-groups': { claims: { hd: 'example.com' } },
    'null-groups': { claims: { hd: 'example.com', groups: null } },
    'with-jti': { claims: { hd: 'example.com', jti: 'token-4711' } },
    'missing-required-claim': { claims: { groups: ['dev'] } },
    'wrong-required-claim': { claims: { hd: 'evil.example', groups: ['dev'] } },
    'numeric-required-claim': { claims: { hd: 42 } },
    expired: { claims: { hd: 'example.com' }, ttlSeconds: 1 },
    'not-yet-valid': { claims: { hd: 'example.com', nbf: now() + 3600 } },
    'nbf-within-leeway': { claims: { hd: 'example.com', nbf: now() + 20 } },
    'iat-in-the-future': { claims: { hd: 'example.com', iat: now() + 3600 } },
    // Claim names in other letter cases. The provider writes its own iss, aud, exp and iat last.
    'groups-in-two-cases': { claims: { hd: 'example.com', groups: ['dev'], Groups: ['admins'] } },
    'subject-in-another-case': { claims: { hd: 'example.com', Sub: 'mallory' } },
    'expiry-in-another-case': { claims: { hd: 'example.com', Exp: now() - 3600 } },
    'not-before-in-another-case': { claims: { hd: 'example.com', Nbf: now() + 3600 } },
  };
  const emailAccounts: Record<string, TestAccount> = {
    carol: { claims: { email: 'carol@example.com', email_verified: true, groups: ['team-a'] } },
    'unverified-email': { claims: { email: 'eve@example.com', email_verified: false, groups: ['team-a'] } },
    'email-without-verified-claim': { claims: { email: 'dan@example.com' } },
    'email-verified-not-a-bool': { claims: { email: 'dan@example.com', email_verified: 'true' } },
    'missing-email': { claims: { groups: ['team-a'] } },
    'masters-group': { claims: { email: 'mallory@example.com', email_verified: true, groups: ['system:masters'] } },
    'system-group': { claims: { email: 'oscar@example.com', email_verified: true, groups: ['system:nodes', 'team-a'] } },
    'email-in-two-cases': { claims: { email: 'erin@example.com', EMAIL: 'root@example.com', email_verified: true } },
    'verified-in-two-cases': { claims: { email: 'eve@example.com', email_verified: false, Email_Verified: true } },
    'verified-only-in-another-case': { claims: { email: 'dan@example.com', Email_Verified: false } },
  };
  const celAccounts: Record<string, TestAccount> = {
    erin: { claims: { preferred_username: 'erin', roles: ['viewer', 'editor'], tenant: 'acme', level: 3 } },
    frank: { claims: { preferred_username: 'frank', level: 2.5 } },
    'blocked-tenant': { claims: { preferred_username: 'gina', tenant: 'blocked' } },
    'admin-username': { claims: { preferred_username: 'admin-henry' } },
    'missing-username-claim': { claims: { roles: ['viewer'] } },
    'roles-not-strings': { claims: { preferred_username: 'ivan', roles: [1, 2] } },
    'username-claim-in-two-cases': { claims: { preferred_username: 'judy', Preferred_Username: 'admin-judy', Roles: ['admin'] } },
  };

  // Attacks on the sidecar's CEL (an independent run's F9 and F10): functions chaperone evaluated
  // otherwise than cel-go, so a token got another identity through the sidecar than the API server gives it.
  const celAttackAccounts: Record<string, TestAccount> = {
    // F9: the Kelvin sign, which full Unicode case mapping makes a k; cel-go's lowerAscii leaves it
    mallory: { claims: { preferred_username: '\u212Aate' } },
    kate: { claims: { preferred_username: 'Kate' } },
    // F10: cel-go prints a double as Go's %g does
    employee: { claims: { preferred_username: 'emp', employee_id: 1234567 } },
    // the list split() makes is one the API server does not take as groups
    'split-groups': { claims: { preferred_username: 'sam', departments: 'a,b' } },
    // code points, not UTF-16 units, and Go's trim
    'astral-name': { claims: { preferred_username: '😀bob\uFEFF' } },
  };
  // F11: matches() is RE2 in the API server; chaperone refuses a configuration that uses it.
  const regexAccounts: Record<string, TestAccount> = { kate: { claims: { preferred_username: 'Kate' } }, lower: { claims: { preferred_username: 'kate' } } };

  function authenticationConfiguration(withRegexIssuer = false): string {
    const certificateAuthority = ca.certPem;
    const regex = {
      issuer: { url: regexIssuer.issuer, audiences: ['chaperone-test'], certificateAuthority },
      claimValidationRules: [{ expression: "!claims.preferred_username.matches('\\\\p{Lu}')", message: 'no capitals' }],
      claimMappings: { username: { expression: "'re:' + claims.preferred_username" } },
    };
    return YAML.stringify({
      apiVersion: 'apiserver.config.k8s.io/v1',
      kind: 'AuthenticationConfiguration',
      jwt: [
        {
          issuer: { url: claimsIssuer.issuer, audiences: ['chaperone-test'], certificateAuthority },
          claimValidationRules: [{ claim: 'hd', requiredValue: 'example.com' }],
          claimMappings: { username: { claim: 'sub', prefix: 'claims:' }, groups: { claim: 'groups', prefix: 'claims:' } },
        },
        {
          issuer: { url: emailIssuer.issuer, audiences: ['chaperone-test'], certificateAuthority },
          claimMappings: { username: { claim: 'email', prefix: '' }, groups: { claim: 'groups', prefix: '' } },
        },
        {
          issuer: {
            url: celIssuer.issuer,
            discoveryURL: celIssuer.alternateDiscoveryUrl,
            audiences: ['chaperone-test', 'another-audience'],
            audienceMatchPolicy: 'MatchAny',
            certificateAuthority,
          },
          claimValidationRules: [{ expression: "claims.?tenant.orValue('') != 'blocked'", message: 'the tenant is blocked' }],
          claimMappings: {
            username: { expression: "'cel:' + claims.preferred_username" },
            groups: { expression: "dyn(claims.?roles.orValue([])).map(r, 'role:' + string(r))" },
            uid: { expression: "'uid-' + claims.sub" },
            extra: [
              { key: 'example.com/tenant', valueExpression: "claims.?tenant.orValue('')" },
              { key: 'example.com/level', valueExpression: "has(claims.level) ? string(claims.level) : ''" },
            ],
          },
          userValidationRules: [{ expression: "!user.username.startsWith('cel:admin')", message: 'administrators sign in elsewhere' }],
        },
        {
          issuer: { url: celAttackIssuer.issuer, audiences: ['chaperone-test'], certificateAuthority },
          claimMappings: {
            username: { expression: "'oidc:' + claims.preferred_username.lowerAscii() + ':' + string(claims.preferred_username.substring(1).size())" },
            groups: { expression: "has(claims.departments) ? claims.departments.split(',') : []" },
            uid: { expression: "claims.preferred_username.trim()" },
            extra: [{ key: 'example.com/employee', valueExpression: "has(claims.employee_id) ? string(claims.employee_id) : ''" }],
          },
        },
        ...(withRegexIssuer ? [regex] : []),
        {
          issuer: { url: outageIssuer.issuer, audiences: ['chaperone-test'], certificateAuthority },
          claimMappings: { username: { claim: 'sub', prefix: 'outage:' } },
        },
      ],
    });
  }

  before(async function () {
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-authn-'));
    [claimsIssuer, emailIssuer, celIssuer, celAttackIssuer, regexIssuer, stranger, outageIssuer] = await Promise.all([
      startTestProvider(ca, claimsAccounts),
      startTestProvider(ca, emailAccounts),
      startTestProvider(ca, celAccounts),
      startTestProvider(ca, celAttackAccounts),
      startTestProvider(ca, regexAccounts),
      startTestProvider(ca, { alice: { claims: { hd: 'example.com' } } }),
      startTestProvider(ca, { olga: { claims: {} } }),
    ]);
    pamHook = await startPamHook({
      jdoe: { password: 'correct horse', uid: '1000', groups: ['jdoe', 'sudo'] },
      root: { password: 'toor', uid: '0', groups: ['system:masters'] },
    });
    authnConfig = path.join(dir, 'authentication-config.yaml');
    // The API server's file has one issuer more, whose rule uses matches(): chaperone refuses that file.
    apiServerAuthnConfig = path.join(dir, 'apiserver-authentication-config.yaml');
    webhookConfig = path.join(dir, 'pamhook.kubeconfig');
    apiServerOnlyConfig = authenticationConfiguration(true);
    await writeFile(authnConfig, authenticationConfiguration());
    await writeFile(apiServerAuthnConfig, apiServerOnlyConfig);
    await writeFile(webhookConfig, pamHook.kubeconfig());
    caFile = path.join(dir, 'oidc-ca.crt');
    await writeFile(caFile, ca.certPem);
  });

  const { cp, clients } = withControlPlane(() => ({
    extraApiserverFlags: [`--authentication-config=${apiServerAuthnConfig}`, `--authentication-token-webhook-config-file=${webhookConfig}`, '--authentication-token-webhook-cache-ttl=0s'],
  }));
  const sidecar = withSidecar(() => ({ flags: [`--authentication-config=${authnConfig}`, `--authentication-token-webhook-config-file=${webhookConfig}`] }), { cp, clients });
  const legacySidecar = withSidecar(
    () => ({ flags: [`--oidc-issuer-url=${claimsIssuer.issuer}`, '--oidc-client-id=chaperone-test', '--oidc-groups-claim=groups', `--oidc-ca-file=${caFile}`, '--oidc-required-claim=hd=example.com'] }),
    { cp, clients },
  );

  before(async function () {
    // Extras from claimMappings.extra need rules of their own (docs/authentication.md).
    await grantClusterWide(clients, 'chaperone-claim-extras', [{ apiGroups: ['authentication.k8s.io'], resources: ['userextras/example.com/tenant', 'userextras/example.com/level', 'userextras/example.com/employee'], verbs: ['impersonate'] }], [
      serviceAccountSubject(sidecar.namespace, sidecar.serviceAccount),
    ]);
    // The API server initialises its JWT authenticators in the background: wait until it accepts a token.
    const token = await claimsIssuer.idToken('alice');
    for (let i = 0; (await direct(token)).status !== 201; i++) {
      if (i > 100) throw new Error('the API server never accepted a token of the test issuer');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  });

  after(async function () {
    await Promise.all([claimsIssuer, emailIssuer, celIssuer, celAttackIssuer, regexIssuer, stranger, outageIssuer, pamHook].map((s) => s?.stop()));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const direct = async (token: string): Promise<Outcome> => outcome(await selfSubjectReview(cp.url, cp.ca.certPem, token));
  const through = async (token: string, via: TestSidecar = sidecar): Promise<Outcome> => outcome(await selfSubjectReview(via.url, via.servingCa.certPem, token));

  /** Both accept with the same identity, or both refuse with 401. */
  async function assertSame(token: string, expect: 'accepted' | 'rejected'): Promise<UserInfo | undefined> {
    const [straight, proxied] = [await direct(token), await through(token)];
    if (expect === 'rejected') {
      assert.equal(straight.status, 401, `the API server should refuse: ${straight.body}`);
      assert.equal(proxied.status, 401, `the sidecar should refuse as the API server does: ${proxied.body}`);
      assert.equal(statusMessage(proxied.body), 'Unauthorized', 'the refusal does not say which method came close');
      return undefined;
    }
    assert.equal(straight.status, 201, `the API server should accept: ${straight.body}`);
    assert.equal(proxied.status, 201, `the sidecar should accept as the API server does: ${proxied.body}`);
    assert.deepEqual(proxied.user, straight.user);
    return straight.user;
  }

  describe('the same identity as the API server, or the same refusal', function () {
    const cases: { issuer: () => TestProvider; account: string; expect: 'accepted' | 'rejected'; check?: (user: UserInfo) => void }[] = [
      { issuer: () => claimsIssuer, account: 'alice', expect: 'accepted', check: (u) => assert.deepEqual(u, { username: 'claims:alice', groups: ['claims:dev', 'claims:ops', 'system:authenticated'] }) },
      { issuer: () => claimsIssuer, account: 'single-group', expect: 'accepted', check: (u) => assert.deepEqual(u.groups, ['claims:admins', 'system:authenticated']) },
      { issuer: () => claimsIssuer, account: 'no-groups', expect: 'accepted', check: (u) => assert.deepEqual(u.groups, ['system:authenticated']) },
      { issuer: () => claimsIssuer, account: 'null-groups', expect: 'accepted' },
      {
        issuer: () => claimsIssuer,
        account: 'with-jti',
        expect: 'accepted',
        check: (u) => assert.deepEqual(u.extra, { 'authentication.kubernetes.io/credential-id': ['JTI=token-4711'] }),
      },
      { issuer: () => claimsIssuer, account: 'missing-required-claim', expect: 'rejected' },
      { issuer: () => claimsIssuer, account: 'wrong-required-claim', expect: 'rejected' },
      { issuer: () => claimsIssuer, account: 'numeric-required-claim', expect: 'rejected' },
      { issuer: () => claimsIssuer, account: 'not-yet-valid', expect: 'rejected' },
      { issuer: () => claimsIssuer, account: 'nbf-within-leeway', expect: 'accepted' },
      { issuer: () => claimsIssuer, account: 'iat-in-the-future', expect: 'accepted' },
      { issuer: () => emailIssuer, account: 'carol', expect: 'accepted', check: (u) => assert.equal(u.username, 'carol@example.com') },
      { issuer: () => emailIssuer, account: 'unverified-email', expect: 'rejected' },
      { issuer: () => emailIssuer, account: 'email-without-verified-claim', expect: 'accepted' },
      { issuer: () => emailIssuer, account: 'email-verified-not-a-bool', expect: 'rejected' },
      { issuer: () => emailIssuer, account: 'missing-email', expect: 'rejected' },
      {
        issuer: () => celIssuer,
        account: 'erin',
        expect: 'accepted',
        check: (u) =>
          assert.deepEqual(u, {
            username: 'cel:erin',
            uid: 'uid-erin',
            groups: ['role:viewer', 'role:editor', 'system:authenticated'],
            extra: { 'example.com/tenant': ['acme'], 'example.com/level': ['3'] },
          }),
      },
      { issuer: () => celIssuer, account: 'frank', expect: 'accepted', check: (u) => assert.deepEqual(u.extra, { 'example.com/level': ['2.5'] }) },
      { issuer: () => celIssuer, account: 'blocked-tenant', expect: 'rejected' },
      { issuer: () => celIssuer, account: 'admin-username', expect: 'rejected' },
      { issuer: () => celIssuer, account: 'missing-username-claim', expect: 'rejected' },
      { issuer: () => celIssuer, account: 'roles-not-strings', expect: 'accepted' },
    ];
    for (const { issuer, account, expect, check } of cases) {
      it(`${expect === 'accepted' ? 'accepts' : 'refuses'} ${account}`, async function () {
        const user = await assertSame(await issuer().idToken(account), expect);
        if (user && check) check(user);
      });
    }

    it('refuses a token for another audience', async function () {
      await assertSame(await claimsIssuer.idToken('alice', OTHER_CLIENT), 'rejected');
    });

    it('refuses an expired token (exp has no leeway)', async function () {
      const token = await claimsIssuer.idToken('expired');
      await new Promise((resolve) => setTimeout(resolve, 2100));
      await assertSame(token, 'rejected');
    });

    it('refuses a real token from an issuer nobody configured', async function () {
      await assertSame(await stranger.idToken('alice'), 'rejected');
    });
  });

  describe("CEL as the API server evaluates it (cel-go's functions, not JavaScript's)", function () {
    it('F9: lowerAscii() changes ASCII letters only: the Kelvin sign stays, so mallory is not kate', async function () {
      const mallory = await assertSame(await celAttackIssuer.idToken('mallory'), 'accepted');
      assert.equal(mallory?.username, 'oidc:\u212Aate:3');
      const kate = await assertSame(await celAttackIssuer.idToken('kate'), 'accepted');
      assert.equal(kate?.username, 'oidc:kate:3');
    });

    it('F10: string() of a JSON number is Go\'s %g (1.234567e+06), and strings count code points', async function () {
      const user = await assertSame(await celAttackIssuer.idToken('employee'), 'accepted');
      assert.deepEqual(user?.extra?.['example.com/employee'], ['1.234567e+06']);
      const astral = await assertSame(await celAttackIssuer.idToken('astral-name'), 'accepted');
      assert.deepEqual([astral?.username, astral?.uid], ['oidc:😀bob\uFEFF:4', '😀bob\uFEFF']);
    });

    it('refuses groups from split(), whose list the API server does not take as one of strings', async function () {
      await assertSame(await celAttackIssuer.idToken('split-groups'), 'rejected');
    });

    it('F11: a rule with matches() (RE2 in the API server) makes chaperone refuse the configuration, naming the rule', async function () {
      assert.equal((await direct(await regexIssuer.idToken('kate'))).status, 401, 'the API server reads \\p{Lu} as RE2 does: Kate has a capital');
      assert.equal((await direct(await regexIssuer.idToken('lower'))).status, 201);
      assert.throws(() => parseAuthenticationConfiguration(apiServerOnlyConfig, 'apiserver-authentication-config.yaml'), (err: Error) => {
        assert.match(err.message, /jwt\[4\]\.claimValidationRules\[0\]\.expression: Invalid value: .*matches\(\) is not supported: the API server runs RE2/);
        return true;
      });
      // The sidecar, configured without that issuer, knows no such token.
      assert.equal((await through(await regexIssuer.idToken('kate'))).status, 401);
    });
  });

  describe('claim names that differ only in letter case (docs/authentication.md says why chaperone reads them so)', function () {
    // The API server reads username, groups, email_verified and CEL's claims by their exact names: so does chaperone.
    const exact: { issuer: () => TestProvider; account: string; expect: 'accepted' | 'rejected'; check?: (user: UserInfo) => void }[] = [
      { issuer: () => claimsIssuer, account: 'groups-in-two-cases', expect: 'accepted', check: (u) => assert.deepEqual(u.groups, ['claims:dev', 'system:authenticated']) },
      { issuer: () => emailIssuer, account: 'email-in-two-cases', expect: 'accepted', check: (u) => assert.equal(u.username, 'erin@example.com') },
      { issuer: () => emailIssuer, account: 'verified-in-two-cases', expect: 'rejected' },
      { issuer: () => emailIssuer, account: 'verified-only-in-another-case', expect: 'accepted', check: (u) => assert.equal(u.username, 'dan@example.com') },
      { issuer: () => celIssuer, account: 'username-claim-in-two-cases', expect: 'accepted', check: (u) => assert.deepEqual([u.username, u.groups], ['cel:judy', ['system:authenticated']]) },
    ];
    for (const { issuer, account, expect, check } of exact) {
      it(`${expect === 'accepted' ? 'accepts' : 'refuses'} ${account}, as the API server does`, async function () {
        const user = await assertSame(await issuer().idToken(account), expect);
        if (user && check) check(user);
      });
    }

    // The registered claims go-oidc decodes into a struct, where Go matches member names in any letter case.
    it('refuses Nbf, which the API server reads as nbf: both refuse a token not valid for an hour', async function () {
      await assertSame(await claimsIssuer.idToken('not-before-in-another-case'), 'rejected');
    });

    for (const account of ['subject-in-another-case', 'expiry-in-another-case']) {
      it(`refuses ${account} on purpose, where the API server reads the member as a registered claim and (this time) accepts`, async function () {
        const token = await claimsIssuer.idToken(account);
        const straight = await direct(token);
        assert.equal(straight.status, 201, straight.body);
        const proxied = await through(token);
        assert.equal(proxied.status, 401, proxied.body);
      });
    }
  });

  describe('crafted attack tokens are refused by both', function () {
    let good: string;
    before(async function () {
      good = await claimsIssuer.idToken('alice');
    });
    const payload = () => ({ iss: claimsIssuer.issuer, sub: 'attacker', aud: 'chaperone-test', hd: 'example.com', groups: ['admins'], exp: now() + 600, iat: now() });

    it('alg none', async function () {
      await assertSame(`${b64({ alg: 'none', typ: 'JWT' })}.${b64(payload())}.`, 'rejected');
    });

    it('HS256 signed with the provider\'s public key as the secret', async function () {
      const pem = createPublicKey({ key: claimsIssuer.publicJwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' }).toString();
      for (const secret of [pem, JSON.stringify(claimsIssuer.publicJwk)]) {
        const hs = await new SignJWT(payload()).setProtectedHeader({ alg: 'HS256', kid: claimsIssuer.publicJwk.kid }).sign(new TextEncoder().encode(secret));
        await assertSame(hs, 'rejected');
      }
    });

    it('a key the issuer never published (unknown kid)', async function () {
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const forged = await new SignJWT(payload()).setProtectedHeader({ alg: 'RS256', kid: 'not-the-issuers' }).sign(privateKey);
      await assertSame(forged, 'rejected');
    });

    it('a key the issuer never published, under the issuer\'s own kid', async function () {
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const forged = await new SignJWT(payload()).setProtectedHeader({ alg: 'RS256', kid: claimsIssuer.publicJwk.kid }).sign(privateKey);
      await assertSame(forged, 'rejected');
    });

    it('a tampered payload under a genuine signature', async function () {
      const [header, body, signature] = good.split('.');
      const claims = JSON.parse(Buffer.from(body!, 'base64url').toString()) as { groups: string[] };
      claims.groups.push('admins');
      await assertSame(`${header}.${b64(claims)}.${signature}`, 'rejected');
    });

    it('a genuine token claiming another issuer in a re-encoded payload', async function () {
      const [header, body, signature] = good.split('.');
      const claims = JSON.parse(Buffer.from(body!, 'base64url').toString()) as { iss: string };
      claims.iss = emailIssuer.issuer;
      await assertSame(`${header}.${b64(claims)}.${signature}`, 'rejected');
    });

    for (const [what, token] of [
      ['garbage', 'not-a-token'],
      ['three dots of nothing', '..'],
      ['four segments', 'a.b.c.d'],
      ['JSON instead of a compact JWT', JSON.stringify({ iss: 'x' })],
      ['base64 garbage', `${b64('{"alg":"RS256"')}.${b64('{"iss":')}.AAAA`],
    ] as const) {
      it(what, async function () {
        await assertSame(token, 'rejected');
      });
    }

    it('a token of several megabytes never gets through', async function () {
      const huge = `${good.split('.')[0]}.${b64({ ...payload(), padding: 'x'.repeat(3 * 1024 * 1024) })}.AAAA`;
      const [straight, proxied] = await Promise.all([direct(huge).catch(() => ({ status: 0, body: 'connection closed' })), through(huge).catch(() => ({ status: 0, body: 'connection closed' }))]);
      assert.ok(straight.status >= 400 || straight.status === 0, `the API server refuses it (${straight.status})`);
      assert.ok(proxied.status >= 400 || proxied.status === 0, `the sidecar refuses it (${proxied.status})`);
      assert.notEqual(proxied.status, 201);
    });
  });

  describe('where the sidecar refuses on purpose: the identity provider does not hand out cluster-admin', function () {
    it('a groups claim with system:masters: the API server takes it, the sidecar\'s guard refuses', async function () {
      const token = await emailIssuer.idToken('masters-group');
      const straight = await direct(token);
      assert.equal(straight.status, 201);
      assert.ok(straight.user?.groups?.includes('system:masters'), 'the API server would make this person cluster-admin');
      const proxied = await through(token);
      assert.equal(proxied.status, 403);
      assert.match(statusMessage(proxied.body), /system:masters/);
    });

    it('a groups claim with another system: group is refused too', async function () {
      const token = await emailIssuer.idToken('system-group');
      assert.equal((await direct(token)).status, 201);
      const proxied = await through(token);
      assert.equal(proxied.status, 403);
      assert.match(statusMessage(proxied.body), /system:nodes/);
    });
  });

  describe('an issuer down past the max age of the keys held', function () {
    it('signs in, as the API server does, a person whose token the keys held verify; the API server runs the request as them; /metrics shows the failed refresh and the age, then the keys fetched again once the issuer is back', async function () {
      const token = await outageIssuer.idToken('olga');
      await assertSame(token, 'accepted');
      const before = await keyMetrics();
      assert.ok(before.successes >= 1, 'the first fetch is counted');
      await outageIssuer.stop();
      // The sidecar runs in this process: its clock moves past the max age (the token has an hour).
      const realNow = Date.now;
      Date.now = () => realNow() + JWKS_MAX_AGE_MS + 60_000;
      let response: RawResponse;
      let outage: KeyMetrics;
      try {
        assert.equal((await direct(token)).status, 201, 'the API server keeps its keys');
        response = await selfSubjectReview(sidecar.url, sidecar.servingCa.certPem, token);
        // That token started a background refresh, which the stopped issuer refuses.
        outage = await waitFor('the failed refresh in /metrics', async () => {
          const now = await keyMetrics();
          return now.failures > before.failures && now;
        });
      } finally {
        Date.now = realNow;
      }
      const proxied = outcome(response);
      assert.equal(proxied.status, 201, proxied.body);
      assert.equal(proxied.user?.username, 'outage:olga');
      const auditID = response.headers['audit-id'] as string;
      const [event] = await waitForAuditEvents(cp, (e) => e.auditID === auditID);
      assert.ok(event, 'the request reached the API server');
      assert.equal(event.user.username, sidecar.serviceAccountUsername);
      assert.equal(event.impersonatedUser?.username, 'outage:olga');
      assert.ok(outage.ageSeconds > JWKS_MAX_AGE_MS / 1000, `the keys held are ${outage.ageSeconds}s old`);

      await outageIssuer.start();
      // Past the cool-down of the failed refresh, and of the success cache that remembers the token.
      Date.now = () => realNow() + JWKS_MAX_AGE_MS + 60_000 + JWKS_REFETCH_COOLDOWN_MS + 5_000;
      try {
        assert.equal((await through(token)).status, 201);
        const back = await waitFor('the refresh once the issuer is back in /metrics', async () => {
          const now = await keyMetrics();
          return now.successes > before.successes && now;
        });
        assert.equal(back.failures, outage.failures);
        assert.ok(back.ageSeconds >= 0 && back.ageSeconds < 30, `the keys held are ${back.ageSeconds}s old`);
      } finally {
        Date.now = realNow;
      }
    });

    interface KeyMetrics {
      successes: number;
      failures: number;
      ageSeconds: number;
    }

    /** The outage issuer's key fetches and the age of its keys, from the sidecar's /metrics. */
    async function keyMetrics(): Promise<KeyMetrics> {
      const samples = await scrape(`${sidecar.opsUrl}/metrics`);
      const issuer = outageIssuer.issuer;
      return {
        successes: sampleValue(samples, 'chaperone_oidc_key_fetches_total', { issuer, outcome: 'success' }),
        failures: sampleValue(samples, 'chaperone_oidc_key_fetches_total', { issuer, outcome: 'failure' }),
        ageSeconds: sampleValue(samples, 'chaperone_oidc_keys_age_seconds', { issuer }),
      };
    }
  });

  describe('the legacy --oidc-* flags, with the API server\'s defaults', function () {
    it('prefixes a username from any claim but email with the issuer URL and #', async function () {
      const proxied = await through(await claimsIssuer.idToken('alice'), legacySidecar);
      assert.equal(proxied.status, 201, proxied.body);
      assert.deepEqual(proxied.user, { username: `${claimsIssuer.issuer}#alice`, groups: ['dev', 'ops', 'system:authenticated'] });
    });

    it('applies --oidc-required-claim', async function () {
      assert.equal((await through(await claimsIssuer.idToken('wrong-required-claim'), legacySidecar)).status, 401);
    });

    it('accepts only RS256 unless --oidc-signing-algs says otherwise, and only the flag\'s issuer', async function () {
      assert.equal((await through(await emailIssuer.idToken('carol'), legacySidecar)).status, 401);
    });
  });

  describe('the token webhook (pam_hook)', function () {
    it('gives the identity the API server gives, uid included', async function () {
      const token = await pamHook.token('jdoe', 'correct horse');
      assert.ok(token, 'pam_hook issued a token');
      const user = await assertSame(token, 'accepted');
      assert.deepEqual(user, { username: 'jdoe', uid: '1000', groups: ['jdoe', 'sudo', 'system:authenticated'] });
    });

    it('shows the API server the scoped service account impersonating jdoe, uid and all', async function () {
      const token = (await pamHook.token('jdoe', 'correct horse'))!;
      const response = await selfSubjectReview(sidecar.url, sidecar.servingCa.certPem, token);
      const auditID = response.headers['audit-id'] as string;
      const [event] = await waitForAuditEvents(cp, (e) => e.auditID === auditID);
      assert.ok(event, 'the request reached the API server');
      assert.equal(event.user.username, sidecar.serviceAccountUsername);
      assert.equal(event.impersonatedUser?.username, 'jdoe');
      assert.equal(event.impersonatedUser?.uid, '1000');
    });

    it('refuses a token pam_hook does not vouch for', async function () {
      await assertSame('eyJhbGciOiJIUzI1NiJ9.eyJ1c2VybmFtZSI6Impkb2UifQ.forged', 'rejected');
    });

    it('refuses root\'s system:masters from the webhook, where the API server would take it', async function () {
      const token = (await pamHook.token('root', 'toor'))!;
      assert.ok((await direct(token)).user?.groups?.includes('system:masters'));
      assert.equal((await through(token)).status, 403);
    });
  });
});

describe('cluster TokenReview (opt-in): service-account tokens through the sidecar', function () {
  this.timeout(120_000);
  const { cp, clients } = withSharedControlPlane();
  const sidecar = withSidecar({ flags: ['--cluster-token-review'] });
  const withoutReview = withSidecar();
  let namespace: string;

  before(async function () {
    const role = YAML.parse(await readFile(CLUSTER_TOKEN_REVIEW_ROLE, 'utf8')) as V1ClusterRole;
    await clients.rbac.createClusterRole({ body: role }).catch(() => undefined);
    await clients.rbac.createClusterRoleBinding({
      body: {
        metadata: { name: `chaperone-cluster-token-review-${sidecar.namespace}` },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata!.name! },
        subjects: [serviceAccountSubject(sidecar.namespace, sidecar.serviceAccount)],
      },
    });
    namespace = await createNamespace(clients, 'sa-tokens');
    await createServiceAccount(clients, namespace, 'reader');
  });

  const review = async (url: string, ca: string, token: string): Promise<Outcome> => outcome(await selfSubjectReview(url, ca, token));

  it('gives a TokenRequest token the identity the API server gives it: uid and credential id included', async function () {
    const token = await mintServiceAccountToken(clients, namespace, 'reader');
    const straight = await review(cp.url, cp.ca.certPem, token);
    const proxied = await review(sidecar.url, sidecar.servingCa.certPem, token);
    assert.equal(straight.status, 201, straight.body);
    assert.equal(proxied.status, 201, proxied.body);
    assert.deepEqual(proxied.user, straight.user);
    assert.equal(proxied.user?.username, `system:serviceaccount:${namespace}:reader`);
    assert.ok(proxied.user?.uid, 'the service account\'s uid travels as Impersonate-Uid');
    assert.match(proxied.user?.extra?.['authentication.kubernetes.io/credential-id']?.[0] ?? '', /^JTI=/);
  });

  it('carries the pod a bound token belongs to', async function () {
    const pod = await clients.core.createNamespacedPod({ namespace, body: { metadata: { name: 'bound' }, spec: { serviceAccountName: 'reader', containers: [{ name: 'c', image: 'busybox' }] } } });
    const response = await clients.core.createNamespacedServiceAccountToken({
      name: 'reader',
      namespace,
      body: { spec: { audiences: [], expirationSeconds: 3600, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: 'bound', uid: pod.metadata!.uid! } } },
    });
    const token = response.status!.token!;
    const straight = await review(cp.url, cp.ca.certPem, token);
    const proxied = await review(sidecar.url, sidecar.servingCa.certPem, token);
    assert.equal(proxied.status, 201, proxied.body);
    assert.deepEqual(proxied.user, straight.user);
    assert.deepEqual(proxied.user?.extra?.['authentication.kubernetes.io/pod-name'], ['bound']);
  });

  it('refuses the sidecar\'s own token', async function () {
    const own = (await readFile(sidecar.tokenFile, 'utf8')).trim();
    assert.equal((await review(sidecar.url, sidecar.servingCa.certPem, own)).status, 401);
  });

  it('refuses an invalid token with 401, and a sidecar without the option ignores service-account tokens', async function () {
    assert.equal((await review(sidecar.url, sidecar.servingCa.certPem, `${randomUUID()}.x.y`)).status, 401);
    const token = await mintServiceAccountToken(clients, namespace, 'reader');
    assert.equal((await review(withoutReview.url, withoutReview.servingCa.certPem, token)).status, 401);
  });
});
