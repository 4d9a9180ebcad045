// The shipped ValidatingAdmissionPolicies that keep the scoped token in the sidecar
// (manifests/base/scoped-token-policy.yaml, token-routes-policy.yaml), enforced by the real API server
// with no injector at all: rule by rule, each refusal names its rule, and what a cluster does every day
// (the kubelet's status updates, its TokenRequest, debugging the dashboard, other Secrets) still works.
// test/e2e/containment.test.ts plays the attackers against them and the injector together.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import {
  AdmissionregistrationV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1Pod,
  type V1PodSpec,
  type V1ValidatingAdmissionPolicy,
  type V1ValidatingAdmissionPolicyBinding,
} from '@kubernetes/client-node';
import { createNamespace, createServiceAccount } from '../../local-cluster/kube.js';
import { rawRequest } from '../../local-cluster/sidecar.js';
import { waitFor } from '../../local-cluster/wait.js';
import { withSharedControlPlane } from '../support/fixtures.js';

const BASE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../manifests/base');
const POLICY_FILES = ['scoped-token-policy.yaml', 'token-routes-policy.yaml'];
const SCOPED = 'chaperone-impersonator';
const TOKEN_DIR = '/var/run/secrets/chaperone/upstream';

type Shipped = V1ValidatingAdmissionPolicy | V1ValidatingAdmissionPolicyBinding;

async function shipped(): Promise<Shipped[]> {
  const texts = await Promise.all(POLICY_FILES.map((file) => readFile(path.join(BASE, file), 'utf8')));
  return texts.flatMap((text) => YAML.parseAllDocuments(text).map((d) => d.toJSON() as Shipped));
}

const isPolicy = (object: Shipped): object is V1ValidatingAdmissionPolicy => object.kind === 'ValidatingAdmissionPolicy';

/** An injected pod as the injector writes it, in its essentials: the native sidecar holds the token, nothing else does. */
function injected(name: string, more: Partial<V1PodSpec> = {}, labels: Record<string, string> = {}): V1Pod {
  return {
    metadata: { name, labels },
    spec: {
      serviceAccountName: SCOPED,
      automountServiceAccountToken: false,
      initContainers: [{ name: 'chaperone', image: 'example.invalid/chaperone:1', restartPolicy: 'Always', volumeMounts: [{ name: 'chaperone-upstream', mountPath: TOKEN_DIR }] }],
      containers: [{ name: 'dashboard', image: 'example.invalid/dashboard:1' }],
      volumes: [{ name: 'chaperone-upstream', projected: { sources: [{ serviceAccountToken: { path: 'token', expirationSeconds: 3600 } }] } }],
      ...more,
    },
  };
}

function denialOf(err: unknown): { code: number; message: string } {
  const body = (err as { body?: string }).body;
  const status = JSON.parse(body ?? '{}') as { code?: number; message?: string };
  return { code: status.code ?? 0, message: status.message ?? String(err) };
}

async function refused(what: string, attempt: Promise<unknown>, rule: string): Promise<string> {
  const err = await attempt.then(() => undefined, (e: unknown) => e);
  assert.ok(err, `${what}: the API server admitted it`);
  const denial = denialOf(err);
  assert.equal(denial.code, 403, `${what}: ${denial.message}`);
  assert.match(denial.message, new RegExp(`chaperone rule ${rule}: `), what);
  return denial.message;
}

const mergePatch = () => setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const strategicPatch = () => setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);

describe('the shipped policies', function () {
  it('are bound in every namespace, deny, and fail closed; every message names its rule', async function () {
    const objects = await shipped();
    const policies = objects.filter(isPolicy);
    const bindings = objects.filter((o): o is V1ValidatingAdmissionPolicyBinding => !isPolicy(o));
    assert.deepEqual(
      policies.map((p) => p.metadata!.name).sort(),
      ['chaperone-no-exec-into-sidecar', 'chaperone-no-legacy-token-secret', 'chaperone-scoped-token', 'chaperone-token-request-by-node-only'],
    );
    for (const policy of policies) {
      assert.equal(policy.spec!.failurePolicy, 'Fail', policy.metadata!.name);
      for (const validation of policy.spec!.validations ?? []) {
        assert.match(validation.messageExpression ?? validation.message ?? '', /chaperone rule [a-z-]+: /, `${policy.metadata!.name}: ${validation.expression}`);
        assert.equal(validation.reason, 'Forbidden');
      }
      const binding = bindings.filter((b) => b.spec.policyName === policy.metadata!.name);
      assert.equal(binding.length, 1, `one binding of ${policy.metadata!.name}`);
      assert.deepEqual(binding[0]!.spec.validationActions, ['Deny']);
      // No selector: labelled or not, injector or not, the scoped account is kept harmless.
      assert.equal(binding[0]!.spec.matchResources, undefined, `${policy.metadata!.name} is bound everywhere`);
    }
  });
});

describe('the shipped policies, rule by rule (real API server, no injector)', function () {
  this.timeout(120_000);
  const { cp, clients } = withSharedControlPlane();
  let admission: AdmissionregistrationV1Api;
  let ns: string;
  let unlabelled: string;
  const run = randomBytes(4).toString('hex');
  const names: { policy: string; binding: string }[] = [];

  const create = (body: V1Pod, namespace = ns) => clients.core.createNamespacedPod({ namespace, body });
  const exec = (pod: string, container: string) =>
    rawRequest(`${cp.url}/api/v1/namespaces/${ns}/pods/${pod}/exec?container=${container}&command=true&stdout=true`, {
      method: 'POST',
      ca: cp.ca.certPem,
      cert: cp.admin,
      headers: { 'x-stream-protocol-version': 'v4.channel.k8s.io' },
    });

  /** A namespace where `pod` was stored while no policy applied to it, once the policies apply there too. */
  async function storedBeforeThePolicies(prefix: string, pod: V1Pod): Promise<string> {
    const legacy = await createNamespace(clients, prefix, { 'chaperone.dev/inject': 'enabled' });
    await createServiceAccount(clients, legacy, SCOPED);
    await create(pod, legacy);
    await clients.core.patchNamespace({ name: legacy, body: { metadata: { labels: { 'chaperone-test/policy-run': run } } } }, mergePatch());
    const probe = () => create(injected('probe', {}, { 'chaperone.dev/inject': 'disabled' }), legacy);
    await waitFor('the policies to apply to the namespace', () => probe().then(() => false, () => true), 30_000, 250);
    return legacy;
  }

  before(async function () {
    this.timeout(15 * 60_000);
    admission = clients.kubeconfig.makeApiClient(AdmissionregistrationV1Api);
    // The shipped policies and bindings, renamed for this run and bound to this run's namespaces only,
    // so no other suite sharing the control plane is affected.
    for (const object of await shipped()) {
      const original = object.metadata!.name!;
      object.metadata!.name = `${original}-${run}`;
      if (isPolicy(object)) await admission.createValidatingAdmissionPolicy({ body: object });
      else {
        object.spec.policyName = `${object.spec.policyName}-${run}`;
        object.spec.matchResources = { namespaceSelector: { matchLabels: { 'chaperone-test/policy-run': run } } };
        await admission.createValidatingAdmissionPolicyBinding({ body: object });
        names.push({ policy: object.spec.policyName, binding: object.metadata!.name });
      }
    }
    ns = await createNamespace(clients, 'policy', { 'chaperone.dev/inject': 'enabled', 'chaperone-test/policy-run': run });
    unlabelled = await createNamespace(clients, 'policy-plain', { 'chaperone-test/policy-run': run });
    for (const namespace of [ns, unlabelled]) await createServiceAccount(clients, namespace, SCOPED);
    // Policies take effect a moment after they are created, and the default service account is the
    // controller manager's to create: wait for both.
    const deadline = Date.now() + 30_000;
    const probes: (() => Promise<unknown>)[] = [
      () => clients.core.readNamespacedServiceAccount({ name: 'default', namespace: ns }),
      () => clients.core.readNamespacedServiceAccount({ name: 'default', namespace: unlabelled }),
      () => clients.core.createNamespacedPod({ namespace: ns, dryRun: 'All', body: injected('probe', {}, { 'chaperone.dev/inject': 'disabled' }) }).then(() => Promise.reject(new Error('not yet'))),
      () =>
        clients.core
          .createNamespacedSecret({ namespace: ns, dryRun: 'All', body: { metadata: { name: 'probe', annotations: { 'kubernetes.io/service-account.name': SCOPED } }, type: 'kubernetes.io/service-account-token' } })
          .then(() => Promise.reject(new Error('not yet'))),
      () =>
        clients.core
          .createNamespacedServiceAccountToken({ name: SCOPED, namespace: ns, dryRun: 'All', body: { spec: { audiences: [] } } })
          .then(() => Promise.reject(new Error('not yet'))),
    ];
    for (const probe of probes) {
      while (!(await probe().then(() => true, (err: unknown) => (err as Error).message !== 'not yet'))) {
        if (Date.now() > deadline) throw new Error('the policies never took effect');
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
    await create(injected('dashboard'));
  });

  after(async function () {
    for (const { policy, binding } of names) {
      await admission?.deleteValidatingAdmissionPolicyBinding({ name: binding }).catch(() => undefined);
      await admission?.deleteValidatingAdmissionPolicy({ name: policy }).catch(() => undefined);
    }
  });

  it('admits an injected pod, and a pod that runs as any other service account', async function () {
    await create(injected('another'));
    await create({ metadata: { name: 'other-workload', labels: { 'chaperone.dev/inject': 'disabled' } }, spec: { containers: [{ name: 'app', image: 'example.invalid/app:1' }] } });
    await create({ metadata: { name: 'elsewhere' }, spec: { containers: [{ name: 'app', image: 'example.invalid/app:1' }] } }, unlabelled);
  });

  it('opted-out-pod: refuses a pod that opts out of injection and runs as the scoped account, and relabelling one, even through pods/status', async function () {
    const message = await refused('an opted-out pod', create(injected('thief', {}, { 'chaperone.dev/inject': 'disabled' })), 'opted-out-pod');
    assert.match(message, /cannot run as chaperone-impersonator/);
    const relabel = { metadata: { labels: { 'chaperone.dev/inject': 'disabled' } } };
    await refused('a relabel', clients.core.patchNamespacedPod({ name: 'dashboard', namespace: ns, body: relabel }, mergePatch()), 'opted-out-pod');
    await refused('a relabel through pods/status', clients.core.patchNamespacedPodStatus({ name: 'dashboard', namespace: ns, body: relabel }, mergePatch()), 'opted-out-pod');
  });

  it('covers every subresource that writes a pod, because in 1.37 pods/status stores a label change (resize and ephemeralcontainers drop it)', async function () {
    await create({ metadata: { name: 'labels' }, spec: { containers: [{ name: 'app', image: 'example.invalid/app:1' }] } });
    const relabel = (key: string) => ({ metadata: { labels: { [key]: 'changed' } } });
    const status = await clients.core.patchNamespacedPodStatus({ name: 'labels', namespace: ns, body: relabel('by-status') }, mergePatch());
    assert.equal(status.metadata?.labels?.['by-status'], 'changed', 'pods/status stores labels');
    const resize = await clients.core.patchNamespacedPodResize({ name: 'labels', namespace: ns, body: relabel('by-resize') }, mergePatch());
    assert.equal(resize.metadata?.labels?.['by-resize'], undefined, 'pods/resize drops them');
    const debug = await clients.core.patchNamespacedPodEphemeralcontainers({ name: 'labels', namespace: ns, body: relabel('by-debug') }, strategicPatch());
    assert.equal(debug.metadata?.labels?.['by-debug'], undefined, 'pods/ephemeralcontainers drops them');
  });

  it("still lets the kubelet report a pod's status", async function () {
    const stored = await clients.core.patchNamespacedPodStatus(
      { name: 'dashboard', namespace: ns, body: { status: { conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: new Date() }] } } },
      mergePatch(),
    );
    assert.equal(stored.status?.conditions?.[0]?.type, 'Ready');
  });

  it('judges an update by what it may change: a pod admitted before the policy keeps reporting its status, and gets no token-mounting debug container', async function () {
    // A pod the policy would refuse today (a privileged dashboard), stored while no policy applied to its namespace.
    const old = injected('old');
    old.spec!.containers[0]!.securityContext = { privileged: true };
    const legacy = await storedBeforeThePolicies('policy-legacy', old);
    const status = await clients.core.patchNamespacedPodStatus(
      { name: 'old', namespace: legacy, body: { status: { conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: new Date() }] } } },
      mergePatch(),
    );
    assert.equal(status.status?.conditions?.[0]?.status, 'True');
    const debug = (container: Record<string, unknown>) =>
      clients.core.patchNamespacedPodEphemeralcontainers({ name: 'old', namespace: legacy, body: { spec: { ephemeralContainers: [{ image: 'busybox:1.36', ...container }] } } }, strategicPatch());
    await debug({ name: 'harmless', targetContainerName: 'dashboard' });
    await refused('a debug container mounting the token', debug({ name: 'thief', volumeMounts: [{ name: 'chaperone-upstream', mountPath: '/t' }] }), 'token-outside-sidecar');
    await clients.core.deleteNamespace({ name: legacy });
  });

  it('scoped-pod-outside-injection: refuses creating a pod that runs as the scoped account where the injector does not inject', async function () {
    const message = await refused('a pod in an unlabelled namespace', create(injected('outside'), unlabelled), 'scoped-pod-outside-injection');
    assert.match(message, new RegExp(`namespace ${unlabelled} is not labelled chaperone.dev/inject=enabled`));
  });

  it('scoped-pod-without-sidecar: refuses a pod that runs as the scoped account without the sidecar', async function () {
    const bare = injected('bare');
    delete bare.spec!.initContainers;
    delete bare.spec!.volumes;
    await refused('a pod without the sidecar', create(bare), 'scoped-pod-without-sidecar');
  });

  it("token-outside-sidecar: refuses any other container that mounts the token, the automounted one included", async function () {
    const mounting = injected('mounting');
    mounting.spec!.containers[0]!.volumeMounts = [{ name: 'chaperone-upstream', mountPath: '/t' }];
    assert.match(await refused('a dashboard that mounts chaperone-upstream', create(mounting), 'token-outside-sidecar'), /container dashboard would mount a token of chaperone-impersonator/);
    // The ServiceAccount admission plugin adds kube-api-access-* to every container: a token of the scoped account.
    const automounted = injected('automounted', { automountServiceAccountToken: true });
    assert.match(await refused('an automounted token', create(automounted), 'token-outside-sidecar'), /container dashboard would mount a token/);
  });

  it('judges kubectl debug on the pod as stored: the patch may relabel it or rename its containers, the stored pod does not change', async function () {
    const debug = { name: 'debug', image: 'busybox:1.36', volumeMounts: [{ name: 'chaperone-upstream', mountPath: '/t' }] };
    const message = await refused(
      'a debug container mounting the token, the pod relabelled in the same patch',
      clients.core.patchNamespacedPodEphemeralcontainers(
        { name: 'dashboard', namespace: ns, body: { metadata: { labels: { 'chaperone.dev/inject': 'disabled' } }, spec: { ephemeralContainers: [debug] } } },
        strategicPatch(),
      ),
      'token-outside-sidecar',
    );
    assert.match(message, /container debug would mount a token of chaperone-impersonator/);
    await refused(
      'a debug container mounting the token, the sidecar renamed in the same patch',
      clients.core.patchNamespacedPodEphemeralcontainers(
        {
          name: 'dashboard',
          namespace: ns,
          body: [
            { op: 'add', path: '/spec/ephemeralContainers', value: [debug] },
            { op: 'replace', path: '/spec/initContainers/0/name', value: 'renamed' },
          ],
        },
        setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
      ),
      'token-outside-sidecar',
    );
    await refused(
      "a debug container in the sidecar's process namespace",
      clients.core.patchNamespacedPodEphemeralcontainers(
        { name: 'dashboard', namespace: ns, body: { spec: { ephemeralContainers: [{ name: 'debug', image: 'busybox:1.36', targetContainerName: 'chaperone' }] } } },
        strategicPatch(),
      ),
      'debug-container-targets-sidecar',
    );
    const allowed = await clients.core.patchNamespacedPodEphemeralcontainers(
      { name: 'dashboard', namespace: ns, body: { spec: { ephemeralContainers: [{ name: 'debug-dashboard', image: 'busybox:1.36', targetContainerName: 'dashboard' }] } } },
      strategicPatch(),
    );
    assert.deepEqual(allowed.spec?.ephemeralContainers?.map((c) => c.name), ['debug-dashboard']);
  });

  it("host-access-in-scoped-pod: refuses the sidecar's processes or the node's disk to the pod's other containers", async function () {
    await refused('a shared process namespace', create(injected('shared', { shareProcessNamespace: true })), 'host-access-in-scoped-pod');
    const hostPath = injected('host-path');
    hostPath.spec!.volumes!.push({ name: 'kubelet', hostPath: { path: '/var/lib/kubelet/pods' } });
    hostPath.spec!.containers[0]!.volumeMounts = [{ name: 'kubelet', mountPath: '/kubelet' }];
    assert.match(await refused('a hostPath volume', create(hostPath), 'host-access-in-scoped-pod'), /may not mount a hostPath volume/);
    const privileged = injected('privileged');
    privileged.spec!.containers[0]!.securityContext = { privileged: true };
    assert.match(await refused('a privileged container', create(privileged), 'host-access-in-scoped-pod'), /run privileged containers \(dashboard\)/);
  });

  it('host-access-in-scoped-pod: refuses what Pod Security baseline refuses, in a pod created as the scoped account and in a debug container added to one (F3)', async function () {
    // Here no Pod Security applies, as in a namespace unlabelled while the injector was down: the policy alone.
    const pod = (name: string, more: Partial<V1PodSpec> = {}, container: V1PodSpec['containers'][number] = { name: 'dashboard', image: 'example.invalid/dashboard:1' }, annotations?: Record<string, string>) => {
      const p = injected(name, more);
      p.spec!.containers = [container];
      if (annotations) p.metadata!.annotations = annotations;
      return p;
    };
    const dashboard = (more: Partial<V1PodSpec['containers'][number]>) => ({ name: 'dashboard', image: 'example.invalid/dashboard:1', ...more });
    const cases: [string, V1Pod, RegExp][] = [
      ['hostNetwork', pod('host-network', { hostNetwork: true }), /may not use the host's network \(hostNetwork\)/],
      ['hostIPC', pod('host-ipc', { hostIPC: true }), /may not use the host's IPC namespace \(hostIPC\)/],
      ['hostPID', pod('host-pid', { hostPID: true }), /may not use the host's process namespace/],
      ['capabilities', pod('caps', {}, dashboard({ securityContext: { capabilities: { add: ['NET_BIND_SERVICE', 'SYS_ADMIN', 'SYS_PTRACE'] } } })), /may not add capabilities beyond Pod Security baseline's \(dashboard: SYS_ADMIN, SYS_PTRACE\)/],
      ['capabilities of an init container', pod('init-caps', { initContainers: [...injected('x').spec!.initContainers!, { name: 'setup', image: 'busybox:1.36', securityContext: { capabilities: { add: ['SYS_MODULE'] } } }] }), /add capabilities beyond Pod Security baseline's \(setup: SYS_MODULE\)/],
      ['container seccomp Unconfined', pod('seccomp', {}, dashboard({ securityContext: { seccompProfile: { type: 'Unconfined' } } })), /may not turn seccomp off \(dashboard: Unconfined\)/],
      ['pod seccomp Unconfined', pod('pod-seccomp', { securityContext: { seccompProfile: { type: 'Unconfined' } } }), /may not turn seccomp off \(pod: Unconfined\)/],
      ['container AppArmor Unconfined', pod('apparmor', {}, dashboard({ securityContext: { appArmorProfile: { type: 'Unconfined' } } })), /may not turn AppArmor off \(dashboard: Unconfined\)/],
      ['pod AppArmor Unconfined', pod('pod-apparmor', { securityContext: { appArmorProfile: { type: 'Unconfined' } } }), /may not turn AppArmor off \(pod: Unconfined\)/],
      // The API server copies the annotation into the field, and both are named.
      ['AppArmor annotation unconfined', pod('apparmor-annotation', {}, undefined, { 'container.apparmor.security.beta.kubernetes.io/dashboard': 'unconfined' }), /may not turn AppArmor off \(dashboard: Unconfined; container\.apparmor\.security\.beta\.kubernetes\.io\/dashboard=unconfined\)/],
      ['SELinux type', pod('selinux', {}, dashboard({ securityContext: { seLinuxOptions: { type: 'spc_t' } } })), /may not set SELinux options beyond Pod Security baseline's \(dashboard\)/],
      ['SELinux user of the pod', pod('pod-selinux', { securityContext: { seLinuxOptions: { user: 'system_u' } } }), /may not set SELinux options beyond Pod Security baseline's \(pod\)/],
      ['sysctls', pod('sysctls', { securityContext: { sysctls: [{ name: 'net.ipv4.tcp_syncookies', value: '1' }, { name: 'kernel.msgmax', value: '65536' }] } }), /may not set sysctls beyond Pod Security baseline's \(kernel\.msgmax\)/],
      ['hostPort', pod('host-port', {}, dashboard({ ports: [{ containerPort: 8080, hostPort: 8080 }] })), /may not use hostPorts \(dashboard\)/],
      ['a probe of another host', pod('probe-host', {}, dashboard({ livenessProbe: { httpGet: { host: '169.254.169.254', port: 80, path: '/' } } })), /may not point probes or lifecycle hooks at another host \(dashboard\)/],
    ];
    for (const [what, body, words] of cases) {
      const message = await refused(what, create(body), 'host-access-in-scoped-pod');
      assert.match(message, words, `${what}: ${message}`);
    }
    // What baseline allows stays allowed: its capabilities, RuntimeDefault and Localhost profiles, container_t, safe sysctls.
    await create(
      pod('baseline', { securityContext: { seccompProfile: { type: 'RuntimeDefault' }, sysctls: [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }] } }, dashboard({
        securityContext: { capabilities: { add: ['NET_BIND_SERVICE', 'CHOWN'], drop: ['ALL'] }, appArmorProfile: { type: 'RuntimeDefault' }, seLinuxOptions: { type: 'container_t', level: 's0:c1,c2' }, procMount: 'Default' },
      }), { 'container.apparmor.security.beta.kubernetes.io/dashboard': 'runtime/default' }),
    );

    // F3: kubectl debug as a role holding only pods/ephemeralcontainers, near-privileged, beside the sidecar.
    const debug = (container: Record<string, unknown>) =>
      clients.core.patchNamespacedPodEphemeralcontainers({ name: 'dashboard', namespace: ns, body: { spec: { ephemeralContainers: [{ image: 'busybox:1.36', ...container }] } } }, strategicPatch());
    const f3 = {
      name: 'caps',
      securityContext: { runAsUser: 0, allowPrivilegeEscalation: true, capabilities: { add: ['SYS_ADMIN', 'SYS_PTRACE', 'DAC_READ_SEARCH', 'SYS_MODULE'] }, seccompProfile: { type: 'Unconfined' }, appArmorProfile: { type: 'Unconfined' }, procMount: 'Default' },
    };
    assert.match(
      await refused('the F3 debug container', debug(f3), 'host-access-in-scoped-pod'),
      /may not add capabilities beyond Pod Security baseline's \(caps: SYS_ADMIN, SYS_PTRACE, DAC_READ_SEARCH, SYS_MODULE\); turn seccomp off \(caps: Unconfined\); turn AppArmor off \(caps: Unconfined\)/,
    );
    for (const [what, securityContext, words] of [
      ['SYS_PTRACE', { capabilities: { add: ['SYS_PTRACE'] } }, /add capabilities beyond Pod Security baseline's \(c: SYS_PTRACE\)/],
      ['seccomp Unconfined', { seccompProfile: { type: 'Unconfined' } }, /turn seccomp off \(c: Unconfined\)/],
      ['AppArmor Unconfined', { appArmorProfile: { type: 'Unconfined' } }, /turn AppArmor off \(c: Unconfined\)/],
      ['SELinux role', { seLinuxOptions: { role: 'system_r' } }, /set SELinux options beyond Pod Security baseline's \(c\)/],
    ] as const) {
      assert.match(await refused(`a debug container: ${what}`, debug({ name: 'c', securityContext }), 'host-access-in-scoped-pod'), words, what);
    }
    const allowed = await debug({ name: 'baseline-debug', targetContainerName: 'dashboard', securityContext: { capabilities: { add: ['NET_BIND_SERVICE'] }, seccompProfile: { type: 'RuntimeDefault' } } });
    assert.ok(allowed.spec?.ephemeralContainers?.some((c) => c.name === 'baseline-debug'));
  });

  it('pod-certificate-in-scoped-pod, csi-volume-in-scoped-pod: refuse a podCertificate or inline CSI volume in a pod created as the scoped account, in any container, the sidecar included, and in a debug container of a pod stored before the policy', async function () {
    const podCertificate = { name: 'id', projected: { sources: [{ podCertificate: { signerName: 'kubernetes.io/kube-apiserver-client-pod', keyType: 'ECDSAP256', credentialBundlePath: 'bundle.pem' } }] } };
    const csi = { name: 'store', csi: { driver: 'secrets-store.csi.k8s.io', readOnly: true, volumeAttributes: { secretProviderClass: 'mine' } } };
    const withVolume = (name: string, volume: typeof podCertificate | typeof csi, mountIn?: 'dashboard' | 'chaperone') => {
      const pod = injected(name);
      pod.spec!.volumes!.push(volume);
      const container = mountIn === 'chaperone' ? pod.spec!.initContainers![0]! : mountIn === 'dashboard' ? pod.spec!.containers[0]! : undefined;
      if (container) container.volumeMounts = [...(container.volumeMounts ?? []), { name: volume.name, mountPath: `/${volume.name}` }];
      return pod;
    };
    for (const mountIn of ['dashboard', 'chaperone', undefined] as const) {
      const where = mountIn ?? 'no container';
      assert.match(
        await refused(`a podCertificate volume mounted in ${where}`, create(withVolume(`podcert-${mountIn ?? 'none'}`, podCertificate, mountIn)), 'pod-certificate-in-scoped-pod'),
        /may not have or mount a podCertificate volume \(id\): the kubelet would get a certificate of chaperone-impersonator/,
      );
      assert.match(
        await refused(`an inline CSI volume mounted in ${where}`, create(withVolume(`csi-${mountIn ?? 'none'}`, csi, mountIn)), 'csi-volume-in-scoped-pod'),
        /may not have or mount an inline CSI volume \(store\): for a CSIDriver with tokenRequests the kubelet hands the driver tokens of chaperone-impersonator/,
      );
    }
    // Any other service account: neither is chaperone's business.
    await create({ metadata: { name: 'other-podcert', labels: { 'chaperone.dev/inject': 'disabled' } }, spec: { containers: [{ name: 'app', image: 'example.invalid/app:1', volumeMounts: [{ name: 'id', mountPath: '/id' }, { name: 'store', mountPath: '/store' }] }], volumes: [podCertificate, csi] } });

    // A pod stored while no policy applied: a debug container added later may not mount either.
    const old = withVolume('old', podCertificate);
    old.spec!.volumes!.push(csi);
    const legacy = await storedBeforeThePolicies('policy-legacy-volumes', old);
    const debug = (name: string, volume: string) =>
      clients.core.patchNamespacedPodEphemeralcontainers(
        { name: 'old', namespace: legacy, body: { spec: { ephemeralContainers: [{ name, image: 'busybox:1.36', volumeMounts: [{ name: volume, mountPath: '/v' }] }] } } },
        strategicPatch(),
      );
    assert.match(await refused('a debug container mounting the podCertificate volume', debug('cert-thief', 'id'), 'pod-certificate-in-scoped-pod'), /\(ephemeral container cert-thief\)/);
    assert.match(await refused('a debug container mounting the CSI volume', debug('csi-thief', 'store'), 'csi-volume-in-scoped-pod'), /\(ephemeral container csi-thief\)/);
    const allowed = await clients.core.patchNamespacedPodEphemeralcontainers(
      { name: 'old', namespace: legacy, body: { spec: { ephemeralContainers: [{ name: 'harmless', image: 'busybox:1.36', targetContainerName: 'dashboard' }] } } },
      strategicPatch(),
    );
    assert.deepEqual(allowed.spec?.ephemeralContainers?.map((c) => c.name), ['harmless']);
    await clients.core.deleteNamespace({ name: legacy });
  });

  it("sidecar-image-unchanged: refuses swapping the sidecar's image, and allows other image updates", async function () {
    await refused(
      'an image swap',
      clients.core.patchNamespacedPod({ name: 'dashboard', namespace: ns, body: [{ op: 'replace', path: '/spec/initContainers/0/image', value: 'example.invalid/evil:1' }] }),
      'sidecar-image-unchanged',
    );
    await clients.core.patchNamespacedPod({ name: 'dashboard', namespace: ns, body: [{ op: 'replace', path: '/spec/containers/0/image', value: 'example.invalid/dashboard:2' }] });
  });

  it('no-exec-into-sidecar: refuses exec and attach into the chaperone container; the dashboard container passes admission', async function () {
    const sidecar = await exec('dashboard', 'chaperone');
    assert.equal(sidecar.status, 403, sidecar.body);
    assert.match(sidecar.body, /chaperone rule no-exec-into-sidecar: nobody may exec into the chaperone container of pod dashboard/);
    const attach = await rawRequest(`${cp.url}/api/v1/namespaces/${ns}/pods/dashboard/attach?container=chaperone&stdout=true`, { method: 'POST', ca: cp.ca.certPem, cert: cp.admin });
    assert.equal(attach.status, 403, attach.body);
    assert.match(attach.body, /chaperone rule no-exec-into-sidecar: nobody may attach to the chaperone container/);
    // Admitted: only the missing node (there is no kubelet here) stops it.
    const dashboard = await exec('dashboard', 'dashboard');
    assert.match(dashboard.body, /does not have a host assigned/);
  });

  it('token-request-by-node-only: refuses a TokenRequest for the scoped account from anyone but a node, even a cluster admin', async function () {
    const message = await refused(
      'a TokenRequest by a cluster admin',
      clients.core.createNamespacedServiceAccountToken({ name: SCOPED, namespace: ns, body: { spec: { audiences: [], expirationSeconds: 600 } } }),
      'token-request-by-node-only',
    );
    assert.match(message, /chaperone-test-admin may not request a token of chaperone-impersonator/);
    const other = await clients.core.createNamespacedServiceAccountToken({ name: 'default', namespace: ns, body: { spec: { audiences: [], expirationSeconds: 600 } } });
    assert.ok(other.status?.token, 'tokens of other accounts are untouched');
  });

  it('no-legacy-token-secret: refuses a legacy token Secret for the scoped account, and no other Secret', async function () {
    const secret = (account: string) => ({ metadata: { generateName: 'legacy-', annotations: { 'kubernetes.io/service-account.name': account } }, type: 'kubernetes.io/service-account-token' });
    await refused('a legacy token Secret', clients.core.createNamespacedSecret({ namespace: ns, body: secret(SCOPED) }), 'no-legacy-token-secret');
    await refused('one in an unlabelled namespace', clients.core.createNamespacedSecret({ namespace: unlabelled, body: secret(SCOPED) }), 'no-legacy-token-secret');
    await clients.core.createNamespacedSecret({ namespace: ns, body: secret('default') });
    await clients.core.createNamespacedSecret({ namespace: ns, body: { metadata: { generateName: 'plain-' }, stringData: { a: 'b' } } });
  });
});
