// A fourth, independent red-team run, on what issue 18 added: the installation configuration (a Secret
// in the injector's namespace every injected sidecar reads with its scoped token, a Namespace
// annotation that may name another, the Role and RoleBinding that let each namespace's scoped account
// read it), readiness that no longer waits on issuers, and the token webhook's kubeconfig. Routes that
// neither docs/security-model.md's tables nor the red teams before try: reading or changing the
// installation configuration from a namespace, choosing it from a pod, pointing the Namespace
// annotation at the injector's own CA keys, Secret keys that climb out of the sidecar's directory,
// YAML bombs, an exec plugin run by the injector's check, an issuer nobody trusts or that never
// answers. Against the real API server with the shipped policies and the injector behind its webhook
// configuration; each test asserts the SAFE outcome and the words of what refused it, and the API
// server's audit log is the judge at the end.
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { SignJWT, importJWK, type JWK } from 'jose';
import YAML from 'yaml';
import { createCA, issueCertificate, type CertificateAndKey } from '../../lib/pki.js';
import { caSetFromSecret } from '../../injector/certs/ca-secret.js';
import { SECRETS } from '../../injector/provision/names.js';
import { bindClusterRoleInNamespace, kubectl, readAuditEvents, userSubject, waitForCanI } from '../../local-cluster/kube.js';
import { type PodSidecar, startPodSidecar } from '../../local-cluster/provisioned.js';
import { waitFor } from '../../local-cluster/wait.js';
import { injectedBaselineNamespace, sendAs, type ApiResponse } from '../support/containment.js';
import { rawRequest } from '../../local-cluster/sidecar.js';
import { createLogger } from '../../lib/log.js';
import { assertAuditedAsSeen, type Attempt } from '../support/attempts.js';
import { startRecordingServer, type RecordingServer } from '../support/recording-server.js';
import { authenticationConfigurationFor, startTestProvider, type TestProvider } from '../../local-cluster/identity/oidc-provider.js';
import { withClusterLikeControlPlane, withInjector } from '../support/fixtures.js';

const SCOPED = 'chaperone-impersonator';
const CONFIG = 'chaperone-sidecar-config';
const IMAGE = 'ghcr.io/example/dashboard:1';
/** The node the test kubelet (startPodSidecar) speaks for. */
const TEST_NODE = 'chaperone-test-node';
const SELF_SUBJECT_REVIEW = '/apis/authentication.k8s.io/v1/selfsubjectreviews';
const REVIEW_BODY = JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' });

const USERS = { view: 'redteam4-view', edit: 'redteam4-edit', admin: 'redteam4-admin', debug: 'redteam4-debug' } as const;
type Who = keyof typeof USERS;

const usernameOf = (response: { body: string }): string => (JSON.parse(response.body) as { status: { userInfo: { username: string } } }).status.userInfo.username;
const sidecarOf = (pod: V1Pod): V1Container => [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find((c) => c.name === 'chaperone')!;

/** Nine levels of nine: 9^9 strings once expanded (the "billion laughs"), a few hundred bytes as YAML. */
function yamlBomb(top: string): string {
  const lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (let i = 1; i < 9; i++) lines.push(`a${i}: &a${i} [${Array.from({ length: 9 }, () => `*a${i - 1}`).join(',')}]`);
  lines.push(`${top}: *a8`);
  return `${lines.join('\n')}\n`;
}

describe('red team 4: the installation configuration, readiness and the webhook kubeconfig (real API server, the shipped policies)', function () {
  this.timeout(120_000);
  const oidcCa = createCA({ commonName: 'redteam4-trusted-issuer-ca' });
  const { cp, clients } = withClusterLikeControlPlane();
  const { installation } = withInjector({ cp, clients });
  let ns = '';
  let issuer: TestProvider;
  let webhook: RecordingServer;
  let files: Record<string, string>;
  let victim: V1Pod;
  let sidecar: PodSidecar;
  const certs = {} as Record<Who, CertificateAndKey>;
  const attempts: Attempt[] = [];
  const cleanups: (() => Promise<unknown>)[] = [];

  const scopedAccount = (namespace: string) => `system:serviceaccount:${namespace}:${SCOPED}`;
  const secretsPath = () => `/api/v1/namespaces/${installation.namespace}/secrets`;
  async function as(who: Who, what: string, method: string, urlPath: string, body?: unknown, contentType = 'application/json'): Promise<ApiResponse> {
    const response = await sendAs(cp, certs[who], method, urlPath, body, contentType);
    attempts.push({ what, by: USERS[who], auditID: response.auditID, status: response.status });
    return response;
  }
  const refused = (r: ApiResponse, words: RegExp, what: string) => {
    assert.ok(r.status >= 400 && r.status < 500, `${what}: HTTP ${r.status} ${r.message.slice(0, 400)}`);
    assert.match(r.message, words, `${what}: ${r.message.slice(0, 600)}`);
  };
  const podBody = (name: string, extra: { annotations?: Record<string, string>; containers?: V1Container[] } = {}) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, ...(extra.annotations ? { annotations: extra.annotations } : {}) },
    spec: { containers: extra.containers ?? [{ name: 'dashboard', image: IMAGE }] },
  });
  const canI = async (account: string, args: string[], namespace = installation.namespace) =>
    (await kubectl(cp.adminKubeconfig, ['auth', 'can-i', ...args, '-n', namespace, '--as', account])).stdout.trim();
  const installationSecret = (content: Record<string, string>, name = CONFIG) => ({ metadata: { name }, stringData: content });
  /** Replaces the installation configuration and waits until the injector judges the new version (a dry-run pod as the cluster admin). */
  const useConfiguration = async (content: Record<string, string>, namespace = ns): Promise<string> => {
    const replaced = await clients.core.replaceNamespacedSecret({ name: CONFIG, namespace: installation.namespace, body: installationSecret(content) });
    void replaced;
    return clients.core.createNamespacedPod({ namespace, body: podBody(`probe-${randomBytes(3).toString('hex')}`), dryRun: 'All' }).then(
      () => 'admitted',
      (err: Error & { body?: string }) => String(err.body ?? err.message),
    );
  };
  const through = (token: string, to = sidecar) =>
    rawRequest(`${to.url}${SELF_SUBJECT_REVIEW}`, { method: 'POST', ca: to.dashboard.caPem, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: REVIEW_BODY });
  const metric = async (name: string, to = sidecar) => (await (await fetch(`${to.opsUrl}/metrics`)).text()).split('\n').filter((line) => line.startsWith(name));

  before(async function () {
    this.timeout(15 * 60_000);
    ns = await injectedBaselineNamespace(installation, clients, 'redteam4');
    issuer = await startTestProvider(oidcCa, { alice: { claims: { email: 'alice@example.com', email_verified: true } } });
    webhook = await startRecordingServer();
    files = {
      'sidecar.yaml': YAML.stringify({ authenticationConfig: 'authentication-config.yaml', authenticationTokenWebhookConfigFile: 'webhook.kubeconfig', authenticationTokenWebhookCacheUnauthorizedTtl: '0s' }),
      'authentication-config.yaml': authenticationConfigurationFor(issuer, oidcCa.certPem, { username: { claim: 'email', prefix: '' } }),
      'webhook.kubeconfig': webhook.kubeconfig(),
    };
    await clients.core.createNamespacedSecret({ namespace: installation.namespace, body: installationSecret(files) });
    await bindClusterRoleInNamespace(clients, ns, 'view', [userSubject(USERS.view)]);
    await bindClusterRoleInNamespace(clients, ns, 'edit', [userSubject(USERS.edit)]);
    await bindClusterRoleInNamespace(clients, ns, 'admin', [userSubject(USERS.admin)]);
    // One permission only: adding debug containers.
    const debugRole = { metadata: { name: 'only-debug' }, rules: [{ apiGroups: [''], resources: ['pods/ephemeralcontainers'], verbs: ['patch'] }] };
    await clients.rbac.createNamespacedRole({ namespace: ns, body: debugRole });
    await clients.rbac.createNamespacedRoleBinding({ namespace: ns, body: { metadata: { name: 'only-debug' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'only-debug' }, subjects: [userSubject(USERS.debug)] } });
    await waitForCanI(cp, USERS.debug, ['patch', 'pods', '--subresource=ephemeralcontainers', '-n', ns]);
    await waitForCanI(cp, USERS.edit, ['create', 'pods', '-n', ns]);
    await waitForCanI(cp, USERS.admin, ['create', 'rolebindings', '-n', ns]);
    await waitForCanI(cp, USERS.view, ['list', 'pods', '-n', ns]);
    for (const who of Object.keys(USERS) as Who[]) certs[who] = issueCertificate(cp.ca, { commonName: USERS[who], usage: 'client', validitySeconds: 3600 });
    // Bound to the node the test kubelet speaks for, which alone may get it a token of the scoped account.
    victim = await clients.core.createNamespacedPod({ namespace: ns, body: { ...podBody('victim'), spec: { nodeName: TEST_NODE, containers: [{ name: 'dashboard', image: IMAGE }] } } });
    assert.ok(sidecarOf(victim).args!.includes(`--installation-config=${installation.namespace}/${CONFIG}`), sidecarOf(victim).args!.join(' '));
    sidecar = await startPodSidecar(cp, clients, victim);
    const token = await issuer.idToken('alice');
    assert.equal(usernameOf(await through(token)), 'alice@example.com');
  });

  after(async function () {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    await sidecar?.stop();
    await Promise.all([issuer?.stop(), webhook?.stop()]);
  });

  describe('the installation configuration from a namespace', function () {
    it("view, edit and admin can neither read, list, watch nor write it, nor anything else in the injector's namespace", async function () {
      for (const who of ['view', 'edit', 'admin'] as const) {
        refused(await as(who, 'get the installation configuration', 'GET', `${secretsPath()}/${CONFIG}`), /secrets "chaperone-sidecar-config" is forbidden: User "redteam4-\w+" cannot get resource "secrets"/, `${who} get`);
        refused(await as(who, 'list Secrets by name', 'GET', `${secretsPath()}?fieldSelector=metadata.name%3D${CONFIG}`), /cannot list resource "secrets" in API group "" in the namespace/, `${who} list`);
        refused(await as(who, 'watch it', 'GET', `${secretsPath()}?watch=true&fieldSelector=metadata.name%3D${CONFIG}`), /cannot watch resource "secrets"/, `${who} watch`);
        refused(await as(who, 'patch it', 'PATCH', `${secretsPath()}/${CONFIG}`, { stringData: { 'sidecar.yaml': 'anonymous: true\n' } }, 'application/merge-patch+json'), /cannot patch resource "secrets"/, `${who} patch`);
        refused(await as(who, 'create another there', 'POST', secretsPath(), { metadata: { name: `${CONFIG}-${who}` }, stringData: { 'sidecar.yaml': 'anonymous: true\n' } }), /cannot create resource "secrets"/, `${who} create`);
        refused(
          await as(who, 'bind itself to the Role that reads it', 'POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${installation.namespace}/rolebindings`, {
            metadata: { name: `steal-${who}` },
            roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: `${installation.impersonatorRole}:${ns}` },
            subjects: [userSubject(USERS[who])],
          }),
          /cannot create resource "rolebindings"/,
          `${who} RoleBinding`,
        );
      }
    });

    it("edit and admin cannot annotate their own Namespace to name another configuration", async function () {
      for (const who of ['edit', 'admin'] as const) {
        const r = await as(who, 'annotate its Namespace with sidecar-config', 'PATCH', `/api/v1/namespaces/${ns}`, { metadata: { annotations: { 'chaperone.dev/sidecar-config': 'chaperone-identity-ca' } } }, 'application/merge-patch+json');
        refused(r, new RegExp(`namespaces "${ns}" is forbidden: User "redteam4-${who}" cannot patch resource "namespaces"`), who);
      }
    });

    it('a pod cannot choose it: by annotation, by its own chaperone container with other arguments, or by a Secret of that name in the namespace', async function () {
      refused(await as('edit', 'pod annotation sidecar-config', 'POST', `/api/v1/namespaces/${ns}/pods`, podBody('annotated', { annotations: { 'chaperone.dev/sidecar-config': 'chaperone-identity-ca' } })), /annotation chaperone\.dev\/sidecar-config: .*cluster administrators/i, 'annotation');
      refused(await as('edit', 'pod annotation installation-config', 'POST', `/api/v1/namespaces/${ns}/pods`, podBody('annotated2', { annotations: { 'chaperone.dev/installation-config': `${ns}/mine` } })), /annotation chaperone\.dev\/installation-config: not a chaperone setting/, 'not a setting');

      const mine = await as('edit', 'a Secret of the same name in the namespace', 'POST', `/api/v1/namespaces/${ns}/secrets`, { metadata: { name: CONFIG }, stringData: { 'sidecar.yaml': 'anonymous: true\n' } });
      assert.equal(mine.status, 201, mine.message);
      const ownSidecar = await as('edit', 'a pod bringing its own chaperone container naming its own configuration', 'POST', `/api/v1/namespaces/${ns}/pods`, podBody('own-sidecar', {
        containers: [
          { name: 'dashboard', image: IMAGE },
          { name: 'chaperone', image: IMAGE, args: [`--installation-config=${ns}/${CONFIG}`, '--installation-config-dir=/tmp', '--anonymous'] },
        ],
      }));
      refused(ownSidecar, /chaperone/, 'own chaperone container');
      assert.doesNotMatch(ownSidecar.message, /^pods "own-sidecar" is forbidden: User/, 'refused by chaperone, not by RBAC');

      const plain = await as('edit', 'an ordinary pod beside that Secret', 'POST', `/api/v1/namespaces/${ns}/pods`, podBody('beside-own-secret'));
      assert.equal(plain.status, 201, plain.message);
      const args = sidecarOf(JSON.parse(plain.body) as V1Pod).args!;
      assert.deepEqual(args.filter((arg) => arg.startsWith('--installation-config')), [`--installation-config=${installation.namespace}/${CONFIG}`, '--installation-config-dir=/var/run/chaperone/installation']);
      assert.ok(!args.includes('--anonymous'), args.join(' '));
    });

    it("Secret keys cannot climb out of the sidecar's directory: the API server refuses /, .. and ../ in keys, even from a cluster administrator", async function () {
      for (const key of ['../sidecar.yaml', 'a/b', '..', '.']) {
        await assert.rejects(
          clients.core.createNamespacedSecret({ namespace: installation.namespace, body: { metadata: { name: `climb-${randomBytes(3).toString('hex')}` }, stringData: { 'sidecar.yaml': 'anonymous: false\n', [key]: 'x' } } }),
          (err: Error & { code?: number; body?: string }) => {
            assert.equal(err.code, 422, String(err.body));
            assert.match(String(err.body), /a valid config key must consist of alphanumeric characters, '-', '_' or '.'|must not be '\.\.'|must not be '\.'/);
            return true;
          },
          key,
        );
      }
    });
    it("its copy in the pod (the chaperone-installation volume) is the sidecar's alone: the dashboard, a subPath and a debug container are refused", async function () {
      const mount = { name: 'chaperone-installation', mountPath: '/stolen', readOnly: true };
      const dashboard = await as('edit', 'a dashboard mounting chaperone-installation', 'POST', `/api/v1/namespaces/${ns}/pods`, podBody('reads-installation', { containers: [{ name: 'dashboard', image: IMAGE, volumeMounts: [mount] }] }));
      refused(dashboard, /chaperone refuses this pod: container dashboard mounts volume chaperone-installation, which holds a service-account token or what the sidecar trusts/, 'dashboard');
      const subPath = await as('edit', 'a dashboard mounting one file of it by subPath', 'POST', `/api/v1/namespaces/${ns}/pods`, podBody('reads-sidecar-yaml', { containers: [{ name: 'dashboard', image: IMAGE, volumeMounts: [{ ...mount, subPath: 'sidecar.yaml' }] }] }));
      refused(subPath, /chaperone refuses this pod: container dashboard mounts volume chaperone-installation/, 'subPath');
      const debug = await as('debug', 'a debug container mounting chaperone-installation', 'PATCH', `/api/v1/namespaces/${ns}/pods/victim/ephemeralcontainers`, { spec: { ephemeralContainers: [{ name: 'peek', image: IMAGE, volumeMounts: [mount] }] } }, 'application/strategic-merge-patch+json');
      refused(debug, /chaperone[^:]*: .*chaperone-installation/, 'debug container');
      const stored = await clients.core.readNamespacedPod({ name: 'victim', namespace: ns });
      assert.deepEqual(stored.spec!.ephemeralContainers ?? [], []);
    });
  });

  describe('the Namespace annotation and the Role it makes', function () {
    it("each namespace's Role reads its own configuration only: one namespace's scoped account cannot read another's", async function () {
      await clients.core.createNamespacedSecret({ namespace: installation.namespace, body: installationSecret({ 'sidecar.yaml': 'clusterTokenReview: true\n' }, 'redteam4-other-config') });
      const other = await installation.createLabelledNamespace('redteam4-other');
      await clients.core.patchNamespace({ name: other, body: [{ op: 'add', path: '/metadata/annotations', value: { 'chaperone.dev/sidecar-config': 'redteam4-other-config' } }] });
      await waitFor('the Role of the other namespace to name its Secret', async () => (await canI(scopedAccount(other), ['get', 'secrets/redteam4-other-config'])) === 'yes', 30_000, 250);
      assert.equal(await canI(scopedAccount(other), ['get', `secrets/${CONFIG}`]), 'no');
      assert.equal(await canI(scopedAccount(ns), ['get', 'secrets/redteam4-other-config']), 'no');
      assert.equal(await canI(scopedAccount(ns), ['list', 'secrets']), 'no');
      assert.equal(await canI(scopedAccount(ns), ['update', `roles/${installation.impersonatorRole}:${ns}`]), 'no');
    });

    it('a namespace of the longest name (63 characters) gets its Role and RoleBinding, and they name only it', async function () {
      const long = await installation.createLabelledNamespace(`redteam4-${'x'.repeat(63 - 'redteam4-'.length - 9)}`);
      assert.equal(long.length, 63);
      await waitFor('the long namespace\'s Role', async () => (await canI(scopedAccount(long), ['get', `secrets/${CONFIG}`])) === 'yes', 30_000, 250);
      const binding = await clients.rbac.readNamespacedRoleBinding({ name: `${installation.impersonatorRole}:${long}`, namespace: installation.namespace });
      assert.deepEqual(binding.subjects?.map((subject) => ({ ...subject })), [{ kind: 'ServiceAccount', name: SCOPED, namespace: long }]);
      assert.equal(await canI(scopedAccount(long), ['get', 'secrets/redteam4-other-config']), 'no');
    });
  });

  describe('hostile or broken configuration content', function () {
    afterEach(async function () {
      await clients.core.replaceNamespacedSecret({ name: CONFIG, namespace: installation.namespace, body: installationSecret(files) });
    });

    it('YAML bombs in sidecar.yaml, the AuthenticationConfiguration and the webhook kubeconfig: refused at once, naming the file; the injector then injects again', async function () {
      for (const [key, bomb] of [
        ['sidecar.yaml', yamlBomb('anonymous')],
        ['authentication-config.yaml', `apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\n${yamlBomb('jwt')}`],
        ['webhook.kubeconfig', yamlBomb('clusters')],
      ] as const) {
        const started = Date.now();
        const verdict = await useConfiguration({ ...files, [key]: bomb });
        assert.ok(Date.now() - started < 10_000, `${key}: ${Date.now() - started} ms`);
        assert.match(verdict, /(its sidecar would refuse the installation configuration|failed to inject this pod).*(alias|Excessive)/i, key);
      }
      assert.equal(await useConfiguration(files), 'admitted');
    });

    it('a running sidecar keeps the version in use when a bomb comes, and still follows: the next good version applies', async function () {
      await clients.core.replaceNamespacedSecret({ name: CONFIG, namespace: installation.namespace, body: installationSecret({ ...files, 'sidecar.yaml': yamlBomb('anonymous') }) });
      await new Promise((resolve) => setTimeout(resolve, 2000));
      const token = await issuer.idToken('alice');
      assert.equal(usernameOf(await through(token)), 'alice@example.com', 'the version in use stays');
      const next = { ...files, 'authentication-config.yaml': authenticationConfigurationFor(issuer, oidcCa.certPem, { username: { claim: 'email', prefix: 'after-bomb:' } }) };
      await clients.core.replaceNamespacedSecret({ name: CONFIG, namespace: installation.namespace, body: installationSecret(next) });
      const user = await waitFor('the sidecar to apply the good version after the bomb', async () => {
        const name = usernameOf(await through(token));
        return name.startsWith('after-bomb:') ? name : undefined;
      }, 20_000, 250);
      assert.equal(user, 'after-bomb:alice@example.com');
    });

    it('an exec plugin in the webhook kubeconfig is refused by the injector and by the running sidecar, and never runs', async function () {
      const dir = await mkdtemp(path.join(tmpdir(), 'redteam4-exec-'));
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      const marker = path.join(dir, 'ran');
      const plugin = path.join(dir, 'plugin.sh');
      await writeFile(plugin, `#!/bin/sh\ntouch ${marker}\necho '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"x"}}'\n`);
      await chmod(plugin, 0o755);
      const kubeconfig = webhook.kubeconfig({ exec: { apiVersion: 'client.authentication.k8s.io/v1', command: plugin, interactiveMode: 'Never' } });
      const refusedBefore = (await metric('chaperone_installation_config_changes_total{outcome="refused"}'))[0] ?? 'none';
      const verdict = await useConfiguration({ ...files, 'webhook.kubeconfig': kubeconfig });
      assert.match(verdict, /webhook\.kubeconfig: user\.exec: an installation configuration runs no credential plugin/);
      // The running sidecar refuses the version too (every sidecar would run the command), and keeps the one it has.
      await waitFor('the sidecar to refuse it', async () => ((await metric('chaperone_installation_config_changes_total{outcome="refused"}'))[0] ?? 'none') !== refusedBefore, 20_000, 250);
      await through(`opaque-${randomBytes(8).toString('hex')}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
      await assert.rejects(stat(marker), { code: 'ENOENT' }, 'the exec plugin ran');
      await useConfiguration(files);
    });

    it("a broken webhook kubeconfig holding a client key: the denial an edit user reads names the field, never the key or the token", async function () {
      const client = issueCertificate(createCA({ commonName: 'redteam4-webhook-client-ca' }), { commonName: 'sidecar', usage: 'client', validitySeconds: 600 });
      const secretToken = randomBytes(24).toString('hex');
      const kubeconfig = webhook.kubeconfig({
        token: secretToken,
        'client-certificate-data': Buffer.from(client.certPem).toString('base64'),
        'client-key-data': Buffer.from(client.keyPem).toString('base64'),
        username: 'both-token-and-basic',
      });
      await clients.core.replaceNamespacedSecret({ name: CONFIG, namespace: installation.namespace, body: installationSecret({ ...files, 'webhook.kubeconfig': kubeconfig }) });
      const r = await waitFor('the injector to judge the new version', async () => {
        const attempt = await as('edit', 'a pod under a broken installation configuration', 'POST', `/api/v1/namespaces/${ns}/pods`, podBody(`broken-${randomBytes(3).toString('hex')}`));
        return attempt.status >= 400 ? attempt : undefined;
      }, 20_000, 500);
      refused(r, /webhook\.kubeconfig: user: more than one authentication method/, 'broken kubeconfig');
      for (const secret of [secretToken, client.keyPem.split('\n')[1]!, Buffer.from(client.keyPem).toString('base64').slice(0, 40)]) assert.ok(!r.body.includes(secret), 'the denial quotes a credential');
    });
  });

  describe("the webhook's credentials, as `view` (pods/log) and a compromised dashboard (the ops port) meet the sidecar", function () {
    let traced: PodSidecar;
    let logFile = '';
    before(async function () {
      this.timeout(60_000);
      const r = await as('edit', 'a pod whose sidecar logs at trace', 'POST', `/api/v1/namespaces/${ns}/pods`, { ...podBody('traced', { annotations: { 'chaperone.dev/log-level': 'trace' } }), spec: { nodeName: TEST_NODE, containers: [{ name: 'dashboard', image: IMAGE }] } });
      assert.equal(r.status, 201, r.message);
      const pod = JSON.parse(r.body) as V1Pod;
      assert.ok(sidecarOf(pod).args!.includes('--log-level=trace'));
      logFile = path.join(tmpdir(), `chaperone-redteam4-${randomBytes(4).toString('hex')}.log`);
      traced = await startPodSidecar(cp, clients, pod, 'chaperone', createLogger('sidecar', 'trace', logFile));
    });
    after(async function () {
      await traced?.stop();
      await rm(logFile, { force: true });
      await clients.core.replaceNamespacedSecret({ name: CONFIG, namespace: installation.namespace, body: installationSecret(files) });
    });

    it("a version with the webhook's token and client key, applied, used and then replaced by a bad one: neither the logs at trace, the audit events nor the ops port hold them", async function () {
      const client = issueCertificate(createCA({ commonName: 'redteam4-webhook-client-ca' }), { commonName: 'sidecar', usage: 'client', validitySeconds: 600 });
      const webhookToken = randomBytes(24).toString('hex');
      const user = { token: webhookToken, 'client-certificate-data': Buffer.from(client.certPem).toString('base64'), 'client-key-data': Buffer.from(client.keyPem).toString('base64') };
      const applied = (await metric('chaperone_installation_config_changes_total{outcome="applied"}', traced))[0] ?? 'none';
      await clients.core.replaceNamespacedSecret({ name: CONFIG, namespace: installation.namespace, body: installationSecret({ ...files, 'webhook.kubeconfig': webhook.kubeconfig(user) }) });
      await waitFor('the traced sidecar to apply the version', async () => ((await metric('chaperone_installation_config_changes_total{outcome="applied"}', traced))[0] ?? 'none') !== applied, 20_000, 250);
      const seen = webhook.requests.length;
      const r = await through(`not-a-jwt-${randomBytes(8).toString('hex')}`, traced);
      assert.equal(r.status, 401, r.body);
      await waitFor('the webhook to be asked', () => Promise.resolve(webhook.requests.length > seen));
      assert.equal(webhook.requests.at(-1)!.headers.authorization, `Bearer ${webhookToken}`, 'the webhook got its own token');
      await clients.core.replaceNamespacedSecret({ name: CONFIG, namespace: installation.namespace, body: installationSecret({ ...files, 'webhook.kubeconfig': webhook.kubeconfig({ ...user, username: 'and-basic-auth' }) }) });
      await waitFor('the traced sidecar to refuse the bad version', async () => (await metric('chaperone_installation_config_changes_total{outcome="refused"}', traced)).length > 0 && !/ 0$/.test((await metric('chaperone_installation_config_changes_total{outcome="refused"}', traced))[0]!), 20_000, 250);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const logs = `${await readFile(logFile, 'utf8')}\n${await readFile(traced.auditLog, 'utf8')}`;
      assert.match(logs, /the new installation configuration is invalid: keeping the one in use/, "the sidecar's log is there, with the refusal");
      const ops = await Promise.all(['/metrics', '/readyz', '/healthz'].map(async (p) => (await fetch(`${traced.opsUrl}${p}`)).text()));
      for (const [what, secret] of [["the webhook's token", webhookToken], ["the webhook's client key", client.keyPem.split('\n')[1]!], ['the client key as the Secret holds it', user['client-key-data'].slice(8, 60)]] as const) {
        assert.ok(!logs.includes(secret), `the sidecar's logs hold ${what}`);
        for (const text of ops) assert.ok(!text.includes(secret), `the ops port shows ${what}`);
      }
    });
  });

  describe('issuers and webhooks the platform does not trust', function () {
    it('a token from an issuer nobody configured, with jku and x5u headers: refused (401), and nothing ever connects to that issuer', async function () {
      const attacker = await startRecordingServer();
      cleanups.push(() => attacker.stop());
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const key = await importJWK(privateKey.export({ format: 'jwk' }) as JWK, 'RS256');
      const sign = (iss: string) =>
        new SignJWT({ email: 'admin@example.com', email_verified: true, groups: ['system:masters'] })
          .setProtectedHeader({ alg: 'RS256', kid: 'evil', jku: `${attacker.url}/jwks`, x5u: `${attacker.url}/x5u` })
          .setIssuer(iss)
          .setSubject('admin')
          .setAudience('chaperone-test')
          .setIssuedAt()
          .setExpirationTime('10m')
          .sign(key);
      for (const iss of [attacker.url, issuer.issuer]) {
        const r = await through(await sign(iss));
        assert.equal(r.status, 401, `${iss}: ${r.body}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(attacker.connections, 0, `the sidecar connected to the untrusted issuer: ${JSON.stringify(attacker.requests.map((q) => q.path))}`);
      // The configured webhook saw those tokens (as the API server would send them to it), and never the scoped token.
      const scopedToken = (await readFile(path.join(sidecar.mounts.get('/var/run/secrets/chaperone/upstream')!, 'token'), 'utf8')).trim();
      assert.ok(webhook.requests.length > 0);
      for (const request of webhook.requests) assert.ok(!JSON.stringify(request).includes(scopedToken), 'the webhook was sent the scoped token');
    });

    it('an issuer that accepts connections and never answers: /readyz answers 200 at once, certificates and the live issuer still sign people in', async function () {
      const tarpit = await startRecordingServer({ tarpit: true });
      cleanups.push(() => tarpit.stop());
      const withTarpit = authenticationConfigurationFor(issuer, oidcCa.certPem, { username: { claim: 'email', prefix: '' } }, [
        { issuer: { url: tarpit.url, audiences: ['nobody'], certificateAuthority: tarpit.caPem }, claimMappings: { username: { claim: 'sub', prefix: 'tarpit:' } } },
      ]);
      const applied = (await metric('chaperone_installation_config_changes_total{outcome="applied"}'))[0] ?? 'none';
      await clients.core.replaceNamespacedSecret({ name: CONFIG, namespace: installation.namespace, body: installationSecret({ ...files, 'authentication-config.yaml': withTarpit }) });
      cleanups.push(() => clients.core.replaceNamespacedSecret({ name: CONFIG, namespace: installation.namespace, body: installationSecret(files) }));
      await waitFor('the sidecar to apply the version with the tarpit issuer', async () => ((await metric('chaperone_installation_config_changes_total{outcome="applied"}'))[0] ?? 'none') !== applied, 20_000, 250);
      await waitFor('the sidecar to connect to the tarpit', () => Promise.resolve(tarpit.connections > 0), 20_000, 250);
      const started = Date.now();
      const readyz = await fetch(`${sidecar.opsUrl}/readyz`, { signal: AbortSignal.timeout(5000) });
      assert.equal(readyz.status, 200, await readyz.text());
      assert.ok(Date.now() - started < 3000, `/readyz took ${Date.now() - started} ms`);
      const identityCa = caSetFromSecret(await clients.core.readNamespacedSecret({ name: SECRETS.identityCa, namespace: installation.namespace })).active;
      const cert = issueCertificate(identityCa, { commonName: 'carol', usage: 'client', validitySeconds: 600 });
      const byCert = await rawRequest(`${sidecar.url}${SELF_SUBJECT_REVIEW}`, { method: 'POST', ca: sidecar.dashboard.caPem, cert, headers: { 'content-type': 'application/json' }, body: REVIEW_BODY });
      assert.equal(byCert.status, 201, byCert.body);
      const byIssuer = await through(await issuer.idToken('alice'));
      assert.equal(usernameOf(byIssuer), 'alice@example.com');
    });
  });

  describe('what ran', function () {
    it('the API server audited every attempt with the status the attacker saw, and ran nothing as the scoped account but its own reads and alice', async function () {
      await assertAuditedAsSeen(cp, attempts);
      const events = (await readAuditEvents(cp)).filter((e) => e.stage === 'ResponseComplete' && e.user.username.endsWith(`:${SCOPED}`));
      for (const event of events) {
        const own =
          event.impersonatedUser === undefined &&
          (event.objectRef?.resource === 'subjectaccessreviews' ||
            (event.verb === 'get' && event.requestURI.startsWith('/readyz')) ||
            (event.objectRef?.resource === 'secrets' && event.objectRef.namespace === installation.namespace && event.objectRef.name === CONFIG && ['get', 'watch'].includes(event.verb)) ||
            (event.objectRef?.resource === 'secrets' && event.objectRef.namespace === installation.namespace && event.verb === 'watch' && event.requestURI.includes(`fieldSelector=metadata.name%3D${CONFIG}`)));
        // The people the tests signed in: alice (by the trusted issuer, under each version's prefix) and carol (by certificate).
        const forAlice = /^(after-bomb:)?alice@example\.com$|^carol$/.test(event.impersonatedUser?.username ?? '');
        assert.ok(own || forAlice, `the scoped account ran ${event.verb} ${event.requestURI} as ${event.impersonatedUser?.username ?? 'itself'}`);
      }
    });
  });
});
