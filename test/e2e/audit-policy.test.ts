// The audit policy, with the API server as the oracle: a control plane of its own runs the same
// policy file as the sidecar in front of it. For rules that do not name people, the API server's
// event for the very request the sidecar forwarded (same auditID) must have the same level, stages
// and bodies; for rules that do, the same request sent straight to the API server as that person.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import {
  createNamespace,
  grantInNamespace,
  readAuditEvents,
  waitForCanI,
} from '../../local-cluster/kube.js';
import { rawRequest, type RawResponse } from '../../local-cluster/sidecar.js';
import { declareNoSidecarEvent } from '../../local-cluster/audit-join.js';
import { issueCertificate, type CertificateAndKey } from '../../lib/pki.js';
import type { Event } from '../../sidecar/audit/types.js';
import { auditIdOf, readEventLines, waitForEventLines } from '../unit/sidecar/audit/support.js';
import { withAuditPolicy } from '../support/fixtures.js';

const POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    userGroups: [quiet]
  - level: None
    nonResourceURLs: ["/version*"]
  - level: RequestResponse
    resources: [{group: "", resources: [configmaps], resourceNames: [shown]}]
    omitManagedFields: true
  - level: Request
    verbs: [create, update, patch]
    resources: [{group: "", resources: [configmaps]}]
  - level: Metadata
    resources: [{group: "", resources: [pods]}]
    omitStages: [ResponseStarted]
  - level: Metadata
`;

interface Request {
  method?: string;
  path: string;
  body?: unknown;
  contentType?: string;
}

/** What the policy decided for one request, as either side wrote it. */
function shape(events: Event[]) {
  const complete = events.find((e) => e.stage === 'ResponseComplete' || (e.stage === 'ResponseStarted' && e.responseStatus?.code === 401));
  return {
    audited: events.length > 0,
    level: complete?.level,
    stages: events.map((e) => e.stage).sort(),
    requestObject: complete?.requestObject,
    responseObject: complete?.responseObject,
    objectRef: complete?.objectRef,
  };
}

describe('audit policy: the same decisions as the API server with the same policy file', function () {
  this.timeout(300_000);
  const { cp, clients, sidecar } = withAuditPolicy('audit-policy', POLICY);
  let ns: string;

  before(async function () {
    ns = await createNamespace(clients, 'policy');
    await grantInNamespace(cp, clients, ns, 'edit', 'alice');
    await grantInNamespace(cp, clients, ns, 'view', 'quinn');
    await waitForCanI(cp, 'quinn', ['list', 'pods', '-n', ns]);
  });

  function send(base: string, ca: string, cert: CertificateAndKey | undefined, request: Request): Promise<RawResponse> {
    const body = request.body === undefined ? undefined : JSON.stringify(request.body);
    return rawRequest(`${base}${request.path}`, {
      ca,
      ...(cert ? { cert } : {}),
      ...(request.method ? { method: request.method } : {}),
      ...(body ? { body, headers: { 'content-type': request.contentType ?? 'application/json' } } : {}),
    });
  }

  const viaSidecar = (cert: CertificateAndKey | undefined, request: Request) => send(sidecar.url, sidecar.servingCa.certPem, cert, request);
  const direct = (cert: CertificateAndKey | undefined, request: Request) => send(cp.url, cp.ca.certPem, cert, request);

  async function sidecarShape(response: RawResponse) {
    const id = auditIdOf(response);
    await waitForEventLines(sidecar.auditLog, [id], 'ResponseComplete', 1500);
    return shape((await readEventLines(sidecar.auditLog)).filter((e) => e.auditID === id));
  }

  /** The API server's events for one auditID; waits for them only when some are expected. */
  async function apiServerShape(response: RawResponse, expected: boolean) {
    const id = auditIdOf(response);
    const deadline = Date.now() + (expected ? 5000 : 1000);
    let events: Event[] = [];
    while (Date.now() < deadline) {
      events = (await readAuditEvents(cp)).filter((e) => e.auditID === id) as unknown as Event[];
      if (events.some((e) => e.stage === 'ResponseComplete' || e.stage === 'ResponseStarted')) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return shape(events);
  }

  it('for rules about requests: the API server\'s event for the forwarded request matches, bodies included', async function () {
    const alice = sidecar.clientCert('alice', ['dev']);
    const configMap = { kind: 'ConfigMap', apiVersion: 'v1', metadata: { name: 'shown', namespace: ns }, data: { colour: 'blue' } };
    const cases: [string, Request, Partial<ReturnType<typeof shape>>][] = [
      ['a create (Request: the object sent)', { method: 'POST', path: `/api/v1/namespaces/${ns}/configmaps`, body: configMap }, { level: 'Request', requestObject: configMap, responseObject: undefined }],
      ['a get by name (RequestResponse, managed fields left out)', { path: `/api/v1/namespaces/${ns}/configmaps/shown` }, { level: 'RequestResponse' }],
      [
        'a merge patch by name (RequestResponse: the patch and the result)',
        { method: 'PATCH', path: `/api/v1/namespaces/${ns}/configmaps/shown`, body: { data: { size: 'large' } }, contentType: 'application/merge-patch+json' },
        { level: 'RequestResponse', requestObject: { data: { size: 'large' } } },
      ],
      ['a list (Metadata)', { path: `/api/v1/namespaces/${ns}/configmaps` }, { level: 'Metadata' }],
      ['a watch (both stages)', { path: `/api/v1/namespaces/${ns}/configmaps?watch=1&timeoutSeconds=1` }, { stages: ['ResponseComplete', 'ResponseStarted'] }],
      ['a watch whose rule omits ResponseStarted', { path: `/api/v1/namespaces/${ns}/pods?watch=1&timeoutSeconds=1` }, { stages: ['ResponseComplete'] }],
      ['a non-resource URL the policy ignores', { path: '/version' }, { audited: false }],
    ];
    for (const [what, request, expected] of cases) {
      const response = await viaSidecar(alice, request);
      assert.ok(response.status < 300, `${what}: ${response.status} ${response.body}`);
      const ours = await sidecarShape(response);
      const theirs = await apiServerShape(response, expected.audited !== false);
      for (const [key, value] of Object.entries(expected)) assert.deepEqual(ours[key as keyof typeof ours], value, `${what}: ${key}`);
      assert.deepEqual(ours, theirs, `${what}: the sidecar decided as the API server did`);
    }
    const got = (await readEventLines(sidecar.auditLog)).find((e) => e.verb === 'get' && e.objectRef?.name === 'shown' && e.stage === 'ResponseComplete');
    const object = got?.responseObject as { kind?: string; data?: unknown; metadata?: { managedFields?: unknown } } | undefined;
    assert.equal(object?.kind, 'ConfigMap');
    assert.deepEqual(object?.data, { colour: 'blue' });
    assert.equal(object?.metadata?.managedFields, undefined, 'omitManagedFields');
  });

  it('bodies: a patch and its answer are recorded byte for byte as the API server records them (integers past 2^53, escapes, key order, nesting)', async function () {
    const alice = sidecar.clientCert('alice', ['dev']);
    const nested = `${'{"n":['.repeat(40)}1.50${']}'.repeat(40)}`;
    const patch = `{ "metadata" : {"annotations":{"z":"\\u00e9 <&> \\ud83d\\ude00 \u2028","a":"b"}},\n "data":{"2":"x","1":"y"},"big":9007199254740993,"deep":${nested} }`;
    const response = await rawRequest(`${sidecar.url}/api/v1/namespaces/${ns}/configmaps/shown`, {
      method: 'PATCH',
      ca: sidecar.servingCa.certPem,
      cert: alice,
      body: patch,
      headers: { 'content-type': 'application/merge-patch+json' },
    });
    assert.equal(response.status, 200, response.body);
    const id = auditIdOf(response);
    await waitForEventLines(sidecar.auditLog, [id], 'ResponseComplete', 1500);
    await apiServerShape(response, true);
    /** The event line as written, and the bodies in it as bytes (both sides write them in the order of Go's Event struct). */
    const bodiesIn = async (file: string) => {
      const line = (await readFile(file, 'utf8')).split('\n').find((l) => l.includes(`"auditID":"${id}"`) && l.includes('"stage":"ResponseComplete"'));
      assert.ok(line, `${file} has the event`);
      const between = (from: string, to: string) => line.slice(line.indexOf(from) + from.length, line.indexOf(to));
      return { requestObject: between('"requestObject":', ',"responseObject":'), responseObject: between('"responseObject":', ',"requestReceivedTimestamp":') };
    };
    const ours = await bodiesIn(sidecar.auditLog);
    const theirs = await bodiesIn(cp.auditLog);
    assert.equal(ours.requestObject, theirs.requestObject, 'the patch, as the API server recorded it');
    assert.ok(ours.requestObject.includes('9007199254740993') && ours.requestObject.includes('"2":"x","1":"y"') && ours.requestObject.includes('\\u003c\\u0026\\u003e'), ours.requestObject);
    assert.equal(ours.responseObject, theirs.responseObject, 'the answer, managed fields left out by both');
  });

  it('for rules about people: the same request sent straight to the API server as that person is audited the same', async function () {
    const asPerson = (name: string, groups: string[]): [CertificateAndKey, CertificateAndKey] => [
      sidecar.clientCert(name, groups),
      issueCertificate(cp.ca, { commonName: name, organizations: groups, usage: 'client', validitySeconds: 3600 }),
    ];
    const [quinnToSidecar, quinnDirect] = asPerson('quinn', ['quiet']);
    const [aliceToSidecar, aliceDirect] = asPerson('alice', ['dev']);
    const list: Request = { path: `/api/v1/namespaces/${ns}/pods` };
    const cases: [string, CertificateAndKey | undefined, CertificateAndKey | undefined, boolean][] = [
      ['someone in a group the policy ignores', quinnToSidecar, quinnDirect, false],
      ['someone else', aliceToSidecar, aliceDirect, true],
      ['nobody (no credential): rules naming groups do not match', undefined, undefined, true],
    ];
    for (const [what, toSidecar, straight, audited] of cases) {
      const throughSidecar = await viaSidecar(toSidecar, list);
      if (!audited) declareNoSidecarEvent(auditIdOf(throughSidecar), "audit-policy: the sidecar's policy audits nothing for the group quiet");
      const ours = await sidecarShape(throughSidecar);
      const theirs = await apiServerShape(await direct(straight, list), audited);
      assert.equal(ours.audited, audited, `${what}: audited`);
      assert.equal(ours.audited, theirs.audited, `${what}: as the API server`);
      assert.equal(ours.level, theirs.level, `${what}: level`);
    }
  });
});
