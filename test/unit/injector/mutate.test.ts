import assert from 'node:assert/strict';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { Denial } from '../../../injector/denial.js';
import { injectPod } from '../../../injector/mutate.js';
import { resolveSettings } from '../../../injector/settings.js';
import { decodePatch, inject, review, testConfig } from './helpers.js';

const settings = resolveSettings(testConfig());

function pod(spec: Partial<V1Pod['spec']> = {}, annotations?: Record<string, string>): V1Pod {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'dash', ...(annotations ? { annotations } : {}) }, spec: { containers: [{ name: 'app', image: 'app:1' }], ...spec } };
}

const KUBE_API_ACCESS = {
  name: 'kube-api-access-abcde',
  projected: { sources: [{ serviceAccountToken: { path: 'token', expirationSeconds: 3607 } }, { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } }] },
};
const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

function refusal(input: V1Pod): Denial {
  try {
    injectPod(input, settings);
  } catch (err) {
    assert.ok(err instanceof Denial, String(err));
    return err;
  }
  assert.fail('the pod was injected');
}

/**
 * The kubelet's makeEnvironmentVariables (pkg/kubelet/kubelet_pods.go) for literal values: envFrom
 * first, then env in order, each value's $(VAR) expanded from the variables declared before it and
 * then from the service variables; last, the service variables the container did not declare.
 */
function kubeletEnvironment(container: V1Container, serviceEnv: Record<string, string>, envFrom: Record<string, string> = {}): Record<string, string> {
  const declared = new Map(Object.entries(envFrom));
  const lookup = (name: string) => declared.get(name) ?? serviceEnv[name];
  for (const variable of container.env ?? []) {
    const value = (variable.value ?? '<from a source>').replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (whole, name?: string) =>
      name === undefined ? '$' : (lookup(name) ?? whole),
    );
    declared.set(variable.name, value);
  }
  return { ...serviceEnv, ...Object.fromEntries(declared) };
}

const SERVICE_ENV = {
  KUBERNETES_SERVICE_HOST: '10.96.0.1',
  KUBERNETES_SERVICE_PORT: '443',
  KUBERNETES_SERVICE_PORT_HTTPS: '443',
  KUBERNETES_PORT: 'tcp://10.96.0.1:443',
};

describe('injector/mutate', function () {
  describe('what the dashboard ends up with, by the kubelet\'s rules for environment variables', function () {
    const app: V1Container = {
      name: 'dashboard',
      image: 'dashboard:1',
      env: [
        { name: 'API_URL', value: 'https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)' },
        { name: 'KUBERNETES_SERVICE_HOST', value: '10.96.0.1' },
      ],
    };

    it('points the service variables at the proxy, over the kubelet\'s, the app\'s own and envFrom\'s', function () {
      const injected = injectPod(pod({ containers: [app] }), settings).spec!.containers[0]!;
      const env = kubeletEnvironment(injected, SERVICE_ENV, { KUBERNETES_SERVICE_PORT: '8443' });
      assert.equal(env.KUBERNETES_SERVICE_HOST, '127.0.0.1');
      assert.equal(env.KUBERNETES_SERVICE_PORT, '6443');
      assert.equal(env.KUBERNETES_SERVICE_PORT_HTTPS, '6443');
    });

    it('puts them first, so that the app\'s own $(KUBERNETES_SERVICE_HOST) references mean the proxy', function () {
      const injected = injectPod(pod({ containers: [app] }), settings).spec!.containers[0]!;
      assert.equal(kubeletEnvironment(injected, SERVICE_ENV).API_URL, 'https://127.0.0.1:6443');
      // Appended instead, the same variables would leave API_URL at the real API server.
      const appended = { ...app, env: [...app.env!.filter((e) => e.name !== 'KUBERNETES_SERVICE_HOST'), ...injected.env!.slice(0, 3)] };
      assert.equal(kubeletEnvironment(appended, SERVICE_ENV).API_URL, 'https://10.96.0.1:443');
    });
  });

  describe('the service-account directory', function () {
    it('replaces the mount the ServiceAccount admission plugin added, and drops its token volume', function () {
      const input = pod({
        serviceAccountName: 'headlamp',
        serviceAccount: 'headlamp',
        containers: [{ name: 'app', image: 'app:1', volumeMounts: [{ name: KUBE_API_ACCESS.name, mountPath: SA_DIR, readOnly: true }] }],
        volumes: [KUBE_API_ACCESS],
      });
      const out = injectPod(input, settings);
      const mounts = out.spec!.containers[0]!.volumeMounts!;
      assert.deepEqual(mounts, [{ name: 'chaperone-api-access', mountPath: SA_DIR, readOnly: true }]);
      assert.ok(!out.spec!.volumes!.some((v) => v.name === KUBE_API_ACCESS.name));
      assert.equal(out.spec!.serviceAccountName, 'chaperone-impersonator');
      assert.equal(out.spec!.serviceAccount, 'chaperone-impersonator', 'the deprecated alias follows');
      assert.equal(out.spec!.automountServiceAccountToken, false);
      assert.equal(out.metadata!.annotations!['chaperone.dev/original-service-account'], 'headlamp');
    });
  });

  describe('refusals', function () {
    it('refuses a shared process namespace', function () {
      const err = refusal(pod({ shareProcessNamespace: true }));
      assert.equal(err.code, 403);
      assert.match(err.message, /spec\.shareProcessNamespace is true; the dashboard could read the sidecar's service-account token/);
    });

    it('refuses the host PID namespace', function () {
      assert.match(refusal(pod({ hostPID: true })).message, /spec\.hostPID is true/);
    });

    it('refuses an app container that mounts a service-account token elsewhere (it would be the scoped account\'s)', function () {
      const input = pod({
        containers: [{ name: 'app', image: 'app:1', volumeMounts: [{ name: KUBE_API_ACCESS.name, mountPath: SA_DIR }, { name: KUBE_API_ACCESS.name, mountPath: '/tokens' }] }],
        volumes: [KUBE_API_ACCESS],
      });
      assert.match(refusal(input).message, /container app mounts volume kube-api-access-abcde, which holds a service-account token/);
    });

    it('refuses an app container of an injected pod that mounts the sidecar\'s token volume', function () {
      const injected = injectPod(pod(), settings);
      injected.spec!.containers[0]!.volumeMounts!.push({ name: 'chaperone-upstream', mountPath: '/stolen' });
      assert.match(refusal(injected).message, /container app mounts volume chaperone-upstream/);
    });

    it('refuses an app container that mounts the sidecar\'s token volume before it exists (injection would complete the mount)', function () {
      const input = pod({ containers: [{ name: 'app', image: 'app:1', volumeMounts: [{ name: 'chaperone-upstream', mountPath: '/t' }] }] });
      assert.match(refusal(input).message, /container app mounts volume chaperone-upstream/);
    });

    it('refuses a container of its own called chaperone, the sidecar\'s name', function () {
      const err = refusal(pod({ containers: [{ name: 'chaperone', image: 'mine:1' }] }));
      assert.equal(err.code, 400);
      assert.match(err.message, /the container name chaperone is reserved for the chaperone sidecar/);
    });
  });

  describe('re-injection', function () {
    it('does not take a chaperone.dev/status it did not write as a reason to skip the pod', function () {
      const forged = pod({ volumes: [KUBE_API_ACCESS], containers: [{ name: 'app', image: 'app:1', volumeMounts: [{ name: KUBE_API_ACCESS.name, mountPath: SA_DIR }] }] }, {
        'chaperone.dev/status': '{"version":1}',
      });
      const out = injectPod(forged, settings);
      assert.equal(out.spec!.initContainers![0]!.name, 'chaperone');
      assert.equal(out.spec!.automountServiceAccountToken, false);
      assert.ok(!out.spec!.volumes!.some((v) => v.name === KUBE_API_ACCESS.name));
    });

    it('puts back a sidecar that was changed after injection', function () {
      const injected = injectPod(pod(), settings);
      const tampered = structuredClone(injected);
      Object.assign(tampered.spec!.initContainers![0]!, { command: ['sh', '-c', 'cat /var/run/secrets/chaperone/upstream/token'] });
      tampered.spec!.initContainers![0]!.securityContext!.privileged = true;
      assert.deepEqual(injectPod(tampered, settings), injected);
    });

    it('moves the sidecar between native and classic when the pod asks', async function () {
      const native = await inject(pod());
      const classic = await inject({ ...native.pod, metadata: { ...native.pod.metadata, annotations: { ...native.pod.metadata!.annotations, 'chaperone.dev/sidecar-mode': 'classic' } } });
      assert.deepEqual(classic.pod.spec!.initContainers ?? [], []);
      assert.deepEqual(classic.pod.spec!.containers.map((c) => c.name), ['app', 'chaperone']);
    });
  });

  describe('ephemeral containers (kubectl debug) on an injected pod', function () {
    // As the API server sends it: the stored pod as oldObject, the pod as patched as object.
    async function addEphemeral(container: Record<string, unknown>) {
      const stored = (await inject(pod())).pod;
      const patched = structuredClone(stored);
      patched.spec!.ephemeralContainers = [{ name: 'debugger', image: 'busybox:1.36', ...container }];
      return review({ object: patched, oldObject: stored, operation: 'UPDATE', subResource: 'ephemeralcontainers' });
    }

    it('allows a debugger that stays away from the sidecar, with no patch', async function () {
      const out = await addEphemeral({ targetContainerName: 'app' });
      assert.equal(out.response.allowed, true);
      assert.deepEqual(decodePatch(out), []);
    });

    it('refuses one that targets the sidecar\'s processes', async function () {
      const out = await addEphemeral({ targetContainerName: 'chaperone' });
      assert.equal(out.response.allowed, false);
      assert.match(out.response.status!.message, /ephemeral container debugger targets the chaperone container/);
    });

    it('refuses one that mounts the sidecar\'s token', async function () {
      const out = await addEphemeral({ volumeMounts: [{ name: 'chaperone-upstream', mountPath: '/t' }] });
      assert.equal(out.response.status?.code, 403);
    });
  });
});
