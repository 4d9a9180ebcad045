// A third, independent red-team run on the containment of the scoped token and of what the sidecar
// trusts (issue 17, "an independent run of such attacks, with routes not listed here, finds none").
// Routes that neither docs/security-model.md's tables nor containment-red-team{,-2}.test.ts try, by
// attack class: pod writes read two ways (query parameters, subresources, annotations the kubelet
// reads), configuration a namespace user can write (Services, whose links become every container's
// environment; LimitRanges; look-alike objects; pod annotations for every sidecar option), RBAC and
// TokenRequest side doors (a narrow rolebindings role, dry runs, pretending to be a node, pods/binding),
// and the pod's own sidecar as a compromised dashboard or a `view` user sees it (its ops port, its logs
// at trace level, its serving key). Against the real API server with the shipped policies applied as
// they ship and the injector behind the shipped webhook configuration; each test asserts the SAFE
// outcome and the words of what refused it, and the API server's audit log is the judge at the end.
// No kubelet runs here: where a route needs one, the test plays the kubelet's part (the pod's own
// sidecar run on the files it mounts; the variables the kubelet would derive from Services).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { KubernetesObject, V1Container, V1Pod } from '@kubernetes/client-node';
import { issueCertificate, type CertificateAndKey } from '../../lib/pki.js';
import { envName, flagName } from '../../lib/config.js';
import { createLogger } from '../../lib/log.js';
import { decodeData } from '../../injector/provision/kube.js';
import { SECRETS } from '../../injector/provision/names.js';
import { POD_SETTINGS } from '../../injector/settings.js';
import { loadSidecarConfig, sidecarConfigSpec } from '../../lib/sidecar-config/options.js';
import { bindClusterRoleInNamespace, mintServiceAccountToken, readAuditEvents, userSubject, waitForCanI } from '../../local-cluster/kube.js';
import { startPodSidecar } from '../../local-cluster/provisioned.js';
import { mergePatch, injectedBaselineNamespace, sendAs, type ApiResponse } from '../support/containment.js';
import { rawRequest } from '../../local-cluster/sidecar.js';
import { serviceForVariable, serviceLinkEnv } from '../support/service-links.js';
import { assertAuditedAsSeen, type Attempt } from '../support/attempts.js';
import { ENV_ANNOTATION_PREFIX, MOUNT_ANNOTATION_PREFIX, startPresetWebhook } from '../support/preset-webhook.js';
import { withClusterLikeControlPlane, withInjector } from '../support/fixtures.js';

const SCOPED = 'chaperone-impersonator';
const IMAGE = 'ghcr.io/example/dashboard:1';
const EVIL = 'ghcr.io/attacker/steal:1';
const APPARMOR = 'container.apparmor.security.beta.kubernetes.io';
/** The node the test kubelet (startPodSidecar) speaks for. */
const TEST_NODE = 'chaperone-test-node';

/** The attackers: namespace roles, and roles of one permission each. */
const USERS = {
  edit: 'redteam3-edit',
  admin: 'redteam3-admin',
  debug: 'redteam3-debug',
  status: 'redteam3-status',
  limits: 'redteam3-limits',
  binder: 'redteam3-rolebindings',
  binding: 'redteam3-pods-binding',
  misc: 'redteam3-misc',
} as const;
type Who = keyof typeof USERS;

const NARROW: Partial<Record<Who, { apiGroups: string[]; resources: string[]; verbs: string[]; canI: string[] }>> = {
  debug: { apiGroups: [''], resources: ['pods/ephemeralcontainers'], verbs: ['patch', 'update'], canI: ['patch', 'pods', '--subresource=ephemeralcontainers'] },
  status: { apiGroups: [''], resources: ['pods/status'], verbs: ['patch', 'update'], canI: ['patch', 'pods', '--subresource=status'] },
  limits: { apiGroups: [''], resources: ['limitranges', 'resourcequotas'], verbs: ['get', 'list', 'create', 'update', 'patch', 'delete'], canI: ['create', 'limitranges'] },
  binder: { apiGroups: ['rbac.authorization.k8s.io'], resources: ['rolebindings'], verbs: ['get', 'list', 'create', 'update', 'patch'], canI: ['create', 'rolebindings.rbac.authorization.k8s.io'] },
  binding: { apiGroups: [''], resources: ['pods/binding'], verbs: ['create'], canI: ['create', 'pods', '--subresource=binding'] },
  misc: {
    apiGroups: ['', 'discovery.k8s.io', 'events.k8s.io', 'coordination.k8s.io'],
    resources: ['endpoints', 'endpointslices', 'events', 'leases', 'podtemplates'],
    verbs: ['get', 'list', 'create', 'update', 'patch', 'delete'],
    canI: ['create', 'leases.coordination.k8s.io'],
  },
};

const sidecarOf = (pod: V1Pod): V1Container | undefined => [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find((c) => c.name === 'chaperone');
const kebab = (key: string) => flagName(key).replace(/^--/, '');

describe('containment red team 3: routes not in the tables nor in red teams 1 and 2 (real API server, the shipped policies)', function () {
  this.timeout(120_000);
  const { cp, clients } = withClusterLikeControlPlane();
  const { installation } = withInjector({ cp, clients });
  let ns = '';
  const certs = {} as Record<Who, CertificateAndKey>;
  const attempts: Attempt[] = [];

  const podsPath = () => `/api/v1/namespaces/${ns}/pods`;
  const podPath = (name: string, sub = '') => `${podsPath()}/${name}${sub ? `/${sub}` : ''}`;
  async function as(who: Who, what: string, method: string, urlPath: string, body?: unknown, contentType?: string, headers?: Record<string, string>): Promise<ApiResponse> {
    const response = await sendAs(cp, certs[who], method, urlPath, body, contentType, headers);
    attempts.push({ what, by: USERS[who], auditID: response.auditID, status: response.status });
    return response;
  }
  const refused = (r: ApiResponse, words: RegExp, what: string) => {
    assert.ok(r.status >= 400 && r.status < 500, `${what}: HTTP ${r.status} ${r.message.slice(0, 400)}`);
    assert.match(r.message, words, `${what}: ${r.message.slice(0, 400)}`);
  };
  const created = (r: ApiResponse, what: string): KubernetesObject => {
    assert.ok(r.status === 200 || r.status === 201, `${what}: HTTP ${r.status} ${r.message.slice(0, 400)}`);
    return JSON.parse(r.body) as KubernetesObject;
  };
  const injectedPod = async (name: string, annotations: Record<string, string> = {}): Promise<V1Pod> => {
    const pod = await clients.core.createNamespacedPod({ namespace: ns, body: { metadata: { name, annotations }, spec: { containers: [{ name: 'dashboard', image: IMAGE }] } } });
    assert.equal(pod.spec?.serviceAccountName, SCOPED, `${name} is injected`);
    return pod;
  };

  before(async function () {
    this.timeout(15 * 60_000);
    ns = await injectedBaselineNamespace(installation, clients, 'redteam3');
    await bindClusterRoleInNamespace(clients, ns, 'edit', [userSubject(USERS.edit)]);
    await bindClusterRoleInNamespace(clients, ns, 'admin', [userSubject(USERS.admin)]);
    for (const [who, rule] of Object.entries(NARROW) as [Who, NonNullable<(typeof NARROW)[Who]>][]) {
      const name = `only-${who}`;
      await clients.rbac.createNamespacedRole({ namespace: ns, body: { metadata: { name }, rules: [{ apiGroups: rule.apiGroups, resources: rule.resources, verbs: rule.verbs }] } });
      await clients.rbac.createNamespacedRoleBinding({ namespace: ns, body: { metadata: { name }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name }, subjects: [userSubject(USERS[who])] } });
      await waitForCanI(cp, USERS[who], [...rule.canI, '-n', ns]);
    }
    await waitForCanI(cp, USERS.edit, ['create', 'pods', '-n', ns]);
    await waitForCanI(cp, USERS.admin, ['create', 'rolebindings', '-n', ns]);
    for (const who of Object.keys(USERS) as Who[]) certs[who] = issueCertificate(cp.ca, { commonName: USERS[who], usage: 'client', validitySeconds: 3600 });
  });

  describe('pod writes read two ways', function () {
    before(async function () {
      await injectedPod('victim');
      await injectedPod('classic', { 'chaperone.dev/sidecar-mode': 'classic' });
    });

    it('exec names the container twice, in capitals or percent-encoded: admission judges the container the API server connects to', async function () {
      const exec = (query: string) => `${podPath('victim', 'exec')}?${query}&command=cat&command=%2Fvar%2Frun%2Fsecrets%2Fchaperone%2Fupstream%2Ftoken&stdout=true`;
      const stream = { 'x-stream-protocol-version': 'v4.channel.k8s.io' };
      refused(await as('edit', 'exec, chaperone named first of two', 'POST', exec('container=chaperone&container=dashboard'), undefined, undefined, stream), /chaperone rule no-exec-into-sidecar: /, 'chaperone first');
      refused(await as('edit', 'exec, chaperone percent-encoded', 'POST', exec('container=%63haperone'), undefined, undefined, stream), /chaperone rule no-exec-into-sidecar: /, 'percent-encoded');
      // The API server reads the first value (its query conversion), as admission did: the dashboard.
      refused(await as('edit', 'exec, dashboard named first of two', 'POST', exec('container=dashboard&container=chaperone'), undefined, undefined, stream), /pod victim does not have a host assigned/, 'dashboard first: past admission, to the dashboard');
      refused(await as('edit', 'exec, CHAPERONE', 'POST', exec('container=CHAPERONE'), undefined, undefined, stream), /container CHAPERONE is not valid for pod victim/, 'another letter case is another (no) container');
    });

    it('exec and attach without a container in a classic-mode pod (the sidecar an ordinary container): the API server never picks one', async function () {
      for (const sub of ['exec', 'attach']) {
        const r = await as('edit', `${sub} without a container, classic mode`, 'POST', `${podPath('classic', sub)}?command=sh&stdout=true`, undefined, undefined, { 'x-stream-protocol-version': 'v4.channel.k8s.io' });
        refused(r, /a container name must be specified for pod classic, choose one of: \[dashboard chaperone\]/, `${sub} without a container`);
      }
    });

    it('a debug container with the netadmin profile (NET_ADMIN, NET_RAW: it could redirect the sidecar’s connections in the pod’s network): refused by the injector', async function () {
      const r = await as('debug', 'debug container, netadmin profile', 'PATCH', podPath('victim', 'ephemeralcontainers'), {
        spec: { ephemeralContainers: [{ name: 'netadmin', image: EVIL, securityContext: { capabilities: { add: ['NET_ADMIN', 'NET_RAW'] } } }] },
      }, 'application/strategic-merge-patch+json');
      refused(r, /chaperone refuses this ephemeral container: ephemeral container netadmin adds capabilities NET_ADMIN, NET_RAW, beyond Pod Security baseline's/, 'netadmin');
    });

    it('a debug container changed in place (same name, now mounting the token; the injector and the policy judge only new names): the API server refuses the change', async function () {
      const add = await as('debug', 'a harmless debug container', 'PATCH', podPath('victim', 'ephemeralcontainers'), { spec: { ephemeralContainers: [{ name: 'harmless', image: EVIL }] } }, 'application/strategic-merge-patch+json');
      assert.equal(add.status, 200, add.message);
      const pod = JSON.parse(add.body) as V1Pod;
      const changed = structuredClone(pod);
      changed.spec!.ephemeralContainers![0]!.volumeMounts = [{ name: 'chaperone-upstream', mountPath: '/var/run/secrets/chaperone/upstream' }];
      const put = await as('debug', 'the same debug container, now mounting the token (PUT)', 'PUT', podPath('victim', 'ephemeralcontainers'), changed);
      refused(put, /spec\.ephemeralContainers: Forbidden: existing ephemeral containers "harmless" may not be changed/, 'PUT');
      const patch = await as('debug', 'the same debug container, now mounting the token (JSON patch)', 'PATCH', podPath('victim', 'ephemeralcontainers'), [
        { op: 'add', path: '/spec/ephemeralContainers/0/volumeMounts', value: [{ name: 'chaperone-upstream', mountPath: '/t' }] },
      ], 'application/json-patch+json');
      refused(patch, /existing ephemeral containers "harmless" may not be changed/, 'JSON patch');
      const stored = await clients.core.readNamespacedPod({ name: 'victim', namespace: ns });
      assert.deepEqual(stored.spec!.ephemeralContainers!.map((c) => c.volumeMounts ?? []), [[]]);
    });

    it('the token volume as a block device (volumeDevices), in a debug container or the dashboard: refused', async function () {
      const debug = await as('debug', 'debug container, volumeDevices chaperone-upstream', 'PATCH', podPath('victim', 'ephemeralcontainers'), {
        spec: { ephemeralContainers: [{ name: 'blockdev', image: EVIL, volumeDevices: [{ name: 'chaperone-upstream', devicePath: '/dev/token' }] }] },
      }, 'application/strategic-merge-patch+json');
      refused(debug, /volumeDevices\[0\]\.name: Invalid value: "chaperone-upstream": can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode/, 'debug container');
      const dashboard = await as('edit', 'dashboard, volumeDevices chaperone-upstream', 'POST', podsPath(), {
        apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'blockdev-' },
        spec: { containers: [{ name: 'dashboard', image: IMAGE, volumeDevices: [{ name: 'chaperone-upstream', devicePath: '/dev/token' }] }] },
      });
      // The injector judges mounts; the API server's validation refuses the device of a projected volume.
      refused(dashboard, /volumeDevices\[0\]\.name: Invalid value: "chaperone-upstream": can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode/, 'dashboard');
      const stored = await clients.core.readNamespacedPod({ name: 'victim', namespace: ns });
      assert.ok(!(stored.spec?.ephemeralContainers ?? []).some((c) => c.name === 'blockdev'), 'the debug container was not stored');
    });

    it('an AppArmor annotation added to a running injected pod (the kubelet reads it when the dashboard restarts), by update or through pods/status: refused by the API server', async function () {
      const body = { metadata: { annotations: { [`${APPARMOR}/dashboard`]: 'unconfined' } } };
      refused(await as('edit', 'AppArmor annotation by update', 'PATCH', podPath('victim'), body, 'application/merge-patch+json'), /may not add AppArmor annotations/, 'update');
      refused(await as('status', 'AppArmor annotation through pods/status', 'PATCH', podPath('victim', 'status'), body, 'application/merge-patch+json'), /may not add AppArmor annotations/, 'pods/status');
      const stored = await clients.core.readNamespacedPod({ name: 'victim', namespace: ns });
      assert.equal(stored.metadata?.annotations?.[`${APPARMOR}/dashboard`], undefined);
    });

    it('an AppArmor annotation set in advance for a debug container added later: refused', async function () {
      const name = 'unconfined';
      const annotate = await as('edit', 'AppArmor annotation for a debug container to come', 'PATCH', podPath('victim'), { metadata: { annotations: { [`${APPARMOR}/${name}`]: 'unconfined' } } }, 'application/merge-patch+json');
      refused(annotate, /may not add AppArmor annotations/, 'annotation first');
      const debug = await as('debug', 'debug container under that name', 'PATCH', podPath('victim', 'ephemeralcontainers'), { spec: { ephemeralContainers: [{ name, image: EVIL }] } }, 'application/strategic-merge-patch+json');
      assert.equal(debug.status, 200, `a plain debug container is allowed: ${debug.message}`);
      const stored = await clients.core.readNamespacedPod({ name: 'victim', namespace: ns });
      assert.equal(stored.metadata?.annotations?.[`${APPARMOR}/${name}`], undefined, 'it runs confined');
    });

    it('pods/proxy (in edit) to the sidecar’s proxy port: it listens on loopback alone, and the API server never proxies to a loopback address, even when a status writer says the pod has one', async function () {
      await injectedPod('proxied');
      const running = { status: { phase: 'Running', podIP: '127.0.0.1', podIPs: [{ ip: '127.0.0.1' }] } };
      await clients.core.patchNamespacedPodStatus({ name: 'proxied', namespace: ns, body: running }, mergePatch());
      for (const port of [6443, 9901]) {
        const r = await as('edit', `pods/proxy to port ${port} of a pod whose IP reads 127.0.0.1`, 'GET', `${podsPath()}/https:proxied:${port}/proxy/api/v1/namespaces/${ns}/secrets`);
        refused(r, /address not allowed/, `port ${port}`);
      }
    });
  });

  describe('configuration a namespace user can write', function () {
    it('pod annotations for every sidecar option that is not a per-pod setting: refused by the injector, each named', async function () {
      const perPod = new Set(Object.keys(POD_SETTINGS));
      const names = Object.keys(sidecarConfigSpec.options).map(kebab).filter((name) => !perPod.has(name));
      const annotations = Object.fromEntries(names.map((name) => [`chaperone.dev/${name}`, name === 'upstream' ? 'https://evil.example.com' : 'true']));
      const r = await as('edit', 'pod annotations for every sidecar option', 'POST', `${podsPath()}?dryRun=All`, { apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'options-', annotations }, spec: { containers: [{ name: 'dashboard', image: IMAGE }] } });
      assert.equal(r.status, 400, r.message.slice(0, 300));
      for (const name of names) assert.match(r.message, new RegExp(`annotation chaperone\\.dev/${name}: (not a chaperone setting|what the sidecar runs or trusts is not a pod's to choose)`), name);
    });

    it('Services named after every sidecar option (their links become the sidecar’s environment): no variable sets an option, and the sidecar’s configuration is unchanged', async function () {
      const options = Object.keys(sidecarConfigSpec.options);
      // No Service name can give a variable that names an option (or the config file): the kubelet's shapes end otherwise.
      for (const variable of [...options.map(envName), 'CHAPERONE_CONFIG']) assert.equal(serviceForVariable(variable), undefined, `a Service could set ${variable}`);
      const names = new Set(['chaperone', 'chaperone-config', 'kubernetes', 'node', ...options.map((key) => `chaperone-${kebab(key)}`).filter((name) => name.length <= 63)]);
      for (const name of names) {
        created(await as('edit', `Service ${name}`, 'POST', `/api/v1/namespaces/${ns}/services`, {
          apiVersion: 'v1', kind: 'Service', metadata: { name },
          spec: { ports: [{ name: 'https', port: 443 }, { name: 'anonymous', port: 1 }, { name: 'config', port: 2 }] },
        }), `Service ${name}`);
      }
      const pod = await injectedPod('linked');
      const sidecar = sidecarOf(pod)!;
      assert.ok(!(sidecar.args ?? []).some((arg) => arg.includes('$(')), 'no $(VAR) in the args for the kubelet to expand from the links');
      const links = serviceLinkEnv((await clients.core.listNamespacedService({ namespace: ns })).items);
      assert.ok(Object.keys(links).some((name) => name.startsWith('CHAPERONE_ANONYMOUS_')), 'the links exist');
      const fields = { CHAPERONE_POD_NAME: 'linked', CHAPERONE_POD_NAMESPACE: ns };
      const without = loadSidecarConfig(sidecar.args ?? [], fields);
      const withLinks = loadSidecarConfig(sidecar.args ?? [], { ...links, ...fields });
      assert.deepEqual(withLinks, without);
    });

    it('a LimitRange (a role of limitranges alone) changes no sidecar: its defaults stop at the dashboard, and a maximum refuses the pod instead', async function () {
      const before = sidecarOf(await injectedPod('before-limits'))!;
      const limits = `/api/v1/namespaces/${ns}/limitranges`;
      created(await as('limits', 'LimitRange with defaults', 'POST', limits, {
        apiVersion: 'v1', kind: 'LimitRange', metadata: { name: 'defaults' },
        spec: { limits: [{ type: 'Container', default: { cpu: '1m', memory: '4Mi' }, defaultRequest: { cpu: '1m', memory: '4Mi' } }] },
      }), 'defaults');
      const defaulted = await injectedPod('after-limits');
      assert.deepEqual(sidecarOf(defaulted)!.resources, before.resources, "the injector's resources");
      assert.deepEqual({ ...sidecarOf(defaulted)!, resources: undefined }, { ...before, resources: undefined }, 'the same sidecar');
      assert.equal(defaulted.spec!.containers.find((c) => c.name === 'dashboard')!.resources?.limits?.memory, '4Mi', 'the dashboard got the defaults');
      created(await as('limits', 'LimitRange with a maximum below the sidecar', 'POST', limits, {
        apiVersion: 'v1', kind: 'LimitRange', metadata: { name: 'maximum' }, spec: { limits: [{ type: 'Container', max: { memory: '8Mi' } }] },
      }), 'maximum');
      const r = await as('edit', 'a pod under the maximum', 'POST', `${podsPath()}?dryRun=All`, { apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'max-' }, spec: { containers: [{ name: 'dashboard', image: IMAGE }] } });
      refused(r, /maximum memory usage per Container is 8Mi/, 'an availability refusal, not a changed sidecar');
      await clients.core.deleteCollectionNamespacedLimitRange({ namespace: ns });
    });

    it('a ConfigMap and a Secret carrying the injector’s labels under other names: the injector mounts its own by name, untouched', async function () {
      const [cm, secret] = await Promise.all([
        clients.core.readNamespacedConfigMap({ name: 'chaperone-ca', namespace: ns }),
        clients.core.readNamespacedSecret({ name: 'chaperone-serving', namespace: ns }),
      ]);
      const hers = issueCertificate(cp.ca, { commonName: 'her-ca', usage: 'client', validitySeconds: 600 });
      for (const [kind, plural, name, data] of [
        ['ConfigMap', 'configmaps', 'chaperone-ca-2', { 'identity-ca.crt': hers.certPem }],
        ['Secret', 'secrets', 'chaperone-serving-2', { 'tls.crt': Buffer.from(hers.certPem).toString('base64'), 'tls.key': Buffer.from(hers.keyPem).toString('base64') }],
      ] as const) {
        const labels = (kind === 'ConfigMap' ? cm : secret).metadata?.labels;
        created(await as('edit', `${kind} ${name} with the injector's labels`, 'POST', `/api/v1/namespaces/${ns}/${plural}`, { apiVersion: 'v1', kind, metadata: { name, labels }, data }), name);
      }
      const pod = await injectedPod('lookalike');
      const referenced = (pod.spec?.volumes ?? []).flatMap((v) => [v.configMap?.name, v.secret?.secretName, ...(v.projected?.sources ?? []).map((s) => s.configMap?.name)]).filter((n) => n !== undefined);
      assert.deepEqual([...new Set(referenced)].sort(), ['chaperone-ca', 'chaperone-serving']);
      assert.deepEqual((await clients.core.readNamespacedConfigMap({ name: 'chaperone-ca', namespace: ns })).data, cm.data, 'chaperone-ca unchanged');
    });

    it('Endpoints and an EndpointSlice for a Service named kubernetes, an Event and a Lease in the injector’s name, a PodTemplate with a chaperone container (a role of these alone): no sidecar changes', async function () {
      const before = sidecarOf(await injectedPod('before-misc'))!;
      const objects: [string, Record<string, unknown>][] = [
        [`/api/v1/namespaces/${ns}/endpoints`, { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'kubernetes' }, subsets: [{ addresses: [{ ip: '10.66.6.6' }], ports: [{ name: 'https', port: 443 }] }] }],
        [`/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`, {
          apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'kubernetes-evil', labels: { 'kubernetes.io/service-name': 'kubernetes' } },
          addressType: 'IPv4', endpoints: [{ addresses: ['10.66.6.6'] }], ports: [{ name: 'https', port: 443, protocol: 'TCP' }],
        }],
        [`/apis/events.k8s.io/v1/namespaces/${ns}/events`, {
          apiVersion: 'events.k8s.io/v1', kind: 'Event', metadata: { generateName: 'chaperone-' }, eventTime: new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z'), action: 'Inject', reason: 'Injected',
          reportingController: 'chaperone.dev/injector', reportingInstance: 'chaperone-injector', regarding: { apiVersion: 'v1', kind: 'Pod', name: 'before-misc', namespace: ns }, note: 'sidecar image ghcr.io/attacker/steal:1', type: 'Normal',
        }],
        [`/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`, { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'chaperone-injector' }, spec: { holderIdentity: 'evil', leaseDurationSeconds: 3600 } }],
        [`/api/v1/namespaces/${ns}/podtemplates`, { apiVersion: 'v1', kind: 'PodTemplate', metadata: { name: 'chaperone' }, template: { spec: { containers: [{ name: 'chaperone', image: EVIL, args: ['--anonymous'] }] } } }],
      ];
      for (const [url, body] of objects) created(await as('misc', `${body.kind as string} of hers`, 'POST', url, body), body.kind as string);
      const after = sidecarOf(await injectedPod('after-misc'))!;
      assert.deepEqual(after, before, 'the same sidecar: the injector reads none of these, and the sidecar’s upstream is pinned');
    });

    for (const [runs, policy] of [['after', 'Never'], ['before', 'IfNeeded']] as const) {
      it(`another mutating webhook ${runs} the injector (reinvocationPolicy ${policy}), writing what a pod’s annotations say into every container: the injector has the last word on its sidecar, and refuses the token in the dashboard`, async function () {
        // After it, with IfNeeded, the other webhook has the last word: containment-red-team-3-open.test.ts.
        const preset = await startPresetWebhook(installation.admission, installation.runLabel, policy, runs);
        try {
          const pod = async (name: string, annotations: Record<string, string>) =>
            as('edit', `another webhook's annotations (${runs}, ${policy}): ${name}`, 'POST', `${podsPath()}?dryRun=All`, { apiVersion: 'v1', kind: 'Pod', metadata: { name, annotations }, spec: { containers: [{ name: 'dashboard', image: IMAGE }] } });
          const env = await pod('preset-env', { [`${ENV_ANNOTATION_PREFIX}CHAPERONE_OIDC_ISSUER_URL`]: 'https://evil.example.com', [`${ENV_ANNOTATION_PREFIX}CHAPERONE_ANONYMOUS`]: 'true' });
          const stored = created(env, 'env') as V1Pod;
          assert.ok(stored.spec!.containers.find((c) => c.name === 'dashboard')!.env!.some((e) => e.name === 'CHAPERONE_ANONYMOUS'), 'the other webhook ran');
          assert.deepEqual(sidecarOf(stored)!.env!.map((e) => e.name), ['CHAPERONE_POD_NAME', 'CHAPERONE_POD_NAMESPACE'], "the injector's sidecar");
          refused(await pod('preset-mount', { [`${MOUNT_ANNOTATION_PREFIX}chaperone-upstream`]: '/stolen' }), /chaperone refuses this pod: container dashboard mounts volume chaperone-upstream/, 'the token in the dashboard');
        } finally {
          await preset.stop();
        }
      });
    }
  });

  describe('RBAC and TokenRequest side doors', function () {
    it('a role of rolebindings alone binds edit, admin or the impersonator role to chaperone-impersonator: RBAC refuses (she holds none of it)', async function () {
      const impersonator = (await clients.rbac.listClusterRoleBinding()).items.find((b) => (b.subjects ?? []).some((s) => s.kind === 'ServiceAccount' && s.name === SCOPED && s.namespace === ns))!.roleRef.name;
      for (const [kind, role] of [['ClusterRole', 'edit'], ['ClusterRole', 'admin'], ['ClusterRole', impersonator]] as const) {
        const r = await as('binder', `RoleBinding of ${role} to the scoped account`, 'POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
          apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { generateName: 'more-' },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind, name: role },
          subjects: [{ kind: 'ServiceAccount', name: SCOPED, namespace: ns }],
        });
        assert.equal(r.status, 403, `${role}: ${r.message.slice(0, 300)}`);
        assert.match(r.message, /is attempting to grant RBAC permissions not currently held/, role);
      }
    });

    it('a TokenRequest for chaperone-impersonator as a dry run (admission runs, nothing stored, but a token would come back): refused', async function () {
      const r = await as('edit', 'TokenRequest, dry run', 'POST', `/api/v1/namespaces/${ns}/serviceaccounts/${SCOPED}/token?dryRun=All`, { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences: [] } });
      refused(r, /chaperone rule token-request-by-node-only: redteam3-edit may not request a token of chaperone-impersonator/, 'dry run');
      assert.doesNotMatch(r.body, /"token":\s*"ey/, 'no token in the answer');
    });

    it('pretending to be the node that may ask (Impersonate-User system:node, Impersonate-Group system:nodes): RBAC refuses the impersonation', async function () {
      const r = await as('edit', 'TokenRequest as system:node:node-a', 'POST', `/api/v1/namespaces/${ns}/serviceaccounts/${SCOPED}/token`, { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences: [] } }, undefined, {
        'impersonate-user': 'system:node:node-a',
        'impersonate-group': 'system:nodes',
      });
      assert.equal(r.status, 403, r.message);
      assert.match(r.message, /cannot impersonate resource "users"/);
    });

    it('pods/binding puts an injected pod on a node of her choosing: the node, not she, would get the token', async function () {
      const pod = await injectedPod('bound');
      const bind = await as('binding', 'bind the pod to attacker-node', 'POST', podPath('bound', 'binding'), { apiVersion: 'v1', kind: 'Binding', metadata: { name: 'bound' }, target: { apiVersion: 'v1', kind: 'Node', name: 'attacker-node' } });
      assert.equal(bind.status, 201, `binding is that role's power: ${bind.message}`);
      const token = { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences: [], boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: 'bound', uid: pod.metadata!.uid! } } };
      const asBinder = await as('binding', 'TokenRequest bound to the pod she placed', 'POST', `/api/v1/namespaces/${ns}/serviceaccounts/${SCOPED}/token`, token);
      assert.equal(asBinder.status, 403, asBinder.message);
      refused(await as('edit', 'TokenRequest bound to the placed pod (edit)', 'POST', `/api/v1/namespaces/${ns}/serviceaccounts/${SCOPED}/token`, token), /chaperone rule token-request-by-node-only: /, 'edit');
    });
  });

  describe("the pod's own sidecar, as a compromised dashboard or a `view` user meets it", function () {
    let sidecar: Awaited<ReturnType<typeof startPodSidecar>>;
    let logFile = '';
    let pod: V1Pod;

    before(async function () {
      this.timeout(60_000);
      const annotated = await sendAs(cp, certs.edit, 'POST', podsPath(), { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'served', annotations: { 'chaperone.dev/log-level': 'trace' } }, spec: { nodeName: TEST_NODE, containers: [{ name: 'dashboard', image: IMAGE }] } });
      pod = created(annotated, 'a pod whose sidecar logs at trace (a pod author may ask for it)');
      assert.ok(sidecarOf(pod)!.args!.includes('--log-level=trace'));
      logFile = path.join(tmpdir(), `chaperone-redteam3-${randomBytes(4).toString('hex')}.log`);
      sidecar = await startPodSidecar(cp, clients, pod, 'chaperone', createLogger('sidecar', 'trace', logFile));
    });
    after(async function () {
      await sidecar?.stop();
      await rm(logFile, { force: true });
    });

    const secrets = async () => ({ scoped: (await readFile(path.join(sidecar.mounts.get('/var/run/secrets/chaperone/upstream')!, 'token'), 'utf8')).trim() });

    it("the serving key (readable by `edit`, mountable by any debug container) presented as a person's client certificate: refused", async function () {
      const serving = decodeData((await sendAs(cp, certs.edit, 'GET', `/api/v1/namespaces/${ns}/secrets/chaperone-serving`).then((r) => JSON.parse(r.body) as { data: Record<string, string> })).data);
      const r = await rawRequest(`${sidecar.url}/api/v1/namespaces/${ns}/secrets`, { ca: sidecar.dashboard.caPem, cert: { certPem: serving['tls.crt']!, keyPem: serving['tls.key']! } });
      assert.equal(r.status, 401, r.body);
    });

    it('a compromised dashboard binds the sidecar’s address (in the pod’s one network namespace) to take people’s requests in its place: the kernel refuses while the sidecar listens', async function () {
      const port = Number(new URL(sidecar.url).port);
      for (const options of [{ host: '127.0.0.1', port }, { host: '0.0.0.0', port }, { host: '127.0.0.1', port, reusePort: true }, { host: '0.0.0.0', port, exclusive: true }]) {
        const server = createServer();
        const outcome = await new Promise<string>((resolve) => {
          server.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
          server.listen(options, () => resolve('listening'));
        });
        if (outcome === 'listening') await new Promise((resolve) => server.close(resolve));
        assert.equal(outcome, 'EADDRINUSE', JSON.stringify(options));
      }
    });

    it('the ops port answers three paths to GET alone, and neither they nor the proxy’s answers carry a token, a key or a person’s credential', async function () {
      const personToken = await mintServiceAccountToken(clients, ns, 'default');
      const offered = Buffer.from(personToken).toString('base64url');
      await rawRequest(`${sidecar.url}/api/v1/namespaces/${ns}/pods`, { ca: sidecar.dashboard.caPem, headers: { authorization: `Bearer ${personToken}` } });
      await rawRequest(`${sidecar.url}/api/v1/namespaces/${ns}/pods?watch=true`, {
        ca: sidecar.dashboard.caPem,
        headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': randomBytes(16).toString('base64'), 'sec-websocket-protocol': `base64url.bearer.authorization.k8s.io.${offered}` },
      });
      const identity = decodeData((await clients.core.readNamespacedSecret({ name: SECRETS.identityCa, namespace: installation.namespace })).data);
      const alice = issueCertificate({ certPem: identity['ca.crt']!, keyPem: identity['ca.key']! }, { commonName: 'alice', usage: 'client', validitySeconds: 600 });
      await rawRequest(`${sidecar.url}/api/v1/namespaces/${ns}/configmaps`, { ca: sidecar.dashboard.caPem, cert: alice, headers: { authorization: `Bearer ${personToken}` } });
      for (const [method, urlPath, status] of [['GET', '/debug/pprof/', 404], ['GET', '/config', 404], ['GET', '/env', 404], ['POST', '/metrics', 405], ['PUT', '/readyz', 405], ['GET', '/metricsz', 404]] as const) {
        const r = await fetch(`${sidecar.opsUrl}${urlPath}`, { method });
        assert.equal(r.status, status, `${method} ${urlPath}`);
      }
      const { scoped } = await secrets();
      const serving = decodeData((await clients.core.readNamespacedSecret({ name: 'chaperone-serving', namespace: ns })).data)['tls.key']!;
      for (const urlPath of ['/metrics', '/readyz', '/healthz']) {
        const text = await (await fetch(`${sidecar.opsUrl}${urlPath}`)).text();
        for (const [what, secret] of [['the scoped token', scoped], ["a person's token", personToken], ["the person's token as offered", offered], ['the serving key', serving.split('\n')[1]!]] as const) {
          assert.ok(!text.includes(secret), `${urlPath} shows ${what}`);
        }
      }
    });

    it('its logs and audit events at trace level (what `view` reads with pods/log, and the termination message’s tail) hold no token: neither the scoped one nor a person’s', async function () {
      const personToken = await mintServiceAccountToken(clients, ns, 'default');
      const offered = Buffer.from(personToken).toString('base64url');
      for (const headers of [{ authorization: `Bearer ${personToken}` }, { authorization: `bearer  ${personToken} trailing` }, { 'x-remote-user': 'x', authorization: `Basic ${Buffer.from(`u:${personToken}`).toString('base64')}` }]) {
        await rawRequest(`${sidecar.url}/api/v1/namespaces/${ns}/secrets?fieldSelector=x`, { ca: sidecar.dashboard.caPem, headers });
      }
      await rawRequest(`${sidecar.url}/api/v1/namespaces/${ns}/pods/served/exec?container=dashboard&command=id&stdout=true`, {
        ca: sidecar.dashboard.caPem,
        headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': randomBytes(16).toString('base64'), 'sec-websocket-protocol': `v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.${offered}` },
      });
      await new Promise((resolve) => setTimeout(resolve, 500));
      const logs = `${await readFile(logFile, 'utf8').catch(() => '')}\n${await readFile(sidecar.auditLog, 'utf8')}`;
      assert.match(logs, /"auditID"/, 'the audit events are there');
      const { scoped } = await secrets();
      for (const [what, secret] of [['the scoped token', scoped], ["a person's token", personToken], ["a person's token as offered", offered], ['a JWT signature', personToken.split('.')[2]!]] as const) {
        assert.ok(!logs.includes(secret), `the sidecar's logs hold ${what}`);
      }
    });
  });

  describe('what ran', function () {
    it('the API server audited every attempt with the status the attacker saw, and ran nothing as the scoped account for any of them', async function () {
      await assertAuditedAsSeen(cp, attempts);
      const scoped = `system:serviceaccount:${ns}:${SCOPED}`;
      const asScoped = (await readAuditEvents(cp)).filter((e) => e.stage === 'ResponseComplete' && e.user.username === scoped);
      for (const event of asScoped) {
        // Its own calls: the reviews it asks, and /readyz, which its ops port's /readyz asks of the API server.
        const own = event.impersonatedUser === undefined && (event.objectRef?.resource === 'subjectaccessreviews' || (event.verb === 'get' && event.requestURI.startsWith('/readyz')));
        const forAlice = event.impersonatedUser?.username === 'alice';
        assert.ok(own || forAlice, `the scoped account ran ${event.verb} ${event.requestURI} as ${event.impersonatedUser?.username ?? 'itself'}`);
      }
      // The one token of the scoped account: the test kubelet's, as the node the served pod is bound to.
      const minted = (await readAuditEvents(cp)).filter((e) => e.stage === 'ResponseComplete' && e.objectRef?.subresource === 'token' && e.objectRef.name === SCOPED && (e.responseStatus?.code ?? 0) < 300);
      assert.deepEqual([...new Set(minted.map((e) => e.impersonatedUser?.username ?? e.user.username))], [`system:node:${TEST_NODE}`], 'nobody else got a token of the scoped account');
    });
  });
});
