// The request path end to end: a person with a client certificate, through a running sidecar, to the
// real API server, judged by the API server's own answers and audit log.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { connect } from 'node:tls';
import {
  auditEventsFor,
  createNamespace,
  grantClusterWide,
  grantInNamespace,
  kubectl,
  mintServiceAccountToken,
  readAuditEvents,
  userSubject,
  waitForCanI,
} from '../../local-cluster/kube.js';
import { rawRequest, type RawResponse, type TestSidecar } from '../../local-cluster/sidecar.js';
import { ORIGINAL_USER_INFO_EXTRA } from '../../sidecar/identity.js';
import { createCA, type CertificateAndKey } from '../../lib/pki.js';
import { withSharedControlPlane, withSidecar } from '../support/fixtures.js';

/** Writes a request by hand, for request lines no HTTP client would send. */
function rawHttp(sidecar: TestSidecar, cert: CertificateAndKey, text: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: sidecar.port, ca: sidecar.servingCa.certPem, cert: cert.certPem, key: cert.keyPem, servername: 'localhost' }, () => socket.end(text));
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
    socket.on('end', () => resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(received)?.[1] ?? 0), body: received.slice(received.indexOf('\r\n\r\n') + 4) }));
    socket.on('error', reject);
  });
}

// The whole path in both impersonation modes: classic (the impersonate verb) and constrained (the
// role generated from the dashboard access policy, which the sidecar is given too).
for (const mode of ['classic', 'constrained'] as const) describe(`sidecar request path (client certificates, real API server, ${mode} impersonation)`, function () {
  this.timeout(120_000);
  const { cp, clients } = withSharedControlPlane();
  const sidecar = withSidecar({ mode });
  let allowedNs: string;
  let otherNs: string;
  let alice: CertificateAndKey;
  let aliceKubeconfig: string;

  before(async function () {
    allowedNs = await createNamespace(clients, 'alice-view');
    otherNs = await createNamespace(clients, 'elsewhere');
    await grantInNamespace(cp, clients, allowedNs, 'view', 'alice');
    alice = sidecar.clientCert('alice', ['dev', 'ops']);
    aliceKubeconfig = await sidecar.kubeconfigFor('alice', ['dev', 'ops']);
  });

  function viaSidecar(path: string, init: { method?: string; headers?: Record<string, string | string[]>; cert?: CertificateAndKey; body?: string } = {}): Promise<RawResponse> {
    return rawRequest(`${sidecar.url}${path}`, { ca: sidecar.servingCa.certPem, cert: init.cert ?? alice, ...init });
  }

  async function forwardedEvent(response: RawResponse) {
    const auditID = response.headers['audit-id'];
    assert.ok(typeof auditID === 'string' && auditID.length > 0, 'the response carries the Audit-ID the sidecar chose');
    const events = await auditEventsFor(cp, auditID);
    assert.equal(events.length, 1, `one API server audit event for ${auditID}`);
    return events[0]!;
  }

  async function assertNeverReachedApiServer(response: RawResponse) {
    const auditID = response.headers['audit-id'];
    assert.ok(typeof auditID === 'string');
    assert.deepEqual(await auditEventsFor(cp, auditID, 500), [], 'the API server never saw this request');
  }

  describe('authorization as the person', function () {
    it('lets alice list pods where she may view', async function () {
      const result = await kubectl(aliceKubeconfig, ['get', 'pods', '-n', allowedNs]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stderr, /No resources found/);
    });

    it('refuses alice creating there, in the words the API server itself uses', async function () {
      const through = await kubectl(aliceKubeconfig, ['create', 'configmap', 'nope', '-n', allowedNs]);
      const direct = await kubectl(cp.adminKubeconfig, ['create', 'configmap', 'nope', '-n', allowedNs, '--as', 'alice', '--as-group', 'dev', '--as-group', 'ops']);
      assert.notEqual(through.code, 0);
      assert.match(through.stderr, /User "alice" cannot create resource "configmaps"/);
      assert.equal(through.stderr, direct.stderr);
    });

    it('refuses alice listing pods in another namespace, with a 403 Status', async function () {
      const response = await viaSidecar(`/api/v1/namespaces/${otherNs}/pods`);
      assert.equal(response.status, 403);
      const status = JSON.parse(response.body) as { kind: string; reason: string; message: string; code: number };
      assert.equal(status.kind, 'Status');
      assert.equal(status.reason, 'Forbidden');
      assert.equal(status.code, 403);
      assert.equal(status.message, `pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "${otherNs}"`);
      await assertNeverReachedApiServer(response);
    });

    it('shows the API server the scoped service account impersonating alice, under the sidecar\'s Audit-ID', async function () {
      const response = await viaSidecar(`/api/v1/namespaces/${allowedNs}/pods`);
      assert.equal(response.status, 200, response.body);
      const event = await forwardedEvent(response);
      assert.equal(event.user.username, sidecar.serviceAccountUsername);
      assert.equal(event.impersonatedUser?.username, 'alice');
      assert.deepEqual([...(event.impersonatedUser?.groups ?? [])].sort(), ['dev', 'ops', 'system:authenticated']);
      assert.equal(event.verb, 'list');
      assert.equal(event.objectRef?.namespace, allowedNs);
    });
  });

  describe('forgery never reaches the API server', function () {
    it('answers an Impersonate-User in mixed case from someone without impersonate rights with 403', async function () {
      const response = await viaSidecar(`/api/v1/namespaces/${allowedNs}/pods`, { headers: { 'iMpersonate-User': 'admin' } });
      assert.equal(response.status, 403);
      assert.match(response.body, /User \\"alice\\" cannot impersonate resource \\"users\\"/);
      await assertNeverReachedApiServer(response);
    });

    for (const header of ['Impersonate-Group', 'impersonate-uid', 'Impersonate-Extra-scopes']) {
      it(`answers ${header} without Impersonate-User with 400, as the API server does`, async function () {
        const response = await viaSidecar(`/api/v1/namespaces/${allowedNs}/pods`, { headers: { [header]: 'system:masters' } });
        assert.equal(response.status, 400);
        assert.match(response.body, /without impersonating a user/);
        await assertNeverReachedApiServer(response);
      });
    }

    it('drops a second Authorization header: the API server sees only the scoped account impersonating alice', async function () {
      const namespace = await createNamespace(clients, 'forged-token');
      await clients.core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'powerful' } } });
      await grantClusterWide(clients, 'powerful', [{ apiGroups: ['*'], resources: ['*'], verbs: ['*'] }], [
        { kind: 'ServiceAccount', namespace, name: 'powerful' },
      ]);
      const token = await mintServiceAccountToken(clients, namespace, 'powerful');
      const response = await viaSidecar(`/api/v1/namespaces/${allowedNs}/pods`, {
        headers: { Authorization: [`Bearer ${token}`, `Bearer ${token}`] },
      });
      assert.equal(response.status, 200);
      const event = await forwardedEvent(response);
      assert.equal(event.user.username, sidecar.serviceAccountUsername);
      assert.equal(event.impersonatedUser?.username, 'alice');
    });

    it('drops X-Remote-User and X-Forwarded-For', async function () {
      const response = await viaSidecar(`/api/v1/namespaces/${allowedNs}/pods`, {
        headers: { 'X-Remote-User': 'admin', 'X-Remote-Group': 'system:masters', 'X-Forwarded-For': '10.0.0.1' },
      });
      assert.equal(response.status, 200);
      const event = await forwardedEvent(response);
      assert.equal(event.impersonatedUser?.username, 'alice');
      assert.ok(!(event.impersonatedUser?.groups ?? []).includes('system:masters'));
      assert.ok(!(event.sourceIPs ?? []).includes('10.0.0.1'));
    });

    it('never forwards a client-chosen Audit-ID', async function () {
      const forged = randomUUID();
      const response = await viaSidecar(`/api/v1/namespaces/${allowedNs}/pods`, { headers: { 'Audit-ID': forged } });
      assert.equal(response.status, 200);
      assert.notEqual(response.headers['audit-id'], forged);
      await forwardedEvent(response);
      assert.equal((await readAuditEvents(cp)).filter((e) => e.auditID === forged).length, 0);
    });
  });

  describe('the API server acts on exactly the path the sidecar authorized', function () {
    const odd = (ns: string, other: string) => [
      `/api/v1/namespaces/${ns}/pods/../../${other}/pods`,
      `/api/v1/namespaces/${ns}/pods/%2e%2e/%2e%2e/${other}/pods`,
      `/api/v1/namespaces/${ns}/pods/x#/../../${other}/pods`,
      `/api/v1/namespaces/${ns}/pods/..\\..\\${other}/pods`,
    ];

    it('forwards dot segments, escapes and fragments byte for byte, or not at all', async function () {
      for (const path of odd(allowedNs, otherNs)) {
        const response = await viaSidecar(path);
        const auditID = response.headers['audit-id'] as string;
        const events = await auditEventsFor(cp, auditID, 1000);
        if (response.status === 403) {
          assert.deepEqual(events, [], `${path} was refused by the sidecar and never forwarded`);
        } else {
          assert.equal(events.length, 1, `${path} (${response.status}) should have reached the API server once`);
          // the audit log writes the path escaped (# as %23): compare what the escapes stand for
          assert.equal(decodeURI(events[0]!.requestURI), decodeURI(path), 'the API server saw another path than the sidecar authorized');
        }
        assert.ok(!response.body.includes(`"namespace":"${otherNs}"`), `${path} leaked ${otherNs}`);
      }
    });

    it('refuses a full URL as the request target', async function () {
      const { status, body } = await rawHttp(sidecar, alice, `GET https://127.0.0.1:${cp.port}/api/v1/namespaces/${otherNs}/pods HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
      assert.equal(status, 400);
      assert.match(body, /only a path as the request target/);
    });
  });

  describe('nested impersonation (kubectl --as)', function () {
    let carolKubeconfig: string;

    before(async function () {
      await grantClusterWide(
        clients,
        'carol-impersonates',
        [{ apiGroups: [''], resources: ['users', 'groups'], verbs: ['impersonate'] }],
        [userSubject('carol')],
      );
      await waitForCanI(cp, 'carol', ['impersonate', 'users/alice']);
      carolKubeconfig = await sidecar.kubeconfigFor('carol', ['support']);
    });

    it('honours --as for someone with impersonate rights, and the original person travels in the extra', async function () {
      const result = await kubectl(carolKubeconfig, ['get', 'pods', '-n', allowedNs, '--as', 'alice']);
      assert.equal(result.code, 0, result.stderr);
      const response = await viaSidecar(`/api/v1/namespaces/${allowedNs}/pods`, {
        cert: sidecar.clientCert('carol', ['support']),
        headers: { 'Impersonate-User': 'alice', 'Impersonate-Group': ['dev'] },
      });
      assert.equal(response.status, 200, response.body);
      const event = await forwardedEvent(response);
      assert.equal(event.user.username, sidecar.serviceAccountUsername);
      assert.equal(event.impersonatedUser?.username, 'alice');
      assert.deepEqual([...(event.impersonatedUser?.groups ?? [])].sort(), ['dev', 'system:authenticated']);
      const original = JSON.parse(event.impersonatedUser?.extra?.[ORIGINAL_USER_INFO_EXTRA]?.[0] ?? '{}') as { username: string; groups: string[] };
      assert.equal(original.username, 'carol');
      assert.deepEqual(original.groups, ['support', 'system:authenticated']);
    });

    it('refuses --as for alice, who may not impersonate', async function () {
      const result = await kubectl(aliceKubeconfig, ['get', 'pods', '-n', allowedNs, '--as', 'bob']);
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /User "alice" cannot impersonate resource "users" in API group "" at the cluster scope/);
    });

    it('refuses --as-group system:masters through the guard, even for someone who may impersonate groups', async function () {
      const response = await viaSidecar(`/api/v1/namespaces/${allowedNs}/pods`, {
        cert: sidecar.clientCert('carol', ['support']),
        headers: { 'Impersonate-User': 'alice', 'Impersonate-Group': 'system:masters' },
      });
      assert.equal(response.status, 403);
      assert.match(response.body, /never impersonates the group \\"system:masters\\"/);
      await assertNeverReachedApiServer(response);
      const viaKubectl = await kubectl(carolKubeconfig, ['get', 'pods', '-n', allowedNs, '--as', 'alice', '--as-group', 'system:masters']);
      assert.notEqual(viaKubectl.code, 0);
      assert.match(viaKubectl.stderr, /system:masters/);
    });
  });

  describe('client certificates that are not a person\'s', function () {
    const cases: [string, () => CertificateAndKey][] = [
      ['signed by another CA', () => sidecar.clientCert('alice', ['dev'], {}, createCA({ commonName: 'impostor-ca' }))],
      ['expired', () => sidecar.clientCert('alice', ['dev'], { notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) })],
      ['not yet valid', () => sidecar.clientCert('alice', ['dev'], { notBefore: new Date(Date.now() + 3600_000), notAfter: new Date(Date.now() + 7200_000) })],
      ['for servers only (EKU serverAuth)', () => sidecar.clientCert('alice', ['dev'], { usage: 'server' })],
      ["the sidecar's own serving certificate", () => sidecar.servingCert],
    ];
    for (const [what, make] of cases) {
      it(`answers a certificate ${what} with 401 Unauthorized`, async function () {
        const response = await viaSidecar(`/api/v1/namespaces/${allowedNs}/pods`, { cert: make() });
        assert.equal(response.status, 401);
        assert.deepEqual(JSON.parse(response.body), {
          kind: 'Status',
          apiVersion: 'v1',
          metadata: {},
          status: 'Failure',
          message: 'Unauthorized',
          reason: 'Unauthorized',
          code: 401,
        });
        await assertNeverReachedApiServer(response);
      });
    }

    it('answers a request with no credential at all with 401', async function () {
      const response = await rawRequest(`${sidecar.url}/api/v1/namespaces/${allowedNs}/pods`, { ca: sidecar.servingCa.certPem });
      assert.equal(response.status, 401);
    });
  });

  describe('the ops port, open to the pod\'s network and unauthenticated', function () {
    it('asks the API server whether it is ready at most every 2 seconds, however often /readyz is asked (no amplification under the scoped token)', async function () {
      const readyzCalls = async () =>
        (await readAuditEvents(cp)).filter((e) => e.stage === 'ResponseComplete' && e.requestURI === '/readyz' && e.user.username === sidecar.serviceAccountUsername).length;
      await fetch(`${sidecar.opsUrl}/readyz`);
      await new Promise((resolve) => setTimeout(resolve, 2100));
      const before = await readyzCalls();
      const started = Date.now();
      const answers = await Promise.all(Array.from({ length: 200 }, () => fetch(`${sidecar.opsUrl}/readyz`).then((r) => r.status)));
      const elapsed = Date.now() - started;
      assert.deepEqual([...new Set(answers)], [200]);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const asked = (await readyzCalls()) - before;
      assert.ok(asked >= 1 && asked <= 1 + Math.ceil(elapsed / 2000), `200 probes in ${elapsed}ms asked the API server ${asked} times`);
    });
  });

  describe('the scoped service account is the only credential', function () {
    it('fails every request once its binding is gone, and works again when it returns', async function () {
      const binding = await clients.rbac.readClusterRoleBinding({ name: sidecar.bindingName });
      await clients.rbac.deleteClusterRoleBinding({ name: sidecar.bindingName });
      try {
        // Paths never asked before, so no cached decision hides the change.
        const fresh = randomUUID();
        for (const path of [`/api/v1/namespaces/${allowedNs}/configmaps/${fresh}`, `/api/v1/namespaces/${allowedNs}/services/${fresh}`, `/apis/apps/v1/namespaces/${allowedNs}/deployments/${fresh}`]) {
          const response = await viaSidecar(path);
          assert.equal(response.status, 503, `${path}: ${response.body}`);
          assert.match(response.body, /could not ask the API server for an authorization decision/);
          await assertNeverReachedApiServer(response);
        }
      } finally {
        await clients.rbac.createClusterRoleBinding({ body: { metadata: { name: binding.metadata!.name! }, roleRef: binding.roleRef, subjects: binding.subjects! } });
      }
      await waitForCanI(cp, sidecar.serviceAccountUsername, ['create', 'subjectaccessreviews.authorization.k8s.io']);
      const response = await viaSidecar(`/api/v1/namespaces/${allowedNs}/secrets`);
      assert.equal(response.status, 403, 'alice may not read secrets: the sidecar asks again and refuses');
      assert.match((JSON.parse(response.body) as { message: string }).message, /User "alice" cannot list resource "secrets"/);
    });
  });
});


describe('sidecar anonymous access (only when enabled)', function () {
  this.timeout(120_000);
  const { cp } = withSharedControlPlane();
  const sidecar = withSidecar({ flags: ['--anonymous'] });

  it('forwards a request without credentials as system:anonymous, never as the service account', async function () {
    const response = await rawRequest(`${sidecar.url}/version`, { ca: sidecar.servingCa.certPem });
    assert.equal(response.status, 200, response.body);
    const events = await auditEventsFor(cp, response.headers['audit-id'] as string);
    assert.equal(events.length, 1);
    assert.equal(events[0]!.user.username, sidecar.serviceAccountUsername);
    assert.equal(events[0]!.impersonatedUser?.username, 'system:anonymous');
    assert.deepEqual(events[0]!.impersonatedUser?.groups, ['system:unauthenticated']);
  });

  it('refuses what anonymous may not do, naming system:anonymous', async function () {
    const response = await rawRequest(`${sidecar.url}/api/v1/namespaces/default/pods`, { ca: sidecar.servingCa.certPem });
    assert.equal(response.status, 403);
    assert.match((JSON.parse(response.body) as { message: string }).message, /User "system:anonymous" cannot list resource "pods"/);
  });

  it('still refuses a bad certificate instead of treating it as no credential', async function () {
    const response = await rawRequest(`${sidecar.url}/version`, {
      ca: sidecar.servingCa.certPem,
      cert: sidecar.clientCert('alice', [], {}, createCA({ commonName: 'impostor' })),
    });
    assert.equal(response.status, 401);
  });
});
