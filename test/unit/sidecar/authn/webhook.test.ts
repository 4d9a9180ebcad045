import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { isReadableContentType, readAnswer, verdictOf, WebhookTokenAuthenticator } from '../../../../sidecar/authn/webhook.js';
import { loadWebhookKubeconfig, type TokenReviewVersion } from '../../../../lib/sidecar-config/tokens.js';
import { startPamHook, type PamHook } from '../../../../local-cluster/identity/pam-hook.js';

describe('sidecar/authn/webhook: a token webhook that speaks TokenReview (pam_hook)', function () {
  this.timeout(20_000);
  let hook: PamHook;
  let dir: string;
  let kubeconfig: string;

  before(async function () {
    hook = await startPamHook({ jdoe: { password: 'pw', uid: '1000', groups: ['jdoe', 'sudo'] } });
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-webhook-'));
    kubeconfig = path.join(dir, 'webhook.kubeconfig');
    await writeFile(kubeconfig, hook.kubeconfig());
  });

  after(async function () {
    await hook?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  beforeEach(function () {
    hook.mode = 'ok';
    hook.reviews = 0;
  });

  function authenticator(options: { version?: TokenReviewVersion; timeoutMs?: number; authorizedTtlMs?: number; unauthorizedTtlMs?: number } = {}) {
    return new WebhookTokenAuthenticator({
      target: loadWebhookKubeconfig(kubeconfig),
      version: options.version ?? 'v1beta1',
      timeoutMs: options.timeoutMs ?? 2000,
      audiences: [],
      cache: { authorizedTtlMs: options.authorizedTtlMs ?? 120_000, unauthorizedTtlMs: options.unauthorizedTtlMs ?? 30_000 },
    });
  }

  for (const version of ['v1', 'v1beta1'] as const) {
    it(`turns an authenticated ${version} TokenReview into the identity, uid included`, async function () {
      const webhook = authenticator({ version });
      const result = await webhook.authenticateToken((await hook.token('jdoe', 'pw'))!);
      assert.deepEqual(result, { outcome: 'success', authenticated: { method: 'webhook', identity: { username: 'jdoe', uid: '1000', groups: ['jdoe', 'sudo'], extra: {} } } });
      webhook.close();
    });
  }

  it('caches answers by token for their TTLs, and merges identical reviews in flight', async function () {
    const webhook = authenticator();
    const token = (await hook.token('jdoe', 'pw'))!;
    await Promise.all(Array.from({ length: 10 }, () => webhook.authenticateToken(token)));
    assert.equal(hook.reviews, 1, 'ten concurrent requests, one review');
    await webhook.authenticateToken(token);
    assert.equal(hook.reviews, 1, 'the acceptance is cached');
    await webhook.authenticateToken('bad-token');
    await webhook.authenticateToken('bad-token');
    assert.equal(hook.reviews, 2, 'the refusal is cached too');
    webhook.close();
  });

  it('does not cache a refusal beyond its own TTL', async function () {
    const webhook = authenticator({ unauthorizedTtlMs: 50 });
    await webhook.authenticateToken('bad-token');
    await new Promise((resolve) => setTimeout(resolve, 120));
    await webhook.authenticateToken('bad-token');
    assert.equal(hook.reviews, 2);
    webhook.close();
  });

  const failures: [PamHook['mode'], RegExp][] = [
    ['error', /could not be asked: the webhook answered 500/],
    ['garbage', /could not be asked: the webhook answered 200 with a body that is not JSON/],
    ['not-a-tokenreview', /could not be asked: the answer is not an authentication.k8s.io TokenReview/],
    ['slow', /could not be asked: no answer from .* within 1500ms/],
  ];
  for (const [mode, reason] of failures) {
    it(`fails, never succeeds, and caches nothing when the webhook is ${mode}`, async function () {
      // Half the slow webhook's 3 s, and long enough for a busy machine to answer the good attempt in.
      const webhook = authenticator({ timeoutMs: 1500 });
      const token = (await hook.token('jdoe', 'pw'))!;
      hook.mode = mode;
      const result = await webhook.authenticateToken(token);
      assert.equal(result.outcome, 'failure');
      assert.match((result as { reason: string }).reason, reason);
      hook.mode = 'ok';
      assert.equal((await webhook.authenticateToken(token)).outcome, 'success', 'the error was not cached');
      webhook.close();
    });
  }

  it('fails when the webhook is down', async function () {
    const target = { ...loadWebhookKubeconfig(kubeconfig), url: new URL('https://127.0.0.1:1/authenticate') };
    const webhook = new WebhookTokenAuthenticator({ target, version: 'v1', timeoutMs: 500, audiences: [], cache: { authorizedTtlMs: 1000, unauthorizedTtlMs: 1000 } });
    const result = await webhook.authenticateToken('any');
    assert.equal(result.outcome, 'failure');
    assert.match((result as { reason: string }).reason, /ECONNREFUSED/);
    webhook.close();
  });

  it('reads the kubeconfig as client-go does, and refuses what it cannot use, naming the file', async function () {
    const config = YAML.parse(hook.kubeconfig()) as { clusters: { cluster: Record<string, unknown> }[]; 'current-context'?: string };
    const write = async (name: string, content: object) => {
      const file = path.join(dir, name);
      await writeFile(file, YAML.stringify(content));
      return file;
    };
    const insecure = structuredClone(config);
    insecure.clusters[0]!.cluster['insecure-skip-tls-verify'] = true;
    assert.throws(() => loadWebhookKubeconfig(path.join(dir, 'missing')), /missing: cannot read: ENOENT/);
    const insecureFile = await write('insecure.kubeconfig', insecure);
    assert.throws(() => loadWebhookKubeconfig(insecureFile), /insecure-skip-tls-verify/);
    const plain = structuredClone(config);
    plain.clusters[0]!.cluster.server = 'http://127.0.0.1/authenticate';
    const httpFile = await write('http.kubeconfig', plain);
    assert.throws(() => loadWebhookKubeconfig(httpFile), /must be an https URL/);
    const relative = structuredClone(config);
    delete relative.clusters[0]!.cluster['certificate-authority-data'];
    relative.clusters[0]!.cluster['certificate-authority'] = 'ca.crt';
    await writeFile(path.join(dir, 'ca.crt'), hook.ca.certPem);
    assert.equal(loadWebhookKubeconfig(await write('relative.kubeconfig', relative)).tls.ca?.toString(), hook.ca.certPem);
  });
});

describe('sidecar/authn/webhook: an answer judged as the API server judges it (test/hardening/identity-parity.test.ts checks each against a real one)', function () {
  const user = { username: 'jdoe', uid: '1000', groups: ['dev'], extra: { 'example.com/team': ['blue'] } };
  const identity = { username: 'jdoe', uid: '1000', groups: ['dev'], extra: { 'example.com/team': ['blue'] } };
  const answer = (body: string, status = 200, contentType = 'application/json') => ({ status, contentType, body: Buffer.from(body) });
  const judge = (body: string, version: TokenReviewVersion = 'v1', audiences: string[] = []) =>
    verdictOf(readAnswer(answer(body)), { version, audiences, from: 'webhook' });
  const accepted = (body: string, version: TokenReviewVersion = 'v1', audiences: string[] = []) => assert.deepEqual(judge(body, version, audiences), { authenticated: true, identity });
  const failed = (body: string, pattern: RegExp, version: TokenReviewVersion = 'v1') => assert.throws(() => judge(body, version), pattern);
  const status = JSON.stringify({ authenticated: true, user });

  it('takes a TokenReview of the version asked only, kind and version defaulted when missing, and found in any letter case', function () {
    for (const version of ['v1', 'v1beta1'] as const) {
      const other = version === 'v1' ? 'v1beta1' : 'v1';
      accepted(`{"apiVersion":"authentication.k8s.io/${version}","kind":"TokenReview","status":${status}}`, version);
      failed(`{"apiVersion":"authentication.k8s.io/${other}","kind":"TokenReview","status":${status}}`, /not an authentication.k8s.io TokenReview of/, version);
      for (const head of ['', '"apiVersion":null,"kind":null,', '"apiVersion":"authentication.k8s.io/",', '"apiVersion":"/",', `"apiVersion":"authentication.k8s.io/${other}","APIVERSION":"authentication.k8s.io/${version}",`]) {
        accepted(`{${head}"status":${status}}`, version);
      }
      for (const head of [`"apiVersion":"${version}",`, `"ApiVersion":"authentication.k8s.io/${other}",`, '"kind":"tokenreview",', '"kind":"TokenReview","\u212aind":"Status",', `"apiVersion":"authentication.k8s.io/${version}/x",`]) {
        failed(`{${head}"status":${status}}`, /TokenReview|GroupVersion/, version);
      }
    }
    failed(`{"kind":"TokenReview","Kind":7,"status":${status}}`, /Kind is not a string/);
  });

  it('reads the rest with exact names and Go types: unknown fields ignored, null the zero value, a wrong type an error', function () {
    accepted(`{"status":{"authenticated":true,"error":"ignored","mood":"fine","user":${JSON.stringify({ ...user, shoeSize: 44 })}},"metadata":{"creationTimestamp":null,"name":"x"}}`);
    assert.deepEqual(judge(`{"status":{"Authenticated":true,"user":${JSON.stringify(user)}}}`), { authenticated: false, reason: 'the token was not authenticated' });
    assert.deepEqual(judge('{"status":{"authenticated":false,"error":"no such token"}}'), { authenticated: false, reason: 'the token was not authenticated: no such token' });
    assert.deepEqual(judge('{"status":null}'), { authenticated: false, reason: 'the token was not authenticated' });
    assert.deepEqual(judge(`{"status":{"authenticated":true,"user":${JSON.stringify({ ...user, uid: null, groups: null, extra: null })}}}`), { authenticated: true, identity: { username: 'jdoe', groups: [], extra: {} } });
    for (const [body, pattern] of [
      ['{"status":{"authenticated":"true"}}', /authenticated is not a boolean/],
      ['{"status":"yes"}', /status is not an object/],
      [`{"status":{"authenticated":true,"user":${JSON.stringify({ ...user, uid: 1000 })}}}`, /uid is not a string/],
      [`{"status":{"authenticated":true,"user":${JSON.stringify({ ...user, groups: 'dev' })}}}`, /groups is not a list/],
      [`{"status":{"authenticated":true,"user":${JSON.stringify({ ...user, extra: { k: 'v' } })}}}`, /extra\["k"\] is not a list/],
      ['{"status":{"authenticated":true,"audiences":"x","user":{"username":"jdoe"}}}', /audiences is not a list/],
      ['{"spec":{"token":5},"status":{"authenticated":true,"user":{"username":"jdoe"}}}', /spec.token is not a string/],
      ['{"metadata":{"labels":"a=b"},"status":{"authenticated":true,"user":{"username":"jdoe"}}}', /metadata.labels/],
      ['{"metadata":{"generation":1},"status":{"authenticated":true,"user":{"username":"jdoe"}}}', /metadata.generation/],
    ] as const) {
      failed(body, pattern);
    }
  });

  it('refuses what the API server would take but chaperone cannot impersonate alike', function () {
    for (const [bad, pattern] of [
      [{ uid: '1' }, /no username/],
      [{ Username: 'root', groups: ['dev'] }, /no username/],
      [{ ...user, groups: ['dev', null] }, /group without a name/],
      [{ ...user, groups: ['dev', ''] }, /group without a name/],
      [{ ...user, extra: { k: null } }, /extra "k" no values/],
      [{ ...user, extra: { k: [] } }, /extra "k" no values/],
    ] as const) {
      failed(`{"status":{"authenticated":true,"user":${JSON.stringify(bad)}}}`, pattern);
    }
    failed(`{"status":${status},"status":{"user":{"username":"jdoe"}}}`, /"status" appears twice/);
    failed('{"status":{"authenticated":true,"user":{"username":"jdoe\\ud800"}}}', /unpaired surrogate/);
    failed(`{"status":${status},"weight":1e400}`, /beyond float64/);
  });

  it('judges audiences first, as the API server does: one asked for, or none named', function () {
    const named = (audiences: unknown) => `{"status":{"authenticated":true,"audiences":${JSON.stringify(audiences)},"user":${JSON.stringify(user)}}}`;
    accepted(named(['api', 'x']), 'v1', ['api']);
    accepted(named([]), 'v1', ['api']);
    assert.equal(judge(named(['elsewhere']), 'v1', ['api']).authenticated, false);
    assert.equal(judge(`{"status":{"authenticated":false,"audiences":["elsewhere"]}}`, 'v1', ['api']).authenticated, false);
    const unasked = judge(named(['api']));
    assert.ok(!unasked.authenticated && /no audiences were asked for/.test(unasked.reason));
    assert.deepEqual(verdictOf(JSON.parse(named(['api'])), { version: 'v1', audiences: [], from: 'cluster' }), { authenticated: true, identity });
    // The cluster's own answers carry managedFields; a webhook's metadata is checked.
    const managed = `{"metadata":{"managedFields":[{"manager":"unknown","time":"2026-01-01T00:00:00Z"}]},"status":{"authenticated":true,"user":${JSON.stringify(user)}}}`;
    assert.deepEqual(verdictOf(JSON.parse(managed), { version: 'v1', audiences: [], from: 'cluster' }), { authenticated: true, identity });
    assert.throws(() => judge(managed), /metadata.managedFields/);
  });

  it('reads the body of a 200 to 206 only, JSON only, under a Content-Type Go can parse', function () {
    const body = `{"status":${status}}`;
    for (const code of [200, 201, 203, 206]) assert.ok(readAnswer(answer(body, code)));
    for (const code of [207, 299, 302, 401, 500]) assert.throws(() => readAnswer(answer(body, code)), new RegExp(`answered ${code}`));
    assert.throws(() => readAnswer(answer(`\ufeff${body}`)), /not a JSON object/);
    assert.throws(() => readAnswer(answer(`apiVersion: authentication.k8s.io/v1\nkind: TokenReview\n`)), /not a JSON object/);
    assert.ok(readAnswer(answer(` \n${body}`)));
    for (const type of ['', 'application/json', 'text/plain; charset=utf-8', 'application/json;', 'application/json; charset="utf-8"', 'text', 'Application/JSON ; A=1;b=2']) assert.ok(isReadableContentType(type), type);
    for (const type of ['application/json; charset', 'application/json; a=1; A=2', 'application/json;;', '/json', 'application/', 'application/json x', 'a b']) assert.ok(!isReadableContentType(type), type);
  });
});
