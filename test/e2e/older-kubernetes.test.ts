// The oldest Kubernetes minor the docs claim (docs/compatibility.md), built from the Go module proxy
// like the pinned release (local-cluster/binaries.ts, OLDEST_KUBERNETES_VERSION), on a control plane
// of its own: the base and the classic-impersonation component apply as `kubectl apply -k` applies
// them, its ValidatingAdmissionPolicies are enforced by that API server, the injector (its Deployment's
// arguments, as its service account) finds no constrained impersonation there and provisions for the
// classic verb, an injected pod's sidecar forwards as the person, and `chaperone doctor` is clean.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import {
  AdmissionregistrationV1Api,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesObject,
  type V1Deployment,
  type V1MutatingWebhookConfiguration,
  type V1Pod,
  type V1ValidatingAdmissionPolicy,
} from '@kubernetes/client-node';
import type { Report } from '../../cli/doctor/findings.js';
import type { RunningInjector } from '../../injector/injector.js';
import { OLDEST_KUBERNETES_VERSION } from '../../local-cluster/binaries.js';
import { freePort } from '../../local-cluster/control-plane.js';
import { auditEventsFor, kubectl } from '../../local-cluster/kube.js';
import { startPodSidecar, type PodSidecar } from '../../local-cluster/provisioned.js';
import { waitFor } from '../../local-cluster/wait.js';
import { listPodsAsAliceAndBob, startDeployedInjector } from '../support/deployed-injector.js';
import { runMain } from '../support/run-main.js';
import { withControlPlane } from '../support/fixtures.js';

const MANIFESTS = path.resolve(import.meta.dirname, '../../manifests');
const INJECTOR_NAMESPACE = 'chaperone-system';
const SCOPED = 'chaperone-impersonator';
const TEAM = 'team-old';

function sidecarOf(pod: V1Pod) {
  return [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find((container) => container.name === 'chaperone');
}

/** The API server's refusal of an attempt, naming the shipped policy's rule. */
async function refused(what: string, attempt: Promise<unknown>, rule: string): Promise<string> {
  const err = await attempt.then(() => undefined, (e: unknown) => e as { body?: string });
  assert.ok(err, `${what}: the API server admitted it`);
  const status = JSON.parse(err.body ?? '{}') as { code?: number; message?: string };
  assert.equal(status.code, 403, `${what}: ${status.message ?? err.body}`);
  assert.match(status.message ?? '', new RegExp(`ValidatingAdmissionPolicy .*chaperone rule ${rule}: `), what);
  return status.message!;
}

function ofKind<T extends KubernetesObject>(objects: KubernetesObject[], kind: string): T[] {
  return objects.filter((object) => object.kind === kind) as T[];
}

describe(`Kubernetes ${OLDEST_KUBERNETES_VERSION}, the oldest minor claimed (a control plane of its own)`, function () {
  this.timeout(120_000);
  // The controller that writes the type-checking status of each policy.
  const { cp, clients } = withControlPlane({ version: OLDEST_KUBERNETES_VERSION, extraControllers: ['validatingadmissionpolicy-status-controller'] });
  let dir: string;
  let injector: RunningInjector | undefined;
  let sidecar: PodSidecar | undefined;
  let installed: KubernetesObject[];
  let pod: V1Pod;

  before(async function () {
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-older-'));
  });

  after(async function () {
    await sidecar?.stop();
    await injector?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('is the release it was built as', function () {
    assert.equal(cp.version, OLDEST_KUBERNETES_VERSION);
  });

  it('installs the base with the classic-impersonation component (rendered by kubectl kustomize, applied server-side), policies type-checked', async function () {
    // The docs' install for a cluster without constrained impersonation: the base and the component.
    const kustomization = path.join(dir, 'kustomization.yaml');
    await writeFile(
      kustomization,
      YAML.stringify({
        apiVersion: 'kustomize.config.k8s.io/v1beta1',
        kind: 'Kustomization',
        resources: [path.relative(dir, path.join(MANIFESTS, 'base'))],
        components: [path.relative(dir, path.join(MANIFESTS, 'components/classic-impersonation'))],
      }),
    );
    const rendered = await kubectl(cp.adminKubeconfig, ['kustomize', dir]);
    assert.equal(rendered.code, 0, rendered.stderr);
    const objects = YAML.parseAllDocuments(rendered.stdout).map((doc) => doc.toJS() as KubernetesObject);
    const policies = ofKind<V1ValidatingAdmissionPolicy>(objects, 'ValidatingAdmissionPolicy');
    assert.ok(policies.length >= 3, `the base has its policies: ${policies.map((p) => p.metadata?.name).join(', ')}`);
    assert.ok(policies.every((p) => p.apiVersion === 'admissionregistration.k8s.io/v1'));

    // The one change (as in manifests.test.ts): no kubelet runs the Deployment, so the webhook calls a URL here.
    const port = await freePort();
    const shipped = ofKind<V1MutatingWebhookConfiguration>(objects, 'MutatingWebhookConfiguration')[0]!;
    installed = objects.map((object) =>
      object === shipped ? { ...shipped, webhooks: shipped.webhooks!.map((webhook) => ({ ...webhook, clientConfig: { url: `https://127.0.0.1:${port}${webhook.clientConfig.service!.path}` } })) } : object,
    );
    const file = path.join(dir, 'install.json');
    await writeFile(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: installed }));
    const applied = await kubectl(cp.adminKubeconfig, ['apply', '--server-side', '-f', file]);
    assert.equal(applied.code, 0, `kubectl apply: ${applied.stderr}`);
    assert.doesNotMatch(applied.stderr, /warning/i);

    // The API server compiled every expression of every policy: a type-check problem would show here.
    const admission = clients.kubeconfig.makeApiClient(AdmissionregistrationV1Api);
    for (const policy of policies) {
      const stored = await waitFor(
        `the API server to type-check ${policy.metadata!.name}`,
        async () => {
          const read = await admission.readValidatingAdmissionPolicy({ name: policy.metadata!.name! });
          return read.status?.observedGeneration === read.metadata?.generation ? read : undefined;
        },
        60_000,
      );
      assert.deepEqual(stored.status?.typeChecking?.expressionWarnings ?? [], [], `${policy.metadata!.name} type-checks on ${OLDEST_KUBERNETES_VERSION}`);
    }

    const deployment = ofKind<V1Deployment>(installed, 'Deployment')[0]!;
    injector = await startDeployedInjector(cp, clients, deployment, dir, [`--listen=127.0.0.1:${port}`, '--webhook-hosts=127.0.0.1', '--impersonation-groups=dev']);
    await waitFor('the caBundle', async () => (await admission.readMutatingWebhookConfiguration({ name: shipped.metadata!.name! })).webhooks?.[0]?.clientConfig.caBundle, 30_000);
  });

  it('provisions a labelled namespace for classic impersonation: the probe finds no constrained impersonation there', async function () {
    for (const args of [['create', 'namespace', TEAM], ['label', 'namespace', TEAM, 'chaperone.dev/inject=enabled']]) {
      const result = await kubectl(cp.adminKubeconfig, args);
      assert.equal(result.code, 0, result.stderr);
    }
    const configMap = await waitFor('the namespace to be provisioned', () => clients.core.readNamespacedConfigMap({ name: 'chaperone-ca', namespace: TEAM }), 30_000);
    const policy = JSON.parse(configMap.data!['access-policy.json']!) as { mode: string };
    assert.equal(policy.mode, 'classic');
    const role = await waitFor('the impersonator role', async () => (await clients.rbac.listClusterRole({ labelSelector: `chaperone.dev/namespace=${TEAM}` })).items[0], 30_000);
    const verbs = new Set((role.rules ?? []).flatMap((rule) => rule.verbs));
    assert.ok(verbs.has('impersonate'), `the classic verb: ${[...verbs].join(', ')}`);
    assert.ok(![...verbs].some((verb) => verb.startsWith('impersonate:') || verb.startsWith('impersonate-on:')), `no constrained verb: ${[...verbs].join(', ')}`);
    await waitFor('the default service account', () => clients.core.readNamespacedServiceAccount({ name: 'default', namespace: TEAM }), 30_000);
  });

  it("refuses, by the API server itself, a pod that runs as the scoped account but is not the injector's, and the token by any other way", async function () {
    const thief: V1Pod = {
      metadata: { name: 'thief', labels: { 'chaperone.dev/inject': 'disabled' } },
      spec: { serviceAccountName: SCOPED, containers: [{ name: 'app', image: 'example.invalid/app:1' }] },
    };
    await refused('an opted-out pod running as the scoped account', clients.core.createNamespacedPod({ namespace: TEAM, body: thief }), 'opted-out-pod');
    const tokenRequest = clients.core.createNamespacedServiceAccountToken({ name: SCOPED, namespace: TEAM, body: { spec: { audiences: [], expirationSeconds: 600 } } });
    assert.match(await refused('a TokenRequest by a cluster admin', tokenRequest, 'token-request-by-node-only'), /may not request a token of chaperone-impersonator/);
    const legacy = { metadata: { generateName: 'legacy-', annotations: { 'kubernetes.io/service-account.name': SCOPED } }, type: 'kubernetes.io/service-account-token' };
    await refused('a legacy token Secret', clients.core.createNamespacedSecret({ namespace: TEAM, body: legacy }), 'no-legacy-token-secret');
  });

  it('injects a pod, and its sidecar forwards with the classic verb as the person, as far as RBAC lets them', async function () {
    const body: V1Pod = { metadata: { name: 'dashboard' }, spec: { containers: [{ name: 'dashboard', image: 'ghcr.io/example/dashboard:1' }] } };
    // The API server learns of a new webhook configuration a moment after it is written.
    await waitFor('the API server to call the injector', async () => sidecarOf(await clients.core.createNamespacedPod({ namespace: TEAM, body, dryRun: 'All' })) !== undefined, 30_000);
    pod = await clients.core.createNamespacedPod({ namespace: TEAM, body });
    assert.ok(sidecarOf(pod), 'the pod has the sidecar');
    assert.equal(pod.spec!.serviceAccountName, SCOPED);

    // And once injected, it cannot be relabelled out of the policies' reach.
    const relabel = { metadata: { labels: { 'chaperone.dev/inject': 'disabled' } } };
    await refused('a relabel', clients.core.patchNamespacedPod({ name: 'dashboard', namespace: TEAM, body: relabel }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch)), 'opted-out-pod');

    sidecar = await startPodSidecar(cp, clients, pod);
    const alice = await listPodsAsAliceAndBob(cp, clients, sidecar, pod, INJECTOR_NAMESPACE);
    const [event] = await auditEventsFor(cp, String(alice.headers['audit-id']), 10_000);
    assert.ok(event, `the API server recorded alice's request (${String(alice.headers['audit-id'])})`);
    assert.equal(event.user.username, `system:serviceaccount:${TEAM}:${SCOPED}`);
    assert.equal(event.impersonatedUser?.username, 'alice');
  });

  it('chaperone doctor finds nothing failing in the namespace and its pod', async function () {
    const result = await runMain('cli/main.ts', ['doctor', `--kubeconfig=${cp.adminKubeconfig}`, '-n', TEAM, '--pod', 'dashboard', '-o', 'json']);
    assert.equal(result.stderr, '');
    const report = JSON.parse(result.stdout) as Report;
    assert.deepEqual(report.findings.filter((f) => f.status === 'fail'), []);
    assert.equal(result.code, 0);
    const mode = report.findings.find((f) => f.check === 'provisioning/impersonation-mode');
    assert.match(mode?.message ?? '', /classic/, JSON.stringify(mode));
  });
});
