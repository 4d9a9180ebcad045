// Red team 4's routes against the installation configuration, closed. Before the fixes: a Namespace
// annotation (set by anyone who may patch Namespaces) named the injector's CA keys as a namespace's
// configuration, and the injector granted the scoped account read on them and admitted pods whose
// sidecars wrote the key into their volume (the injector as a confused deputy); changing the
// annotation cut running pods off the Secret their arguments name; a webhook kubeconfig whose tokenFile
// named the scoped token's file made the sidecar send that token to the webhook; a YAML bomb was an
// internal error. Each test asserts the refusal and its reason; the audit log shows what ran.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { PatchStrategy, setHeaderOptions, type V1Container, type V1Pod } from '@kubernetes/client-node';
import YAML from 'yaml';
import { issueCertificate, type CertificateAndKey } from '../../lib/pki.js';
import { SECRETS } from '../../injector/provision/names.js';
import { grantClusterWide, kubectl, readAuditEvents, userSubject, waitForCanI } from '../../local-cluster/kube.js';
import { type PodSidecar, startPodSidecar } from '../../local-cluster/provisioned.js';
import { waitFor } from '../../local-cluster/wait.js';
import { injectedBaselineNamespace } from '../support/containment.js';
import { rawRequest } from '../../local-cluster/sidecar.js';
import { startRecordingServer, type RecordingServer } from '../support/recording-server.js';
import { withClusterLikeControlPlane, withInjector } from '../support/fixtures.js';

const SCOPED = 'chaperone-impersonator';
const CONFIG = 'chaperone-sidecar-config';
const IMAGE = 'ghcr.io/example/dashboard:1';
const TEST_NODE = 'chaperone-test-node';
const LABELLER = 'redteam4-patch-namespaces';
const SCOPED_TOKEN_PATH = '/var/run/secrets/chaperone/upstream/token';

const sidecarOf = (pod: V1Pod): V1Container => [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find((c) => c.name === 'chaperone')!;

describe('red team 4, closed: the installation configuration', function () {
  this.timeout(120_000);
  const { cp, clients } = withClusterLikeControlPlane();
  const { installation } = withInjector({ cp, clients });
  let ns = '';
  let webhook: RecordingServer;
  let labeller: CertificateAndKey;
  const sidecars: PodSidecar[] = [];

  const scopedAccount = (namespace: string) => `system:serviceaccount:${namespace}:${SCOPED}`;
  const canI = async (account: string, args: string[]) => (await kubectl(cp.adminKubeconfig, ['auth', 'can-i', ...args, '-n', installation.namespace, '--as', account])).stdout.trim();
  const installationSecret = (content: Record<string, string>, name = CONFIG) => ({ metadata: { name }, stringData: content });
  const servedPod = (namespace: string, name: string) =>
    clients.core.createNamespacedPod({ namespace, body: { metadata: { name }, spec: { nodeName: TEST_NODE, containers: [{ name: 'dashboard', image: IMAGE }] } } });
  const admission = (namespace: string) =>
    clients.core.createNamespacedPod({ namespace, body: { metadata: { name: `probe-${randomBytes(3).toString('hex')}` }, spec: { containers: [{ name: 'dashboard', image: IMAGE }] } }, dryRun: 'All' }).then(
      () => 'admitted',
      (err: Error & { body?: string }) => String(err.body ?? err.message),
    );

  before(async function () {
    this.timeout(15 * 60_000);
    ns = await injectedBaselineNamespace(installation, clients, 'redteam4closed');
    webhook = await startRecordingServer();
    await clients.core.createNamespacedSecret({ namespace: installation.namespace, body: installationSecret({ 'sidecar.yaml': YAML.stringify({ authenticationTokenWebhookConfigFile: 'webhook.kubeconfig' }), 'webhook.kubeconfig': webhook.kubeconfig() }) });
    await grantClusterWide(clients, 'redteam4-labeller', [{ apiGroups: [''], resources: ['namespaces'], verbs: ['get', 'patch'] }], [userSubject(LABELLER)]);
    await waitForCanI(cp, LABELLER, ['patch', 'namespaces']);
    labeller = issueCertificate(cp.ca, { commonName: LABELLER, usage: 'client', validitySeconds: 3600 });
  });

  after(async function () {
    for (const sidecar of sidecars) await sidecar.stop().catch(() => undefined);
    await webhook?.stop();
  });

  it("one who may only patch Namespaces points chaperone.dev/sidecar-config at the injector's CA keys: the injector neither grants nor admits them", async function () {
    const target = await installation.createLabelledNamespace('redteam4-ca');
    await waitFor('the Role that reads the installation configuration', async () => (await canI(scopedAccount(target), ['get', `secrets/${CONFIG}`])) === 'yes', 30_000, 250);
    assert.equal(await canI(LABELLER, ['create', 'rolebindings']), 'no', 'the labeller cannot grant this herself');
    const r = await rawRequest(`${cp.url}/api/v1/namespaces/${target}`, {
      method: 'PATCH',
      ca: cp.ca.certPem,
      cert: labeller,
      headers: { 'content-type': 'application/merge-patch+json' },
      body: JSON.stringify({ metadata: { annotations: { 'chaperone.dev/sidecar-config': SECRETS.identityCa } } }),
    });
    assert.equal(r.status, 200, r.body);
    const verdict = await waitFor('the injector to judge pods there', async () => {
      const outcome = await admission(target);
      return /not yet provisioned|ServiceUnavailable/.test(outcome) ? undefined : outcome;
    }, 60_000, 500);
    assert.match(verdict, new RegExp(`its sidecar would refuse the installation configuration \\(the namespace's chaperone.dev/sidecar-config\\): ${installation.namespace}/${SECRETS.identityCa}: not an installation configuration: it has no sidecar\\.yaml`));
    // The reconciler has seen the annotation (the Namespace's event) and granted nothing more.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assert.equal(await canI(scopedAccount(target), ['get', `secrets/${SECRETS.identityCa}`]), 'no', `the scoped account of ${target} may read the identity CA's key`);
    assert.equal(await canI(scopedAccount(target), ['get', `secrets/${CONFIG}`]), 'yes', 'the Secret its running pods name stays readable');
  });

  it('a Namespace annotation changed under running pods leaves their sidecars the Secret their arguments name: a restarted sidecar serves', async function () {
    const other = 'redteam4-other-config';
    await clients.core.createNamespacedSecret({ namespace: installation.namespace, body: installationSecret({ 'sidecar.yaml': YAML.stringify({ authenticationTokenWebhookConfigFile: 'webhook.kubeconfig' }), 'webhook.kubeconfig': webhook.kubeconfig() }, other) });
    const pod = await servedPod(ns, 'running');
    assert.ok(sidecarOf(pod).args!.includes(`--installation-config=${installation.namespace}/${CONFIG}`));
    sidecars.push(await startPodSidecar(cp, clients, pod));
    // A cluster administrator moves the namespace to another (valid) configuration, as docs/authentication.md describes.
    await clients.core.patchNamespace({ name: ns, body: [{ op: 'add', path: '/metadata/annotations', value: { 'chaperone.dev/sidecar-config': other } }] });
    await waitFor('the Role to follow the annotation', async () => (await canI(scopedAccount(ns), [`get`, `secrets/${other}`])) === 'yes', 30_000, 250);
    // The running pod's sidecar container restarts (an OOM kill, a node reboot): it reads what its arguments name.
    const restarted = await Promise.race([
      startPodSidecar(cp, clients, pod).then((s) => {
        sidecars.push(s);
        return 'serving';
      }),
      new Promise<string>((resolve) => setTimeout(() => resolve('still waiting for its installation configuration'), 15_000)),
    ]);
    // SAFE: the sidecar of a running pod can still read the Secret it was admitted with.
    assert.equal(restarted, 'serving');
  });

  it('a webhook kubeconfig whose tokenFile names the scoped token, or that runs an exec plugin, is refused by the injector and by a running sidecar', async function () {
    const fresh = await installation.createLabelledNamespace('redteam4-tokenfile');
    await waitFor('the default service account', () => clients.core.readNamespacedServiceAccount({ name: 'default', namespace: fresh }).then(() => true));
    const withExec = YAML.parse(webhook.kubeconfig()) as { users: { user: Record<string, unknown> }[] };
    withExec.users[0]!.user = { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: '/nodejs/bin/node', args: ['-e', 'process.stdout.write("{}")'], interactiveMode: 'Never' } };
    const variants: [string, string, RegExp][] = [
      ['redteam4-tokenfile', webhook.kubeconfig({ token: 'placeholder', tokenFile: SCOPED_TOKEN_PATH }), /webhook\.kubeconfig: user\.tokenFile: "\/var\/run\/secrets\/chaperone\/upstream\/token" is not a key of the installation configuration/],
      ['redteam4-exec', YAML.stringify(withExec), /webhook\.kubeconfig: user\.exec: an installation configuration runs no credential plugin/],
    ];
    for (const [name, kubeconfig, refusal] of variants) {
      await clients.core.createNamespacedSecret({ namespace: installation.namespace, body: installationSecret({ 'sidecar.yaml': YAML.stringify({ authenticationTokenWebhookConfigFile: 'webhook.kubeconfig' }), 'webhook.kubeconfig': kubeconfig }, name) });
      await clients.core.patchNamespace({ name: fresh, body: { metadata: { annotations: { 'chaperone.dev/sidecar-config': name } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
      const verdict = await waitFor('the injector to judge pods there', async () => {
        const outcome = await admission(fresh);
        return /not yet provisioned|ServiceUnavailable/.test(outcome) || !outcome.includes(name) ? undefined : outcome;
      }, 60_000, 500);
      assert.match(verdict.startsWith('{') ? (JSON.parse(verdict) as { message: string }).message : verdict, refusal);
    }
    // A running sidecar given such a version (the path where this test's kubelet wrote its token) keeps the one it has.
    const sidecar = sidecars[0] ?? (await startPodSidecar(cp, clients, await servedPod(ns, 'tokenfile')));
    if (!sidecars.includes(sidecar)) sidecars.push(sidecar);
    const local = path.join(sidecar.mounts.get(path.dirname(SCOPED_TOKEN_PATH))!, 'token');
    const refused = async () => (await (await fetch(`${sidecar.opsUrl}/metrics`)).text()).split('\n').find((line) => line.startsWith('chaperone_installation_config_changes_total{outcome="refused"}')) ?? 'none';
    const before = await refused();
    const original = await clients.core.readNamespacedSecret({ name: CONFIG, namespace: installation.namespace });
    await clients.core.replaceNamespacedSecret({ name: CONFIG, namespace: installation.namespace, body: installationSecret({ 'sidecar.yaml': YAML.stringify({ authenticationTokenWebhookConfigFile: 'webhook.kubeconfig' }), 'webhook.kubeconfig': webhook.kubeconfig({ token: 'placeholder', tokenFile: local }) }) });
    try {
      await waitFor('the sidecar to refuse it', async () => (await refused()) !== before, 20_000, 250);
      const seen = webhook.requests.length;
      await rawRequest(`${sidecar.url}/api/v1/namespaces/${ns}/pods`, { ca: sidecar.dashboard.caPem, headers: { authorization: 'Bearer someones-opaque-token' } });
      await waitFor('the webhook to be asked', () => Promise.resolve(webhook.requests.length > seen));
      const scoped = (await readFile(local, 'utf8')).trim();
      assert.ok(!webhook.requests.slice(seen).some((q) => q.headers.authorization === `Bearer ${scoped}`), 'the webhook received the scoped token');
    } finally {
      await clients.core.replaceNamespacedSecret({ name: CONFIG, namespace: installation.namespace, body: { metadata: { name: CONFIG }, data: original.data! } });
    }
  });

  it('a YAML bomb in the installation configuration is refused naming the file and counted as refused, not an internal error', async function () {
    const bomb = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]', ...Array.from({ length: 8 }, (_, i) => `a${i + 1}: &a${i + 1} [${Array(9).fill(`*a${i}`).join(',')}]`), 'anonymous: *a8'].join('\n');
    await clients.core.createNamespacedSecret({ namespace: installation.namespace, body: installationSecret({ 'sidecar.yaml': bomb }, 'redteam4-bomb') });
    const target = await installation.createLabelledNamespace('redteam4-bomb');
    await clients.core.patchNamespace({ name: target, body: [{ op: 'add', path: '/metadata/annotations', value: { 'chaperone.dev/sidecar-config': 'redteam4-bomb' } }] });
    const verdict = await waitFor('the injector to judge pods there', async () => {
      const outcome = await admission(target);
      return /not yet provisioned|ServiceUnavailable/.test(outcome) ? undefined : outcome;
    }, 60_000, 500);
    assert.match(verdict, /its sidecar would refuse the installation configuration .*sidecar\.yaml/);
  });

  it('the audit log: no scoped account ever read a Secret of the injector\'s namespace but an installation configuration', async function () {
    const reads = (await readAuditEvents(cp)).filter((e) => e.stage === 'ResponseComplete' && e.user.username.endsWith(`:${SCOPED}`) && e.objectRef?.resource === 'secrets' && (e.responseStatus?.code ?? 0) < 300);
    assert.ok(reads.length > 0, 'the sidecars read their configuration');
    const names = new Set(reads.map((e) => e.objectRef?.name ?? `(list ${e.requestURI})`));
    assert.deepEqual([...names].filter((name) => !name.startsWith('(list') && !name.startsWith('chaperone-sidecar-config') && !name.startsWith('redteam4-')), []);
    assert.ok(!names.has(SECRETS.identityCa));
  });
});
