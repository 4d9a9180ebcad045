// The Helm chart, charts/chaperone, on a control plane of its own (its names are cluster-wide), with
// Helm built from the Go module proxy. With default values it renders what `kubectl kustomize`
// renders of manifests/base, object by object (and each component behind its value); `helm lint
// --strict` is clean; the schema is the sidecar's own installation settings. Then docs/helm.md's
// commands run as written: the API server calls the injector at the Service the chart installed
// (through its egress selector, which plays kube-proxy: test/support/egress-proxy.ts), the injector
// runs as the installed Deployment runs it, a labelled namespace's pod gets the sidecar sized and
// configured by the values, a bad installation configuration is refused naming its field, and after
// `helm uninstall` nothing is left.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { AdmissionregistrationV1Api, AppsV1Api, type KubernetesObject, type V1Pod } from '@kubernetes/client-node';
import type { RunningInjector } from '../../injector/injector.js';
import { decodeData } from '../../injector/provision/kube.js';
import { SECRETS } from '../../injector/provision/names.js';
import { issueCertificate, type CertificateAndKey } from '../../lib/pki.js';
import { INSTALLATION_KEYS, sidecarConfigSpec } from '../../lib/sidecar-config/options.js';
import { freePort, startControlPlane, type ControlPlane } from '../../local-cluster/control-plane.js';
import { ensureHelm } from '../../local-cluster/helm.js';
import { adminClients, grantInNamespace, kubectl, readAuditEvents, type AdminClients, type CommandResult } from '../../local-cluster/kube.js';
import { startPodSidecar, type PodSidecar } from '../../local-cluster/provisioned.js';
import { rawRequest } from '../../local-cluster/sidecar.js';
import { waitFor } from '../../local-cluster/wait.js';
import { startDeployedInjector } from '../support/deployed-injector.js';
import { startEgressProxy, type EgressProxy } from '../support/egress-proxy.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const CHART = path.join(REPO, 'charts/chaperone');
const OPERATIONS = path.join(REPO, 'docs/operations.md');
const HELM_DOC = path.join(REPO, 'docs/helm.md');
const NAMESPACE = 'chaperone-system';
const COMPONENTS = { monitoring: 'monitoring', classicImpersonation: 'classic-impersonation', clusterTokenReview: 'cluster-token-review' };

/** The Uninstalling section of docs/operations.md (step 1 is the same with Helm). */
async function uninstallingSection(): Promise<string> {
  const text = await readFile(OPERATIONS, 'utf8');
  const start = text.indexOf('\n### Uninstalling\n');
  assert.ok(start > 0, 'docs/operations.md has no section Uninstalling');
  return text.slice(start);
}

/** Every block of docs/helm.md in this language. */
async function helmDocBlocks(language: 'sh' | 'yaml'): Promise<string[]> {
  return [...(await readFile(HELM_DOC, 'utf8')).matchAll(new RegExp(`\`\`\`${language}\\n([\\s\\S]*?)\`\`\``, 'g'))].map((m) => m[1]!);
}

/** Every command of docs/helm.md, as words (no quoting in them). */
async function documentedCommands(): Promise<string[][]> {
  return (await helmDocBlocks('sh'))
    .flatMap((block) => block.replace(/\\\n/g, ' ').split('\n'))
    .map((line) => line.trim().split(/\s+/).filter(Boolean))
    .filter((words) => words.length > 0);
}

/** docs/helm.md's yaml block that starts with `# <name>`. */
async function documentedFile(name: string): Promise<string> {
  const block = (await helmDocBlocks('yaml')).find((body) => body.startsWith(`# ${name}\n`));
  assert.ok(block, `docs/helm.md has no yaml block that starts with "# ${name}"`);
  return block;
}

function key(object: KubernetesObject): string {
  return `${object.kind} ${object.metadata?.namespace ?? ''}/${object.metadata?.name}`;
}

function parseObjects(text: string): Map<string, KubernetesObject> {
  const objects = YAML.parseAllDocuments(text)
    .map((doc) => doc.toJS() as KubernetesObject | null)
    .filter((object): object is KubernetesObject => object !== null);
  const byKey = new Map(objects.map((object) => [key(object), object]));
  assert.equal(byKey.size, objects.length, 'an object is rendered twice');
  return byKey;
}

/**
 * The one difference between the two renderings, in whitespace alone: a folded block scalar (`>-`)
 * whose continuation is more indented, as the policies' CEL is written. YAML keeps one line break
 * before such a line, and so do Helm (sigs.k8s.io/yaml) and this test's parser; kustomize's kyaml
 * (go-yaml v3) keeps two, so `kubectl apply -k` stores an extra empty line in those expressions
 * and messages. Here both sides get one.
 */
function normalised(object: KubernetesObject): unknown {
  return JSON.parse(JSON.stringify(object), (_, value: unknown) => (typeof value === 'string' ? value.replace(/\n\n(?=[ \t])/g, '\n') : value));
}

function assertSameObjects(actual: Map<string, KubernetesObject>, expected: Map<string, KubernetesObject>, what: string): void {
  assert.deepEqual([...actual.keys()].sort(), [...expected.keys()].sort(), `${what}: not the same objects`);
  for (const [name, object] of expected) assert.deepEqual(normalised(actual.get(name)!), normalised(object), `${what}: ${name} differs`);
}

describe('the Helm chart (charts/chaperone) on a control plane of its own', function () {
  this.timeout(120_000);
  let helmBinary: string;
  let dir: string;
  let proxy: EgressProxy;
  let cp: ControlPlane;
  let clients: AdminClients;
  let injector: RunningInjector | undefined;
  let sidecar: PodSidecar | undefined;
  let valuesFile: string;
  /** docs/helm.md's commands, by their verb (install, upgrade, uninstall), and the namespace label. */
  let documented: Map<string, string[]>;

  /** helm, with Helm's own state in the test's directory and the control plane's kubeconfig. */
  function helm(args: string[]): Promise<CommandResult> {
    const env = { ...process.env, KUBECONFIG: cp.adminKubeconfig, HELM_CONFIG_HOME: path.join(dir, 'helm/config'), HELM_CACHE_HOME: path.join(dir, 'helm/cache'), HELM_DATA_HOME: path.join(dir, 'helm/data') };
    return new Promise((resolve) => {
      execFile(helmBinary, args, { env, timeout: 120_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
      );
    });
  }

  /** A documented command, with this checkout's chart and the test's copy of the documented values file, then `extra`. */
  async function runDocumented(verb: string, extra: string[] = []): Promise<CommandResult> {
    const words = documented.get(verb);
    assert.ok(words, `docs/helm.md documents no ${verb}`);
    const args = [...words.slice(1).map((word) => (word === 'charts/chaperone' ? CHART : word === 'my-values.yaml' ? valuesFile : word)), ...extra];
    return words[0] === 'helm' ? helm(args) : kubectl(cp.adminKubeconfig, args);
  }

  async function render(args: string[] = [], chart = CHART): Promise<Map<string, KubernetesObject>> {
    const result = await helm(['template', 'chaperone', chart, '--namespace', NAMESPACE, ...args]);
    assert.equal(result.code, 0, result.stderr);
    return parseObjects(result.stdout);
  }

  async function kustomize(directory: string): Promise<Map<string, KubernetesObject>> {
    const result = await kubectl(cp.adminKubeconfig, ['kustomize', path.join(REPO, 'manifests', directory)]);
    assert.equal(result.code, 0, result.stderr);
    return parseObjects(result.stdout);
  }

  const sidecarOf = (pod: V1Pod) => [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find((c) => c.name === 'chaperone');
  const podBody: V1Pod = { metadata: { generateName: 'dashboard-' }, spec: { containers: [{ name: 'dashboard', image: 'ghcr.io/example/dashboard:1' }] } };
  const createPod = (namespace: string, dryRun?: 'All') => clients.core.createNamespacedPod({ namespace, body: podBody, dryRun });
  const refusal = (err: unknown) => String((err as { body?: string }).body ?? err);

  before(async function () {
    this.timeout(15 * 60_000);
    helmBinary = await ensureHelm((line) => process.stderr.write(`      ${line}\n`));
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-helm-'));
    proxy = await startEgressProxy(dir);
    cp = await startControlPlane({ extraApiserverFlags: [`--egress-selector-config-file=${proxy.configFile}`] });
    clients = adminClients(cp);
    valuesFile = path.join(dir, 'my-values.yaml');
    await writeFile(valuesFile, await documentedFile('my-values.yaml'));
    documented = new Map();
    for (const words of await documentedCommands()) documented.set(words[0] === 'helm' ? words[1]! : words.slice(0, 2).join(' '), words);
  });

  after(async function () {
    await sidecar?.stop();
    await injector?.stop();
    await cp?.stop();
    await proxy?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('renders, with default values, the very objects kubectl kustomize renders of manifests/base; each component behind its value', async function () {
    const base = await kustomize('base');
    assertSameObjects(await render(), base, 'helm template against kubectl kustomize manifests/base');
    const all = new Map(base);
    for (const [value, component] of Object.entries(COMPONENTS)) {
      const objects = await kustomize(`components/${component}`);
      assertSameObjects(await render(['--set', `${value}.enabled=true`]), new Map([...base, ...objects]), `${value}.enabled=true against the base and manifests/components/${component}`);
      for (const [name, object] of objects) all.set(name, object);
    }
    // Every component kustomize has is a value of the chart.
    const components = (await readdir(path.join(REPO, 'manifests/components'), { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
    assert.deepEqual(components.sort(), Object.values(COMPONENTS).sort());
    assert.equal((await render(Object.keys(COMPONENTS).flatMap((value) => ['--set', `${value}.enabled=true`]))).size, all.size);
  });

  it('renders what the values say: images, flags, sizing, the webhook, the namespace, monitoring labels', async function () {
    const objects = await render([
      '--namespace', 'platform-chaperone',
      '--set', 'injector.image.tag=v9.9.9,injector.replicas=3,sidecar.image.repository=registry.example.com/chaperone-sidecar',
      '--set', 'sidecar.resources.limits.memory=512Mi,sidecar.resources.requests.cpu=100m,defaultAccess=dashboard',
      '--set', 'webhook.failurePolicy=Ignore,monitoring.enabled=true,monitoring.labels.release=kube-prometheus-stack',
    ]);
    const text = JSON.stringify([...objects.values()]);
    assert.doesNotMatch(text, /chaperone-system/, 'every mention of the namespace follows the release');
    const deployment = objects.get('Deployment platform-chaperone/chaperone-injector') as KubernetesObject & { spec: { replicas: number; template: { spec: { containers: { image: string; args: string[] }[] } } } };
    assert.equal(deployment.spec.replicas, 3);
    const container = deployment.spec.template.spec.containers[0]!;
    assert.equal(container.image, 'ghcr.io/chaperone-dev/chaperone-injector:v9.9.9');
    assert.deepEqual(container.args, [
      '--listen=:8443',
      '--sidecar-image=registry.example.com/chaperone-sidecar:v0.1.0',
      // Else the injector would not start: its sidecar image must be one of --allowed-images.
      '--allowed-images=registry.example.com/chaperone-sidecar',
      '--default-access=dashboard',
      '--cpu-request=100m',
      '--memory-limit=512Mi',
    ]);
    const webhook = (objects.get('MutatingWebhookConfiguration /chaperone-injector') as KubernetesObject & { webhooks: { failurePolicy: string; namespaceSelector: { matchExpressions: { values: string[] }[] } }[] }).webhooks[0]!;
    assert.equal(webhook.failurePolicy, 'Ignore');
    assert.ok(webhook.namespaceSelector.matchExpressions[1]!.values.includes('platform-chaperone'), 'the webhook never sends its own namespace');
    for (const name of ['PodMonitor platform-chaperone/chaperone-sidecars', 'PrometheusRule platform-chaperone/chaperone', 'ConfigMap platform-chaperone/chaperone-grafana-dashboard']) {
      assert.equal(objects.get(name)?.metadata?.labels?.release, 'kube-prometheus-stack', name);
    }
  });

  it('helm lint --strict finds nothing to warn about, with the components or without', async function () {
    for (const args of [[], Object.keys(COMPONENTS).flatMap((value) => ['--set', `${value}.enabled=true`])]) {
      const result = await helm(['lint', '--strict', CHART, '--namespace', NAMESPACE, ...args]);
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.doesNotMatch(result.stdout, /\[(WARNING|ERROR)\]/, result.stdout);
    }
  });

  it('helm package makes an archive that holds the linked manifests and renders the same', async function () {
    const result = await helm(['package', CHART, '--destination', dir]);
    assert.equal(result.code, 0, result.stderr);
    const archive = path.join(dir, 'chaperone-0.1.0.tgz');
    assertSameObjects(await render([], archive), await render(), 'the packaged chart against the checkout');
  });

  it("Chart.yaml's appVersion is package.json's version, and the images' tags follow it", async function () {
    const { version } = JSON.parse(await readFile(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
    const chart = YAML.parse(await readFile(path.join(CHART, 'Chart.yaml'), 'utf8')) as { appVersion: string; version: string };
    assert.equal(chart.appVersion, version);
    assert.equal(chart.version, version);
    const deployment = (await render(['--set', 'injector.image.tag=', '--set', 'sidecar.image.tag='])).get(`Deployment ${NAMESPACE}/chaperone-injector`) as KubernetesObject & { spec: { template: { spec: { containers: { image: string; args: string[] }[] } } } };
    const container = deployment.spec.template.spec.containers[0]!;
    assert.ok(container.image.endsWith(`:v${version}`), container.image);
    assert.ok(container.args.includes(`--sidecar-image=ghcr.io/chaperone-dev/chaperone-sidecar:v${version}`), container.args.join(' '));
  });

  it("values.schema.json's installationConfig.sidecar is the sidecar's installation settings, key by key and type by type", async function () {
    const file = path.join(CHART, 'values.schema.json');
    const schema = JSON.parse(await readFile(file, 'utf8')) as { properties: { installationConfig: { properties: { sidecar: { properties: Record<string, unknown>; additionalProperties: boolean } } } } };
    const sidecar = schema.properties.installationConfig.properties.sidecar;
    assert.equal(sidecar.additionalProperties, false);
    const expected = Object.fromEntries(
      INSTALLATION_KEYS.map((name) => {
        const option = sidecarConfigSpec.options[name];
        const type: Record<string, unknown> = z.toJSONSchema(option.type.schema, { io: 'input' });
        delete type.$schema;
        return [name, { description: option.description, ...type }];
      }),
    );
    // An installation setting added to the sidecar is added here by rerunning with CHAPERONE_UPDATE_DOCS=1, as the docs' generated tables are.
    if (process.env.CHAPERONE_UPDATE_DOCS === '1') {
      sidecar.properties = expected;
      await writeFile(file, `${JSON.stringify(schema, null, 2)}\n`);
    }
    assert.deepEqual(sidecar.properties, expected, 'charts/chaperone/values.schema.json is out of date (an installation setting was added or changed): CHAPERONE_UPDATE_DOCS=1 npx mocha -g values.schema test/e2e/helm.test.ts');
  });

  it('refuses, before anything is installed, a key the schema does not know (naming it) and a shared namespace', async function () {
    const typos: [string, RegExp][] = [
      ['injector.replica=3', /at '\/injector': additional properties 'replica' not allowed/],
      ['installationConfig.sidecar.oidcIssuerURL=https://auth.example.com', /at '\/installationConfig\/sidecar': additional properties 'oidcIssuerURL' not allowed/],
      ['webhook.failurePolicy=Never', /at '\/webhook\/failurePolicy'/],
    ];
    for (const [value, message] of typos) {
      const result = await runDocumented('install', ['--set', value]);
      assert.notEqual(result.code, 0, `${value} was installed`);
      assert.match(result.stderr, message);
    }
    const shared = await helm(['install', 'chaperone', CHART, '--namespace', 'default']);
    assert.notEqual(shared.code, 0);
    assert.match(shared.stderr, /install into a namespace of its own \(--namespace chaperone-system --create-namespace\), not default/);
    const releases = await helm(['list', '--all-namespaces', '--all', '--short']);
    assert.equal(releases.stdout.trim(), '');
    await assert.rejects(clients.core.readNamespace({ name: NAMESPACE }), /404|not found/i);
  });

  it('installs as docs/helm.md says: the API server calls the injector at its Service, the pod gets the sidecar sized, signing in and auditing as the values say', async function () {
    this.timeout(5 * 60_000);
    const install = await runDocumented('install');
    assert.equal(install.code, 0, install.stderr);
    const admission = clients.kubeconfig.makeApiClient(AdmissionregistrationV1Api);
    // The policies are stored as written (one line break before a more indented line: normalised() above).
    const [written] = YAML.parseAllDocuments(await readFile(path.join(REPO, 'manifests/base/provisioned-objects-policy.yaml'), 'utf8')).map((doc) => doc.toJS() as { spec: { variables: unknown } });
    const stored = (await admission.readValidatingAdmissionPolicy({ name: 'chaperone-provisioned-objects' })).spec?.variables;
    assert.deepEqual(JSON.parse(JSON.stringify(stored)), written!.spec.variables);

    // The kubelet's and kube-proxy's part: the injector the Deployment describes, reached at the Service's cluster IP.
    const deployment = await clients.kubeconfig.makeApiClient(AppsV1Api).readNamespacedDeployment({ name: 'chaperone-injector', namespace: NAMESPACE });
    const port = await freePort();
    injector = await startDeployedInjector(cp, clients, deployment, dir, [`--listen=127.0.0.1:${port}`]);
    const service = await clients.core.readNamespacedService({ name: 'chaperone-injector', namespace: NAMESPACE });
    const serviceAddress = `${service.spec!.clusterIP}:${service.spec!.ports![0]!.port}`;
    proxy.route(serviceAddress, { host: '127.0.0.1', port });
    await waitFor('the injector to set the caBundle', async () => (await admission.readMutatingWebhookConfiguration({ name: 'chaperone-injector' })).webhooks?.[0]?.clientConfig.caBundle, 30_000);

    const team = 'team-a';
    assert.equal((await kubectl(cp.adminKubeconfig, ['create', 'namespace', team])).code, 0);
    const label = await runDocumented('kubectl label');
    assert.equal(label.code, 0, label.stderr);
    // The API server learns of the webhook configuration's caBundle a moment after it is written.
    await waitFor('a pod of the labelled namespace to be injected', async () => sidecarOf(await createPod(team, 'All')) !== undefined, 60_000, 1000);
    const pod = await clients.core.createNamespacedPod({ namespace: team, body: { ...podBody, metadata: { name: 'dashboard' } } });
    assert.ok(sidecarOf(pod), 'the pod has the sidecar');
    assert.ok(proxy.requested.includes(serviceAddress), `the API server called the Service (${proxy.requested.join(', ')})`);
    const [created] = (await readAuditEvents(cp)).filter((e) => e.verb === 'create' && e.objectRef?.resource === 'pods' && e.objectRef.namespace === team && e.objectRef.name === pod.metadata!.name && e.stage === 'ResponseComplete');
    const mutations = Object.entries(created?.annotations ?? {})
      .filter(([name]) => name.startsWith('mutation.webhook.admission.k8s.io/'))
      .map(([, value]) => JSON.parse(value) as { configuration: string; webhook: string; mutated: boolean });
    assert.ok(
      mutations.some((m) => m.configuration === 'chaperone-injector' && m.webhook === 'inject.chaperone.dev' && m.mutated),
      `the audit log says the installed webhook mutated the pod: ${JSON.stringify(created?.annotations)}`,
    );

    // The values' sizing and installation configuration.
    const values = YAML.parse(await readFile(valuesFile, 'utf8')) as { sidecar: { resources: { requests: { memory: string }; limits: { memory: string } } } };
    const proxyContainer = sidecarOf(pod)!;
    assert.equal(proxyContainer.resources?.requests?.memory, values.sidecar.resources.requests.memory);
    assert.equal(proxyContainer.resources?.limits?.memory, values.sidecar.resources.limits.memory);
    assert.ok(proxyContainer.args!.includes(`--installation-config=${NAMESPACE}/chaperone-sidecar-config`), proxyContainer.args!.join(' '));

    sidecar = await startPodSidecar(cp, clients, pod);
    const identityCa = decodeData((await clients.core.readNamespacedSecret({ name: SECRETS.identityCa, namespace: NAMESPACE })).data);
    const person = (user: string): CertificateAndKey =>
      issueCertificate({ certPem: identityCa['ca.crt']!, keyPem: identityCa['ca.key']! }, { commonName: user, usage: 'client', validitySeconds: 600 });
    const listPods = (user: string) => rawRequest(`${sidecar!.url}/api/v1/namespaces/${team}/pods`, { ca: sidecar!.dashboard.caPem, cert: person(user) });
    for (const user of ['alice', 'breakglass']) await grantInNamespace(cp, clients, team, 'view', user);
    const alice = await listPods('alice');
    assert.equal(alice.status, 200, alice.body);
    // guardDeny of the values: refused by the sidecar, whatever RBAC says, and never sent to the API server.
    const breakglass = await listPods('breakglass');
    assert.equal(breakglass.status, 403, breakglass.body);
    assert.match((JSON.parse(breakglass.body) as { message: string }).message, /never impersonates the user "breakglass"/);
    // The values' audit policy: pods at Request level.
    const recorded = await waitFor('the sidecar to record alice\'s request', async () => {
      const events = (await readFile(sidecar!.auditLog, 'utf8')).split('\n').filter(Boolean).map((line) => JSON.parse(line) as { level: string; verb: string; user: { username: string }; objectRef?: { resource?: string } });
      return events.find((e) => e.user.username === 'alice' && e.verb === 'list' && e.objectRef?.resource === 'pods');
    }, 20_000, 250);
    assert.equal(recorded.level, 'Request');
    const scoped = (await readAuditEvents(cp)).filter((e) => e.user.username === `system:serviceaccount:${team}:chaperone-impersonator`);
    assert.ok(scoped.some((e) => e.impersonatedUser?.username === 'alice' && e.verb === 'list'), 'alice reached the API server through the sidecar');
    assert.ok(!scoped.some((e) => e.impersonatedUser?.username === 'breakglass'), 'breakglass never reached the API server through the sidecar');
  });

  it('a configuration the sidecar would refuse passes helm upgrade, and the injector refuses new pods naming its field; the documented upgrade puts it right', async function () {
    this.timeout(5 * 60_000);
    const admission = clients.kubeconfig.makeApiClient(AdmissionregistrationV1Api);
    const caBundle = async () => (await admission.readMutatingWebhookConfiguration({ name: 'chaperone-injector' })).webhooks?.[0]?.clientConfig.caBundle;
    const before = await caBundle();
    const bad = await runDocumented('upgrade', ['--set-string', 'installationConfig.sidecar.authenticationTokenWebhookTimeout=soon']);
    assert.equal(bad.code, 0, bad.stderr);
    const denial = await waitFor('the injector to refuse pods', () => createPod('team-a', 'All').then(() => undefined, refusal), 60_000, 1000);
    assert.match(denial, /chaperone-sidecar-config/);
    assert.match(denial, /authenticationTokenWebhookTimeout/);
    const fixed = await runDocumented('upgrade');
    assert.equal(fixed.code, 0, fixed.stderr);
    const pod = await waitFor('pods to be injected again', () => createPod('team-a', 'All'), 60_000, 1000);
    assert.ok(sidecarOf(pod), 'the pod has the sidecar');
    // The caBundle is the injector's: an upgrade leaves it alone.
    assert.equal(await caBundle(), before);
  });

  it('uninstalls as docs/helm.md says, and nothing of the installation is left', async function () {
    this.timeout(5 * 60_000);
    const installed = await render(['--values', valuesFile]);
    // Uninstalling, step 1: the label goes, and the injector removes what it provisioned.
    const unlabel = await kubectl(cp.adminKubeconfig, ['label', 'namespace', '--all', 'chaperone.dev/inject-']);
    assert.equal(unlabel.code, 0, unlabel.stderr);
    const uninstalling = (await uninstallingSection()).match(/```sh\n([\s\S]*?)```/)![1]!.replace(/\\\n/g, ' ').trim().split(/\s+/);
    assert.equal(uninstalling.shift(), 'kubectl');
    await waitFor('the documented command to list nothing', async () => {
      const listed = await kubectl(cp.adminKubeconfig, [...uninstalling, '-o', 'name']);
      assert.equal(listed.code, 0, listed.stderr);
      return listed.stdout.trim() === '';
    }, 60_000, 500);

    const uninstall = await runDocumented('uninstall');
    assert.equal(uninstall.code, 0, uninstall.stderr);
    // The Deployment is gone, and with it the injector's pods.
    await injector?.stop();
    injector = undefined;
    await waitFor('the namespace to be deleted', () => clients.core.readNamespace({ name: NAMESPACE }).then(() => false, () => true), 120_000, 1000);

    const manifest = path.join(dir, 'installed.json');
    await writeFile(manifest, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [...installed.values()] }));
    const left = await kubectl(cp.adminKubeconfig, ['get', '-f', manifest, '--ignore-not-found', '-o', 'name']);
    assert.equal(left.code, 0, left.stderr);
    assert.equal(left.stdout.trim(), '', 'every object the chart installed is gone');
    const provisioned = await kubectl(cp.adminKubeconfig, ['get', 'clusterroles,clusterrolebindings,roles,rolebindings,serviceaccounts,configmaps,secrets', '-A', '-l', 'app.kubernetes.io/managed-by=chaperone-injector', '-o', 'name']);
    assert.equal(provisioned.stdout.trim(), '', 'nothing the injector provisioned is left');
    const releases = await helm(['list', '--all-namespaces', '--all', '--short']);
    assert.equal(releases.stdout.trim(), '');
  });
});
