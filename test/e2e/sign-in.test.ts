// Every sign-in method in a pod the injector injected, configured once by the platform team: the
// installation configuration (a Secret in the injector's namespace) holds an AuthenticationConfiguration
// with claim mappings and a private-CA issuer, and a pam_hook-style token webhook. A control plane of its
// own is given the same configuration, so the identity through the injected pod's sidecar can be
// compared with the one the API server itself gives for the same credential (a SelfSubjectReview each
// way). The sidecar reads the configuration from the API server and follows it; the injector checks it
// before a pod gets it. sidecar.yaml and the claim mappings are docs/authentication.md's worked
// example, read from the docs, so that the example cannot drift from what works.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { V1ClusterRole, V1Pod } from '@kubernetes/client-node';
import YAML from 'yaml';
import { createCA, issueCertificate } from '../../lib/pki.js';
import { caSetFromSecret } from '../../injector/certs/ca-secret.js';
import { SECRETS } from '../../injector/provision/names.js';
import { startInjector, type RunningInjector } from '../../injector/injector.js';
import { freePort, startControlPlane, type ControlPlane } from '../../local-cluster/control-plane.js';
import { adminClients, createServiceAccount, kubectl, mintServiceAccountToken, type AdminClients } from '../../local-cluster/kube.js';
import { createInjectedPod, createWebhookConfiguration, installInjector, startPodSidecar, type InjectorInstallation, type PodSidecar } from '../../local-cluster/provisioned.js';
import { waitFor } from '../../local-cluster/wait.js';
import { rawRequest, type RawResponse } from '../../local-cluster/sidecar.js';
import { authenticationConfigurationFor, startTestProvider, type TestProvider } from '../../local-cluster/identity/oidc-provider.js';
import { startPamHook, type PamHook } from '../../local-cluster/identity/pam-hook.js';
import { silentLog } from '../unit/injector/helpers.js';
import { docBlockNamed } from '../support/doc-blocks.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const SELF_SUBJECT_REVIEW = '/apis/authentication.k8s.io/v1/selfsubjectreviews';
const REVIEW_BODY = JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' });
const CONFIG_SECRET = 'chaperone-sidecar-config';
const TENANT_EXTRA = 'example.com/tenant';

interface UserInfo {
  username?: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

function userOf(response: RawResponse): UserInfo {
  assert.equal(response.status, 201, response.body);
  return (JSON.parse(response.body) as { status: { userInfo: UserInfo } }).status.userInfo;
}

/** The YAML block of docs/authentication.md whose first line is `# <name>`: the worked example, as documented. */
const documented = (name: string) => docBlockNamed('docs/authentication.md', 'yaml', name);

/**
 * The installation's AuthenticationConfiguration: the docs' example, its claim mappings as written,
 * pointed at the test's issuer (its private CA, its client), and one more issuer that nobody serves.
 */
async function authenticationConfiguration(issuer: TestProvider, caPem: string, deadIssuer: string, groupsPrefix: string): Promise<string> {
  const example = YAML.parse(await documented('authentication-config.yaml')) as { jwt: { claimMappings: { groups: { prefix: string } } }[] };
  const mappings = example.jwt[0]!.claimMappings;
  mappings.groups.prefix = groupsPrefix;
  return authenticationConfigurationFor(issuer, caPem, mappings, [{ issuer: { url: deadIssuer, audiences: ['nobody'] }, claimMappings: { username: { claim: 'sub', prefix: 'dead:' } } }]);
}

function installationSecret(files: Record<string, string>) {
  return { metadata: { name: CONFIG_SECRET }, stringData: files };
}

describe('sign-in in an injected pod: the installation configuration (issue 18)', function () {
  this.timeout(180_000);
  const oidcCa = createCA({ commonName: 'sign-in-test-private-issuer-ca' });
  let dir: string;
  let cp: ControlPlane;
  let clients: AdminClients;
  let issuer: TestProvider;
  let pamHook: PamHook;
  let deadIssuer: string;
  let installation: InjectorInstallation;
  let injector: RunningInjector;
  let namespace: string;
  let pod: V1Pod;
  let sidecar: PodSidecar;
  let files: Record<string, string>;

  const direct = async (token: string) => userOf(await rawRequest(`${cp.url}${SELF_SUBJECT_REVIEW}`, { method: 'POST', ca: cp.ca.certPem, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: REVIEW_BODY }));
  const throughRaw = (token: string) =>
    rawRequest(`${sidecar.url}${SELF_SUBJECT_REVIEW}`, { method: 'POST', ca: sidecar.dashboard.caPem, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: REVIEW_BODY });
  const through = async (token: string) => userOf(await throughRaw(token));
  const createPod = (name: string, ns = namespace) =>
    clients.core.createNamespacedPod({ namespace: ns, body: { metadata: { name }, spec: { containers: [{ name: 'dashboard', image: 'ghcr.io/example/dashboard:1' }] } } });
  const sidecarArgs = (p: V1Pod) => [...(p.spec!.initContainers ?? []), ...p.spec!.containers].find((c) => c.name === 'chaperone')!.args!;
  const metric = async (name: string) => {
    const text = await (await fetch(`${sidecar.opsUrl}/metrics`)).text();
    return text.split('\n').filter((line) => line.startsWith(name));
  };

  before(async function () {
    this.timeout(15 * 60_000);
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-sign-in-'));
    issuer = await startTestProvider(oidcCa, {
      alice: { claims: { email: 'alice@example.com', email_verified: true, groups: ['platform', 'developers'], tenant: 'acme' } },
    });
    pamHook = await startPamHook({ jdoe: { password: 'correct horse', uid: '1000', groups: ['jdoe', 'sudo'] } });
    deadIssuer = `https://127.0.0.1:${await freePort()}`;
    files = {
      'sidecar.yaml': await documented('sidecar.yaml'),
      'authentication-config.yaml': await authenticationConfiguration(issuer, oidcCa.certPem, deadIssuer, 'oidc:'),
      'token-webhook.kubeconfig': pamHook.kubeconfig(),
    };
    for (const [name, content] of Object.entries(files)) await writeFile(path.join(dir, name), content);
    cp = await startControlPlane({
      extraApiserverFlags: [
        `--authentication-config=${path.join(dir, 'authentication-config.yaml')}`,
        `--authentication-token-webhook-config-file=${path.join(dir, 'token-webhook.kubeconfig')}`,
        '--authentication-token-webhook-cache-ttl=0s',
      ],
    });
    clients = adminClients(cp);
    installation = await installInjector(cp, clients);
    await clients.core.createNamespacedSecret({ namespace: installation.namespace, body: installationSecret(files) });
    injector = await startInjector(installation.config(['--listen=127.0.0.1:0', '--webhook-hosts=127.0.0.1', `--impersonation-extras=${TENANT_EXTRA}`]), silentLog);
    await createWebhookConfiguration(installation, [`https://127.0.0.1:${injector.port}/mutate`]);
    namespace = await installation.createLabelledNamespace('sign-in');
    pod = await createInjectedPod(clients, namespace);
    sidecar = await startPodSidecar(cp, clients, pod);
    // The API server initialises its JWT authenticators in the background.
    const token = await issuer.idToken('alice');
    await waitFor('the API server to accept the issuer\'s tokens', async () => (await direct(token).catch(() => undefined)) !== undefined, 30_000, 200);
  });

  after(async function () {
    await sidecar?.stop();
    await injector?.stop();
    await installation?.cleanup();
    await cp?.stop();
    await Promise.all([issuer?.stop(), pamHook?.stop()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the injector names the installation configuration to the sidecar, which alone mounts the in-memory volume it writes it to', function () {
    assert.ok(sidecarArgs(pod).includes(`--installation-config=${installation.namespace}/${CONFIG_SECRET}`), sidecarArgs(pod).join(' '));
    const volume = pod.spec!.volumes!.find((v) => v.name === 'chaperone-installation');
    assert.deepEqual({ ...volume?.emptyDir }, { medium: 'Memory', sizeLimit: '4Mi' });
    const mounting = [...(pod.spec!.initContainers ?? []), ...pod.spec!.containers].filter((c) => (c.volumeMounts ?? []).some((m) => m.name === 'chaperone-installation'));
    assert.deepEqual(mounting.map((c) => c.name), ['chaperone']);
  });

  it('OIDC: username, groups and extra from claims, from an issuer with a private CA, as the API server itself maps them', async function () {
    const token = await issuer.idToken('alice');
    const theirs = await direct(token);
    const ours = await through(token);
    assert.deepEqual(ours, theirs);
    assert.equal(ours.username, 'alice@example.com');
    assert.deepEqual(ours.groups, ['oidc:platform', 'oidc:developers', 'system:authenticated']);
    assert.deepEqual(ours.extra?.[TENANT_EXTRA], ['acme']);
  });

  it('the token webhook (pam_hook): the groups and uid it answers, as the API server takes them', async function () {
    const token = (await pamHook.token('jdoe', 'correct horse'))!;
    const ours = await through(token);
    assert.deepEqual(ours, await direct(token));
    assert.equal(ours.username, 'jdoe');
    assert.deepEqual(ours.groups, ['jdoe', 'sudo', 'system:authenticated']);
  });

  it("the cluster's own TokenReview, switched on in the installation configuration: a service account's token, as the API server takes it", async function () {
    // The scoped account may then ask the cluster's TokenReview API (docs/authentication.md): the shipped component's role.
    const role = YAML.parse(await readFile(path.join(REPO, 'manifests/components/cluster-token-review/cluster-token-review-clusterrole.yaml'), 'utf8')) as V1ClusterRole;
    await clients.rbac.createClusterRole({ body: role });
    await clients.rbac.createClusterRoleBinding({
      body: {
        metadata: { name: `${role.metadata!.name!}-${namespace}` },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata!.name! },
        subjects: [{ kind: 'ServiceAccount', namespace, name: 'chaperone-impersonator' }],
      },
    });
    await createServiceAccount(clients, namespace, 'reporter');
    const token = await mintServiceAccountToken(clients, namespace, 'reporter');
    await clients.core.replaceNamespacedSecret({ name: CONFIG_SECRET, namespace: installation.namespace, body: installationSecret({ ...files, 'sidecar.yaml': `${files['sidecar.yaml']}clusterTokenReview: true\n` }) });
    let last = '';
    try {
      const ours = await waitFor('the sidecar to take cluster tokens', async () => {
        const response = await throughRaw(token);
        if (response.status !== 201) last = `${response.status} ${response.body}`;
        return response.status === 201 ? userOf(response) : undefined;
      }, 20_000, 250).catch((err: Error) => assert.fail(`${err.message}; the last answer: ${last}`));
      const theirs = await direct(token);
      assert.deepEqual({ username: ours.username, groups: ours.groups }, { username: theirs.username, groups: theirs.groups });
      assert.equal(ours.username, `system:serviceaccount:${namespace}:reporter`);
      // Constrained impersonation takes a service account by name alone: the API server gives it no
      // uid and no extras (docs/security-model.md); the sidecar's audit event says so too (the audit join checks it).
      assert.deepEqual([ours.uid, ours.extra], [undefined, undefined]);
      assert.ok(theirs.uid && theirs.extra?.['authentication.kubernetes.io/credential-id'], 'the token itself carries them');
    } finally {
      await clients.core.replaceNamespacedSecret({ name: CONFIG_SECRET, namespace: installation.namespace, body: installationSecret(files) });
      await waitFor('the sidecar to stop taking cluster tokens', async () => (await throughRaw(token)).status === 401, 20_000, 250);
    }
  });

  it("the guard lists come from the installation configuration too, and reach the running sidecar", async function () {
    const token = await issuer.idToken('alice');
    await clients.core.replaceNamespacedSecret({ name: CONFIG_SECRET, namespace: installation.namespace, body: installationSecret({ ...files, 'sidecar.yaml': `${files['sidecar.yaml']}guardDeny: [alice@example.com]\n` }) });
    try {
      const refused = await waitFor('the sidecar to refuse alice', async () => {
        const response = await throughRaw(token);
        return response.status === 403 ? response : undefined;
      }, 20_000, 250);
      assert.match((JSON.parse(refused.body) as { message: string }).message, /alice@example\.com/);
    } finally {
      await clients.core.replaceNamespacedSecret({ name: CONFIG_SECRET, namespace: installation.namespace, body: installationSecret(files) });
    }
    await waitFor('alice to be served again', async () => (await throughRaw(token)).status === 201, 20_000, 250);
  });

  it('an issuer nobody serves fails only its own tokens: the pod is ready, /readyz and /metrics say which method cannot authenticate, certificates work', async function () {
    const readyz = await fetch(`${sidecar.opsUrl}/readyz`);
    const body = await readyz.text();
    assert.equal(readyz.status, 200, body);
    assert.match(body, new RegExp(`\\[\\+\\]authenticators ok: x509, oidc \\(not able to authenticate: issuer ${deadIssuer}: .*\\), webhook\n`));
    assert.deepEqual(await metric('chaperone_authenticator_ready{method="oidc"}'), ['chaperone_authenticator_ready{method="oidc"} 0']);
    const identityCa = caSetFromSecret(await clients.core.readNamespacedSecret({ name: SECRETS.identityCa, namespace: installation.namespace })).active;
    const cert = issueCertificate(identityCa, { commonName: 'carol', organizations: ['support'], usage: 'client', validitySeconds: 600 });
    const response = await rawRequest(`${sidecar.url}${SELF_SUBJECT_REVIEW}`, { method: 'POST', ca: sidecar.dashboard.caPem, cert, headers: { 'content-type': 'application/json' }, body: REVIEW_BODY });
    assert.deepEqual(userOf(response), { username: 'carol', groups: ['support', 'system:authenticated'] });
    assert.deepEqual(await through(await issuer.idToken('alice')).then((u) => u.username), 'alice@example.com', "the live issuer's tokens still work");
  });

  it('a new version reaches the running sidecar without a restart; a bad one is refused, the one in use stays, and the injector names what is wrong', async function () {
    const token = await issuer.idToken('alice');
    const applied = async () => Number((await metric('chaperone_installation_config_changes_total{outcome="applied"}'))[0]?.split(' ')[1] ?? 0);
    const appliedBefore = await applied();
    const changed: Record<string, string> = { ...files, 'authentication-config.yaml': await authenticationConfiguration(issuer, oidcCa.certPem, deadIssuer, 'sso:') };
    await clients.core.replaceNamespacedSecret({ name: CONFIG_SECRET, namespace: installation.namespace, body: installationSecret(changed) });
    const groups = await waitFor('the sidecar to apply the new version', async () => {
      const user = await through(token);
      return user.groups?.[0]?.startsWith('sso:') ? user.groups : undefined;
    }, 20_000, 250);
    assert.deepEqual(groups, ['sso:platform', 'sso:developers', 'system:authenticated']);
    assert.ok((await applied()) > appliedBefore, 'counted as applied');

    // An installation configuration may not choose what the injector sets for each pod.
    const bad = { ...changed, 'sidecar.yaml': `${changed['sidecar.yaml']}upstream: https://attacker.example:443\n` };
    await clients.core.replaceNamespacedSecret({ name: CONFIG_SECRET, namespace: installation.namespace, body: installationSecret(bad) });
    await waitFor('the sidecar to refuse the bad version', async () => (await metric('chaperone_installation_config_changes_total{outcome="refused"}')).includes('chaperone_installation_config_changes_total{outcome="refused"} 1'), 20_000, 250);
    assert.deepEqual((await through(token)).groups?.[0], 'sso:platform', 'the version in use stays');
    // Said at once, where whoever wrote it looks (kubectl describe secret), not only when a pod arrives.
    const warning = await waitFor('the injector\'s Warning event on the Secret', async () => {
      const events = await clients.core.listNamespacedEvent({ namespace: installation.namespace, fieldSelector: `involvedObject.name=${CONFIG_SECRET},reason=InvalidSidecarConfig` });
      return events.items.find((event) => /sidecar\.yaml: upstream is not an installation setting/.test(event.message ?? ''));
    }, 20_000, 250);
    assert.equal(warning.type, 'Warning');
    await assert.rejects(createPod('after-bad-config'), (err: Error & { body?: string }) => {
      assert.match(String(err.body ?? err.message), /its sidecar would refuse the installation configuration.*sidecar\.yaml: upstream is not an installation setting/);
      return true;
    });
    await clients.core.replaceNamespacedSecret({ name: CONFIG_SECRET, namespace: installation.namespace, body: installationSecret(files) });
  });

  it('a namespace may name another installation configuration (cluster administrators only); one that does not exist is a denial naming it', async function () {
    const other = await installation.createLabelledNamespace('sign-in-other');
    await clients.core.patchNamespace({ name: other, body: [{ op: 'add', path: '/metadata/annotations', value: { 'chaperone.dev/sidecar-config': 'no-such-config' } }] });
    await waitFor('the default service account', () => clients.core.readNamespacedServiceAccount({ name: 'default', namespace: other }).then(() => true));
    const denial = await waitFor('the injector to judge pods there', async () => {
      const outcome = await createPod('dashboard', other).then(() => 'created', (err: Error & { body?: string }) => String(err.body ?? err.message));
      return /installation configuration/.test(outcome) ? outcome : undefined;
    }, 60_000, 1000);
    assert.match(denial, new RegExp(`chaperone.dev/sidecar-config names the installation configuration ${installation.namespace}/no-such-config, which does not exist`));
  });

  it("the scoped account may read its installation configuration and nothing else in the injector's namespace", async function () {
    const account = `system:serviceaccount:${namespace}:chaperone-impersonator`;
    const canI = async (args: string[]) => (await kubectl(cp.adminKubeconfig, ['auth', 'can-i', ...args, '-n', installation.namespace, '--as', account])).stdout.trim();
    assert.equal(await canI(['get', `secrets/${CONFIG_SECRET}`]), 'yes');
    assert.equal(await canI(['watch', `secrets/${CONFIG_SECRET}`]), 'yes');
    assert.equal(await canI(['get', `secrets/${SECRETS.identityCa}`]), 'no');
    assert.equal(await canI(['list', 'secrets']), 'no');
    assert.equal(await canI(['update', `secrets/${CONFIG_SECRET}`]), 'no');
  });
});
