// A read-only sidecar (--read-only, as chaperone.dev/read-only makes it) in front of the real API
// server, tried by a person whose own RBAC reaches a node's kubelet (get nodes/proxy, as monitoring
// roles often do): the doors a GET opens stay shut, which both logs show (the sidecar's event says
// refused and not forwarded; the API server has no event for the auditID), while a plain read of the
// same person goes through as her.
import assert from 'node:assert/strict';
import { auditEventsFor, grantClusterWide, userSubject, waitForCanI } from '../../local-cluster/kube.js';
import { withSharedControlPlane, withSidecar } from '../support/fixtures.js';
import { auditIDOf, sidecarEventFor, via } from './support/red-team.js';

const PERSON = 'ro-node-operator';
const WEBSOCKET = { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' };

describe('hardening: a read-only sidecar and the doors a GET opens (real API server)', function () {
  this.timeout(120_000);
  const cluster = withSharedControlPlane();
  const sidecar = withSidecar({ flags: ['--read-only'] }, cluster);

  before(async function () {
    await grantClusterWide(cluster.clients, 'ro-node-operator', [{ apiGroups: [''], resources: ['nodes', 'nodes/proxy'], verbs: ['get'] }], [userSubject(PERSON)]);
    await waitForCanI(cluster.cp, PERSON, ['get', 'nodes/proxy']);
  });

  const attempts = [
    { what: "the kubelet's exec, as a websocket", path: '/api/v1/nodes/node-1/proxy/exec/team/web/app?command=id&output=1', headers: WEBSOCKET },
    { what: "the kubelet's API, a plain GET", path: '/api/v1/nodes/node-1/proxy/pods', headers: {} },
    { what: 'a pod exec, as a websocket', path: '/api/v1/namespaces/default/pods/web/exec?command=id&stdout=true', headers: WEBSOCKET },
  ];
  for (const attempt of attempts) {
    it(`refuses ${attempt.what}: 403 from the sidecar, and nothing in the API server's log`, async function () {
      const answer = await via(sidecar, attempt.path, { cert: sidecar.clientCert(PERSON), headers: attempt.headers });
      assert.equal(answer.status, 403, answer.body);
      assert.match(answer.body, /this pod is read-only/);
      const auditID = auditIDOf(answer);
      const ours = await sidecarEventFor(sidecar, auditID);
      assert.equal(ours.annotations?.['chaperone.dev/forwarded'], 'false');
      assert.deepEqual(await auditEventsFor(cluster.cp, auditID, 1500), [], 'the API server never saw it');
    });
  }

  it('lets the same person read as herself: the API server runs it, impersonating her', async function () {
    const answer = await via(sidecar, '/api/v1/nodes/node-1', { cert: sidecar.clientCert(PERSON) });
    assert.equal(answer.status, 404, answer.body); // no such node: but the API server looked, for her
    const theirs = (await auditEventsFor(cluster.cp, auditIDOf(answer))).filter((e) => e.stage === 'ResponseComplete');
    assert.equal(theirs.length, 1);
    assert.equal(theirs[0]!.verb, 'get');
    assert.equal(theirs[0]!.impersonatedUser?.username, PERSON);
  });
});
