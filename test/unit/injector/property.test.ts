// For random valid pods: the webhook either refuses a pod that really is unsafe, or answers a patch
// that applies cleanly and gives a pod with exactly one sidecar, no app container that can reach a
// real token, every app container pointed at the proxy, and that a second pass leaves alone.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { V1Container, V1EnvVar, V1Pod, V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import { Denial } from '../../../injector/denial.js';
import { injectPod, isUnderServiceAccountDir, projectsServiceAccountToken, type InjectionStatus } from '../../../injector/mutate.js';
import { resolveSettings } from '../../../injector/settings.js';
import { applyPatch, decodePatch, LABELLED_NAMESPACE, namespacesWith, review as reviewIn, testConfig } from './helpers.js';

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
const VOLUME_NAMES = ['data', 'cache', 'kube-api-access-x1', 'tokens', 'chaperone-upstream', 'chaperone-serving', 'chaperone-serving-1', 'chaperone-api-access', 'chaperone-identity-ca'];
const MOUNT_PATHS = ['/data', '/cache', '/etc/app', '/tokens', SA_DIR, `${SA_DIR}/`, `${SA_DIR}/extra`];
const CONTAINER_NAMES = ['app', 'web', 'api', 'logs', 'migrate', 'wait', 'shipper'];

const volumeSource = fc.oneof(
  fc.constant({ emptyDir: {} }),
  fc.constant({ configMap: { name: 'settings' } }),
  fc.constant({ secret: { secretName: 'creds' } }),
  fc.constant({ projected: { sources: [{ serviceAccountToken: { path: 'token', expirationSeconds: 3607 } }, { configMap: { name: 'kube-root-ca.crt' } }] } }),
  fc.constant({ projected: { sources: [{ downwardAPI: { items: [{ path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }] } }] } }),
);

const env: fc.Arbitrary<V1EnvVar[]> = fc.subarray([
  { name: 'KUBERNETES_SERVICE_HOST', value: '10.96.0.1' },
  { name: 'LOG_LEVEL', value: 'debug' },
  { name: 'API', value: 'https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)' },
  { name: 'KUBERNETES_SERVICE_PORT', value: '443' },
]);

function container(name: string, volumes: string[], init: boolean): fc.Arbitrary<V1Container> {
  const mounts: fc.Arbitrary<V1VolumeMount[]> =
    volumes.length === 0
      ? fc.constant([])
      : fc.uniqueArray(fc.record({ name: fc.constantFrom(...volumes), mountPath: fc.constantFrom(...MOUNT_PATHS) }), {
          maxLength: 4,
          selector: (mount) => mount.mountPath.replace(/\/$/, ''),
        });
  return fc.record(
    {
      name: fc.constant(name),
      image: fc.constantFrom('nginx:1.27', 'ghcr.io/headlamp-k8s/headlamp:v0.25.0'),
      env,
      volumeMounts: mounts,
      volumeDevices: volumes.length === 0 ? fc.constant([]) : fc.uniqueArray(fc.record({ name: fc.constantFrom(...volumes), devicePath: fc.constantFrom('/dev/xvda', '/dev/xvdb') }), { maxLength: 1 }),
      ...(init ? { restartPolicy: fc.constant('Always') } : {}),
    },
    { requiredKeys: ['name', 'image'] },
  );
}

const annotations = fc.record(
  {
    'chaperone.dev/sidecar-mode': fc.constantFrom('native', 'classic'),
    'chaperone.dev/log-level': fc.constantFrom('debug', 'warn'),
    'chaperone.dev/memory-limit': fc.constantFrom('0.5Gi', '300Mi'),
    'chaperone.dev/status': fc.constant('{"forged":true}'),
    'example.com/other': fc.string({ maxLength: 8 }),
  },
  { requiredKeys: [] },
);

export const validPod: fc.Arbitrary<V1Pod> = fc
  .record({
    volumes: fc.uniqueArray(fc.constantFrom(...VOLUME_NAMES), { maxLength: 5 }),
    names: fc.shuffledSubarray(CONTAINER_NAMES, { minLength: 1, maxLength: 5 }),
    initCount: fc.nat({ max: 2 }),
  })
  .chain(({ volumes, names, initCount }) => {
    const inits = names.slice(0, Math.min(initCount, names.length - 1));
    const regular = names.slice(inits.length);
    return fc.record(
      {
        metadata: fc.record({ name: fc.constant('dash'), annotations, labels: fc.constant({ app: 'dash' }) }, { requiredKeys: ['name'] }),
        spec: fc.record(
          {
            containers: fc.tuple(...regular.map((name) => container(name, volumes, false))),
            initContainers: fc.tuple(...inits.map((name) => container(name, volumes, true))),
            volumes: fc.tuple(...volumes.map((name) => volumeSource.map((source) => ({ name, ...source }) as V1Volume))),
            serviceAccountName: fc.constantFrom('default', 'headlamp'),
            automountServiceAccountToken: fc.boolean(),
            shareProcessNamespace: fc.boolean(),
            hostPID: fc.boolean(),
            // Refused by the API server's validation at creation, after the webhook: the webhook still sees them.
            ephemeralContainers: fc.tuple(container('debug', volumes, false)),
          },
          { requiredKeys: ['containers', 'initContainers', 'volumes'] },
        ),
      },
      { requiredKeys: ['metadata', 'spec'] },
    );
  })
  .map((pod) => ({ apiVersion: 'v1', kind: 'Pod', ...(JSON.parse(JSON.stringify(pod)) as Pick<V1Pod, 'metadata' | 'spec'>) }));

const RESERVED = ['chaperone-upstream', 'chaperone-serving', 'chaperone-api-access', 'chaperone-identity-ca'];

/**
 * The unsafe pods, judged independently of the injector: an app container could read a token. A pod
 * that says it was injected (chaperone.dev/status) has the chaperone-* volumes the injector uses
 * taken for the injector's own, of which only chaperone-upstream holds a token; any other pod's are
 * renamed.
 */
function isUnsafe(pod: V1Pod, authenticators: string): boolean {
  const spec = pod.spec!;
  if (spec.shareProcessNamespace || spec.hostPID) return true;
  const annotations = pod.metadata?.annotations ?? {};
  const usesIdentityCa = authenticators.split(',').includes('client-cert');
  const replaced = annotations['chaperone.dev/status'] === undefined ? [] : RESERVED.filter((name) => name !== 'chaperone-identity-ca' || usesIdentityCa);
  const holdsToken = (v: V1Volume) => (replaced.includes(v.name) ? v.name === 'chaperone-upstream' : projectsServiceAccountToken(v));
  const tokens = new Set((spec.volumes ?? []).filter(holdsToken).map((v) => v.name));
  const containers = [...(spec.initContainers ?? []), ...spec.containers, ...((spec.ephemeralContainers ?? []) as V1Container[])];
  return containers.some((c) => (c.volumeMounts ?? []).some((m) => tokens.has(m.name) && !isUnderServiceAccountDir(m.mountPath)));
}

function checkInvariants(pod: V1Pod): void {
  const spec = pod.spec!;
  const all = [...(spec.initContainers ?? []), ...spec.containers];
  const sidecars = all.filter((c) => c.name === 'chaperone');
  assert.equal(sidecars.length, 1, 'exactly one sidecar');
  const sidecar = sidecars[0]!;
  if ((JSON.parse(pod.metadata!.annotations!['chaperone.dev/status']!) as InjectionStatus).mode === 'native') {
    assert.equal(spec.initContainers![0], sidecar, 'the native sidecar comes first');
    assert.equal(sidecar.restartPolicy, 'Always');
  } else {
    assert.ok(spec.containers.includes(sidecar));
  }
  assert.equal(spec.automountServiceAccountToken, false);
  assert.equal(spec.serviceAccountName, 'chaperone-impersonator');

  const volumes = new Map((spec.volumes ?? []).map((v) => [v.name, v]));
  assert.equal(volumes.size, (spec.volumes ?? []).length, 'volume names are unique');
  for (const c of all) {
    const paths = (c.volumeMounts ?? []).map((m) => m.mountPath.replace(/\/$/, ''));
    assert.equal(new Set(paths).size, paths.length, `${c.name}: no mount path twice`);
    for (const m of c.volumeMounts ?? []) assert.ok(volumes.has(m.name), `${c.name} mounts ${m.name}, which exists`);
  }
  for (const c of all.filter((x) => x !== sidecar)) {
    for (const m of c.volumeMounts ?? []) {
      const volume = volumes.get(m.name)!;
      assert.ok(!projectsServiceAccountToken(volume), `${c.name} reaches no service-account token (${m.name})`);
      assert.notEqual(m.name, 'chaperone-upstream');
    }
    const saMounts = (c.volumeMounts ?? []).filter((m) => isUnderServiceAccountDir(m.mountPath));
    assert.deepEqual(saMounts, [{ name: 'chaperone-api-access', mountPath: SA_DIR, readOnly: true }], `${c.name}: the stand-in service-account directory`);
    assert.deepEqual(c.env!.slice(0, 3), [
      { name: 'KUBERNETES_SERVICE_HOST', value: '127.0.0.1' },
      { name: 'KUBERNETES_SERVICE_PORT', value: '6443' },
      { name: 'KUBERNETES_SERVICE_PORT_HTTPS', value: '6443' },
    ]);
    assert.equal(c.env!.filter((e) => e.name.startsWith('KUBERNETES_SERVICE_')).length, 3, `${c.name}: no other KUBERNETES_SERVICE_* variable`);
  }
  assert.deepEqual(
    (sidecar.volumeMounts ?? []).map((m) => m.name).filter((name) => projectsServiceAccountToken(volumes.get(name)!)),
    ['chaperone-upstream'],
    'the only token is the sidecar\'s',
  );
}

describe('injector (property: random valid pods)', function () {
  this.timeout(60_000);

  it('refuses exactly the unsafe pods, and injects the others safely, once', async function () {
    await fc.assert(
      // The authenticators are the namespace's (cluster administrators' annotation), never the pod's.
      fc.asyncProperty(validPod, fc.constantFrom('client-cert', 'anonymous', 'client-cert,anonymous'), async (pod, authenticators) => {
        const namespace = namespacesWith({ 'chaperone.dev/authenticators': authenticators });
        const review = (input: Parameters<typeof reviewIn>[0]) => reviewIn(input, testConfig(), namespace);
        const out = await review({ object: pod });
        if (isUnsafe(pod, authenticators)) {
          assert.equal(out.response.allowed, false, 'an unsafe pod is refused');
          assert.equal(out.response.status?.code, 403);
          return;
        }
        assert.equal(out.response.allowed, true, out.response.status?.message);
        const patch = decodePatch(out);
        const injected = applyPatch(pod, patch);
        checkInvariants(injected);
        const again = await review({ object: injected });
        assert.deepEqual(decodePatch(again), [], 'a second pass changes nothing');
        const dryRun = await review({ object: pod, dryRun: true });
        assert.deepEqual(decodePatch(dryRun), patch, 'a dry run gets the same patch');
      }),
      { numRuns: 300 },
    );
  });

  it('never writes to the pod the review carries, and patches it into exactly what the mutation makes of it', async function () {
    await fc.assert(
      fc.asyncProperty(validPod, fc.constantFrom('client-cert', 'anonymous', 'client-cert,anonymous'), async (pod, authenticators) => {
        const namespaceAnnotations = { 'chaperone.dev/authenticators': authenticators };
        const config = testConfig();
        let expected: V1Pod | Denial;
        try {
          const settings = resolveSettings(config, pod.metadata?.annotations, { name: LABELLED_NAMESPACE, annotations: namespaceAnnotations });
          expected = injectPod(structuredClone(pod), settings);
        } catch (err) {
          if (!(err instanceof Denial)) throw err;
          expected = err;
        }
        // A write to the carried pod throws, and would be answered as an InternalError.
        const out = await reviewIn({ object: deepFrozen(structuredClone(pod)) }, config, namespacesWith(namespaceAnnotations));
        if (expected instanceof Denial) {
          assert.deepEqual(out.response.status, { code: expected.code, reason: expected.reason, message: expected.message });
          return;
        }
        assert.equal(out.response.allowed, true, out.response.status?.message);
        assert.deepEqual(applyPatch(pod, decodePatch(out)), JSON.parse(JSON.stringify(expected)));
      }),
      { numRuns: 300 },
    );
  });
});

function deepFrozen<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const item of Object.values(value)) deepFrozen(item);
    Object.freeze(value);
  }
  return value;
}
