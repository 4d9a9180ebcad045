// A listener for tools outside the pod, chosen once by the platform team (docs/listeners.md): the
// installation configuration's extraListen and extraListenServices give every injected sidecar a
// second listener, declared on the pod, whose certificate names the Services of the pod's namespace
// and nothing a namespace user could choose. A client reaching it by the Service's name verifies the
// certificate and signs in with the same identity CA; a value no pod could use is refused, naming
// the field. The Secret is made from docs/listeners.md's sidecar.yaml, as written.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type { V1Pod, V1Service } from '@kubernetes/client-node';
import YAML from 'yaml';
import type { RunningInjector } from '../../injector/injector.js';
import type { CertificateAndKey } from '../../lib/pki.js';
import type { ControlPlane } from '../../local-cluster/control-plane.js';
import { adminClients, type AdminClients } from '../../local-cluster/kube.js';
import { installInjector, type InjectorInstallation, type PodSidecar } from '../../local-cluster/provisioned.js';
import { rawRequest } from '../../local-cluster/sidecar.js';
import { waitFor } from '../../local-cluster/wait.js';
import { sharedControlPlane } from '../support/shared.js';
import { docBlockNamed, docBlocks } from '../support/doc-blocks.js';
import { podRefusedFor, startInjectedDashboard } from '../support/injected-dashboard.js';

const CONFIG_SECRET = 'chaperone-sidecar-config';

describe('a listener for tools outside the pod: the installation configuration (issue 23)', function () {
  this.timeout(180_000);
  let cp: ControlPlane;
  let clients: AdminClients;
  let installation: InjectorInstallation;
  let injector: RunningInjector;
  let namespace: string;
  let pod: V1Pod;
  let sidecar: PodSidecar;
  let alice: CertificateAndKey;
  let sidecarYaml: string;

  const replaceConfiguration = (yaml: string) =>
    clients.core.replaceNamespacedSecret({ name: CONFIG_SECRET, namespace: installation.namespace, body: { metadata: { name: CONFIG_SECRET }, stringData: { 'sidecar.yaml': yaml } } });
  const servingNames = async () => {
    const secret = await clients.core.readNamespacedSecret({ name: 'chaperone-serving', namespace });
    return new X509Certificate(Buffer.from(secret.data!['tls.crt']!, 'base64')).subjectAltName ?? '';
  };
  const viaService = (servername: string, cert?: CertificateAndKey) =>
    rawRequest(`${sidecar.extraUrl!}/api/v1/namespaces/${namespace}/configmaps/settings`, { ca: sidecar.dashboard.caPem, servername, ...(cert ? { cert } : {}) });

  before(async function () {
    this.timeout(15 * 60_000);
    cp = await sharedControlPlane();
    clients = adminClients(cp);
    sidecarYaml = await docBlockNamed('docs/listeners.md', 'yaml', 'sidecar.yaml');
    installation = await installInjector(cp, clients);
    await clients.core.createNamespacedSecret({ namespace: installation.namespace, body: { metadata: { name: CONFIG_SECRET }, stringData: { 'sidecar.yaml': sidecarYaml } } });
    ({ injector, namespace, pod, sidecar, alice } = await startInjectedDashboard(cp, clients, installation, 'installation-listener'));
  });

  after(async function () {
    await sidecar?.stop();
    await injector?.stop();
    await installation?.cleanup();
  });

  it('gives the injected sidecar the listener as its own flag and declares the port a Service targets by name; the dashboard still reaches loopback alone', async function () {
    const container = pod.spec!.initContainers!.find((c) => c.name === 'chaperone')!;
    assert.ok(container.args!.includes('--extra-listen=:7443'), container.args!.join(' '));
    assert.deepEqual({ ...container.ports?.find((port) => port.name === 'chaperone-https') }, { name: 'chaperone-https', containerPort: 7443, protocol: 'TCP' });
    const dashboard = pod.spec!.containers.find((c) => c.name === 'dashboard')!;
    assert.deepEqual(dashboard.env?.filter((e) => e.name === 'KUBERNETES_SERVICE_HOST' || e.name === 'KUBERNETES_SERVICE_PORT').map((e) => e.value), ['127.0.0.1', '6443']);
    // The documented Service, in this namespace: the API server takes its targetPort name.
    const service = YAML.parse((await docBlocks('docs/listeners.md', 'yaml')).find((block) => block.includes('kind: Service'))!.replace('namespace: team-a', `namespace: ${namespace}`)) as V1Service;
    const created = await clients.core.createNamespacedService({ namespace, body: service });
    assert.equal(created.spec?.ports?.[0]?.targetPort, 'chaperone-https');
  });

  it("serves a certificate for the Service's name in this namespace, verified by the serving CA the namespace's ConfigMap holds; alice signs in with the identity CA", async function () {
    assert.match(await servingNames(), new RegExp(`DNS:dashboard-api\\.${namespace}\\.svc, DNS:dashboard-api\\.${namespace}\\.svc\\.cluster\\.local`));
    const read = await viaService(`dashboard-api.${namespace}.svc`, alice);
    assert.equal(read.status, 200, read.body);
    assert.deepEqual((JSON.parse(read.body) as { data: unknown }).data, { theme: 'dark' });
    const anonymous = await viaService(`dashboard-api.${namespace}.svc.cluster.local`);
    assert.equal(anonymous.status, 401, 'the listener authenticates every request itself');
  });

  it('is no certificate for another namespace, or for a name of anyone\'s choosing', async function () {
    for (const name of ['dashboard-api.kube-system.svc', 'dashboard-api', 'kubernetes.default.svc']) {
      await assert.rejects(viaService(name, alice), (err: NodeJS.ErrnoException) => err.code === 'ERR_TLS_CERT_ALTNAME_INVALID', name);
    }
    // A pod cannot name its own: there is no such setting, and a chaperone.dev annotation that is none is refused.
    const body = { metadata: { name: 'names-its-own', annotations: { 'chaperone.dev/extra-listen-services': 'evil' } }, spec: { containers: [{ name: 'dashboard', image: 'ghcr.io/example/dashboard:1' }] } };
    await assert.rejects(clients.core.createNamespacedPod({ namespace, body }), (err: Error & { body?: unknown }) => /annotation chaperone\.dev\/extra-listen-services: not a chaperone setting/.test(String(err.body)));
  });

  it('the names follow the configuration: the injector re-issues the namespace\'s certificate', async function () {
    try {
      await replaceConfiguration(sidecarYaml.replace('[dashboard-api]', '[kubectl-api]'));
      await waitFor('the certificate to name kubectl-api', async () => (await servingNames()).includes(`DNS:kubectl-api.${namespace}.svc`), 30_000, 250);
      assert.doesNotMatch(await servingNames(), /dashboard-api/);
    } finally {
      await replaceConfiguration(sidecarYaml);
    }
    await waitFor('the certificate to name dashboard-api again', async () => (await servingNames()).includes(`DNS:dashboard-api.${namespace}.svc`), 30_000, 250);
  });

  it('a listener value no pod could use is refused by the injector, naming the field', async function () {
    const refusals: [string, RegExp][] = [
      ['extraListen: "10.0.0.7:7443"\nextraListenServices: [dashboard-api]\n', /sidecar\.yaml: extraListen: \W+10\.0\.0\.7:7443\W+ names an address/],
      ['extraListen: ":7443"\nextraListenServices: [dashboards.example.com]\n', /sidecar\.yaml: extraListenServices: \W+dashboards\.example\.com\W+ is not a Service name/],
    ];
    try {
      for (const [yaml, why] of refusals) {
        await replaceConfiguration(yaml);
        await podRefusedFor(clients, namespace, why);
        assert.doesNotMatch(await servingNames(), /example\.com/, 'and no certificate carries the refused name');
      }
    } finally {
      await replaceConfiguration(sidecarYaml);
    }
  });
});
