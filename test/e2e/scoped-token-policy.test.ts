// The shipped ValidatingAdmissionPolicy, enforced by the real API server: opted-out pods cannot run
// as the scoped service account, and a running pod's sidecar image cannot be swapped.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { AdmissionregistrationV1Api, type V1Pod, type V1ValidatingAdmissionPolicy, type V1ValidatingAdmissionPolicyBinding } from '@kubernetes/client-node';
import type { ControlPlane } from '../cluster/control-plane.js';
import { sharedControlPlane } from '../cluster/shared.js';
import { adminClients, createNamespace, createServiceAccount, type AdminClients } from '../cluster/kube.js';

const POLICY_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../manifests/base/scoped-token-policy.yaml');

function pod(name: string, serviceAccountName: string, labels: Record<string, string> = {}): V1Pod {
  return {
    metadata: { name, labels },
    spec: {
      serviceAccountName,
      containers: [
        { name: 'dashboard', image: 'example.invalid/dashboard:1' },
        { name: 'chaperone', image: 'example.invalid/chaperone:1' },
      ],
    },
  };
}

function denialOf(err: unknown): { code: number; message: string } {
  const body = (err as { body?: string }).body;
  const status = JSON.parse(body ?? '{}') as { code?: number; message?: string };
  return { code: status.code ?? 0, message: status.message ?? String(err) };
}

describe('the scoped-token ValidatingAdmissionPolicy (real API server)', function () {
  this.timeout(120_000);
  let cp: ControlPlane;
  let clients: AdminClients;
  let admission: AdmissionregistrationV1Api;
  let ns: string;
  const run = randomBytes(4).toString('hex');
  const name = `chaperone-scoped-token-${run}`;

  before(async function () {
    this.timeout(15 * 60_000);
    cp = await sharedControlPlane();
    clients = adminClients(cp);
    admission = clients.kubeconfig.makeApiClient(AdmissionregistrationV1Api);
    // The shipped policy and binding, renamed for this run and bound to this run's namespace only,
    // so no other suite sharing the control plane is affected.
    const [policy, binding] = YAML.parseAllDocuments(await readFile(POLICY_FILE, 'utf8')).map((d) => d.toJSON() as unknown) as [
      V1ValidatingAdmissionPolicy,
      V1ValidatingAdmissionPolicyBinding,
    ];
    policy.metadata!.name = name;
    binding.metadata!.name = name;
    binding.spec.policyName = name;
    binding.spec.matchResources!.namespaceSelector = { matchLabels: { 'chaperone-test/policy-run': run } };
    await admission.createValidatingAdmissionPolicy({ body: policy });
    await admission.createValidatingAdmissionPolicyBinding({ body: binding });
    ns = await createNamespace(clients, 'policy', { 'chaperone.dev/inject': 'enabled', 'chaperone-test/policy-run': run });
    await createServiceAccount(clients, ns, 'chaperone-impersonator');
    // Policies take effect a moment after they are created, and the default service account is the
    // controller manager's to create: wait for both.
    const deadline = Date.now() + 30_000;
    while (!(await clients.core.readNamespacedServiceAccount({ name: 'default', namespace: ns }).then(() => true, () => false))) {
      if (Date.now() > deadline) throw new Error('no default service account');
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    for (;;) {
      const denied = await clients.core
        .createNamespacedPod({ namespace: ns, dryRun: 'All', body: pod('probe', 'chaperone-impersonator', { 'chaperone.dev/inject': 'disabled' }) })
        .then(() => false, () => true);
      if (denied) break;
      if (Date.now() > deadline) throw new Error('the policy never took effect');
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  });

  after(async function () {
    await admission?.deleteValidatingAdmissionPolicyBinding({ name }).catch(() => undefined);
    await admission?.deleteValidatingAdmissionPolicy({ name }).catch(() => undefined);
  });

  it('refuses a pod that opts out of injection and runs as the scoped service account', async function () {
    const err = await clients.core.createNamespacedPod({ namespace: ns, body: pod('thief', 'chaperone-impersonator', { 'chaperone.dev/inject': 'disabled' }) }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err, 'the API server admitted the pod');
    const denial = denialOf(err);
    assert.equal(denial.code, 403);
    assert.match(denial.message, /cannot run as chaperone-impersonator/);
  });

  it('lets an opted-out pod run as any other service account', async function () {
    await clients.core.createNamespacedPod({ namespace: ns, body: pod('other-workload', 'default', { 'chaperone.dev/inject': 'disabled' }) });
  });

  it('refuses swapping the sidecar image of a running pod, and allows other image updates', async function () {
    await clients.core.createNamespacedPod({ namespace: ns, body: pod('dashboard', 'chaperone-impersonator') });
    const swap = await clients.core
      .patchNamespacedPod({ name: 'dashboard', namespace: ns, body: [{ op: 'replace', path: '/spec/containers/1/image', value: 'example.invalid/evil:1' }] })
      .then(() => undefined, (e: unknown) => e);
    assert.ok(swap, 'the API server let the sidecar image change');
    assert.match(denialOf(swap).message, /sidecar's image cannot be changed/);
    await clients.core.patchNamespacedPod({ name: 'dashboard', namespace: ns, body: [{ op: 'replace', path: '/spec/containers/0/image', value: 'example.invalid/dashboard:2' }] });
  });
});
