// Issuing kubeconfigs without the identity CA's key, and revoking a person (issue 23, point 5),
// against the real API server: `chaperone kubeconfig --request` sends a CertificateSigningRequest for
// the signer chaperone.dev/identity, which the injector's leader (running under the shipped RBAC)
// signs once someone bound to the shipped chaperone-kubeconfig-approver role approves it; kubectl
// then uses the kubeconfig through an injected pod's sidecar. `chaperone revoke` writes the
// installation configuration, and the running sidecar refuses the certificate within seconds, which
// the API server's audit log confirms: nothing reaches it as the revoked person afterwards.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { AuthorizationV1Api, CertificatesV1Api, KubernetesObjectApi, type KubernetesObject, type V1CertificateSigningRequest, type V1Pod } from '@kubernetes/client-node';
import { IDENTITY_SIGNER } from '../../injector/certs/signer.js';
import { kubeconfigYaml } from '../../lib/kubeconfig.js';
import { createCertificateRequest } from '../../lib/pki.js';
import {
  bindClusterRoleInNamespace,
  createServiceAccount,
  grantInNamespace,
  kubectl,
  mintServiceAccountToken,
  readAuditEvents,
  serviceAccountSubject,
  waitForAuditEvents,
  waitForCanI,
} from '../../local-cluster/kube.js';
import { startPodSidecar, type PodSidecar } from '../../local-cluster/provisioned.js';
import { waitFor } from '../../local-cluster/wait.js';
import { runMain, type ProcessResult } from '../support/run-main.js';
import { withReplicatedInjector, withSharedControlPlane } from '../support/fixtures.js';

const PEOPLE_RBAC_FILE = path.resolve(import.meta.dirname, '../../manifests/base/kubeconfig-rbac.yaml');
const CONFIG_SECRET = 'chaperone-sidecar-config';

describe('kubeconfigs by request and revocation (the signer chaperone.dev/identity, chaperone revoke)', function () {
  this.timeout(180_000);
  const { cp, clients } = withSharedControlPlane();
  // An installation configuration, so that the injected sidecar follows one (as `chaperone revoke` needs).
  const { installation, replica } = withReplicatedInjector({ cp, clients }, ['--webhook-hosts=127.0.0.1'], (installed) =>
    clients.core.createNamespacedSecret({ namespace: installed.namespace, body: { metadata: { name: CONFIG_SECRET }, stringData: { 'sidecar.yaml': '# the installation\nguardDeny: [breakglass]\n' } } }),
  );
  let csrs: CertificatesV1Api;
  let sidecar: PodSidecar | undefined;
  let dir: string;
  let team: string;
  /** Kubeconfigs of a service account bound to each shipped role: neither may read the identity CA. */
  let requester: { kubeconfig: string; username: string };
  let approver: { kubeconfig: string; username: string };
  const clusterScoped: KubernetesObject[] = [];
  /** The people's kubeconfigs, issued by request. */
  const issued = new Map<string, string>();

  const chaperone = (args: string[], env: NodeJS.ProcessEnv = {}) => runMain('cli/main.ts', args, env);
  const requestArgs = (user: string, file: string, more: string[] = []) => [
    'kubeconfig', '--request', '--user', user, '--ttl', '1h', '-n', team, '--injector-namespace', installation.namespace, '--server', sidecar!.url, '-o', file, ...more,
  ];
  const mine = async (username: string) =>
    (await csrs.listCertificateSigningRequest({ fieldSelector: `spec.signerName=${IDENTITY_SIGNER}` })).items.filter((csr) => csr.spec.username === username);
  /** The request the requester's running command created and waits on. */
  const waitingRequest = async (before: Set<string>, running: Promise<ProcessResult>) => {
    let ended: ProcessResult | undefined;
    void running.then((result) => (ended = result));
    return waitFor(
      'the command to create its CertificateSigningRequest',
      async () => {
        const created = (await mine(requester.username)).find((csr) => !before.has(csr.metadata!.name!));
        if (!created && ended) throw new Error(`the command ended (${ended.code}): ${ended.stderr}`);
        return created;
      },
      20_000,
      200,
    );
  };
  const names = async () => new Set((await mine(requester.username)).map((csr) => csr.metadata!.name!));

  async function serviceAccountBoundTo(roles: string[], name: string): Promise<{ kubeconfig: string; username: string }> {
    await createServiceAccount(clients, team, name);
    const objectApi = KubernetesObjectApi.makeApiClient(clients.kubeconfig);
    for (const role of roles) {
      const binding = {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: `${role}-${name}-${team}` },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: `${role}-${team}` },
        subjects: [serviceAccountSubject(team, name)],
      };
      await objectApi.create(binding);
      clusterScoped.push(binding);
    }
    const kubeconfig = path.join(dir, `${name}.kubeconfig`);
    await writeFile(kubeconfig, kubeconfigYaml(cp.url, cp.ca.certPem, name, { token: await mintServiceAccountToken(clients, team, name) }), { mode: 0o600 });
    const username = `system:serviceaccount:${team}:${name}`;
    // Like a team's lead: she may read the namespace, whose ConfigMap chaperone-ca holds the serving CA.
    await bindClusterRoleInNamespace(clients, team, 'view', [serviceAccountSubject(team, name)]);
    await waitForCanI(cp, username, ['get', 'certificatesigningrequests']);
    await waitForCanI(cp, username, ['get', 'configmaps', '-n', team]);
    return { kubeconfig, username };
  }

  before(async function () {
    this.timeout(15 * 60_000);
    csrs = clients.kubeconfig.makeApiClient(CertificatesV1Api);
    dir = await mkdtemp(path.join(tmpdir(), 'chaperone-kubeconfig-request-'));
    team = await installation.createLabelledNamespace('request');
    await waitFor('the namespace to be provisioned', async () => (await replica.provisioningStatus(team)).ready, 60_000);
    await waitFor('the default service account', () => clients.core.readNamespacedServiceAccount({ name: 'default', namespace: team }).then(() => true));
    const pod: V1Pod = await waitFor(
      'the webhook to inject a pod',
      async () => {
        const created = await clients.core.createNamespacedPod({ namespace: team, body: { metadata: { name: `dashboard-${Date.now().toString(36)}` }, spec: { containers: [{ name: 'dashboard', image: 'ghcr.io/example/dashboard:1' }] } } });
        if (created.spec?.serviceAccountName === 'chaperone-impersonator') return created;
        await clients.core.deleteNamespacedPod({ name: created.metadata!.name!, namespace: team });
        return undefined;
      },
      60_000,
      1000,
    );
    assert.ok(
      [...(pod.spec!.initContainers ?? []), ...pod.spec!.containers].some((c) => c.args?.includes(`--installation-config=${installation.namespace}/${CONFIG_SECRET}`)),
      'the sidecar follows the installation configuration',
    );
    sidecar = await startPodSidecar(cp, clients, pod);

    // The shipped people's roles, named for this run.
    const objectApi = KubernetesObjectApi.makeApiClient(clients.kubeconfig);
    for (const document of YAML.parseAllDocuments(await readFile(PEOPLE_RBAC_FILE, 'utf8'))) {
      const role = document.toJS() as KubernetesObject;
      role.metadata!.name = `${role.metadata!.name}-${team}`;
      await objectApi.create(role);
      clusterScoped.push(role);
    }
    requester = await serviceAccountBoundTo(['chaperone-kubeconfig-requester'], 'requester');
    // An approver who issues too holds both roles.
    approver = await serviceAccountBoundTo(['chaperone-kubeconfig-requester', 'chaperone-kubeconfig-approver'], 'approver');
    for (const person of ['alice', 'bob', 'dave']) await grantInNamespace(cp, clients, team, 'view', person);
  });

  after(async function () {
    await sidecar?.stop();
    const objectApi = KubernetesObjectApi.makeApiClient(clients.kubeconfig);
    for (const object of clusterScoped) await objectApi.delete(object).catch(() => undefined);
    for (const csr of await mine(requester?.username ?? '').catch(() => [])) await csrs.deleteCertificateSigningRequest({ name: csr.metadata!.name! }).catch(() => undefined);
    for (const csr of await mine(approver?.username ?? '').catch(() => [])) await csrs.deleteCertificateSigningRequest({ name: csr.metadata!.name! }).catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('gives a person without the identity CA key a working kubeconfig once an approver approves the request', async function () {
    const cannot = await kubectl(cp.adminKubeconfig, ['auth', 'can-i', 'get', 'secrets/chaperone-identity-ca', '-n', installation.namespace, '--as', requester.username]);
    assert.equal(cannot.stdout.trim(), 'no', 'the requester cannot read the identity CA');
    const file = path.join(dir, 'alice.kubeconfig');
    const before = await names();
    const running = chaperone(requestArgs('alice', file, ['--group', 'dev', '--wait', '25s']), { KUBECONFIG: requester.kubeconfig });
    const request = await waitingRequest(before, running);
    const approved = await kubectl(approver.kubeconfig, ['certificate', 'approve', request.metadata!.name!]);
    assert.equal(approved.code, 0, approved.stderr);
    const result = await running;
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, new RegExp(`CertificateSigningRequest ${request.metadata!.name} waits for approval: kubectl certificate approve ${request.metadata!.name}`));
    assert.match(result.stderr, new RegExp(`wrote ${file}: alice \\(dev\\), valid for 3600s, serial [0-9a-f]+`));
    issued.set('alice', file);

    const cert = new X509Certificate(Buffer.from((YAML.parse(await readFile(file, 'utf8')) as { users: { user: { 'client-certificate-data': string } }[] }).users[0]!.user['client-certificate-data'], 'base64'));
    assert.equal(cert.subject, 'O=dev\nCN=alice');
    const lifetime = cert.validToDate.getTime() - Date.now();
    assert.ok(lifetime > 3500_000 && lifetime <= 3600_000, `the lifetime asked for: ${lifetime} ms left`);

    const read = await kubectl(file, ['get', 'configmaps', '-n', team, '-o', 'name']);
    assert.equal(read.code, 0, read.stderr);
    assert.match(read.stdout, /configmap\/chaperone-ca/);
    const write = await kubectl(file, ['create', 'configmap', 'not-allowed', '-n', team]);
    assert.match(write.stderr, /forbidden: User "alice" cannot create resource "configmaps"/);
  });

  it('issues at once for an approver who approves with --approve; a requester who may not approve is told which role she lacks', async function () {
    const file = path.join(dir, 'bob.kubeconfig');
    const result = await chaperone(requestArgs('bob', file, ['--approve']), { KUBECONFIG: approver.kubeconfig });
    assert.equal(result.code, 0, result.stderr);
    assert.doesNotMatch(result.stderr, /waits for approval/);
    issued.set('bob', file);
    const read = await kubectl(file, ['get', 'configmaps', '-n', team, '-o', 'name']);
    assert.equal(read.code, 0, read.stderr);

    const refused = await chaperone(requestArgs('mallory', path.join(dir, 'mallory.kubeconfig'), ['--approve']), { KUBECONFIG: requester.kubeconfig });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^chaperone kubeconfig: cannot approve CertificateSigningRequest chaperone-kubeconfig-\w+: forbidden: you need update on certificatesigningrequests\/approval and approve on signers\/chaperone.dev\/identity \(ClusterRole chaperone-kubeconfig-approver\)\n$/);
  });

  it('gives an unapproved request nothing, and says so to a request that is denied', async function () {
    const before = await names();
    const unapproved = await chaperone(requestArgs('erin', path.join(dir, 'erin.kubeconfig'), ['--wait', '3s']), { KUBECONFIG: requester.kubeconfig });
    assert.equal(unapproved.code, 1);
    assert.match(unapproved.stderr, /CertificateSigningRequest (chaperone-kubeconfig-\w+) was not approved within 3s\n$/);
    const [waiting] = (await mine(requester.username)).filter((csr) => !before.has(csr.metadata!.name!));
    assert.ok(waiting);

    // The signer signs what is approved after it: by then it has seen the unapproved one, and left it.
    const later = await names();
    const running = chaperone(requestArgs('dave', path.join(dir, 'dave.kubeconfig'), ['--wait', '25s']), { KUBECONFIG: requester.kubeconfig });
    const daves = await waitingRequest(later, running);
    assert.equal((await kubectl(approver.kubeconfig, ['certificate', 'approve', daves.metadata!.name!])).code, 0);
    assert.equal((await running).code, 0);
    const left = await csrs.readCertificateSigningRequest({ name: waiting.metadata!.name! });
    assert.equal(left.status?.certificate, undefined, 'no certificate without approval');

    const denied = await names();
    const deniedRun = chaperone(requestArgs('frank', path.join(dir, 'frank.kubeconfig'), ['--wait', '25s']), { KUBECONFIG: requester.kubeconfig });
    const franks = await waitingRequest(denied, deniedRun);
    assert.equal((await kubectl(approver.kubeconfig, ['certificate', 'deny', franks.metadata!.name!])).code, 0);
    const deniedResult = await deniedRun;
    assert.equal(deniedResult.code, 1);
    assert.match(deniedResult.stderr, new RegExp(`CertificateSigningRequest ${franks.metadata!.name} was denied`));
  });

  it('refuses, as Failed with a reason, an approved request for a system: name or for server use', async function () {
    const ask = async (commonName: string, organizations: string[], usages: string[]): Promise<V1CertificateSigningRequest> => {
      const { requestPem } = createCertificateRequest(commonName, organizations);
      const created = await csrs.createCertificateSigningRequest({
        body: { metadata: { generateName: 'chaperone-e2e-' }, spec: { request: Buffer.from(requestPem).toString('base64'), signerName: IDENTITY_SIGNER, usages } },
      });
      const name = created.metadata!.name!;
      clusterScoped.push({ apiVersion: 'certificates.k8s.io/v1', kind: 'CertificateSigningRequest', metadata: { name } });
      const approved = { type: 'Approved', status: 'True', reason: 'E2E', message: 'approved by the test', lastUpdateTime: new Date() };
      await csrs.replaceCertificateSigningRequestApproval({ name, body: { ...created, status: { conditions: [approved] } } });
      return waitFor(`the signer to answer ${name}`, async () => {
        const current = await csrs.readCertificateSigningRequest({ name });
        return current.status?.certificate || current.status?.conditions?.some((c) => c.type === 'Failed') ? current : undefined;
      }, 20_000, 250);
    };
    const failure = (csr: V1CertificateSigningRequest) => csr.status?.conditions?.find((c) => c.type === 'Failed');

    const admin = await ask('system:admin', [], ['client auth']);
    assert.equal(admin.status?.certificate, undefined);
    assert.equal(failure(admin)?.reason, 'SystemName');
    const masters = await ask('gina', ['system:masters'], ['client auth']);
    assert.equal(failure(masters)?.reason, 'SystemName');
    const server = await ask('gina', [], ['server auth']);
    assert.equal(failure(server)?.reason, 'UnsupportedUsages');
    const fine = await ask('gina', ['dev'], ['client auth']);
    assert.ok(fine.status?.certificate, 'the same person, asked properly, is signed');

    // The injector holds `sign` for its own signer only, and cannot approve.
    const authorization = clients.kubeconfig.makeApiClient(AuthorizationV1Api);
    const may = async (verb: string, signer: string) =>
      (
        await authorization.createSubjectAccessReview({
          body: {
            spec: {
              user: `system:serviceaccount:${installation.namespace}:chaperone-injector`,
              groups: ['system:serviceaccounts', `system:serviceaccounts:${installation.namespace}`, 'system:authenticated'],
              resourceAttributes: { group: 'certificates.k8s.io', resource: 'signers', name: signer, verb },
            },
          },
        })
      ).status?.allowed ?? false;
    assert.equal(await may('sign', IDENTITY_SIGNER), true);
    assert.equal(await may('sign', 'kubernetes.io/kube-apiserver-client'), false);
    assert.equal(await may('approve', IDENTITY_SIGNER), false);
  });

  it('revokes a certificate by serial at the running sidecar within seconds: refused (401, an audit event saying revoked), others still served, nothing reaches the API server as her', async function () {
    const alice = issued.get('alice')!;
    const bob = issued.get('bob')!;
    assert.equal((await kubectl(alice, ['get', 'configmaps', '-n', team])).code, 0);
    const serial = new X509Certificate(
      Buffer.from((YAML.parse(await readFile(alice, 'utf8')) as { users: { user: { 'client-certificate-data': string } }[] }).users[0]!.user['client-certificate-data'], 'base64'),
    ).serialNumber;

    const revoked = await chaperone(['revoke', '--serial', serial, '--injector-namespace', installation.namespace], { KUBECONFIG: cp.adminKubeconfig });
    assert.equal(revoked.code, 0, revoked.stderr);
    const revokedAt = Date.now();
    assert.match(revoked.stdout, new RegExp(`^revoked serial:${serial.toLowerCase().replace(/^0+/, '')} \\(Secret ${installation.namespace}/${CONFIG_SECRET}\\)\n$`));
    const sidecarYaml = Buffer.from((await clients.core.readNamespacedSecret({ name: CONFIG_SECRET, namespace: installation.namespace })).data!['sidecar.yaml']!, 'base64').toString('utf8');
    assert.match(sidecarYaml, /^# the installation\nguardDeny: \[ breakglass \]\nclientCertificateRevocations:\n {2}- serial:[0-9a-f]+\n$/, 'the rest of the configuration kept');

    let refusedFrom = 0;
    const refused = await waitFor(
      'the running sidecar to refuse the revoked certificate',
      async () => {
        refusedFrom = Date.now();
        const attempt = await kubectl(alice, ['get', 'configmaps', '-n', team]);
        return attempt.code !== 0 ? attempt : undefined;
      },
      20_000,
      250,
    );
    console.log(`      refused ${((Date.now() - revokedAt) / 1000).toFixed(1)} s after chaperone revoke returned`);
    assert.match(refused.stderr, /Unauthorized/);
    for (const verb of [['get', 'configmaps'], ['get', 'pods'], ['get', 'configmap', 'chaperone-ca']]) {
      assert.match((await kubectl(alice, [...verb, '-n', team])).stderr, /Unauthorized/, 'on every request from then on');
    }
    const still = await kubectl(bob, ['get', 'configmaps', '-n', team, '-o', 'name']);
    assert.equal(still.code, 0, still.stderr);

    const events = (await readFile(sidecar!.auditLog, 'utf8')).split('\n').filter(Boolean).map((line) => JSON.parse(line) as { responseStatus?: { code?: number }; annotations?: Record<string, string> });
    assert.ok(
      events.some((e) => e.responseStatus?.code === 401 && /x509: certificate revoked \(serial [0-9a-f]+\)/.test(e.annotations?.['chaperone.dev/authentication-failures'] ?? '')),
      "the sidecar's audit says why",
    );
    // Bob's read is in the API server's log: it is written past the revocation, and holds nothing as alice after it.
    await waitForAuditEvents(cp, (e) => e.impersonatedUser?.username === 'bob' && e.stage === 'ResponseComplete', 10_000);
    const asAlice = (await readAuditEvents(cp)).filter(
      (e) => e.impersonatedUser?.username === 'alice' && Date.parse((e as unknown as { requestReceivedTimestamp: string }).requestReceivedTimestamp) >= refusedFrom,
    );
    assert.deepEqual(asAlice.map((e) => e.requestURI), [], 'no request as alice once the sidecar refuses her');
  });

  it('revokes every certificate of a username for a while (--user --for), ending the watch she has open; says what is wrong with a serial, and which permission is missing', async function () {
    const dave = path.join(dir, 'dave.kubeconfig');
    assert.equal((await kubectl(dave, ['get', 'configmaps', '-n', team])).code, 0);
    // A watch opened before the revocation: it ends too, as a change of the CA bundle would end it.
    let watchEnded = false;
    const watching = kubectl(dave, ['get', 'configmaps', '-n', team, '--watch', '--request-timeout=0'], { timeoutMs: 150_000 }).finally(() => (watchEnded = true));
    await waitForAuditEvents(cp, (e) => e.impersonatedUser?.username === 'dave' && e.verb === 'watch' && e.stage === 'ResponseStarted', 30_000);
    assert.equal(watchEnded, false, 'the watch is open');
    const revoked = await chaperone(['revoke', '--user', 'dave', '--for', '2h', '--injector-namespace', installation.namespace], { KUBECONFIG: cp.adminKubeconfig });
    assert.equal(revoked.code, 0, revoked.stderr);
    const until = /until (\S+) \(/.exec(revoked.stdout)?.[1];
    assert.ok(until && Math.abs(Date.parse(until) - Date.now() - 2 * 3600_000) < 60_000, revoked.stdout);
    await waitFor('the sidecar to refuse dave', async () => ((await kubectl(dave, ['get', 'configmaps', '-n', team])).code !== 0 ? true : undefined), 20_000, 250);
    await waitFor('the watch dave opened before to be cut', () => watchEnded, 30_000, 100);
    await watching;
    assert.equal((await kubectl(issued.get('bob')!, ['get', 'configmaps', '-n', team])).code, 0, 'bob is served');

    const bad = await chaperone(['revoke', '--serial', 'not-hex', '--injector-namespace', installation.namespace], { KUBECONFIG: cp.adminKubeconfig });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--serial not-hex is not a hexadecimal serial number/);
    const nobody = await chaperone(['revoke', '--user', 'x', '--injector-namespace', installation.namespace], { KUBECONFIG: requester.kubeconfig });
    assert.equal(nobody.code, 1);
    assert.match(nobody.stderr, new RegExp(`forbidden: you need get and update on secrets/${CONFIG_SECRET} in ${installation.namespace}`));
  });
});
