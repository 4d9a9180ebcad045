// The injector end to end, as it ships: with its controller, which keeps its serving certificate and
// the webhook configuration's caBundle and provisions the labelled namespaces. The real API server
// calls it through the shipped MutatingWebhookConfiguration (manifests/base), rewritten only to reach
// a local URL and to select this run's namespaces alone; the cluster-wide names are this run's own
// (local-cluster/provisioned.ts), since the control plane is shared with the other suites.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { AdmissionregistrationV1Api, PatchStrategy, setHeaderOptions, type V1MutatingWebhookConfiguration, type V1Pod } from '@kubernetes/client-node';
import type { ControlPlane } from '../../local-cluster/control-plane.js';
import { adminClients, bindClusterRoleInNamespace, createNamespace, createServiceAccount, kubectl, userSubject, waitForCanI, type AdminClients } from '../../local-cluster/kube.js';
import { sharedControlPlane } from '../support/shared.js';
import { startInjector, type RunningInjector } from '../../injector/injector.js';
import { goldenCases } from '../support/injector-goldens.js';
import { canonicalQuantity } from '../../injector/quantity.js';
import { installInjector, type InjectorInstallation } from '../../local-cluster/provisioned.js';
import { decodePatch, review, silentLog, testConfig, TEST_SIDECAR_UPSTREAM } from '../unit/injector/helpers.js';
import type { NamespaceLabels } from '../../injector/review.js';

const WEBHOOK_FILE = fileURLToPath(new URL('../../manifests/base/mutatingwebhookconfiguration.yaml', import.meta.url));
const RUN_LABEL = 'chaperone.dev/test-run';
const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

interface Registered {
  installation: InjectorInstallation;
  injector: RunningInjector;
  webhook: string;
  run: string;
  /** Labelled for injection, with the scoped and the default service account. */
  labelled: string;
  /** Only this run's label. */
  unlabelled: string;
  remove(): Promise<void>;
}

async function waitFor<T>(what: string, check: () => Promise<T | false | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await check();
    if (result !== false && result !== undefined) return result;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function podJson(name: string, extra: Partial<V1Pod['metadata']> = {}): V1Pod {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, ...extra }, spec: { containers: [{ name: 'app', image: 'nginx:1.27' }] } };
}

describe('injector (the real API server calls it)', function () {
  this.timeout(120_000);
  let cp: ControlPlane;
  let clients: AdminClients;
  let dir: string;
  let main: Registered;

  /** The configuration the injector here runs with, as far as a review needs it: pinned to this control plane. */
  const pinnedHere = () => testConfig([`--sidecar-upstream=${cp.url}`]);
  /** The namespace as the API server has it now, for a review made here rather than by the injector. */
  const namespaceNow: NamespaceLabels = async (name) => {
    const { metadata } = await clients.core.readNamespace({ name });
    return { labels: metadata?.labels ?? {}, annotations: metadata?.annotations ?? {} };
  };
  const chaperoneArgs = (pod: V1Pod) => [...(pod.spec?.initContainers ?? []), ...pod.spec!.containers].find((c) => c.name === 'chaperone')!.args!;

  /** kubectl, with a pod written to a file for -f; the JSON the API server answered. */
  async function kubectlPod(verb: string[], pod: V1Pod, namespace: string): Promise<{ code: number; pod?: V1Pod; stderr: string }> {
    const file = path.join(dir, `${randomBytes(4).toString('hex')}.json`);
    await writeFile(file, JSON.stringify(pod));
    const result = await kubectl(cp.adminKubeconfig, [...verb, '-n', namespace, '-f', file, '-o', 'json']);
    return { code: result.code, stderr: result.stderr, ...(result.code === 0 ? { pod: JSON.parse(result.stdout) as V1Pod } : {}) };
  }

  async function create(pod: V1Pod, namespace: string): Promise<V1Pod> {
    const result = await kubectlPod(['create'], pod, namespace);
    assert.equal(result.code, 0, result.stderr);
    return result.pod!;
  }

  /** The shipped webhook configuration, for a local injector and this run's namespaces only; the injector sets its caBundle. */
  async function register(injector: RunningInjector, installation: InjectorInstallation, run: string): Promise<string> {
    const config = YAML.parse(await readFile(WEBHOOK_FILE, 'utf8')) as V1MutatingWebhookConfiguration;
    const name = installation.webhookConfiguration;
    config.metadata!.name = name;
    const webhook = config.webhooks![0]!;
    webhook.clientConfig = { url: `https://127.0.0.1:${injector.port}/mutate` };
    webhook.namespaceSelector!.matchExpressions!.push({ key: RUN_LABEL, operator: 'In', values: [run] });
    await clients.kubeconfig.makeApiClient(AdmissionregistrationV1Api).createMutatingWebhookConfiguration({ body: config });
    return name;
  }

  async function setUp(): Promise<Registered> {
    const installation = await installInjector(cp, clients);
    const run = installation.runLabel[1];
    // No certificate files: it serves its controller's certificate, issued for 127.0.0.1 too.
    const config = installation.config(['--listen=127.0.0.1:0', '--webhook-hosts=127.0.0.1', '--resync-interval=5s']);
    const injector = await startInjector(config, silentLog);
    // Its controller creates the scoped service account (and the rest) in the labelled namespace.
    const labelled = await installation.createLabelledNamespace('inject');
    const unlabelled = await createNamespace(clients, 'plain', { [RUN_LABEL]: run });
    for (const namespace of [labelled, unlabelled]) {
      await waitFor(`the default service account in ${namespace}`, async () => (await kubectl(cp.adminKubeconfig, ['get', 'serviceaccount', 'default', '-n', namespace])).code === 0);
    }
    const webhook = await register(injector, installation, run);
    // The API server picks up webhook configurations from an informer, a moment after the write; the
    // controller sets the caBundle and provisions the namespace within seconds.
    await waitFor(
      'the API server to call the injector',
      async () => {
        const result = await kubectlPod(['create', '--dry-run=server'], podJson('probe'), labelled);
        return result.pod?.spec?.serviceAccountName === 'chaperone-impersonator';
      },
      60_000,
    );
    let stopped = false;
    const stop = async () => {
      if (stopped) return;
      stopped = true;
      await injector.stop();
    };
    return {
      installation,
      injector: { port: injector.port, stop },
      webhook,
      run,
      labelled,
      unlabelled,
      remove: async () => {
        await stop();
        await installation.cleanup();
      },
    };
  }

  before(async function () {
    this.timeout(15 * 60_000);
    cp = await sharedControlPlane();
    clients = adminClients(cp);
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-injector-e2e-'));
    main = await setUp();
  });

  after(async function () {
    await main?.remove();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('injects a bare pod created in a labelled namespace, and the API server accepts the result', async function () {
    const stored = await create(podJson('bare'), main.labelled);
    const spec = stored.spec!;
    assert.equal(spec.initContainers?.[0]?.name, 'chaperone');
    assert.equal(spec.initContainers[0].restartPolicy, 'Always');
    assert.equal(spec.serviceAccountName, 'chaperone-impersonator');
    assert.equal(spec.automountServiceAccountToken, false);
    assert.equal(stored.metadata!.annotations!['chaperone.dev/original-service-account'], 'default');
    const app = spec.containers[0]!;
    assert.deepEqual(app.volumeMounts, [{ name: 'chaperone-api-access', mountPath: SA_DIR, readOnly: true }]);
    assert.deepEqual(app.env!.map((e) => `${e.name}=${e.value}`), ['KUBERNETES_SERVICE_HOST=127.0.0.1', 'KUBERNETES_SERVICE_PORT=6443', 'KUBERNETES_SERVICE_PORT_HTTPS=6443']);
    // The ServiceAccount admission plugin ran before the webhook and added its token volume: gone.
    const tokenVolumes = spec.volumes!.filter((v) => v.projected?.sources?.some((s) => s.serviceAccountToken));
    assert.deepEqual(tokenVolumes.map((v) => v.name), ['chaperone-upstream']);
  });

  it('stores exactly what the injector wrote: injecting the stored pod again changes nothing', async function () {
    const stored = await create(podJson('stored', { annotations: { 'chaperone.dev/cpu-request': '0.25', 'chaperone.dev/memory-limit': '0.5Gi', 'chaperone.dev/cpu-limit': '1000m' } }), main.labelled);
    const resources = stored.spec!.initContainers![0]!.resources!;
    // The API server's own spelling of 0.25, 1000m and 0.5Gi, and the injector's.
    assert.deepEqual(resources, { requests: { cpu: '250m', memory: '128Mi' }, limits: { cpu: '1', memory: '512Mi' } });
    assert.deepEqual([canonicalQuantity('0.25'), canonicalQuantity('1000m'), canonicalQuantity('0.5Gi')], ['250m', '1', '512Mi']);
    const again = await review({ object: stored, namespace: main.labelled }, pinnedHere(), namespaceNow);
    assert.equal(again.response.allowed, true);
    assert.deepEqual(decodePatch(again), [], 'the API server defaulted nothing the injector left out');
  });

  describe('every golden input, created for real', function () {
    before(async function () {
      // The ServiceAccount admission plugin runs before the webhook: the pod's own account must exist too.
      const own = new Set(goldenCases().map((c) => c.input.spec!.serviceAccountName ?? 'default'));
      for (const name of own) if (!['default', 'chaperone-impersonator'].includes(name)) await createServiceAccount(clients, main.labelled, name);
    });

    for (const golden of goldenCases()) {
      it(`${golden.name}: the API server accepts the injected pod and keeps the golden output`, async function () {
        const input = structuredClone(golden.input);
        // The golden inputs may name a namespace and an owner that do not exist here.
        delete input.metadata!.namespace;
        delete input.metadata!.ownerReferences;
        const stored = await create(input, main.labelled);
        const expected = YAML.parse(await readFile(golden.outputFile, 'utf8')) as V1Pod;
        assert.deepEqual(stored.spec!.serviceAccountName, expected.spec!.serviceAccountName);
        for (const list of ['initContainers', 'containers'] as const) {
          assert.deepEqual((stored.spec![list] ?? []).map((c) => c.name), (expected.spec![list] ?? []).map((c) => c.name), list);
        }
        // The goldens pin the sidecar to a cluster's usual address; this injector, to this control plane.
        const sidecarOf = (pod: V1Pod, upstream: string) => {
          const container = pod.spec!.initContainers?.find((c) => c.name === 'chaperone') ?? pod.spec!.containers.find((c) => c.name === 'chaperone')!;
          return { ...container, args: container.args!.map((arg) => (arg === `--upstream=${upstream}` ? '--upstream=<pinned>' : arg)) };
        };
        assert.deepEqual(sidecarOf(stored, cp.url), sidecarOf(expected, TEST_SIDECAR_UPSTREAM));
        for (const name of ['chaperone-upstream', 'chaperone-serving', 'chaperone-identity-ca', 'chaperone-api-access']) {
          assert.deepEqual(stored.spec!.volumes!.find((v) => v.name === name), expected.spec!.volumes!.find((v) => v.name === name), name);
        }
        const again = await review({ object: stored, namespace: main.labelled }, pinnedHere(), namespaceNow);
        assert.deepEqual(decodePatch(again), []);
      });
    }
  });

  it('leaves a pod in a namespace without the label untouched', async function () {
    const stored = await create(podJson('untouched'), main.unlabelled);
    assert.equal(stored.spec!.initContainers, undefined);
    assert.equal(stored.spec!.serviceAccountName, 'default');
    assert.equal(stored.metadata!.annotations?.['chaperone.dev/status'], undefined);
  });

  it('leaves a pod labelled chaperone.dev/inject=disabled untouched', async function () {
    const stored = await create(podJson('opted-out', { labels: { 'chaperone.dev/inject': 'disabled' } }), main.labelled);
    assert.equal(stored.spec!.initContainers, undefined);
    assert.equal(stored.spec!.serviceAccountName, 'default');
    assert.ok(stored.spec!.volumes!.some((v) => v.name.startsWith('kube-api-access-')), 'it keeps its own service-account token');
  });

  it('shows the injection to kubectl apply --dry-run=server, and stores nothing', async function () {
    const result = await kubectlPod(['apply', '--dry-run=server'], podJson('dry-run'), main.labelled);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.pod!.spec!.initContainers?.[0]?.name, 'chaperone');
    const get = await kubectl(cp.adminKubeconfig, ['get', 'pod', 'dry-run', '-n', main.labelled]);
    assert.match(get.stderr, /NotFound/);
  });

  it('refuses with its own message a pod it cannot make safe', async function () {
    const pod = podJson('shared-pids');
    pod.spec!.shareProcessNamespace = true;
    const result = await kubectlPod(['create'], pod, main.labelled);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /admission webhook "inject\.chaperone\.dev" denied the request: chaperone refuses this pod: spec\.shareProcessNamespace is true/);
  });

  it('refuses a bad annotation, naming it and what is allowed', async function () {
    const result = await kubectlPod(['create'], podJson('bad-setting', { annotations: { 'chaperone.dev/log-level': 'loud' } }), main.labelled);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /annotation chaperone\.dev\/log-level: "loud" is not one of trace, debug, info, warn, error/);
  });

  describe('what the sidecar runs or trusts: the Namespace (cluster administrators), never the pod (F2 and F3 of the red-team runs)', function () {
    const EDIT = 'trust-edit';
    const ISSUER = 'https://auth.example.com/realms/company';
    const sidecarOf = (pod: V1Pod) => [...(pod.spec?.initContainers ?? []), ...pod.spec!.containers].find((c) => c.name === 'chaperone')!;
    const sidecarArgs = (pod: V1Pod) => sidecarOf(pod).args!;

    before(async function () {
      await bindClusterRoleInNamespace(clients, main.labelled, 'edit', [userSubject(EDIT)]);
      await waitForCanI(cp, EDIT, ['create', 'pods', '-n', main.labelled]);
    });

    afterEach(async function () {
      const remove = ['image', 'authenticators', 'oidc-issuer-url', 'oidc-client-id'].map((name) => `chaperone.dev/${name}-`);
      await kubectl(cp.adminKubeconfig, ['annotate', 'namespace', main.labelled, ...remove]);
    });

    it('refuses, as edit, a pod that names its own issuer, client ID and anonymous, saying where each setting lives', async function () {
      const annotations = { 'chaperone.dev/authenticators': 'oidc,anonymous', 'chaperone.dev/oidc-issuer-url': 'https://issuer.attacker.example', 'chaperone.dev/oidc-client-id': 'any-client-of-hers' };
      const result = await kubectlPod(['create', '--as', EDIT], podJson('own-issuer', { annotations }), main.labelled);
      assert.notEqual(result.code, 0, `stored, with a sidecar that trusts her issuer: ${JSON.stringify(result.pod && sidecarArgs(result.pod))}`);
      assert.match(result.stderr, /admission webhook "inject\.chaperone\.dev" denied the request: chaperone cannot inject this pod:/);
      for (const name of Object.keys(annotations)) {
        const setting = name.slice('chaperone.dev/'.length);
        assert.match(
          result.stderr,
          new RegExp(`annotation chaperone\\.dev/${setting}: what the sidecar runs or trusts is not a pod's to choose: remove it from the pod; cluster administrators set it on the namespace \\(kubectl annotate namespace ${main.labelled} chaperone\\.dev/${setting}=\\.\\.\\.\\) or as the injector's --${setting}`),
        );
      }
    });

    it("refuses a pod that keeps the namespace's issuer and names only another client ID (replay across audiences)", async function () {
      await kubectl(cp.adminKubeconfig, ['annotate', 'namespace', main.labelled, 'chaperone.dev/authenticators=oidc', `chaperone.dev/oidc-issuer-url=${ISSUER}`, 'chaperone.dev/oidc-client-id=headlamp']);
      const result = await kubectlPod(['create', '--as', EDIT], podJson('other-audience', { annotations: { 'chaperone.dev/oidc-client-id': 'any-client-of-hers' } }), main.labelled);
      assert.notEqual(result.code, 0, `stored: ${JSON.stringify(result.pod && sidecarArgs(result.pod))}`);
      assert.match(result.stderr, /annotation chaperone\.dev\/oidc-client-id: what the sidecar runs or trusts is not a pod's to choose/);
    });

    it('refuses, as edit, a pod that picks an older sidecar to hold the token (chaperone.dev/image: …:0.1.0, before the critical fixes), saying where the setting lives', async function () {
      const annotations = { 'chaperone.dev/image': 'ghcr.io/chaperone-dev/chaperone-sidecar:0.1.0' };
      const result = await kubectlPod(['create', '--as', EDIT], podJson('downgrade', { annotations }), main.labelled);
      assert.notEqual(result.code, 0, `stored, with the sidecar image ${result.pod && sidecarOf(result.pod).image}`);
      assert.match(result.stderr, /admission webhook "inject\.chaperone\.dev" denied the request: chaperone cannot inject this pod:/);
      assert.match(
        result.stderr,
        new RegExp(`annotation chaperone\\.dev/image: what the sidecar runs or trusts is not a pod's to choose: remove it from the pod; cluster administrators set it on the namespace \\(kubectl annotate namespace ${main.labelled} chaperone\\.dev/image=\\.\\.\\.\\) or as the injector's --sidecar-image`),
      );
      // Even the image the namespace already runs: a pod does not name it at all.
      await kubectl(cp.adminKubeconfig, ['annotate', 'namespace', main.labelled, 'chaperone.dev/image=ghcr.io/chaperone-dev/chaperone-sidecar:v0.2.0']);
      const same = await kubectlPod(['create', '--as', EDIT], podJson('same-image', { annotations: { 'chaperone.dev/image': 'ghcr.io/chaperone-dev/chaperone-sidecar:v0.2.0' } }), main.labelled);
      assert.notEqual(same.code, 0);
      assert.match(same.stderr, /annotation chaperone\.dev\/image: what the sidecar runs or trusts is not a pod's to choose/);
    });

    it("takes the Namespace's chaperone.dev/image, which edit cannot write, if --allowed-images allows it", async function () {
      const denied = await kubectl(cp.adminKubeconfig, ['annotate', 'namespace', main.labelled, 'chaperone.dev/image=ghcr.io/chaperone-dev/chaperone-sidecar:0.1.0', '--as', EDIT]);
      assert.notEqual(denied.code, 0);
      assert.match(denied.stderr, /namespaces "[^"]+" is forbidden: User "trust-edit" cannot patch resource "namespaces"/);

      const image = `ghcr.io/chaperone-dev/chaperone-sidecar@sha256:${'b'.repeat(64)}`;
      await kubectl(cp.adminKubeconfig, ['annotate', 'namespace', main.labelled, `chaperone.dev/image=${image}`]);
      const created = await kubectlPod(['create', '--as', EDIT], podJson('namespace-image'), main.labelled);
      assert.equal(created.code, 0, created.stderr);
      assert.equal(sidecarOf(created.pod!).image, image);

      // An image of another repository is refused for every pod of the namespace, naming the annotation.
      await kubectl(cp.adminKubeconfig, ['annotate', 'namespace', main.labelled, '--overwrite', 'chaperone.dev/image=ghcr.io/attacker/steal:1']);
      const bad = await kubectlPod(['create'], podJson('namespace-bad-image'), main.labelled);
      assert.notEqual(bad.code, 0, `stored, with the sidecar image ${bad.pod && sidecarOf(bad.pod).image}`);
      assert.match(
        bad.stderr,
        new RegExp(`namespace ${main.labelled}'s annotation chaperone\\.dev/image: "ghcr\\.io/attacker/steal:1" is not an image of ghcr\\.io/chaperone-dev/chaperone-sidecar \\(the injector's --allowed-images\\)`),
      );
    });

    it("takes the Namespace's annotations, which edit cannot write, at the next pod", async function () {
      const denied = await kubectl(cp.adminKubeconfig, ['annotate', 'namespace', main.labelled, 'chaperone.dev/oidc-client-id=any-client-of-hers', '--as', EDIT]);
      assert.notEqual(denied.code, 0);
      assert.match(denied.stderr, /namespaces "[^"]+" is forbidden: User "trust-edit" cannot patch resource "namespaces"/);

      await kubectl(cp.adminKubeconfig, ['annotate', 'namespace', main.labelled, 'chaperone.dev/authenticators=oidc', `chaperone.dev/oidc-issuer-url=${ISSUER}`, 'chaperone.dev/oidc-client-id=headlamp']);
      const created = await kubectlPod(['create', '--as', EDIT], podJson('namespace-oidc'), main.labelled);
      assert.equal(created.code, 0, created.stderr);
      const args = sidecarArgs(created.pod!);
      assert.ok(args.includes(`--oidc-issuer-url=${ISSUER}`) && args.includes('--oidc-client-id=headlamp'), args.join(' '));
      assert.ok(!args.some((a) => a === '--anonymous' || a.startsWith('--client-ca-file')), args.join(' '));

      // A namespace annotation the injector's flag would refuse refuses the namespace's pods, naming it.
      await kubectl(cp.adminKubeconfig, ['annotate', 'namespace', main.labelled, '--overwrite', 'chaperone.dev/oidc-issuer-url=http://insecure.example']);
      const bad = await kubectlPod(['create'], podJson('namespace-bad-issuer'), main.labelled);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, new RegExp(`namespace ${main.labelled}'s annotation chaperone\\.dev/oidc-issuer-url: "http://insecure\\.example" is not an https URL`));
    });
  });

  it('pins the sidecar to its own API server: a Service named kubernetes in the namespace cannot redirect it', async function () {
    // The kubelet lets a Service named kubernetes in the pod's namespace set KUBERNETES_SERVICE_HOST
    // and _PORT (service links), which the sidecar's --upstream would otherwise default to.
    const created = await kubectl(cp.adminKubeconfig, ['create', 'service', 'clusterip', 'kubernetes', '--tcp=443:8443', '-n', main.labelled]);
    assert.equal(created.code, 0, created.stderr);
    const stored = await create(podJson('pinned'), main.labelled);
    const args = chaperoneArgs(stored);
    assert.ok(args.includes(`--upstream=${cp.url}`), `the sidecar's upstream is the injector's own API server: ${args.join(' ')}`);
    await kubectl(cp.adminKubeconfig, ['delete', 'service', 'kubernetes', '-n', main.labelled]);
  });

  it('refuses an ephemeral container (kubectl debug) that targets the sidecar', async function () {
    await create(podJson('debug-me'), main.labelled);
    const ephemeral = (target: string) => ({ spec: { ephemeralContainers: [{ name: `debug-${target}`, image: 'busybox:1.36', targetContainerName: target }] } });
    const patch = (target: string) =>
      kubectl(cp.adminKubeconfig, ['patch', 'pod', 'debug-me', '-n', main.labelled, '--subresource=ephemeralcontainers', '--type=strategic', '-p', JSON.stringify(ephemeral(target))]);
    const refused = await patch('chaperone');
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /ephemeral container debug-chaperone targets the chaperone container/);
    const allowed = await patch('app');
    assert.equal(allowed.code, 0, allowed.stderr);
  });

  it('refuses a pod in a labelled namespace that is not provisioned, naming what is missing; injects it once it is', async function () {
    // Deterministically not ready: a ServiceAccount of the scoped account's name that the injector did
    // not create (it leaves such an object alone), made before the namespace is labelled.
    const namespace = await createNamespace(clients, 'fresh', { [RUN_LABEL]: main.run });
    try {
      await createServiceAccount(clients, namespace, 'chaperone-impersonator');
      await waitFor(`the default service account in ${namespace}`, async () => (await kubectl(cp.adminKubeconfig, ['get', 'serviceaccount', 'default', '-n', namespace])).code === 0);
      await clients.core.patchNamespace(
        { name: namespace, body: { metadata: { labels: { 'chaperone.dev/inject': 'enabled', [main.installation.runLabel[0]]: main.installation.runLabel[1] } } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      const notReady =
        /chaperone cannot inject this pod yet: namespace fresh-\S+ is labelled for injection but not ready; missing: ServiceAccount chaperone-impersonator \(exists, but this chaperone installation did not create it and leaves it alone\)/;
      // The API server sees the new label a moment after the write (its namespace informer).
      const refused = await waitFor('the API server to call the injector for the new namespace', async () => {
        const result = await kubectlPod(['create', '--dry-run=server'], podJson('early'), namespace);
        assert.ok(result.code !== 0 || result.pod?.spec?.serviceAccountName === 'default', 'a pod is never injected into a namespace that is not ready');
        return result.code !== 0 && result.stderr;
      });
      assert.match(refused, /admission webhook "inject\.chaperone\.dev" denied the request/);
      assert.match(refused, notReady);
      const created = await kubectlPod(['create'], podJson('early'), namespace);
      assert.notEqual(created.code, 0);
      assert.match(created.stderr, notReady);

      await clients.core.deleteNamespacedServiceAccount({ name: 'chaperone-impersonator', namespace });
      await waitFor('the namespace to be provisioned', async () => (await kubectlPod(['create', '--dry-run=server'], podJson('late'), namespace)).code === 0, 30_000);
      const stored = await create(podJson('late'), namespace);
      assert.equal(stored.spec!.initContainers?.[0]?.name, 'chaperone');
      assert.equal(stored.spec!.serviceAccountName, 'chaperone-impersonator');
    } finally {
      await clients.core.deleteNamespace({ name: namespace }).catch(() => undefined);
    }
  });

  describe('with failurePolicy Fail and the injector stopped', function () {
    let stopped: Registered;

    before(async function () {
      stopped = await setUp();
      await stopped.injector.stop();
    });

    after(async function () {
      await stopped?.remove();
    });

    it('refuses pods in a labelled namespace: a dashboard never starts without its proxy', async function () {
      const result = await kubectlPod(['create'], podJson('no-proxy'), stopped.labelled);
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /failed calling webhook "inject\.chaperone\.dev"/);
    });

    it('still admits pods everywhere else, and opted-out pods', async function () {
      assert.equal((await create(podJson('elsewhere'), stopped.unlabelled)).spec!.serviceAccountName, 'default');
      assert.equal((await create(podJson('opted-out', { labels: { 'chaperone.dev/inject': 'disabled' } }), stopped.labelled)).spec!.serviceAccountName, 'default');
    });
  });
});
