// Labelling a namespace is all a person does: two injector controller replicas (each with a client
// and Lease identity of its own, running as the injector's service account with exactly the shipped
// RBAC) provision it; the real injector webhook injects a pod there; a sidecar started with exactly
// the files that pod mounts serves a person with a certificate from the identity CA; unlabelling
// removes everything again. The API server is real; only the kubelet is played by the test.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';
import { issueCertificate, isIssuedBy, splitPemCertificates, type CertificateAndKey } from '../../lib/pki.js';
import { createLogger } from '../../lib/log.js';
import { startInjector, type RunningInjector } from '../../injector/injector.js';
import type { Controller } from '../../injector/controller.js';
import { rotateCa } from '../../injector/rotate.js';
import { decodeData } from '../../injector/provision/kube.js';
import { PROVISIONED_BY_LABEL, SECRETS } from '../../injector/provision/names.js';
import type { ControlPlane } from '../../local-cluster/control-plane.js';
import {
  type AdminClients,
  adminClients,
  grantInNamespace,
} from '../../local-cluster/kube.js';
import { sharedControlPlane } from '../support/shared.js';
import { liveProvisioningStatus } from '../support/live-provisioning.js';
import { rawRequest } from '../../local-cluster/sidecar.js';
import { createWebhookConfiguration, installInjector, readCaBundles, startPodSidecar, type InjectorInstallation, type PodSidecar } from '../../local-cluster/provisioned.js';
import { waitFor } from '../../local-cluster/wait.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const run = promisify(execFile);

describe('namespace provisioning (two injector replicas, real API server)', function () {
  this.timeout(120_000);
  let cp: ControlPlane;
  let clients: AdminClients;
  let installation: InjectorInstallation;
  let replicas: Controller[];
  let injector: RunningInjector | undefined;
  let sidecar: PodSidecar | undefined;
  let team: string;
  let pod: V1Pod;

  const status = (namespace: string) => replicas.at(-1)!.provisioningStatus(namespace);
  const readSecretData = async (namespace: string, name: string) => decodeData((await clients.core.readNamespacedSecret({ name, namespace })).data);
  const caSecret = (name: string) => readSecretData(installation.namespace, name);
  const person = async (user: string, ca?: CertificateAndKey): Promise<CertificateAndKey> => {
    const secret = ca ? undefined : await caSecret(SECRETS.identityCa);
    const identity = ca ?? { certPem: secret!['ca.crt']!, keyPem: secret!['ca.key']! };
    return issueCertificate(identity, { commonName: user, organizations: ['team'], usage: 'client', validitySeconds: 600 });
  };
  const listPods = (cert?: CertificateAndKey, headers: Record<string, string> = {}) =>
    rawRequest(`${sidecar!.url}/api/v1/namespaces/${team}/pods`, { ca: sidecar!.dashboard.caPem, ...(cert ? { cert } : {}), headers });

  before(async function () {
    this.timeout(15 * 60_000);
    cp = await sharedControlPlane();
    clients = adminClients(cp);
    installation = await installInjector(cp, clients);
    const flags = ['--webhook-hosts=127.0.0.1', '--lease-duration=3s', '--resync-interval=2s', '--ca-propagation-delay=1s', '--ca-overlap=8s'];
    const certDir = path.join(installation.dir, 'tls');
    replicas = [installation.startReplica([...flags, `--webhook-cert-dir=${certDir}`]), installation.startReplica(flags)];
    await Promise.all(replicas.map((replica) => replica.ready()));
    // The webhook serves the files the first replica writes, and asks that replica about provisioning
    // (a process of its own would start a controller of its own: a third replica, as in test/e2e/injector.test.ts).
    const config = installation.config(['--listen=127.0.0.1:0', `--tls-cert-file=${certDir}/tls.crt`, `--tls-key-file=${certDir}/tls.key`]);
    injector = await startInjector(config, createLogger('injector', 'warn'), { controller: replicas[0]! });
    await createWebhookConfiguration(installation, [`https://127.0.0.1:${injector.port}/mutate`]);
    await waitFor('the caBundle', async () => (await readCaBundles(installation)).bundles[0] !== '');
  });

  after(async function () {
    await sidecar?.stop();
    await injector?.stop();
    await installation?.cleanup();
  });

  it('makes one replica the writer; both serve the same certificate', async function () {
    await waitFor('one leader', () => Promise.resolve(replicas.filter((r) => r.isLeader()).length === 1));
    assert.notEqual(replicas[0]!.identity, replicas[1]!.identity);
    const [a, b] = replicas.map((r) => r.currentCertificate()!);
    assert.equal(a!.certPem, b!.certPem);
    const bundle = (await readCaBundles(installation)).bundles[0]!;
    assert.ok(isIssuedBy(a!.certPem, splitPemCertificates(bundle)[0]!), "the webhook's caBundle verifies the certificate served");
  });

  it('provisions a labelled namespace within seconds', async function () {
    const started = Date.now();
    team = await installation.createLabelledNamespace('team');
    await waitFor('the namespace to be ready', async () => (await status(team)).ready, 10_000);
    const seconds = (Date.now() - started) / 1000;
    assert.ok(seconds < 10, `ready after ${seconds}s`);

    const account = await clients.core.readNamespacedServiceAccount({ name: 'chaperone-impersonator', namespace: team });
    assert.equal(account.automountServiceAccountToken, false, 'no pod gets its token unless it asks (the sidecar does)');
    assert.equal(account.metadata?.labels?.[PROVISIONED_BY_LABEL], installation.namespace);
    const rbacName = `${installation.impersonatorRole}:${team}`;
    const binding = await clients.rbac.readClusterRoleBinding({ name: rbacName });
    assert.deepEqual({ ...binding.roleRef }, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: rbacName });
    assert.deepEqual(binding.subjects?.map((s) => ({ ...s })), [{ kind: 'ServiceAccount', namespace: team, name: 'chaperone-impersonator' }]);
    const role = await clients.rbac.readClusterRole({ name: rbacName });
    assert.ok(role.rules?.some((r) => r.verbs.includes('impersonate:user-info')), 'constrained impersonation: this API server honours it');
    assert.ok(!role.rules?.some((r) => r.verbs.includes('impersonate')), 'and no classic impersonate verb');
    const configMap = await clients.core.readNamespacedConfigMap({ name: 'chaperone-ca', namespace: team });
    assert.equal(configMap.data?.['serving-ca.crt'], (await caSecret(SECRETS.servingCa))['bundle.crt']);
    assert.equal(configMap.data?.['identity-ca.crt'], (await caSecret(SECRETS.identityCa))['bundle.crt']);
    const serving = await clients.core.readNamespacedSecret({ name: 'chaperone-serving', namespace: team });
    assert.equal(serving.type, 'kubernetes.io/tls');
    assert.ok(isIssuedBy(decodeData(serving.data)['tls.crt']!, (await caSecret(SECRETS.servingCa))['ca.crt']!));
  });

  it('says what an unlabelled namespace lacks (the check the webhook makes)', async function () {
    const [key, value] = installation.runLabel;
    const plain = `plain-${Date.now().toString(36)}`;
    await clients.core.createNamespace({ body: { metadata: { name: plain, labels: { [key]: value } } } });
    try {
      const result = await status(plain);
      assert.equal(result.ready, false);
      assert.deepEqual(result.missing, [
        'ServiceAccount chaperone-impersonator',
        `ClusterRole ${installation.impersonatorRole}:${plain}`,
        `ClusterRoleBinding ${installation.impersonatorRole}:${plain}`,
        'ConfigMap chaperone-ca',
        'Secret chaperone-serving',
      ]);
    } finally {
      await clients.core.deleteNamespace({ name: plain });
    }
  });

  it("injects a pod there whose every reference resolves; its sidecar serves a person from the identity CA", async function () {
    await waitFor('the default service account', () => clients.core.readNamespacedServiceAccount({ name: 'default', namespace: team }).then(() => true));
    await clients.core.createNamespacedPod({ namespace: team, body: { metadata: { name: 'dashboard' }, spec: { containers: [{ name: 'dashboard', image: 'ghcr.io/example/dashboard:1' }] } } });
    pod = await clients.core.readNamespacedPod({ name: 'dashboard', namespace: team });
    assert.equal(pod.spec?.serviceAccountName, 'chaperone-impersonator', 'the webhook injected it');
    assert.ok(pod.spec?.initContainers?.some((c) => c.name === 'chaperone'));

    // Every volume of every container is written from the objects it names, or this throws.
    sidecar = await startPodSidecar(cp, clients, pod);
    assert.equal(sidecar.dashboard.namespace, team);
    await grantInNamespace(cp, clients, team, 'view', 'alice');

    const response = await listPods(await person('alice'));
    assert.equal(response.status, 200, response.body);
    const names = (JSON.parse(response.body) as { items: V1Pod[] }).items.map((p) => p.metadata?.name);
    assert.deepEqual(names, ['dashboard']);
  });

  it("refuses the sidecars' serving key as a person's certificate, and the dashboard's own token", async function () {
    const serving = await readSecretData(team, 'chaperone-serving');
    const asServingKey = await listPods({ certPem: serving['tls.crt']!, keyPem: serving['tls.key']! });
    assert.equal(asServingKey.status, 401, asServingKey.body);
    const asDashboard = await listPods(undefined, { authorization: `Bearer ${sidecar!.dashboard.token}` });
    assert.equal(asDashboard.status, 401, asDashboard.body);
  });

  it('rotates the identity CA (the function) with an overlap in which old and new certificates both work', async function () {
    const old = await caSecret(SECRETS.identityCa);
    const before = await person('alice');
    const result = await rotateCa({ core: clients.core, namespace: installation.namespace, kind: 'identity', propagationMs: 1000, validityMs: 24 * 3600_000 });
    assert.ok(result.started, result.message);
    const identityBundle = async () => splitPemCertificates((await clients.core.readNamespacedConfigMap({ name: 'chaperone-ca', namespace: team })).data?.['identity-ca.crt'] ?? '').length;
    await waitFor('both identity CAs in the ConfigMap', async () => (await identityBundle()) === 2);
    await waitFor('the new identity CA to sign', async () => (await caSecret(SECRETS.identityCa))['ca.crt'] !== old['ca.crt']);
    const after = await person('bob-new');
    await grantInNamespace(cp, clients, team, 'view', 'bob-new');
    await sidecar!.refresh();
    await waitFor('a certificate from the new CA to work', async () => (await listPods(after)).status === 200);
    assert.equal((await listPods(before)).status, 200, 'a certificate from the old CA still works during the overlap');

    await waitFor('the old identity CA to leave the ConfigMap', async () => (await identityBundle()) === 1, 15_000);
    await sidecar!.refresh();
    await waitFor('the old certificate to be refused', async () => (await listPods(before)).status === 401);
    assert.equal((await listPods(after)).status, 200);
  });

  it('rotates the serving CA (the command): the dashboard trusts the new serving certificate before it is served', async function () {
    const oldServing = (await readSecretData(team, 'chaperone-serving'))['tls.crt']!;
    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', 'cli/main.ts', 'rotate', 'serving', `--injector-namespace=${installation.namespace}`, '--ca-propagation-delay=2s'],
      { cwd: REPO, env: { PATH: process.env.PATH, KUBECONFIG: cp.adminKubeconfig } },
    );
    assert.match(stdout, /serving CA rotation started/);
    const servingBundle = async () => (await clients.core.readNamespacedConfigMap({ name: 'chaperone-ca', namespace: team })).data?.['serving-ca.crt'] ?? '';
    await waitFor('both serving CAs in the ConfigMap', async () => splitPemCertificates(await servingBundle()).length === 2);
    // What a dashboard reads while both are trusted.
    await sidecar!.refresh();
    const dashboardCa = sidecar!.dashboard.caPem;
    assert.equal(splitPemCertificates(dashboardCa).length, 2);
    const newServing = await waitFor('the serving certificate re-issued by the new CA', async () => {
      const cert = (await readSecretData(team, 'chaperone-serving'))['tls.crt']!;
      return cert !== oldServing ? cert : undefined;
    });
    const newCa = (await caSecret(SECRETS.servingCa))['ca.crt']!;
    assert.ok(isIssuedBy(newServing, newCa) && !isIssuedBy(oldServing, newCa));
    await sidecar!.refresh();
    const alice = await person('alice');
    await waitFor('the sidecar to serve the new certificate, trusted by the bundle the dashboard has', async () => {
      const response = await rawRequest(`${sidecar!.url}/api/v1/namespaces/${team}/pods`, { ca: dashboardCa, cert: alice });
      return response.status === 200;
    });
    await waitFor('the old serving CA to leave the ConfigMap', async () => splitPemCertificates(await servingBundle()).length === 1, 15_000);
  });

  it('puts back a piece someone deleted', async function () {
    await clients.core.deleteNamespacedConfigMap({ name: 'chaperone-ca', namespace: team });
    const live = liveProvisioningStatus(installation, clients);
    await waitFor('the ConfigMap back', async () => (await live(team)).ready, 10_000);
  });

  it('leaves alone, and reports, an object of the same name it did not create', async function () {
    const [key, value] = installation.runLabel;
    const other = `foreign-${Date.now().toString(36)}`;
    await clients.core.createNamespace({ body: { metadata: { name: other, labels: { [key]: value } } } });
    await clients.core.createNamespacedServiceAccount({ namespace: other, body: { metadata: { name: 'chaperone-impersonator' } } });
    try {
      await clients.core.patchNamespace({ name: other, body: { metadata: { labels: { 'chaperone.dev/inject': 'enabled' } } } }, mergePatch());
      await new Promise((resolve) => setTimeout(resolve, 3000));
      const result = await status(other);
      assert.equal(result.ready, false);
      assert.match(result.missing[0]!, /^ServiceAccount chaperone-impersonator \(exists, but this chaperone installation did not create it/);
      const account = await clients.core.readNamespacedServiceAccount({ name: 'chaperone-impersonator', namespace: other });
      assert.equal(account.metadata?.labels, undefined, 'untouched');
      const binding = await clients.rbac.readClusterRoleBinding({ name: `${installation.impersonatorRole}:${other}` }).catch(() => undefined);
      assert.equal(binding, undefined, 'not bound');
    } finally {
      await clients.core.deleteNamespace({ name: other });
    }
  });

  it('keeps provisioning when the writing replica stops: the other takes over', async function () {
    const leader = replicas.find((r) => r.isLeader())!;
    const follower = replicas.find((r) => r !== leader)!;
    await leader.stop();
    const second = await installation.createLabelledNamespace('second');
    await waitFor('the second namespace to be ready', async () => (await follower.provisioningStatus(second)).ready, 15_000);
    assert.ok(follower.isLeader());
    replicas = [follower];
  });

  it('removes what it created when the label is removed', async function () {
    await clients.core.patchNamespace({ name: team, body: { metadata: { labels: { 'chaperone.dev/inject': null } } } }, mergePatch());
    const gone = async () => {
      const result = await replicas[0]!.provisioningStatus(team);
      return result.missing.length === 5;
    };
    await waitFor('everything to be gone', gone, 10_000);
    const [accounts, configMaps, secrets] = await Promise.all([
      clients.core.listNamespacedServiceAccount({ namespace: team }),
      clients.core.listNamespacedConfigMap({ namespace: team }),
      clients.core.listNamespacedSecret({ namespace: team }),
    ]);
    assert.deepEqual(accounts.items.map((a) => a.metadata?.name), ['default']);
    assert.deepEqual(configMaps.items.map((c) => c.metadata?.name), ['kube-root-ca.crt']);
    assert.deepEqual(secrets.items, []);
    const rbacName = `${installation.impersonatorRole}:${team}`;
    await assert.rejects(clients.rbac.readClusterRoleBinding({ name: rbacName }), (err: { code?: number }) => err.code === 404, 'no longer bound');
    await assert.rejects(clients.rbac.readClusterRole({ name: rbacName }), (err: { code?: number }) => err.code === 404, 'its role gone too');
    await clients.core.readNamespacedPod({ name: 'dashboard', namespace: team }); // pods are the person's: left alone
  });
});

function mergePatch() {
  return setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
}
