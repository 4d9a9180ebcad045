// The command blocks of README.md and docs/ that a reader runs against a cluster, run as written
// (test/support/doc-runner.ts says the little that differs: the kubeconfig, `chaperone` from this
// checkout, a scratch directory) against a control plane of their own, in the order a platform
// engineer would: install, issue, revoke, rotate, check, harden, sign-in RBAC, annotate, change with
// an overlay, upgrade, add monitoring. The test plays only what this control plane has not: the
// kubelet and kube-proxy (the injector the Deployment describes runs in this process, reached at its
// Service's cluster IP through the API server's egress selector), the Deployment controller (it
// reports the replicas rolled out once that injector runs) and the Prometheus Operator (its kinds,
// without their schemas). The last test proves every block marked `<!-- runs in
// test/e2e/docs-commands.test.ts -->` ran.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { AdmissionregistrationV1Api, ApiextensionsV1Api, AppsV1Api, DiscoveryV1Api, type V1EndpointSlice, type V1Pod } from '@kubernetes/client-node';
import type { RunningInjector } from '../../injector/injector.js';
import { decodeData } from '../../injector/provision/kube.js';
import { freePort, startControlPlane, type ControlPlane } from '../../local-cluster/control-plane.js';
import { installMonitoringCrds } from '../../local-cluster/metrics.js';
import { adminClients, kubectl, type AdminClients, type CommandResult } from '../../local-cluster/kube.js';
import { waitFor } from '../../local-cluster/wait.js';
import { DocRunner } from '../support/doc-runner.js';
import { startDeployedInjector } from '../support/deployed-injector.js';
import { startEgressProxy, type EgressProxy } from '../support/egress-proxy.js';

const NAMESPACE = 'chaperone-system';
const TEAM = 'team-a';
const POD = 'headlamp-7d9c5-x2x8q';

function succeeded(result: CommandResult): CommandResult {
  assert.equal(result.code, 0, `exit code ${result.code}\n${result.stdout}\n${result.stderr}`);
  return result;
}

describe('the docs, run as written (a control plane of their own)', function () {
  this.timeout(120_000);
  let dir: string;
  let proxy: EgressProxy;
  let cp: ControlPlane;
  let clients: AdminClients;
  let docs: DocRunner;
  let injector: RunningInjector | undefined;

  const sidecarOf = (pod: V1Pod) => [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find((c) => c.name === 'chaperone');
  const dryRunPod = () => clients.core.createNamespacedPod({ namespace: TEAM, body: { metadata: { generateName: 'headlamp-' }, spec: { containers: [{ name: 'headlamp', image: 'ghcr.io/headlamp-k8s/headlamp:v0.30.0' }] } }, dryRun: 'All' });
  const sidecarConfig = async () => decodeData((await clients.core.readNamespacedSecret({ name: 'chaperone-sidecar-config', namespace: NAMESPACE })).data)['sidecar.yaml'] ?? '';

  const injectorImage = async () => (await clients.kubeconfig.makeApiClient(AppsV1Api).readNamespacedDeployment({ name: 'chaperone-injector', namespace: NAMESPACE })).spec!.template.spec!.containers[0]!.image!;

  /** The EndpointSlice controller's part: the Service has a ready endpoint (what chaperone doctor checks; the egress proxy does the routing). */
  async function declareReadyEndpoint(portName: string | undefined): Promise<void> {
    const body: V1EndpointSlice = {
      metadata: { name: 'chaperone-injector-docs', labels: { 'kubernetes.io/service-name': 'chaperone-injector', 'endpointslice.kubernetes.io/managed-by': 'docs-commands.test.ts' } },
      addressType: 'IPv4',
      endpoints: [{ addresses: ['10.0.0.10'], conditions: { ready: true } }],
      ports: [{ name: portName, port: 8443, protocol: 'TCP' }],
    };
    await clients.kubeconfig.makeApiClient(DiscoveryV1Api).createNamespacedEndpointSlice({ namespace: NAMESPACE, body }).catch((err: unknown) => {
      if ((err as { code?: number }).code !== 409) throw err;
    });
  }

  /**
   * The kubelet's, kube-proxy's and the Deployment controller's part: the injector as the Deployment
   * now describes it (a new one in place of the old), reached at the Service's cluster IP, and the
   * Deployment's status saying its replicas are rolled out.
   */
  async function runTheDeployment(): Promise<void> {
    await injector?.stop();
    injector = undefined;
    const deployment = await clients.kubeconfig.makeApiClient(AppsV1Api).readNamespacedDeployment({ name: 'chaperone-injector', namespace: NAMESPACE });
    const port = await freePort();
    injector = await startDeployedInjector(cp, clients, deployment, dir, [`--listen=127.0.0.1:${port}`]);
    const service = await clients.core.readNamespacedService({ name: 'chaperone-injector', namespace: NAMESPACE });
    proxy.route(`${service.spec!.clusterIP}:${service.spec!.ports![0]!.port}`, { host: '127.0.0.1', port });
    await declareReadyEndpoint(service.spec!.ports![0]!.name);
    const replicas = deployment.spec!.replicas ?? 1;
    const status = { observedGeneration: deployment.metadata!.generation, replicas, updatedReplicas: replicas, readyReplicas: replicas, availableReplicas: replicas };
    succeeded(await kubectl(cp.adminKubeconfig, ['-n', NAMESPACE, 'patch', 'deployment', 'chaperone-injector', '--subresource=status', '--type=merge', '-p', JSON.stringify({ status })]));
  }

  before(async function () {
    this.timeout(15 * 60_000);
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-docs-'));
    proxy = await startEgressProxy(dir);
    cp = await startControlPlane({ extraApiserverFlags: [`--egress-selector-config-file=${proxy.configFile}`] });
    clients = adminClients(cp);
    docs = await DocRunner.create({ testFile: import.meta.filename, dir: path.join(dir, 'work'), adminKubeconfig: cp.adminKubeconfig, namespace: TEAM });
    // The docs' namespace of dashboards, which the reader has.
    succeeded(await kubectl(cp.adminKubeconfig, ['create', 'namespace', TEAM]));
  });

  after(async function () {
    await injector?.stop();
    await cp?.stop();
    await proxy?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  describe('README.md', function () {
    it('installs the base and labels the namespace; the injector then provisions it and injects its pods', async function () {
      succeeded(await docs.run('README.md', 'kubectl apply --server-side -k manifests/base'));
      await runTheDeployment();
      const admission = clients.kubeconfig.makeApiClient(AdmissionregistrationV1Api);
      await waitFor('the injector to set the caBundle', async () => (await admission.readMutatingWebhookConfiguration({ name: 'chaperone-injector' })).webhooks?.[0]?.clientConfig.caBundle, 30_000);
      assert.equal((await clients.core.readNamespace({ name: TEAM })).metadata?.labels?.['chaperone.dev/inject'], 'enabled');
      await waitFor('a pod of team-a to be injected', async () => sidecarOf(await dryRunPod()) !== undefined, 60_000, 1000);
    });

    it('chaperone kubeconfig writes a kubeconfig (mode 0600) for alice in dev, from the identity CA', async function () {
      succeeded(await docs.run('README.md', 'chaperone kubeconfig --user alice'));
      const file = docs.file('alice.kubeconfig');
      assert.equal((await stat(file)).mode & 0o777, 0o600);
      const config = YAML.parse(await readFile(file, 'utf8')) as { users: { user: { 'client-certificate-data': string } }[]; clusters: { cluster: { server: string } }[] };
      assert.equal(config.clusters[0]!.cluster.server, 'https://127.0.0.1:6443');
      const certificate = new X509Certificate(Buffer.from(config.users[0]!.user['client-certificate-data'], 'base64'));
      assert.match(certificate.subject, /CN=alice/);
      assert.match(certificate.subject, /O=dev/);
      const identityCa = decodeData((await clients.core.readNamespacedSecret({ name: 'chaperone-identity-ca', namespace: NAMESPACE })).data)['ca.crt']!;
      assert.ok(certificate.verify(new X509Certificate(identityCa).publicKey), 'signed by the identity CA');
    });

    it('chaperone revoke --serial puts the serial into the installation configuration, once operations.md has created it', async function () {
      const refused = await docs.run('README.md', 'chaperone revoke --serial');
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /Secret chaperone-system\/chaperone-sidecar-config does not exist/);
      succeeded(await docs.run('docs/operations.md', 'create secret generic chaperone-sidecar-config'));
      succeeded(await docs.run('README.md', 'chaperone revoke --serial'));
      assert.match(await sidecarConfig(), /serial:5f1c0a9e3b7d4c21a8e06f9b2d3c4e5f/);
    });

    it('chaperone doctor checks the namespace and the pod', async function () {
      await clients.core.createNamespacedPod({ namespace: TEAM, body: { metadata: { name: POD }, spec: { containers: [{ name: 'headlamp', image: 'ghcr.io/headlamp-k8s/headlamp:v0.30.0' }] } } });
      const doctor = succeeded(await docs.run('README.md', 'chaperone doctor'));
      assert.match(doctor.stdout, new RegExp(`namespace ${TEAM}, pod ${POD}`));
      assert.match(doctor.stdout, /^ok +namespace\/label/m);
    });

    it('chaperone rotate identity starts a rotation', async function () {
      const rotate = succeeded(await docs.run('README.md', 'chaperone rotate identity'));
      assert.match(rotate.stdout, /identity CA rotation started/);
    });
  });

  describe('docs/operations.md', function () {
    it('installs as written: the rollout completes and the namespace stays labelled', async function () {
      const install = succeeded(await docs.run('docs/operations.md', 'rollout status deployment/chaperone-injector'));
      assert.match(install.stdout, /successfully rolled out/);
    });

    it("reads the webhook's caBundle and the identity CA as openssl sees them", async function () {
      assert.match(succeeded(await docs.run('docs/operations.md', 'mutatingwebhookconfiguration chaperone-injector')).stdout, /^subject=.*\nnotAfter=/m);
      assert.match(succeeded(await docs.run('docs/operations.md', 'get secret chaperone-identity-ca')).stdout, /^subject=.*\nnotAfter=/m);
    });

    it('rotates a CA (one is already under way: it says so) and revokes people, --context prod included', async function () {
      assert.match(succeeded(await docs.run('docs/operations.md', 'chaperone rotate identity')).stdout, /identity CA rotation is already under way/);
      succeeded(await docs.run('docs/operations.md', 'chaperone revoke --user mallory --forever'));
      const revoked = await sidecarConfig();
      assert.match(revoked, /serial:5f1c0a9e3b7d4c21a8e06f9b2d3c4e5f/);
      assert.match(revoked, /user:mallory until /);
      assert.match(revoked, /- user:mallory\n/);
    });

    it("runs the hardening checks: Pod Security on the namespace; no legacy token, CSI driver or claimed volume of the scoped account", async function () {
      succeeded(await docs.run('docs/operations.md', 'pod-security.kubernetes.io/enforce=baseline'));
      assert.equal((await clients.core.readNamespace({ name: TEAM })).metadata?.labels?.['pod-security.kubernetes.io/enforce'], 'baseline');
      assert.equal(succeeded(await docs.run('docs/operations.md', 'type=kubernetes.io/service-account-token')).stdout, '');
      assert.match(succeeded(await docs.run('docs/operations.md', 'kubectl get csidrivers')).stdout, /^NAME +MODES +AUDIENCES/);
      assert.equal(succeeded(await docs.run('docs/operations.md', 'persistentVolumeClaim or .ephemeral')).stdout, '');
    });

    it('chaperone doctor, its JSON through jq included', async function () {
      const doctor = succeeded(await docs.run('docs/operations.md', 'npx chaperone doctor -n team-a'));
      assert.match(doctor.stdout, new RegExp(`chaperone doctor: namespace ${TEAM}\n`));
      assert.match(doctor.stdout, new RegExp(`chaperone doctor: namespace ${TEAM}, pod ${POD}\n`));
    });
  });

  describe('docs/authentication.md', function () {
    it('binds people and the cluster TokenReview role as written', async function () {
      succeeded(await docs.run('docs/authentication.md', 'clusterrolebinding platform-view'));
      succeeded(await docs.run('docs/authentication.md', 'name: chaperone-cluster-token-review'));
      succeeded(await docs.run('docs/authentication.md', 'clusterrolebinding chaperone-cluster-token-review-<namespace>'));
      const canI = await kubectl(cp.adminKubeconfig, ['auth', 'can-i', 'create', 'tokenreviews.authentication.k8s.io', '--as', `system:serviceaccount:${TEAM}:chaperone-impersonator`]);
      assert.equal(canI.stdout.trim(), 'yes', canI.stderr);
      const view = await kubectl(cp.adminKubeconfig, ['auth', 'can-i', 'list', 'pods', '-n', TEAM, '--as', 'alice@example.com', '--as-group', 'oidc:platform']);
      assert.equal(view.stdout.trim(), 'yes', view.stderr);
    });
  });

  describe('docs/injector.md', function () {
    it("annotates the namespace: read-only access, then OIDC sign-in, which the namespace's pods get", async function () {
      succeeded(await docs.run('docs/injector.md', 'chaperone.dev/access=read-only'));
      succeeded(await docs.run('docs/injector.md', 'chaperone.dev/authenticators=oidc'));
      const args = await waitFor('pods to be injected with OIDC sign-in', async () => {
        const found = sidecarOf(await dryRunPod())?.args ?? [];
        return found.some((arg) => arg.includes('https://auth.example.com/realms/company')) ? found : undefined;
      }, 30_000, 500);
      assert.ok(args.some((arg) => arg.includes('headlamp')), args.join(' '));
    });
  });

  describe('docs/upgrading.md', function () {
    it("applies operations.md's overlay as upgrading.md says: the new injector runs, the rollout completes", async function () {
      await docs.run('docs/operations.md', 'newName: registry.example.com/chaperone/chaperone-injector');
      const rollout = docs.run('docs/upgrading.md', 'kubectl apply --server-side -k my-chaperone', { timeoutMs: 120_000 });
      await waitFor('the overlay to be applied', async () => (await injectorImage()).startsWith('registry.example.com/'), 30_000, 250);
      await runTheDeployment();
      assert.match(succeeded(await rollout).stdout, /successfully rolled out/);
      await waitFor('pods to be injected by the new injector', async () => sidecarOf(await dryRunPod()) !== undefined, 30_000, 500);
    });

    it("adds monitoring as operations.md says (its overlay, applied the upgrading way), with the Prometheus Operator's kinds", async function () {
      this.timeout(5 * 60_000);
      // The Prometheus Operator's part: its kinds are served (stand-ins without their schemas).
      await installMonitoringCrds(clients.kubeconfig.makeApiClient(ApiextensionsV1Api));
      await docs.run('docs/operations.md', '../chaperone/manifests/components/monitoring');
      // This overlay has none of the earlier one's patches: the injector goes back to the base's.
      const rollout = docs.run('docs/upgrading.md', 'kubectl apply --server-side -k my-chaperone', { timeoutMs: 120_000 });
      await waitFor('the overlay to be applied', async () => !(await injectorImage()).startsWith('registry.example.com/'), 30_000, 250);
      await runTheDeployment();
      assert.match(succeeded(await rollout).stdout, /successfully rolled out/);
      const listed = succeeded(await kubectl(cp.adminKubeconfig, ['-n', NAMESPACE, 'get', 'podmonitors,prometheusrules', '-o', 'name']));
      assert.deepEqual(listed.stdout.trim().split('\n').sort(), ['podmonitor.monitoring.coreos.com/chaperone-injector', 'podmonitor.monitoring.coreos.com/chaperone-sidecars', 'prometheusrule.monitoring.coreos.com/chaperone']);
    });

    it('lists the injected pods with their sidecar image', async function () {
      const listed = succeeded(await docs.run('docs/upgrading.md', 'chaperone.dev/status'));
      assert.match(listed.stdout, new RegExp(`^${TEAM}\t${POD}\tghcr.io/chaperone-dev/chaperone-sidecar:`, 'm'));
    });

    it('lists the labelled namespaces that the read-only default changes: those without chaperone.dev/access', async function () {
      succeeded(await kubectl(cp.adminKubeconfig, ['create', 'namespace', 'team-unannotated']));
      succeeded(await kubectl(cp.adminKubeconfig, ['label', 'namespace', 'team-unannotated', 'chaperone.dev/inject=enabled']));
      const listed = succeeded(await docs.run('docs/upgrading.md', 'select(.metadata.annotations["chaperone.dev/access"] == null)'));
      const names = listed.stdout.trim().split('\n');
      assert.ok(names.includes('team-unannotated'), listed.stdout);
      assert.ok(!names.includes(TEAM), `${TEAM} chose its access (injector.md's annotation): ${listed.stdout}`);
    });
  });

  describe('docs/listeners.md', function () {
    it("saves the namespace's serving CA bundle, which verifies the sidecars' serving certificate", async function () {
      succeeded(await docs.run('docs/listeners.md', "get configmap chaperone-ca -o jsonpath='{.data.serving-ca\\.crt}' > serving-ca.crt"));
      const bundle = await readFile(docs.file('serving-ca.crt'), 'utf8');
      assert.match(bundle, /^-----BEGIN CERTIFICATE-----/);
      assert.ok(new X509Certificate(bundle).ca, 'a CA certificate');
    });
  });

  describe("the examples' READMEs (manifests/examples)", function () {
    it("grants a person access by the identity the sidecar gives them, each example's way", async function () {
      const user = 'https://auth.example.com/realms/company#alice-sub';
      for (const example of ['headlamp', 'kubernetes-dashboard']) {
        succeeded(await docs.run(`manifests/examples/${example}/README.md`, 'create rolebinding alice-view', { example: { written: '<alice sub>', actual: 'alice-sub' } }));
        const canI = await kubectl(cp.adminKubeconfig, ['auth', 'can-i', 'list', 'pods', '-n', TEAM, '--as', user]);
        assert.equal(canI.stdout.trim(), 'yes', canI.stderr);
        succeeded(await kubectl(cp.adminKubeconfig, ['-n', TEAM, 'delete', 'rolebinding', 'alice-view']));
      }
    });
  });

  describe('and nothing else', function () {
    it('ran every block the docs say this suite runs', function () {
      assert.deepEqual(docs.notRun(), []);
    });
  });
});
