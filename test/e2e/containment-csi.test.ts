// Containment, the route through claims (issue 17, rule csi-claim-in-scoped-pod): a pod that runs as
// chaperone-impersonator with a persistentVolumeClaim or a generic ephemeral volume, while a CSIDriver
// that can serve claims requests tokens the API server accepts (the kubelet would hand that driver a
// token of the scoped account at every mount). Against the real API server with the shipped policies,
// the injector behind the shipped webhook configuration and reading with exactly the shipped RBAC, a
// namespace `edit` user tries every shape of claim the races allow: one not created yet, one bound to a
// static PV of another driver, one left to the default class, ephemeral templates. No kubelet and no
// driver run: what counts is what admission stores or refuses, and the API server's audit log records
// each attempt with the status she saw.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import YAML from 'yaml';
import { KubernetesObjectApi, type KubernetesObject, type V1CSIDriver, type V1Pod, type V1PolicyRule, type V1Volume } from '@kubernetes/client-node';
import { issueCertificate, type CertificateAndKey } from '../../lib/pki.js';
import { injectedBaselineNamespace, mergePatch } from '../support/containment.js';
import { auditEventsFor, bindClusterRoleInNamespace, mintServiceAccountToken, userSubject, waitForCanI } from '../../local-cluster/kube.js';
import { waitFor } from '../../local-cluster/wait.js';
import { rawRequest } from '../../local-cluster/sidecar.js';
import { withClusterLikeControlPlane, withInjector } from '../support/fixtures.js';

const WARNING_POLICY = path.resolve(import.meta.dirname, '../../manifests/base/csi-token-drivers-policy.yaml');
const SCOPED = 'chaperone-impersonator';
const IMAGE = 'ghcr.io/example/dashboard:1';
const EDIT = 'csi-edit';

/** Becomes a driver that requests tokens in the middle of the suite (tokenRequests are mutable). */
const CHANGING = 'changing.csi.example.com';
/** Never requests a token: the default class and the static PV are its. */
const DISK = 'disk.csi.example.com';
const CLOUD = 'cloud.csi.example.com';
const INLINE_ONLY = 'inline.csi.example.com';
const TRUSTED = 'trusted.csi.example.com';

const DRIVERS: V1CSIDriver[] = [
  { metadata: { name: CHANGING }, spec: { attachRequired: false } },
  { metadata: { name: DISK }, spec: { attachRequired: false } },
  // Tokens for an audience the API server does not accept (a cloud's token exchange).
  { metadata: { name: CLOUD }, spec: { attachRequired: false, tokenRequests: [{ audience: 'sts.example.com' }] } },
  // Tokens the API server accepts, but it serves inline volumes only: the kubelet publishes no claim through it.
  { metadata: { name: INLINE_ONLY }, spec: { attachRequired: false, volumeLifecycleModes: ['Ephemeral'], tokenRequests: [{ audience: '' }] } },
  // Tokens the API server accepts, and named in the injector's --trusted-csi-drivers.
  { metadata: { name: TRUSTED }, spec: { attachRequired: false, tokenRequests: [{ audience: '' }] } },
];

const RULE = /denied the request: chaperone refuses this pod: chaperone rule csi-claim-in-scoped-pod: the pod runs as the scoped service account and has volume data/;

interface Attempt {
  status: number;
  message: string;
  auditID: string;
  pod?: V1Pod;
}

function claimPod(name: string, volume: Omit<V1Volume, 'name'>): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name },
    spec: { containers: [{ name: 'dashboard', image: IMAGE, volumeMounts: [{ name: 'data', mountPath: '/data' }] }], volumes: [{ name: 'data', ...volume }] },
  };
}

const template = (spec: Record<string, unknown>): Omit<V1Volume, 'name'> => ({
  ephemeral: { volumeClaimTemplate: { spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } }, ...spec } } },
});

/** Every shape of claim the races leave open, each a pod the `edit` user creates. */
const CLAIMS: { id: string; title: string; volume: Omit<V1Volume, 'name'> }[] = [
  { id: 'later', title: 'a claim not created yet (created, with any class, once the pod is admitted)', volume: { persistentVolumeClaim: { claimName: 'later' } } },
  { id: 'static', title: 'a claim bound to a static PV of a driver that requests no token', volume: { persistentVolumeClaim: { claimName: 'static' } } },
  { id: 'default', title: 'a claim with no storageClassName (the default class, a driver that requests no token)', volume: { persistentVolumeClaim: { claimName: 'default' } } },
  { id: 'cloud', title: 'a claim of the class whose driver requests tokens for another audience', volume: { persistentVolumeClaim: { claimName: 'cloud' } } },
  { id: 'trusted', title: 'a claim of the class whose driver the injector trusts', volume: { persistentVolumeClaim: { claimName: 'trusted' } } },
  { id: 'ephemeral-default', title: 'a generic ephemeral volume of the default class', volume: template({}) },
  { id: 'ephemeral-static', title: 'a generic ephemeral volume that names the static PV', volume: template({ storageClassName: '', volumeName: 'static' }) },
  { id: 'in-tree', title: 'an inline in-tree awsElasticBlockStore volume (CSI migration publishes it through a CSI driver)', volume: { awsElasticBlockStore: { volumeID: 'vol-1' } } },
];

describe('containment: claims served by a CSI driver that requests tokens (real API server, the shipped policies and RBAC)', function () {
  this.timeout(120_000);
  const { cp, clients } = withClusterLikeControlPlane();
  let ns = '';
  let edit: CertificateAndKey;
  let run = 0;

  /** The `edit` user creates the pod (dry run: the whole admission, nothing stored), and the audit log must agree on the outcome. */
  async function create(pod: V1Pod, dryRun = true): Promise<Attempt> {
    const named = structuredClone(pod);
    named.metadata!.name = `${pod.metadata!.name!}-${++run}`;
    const response = await rawRequest(`${cp.url}/api/v1/namespaces/${ns}/pods${dryRun ? '?dryRun=All' : ''}`, {
      method: 'POST',
      ca: cp.ca.certPem,
      cert: edit,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(named),
    });
    const parsed = JSON.parse(response.body) as { message?: string } & V1Pod;
    const attempt: Attempt = { status: response.status, message: parsed.message ?? '', auditID: String(response.headers['audit-id'] ?? ''), ...(response.status === 201 ? { pod: parsed } : {}) };
    const events = await auditEventsFor(cp, attempt.auditID);
    const complete = events.find((event) => event.stage === 'ResponseComplete');
    assert.equal(complete?.responseStatus?.code, attempt.status, `the audit log records ${pod.metadata!.name!} as the user saw it`);
    assert.equal(complete.user.username, EDIT);
    return attempt;
  }

  function assertInjected(attempt: Attempt, what: string): void {
    assert.equal(attempt.status, 201, `${what}: HTTP ${attempt.status} ${attempt.message}`);
    assert.equal(attempt.pod?.spec?.serviceAccountName, SCOPED, `${what}: injected`);
  }

  function assertRefused(attempt: Attempt, what: string, words: RegExp = RULE): void {
    assert.equal(attempt.status, 403, `${what}: HTTP ${attempt.status} ${attempt.message}`);
    assert.match(attempt.message, words, what);
  }

  /** A cluster administrator's write; the warnings the chaperone-csi-token-drivers policy sent back (not the API server's own). */
  async function asClusterAdmin(method: string, urlPath: string, body: unknown, contentType = 'application/json'): Promise<string[]> {
    const response = await rawRequest(`${cp.url}${urlPath}`, { method, ca: cp.ca.certPem, cert: cp.admin, headers: { 'content-type': contentType }, body: JSON.stringify(body) });
    assert.ok(response.status === 200 || response.status === 201, `${method} ${urlPath}: HTTP ${response.status} ${response.body.slice(0, 300)}`);
    const header = [response.headers.warning ?? []].flat().join(', ');
    const ours = "Validation failed for ValidatingAdmissionPolicy 'chaperone-csi-token-drivers' with binding 'chaperone-csi-token-drivers': ";
    return [...header.matchAll(/299 - "((?:[^"\\]|\\.)*)"/g)]
      .map((match) => match[1]!.replaceAll('\\"', '"'))
      .filter((warning) => warning.startsWith(ours))
      .map((warning) => warning.slice(ours.length));
  }

  const csiDrivers = '/apis/storage.k8s.io/v1/csidrivers';
  const setTokenRequests = (audiences: string[] | undefined) =>
    asClusterAdmin('PATCH', `${csiDrivers}/${CHANGING}`, { spec: { tokenRequests: audiences ? audiences.map((audience) => ({ audience })) : null } }, 'application/merge-patch+json');
  const warnings = new Map<string, string[]>();
  /** Until the injector's watch has the last CSIDriver change: the admission of a claim comes out so. */
  const untilTheInjectorSees = (status: 201 | 403) =>
    waitFor(`the injector's watch of the CSIDrivers to have the change (a claim answered ${status})`, async () => (await create(claimPod('sync', { persistentVolumeClaim: { claimName: 'static' } }))).status === status);

  before(async function () {
    const api = KubernetesObjectApi.makeApiClient(clients.kubeconfig);

    for (const object of YAML.parseAllDocuments(await readFile(WARNING_POLICY, 'utf8')).map((doc) => doc.toJS() as KubernetesObject)) await api.create(object);
    const probe = { apiVersion: 'storage.k8s.io/v1', kind: 'CSIDriver', metadata: { name: 'probe.csi.example.com' }, spec: { tokenRequests: [{ audience: '' }] } };
    await waitFor('the API server to apply the warning policy', async () => (await asClusterAdmin('POST', `${csiDrivers}?dryRun=All`, probe)).length > 0, 30_000, 250);

    // The cluster's storage, as its administrators set it up.
    for (const driver of DRIVERS) warnings.set(driver.metadata!.name!, await asClusterAdmin('POST', csiDrivers, { apiVersion: 'storage.k8s.io/v1', kind: 'CSIDriver', ...driver }));
    const storageClass = (name: string, provisioner: string, isDefault = false) =>
      api.create({ apiVersion: 'storage.k8s.io/v1', kind: 'StorageClass', metadata: { name, ...(isDefault ? { annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } } : {}) }, provisioner } as KubernetesObject);
    await storageClass('disk', DISK, true);
    await storageClass('changing', CHANGING);
    await storageClass('cloud', CLOUD);
    await storageClass('trusted', TRUSTED);
    await api.create({
      apiVersion: 'v1',
      kind: 'PersistentVolume',
      metadata: { name: 'static' },
      spec: { capacity: { storage: '1Gi' }, accessModes: ['ReadWriteOnce'], storageClassName: '', persistentVolumeReclaimPolicy: 'Retain', csi: { driver: DISK, volumeHandle: 'vol-1' } },
    } as KubernetesObject);
  });

  const { installation } = withInjector({ cp, clients }, [`--trusted-csi-drivers=${TRUSTED}`]);

  before(async function () {
    this.timeout(15 * 60_000);
    ns = await injectedBaselineNamespace(installation, clients, 'csi');
    await bindClusterRoleInNamespace(clients, ns, 'edit', [userSubject(EDIT)]);
    await waitForCanI(cp, EDIT, ['create', 'persistentvolumeclaims', '-n', ns]);
    edit = issueCertificate(cp.ca, { commonName: EDIT, usage: 'client', validitySeconds: 3600 });

    // Her claims (PVCs are namespace `edit`'s to write): 'later' is not made.
    const claim = (name: string, spec: Record<string, unknown>) =>
      clients.core.createNamespacedPersistentVolumeClaim({ namespace: ns, body: { metadata: { name }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } }, ...spec } } });
    await claim('static', { storageClassName: '', volumeName: 'static' });
    const defaulted = await claim('default', {});
    assert.equal(defaulted.spec?.storageClassName, 'disk', 'the API server gave the claim the default class');
    await claim('cloud', { storageClassName: 'cloud' });
    await claim('trusted', { storageClassName: 'trusted' });
  });

  it('warns the cluster administrator who installs a driver that requests tokens and serves claims, and no one else', function () {
    assert.deepEqual(warnings.get(DISK), [], 'no tokenRequests');
    assert.deepEqual(warnings.get(INLINE_ONLY), [], 'inline volumes only');
    for (const [name, audience] of [[CLOUD, '"sts.example.com"'], [TRUSTED, '"" (the API server\'s own)']] as const) {
      const [warning] = warnings.get(name)!;
      assert.ok(warning?.startsWith(`chaperone: CSIDriver ${name} now requests service-account tokens for audience ${audience} and serves claims`), `${name}: ${warning}`);
      assert.match(warning ?? '', /pods admitted before keep their claims: recreate them/);
    }
  });

  it('allows every claim while no driver that can serve one requests a token the API server accepts (another audience, inline-only, trusted)', async function () {
    for (const { id, title, volume } of CLAIMS) assertInjected(await create(claimPod(id, volume)), title);
  });

  describe('once a CSIDriver that can serve claims requests tokens for audience "" (tokenRequests changed on the live object)', function () {
    let admittedBefore: V1Pod;

    before(async function () {
      // A pod admitted before the change: stored, and nothing at admission can take it back (docs/security-model.md says what operators do).
      const stored = await create(claimPod('before-change', { persistentVolumeClaim: { claimName: 'static' } }), false);
      assertInjected(stored, 'the pod admitted before the change');
      admittedBefore = stored.pod!;
      const [warning, ...more] = await setTokenRequests(['']);
      assert.equal(more.length, 0);
      assert.ok(warning?.startsWith(`chaperone: CSIDriver ${CHANGING} now requests service-account tokens for audience "" (the API server's own) and serves claims`), `the administrator is warned: ${warning}`);
      assert.deepEqual(await setTokenRequests(['']), [], 'the same tokenRequests again: nothing new, no warning');
      await untilTheInjectorSees(403);
    });

    after(async function () {
      await setTokenRequests(undefined);
    });

    for (const { id, title, volume } of CLAIMS.filter((claim) => claim.id !== 'trusted' && claim.id !== 'cloud')) {
      it(`refuses ${title}, naming the driver`, async function () {
        const attempt = await create(claimPod(id, volume));
        assertRefused(attempt, title);
        assert.match(attempt.message, new RegExp(`the CSIDriver ${CHANGING.replaceAll('.', '\\.')} \\(audience "", the API server's own\\)`));
      });
    }

    it('refuses claims that its driver does not serve too: any claim can be made again, bound elsewhere, until the pod is scheduled', async function () {
      for (const id of ['cloud', 'trusted']) assertRefused(await create(claimPod(id, CLAIMS.find((claim) => claim.id === id)!.volume)), id);
    });

    it('still admits pods without claims, and the pod admitted before the change is still stored', async function () {
      assertInjected(await create({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'no-claim' }, spec: { containers: [{ name: 'dashboard', image: IMAGE }], volumes: [{ name: 'data', emptyDir: {} }] } }), 'no claim');
      const stored = await clients.core.readNamespacedPod({ name: admittedBefore.metadata!.name!, namespace: ns });
      assert.equal(stored.metadata?.uid, admittedBefore.metadata?.uid);
    });
  });

  describe("a driver that requests tokens for one of the API server's audiences, not \"\"", function () {
    let audience = '';

    before(async function () {
      // What the kubelet's projected tokens carry: a token requested with no audience has all of the API server's.
      const token = await mintServiceAccountToken(clients, 'default', 'default');
      const aud = (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { aud: string[] }).aud;
      audience = aud[0]!;
      await setTokenRequests(['sts.example.com', audience]);
      await untilTheInjectorSees(403);
    });

    after(async function () {
      await setTokenRequests(undefined);
    });

    it('is refused, by name and audience: the injector learns the API server\'s audiences from its own token', async function () {
      const attempt = await create(claimPod('static', { persistentVolumeClaim: { claimName: 'static' } }));
      assertRefused(attempt, 'a claim while the driver requests an API server audience');
      assert.ok(attempt.message.includes(`the CSIDriver ${CHANGING} (audience "${audience}")`), attempt.message);
    });

    it("and the claim is admitted again once the driver asks for another audience only (the injector's watch)", async function () {
      await setTokenRequests(['sts.example.com']);
      await untilTheInjectorSees(201);
      assertInjected(await create(claimPod('static', { persistentVolumeClaim: { claimName: 'static' } })), 'another audience only');
    });
  });

  describe('when the injector cannot read the CSIDrivers', function () {
    const clusterRole = () => `chaperone-injector-${installation.namespace.replace(/^chaperone-system-/, '')}`;
    let rules: V1PolicyRule[] = [];

    before(async function () {
      const role = await clients.rbac.readClusterRole({ name: clusterRole() });
      rules = role.rules ?? [];
      const without = rules.filter((rule) => !rule.resources?.includes('csidrivers'));
      assert.equal(without.length, rules.length - 1, 'the shipped RBAC lets the injector list CSIDrivers');
      await clients.rbac.patchClusterRole({ name: clusterRole(), body: { rules: without } }, mergePatch());
    });

    after(async function () {
      await clients.rbac.patchClusterRole({ name: clusterRole(), body: { rules } }, mergePatch());
    });

    it('refuses a pod with a claim (it fails closed, naming the rule), and still admits one without', async function () {
      // Its open watch lasts until the API server ends it (25s); the next one is refused, and 5s later the cache is no longer trusted.
      const attempt = await waitFor(
        'the injector to lose its CSIDriver watch',
        async () => {
          const got = await create(claimPod('static', { persistentVolumeClaim: { claimName: 'static' } }));
          return got.status !== 201 && got;
        },
        90_000,
        500,
      );
      assert.equal(attempt.status, 500, attempt.message);
      assert.match(attempt.message, /chaperone rule csi-claim-in-scoped-pod: .*, and chaperone cannot tell which CSI drivers would get its token: .*csidrivers/);
      assertInjected(await create({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'no-claim' }, spec: { containers: [{ name: 'dashboard', image: IMAGE }] } }), 'no claim');
    });
  });
});
