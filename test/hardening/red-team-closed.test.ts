// Attacks from the independent red-team run that worked when written and are closed now; each
// asserts the safe outcome against the real API server (its own answer to the same headers, or its
// audit log, is the judge).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { bindClusterRoleInNamespace, createNamespace, grantClusterWide, groupSubject, kubectl, userSubject, waitForCanI } from '../../local-cluster/kube.js';
import { apiServerEventFor, auditIDOf, sidecarEventFor, via } from './support/red-team.js';
import { withSharedControlPlane, withSidecar } from '../support/fixtures.js';

const tag = () => randomBytes(3).toString('hex');

describe('hardening: red team findings, closed', function () {
  this.timeout(120_000);
  const { cp, clients } = withSharedControlPlane();
  const classic = withSidecar();
  const constrained = withSidecar({ mode: 'constrained' });
  let ns: string;

  before(async function () {
    ns = await createNamespace(clients, 'redteam-closed');
  });

  describe('nested impersonation: identities the API server would not give', function () {
    it('F1: --as-group system:unauthenticated does not also get system:authenticated (the API server adds it only without that group)', async function () {
      const person = `f1-person-${tag()}`;
      const target = `f1-target-${tag()}`;
      await grantClusterWide(
        clients,
        'f1-impersonate',
        [
          { apiGroups: [''], resources: ['users'], verbs: ['impersonate'], resourceNames: [target] },
          { apiGroups: [''], resources: ['groups'], verbs: ['impersonate'], resourceNames: ['system:unauthenticated'] },
        ],
        [userSubject(person)],
      );
      // In this namespace only, everyone authenticated may list secrets; nobody unauthenticated may.
      await clients.rbac.createNamespacedRole({ namespace: ns, body: { metadata: { name: 'f1-secrets' }, rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['list'] }] } });
      await clients.rbac.createNamespacedRoleBinding({
        namespace: ns,
        body: { metadata: { name: 'f1-secrets' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'f1-secrets' }, subjects: [groupSubject('system:authenticated')] },
      });
      await waitForCanI(cp, person, ['impersonate', `users/${target}`]);
      await waitForCanI(cp, target, ['list', 'secrets', '-n', ns]);
      // The API server's own answer to exactly these impersonation headers: forbidden.
      const direct = await kubectl(cp.adminKubeconfig, ['get', 'secrets', '-n', ns, '--as', target, '--as-group', 'system:unauthenticated']);
      assert.notEqual(direct.code, 0);
      assert.match(direct.stderr, /Forbidden/);

      const response = await via(classic, `/api/v1/namespaces/${ns}/secrets`, {
        cert: classic.clientCert(person),
        headers: { 'Impersonate-User': target, 'Impersonate-Group': 'system:unauthenticated' },
      });
      const auditID = auditIDOf(response);
      const ran = await apiServerEventFor(cp, auditID, 1500);
      assert.equal(
        response.status,
        403,
        `the sidecar ran it (${response.status}); the API server's audit log: ${JSON.stringify(ran?.impersonatedUser)} (it would have given ["system:unauthenticated"])`,
      );
    });

    for (const mode of ['classic', 'constrained'] as const) {
      it(`F2 (${mode}): a service-account name the API server does not take for one (system:serviceaccount:<ns>:Not_A_Name) needs impersonate users, as in the API server`, async function () {
        const sidecar = mode === 'classic' ? classic : constrained;
        const person = `f2-person-${tag()}`;
        const fake = `system:serviceaccount:${ns}:Ghost_${tag()}`;
        // The person may impersonate the namespace's service accounts, not users.
        await clients.rbac.createNamespacedRole({ namespace: ns, body: { metadata: { name: `f2-${person}` }, rules: [{ apiGroups: [''], resources: ['serviceaccounts'], verbs: ['impersonate'] }] } });
        await clients.rbac.createNamespacedRoleBinding({
          namespace: ns,
          body: { metadata: { name: `f2-${person}` }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: `f2-${person}` }, subjects: [userSubject(person)] },
        });
        await bindClusterRoleInNamespace(clients, ns, 'view', [groupSubject(`system:serviceaccounts:${ns}`), userSubject(fake)]);
        await waitForCanI(cp, person, ['impersonate', 'serviceaccounts', '-n', ns]);
        await waitForCanI(cp, fake, ['list', 'configmaps', '-n', ns]);
        const direct = await kubectl(cp.adminKubeconfig, ['auth', 'can-i', 'impersonate', `users/${fake}`, '--as', person]);
        assert.equal(direct.stdout.trim(), 'no', 'the API server would need impersonate on users for this name');

        const response = await via(sidecar, `/api/v1/namespaces/${ns}/configmaps`, { cert: sidecar.clientCert(person), headers: { 'Impersonate-User': fake } });
        const auditID = auditIDOf(response);
        const ran = await apiServerEventFor(cp, auditID, 1500);
        const ours = await sidecarEventFor(sidecar, auditID);
        assert.equal(
          response.status,
          403,
          `forwarded (${response.status}): the API server ran it as ${JSON.stringify(ran?.impersonatedUser)}; the sidecar recorded ${JSON.stringify(ours.impersonatedUser)}`,
        );
      });
    }
  });


  describe('audit: forwarded means forwarded', function () {
    it('F8: two User-Agent (or Content-Type, If-Match…) headers are a 400, and recorded as not forwarded', async function () {
      const reader = `reader-${tag()}`;
      await bindClusterRoleInNamespace(clients, ns, 'view', [userSubject(reader)]);
      await waitForCanI(cp, reader, ['list', 'configmaps', '-n', ns]);
      const response = await via(classic, `/api/v1/namespaces/${ns}/configmaps`, { cert: classic.clientCert(reader), headers: { 'User-Agent': ['one', 'two'] } });
      const auditID = auditIDOf(response);
      const ours = await sidecarEventFor(classic, auditID);
      const theirs = await apiServerEventFor(cp, auditID, 1500);
      assert.equal(response.status, 400, response.body);
      assert.equal(ours.annotations?.['chaperone.dev/forwarded'], 'false');
      assert.equal(theirs, undefined, 'nothing reached the API server');
    });
  });
});
