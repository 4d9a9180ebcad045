// The foundation every other e2e suite stands on: the harness gives us a real, working API server.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import path from 'node:path';
import type { ControlPlane } from '../../local-cluster/control-plane.js';
import { kubeconfigYaml } from '../../lib/kubeconfig.js';
import { sharedControlPlane } from '../support/shared.js';
import {
  adminClients,
  auditEventsFor,
  createNamespace,
  createServiceAccount,
  kubectl,
  mintServiceAccountToken,
  type AdminClients,
} from '../../local-cluster/kube.js';

describe('the local control plane', function () {
  this.timeout(15 * 60_000); // the first run may build kube-apiserver and etcd
  let cp: ControlPlane;
  let clients: AdminClients;

  before(async function () {
    cp = await sharedControlPlane();
    clients = adminClients(cp);
    console.log(`      API server under test: ${cp.version} at ${cp.url}`);
  });

  it('answers real kubectl with the version it was built as', async function () {
    const result = await kubectl(cp.adminKubeconfig, ['version', '-o', 'json']);
    assert.equal(result.code, 0, result.stderr);
    const version = JSON.parse(result.stdout) as { serverVersion: { gitVersion: string } };
    assert.equal(version.serverVersion.gitVersion, cp.version);
    assert.match(cp.version, /^v1\.\d+\.\d+/);
  });

  it('lets the admin create a namespace with kubectl and see it', async function () {
    const name = `kubectl-${randomUUID().slice(0, 8)}`;
    const created = await kubectl(cp.adminKubeconfig, ['create', 'namespace', name]);
    assert.equal(created.code, 0, created.stderr);
    const got = await kubectl(cp.adminKubeconfig, ['get', 'namespace', name, '-o', 'jsonpath={.metadata.name}']);
    assert.equal(got.stdout, name);
  });

  it('enforces RBAC: the admin may do anything, a fresh service account may not', async function () {
    const admin = await kubectl(cp.adminKubeconfig, ['auth', 'can-i', 'create', 'pods', '--all-namespaces']);
    assert.equal(admin.stdout.trim(), 'yes');
    const namespace = await createNamespace(clients, 'rbac');
    await createServiceAccount(clients, namespace, 'nobody');
    const asNobody = await kubectl(cp.adminKubeconfig, ['auth', 'can-i', 'list', 'pods', '-n', namespace, '--as', `system:serviceaccount:${namespace}:nobody`]);
    assert.equal(asNobody.stdout.trim(), 'no');
    assert.equal(asNobody.code, 1);
  });

  it('issues service-account tokens by TokenRequest that the API server accepts (SelfSubjectReview)', async function () {
    const namespace = await createNamespace(clients, 'token');
    await createServiceAccount(clients, namespace, 'robot');
    const token = await mintServiceAccountToken(clients, namespace, 'robot');
    const kubeconfig = path.join(cp.dir, `robot-${namespace}.kubeconfig`);
    await writeFile(kubeconfig, kubeconfigYaml(cp.url, cp.ca.certPem, 'robot', { token }), { mode: 0o600 });
    const whoami = await kubectl(kubeconfig, ['auth', 'whoami', '-o', 'json']);
    assert.equal(whoami.code, 0, whoami.stderr);
    const review = JSON.parse(whoami.stdout) as { status: { userInfo: { username: string; groups: string[] } } };
    assert.equal(review.status.userInfo.username, `system:serviceaccount:${namespace}:robot`);
    assert.ok(review.status.userInfo.groups.includes(`system:serviceaccounts:${namespace}`));
  });

  it('records a request under the Audit-ID the client chose', async function () {
    const auditID = randomUUID();
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        `${cp.url}/api/v1/namespaces/default`,
        { ca: cp.ca.certPem, cert: cp.admin.certPem, key: cp.admin.keyPem, headers: { 'Audit-ID': auditID } },
        (res) => {
          res.resume();
          assert.equal(res.headers['audit-id'], auditID);
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 200);
    const events = await auditEventsFor(cp, auditID);
    assert.equal(events.length, 1, `expected one ResponseComplete event for ${auditID}`);
    const [event] = events;
    assert.equal(event!.stage, 'ResponseComplete');
    assert.equal(event!.verb, 'get');
    assert.equal(event!.user.username, 'chaperone-test-admin');
    assert.deepEqual(event!.objectRef && { resource: event!.objectRef.resource, name: event!.objectRef.name }, {
      resource: 'namespaces',
      name: 'default',
    });
  });
});
