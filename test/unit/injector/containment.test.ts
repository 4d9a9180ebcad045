// The injector's part in keeping the scoped token in the sidecar, as pure admission decisions:
// kubectl debug judged on what will be stored (the stored pod, oldObject, and the ephemeral containers a
// patch adds, never the rest of the patch), Windows pods refused with a reason, and the namespaces it
// never injects nor provisions. test/e2e/containment.test.ts tries the same against the real API server.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { V1EphemeralContainer, V1Namespace, V1Pod, V1PodSpec, V1Volume } from '@kubernetes/client-node';
import { addedEphemeralContainers, holdsScopedToken, windowsOnly } from '../../../injector/mutate.js';
import { neverInjected, refusalEvent, SYSTEM_NAMESPACES } from '../../../injector/namespaces.js';
import type { AdmissionReviewOut } from '../../../injector/review.js';
import { inject, review, testConfig } from './helpers.js';

function pod(spec: Partial<V1PodSpec> = {}, labels?: Record<string, string>): V1Pod {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'dash', ...(labels ? { labels } : {}) }, spec: { containers: [{ name: 'app', image: 'app:1' }], ...spec } };
}

const mountingToken: V1EphemeralContainer = { name: 'debug', image: 'busybox:1.36', volumeMounts: [{ name: 'chaperone-upstream', mountPath: '/t' }] };
const harmless: V1EphemeralContainer = { name: 'debug', image: 'busybox:1.36', targetContainerName: 'app' };

function debug(stored: V1Pod, patched: V1Pod, namespace?: string): Promise<AdmissionReviewOut> {
  return review({ object: patched, oldObject: stored, operation: 'UPDATE', subResource: 'ephemeralcontainers', ...(namespace ? { namespace } : {}) });
}

/** The stored pod with ephemeral containers added: all a pods/ephemeralcontainers update can store. */
function withEphemeral(stored: V1Pod, ...containers: V1EphemeralContainer[]): V1Pod {
  const patched = structuredClone(stored);
  patched.spec!.ephemeralContainers = [...(stored.spec!.ephemeralContainers ?? []), ...containers];
  return patched;
}

async function injected(): Promise<V1Pod> {
  return (await inject(pod())).pod;
}

describe('injector: kubectl debug is judged on what will be stored', function () {
  it('refuses a debug container that mounts the token even when the same patch labels the pod chaperone.dev/inject=disabled', async function () {
    const stored = await injected();
    const patched = withEphemeral(stored, mountingToken);
    patched.metadata!.labels = { 'chaperone.dev/inject': 'disabled' };
    const out = await debug(stored, patched);
    assert.equal(out.response.allowed, false);
    assert.equal(out.response.status?.code, 403);
    assert.match(out.response.status.message, /^chaperone refuses this ephemeral container: ephemeral container debug mounts volume chaperone-upstream, which holds the scoped service account's token/);
  });

  it('refuses it when the same JSON patch renames the chaperone init container, or drops the volume and the service account', async function () {
    const stored = await injected();
    const renamed = withEphemeral(stored, mountingToken);
    renamed.spec!.initContainers![0]!.name = 'renamed';
    assert.equal((await debug(stored, renamed)).response.allowed, false);
    const stripped = withEphemeral(stored, mountingToken);
    stripped.spec!.volumes = [];
    stripped.spec!.serviceAccountName = 'default';
    delete stripped.metadata!.annotations;
    assert.equal((await debug(stored, stripped)).response.allowed, false);
  });

  it('refuses a mount of any projected token volume of the stored pod, a target of the sidecar, and a privileged debug container', async function () {
    const stored = await injected();
    stored.spec!.volumes!.push({ name: 'kube-api-access-x', projected: { sources: [{ serviceAccountToken: { path: 'token' } }] } });
    const cases: [V1EphemeralContainer, RegExp][] = [
      [{ name: 'debug', image: 'busybox', volumeMounts: [{ name: 'kube-api-access-x', mountPath: '/t' }] }, /mounts volume kube-api-access-x/],
      [{ name: 'debug', image: 'busybox', targetContainerName: 'chaperone' }, /ephemeral container debug targets the chaperone container/],
      [{ name: 'debug', image: 'busybox', securityContext: { privileged: true } }, /ephemeral container debug is privileged: it could read the token from the node's disk/],
    ];
    for (const [container, words] of cases) {
      const out = await debug(stored, withEphemeral(stored, container));
      assert.equal(out.response.allowed, false, container.name);
      assert.match(out.response.status!.message, words);
    }
  });

  it('refuses a debug container that Pod Security baseline would refuse (F3: SYS_ADMIN, seccomp and AppArmor off), and allows what baseline allows', async function () {
    const stored = await injected();
    const f3: V1EphemeralContainer = {
      name: 'caps',
      image: 'busybox:1.36',
      securityContext: { runAsUser: 0, allowPrivilegeEscalation: true, capabilities: { add: ['SYS_ADMIN', 'SYS_PTRACE', 'DAC_READ_SEARCH', 'SYS_MODULE'] }, seccompProfile: { type: 'Unconfined' }, appArmorProfile: { type: 'Unconfined' }, procMount: 'Default' },
    };
    const debugWith = (securityContext: V1EphemeralContainer['securityContext'], more: Partial<V1EphemeralContainer> = {}): V1EphemeralContainer => ({ name: 'debug', image: 'busybox', securityContext, ...more });
    const cases: [V1EphemeralContainer, RegExp][] = [
      [f3, /ephemeral container caps adds capabilities SYS_ADMIN, SYS_PTRACE, DAC_READ_SEARCH, SYS_MODULE, beyond Pod Security baseline's: it could read the token from the node's disk \(Pod Security baseline refuses it too\)/],
      [debugWith({ capabilities: { add: ['CHOWN', 'SYS_PTRACE'] } }), /debug adds capabilities SYS_PTRACE, beyond Pod Security baseline's/],
      [debugWith({ seccompProfile: { type: 'Unconfined' } }), /debug sets seccomp profile Unconfined/],
      [debugWith({ appArmorProfile: { type: 'Unconfined' } }), /debug sets AppArmor profile Unconfined/],
      [debugWith({ seLinuxOptions: { type: 'spc_t' } }), /debug sets SELinux options beyond Pod Security baseline's \(type spc_t/],
      [debugWith({ seLinuxOptions: { user: 'system_u' } }), /debug sets SELinux options beyond Pod Security baseline's/],
      [debugWith({ procMount: 'Unmasked' }), /debug sets procMount Unmasked/],
      [debugWith({ windowsOptions: { hostProcess: true } }), /debug is a Windows hostProcess container/],
      [debugWith(undefined, { ports: [{ containerPort: 80, hostPort: 80 }] }), /debug uses hostPort 80/],
    ];
    for (const [container, words] of cases) {
      const out = await debug(stored, withEphemeral(stored, container));
      assert.equal(out.response.allowed, false, JSON.stringify(container.securityContext));
      assert.match(out.response.status!.message, words);
    }
    const allowed: V1EphemeralContainer[] = [
      debugWith({ capabilities: { add: ['NET_BIND_SERVICE', 'CHOWN', 'SYS_CHROOT'], drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' }, appArmorProfile: { type: 'Localhost', localhostProfile: 'p' } }),
      debugWith({ seLinuxOptions: { type: 'container_t', level: 's0:c1,c2' }, procMount: 'Default', runAsUser: 0, allowPrivilegeEscalation: true }),
    ];
    for (const container of allowed) assert.equal((await debug(stored, withEphemeral(stored, container))).response.allowed, true, JSON.stringify(container.securityContext));
    // In a user namespace (hostUsers false), baseline allows an unmasked /proc.
    const userns = await injected();
    userns.spec!.hostUsers = false;
    assert.equal((await debug(userns, withEphemeral(userns, debugWith({ procMount: 'Unmasked' })))).response.allowed, true);
  });

  it('allows a debug container that keeps away from the sidecar, and judges only the containers the patch adds', async function () {
    const stored = await injected();
    assert.equal((await debug(stored, withEphemeral(stored, harmless))).response.allowed, true);
    const twice = withEphemeral(stored, harmless);
    assert.equal((await debug(twice, withEphemeral(twice, { ...harmless, name: 'debug-2' }))).response.allowed, true);
  });

  it('judges the stored pod wherever it is: a namespace unlabelled since still holds injected pods', async function () {
    const stored = await injected();
    assert.equal((await debug(stored, withEphemeral(stored, mountingToken), 'plain')).response.allowed, false);
  });

  it('leaves a pod that does not hold the token alone, whatever the patch claims', async function () {
    const stored = pod({}, { 'chaperone.dev/inject': 'disabled' });
    const patched = withEphemeral(stored, { ...mountingToken, volumeMounts: [{ name: 'chaperone-upstream', mountPath: '/t' }] });
    patched.spec!.serviceAccountName = 'chaperone-impersonator';
    patched.spec!.initContainers = [{ name: 'chaperone', image: 'x', restartPolicy: 'Always' }];
    assert.equal((await debug(stored, patched)).response.allowed, true);
  });

  it('refuses a review without the stored pod, naming it', async function () {
    const stored = await injected();
    const out = await review({ object: withEphemeral(stored, harmless), operation: 'UPDATE', subResource: 'ephemeralcontainers' });
    assert.equal(out.response.allowed, false);
    assert.equal(out.response.status?.code, 400);
    assert.match(out.response.status.message, /carries no stored pod \(oldObject\)/);
  });

  it('decides from the stored pod and the added containers alone, whatever else a patch changes (property)', async function () {
    const stored = await injected();
    const added = fc.constantFrom<V1EphemeralContainer>(mountingToken, harmless, { name: 'debug', image: 'busybox', targetContainerName: 'chaperone' }, { name: 'debug', image: 'busybox' });
    const tampering = fc.record({
      label: fc.option(fc.constantFrom('disabled', 'enabled', 'false'), { nil: undefined }),
      renameSidecar: fc.boolean(),
      dropVolumes: fc.boolean(),
      serviceAccount: fc.option(fc.constantFrom('default', 'chaperone-impersonator', 'other'), { nil: undefined }),
      dropAnnotations: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(added, tampering, async (container, change) => {
        const honest = withEphemeral(stored, container);
        const patched = structuredClone(honest);
        if (change.label !== undefined) patched.metadata!.labels = { 'chaperone.dev/inject': change.label };
        if (change.renameSidecar) patched.spec!.initContainers![0]!.name = 'renamed';
        if (change.dropVolumes) patched.spec!.volumes = [];
        if (change.serviceAccount !== undefined) patched.spec!.serviceAccountName = change.serviceAccount;
        if (change.dropAnnotations) delete patched.metadata!.annotations;
        const [expected, actual] = await Promise.all([debug(stored, honest), debug(stored, patched)]);
        assert.equal(actual.response.allowed, expected.response.allowed);
        assert.equal(actual.response.status?.message, expected.response.status?.message);
      }),
      { numRuns: 200 },
    );
  });

  it('knows a stored pod that holds the token: the scoped account, the sidecar, or the status', async function () {
    const account = testConfig().serviceAccount;
    assert.equal(holdsScopedToken(await injected(), account), true);
    assert.equal(holdsScopedToken(pod({ serviceAccountName: account }), account), true);
    assert.equal(holdsScopedToken(pod({ containers: [{ name: 'app', image: 'a' }, { name: 'chaperone', image: 'c' }] }), account), true);
    assert.equal(holdsScopedToken({ ...pod(), metadata: { annotations: { 'chaperone.dev/status': '{}' } } }, account), true);
    assert.equal(holdsScopedToken(pod({ serviceAccountName: 'default' }), account), false);
    assert.deepEqual(addedEphemeralContainers(withEphemeral(pod(), harmless), withEphemeral(withEphemeral(pod(), harmless), { ...harmless, name: 'new' })).map((c) => c.name), ['new']);
  });
});

describe('injector: volumes that hand a credential of the scoped account to any container', function () {
  const podCertificate: V1Volume = { name: 'id', projected: { sources: [{ podCertificate: { signerName: 'kubernetes.io/kube-apiserver-client-pod', keyType: 'ECDSAP256', credentialBundlePath: 'bundle.pem' } }] } };
  const csi: V1Volume = { name: 'store', csi: { driver: 'secrets-store.csi.k8s.io', readOnly: true, volumeAttributes: { secretProviderClass: 'mine' } } };
  const cases: [V1Volume, RegExp][] = [
    [podCertificate, /^chaperone refuses this pod: chaperone rule pod-certificate-in-scoped-pod: the pod runs as the scoped service account and has volume id, which projects a podCertificate/],
    [csi, /^chaperone refuses this pod: chaperone rule csi-volume-in-scoped-pod: the pod runs as the scoped service account and has volume store, an inline CSI volume \(driver secrets-store\.csi\.k8s\.io\)/],
  ];

  it('refuses a pod with a podCertificate or inline CSI volume, mounted in the dashboard or in no container (F1, F2)', async function () {
    for (const [volume, words] of cases) {
      for (const mounted of [true, false]) {
        const out = await review({ object: pod({ containers: [{ name: 'app', image: 'app:1', ...(mounted ? { volumeMounts: [{ name: volume.name, mountPath: '/v' }] } : {}) }], volumes: [volume] }) });
        assert.equal(out.response.allowed, false, `${volume.name}, mounted ${mounted}`);
        assert.equal(out.response.status?.code, 403);
        assert.match(out.response.status.message, words);
      }
    }
    // Next to a projected token or a ConfigMap, in the same projected volume: still refused.
    const mixed: V1Volume = { name: 'mixed', projected: { sources: [{ configMap: { name: 'x' } }, ...podCertificate.projected!.sources!] } };
    assert.match((await review({ object: pod({ volumes: [mixed] }) })).response.status!.message, /pod-certificate-in-scoped-pod: .* volume mixed/);
  });

  it('refuses a debug container that mounts one in a pod stored with it (admitted before the rule)', async function () {
    const stored = await injected();
    stored.spec!.volumes!.push(podCertificate, csi);
    for (const [volume, rule] of [[podCertificate, 'pod-certificate-in-scoped-pod'], [csi, 'csi-volume-in-scoped-pod']] as const) {
      const out = await debug(stored, withEphemeral(stored, { name: 'debug', image: 'busybox', volumeMounts: [{ name: volume.name, mountPath: '/v' }] }));
      assert.equal(out.response.allowed, false, volume.name);
      assert.match(out.response.status!.message, new RegExp(`^chaperone refuses this ephemeral container: chaperone rule ${rule}: ephemeral container debug mounts volume ${volume.name}`));
    }
    assert.equal((await debug(stored, withEphemeral(stored, harmless))).response.allowed, true);
  });

  it('injects a pod with other projected sources and volumes', async function () {
    const other: V1Volume = { name: 'bundle', projected: { sources: [{ configMap: { name: 'x' } }, { clusterTrustBundle: { signerName: 'example.com/s', path: 'ca.pem' } }] } };
    const { pod: out } = await inject(pod({ containers: [{ name: 'app', image: 'app:1', volumeMounts: [{ name: 'bundle', mountPath: '/b' }] }], volumes: [other, { name: 'scratch', emptyDir: {} }] }));
    assert.ok(out.spec!.volumes!.some((v) => v.name === 'bundle'));
  });
});

describe('injector: Windows pods', function () {
  const refused = async (spec: Partial<V1PodSpec>, why: RegExp) => {
    const out = await review({ object: pod(spec) });
    assert.equal(out.response.allowed, false);
    assert.equal(out.response.status?.code, 400);
    assert.match(out.response.status.message, /^chaperone cannot inject this pod: it runs on Windows nodes \(/);
    assert.match(out.response.status.message, /the chaperone sidecar is a Linux container; run the dashboard on Linux nodes, or opt the pod out/);
    assert.match(out.response.status.message, why);
  };

  it('refuses one that asks for Windows nodes, naming how it asks', async function () {
    await refused({ os: { name: 'windows' } }, /spec\.os\.name is windows/);
    await refused({ nodeSelector: { 'kubernetes.io/os': 'windows' } }, /its nodeSelector asks for kubernetes\.io\/os=windows/);
    const affinity = (operator: string, values: string[]) => ({
      affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/os', operator, values }] }] } } },
    });
    await refused(affinity('In', ['windows']), /its required node affinity excludes kubernetes\.io\/os=linux/);
    await refused(affinity('NotIn', ['linux']), /its required node affinity excludes kubernetes\.io\/os=linux/);
  });

  it('injects one that may run on Linux', async function () {
    await inject(pod({ nodeSelector: { 'kubernetes.io/os': 'linux' } }));
    await inject(pod({ os: { name: 'linux' } }));
    const either = {
      affinity: {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [
              { matchExpressions: [{ key: 'kubernetes.io/os', operator: 'In', values: ['windows'] }] },
              { matchExpressions: [{ key: 'kubernetes.io/arch', operator: 'In', values: ['arm64'] }] },
            ],
          },
        },
      },
    };
    assert.equal(windowsOnly({ containers: [], ...either }), undefined);
    await inject(pod(either));
  });
});

describe('injector: namespaces it never injects nor provisions', function () {
  it('names kube-system, kube-public, kube-node-lease and its own namespace, and no other', function () {
    for (const name of SYSTEM_NAMESPACES) assert.equal(neverInjected(name, 'chaperone-system'), 'a system namespace');
    assert.deepEqual(SYSTEM_NAMESPACES, ['kube-system', 'kube-public', 'kube-node-lease']);
    assert.equal(neverInjected('chaperone-system', 'chaperone-system'), "the injector's own namespace");
    assert.equal(neverInjected('my-chaperone', 'my-chaperone'), "the injector's own namespace");
    assert.equal(neverInjected('team-a', 'chaperone-system'), undefined);
    assert.equal(neverInjected('chaperone-system', 'my-chaperone'), undefined);
  });

  it('says so with a Warning event on the namespace, where kubectl describe namespace finds it', function () {
    const namespace: V1Namespace = { metadata: { name: 'kube-system', uid: 'u-1' } };
    const now = new Date('2026-01-01T00:00:00Z');
    const event = refusalEvent(namespace, 'a system namespace', 'chaperone-system', now);
    assert.equal(event.metadata.namespace, 'default');
    assert.deepEqual(event.involvedObject, { apiVersion: 'v1', kind: 'Namespace', name: 'kube-system', uid: 'u-1' });
    assert.equal(event.type, 'Warning');
    assert.equal(event.reason, 'InjectionRefused');
    assert.match(event.message!, /^chaperone never provisions kube-system \(a system namespace\): its label chaperone\.dev\/inject=enabled is refused/);
    assert.match(event.message!, /kubectl label namespace kube-system chaperone\.dev\/inject-/);
    assert.deepEqual([event.firstTimestamp, event.lastTimestamp, event.count], [now, now, 1]);
  });

  it('never injects there, whatever the labels', async function () {
    const labelled = () => Promise.resolve({ labels: { 'chaperone.dev/inject': 'enabled' }, annotations: {} });
    for (const namespace of [...SYSTEM_NAMESPACES, testConfig().namespace]) {
      const out = await review({ object: pod(), namespace }, testConfig(), labelled);
      assert.equal(out.response.allowed, true);
      assert.equal(out.response.patch, undefined, namespace);
    }
  });
});
