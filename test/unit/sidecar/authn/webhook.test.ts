import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { loadWebhookKubeconfig, WebhookTokenAuthenticator, type TokenReviewVersion } from '../../../../sidecar/authn/webhook.js';
import { startPamHook, type PamHook } from '../../../fixtures/authn/pam-hook.js';

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
    ['slow', /could not be asked: no answer from .* within 300ms/],
  ];
  for (const [mode, reason] of failures) {
    it(`fails, never succeeds, and caches nothing when the webhook is ${mode}`, async function () {
      const webhook = authenticator({ timeoutMs: 300 });
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
    const target = { ...loadWebhookKubeconfig(kubeconfig), server: 'https://127.0.0.1:1/authenticate' };
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
    assert.equal(loadWebhookKubeconfig(await write('relative.kubeconfig', relative)).ca?.toString(), hook.ca.certPem);
  });
});
