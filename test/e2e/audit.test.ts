// Audit events end to end: a real sidecar in front of the real API server, both writing audit logs
// that must join on auditID; the webhook receiver going away and coming back; nothing secret written.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import {
  type AuditEvent,
  auditEventsFor,
  createNamespace,
  grantClusterWide,
  grantInNamespace,
  userSubject,
  waitForCanI,
} from '../../local-cluster/kube.js';
import { rawRequest, startTestSidecar, type RawResponse, type TestSidecar } from '../../local-cluster/sidecar.js';
import { createCA, type CertificateAndKey } from '../../lib/pki.js';
import { ANNOTATIONS } from '../../sidecar/audit/event.js';
import { ORIGINAL_USER_INFO_EXTRA } from '../../sidecar/identity.js';
import { auditIdOf, keptAuditFile, readEventLines, startReceiver, waitForEventLines, type Receiver } from '../unit/sidecar/audit/support.js';
import { withSharedControlPlane, withSidecar } from '../support/fixtures.js';

const MICRO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('audit events (real API server)', function () {
  this.timeout(180_000);
  const { cp, clients } = withSharedControlPlane();
  let ns: string;

  before(async function () {
    ns = await createNamespace(clients, 'audit');
    await grantInNamespace(cp, clients, ns, 'view', 'alice');
  });

  describe('one event per request, joined to the API server\'s by auditID', function () {
    const sidecar = withSidecar({ flags: ['--pod-name=dashboard-0', '--pod-namespace=team-a'] });
    let alice: CertificateAndKey;
    let otherNs: string;

    before(async function () {
      alice = sidecar.clientCert('alice', ['dev']);
      otherNs = await createNamespace(clients, 'audit-other');
      await grantClusterWide(clients, 'audit-carol', [{ apiGroups: [''], resources: ['users', 'groups'], verbs: ['impersonate'] }], [userSubject('carol')]);
      await waitForCanI(cp, 'carol', ['impersonate', 'users/alice']);
    });

    const via = (path: string, init: { headers?: Record<string, string>; cert?: CertificateAndKey | null } = {}) =>
      rawRequest(`${sidecar.url}${path}`, { ca: sidecar.servingCa.certPem, ...(init.cert === null ? {} : { cert: init.cert ?? alice }), ...(init.headers ? { headers: init.headers } : {}) });

    it('writes exactly one ResponseComplete per request, allowed or refused by either side, and the API server agrees on every forwarded one', async function () {
      // Refused by the API server although the sidecar allowed it: dave's allowed decision is
      // cached, then his RoleBinding goes; the API server, asked again, says no.
      const daveBinding = await grantInNamespace(cp, clients, ns, 'view', 'dave');
      const dave = sidecar.clientCert('dave', ['contractors']);
      const daveBefore = await via(`/api/v1/namespaces/${ns}/configmaps`, { cert: dave });
      assert.equal(daveBefore.status, 200, daveBefore.body);
      await clients.rbac.deleteNamespacedRoleBinding({ name: daveBinding, namespace: ns });
      await waitForCanI(cp, 'dave', ['list', 'configmaps', '-n', ns], 'no');

      const requests: { what: string; response: RawResponse; forwarded: boolean; user: string | undefined; sentAs?: string; code: number }[] = [];
      const send = async (what: string, expect: { code: number; forwarded: boolean; user?: string; sentAs?: string }, response: Promise<RawResponse>) => {
        const r = await response;
        assert.equal(r.status, expect.code, `${what}: ${r.body}`);
        requests.push({ what, response: r, forwarded: expect.forwarded, user: expect.user, ...(expect.sentAs ? { sentAs: expect.sentAs } : {}), code: expect.code });
      };
      await send('allowed list', { code: 200, forwarded: true, user: 'alice', sentAs: 'alice' }, via(`/api/v1/namespaces/${ns}/pods?limit=5`));
      await send('allowed get of nothing', { code: 404, forwarded: true, user: 'alice', sentAs: 'alice' }, via(`/api/v1/namespaces/${ns}/configmaps/nope`));
      await send('refused by the sidecar', { code: 403, forwarded: false, user: 'alice' }, via(`/api/v1/namespaces/${otherNs}/pods`));
      await send('refused by the API server', { code: 403, forwarded: true, user: 'dave', sentAs: 'dave' }, via(`/api/v1/namespaces/${ns}/configmaps`, { cert: dave }));
      await send('no credential', { code: 401, forwarded: false, user: undefined }, via(`/api/v1/namespaces/${ns}/pods`, { cert: null }));
      await send('a certificate from another CA', { code: 401, forwarded: false, user: undefined }, via(`/api/v1/namespaces/${ns}/pods`, { cert: sidecar.clientCert('alice', [], {}, createCA({ commonName: 'impostor' })) }));
      await send('a malformed impersonation', { code: 400, forwarded: false, user: 'alice' }, via(`/api/v1/namespaces/${ns}/pods`, { headers: { 'Impersonate-Group': 'x' } }));
      await send(
        'nested impersonation',
        { code: 200, forwarded: true, user: 'carol', sentAs: 'alice' },
        via(`/api/v1/namespaces/${ns}/pods`, { cert: sidecar.clientCert('carol', ['support']), headers: { 'Impersonate-User': 'alice', 'Impersonate-Group': 'dev' } }),
      );
      await send('a watch', { code: 200, forwarded: true, user: 'alice', sentAs: 'alice' }, via(`/api/v1/namespaces/${ns}/pods?watch=1&timeoutSeconds=1`));

      const ids = requests.map((r) => auditIdOf(r.response));
      assert.equal(new Set(ids).size, ids.length, 'every request has its own auditID');
      const events = await waitForEventLines(sidecar.auditLog, ids);
      const all = await readEventLines(sidecar.auditLog);
      assert.equal(all.filter((e) => e.stage === 'ResponseComplete').length, requests.length + 1, 'one ResponseComplete per request (and dave\'s first one)');

      for (const [i, request] of requests.entries()) {
        const mine = events.filter((e) => e.auditID === ids[i]);
        const complete = mine.filter((e) => e.stage === 'ResponseComplete');
        assert.equal(complete.length, 1, `${request.what}: exactly one ResponseComplete`);
        const event = complete[0]!;
        assert.deepEqual(mine.map((e) => e.stage), request.what === 'a watch' ? ['ResponseStarted', 'ResponseComplete'] : ['ResponseComplete'], request.what);
        assert.equal(event.kind, 'Event');
        assert.equal(event.apiVersion, 'audit.k8s.io/v1');
        assert.equal(event.level, 'Metadata');
        assert.equal(event.user.username, request.user, `${request.what}: user is the authenticated person`);
        assert.equal(event.responseStatus?.code, request.code, request.what);
        assert.match(event.requestReceivedTimestamp, MICRO_TIME);
        assert.match(event.stageTimestamp, MICRO_TIME);
        assert.ok(event.stageTimestamp >= event.requestReceivedTimestamp);
        assert.deepEqual(event.sourceIPs, ['127.0.0.1']);
        assert.equal(event.annotations?.[ANNOTATIONS.podName], 'dashboard-0');
        assert.equal(event.annotations?.[ANNOTATIONS.podNamespace], 'team-a');
        assert.equal(event.annotations?.[ANNOTATIONS.forwarded], String(request.forwarded), request.what);

        const upstream = (await auditEventsFor(cp, ids[i]!, request.forwarded ? 5000 : 300)).filter((e) => e.stage === 'ResponseComplete');
        if (!request.forwarded) {
          assert.deepEqual(upstream, [], `${request.what}: never reached the API server`);
          assert.equal(event.impersonatedUser, undefined);
          assert.equal(event.responseStatus?.status, 'Failure', `${request.what}: the sidecar's own Status`);
          continue;
        }
        assert.equal(upstream.length, 1, `${request.what}: the API server logged the same auditID`);
        const theirs: AuditEvent = upstream[0]!;
        assert.equal(theirs.user.username, sidecar.serviceAccountUsername, `${request.what}: the API server saw the scoped service account`);
        assert.equal(theirs.impersonatedUser?.username, request.sentAs, `${request.what}: impersonating the person`);
        assert.deepEqual([...(theirs.impersonatedUser?.groups ?? [])].sort(), [...(event.impersonatedUser?.groups ?? [])].sort());
        assert.deepEqual(theirs.impersonatedUser?.extra ?? {}, event.impersonatedUser?.extra ?? {});
        // The same request, described the same way by both.
        assert.equal(event.verb, theirs.verb);
        assert.equal(decodeURI(event.requestURI), decodeURI(theirs.requestURI));
        assert.deepEqual(event.objectRef, theirs.objectRef, request.what);
        assert.deepEqual(event.responseStatus, theirs.responseStatus, request.what);
      }

      const byWhat = (what: string) => events.find((e) => e.auditID === ids[requests.findIndex((r) => r.what === what)] && e.stage === 'ResponseComplete')!;
      const nested = byWhat('nested impersonation');
      assert.equal(nested.annotations?.[ANNOTATIONS.nestedImpersonation], 'true');
      const original = JSON.parse(nested.impersonatedUser?.extra?.[ORIGINAL_USER_INFO_EXTRA]?.[0] ?? '{}') as { username?: string };
      assert.equal(original.username, 'carol', 'the original person travels upstream in the extra');
      const nestedReviews = JSON.parse(nested.annotations?.[ANNOTATIONS.authorizationReviews] ?? '[]') as Record<string, string>[];
      assert.deepEqual(
        nestedReviews.map((r) => [r.user, r.verb, r.resource, r.name, r.decision].filter(Boolean).join(' ')),
        ['carol impersonate users alice allow', 'carol impersonate groups dev allow', 'alice list pods allow'],
        'every review the nested impersonation took, in order',
      );
      assert.equal(byWhat('allowed list').annotations?.[ANNOTATIONS.authorizationReviews], undefined, 'one review: the decision annotations say it all');
      assert.equal(byWhat('refused by the sidecar').annotations?.[ANNOTATIONS.authorizationDecision], 'forbid');
      assert.equal(byWhat('refused by the API server').annotations?.[ANNOTATIONS.authorizationDecision], 'allow');
      assert.equal(byWhat('allowed list').annotations?.[ANNOTATIONS.authenticationMethod], 'x509');
      assert.deepEqual(byWhat('no credential').user, {});
      assert.match(byWhat('a certificate from another CA').annotations?.[ANNOTATIONS.authenticationFailures] ?? '', /^x509: /);
      assert.equal(byWhat('a malformed impersonation').responseStatus?.reason, 'BadRequest');
    });

    it('agrees with the API server on the verb and object of an update, a deletecollection and a service proxy', async function () {
      await grantInNamespace(cp, clients, ns, 'edit', 'erin');
      const erin = sidecar.clientCert('erin');
      await clients.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'joined', labels: { joined: 'yes' } }, data: { k: 'v' } } });
      const configMaps = `/api/v1/namespaces/${ns}/configmaps`;
      const json = { 'content-type': 'application/json' };
      const update = await rawRequest(`${sidecar.url}${configMaps}/joined`, {
        method: 'PUT',
        ca: sidecar.servingCa.certPem,
        cert: erin,
        headers: json,
        body: JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'joined', namespace: ns, labels: { joined: 'yes' } }, data: { k: 'w' } }),
      });
      assert.equal(update.status, 200, update.body);
      const collection = await rawRequest(`${sidecar.url}${configMaps}?labelSelector=joined%3Dyes`, { method: 'DELETE', ca: sidecar.servingCa.certPem, cert: erin });
      assert.equal(collection.status, 200, collection.body);
      const proxied = await rawRequest(`${sidecar.url}/api/v1/namespaces/${ns}/services/http:nowhere:80/proxy/`, { ca: sidecar.servingCa.certPem, cert: erin });
      assert.ok([403, 404, 503].includes(proxied.status), `the API server answered the proxy itself: ${proxied.status} ${proxied.body}`);

      const expected: [RawResponse, string, Record<string, string>][] = [
        [update, 'update', { resource: 'configmaps', namespace: ns, name: 'joined' }],
        [collection, 'deletecollection', { resource: 'configmaps', namespace: ns }],
        [proxied, 'get', { resource: 'services', subresource: 'proxy', namespace: ns, name: 'http:nowhere:80' }],
      ];
      const ids = expected.map(([response]) => auditIdOf(response));
      const ours = await waitForEventLines(sidecar.auditLog, ids);
      for (const [response, verb, ref] of expected) {
        const id = auditIdOf(response);
        const [theirs] = (await auditEventsFor(cp, id)).filter((e) => e.stage === 'ResponseComplete');
        const mine = ours.find((e) => e.auditID === id && e.stage === 'ResponseComplete');
        assert.ok(theirs && mine, `both logs have ${verb} (${id})`);
        assert.equal(theirs.verb, verb);
        assert.equal(mine.verb, theirs.verb);
        for (const [key, value] of Object.entries(ref)) {
          assert.equal((theirs.objectRef as Record<string, string>)[key], value, `the API server's ${key}`);
          assert.equal((mine.objectRef as Record<string, string> | undefined)?.[key], value, `the sidecar's ${key}`);
        }
      }
    });

    it('writes ResponseStarted and ResponseComplete for upgrades, failed upstream or refused by the sidecar', async function () {
      const execNs = await createNamespace(clients, 'audit-exec');
      await clients.core.createNamespacedPod({ namespace: execNs, body: { metadata: { name: 'web' }, spec: { containers: [{ name: 'web', image: 'nginx' }] } } });
      await grantInNamespace(cp, clients, execNs, 'edit', 'erin');
      const exec = (cert: CertificateAndKey) =>
        rawRequest(`${sidecar.url}/api/v1/namespaces/${execNs}/pods/web/exec?command=true&stdout=true`, {
          method: 'POST',
          ca: sidecar.servingCa.certPem,
          cert,
          headers: { Connection: 'Upgrade', Upgrade: 'SPDY/3.1', 'X-Stream-Protocol-Version': 'v4.channel.k8s.io' },
        });
      // No kubelet runs the pod, so the API server refuses the upgrade itself: a failed upgrade.
      const failed = await exec(sidecar.clientCert('erin'));
      const refused = await exec(alice);
      assert.equal(refused.status, 403);
      const [failedId, refusedId] = [auditIdOf(failed), auditIdOf(refused)];
      const events = await waitForEventLines(sidecar.auditLog, [failedId, refusedId]);
      const stagesOf = (id: string) => events.filter((e) => e.auditID === id).map((e) => e.stage);
      assert.deepEqual(stagesOf(failedId), ['ResponseStarted', 'ResponseComplete']);
      assert.deepEqual(stagesOf(refusedId), ['ResponseStarted', 'ResponseComplete']);
      const theirs = (await auditEventsFor(cp, failedId)).filter((e) => e.stage === 'ResponseComplete');
      assert.equal(theirs.length, 1);
      for (const event of events.filter((e) => e.auditID === failedId)) {
        assert.equal(event.verb, 'create');
        assert.equal(event.objectRef?.subresource, 'exec');
        assert.equal(event.responseStatus?.code, failed.status, 'the code the client got');
        assert.equal(event.responseStatus?.code, theirs[0]!.responseStatus?.code, 'the code the API server logged');
        assert.equal(event.impersonatedUser?.username, 'erin');
        // SPDY's POST is one create review; a websocket's GET would be two (get, then create).
        assert.equal(event.annotations?.[ANNOTATIONS.authorizationReviews], undefined);
      }
      assert.ok(events.filter((e) => e.auditID === refusedId).every((e) => e.responseStatus?.code === 403 && e.annotations?.[ANNOTATIONS.forwarded] === 'false'));
    });
  });

  describe('the webhook sink, with the receiver away for a while', function () {
    let receiver: Receiver;
    let sidecar: TestSidecar | undefined;
    let auditFile: string;

    beforeEach(async function () {
      receiver = await startReceiver();
    });
    afterEach(async function () {
      await sidecar?.stop();
      sidecar = undefined;
      await receiver.dispose();
      await rm(path.dirname(auditFile), { recursive: true, force: true });
    });

    const webhookFlags = (overflow: 'block' | 'drop') => [
      `--audit-file-path=${(auditFile = keptAuditFile())}`,
      '--audit-sinks=webhook',
      `--audit-webhook-config-file=${receiver.kubeconfig}`,
      `--audit-webhook-overflow=${overflow}`,
      '--audit-webhook-buffer-size=3',
      '--audit-webhook-batch-max-size=2',
      '--audit-webhook-batch-max-wait=50ms',
      '--audit-webhook-initial-backoff=100ms',
    ];
    const list = (s: TestSidecar, cert: CertificateAndKey) => rawRequest(`${s.url}/api/v1/namespaces/${ns}/pods`, { ca: s.servingCa.certPem, cert });

    it('block: loses no event, and holds requests back until the receiver is back', async function () {
      sidecar = await startTestSidecar(cp, clients, { flags: webhookFlags('block') });
      const running = sidecar;
      const alice = running.clientCert('alice');
      const ids: string[] = [];
      for (let n = 0; n < 4; n++) ids.push(auditIdOf(await list(running, alice)));
      for (let waited = 0; receiver.events.length < 4 && waited < 5000; waited += 50) await sleep(50);
      await receiver.stop();
      // One after another, as a dashboard's requests come: three fill the buffer, the fourth waits.
      let answered = 0;
      const during = (async () => {
        const later: string[] = [];
        for (let n = 0; n < 10; n++) {
          later.push(auditIdOf(await list(running, alice)));
          answered++;
        }
        return later;
      })();
      await sleep(1500);
      assert.equal(answered, 3, 'requests are held back once the buffer (3) is full');
      await receiver.start();
      ids.push(...(await during));
      await running.stop();
      const received = receiver.events.filter((e) => e.stage === 'ResponseComplete').map((e) => e.auditID);
      assert.deepEqual([...new Set(received)].sort(), [...ids].sort(), 'every event reached the receiver');
      const written = (await readEventLines(auditFile)).map((e) => e.auditID);
      assert.deepEqual([...written].sort(), [...ids].sort(), 'and the file sink has the same events');
      assert.equal(running.auditStats!().sinks.webhook?.dropped, 0);
    });

    it('drop: answers every request, and events received plus drops counted equal events produced', async function () {
      sidecar = await startTestSidecar(cp, clients, { flags: webhookFlags('drop') });
      const running = sidecar;
      const alice = running.clientCert('alice');
      await receiver.stop();
      for (let n = 0; n < 12; n++) auditIdOf(await list(running, alice));
      await receiver.start();
      await running.stop();
      const produced = (await readEventLines(auditFile)).length;
      const { dropped } = running.auditStats!().sinks.webhook!;
      assert.equal(produced, 12);
      assert.ok(dropped > 0, 'the buffer of 3 could not hold 12 events');
      assert.equal(new Set(receiver.events.map((e) => e.auditID)).size + dropped, produced);
    });
  });
});
