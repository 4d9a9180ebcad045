// The shipped manifests as `kubectl apply -k` applies them, on a control plane of their own (their
// names are cluster-wide: they cannot share the suites' one). Every kustomization under manifests/
// renders, and the real API server accepts every object in it. Then the base is installed for real
// with one change, since there is no kubelet here to run the Deployment: the webhook calls, by URL, an
// injector the test runs with the Deployment's own arguments and environment, as the
// chaperone-injector service account with exactly the shipped RBAC. On that installation a person
// labels a namespace and creates a pod, and the examples' pods are created from their Deployments.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import {
  AdmissionregistrationV1Api,
  ApiextensionsV1Api,
  type KubernetesObject,
  type V1ConfigMap,
  type V1Container,
  type V1Deployment,
  type V1MutatingWebhookConfiguration,
  type V1Namespace,
  type V1Pod,
} from '@kubernetes/client-node';
import type { RunningInjector } from '../../injector/injector.js';
import { freePort } from '../../local-cluster/control-plane.js';
import { grantInNamespace, kubectl, waitForAuditEvents } from '../../local-cluster/kube.js';
import { installMonitoringCrds } from '../../local-cluster/metrics.js';
import { startPodSidecar, type PodSidecar } from '../../local-cluster/provisioned.js';
import { waitFor } from '../../local-cluster/wait.js';
import { rawRequest } from '../../local-cluster/sidecar.js';
import { identityCaPeople, injectorConfigOf, listPodsAsAliceAndBob, startDeployedInjector } from '../support/deployed-injector.js';
import { withControlPlane } from '../support/fixtures.js';

const MANIFESTS = path.resolve(import.meta.dirname, '../../manifests');
const SHIPPED = ['base', 'components/cluster-token-review', 'components/monitoring', 'examples/headlamp', 'examples/kubernetes-dashboard'];
const INJECTOR_NAMESPACE = 'chaperone-system';
const INJECTOR_USER = `system:serviceaccount:${INJECTOR_NAMESPACE}:chaperone-injector`;

function ofKind<T extends KubernetesObject>(objects: KubernetesObject[], kind: string): T[] {
  return objects.filter((object) => object.kind === kind) as T[];
}

function only<T>(items: T[], what: string): T {
  assert.equal(items.length, 1, `expected one ${what}, found ${items.length}`);
  return items[0]!;
}

function sidecarOf(pod: V1Pod): V1Container | undefined {
  return [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find((container) => container.name === 'chaperone');
}

describe('the shipped manifests (kubectl apply -k on a control plane of their own)', function () {
  this.timeout(120_000);
  const { cp, clients } = withControlPlane();
  let dir: string;
  let injector: RunningInjector | undefined;
  let sidecar: PodSidecar | undefined;
  /** Each kustomization under manifests/ (by its directory there), as `kubectl kustomize` renders it. */
  const rendered = new Map<string, KubernetesObject[]>();

  /** kubectl apply (`-k <dir>` or `-f <file>`, and flags); what the API server answered. */
  async function kubectlApply(args: string[]): Promise<KubernetesObject[]> {
    const result = await kubectl(cp.adminKubeconfig, ['apply', ...args, '-o', 'json']);
    assert.equal(result.code, 0, `kubectl apply ${args.join(' ')}: ${result.stderr}`);
    // No warning, Pod Security's included: the namespaces warn at the level they enforce.
    assert.doesNotMatch(result.stderr, /warning/i);
    const answer = JSON.parse(result.stdout) as KubernetesObject & { items?: KubernetesObject[] };
    return answer.kind === 'List' ? answer.items! : [answer];
  }

  /** kubectl apply of these objects, server-side unless said otherwise. */
  async function apply(objects: KubernetesObject[], serverSide = true): Promise<KubernetesObject[]> {
    const file = path.join(dir, `${randomBytes(4).toString('hex')}.json`);
    // JSON, not YAML: a YAML 1.2 writer leaves `off` unquoted, which kubectl's YAML 1.1 reads as false.
    await writeFile(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
    return kubectlApply([...(serverSide ? ['--server-side'] : []), '-f', file]);
  }

  /** Whether the injector has provisioned the namespace: what its pods mount exists. */
  async function provisioned(namespace: string): Promise<boolean> {
    await clients.core.readNamespacedServiceAccount({ name: 'chaperone-impersonator', namespace });
    await clients.core.readNamespacedConfigMap({ name: 'chaperone-ca', namespace });
    await clients.core.readNamespacedSecret({ name: 'chaperone-serving', namespace });
    // The ServiceAccount admission plugin needs it for a pod that names no service account.
    await clients.core.readNamespacedServiceAccount({ name: 'default', namespace });
    return true;
  }

  function createPod(namespace: string, body: V1Pod, dryRun = false): Promise<V1Pod> {
    return clients.core.createNamespacedPod({ namespace, body, ...(dryRun ? { dryRun: 'All' } : {}) });
  }

  before(async function () {
    // The monitoring component's PodMonitors and PrometheusRule need the Prometheus Operator's kinds.
    await installMonitoringCrds(clients.kubeconfig.makeApiClient(ApiextensionsV1Api));
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-manifests-'));
    const entries = await readdir(MANIFESTS, { recursive: true });
    for (const entry of entries.filter((e) => path.basename(e) === 'kustomization.yaml').sort()) {
      const kustomization = path.dirname(entry);
      const result = await kubectl(cp.adminKubeconfig, ['kustomize', path.join(MANIFESTS, kustomization)]);
      assert.equal(result.code, 0, `kubectl kustomize manifests/${kustomization}: ${result.stderr}`);
      rendered.set(kustomization, YAML.parseAllDocuments(result.stdout).map((doc) => doc.toJS() as KubernetesObject));
    }
  });

  after(async function () {
    await sidecar?.stop();
    await injector?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('renders every kustomization, and the API server accepts every object in it (server-side dry run)', async function () {
    for (const kustomization of SHIPPED) assert.ok(rendered.has(kustomization), `manifests/${kustomization} is not a kustomization`);
    for (const [kustomization, objects] of rendered) {
      assert.ok(objects.length > 0, `manifests/${kustomization} renders nothing`);
      // apply -k creates a namespace before what goes in it; a dry run of both cannot.
      // Plain (client-side) apply, as kubectl apply -k is without --server-side; the install below is server-side.
      const namespaces = ofKind(objects, 'Namespace');
      if (namespaces.length > 0) await apply(namespaces, false);
      const accepted = await kubectlApply(['-k', path.join(MANIFESTS, kustomization), '--dry-run=server']);
      assert.equal(accepted.length, objects.length);
      for (const object of accepted) {
        assert.notEqual(object.metadata?.namespace, 'default', `manifests/${kustomization}: ${object.kind} ${object.metadata?.name} names no namespace, so it would land in whatever namespace kubectl's context has`);
      }
    }
  });

  it('installs the base, and the injector, run as its Deployment runs it under the shipped RBAC, serves and fills in the caBundle', async function () {
    const base = rendered.get('base')!;
    const deployment = only(ofKind<V1Deployment>(base, 'Deployment'), 'Deployment');
    const service = only(ofKind<KubernetesObject & { spec: { ports: { port: number; targetPort: string }[] } }>(base, 'Service'), 'Service');
    const shipped = only(ofKind<V1MutatingWebhookConfiguration>(base, 'MutatingWebhookConfiguration'), 'webhook configuration');
    const container = deployment.spec!.template.spec!.containers[0]!;

    // Where the API server's calls arrive: the webhook's Service port, its targetPort, the container port the injector listens on.
    const reference = only(shipped.webhooks!.map((webhook) => webhook.clientConfig.service!), 'webhook');
    assert.deepEqual([reference.namespace, reference.name], [deployment.metadata!.namespace, service.metadata!.name]);
    const servicePort = only(service.spec.ports.filter((port) => port.port === reference.port), `Service port ${reference.port}`);
    const containerPort = only(container.ports!.filter((port) => port.name === servicePort.targetPort), `container port ${servicePort.targetPort}`);
    assert.equal(injectorConfigOf(deployment, []).listen, `:${containerPort.containerPort}`);

    // The one change: a URL on this machine in place of the Service.
    const port = await freePort();
    const url = `https://127.0.0.1:${port}`;
    const installed = base.map((object) =>
      object === shipped ? { ...shipped, webhooks: shipped.webhooks!.map((webhook) => ({ ...webhook, clientConfig: { url: `${url}${reference.path}` } })) } : object,
    );
    await apply(installed);

    injector = await startDeployedInjector(cp, clients, deployment, dir, [`--listen=127.0.0.1:${port}`, '--webhook-hosts=127.0.0.1']);

    const admission = clients.kubeconfig.makeApiClient(AdmissionregistrationV1Api);
    const caBundle = await waitFor(
      'the caBundle',
      async () => (await admission.readMutatingWebhookConfiguration({ name: shipped.metadata!.name! })).webhooks?.[0]?.clientConfig.caBundle,
      30_000,
    );
    // An upgrade applies the manifests again: the caBundle the injector keeps is not the manifests' to take away.
    await apply(installed);
    const again = await admission.readMutatingWebhookConfiguration({ name: shipped.metadata!.name! });
    assert.equal(again.webhooks?.[0]?.clientConfig.caBundle, caBundle);

    // Every probe of the Deployment, made as the kubelet makes it, trusting what the API server trusts.
    for (const probe of [container.startupProbe, container.readinessProbe, container.livenessProbe]) {
      const get = probe!.httpGet!;
      assert.deepEqual([get.scheme, get.port], ['HTTPS', containerPort.name]);
      const response = await rawRequest(`${url}${get.path}`, { ca: Buffer.from(caBundle, 'base64').toString('utf8') });
      assert.equal(response.status, 200, response.body);
    }
  });

  it('provisions a namespace once a person labels it, injects the pods created there, and the sidecar lets people as far as RBAC does', async function () {
    const team = 'team-a';
    for (const args of [['create', 'namespace', team], ['label', 'namespace', team, 'chaperone.dev/inject=enabled']]) {
      const result = await kubectl(cp.adminKubeconfig, args);
      assert.equal(result.code, 0, result.stderr);
    }
    await waitFor(`namespace ${team} to be provisioned`, () => provisioned(team), 30_000);
    const [created] = await waitForAuditEvents(
      cp,
      (event) => event.verb === 'create' && event.objectRef?.resource === 'serviceaccounts' && event.objectRef.namespace === team && event.objectRef.name === 'chaperone-impersonator',
    );
    assert.equal(created?.user.username, INJECTOR_USER, 'the injector provisions as its own service account');

    const body: V1Pod = { metadata: { name: 'dashboard' }, spec: { containers: [{ name: 'dashboard', image: 'ghcr.io/example/dashboard:1' }] } };
    // The API server learns of a new webhook configuration a moment after it is written.
    await waitFor('the API server to call the injector', async () => sidecarOf(await createPod(team, body, true)) !== undefined, 30_000);
    const pod = await createPod(team, body);
    assert.ok(sidecarOf(pod), 'the pod has the sidecar');
    assert.equal(pod.spec!.serviceAccountName, 'chaperone-impersonator');
    assert.equal(pod.spec!.automountServiceAccountToken, false);

    // The kubelet's part, played by the test: the sidecar with exactly the files the pod mounts.
    sidecar = await startPodSidecar(cp, clients, pod);
    await listPodsAsAliceAndBob(cp, clients, sidecar, pod, INJECTOR_NAMESPACE);

    // The base leaves --default-access to the injector: read-only. Carol may edit in RBAC, yet writes
    // nothing through the dashboard until the namespace opts in.
    const policy = JSON.parse((await clients.core.readNamespacedConfigMap({ name: 'chaperone-ca', namespace: team })).data!['access-policy.json']!) as { access: string };
    assert.equal(policy.access, 'read-only');
    await grantInNamespace(cp, clients, team, 'edit', 'carol');
    const person = await identityCaPeople(clients, INJECTOR_NAMESPACE);
    const write = await rawRequest(`${sidecar.url}/api/v1/namespaces/${team}/configmaps`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'notes' } }),
      ca: sidecar.dashboard.caPem,
      cert: person('carol'),
    });
    assert.equal(write.status, 403, write.body);
    assert.match(write.body, /the namespace's chaperone access policy \(read-only\) does not allow it/);
  });

  it("admits the examples' pods as their Deployments ask: injected where they act for people, left alone where they do not", async function () {
    const expected: Record<string, { injected: string[]; leftAlone: string[] }> = {
      'examples/headlamp': { injected: ['headlamp'], leftAlone: [] },
      'examples/kubernetes-dashboard': { injected: ['kubernetes-dashboard-auth', 'kubernetes-dashboard-api'], leftAlone: ['kubernetes-dashboard-web', 'kubernetes-dashboard-kong'] },
    };
    for (const [example, { injected, leftAlone }] of Object.entries(expected)) {
      const objects = rendered.get(example)!;
      // As its README says.
      await kubectlApply(['--server-side', '-k', path.join(MANIFESTS, example)]);
      const namespaceObject = only(ofKind<V1Namespace>(objects, 'Namespace'), 'Namespace');
      const namespace = namespaceObject.metadata!.name!;
      // What the sidecars trust is the Namespace's (cluster administrators'), never a pod template's.
      const trust = namespaceObject.metadata!.annotations!;
      assert.equal(trust['chaperone.dev/authenticators'], 'oidc', `${example} signs people in with OIDC`);
      await waitFor(`namespace ${namespace} to be provisioned`, () => provisioned(namespace), 30_000);
      const deployments = ofKind<V1Deployment>(objects, 'Deployment');
      assert.deepEqual(deployments.map((d) => d.metadata!.name).sort(), [...injected, ...leftAlone].sort());

      for (const deployment of deployments) {
        const name = deployment.metadata!.name!;
        const template = deployment.spec!.template;
        // What the ReplicaSet controller would create; the namespace enforces the restricted Pod Security
        // level. The injector refuses pods until every piece of the provisioning is there (the timeout names the refusal).
        const body: V1Pod = { metadata: { ...template.metadata, generateName: `${name}-` }, spec: template.spec! };
        const pod = await waitFor(`a pod of ${name} to be admitted`, () => createPod(namespace, body), 30_000);
        const proxy = sidecarOf(pod);
        if (leftAlone.includes(name)) {
          assert.equal(proxy, undefined, `${name} has no sidecar`);
          assert.equal(pod.spec!.serviceAccountName, template.spec!.serviceAccountName ?? 'default');
          continue;
        }
        assert.ok(proxy, `${name} has the sidecar`);
        assert.equal(pod.spec!.serviceAccountName, 'chaperone-impersonator');
        const annotations = template.metadata!.annotations ?? {};
        for (const setting of ['authenticators', 'oidc-issuer-url', 'oidc-client-id']) {
          assert.equal(annotations[`chaperone.dev/${setting}`], undefined, `${name}'s pods choose nothing of what their sidecar trusts`);
        }
        for (const flag of ['oidc-issuer-url', 'oidc-client-id']) {
          assert.ok(proxy.args!.includes(`--${flag}=${trust[`chaperone.dev/${flag}`]}`), `${name}'s sidecar has --${flag} of its namespace's annotation: ${proxy.args!.join(' ')}`);
        }
        assert.ok(!proxy.args!.some((a) => a.startsWith('--client-ca-file') || a === '--anonymous'), `${name}'s sidecar takes OIDC only: ${proxy.args!.join(' ')}`);
        for (const container of pod.spec!.containers) {
          assert.deepEqual({ ...container.env?.[0] }, { name: 'KUBERNETES_SERVICE_HOST', value: '127.0.0.1' }, `${name}'s ${container.name} talks to the sidecar`);
        }
      }
    }

    // Headlamp and its sidecar trust the one issuer and client the kustomization names.
    const headlamp = rendered.get('examples/headlamp')!;
    const oidc = only(ofKind<V1ConfigMap>(headlamp, 'ConfigMap'), 'ConfigMap').data!;
    const annotations = only(ofKind<V1Namespace>(headlamp, 'Namespace'), 'Namespace').metadata!.annotations!;
    assert.deepEqual([annotations['chaperone.dev/oidc-issuer-url'], annotations['chaperone.dev/oidc-client-id']], [oidc.issuerURL, oidc.clientID]);
  });
});
