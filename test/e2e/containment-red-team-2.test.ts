// A second, independent red-team run on the containment of the scoped token (issue 17): routes that
// neither docs/security-model.md nor containment-red-team.test.ts covers, tried as a namespace `edit`
// and `admin` would, against the real API server with the shipped policies and the injector behind
// the shipped webhook configuration. Each test asserts the SAFE outcome. No kubelet: what counts is
// what admission stores or refuses.
import assert from 'node:assert/strict';
import type { KubernetesObject, V1Pod } from '@kubernetes/client-node';
import { issueCertificate, type CertificateAndKey } from '../../lib/pki.js';
import { bindClusterRoleInNamespace, userSubject, waitForCanI } from '../../local-cluster/kube.js';
import { injectedBaselineNamespace, sendAs, type ApiResponse } from '../support/containment.js';
import { withClusterLikeControlPlane, withInjector } from '../support/fixtures.js';

const SCOPED = 'chaperone-impersonator';
const IMAGE = 'ghcr.io/example/dashboard:1';
const EVIL = 'ghcr.io/attacker/steal:1';
const EDIT = 'redteam2-edit';
const ADMIN = 'redteam2-admin';

describe('containment red team 2: further routes to the scoped token (real API server, the shipped policies)', function () {
  this.timeout(120_000);
  const { cp, clients } = withClusterLikeControlPlane();
  const { installation } = withInjector({ cp, clients });
  let ns = '';
  let edit: CertificateAndKey;
  let admin: CertificateAndKey;

  const podsPath = () => `/api/v1/namespaces/${ns}/pods`;
  const refused = (r: ApiResponse, words: RegExp, what: string) => {
    assert.ok(r.status >= 400 && r.status < 500, `${what}: HTTP ${r.status} ${r.message.slice(0, 400)}`);
    assert.match(r.message, words, `${what}: ${r.message.slice(0, 400)}`);
  };
  const forbiddenByRbac = (r: ApiResponse, what: string) => {
    assert.equal(r.status, 403, `${what}: HTTP ${r.status} ${r.message.slice(0, 300)}`);
    assert.match(r.message, /cannot (create|update|patch|delete|get|list) resource/, what);
  };
  const sidecarOf = (pod: V1Pod) => [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find((c) => c.name === 'chaperone');

  before(async function () {
    this.timeout(15 * 60_000);
    ns = await injectedBaselineNamespace(installation, clients, 'redteam2');
    await bindClusterRoleInNamespace(clients, ns, 'edit', [userSubject(EDIT)]);
    await bindClusterRoleInNamespace(clients, ns, 'admin', [userSubject(ADMIN)]);
    await waitForCanI(cp, EDIT, ['create', 'pods', '-n', ns]);
    await waitForCanI(cp, ADMIN, ['create', 'rolebindings', '-n', ns]);
    edit = issueCertificate(cp.ca, { commonName: EDIT, usage: 'client', validitySeconds: 3600 });
    admin = issueCertificate(cp.ca, { commonName: ADMIN, usage: 'client', validitySeconds: 3600 });
  });

  it('a namespace admin cannot relabel or annotate her Namespace, nor add a webhook, a policy or a binding of her own', async function () {
    for (const [what, body] of [
      ['opt the namespace out', { metadata: { labels: { 'chaperone.dev/inject': 'disabled' } } }],
      ['turn on anonymous', { metadata: { annotations: { 'chaperone.dev/authenticators': 'anonymous' } } }],
      ['her own OIDC issuer', { metadata: { annotations: { 'chaperone.dev/oidc-issuer-url': 'https://evil.example.com' } } }],
      ['drop Pod Security', { metadata: { labels: { 'pod-security.kubernetes.io/enforce': 'privileged' } } }],
    ] as const) {
      for (const [who, cert] of [['admin', admin], ['edit', edit]] as const) forbiddenByRbac(await sendAs(cp, cert, 'PATCH', `/api/v1/namespaces/${ns}`, body, 'application/merge-patch+json'), `${who}: ${what}`);
    }
    const cluster: [string, string, unknown][] = [
      ['a mutating webhook', '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations', { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name: 'evil' }, webhooks: [] }],
      ['a validating policy', '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies', { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicy', metadata: { name: 'evil' }, spec: { matchConstraints: { resourceRules: [] }, validations: [{ expression: 'true' }] } }],
      ['a policy binding', '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings', { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicyBinding', metadata: { name: 'evil' }, spec: { policyName: 'chaperone-scoped-token', validationActions: ['Audit'] } }],
    ];
    for (const [what, url, body] of cluster) forbiddenByRbac(await sendAs(cp, admin, 'POST', url, body), `admin: ${what}`);
    forbiddenByRbac(await sendAs(cp, admin, 'DELETE', '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings/chaperone-scoped-token'), 'admin: delete the binding');
  });

  it("the injector's leader Lease and Events live in its own namespace, out of a namespace admin's reach", async function () {
    const leases = `/apis/coordination.k8s.io/v1/namespaces/${installation.namespace}/leases`;
    forbiddenByRbac(await sendAs(cp, admin, 'GET', `${leases}/chaperone-injector`), 'get the Lease');
    forbiddenByRbac(await sendAs(cp, admin, 'POST', leases, { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'chaperone-injector' }, spec: { holderIdentity: 'evil', leaseDurationSeconds: 3600 } }), 'create the Lease');
    forbiddenByRbac(await sendAs(cp, admin, 'PATCH', `${leases}/chaperone-injector`, { spec: { holderIdentity: 'evil' } }, 'application/merge-patch+json'), 'take the Lease');
    forbiddenByRbac(await sendAs(cp, admin, 'DELETE', `${leases}/chaperone-injector`), 'delete the Lease');
    forbiddenByRbac(await sendAs(cp, admin, 'POST', `/api/v1/namespaces/${installation.namespace}/events`, { apiVersion: 'v1', kind: 'Event', metadata: { generateName: 'evil-' }, involvedObject: { kind: 'Pod', name: 'x' }, reason: 'x', message: 'x' }), 'an Event there');
  });

  it('a Service named kubernetes (ExternalName) in the namespace, or an EndpointSlice (not edit’s to write), does not move the sidecar: its --upstream is pinned', async function () {
    const svc = await sendAs(cp, edit, 'POST', `/api/v1/namespaces/${ns}/services`, { apiVersion: 'v1', kind: 'Service', metadata: { name: 'kubernetes' }, spec: { type: 'ExternalName', externalName: 'evil.example.com' } });
    assert.equal(svc.status, 201, svc.message);
    const slice = await sendAs(cp, edit, 'POST', `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`, {
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'kubernetes', labels: { 'kubernetes.io/service-name': 'kubernetes' } },
      addressType: 'IPv4', endpoints: [{ addresses: ['10.66.6.6'] }], ports: [{ name: 'https', port: 443, protocol: 'TCP' }],
    });
    forbiddenByRbac(slice, 'an EndpointSlice named kubernetes (edit may not write EndpointSlices)');
    const r = await sendAs(cp, edit, 'POST', `${podsPath()}?dryRun=All`, { apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'pinned-' }, spec: { containers: [{ name: 'dashboard', image: IMAGE }] } });
    assert.equal(r.status, 201, r.message);
    const sidecar = sidecarOf(JSON.parse(r.body) as V1Pod)!;
    assert.ok(sidecar.args?.includes(`--upstream=${cp.url}`), `the sidecar's args: ${JSON.stringify(sidecar.args)}`);
  });

  it('legacy token Secrets for the scoped account: refused with generateName, and by renaming the account of an existing one', async function () {
    const secrets = `/api/v1/namespaces/${ns}/secrets`;
    const legacy = (account: string) => ({ apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/service-account-token', metadata: { generateName: 'tok-', annotations: { 'kubernetes.io/service-account.name': account } } });
    refused(await sendAs(cp, edit, 'POST', secrets, legacy(SCOPED)), /chaperone rule no-legacy-token-secret: /, 'generateName');
    const own = await sendAs(cp, edit, 'POST', secrets, legacy('default'));
    assert.equal(own.status, 201, own.message);
    const name = (JSON.parse(own.body) as KubernetesObject).metadata!.name!;
    refused(await sendAs(cp, edit, 'PATCH', `${secrets}/${name}`, { metadata: { annotations: { 'kubernetes.io/service-account.name': SCOPED } } }, 'application/merge-patch+json'), /chaperone rule no-legacy-token-secret: /, 'rename the account');
  });

  it('`kubectl debug --copy-to` with `--set-image chaperone=…` (the copy keeps the injector’s status): the injector puts its own sidecar back', async function () {
    const victim = await clients.core.createNamespacedPod({ namespace: ns, body: { metadata: { name: 'victim' }, spec: { containers: [{ name: 'dashboard', image: IMAGE }] } } });
    const copy = structuredClone(victim) as V1Pod & { status?: unknown };
    delete copy.status;
    copy.metadata = { name: 'victim-debug', labels: victim.metadata?.labels, annotations: victim.metadata?.annotations };
    delete copy.spec!.nodeName;
    for (const c of [...(copy.spec!.initContainers ?? []), ...copy.spec!.containers]) c.image = EVIL;
    const r = await sendAs(cp, edit, 'POST', podsPath(), { apiVersion: 'v1', kind: 'Pod', ...copy });
    if (r.status >= 400) return refused(r, /chaperone/, 'copy-to');
    const stored = JSON.parse(r.body) as V1Pod;
    assert.equal(sidecarOf(stored)!.image, installation.config().sidecarImage, 'the injector’s image, not hers');
  });

  it('a gated pod (schedulingGates) can change its scheduling, never its volumes, mounts or sidecar', async function () {
    const created = await sendAs(cp, edit, 'POST', podsPath(), { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'gated' }, spec: { schedulingGates: [{ name: 'redteam/hold' }], containers: [{ name: 'dashboard', image: IMAGE }] } });
    assert.equal(created.status, 201, created.message);
    const pod = JSON.parse(created.body) as V1Pod;
    const sidecarIndex = pod.spec!.initContainers!.findIndex((c) => c.name === 'chaperone');
    for (const [what, patch] of [
      ['a mount in the dashboard', [{ op: 'add', path: '/spec/containers/0/volumeMounts', value: [{ name: 'chaperone-upstream', mountPath: '/t' }] }]],
      ['a volume', [{ op: 'add', path: '/spec/volumes/-', value: { name: 'tok', projected: { sources: [{ serviceAccountToken: { path: 't' } }] } } }]],
      ['the sidecar image', [{ op: 'replace', path: `/spec/initContainers/${sidecarIndex}/image`, value: EVIL }]],
      ['nodeName', [{ op: 'add', path: '/spec/nodeName', value: 'attacker-node' }]],
    ] as const) {
      const r = await sendAs(cp, edit, 'PATCH', `${podsPath()}/gated`, patch, 'application/json-patch+json');
      assert.ok(r.status === 422 || r.status === 403, `${what}: HTTP ${r.status} ${r.message.slice(0, 300)}`);
    }
  });

  it('a user-namespaced pod (hostUsers: false) is injected as any other and cannot reach host access through it', async function () {
    const r = await sendAs(cp, edit, 'POST', `${podsPath()}?dryRun=All`, {
      apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'userns-' },
      spec: { hostUsers: false, shareProcessNamespace: true, containers: [{ name: 'dashboard', image: IMAGE }] },
    });
    refused(r, /shareProcessNamespace is true|share its process namespace/, 'hostUsers false and a shared process namespace');
  });
});
