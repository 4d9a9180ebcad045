// The sidecar's dependencies failing under it, each with the behaviour it owes its users asserted:
// the SubjectAccessReview slow (refuse, never forward), the OpenID provider down (held keys keep
// working however old, a new kid is refused), the token webhook slow or answering garbage, the
// token file empty or replaced under load, the serving certificate and both CAs rotated under load.
// A stand-in API server (test/support/fake-upstream.ts) records what was forwarded. The API server
// itself going away is in apiserver-restart.test.ts; docs/reliability.md lists every fault and the
// test that covers it.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createCA, issueCertificate, type CertificateAndKey } from '../../lib/pki.js';
import { startPamHook, type PamHook } from '../../local-cluster/identity/pam-hook.js';
import { JWKS_MAX_AGE_MS } from '../../sidecar/authn/jwt/remote-keys.js';
import { JWKS_REFETCH_COOLDOWN_MS } from '../../sidecar/authn/jwt/verify.js';
import { authenticationConfiguration, startTestIssuer, type TestIssuer } from './support/issuer.js';
import { call, loops, type Answer } from './support/load.js';
import { size } from './support/knobs.js';
import { STAND_IN_TOKEN, withStandIn } from './support/stand-in.js';

const TOKEN = STAND_IN_TOKEN;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;
/** The sidecar polls its files every second; a change is in force after that and a little more. */
const RELOAD_MS = 1500;

let serial = 0;
const fresh = (what: string) => `/api/v1/namespaces/team/configmaps/${what}-${serial++}`;

function assertStatus(answer: Answer, code: number): void {
  assert.equal(answer.status, code, `${answer.status} ${answer.error ?? answer.body}`);
  assert.equal((JSON.parse(answer.body) as { kind: string }).kind, 'Status');
}

describe('hardening: faults in what the sidecar depends on', function () {
  this.timeout(120_000);

  describe('the SubjectAccessReview slow', function () {
    const r = withStandIn({ flags: ['--upstream-timeout=500ms'] });

    it('refuses with 503 and forwards nothing, while people with a decision already made are served', async function () {
      const known = fresh('known');
      assert.equal((await r.get(known)).status, 200);
      r.fake.reviewDelayMs = 1200;
      try {
        const slow = fresh('slow');
        const started = Date.now();
        const [refused, served] = await Promise.all([r.get(slow), r.get(known)]);
        assertStatus(refused, 503);
        assert.ok(Date.now() - started < 1100, 'refused within --upstream-timeout, not when the review came back');
        assert.equal(served.status, 200, 'a cached decision still serves');
        await sleep(1300); // the review's late answer arrives
        assert.equal(r.forwarded(slow), false, 'nothing was forwarded without a decision');
      } finally {
        r.fake.reviewDelayMs = 0;
      }
      assert.equal((await r.get(fresh('after'))).status, 200, 'served again once reviews are quick');
    });
  });

  describe('the OpenID provider down', function () {
    let issuer: TestIssuer;
    let dir: string;
    let config: string;
    const realNow = Date.now;

    before(async function () {
      issuer = await startTestIssuer('RS256');
      dir = await mkdtemp(path.join(tmpdir(), 'chaperone-hardening-oidc-'));
      config = path.join(dir, 'authentication-config.yaml');
      await writeFile(config, authenticationConfiguration([issuer]));
    });
    const r = withStandIn(() => ({ flags: [`--authentication-config=${config}`] }));
    after(async function () {
      Date.now = realNow;
      await issuer?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    it('keeps accepting tokens of keys it holds however long it is down, refuses a new kid, and once back knows the new kid', async function () {
      const before = await issuer.sign({ sub: 'carol', groups: ['dev'] });
      const get = (p: string, token: string) => r.get(p, { token, cert: null });
      assert.equal((await get(fresh('oidc'), before)).status, 200);
      await issuer.stop();
      assert.equal((await get(fresh('oidc-down'), before)).status, 200, 'held keys keep working');
      const newKid = await issuer.rotate();
      const unknown = await issuer.sign({ sub: 'carol', groups: ['dev'] }, newKid);
      const refused = fresh('new-kid');
      assertStatus(await get(refused, unknown), 401);
      assert.equal(r.forwarded(refused), false);
      // Time moves on past the keys' max age (the token has an hour): the sidecar tries to fetch them
      // again in the background, fails, and keeps verifying with the keys it holds.
      Date.now = () => realNow() + JWKS_MAX_AGE_MS + 60_000;
      assert.equal((await get(fresh('stale'), before)).status, 200, 'keys past their max age still verify while the issuer is down');
      assert.equal((await get(fresh('stale-again'), before)).status, 200);
      await issuer.start();
      // The last fetch failed within the cool-down: the next may start once it has passed.
      Date.now = () => realNow() + JWKS_MAX_AGE_MS + 60_000 + JWKS_REFETCH_COOLDOWN_MS;
      assert.equal((await get(fresh('back-new'), unknown)).status, 200, 'the provider back: the new kid is fetched');
      assert.equal((await get(fresh('back'), before)).status, 200, 'and the old one still published');
    });
  });

  describe('the token webhook slow or answering garbage', function () {
    let hook: PamHook;
    let dir: string;
    let kubeconfig: string;
    let user = 0;

    before(async function () {
      hook = await startPamHook(Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`user${i}`, { password: 'pw', uid: String(1000 + i), groups: ['staff'] }])));
      dir = await mkdtemp(path.join(tmpdir(), 'chaperone-hardening-webhook-'));
      kubeconfig = path.join(dir, 'pamhook.kubeconfig');
      await writeFile(kubeconfig, hook.kubeconfig());
    });
    const r = withStandIn(() => ({
      flags: [
        `--authentication-token-webhook-config-file=${kubeconfig}`,
        '--authentication-token-webhook-timeout=500ms',
        '--authentication-token-webhook-cache-authorized-ttl=1ms',
        '--authentication-token-webhook-cache-unauthorized-ttl=1ms',
      ],
    }));
    after(async function () {
      await hook?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    for (const mode of ['slow', 'garbage', 'error', 'not-a-tokenreview'] as const) {
      it(`${mode}: refuses its tokens with 401, forwards nothing, keeps serving everyone else, and forgets the failure`, async function () {
        const token = (await hook.token(`user${user++}`, 'pw'))!;
        hook.mode = mode;
        try {
          const p = fresh(`webhook-${mode}`);
          const started = Date.now();
          const [refused, other] = await Promise.all([r.get(p, { token, cert: null }), r.get(fresh('cert-person'))]);
          assertStatus(refused, 401);
          assert.equal((JSON.parse(refused.body) as { message: string }).message, 'Unauthorized', 'the refusal does not say why');
          assert.ok(Date.now() - started < 2500, 'refused within the webhook timeout');
          assert.equal(other.status, 200, 'people with certificates are served meanwhile');
          assert.equal(r.forwarded(p), false);
        } finally {
          hook.mode = 'ok';
        }
        assert.equal((await r.get(fresh('webhook-ok'), { token, cert: null })).status, 200, 'accepted once the webhook answers');
      });
    }
  });

  describe('the files of a running sidecar: the token, the serving certificate, the CAs', function () {
    const r = withStandIn();

    /** Asks (fresh paths) until the answer is the one wanted, within the reload time; returns the path that got it. */
    async function until(status: number, what: string): Promise<string> {
      const deadline = Date.now() + RELOAD_MS + 1000;
      for (;;) {
        const p = fresh(what);
        if ((await r.get(p)).status === status) return p;
        if (Date.now() > deadline) assert.fail(`no ${status} within ${RELOAD_MS + 1000} ms`);
        await sleep(100);
      }
    }

    for (const [what, content] of [
      ['empty', ''],
      ['only whitespace', '\n  \n'],
    ] as const) {
      it(`token file ${what}: refuses with 503 and forwards nothing; serves again once a token is back`, async function () {
        await writeFile(r.sidecar.tokenFile, content);
        const p = await until(503, 'no-token');
        assertStatus(await r.get(p), 503);
        assert.equal(r.forwarded(p), false);
        await writeFile(r.sidecar.tokenFile, TOKEN);
        await until(200, 'token-back');
      });
    }

    it('token file replaced again and again under load: every request served, each with one whole token', async function () {
      const tokens = Array.from({ length: 6 }, (_, i) => `scoped-token-rotation-${i}`);
      const traffic = loops(6, () => r.get(fresh('rotating')));
      for (const token of tokens) {
        await writeFile(`${r.sidecar.tokenFile}.next`, token);
        await rename(`${r.sidecar.tokenFile}.next`, r.sidecar.tokenFile); // as the kubelet swaps it
        await sleep(size(400, 1500));
      }
      await sleep(RELOAD_MS);
      const results = await traffic.stop();
      assert.ok(results.length > 20, `only ${results.length} requests`);
      assert.deepEqual([...new Set(results.map((a) => a.status))], [200], results.find((a) => a.status !== 200)?.body);
      const sent = new Set(r.fake.seen.filter((s) => s.url.includes('/rotating-')).map((s) => s.headers.authorization));
      for (const authorization of sent) assert.ok([TOKEN, ...tokens].some((t) => authorization === `Bearer ${t}`), `sent ${authorization}`);
      assert.ok(sent.has(`Bearer ${tokens.at(-1)}`), 'the last token is in use');
      await writeFile(r.sidecar.tokenFile, TOKEN);
    });

    it('serving certificate and CAs rotated under load: drops no request: a renewed serving certificate, a new serving CA, an identity CA added and the old one removed', async function () {
      const { sidecar } = r;
      const file = (name: string) => path.join(sidecar.dir, name);
      const newServingCa = createCA({ commonName: 'chaperone-hardening-serving-ca-2' });
      const trusted = `${sidecar.servingCa.certPem}${newServingCa.certPem}`; // what the dashboard trusts during a rollover
      const newIdentityCa = createCA({ commonName: 'chaperone-hardening-identity-ca-2' });
      const bob = issueCertificate(newIdentityCa, { commonName: 'bob', organizations: ['dev'], usage: 'client' });
      const alice = r.alice;
      const traffic = loops(6, (worker) => call({ port: sidecar.port, path: fresh('rotation'), ca: trusted, cert: worker % 2 === 0 ? alice : bob }).then((a) => ({ ...a, who: worker % 2 === 0 ? 'alice' : 'bob', at: Date.now() })));
      const phase = async (write: () => Promise<void>) => {
        const at = Date.now();
        await write();
        await sleep(RELOAD_MS + size(300, 5000));
        return at;
      };
      const renew = (ca: CertificateAndKey) => issueCertificate(ca, { commonName: 'chaperone', usage: 'server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
      const renewed = renew(sidecar.servingCa);
      const rolled = renew(newServingCa);
      await sleep(500);
      // A renewal written the way a careless tool writes it: the certificate, a pause, then its key.
      const renewedAt = await phase(async () => {
        await writeFile(file('tls.crt'), renewed.certPem);
        await sleep(300);
        await writeFile(file('tls.key'), renewed.keyPem);
      });
      const rolledAt = await phase(async () => {
        await writeFile(file('tls.key'), rolled.keyPem);
        await writeFile(file('tls.crt'), rolled.certPem);
      });
      const addedAt = await phase(() => writeFile(file('identity-ca.crt'), `${sidecar.identityCa.certPem}${newIdentityCa.certPem}`));
      const removedAt = await phase(() => writeFile(file('identity-ca.crt'), newIdentityCa.certPem));
      const results = await traffic.stop();

      const failed = results.filter((a) => a.status === 0 || a.status >= 500);
      assert.deepEqual(failed.map((a) => a.error ?? a.body), [], 'no connection failed, nothing answered 5xx');
      const settled = (from: number) => results.filter((a) => a.at > from + RELOAD_MS);
      for (const [from, to, pem] of [
        [renewedAt, rolledAt, renewed.certPem],
        [rolledAt, Infinity, rolled.certPem],
      ] as const) {
        const window = settled(from).filter((a) => a.at < to);
        assert.ok(window.length > 0 && window.every((a) => a.served === fingerprint(pem)), 'new connections get the new serving certificate');
      }
      const byWho = (who: string, from: number, to: number) => settled(from).filter((a) => a.who === who && a.at < to);
      assert.ok(byWho('alice', renewedAt, removedAt).every((a) => a.status === 200), 'alice is served while her CA is trusted');
      assert.ok(byWho('bob', addedAt, Infinity).every((a) => a.status === 200), 'bob is served once his CA is trusted');
      assert.ok(byWho('bob', -Infinity, addedAt).every((a) => a.status === 401), 'and refused before');
      const aliceAfter = byWho('alice', removedAt, Infinity);
      assert.ok(aliceAfter.length > 0 && aliceAfter.every((a) => a.status === 401), 'alice is refused once her CA is gone');
    });
  });
});
