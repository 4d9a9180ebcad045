// The webhook over HTTPS, as the API server calls it.
import assert from 'node:assert/strict';
import { Agent, request } from 'node:https';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import type { V1Pod } from '@kubernetes/client-node';
import { rawRequest, type RawResponse } from '../../../local-cluster/sidecar.js';
import { createCA, issueCertificate } from '../../../lib/pki.js';
import { startInjectorServer } from '../../../injector/server.js';
import { answerReview, reviewText, type AdmissionReviewOut, type NamespaceLabels } from '../../../injector/review.js';
import { admissionReview, applyPatch, decodePatch, LABELLED_NAMESPACE, silentLog, startTestInjector, testConfig, testNamespaces, type ReviewInput, type TestInjector } from './helpers.js';

const POD: V1Pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'dash' }, spec: { containers: [{ name: 'app', image: 'app:1' }] } };

describe('injector/server (HTTPS, POST /mutate)', function () {
  this.timeout(60_000);
  let injector: TestInjector;
  let lookups: string[];
  let labels: NamespaceLabels;

  before(async function () {
    injector = await startTestInjector((name) => labels(name));
  });
  beforeEach(function () {
    lookups = [];
    labels = (name) => {
      lookups.push(name);
      return testNamespaces(name);
    };
  });
  after(async function () {
    await injector?.stop();
  });

  function post(body: string, headers: Record<string, string> = { 'Content-Type': 'application/json' }, path = '/mutate'): Promise<RawResponse> {
    return rawRequest(`${injector.url}${path}`, { method: 'POST', headers, ca: injector.caPem, body });
  }

  async function admit(input: ReviewInput): Promise<AdmissionReviewOut> {
    const response = await post(JSON.stringify(admissionReview(input)));
    assert.equal(response.status, 200, response.body);
    assert.match(String(response.headers['content-type']), /^application\/json/);
    return JSON.parse(response.body) as AdmissionReviewOut;
  }

  it('answers a pod created in a labelled namespace with the uid and a base64 JSONPatch that injects it', async function () {
    const out = await admit({ object: POD, uid: 'b7c2d8e4-0000-4000-8000-000000000001' });
    assert.equal(out.apiVersion, 'admission.k8s.io/v1');
    assert.equal(out.kind, 'AdmissionReview');
    assert.equal(out.response.uid, 'b7c2d8e4-0000-4000-8000-000000000001');
    assert.equal(out.response.allowed, true);
    assert.equal(out.response.patchType, 'JSONPatch');
    const injected = applyPatch(POD, decodePatch(out));
    assert.equal(injected.spec!.initContainers![0]!.name, 'chaperone');
  });

  it('answers with the JSON of the review answerReview gives, denied or allowed, with or without a patch', async function () {
    const ctx = { config: testConfig(), namespaceLabels: testNamespaces, log: silentLog };
    for (const input of [{ object: POD }, { object: POD, namespace: 'plain' }, { object: { spec: {} } }]) {
      const review = admissionReview({ ...input, uid: 'same' });
      const expected = await answerReview(review, ctx);
      assert.equal(reviewText(expected), JSON.stringify(expected));
      const response = await post(JSON.stringify(review));
      assert.deepEqual(JSON.parse(response.body), expected);
    }
  });

  it('gives a dry run the same patch', async function () {
    const uid = 'same';
    assert.deepEqual((await admit({ object: POD, uid, dryRun: true })).response, (await admit({ object: POD, uid })).response);
  });

  for (const [what, input] of [
    ['another kind', { kind: { group: '', version: 'v1', kind: 'ConfigMap' }, object: { metadata: { name: 'c' } } }],
    ['a pod from another API group', { kind: { group: 'example.com', version: 'v1', kind: 'Pod' }, object: POD }],
    ['DELETE', { operation: 'DELETE', object: null }],
    ['CONNECT', { operation: 'CONNECT', subResource: 'exec', object: { kind: 'PodExecOptions' } }],
    ['UPDATE', { operation: 'UPDATE', object: POD }],
    ['a status update', { operation: 'UPDATE', subResource: 'status', object: POD }],
  ] as [string, ReviewInput][]) {
    it(`allows ${what} without a patch or a namespace lookup`, async function () {
      const out = await admit(input);
      assert.deepEqual(out.response, { uid: out.response.uid, allowed: true });
      assert.deepEqual(lookups, []);
    });
  }

  it("takes the namespace from the request, never from the object", async function () {
    const claimsLabelled = { ...POD, metadata: { ...POD.metadata, namespace: LABELLED_NAMESPACE } };
    assert.equal((await admit({ object: claimsLabelled, namespace: 'plain' })).response.patch, undefined);
    const claimsPlain = { ...POD, metadata: { ...POD.metadata, namespace: 'plain' } };
    assert.notEqual((await admit({ object: claimsPlain, namespace: LABELLED_NAMESPACE })).response.patch, undefined);
    assert.deepEqual(lookups, ['plain', LABELLED_NAMESPACE]);
  });

  it('leaves pods alone in namespaces without the label, or unknown to the API server', async function () {
    for (const namespace of ['plain', 'nowhere']) assert.deepEqual((await admit({ object: POD, namespace })).response.allowed, true);
    assert.equal((await admit({ object: POD, namespace: 'plain' })).response.patch, undefined);
  });

  it('never injects in kube-system, kube-public, kube-node-lease or its own namespace, whatever their labels', async function () {
    labels = () => Promise.resolve({ labels: { 'chaperone.dev/inject': 'enabled' }, annotations: {} });
    for (const namespace of ['kube-system', 'kube-public', 'kube-node-lease', 'chaperone-system']) {
      const out = await admit({ object: POD, namespace });
      assert.deepEqual(out.response, { uid: out.response.uid, allowed: true }, namespace);
    }
  });

  it('leaves a pod labelled chaperone.dev/inject=disabled alone, and refuses any other value of that label', async function () {
    const optedOut = { ...POD, metadata: { name: 'dash', labels: { 'chaperone.dev/inject': 'disabled' } } };
    assert.equal((await admit({ object: optedOut })).response.patch, undefined);
    const unclear = { ...POD, metadata: { name: 'dash', labels: { 'chaperone.dev/inject': 'false' } } };
    const out = await admit({ object: unclear });
    assert.equal(out.response.allowed, false);
    assert.match(out.response.status!.message, /label chaperone\.dev\/inject=false is neither disabled \(to opt out\) nor enabled/);
  });

  it('denies, naming the annotation, a pod with a bad setting', async function () {
    const out = await admit({ object: { ...POD, metadata: { name: 'dash', annotations: { 'chaperone.dev/sidecar-mode': 'sideways' } } } });
    assert.deepEqual(out.response.status, {
      code: 400,
      reason: 'BadRequest',
      message: 'chaperone cannot inject this pod: annotation chaperone.dev/sidecar-mode: "sideways" is not one of native, classic',
    });
  });

  it('denies when the namespace labels cannot be read, rather than guessing', async function () {
    labels = () => Promise.reject(new Error('connection refused'));
    const out = await admit({ object: POD });
    assert.equal(out.response.allowed, false);
    assert.equal(out.response.status!.code, 500);
    assert.match(out.response.status!.message, /cannot tell whether namespace team-a is labelled chaperone\.dev\/inject=enabled: connection refused/);
  });

  describe('what is not an admission review', function () {
    const CASES: [string, string, Record<string, string>, number, RegExp][] = [
      ['a content type other than JSON', '{}', { 'Content-Type': 'text/plain' }, 415, /expected Content-Type: application\/json/],
      ['no content type', '{}', {}, 415, /expected Content-Type/],
      ['an empty body', '', { 'Content-Type': 'application/json' }, 400, /the body is empty/],
      ['a body that is not JSON', '{"apiVersion":', { 'Content-Type': 'application/json; charset=utf-8' }, 400, /not JSON/],
      ['JSON that is not an object', '[1,2]', { 'Content-Type': 'application/json' }, 400, /not a JSON object/],
      ['another kind of object', '{"apiVersion":"v1","kind":"Pod"}', { 'Content-Type': 'application/json' }, 400, /not an admission\.k8s\.io\/v1 AdmissionReview/],
      ['a v1beta1 review', '{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"1"}}', { 'Content-Type': 'application/json' }, 400, /not an admission\.k8s\.io\/v1/],
      ['a review without a request', '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}', { 'Content-Type': 'application/json' }, 400, /has no request/],
      ['a review without a uid', '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}', { 'Content-Type': 'application/json' }, 400, /has no uid/],
    ];
    for (const [what, body, headers, status, message] of CASES) {
      it(`answers ${what} with ${status}`, async function () {
        const response = await post(body, headers);
        assert.equal(response.status, status);
        assert.match(response.body, message);
      });
    }

    it('answers 413 to a body larger than any review', async function () {
      const response = await post(`{"x":"${'a'.repeat(17 * 1024 * 1024)}"}`);
      assert.equal(response.status, 413);
    });

    it('serves only POST /mutate and GET /healthz', async function () {
      assert.equal((await post('{}', { 'Content-Type': 'application/json' }, '/validate')).status, 404);
      assert.equal((await rawRequest(`${injector.url}/mutate`, { ca: injector.caPem })).status, 405);
      const health = await rawRequest(`${injector.url}/healthz`, { ca: injector.caPem });
      assert.equal(health.status, 200);
    });
  });

  it('survives random garbage: every answer is a 200 review or a 400, and it keeps serving', async function () {
    const json = fc.jsonValue({ maxDepth: 4 });
    const garbageReview = fc.record({
      apiVersion: fc.constantFrom('admission.k8s.io/v1', 'v1'),
      kind: fc.constantFrom('AdmissionReview', 'Pod'),
      request: fc.oneof(
        json,
        fc.record(
          {
            uid: fc.oneof(fc.string(), json),
            kind: fc.oneof(fc.constant({ group: '', version: 'v1', kind: 'Pod' }), json),
            namespace: fc.oneof(fc.constant(LABELLED_NAMESPACE), json),
            operation: fc.oneof(fc.constantFrom('CREATE', 'UPDATE', 'DELETE', 'CONNECT'), json),
            subResource: fc.oneof(fc.constantFrom('ephemeralcontainers', ''), json),
            object: fc.oneof(
              json,
              fc.record({ metadata: fc.oneof(json, fc.record({ annotations: json, labels: json })), spec: fc.oneof(json, fc.record({ containers: json, initContainers: json, volumes: json })) }),
            ),
          },
          { requiredKeys: [] },
        ),
      ),
    });
    const body = fc.oneof(fc.string(), json.map((v) => JSON.stringify(v)), garbageReview.map((v) => JSON.stringify(v)));
    await fc.assert(
      fc.asyncProperty(body, async (text) => {
        const response = await post(text);
        assert.ok([200, 400].includes(response.status), `status ${response.status}: ${response.body}`);
        if (response.status === 200) assert.equal((JSON.parse(response.body) as AdmissionReviewOut).kind, 'AdmissionReview');
      }),
      { numRuns: 300 },
    );
    assert.equal((await rawRequest(`${injector.url}/healthz`, { ca: injector.caPem })).status, 200);
  });
});

describe('injector/server: idle connections', function () {
  this.timeout(60_000);
  let injector: TestInjector;

  before(async function () {
    injector = await startTestInjector(testNamespaces);
  });
  after(async function () {
    await injector?.stop();
  });

  it("keeps an idle kept-alive connection open past Node's default 5 s, so a review sent on it is not raced by its close", async function () {
    const agent = new Agent({ keepAlive: true, ca: injector.caPem });
    try {
      const review = (): Promise<{ status: number; reused: boolean; socket: unknown }> =>
        new Promise((resolve, reject) => {
          const req = request(`${injector.url}/mutate`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
            res.resume();
            res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket, socket: res.socket }));
          });
          req.on('error', reject);
          req.end(JSON.stringify(admissionReview({ object: POD })));
        });
      const first = await review();
      assert.equal(first.status, 200);
      await new Promise((resolve) => setTimeout(resolve, 7000));
      const second = await review();
      assert.equal(second.status, 200);
      assert.ok(second.reused && second.socket === first.socket, 'the second review went over the connection of the first, 7 s later');
    } finally {
      agent.destroy();
    }
  });
});

describe('injector/server: a certificate from the controller', function () {
  this.timeout(60_000);

  it('serves the certificate it is given from then on (setCertificate), without a restart', async function () {
    const issue = (name: string) => {
      const ca = createCA({ commonName: name });
      return { ca, leaf: issueCertificate(ca, { commonName: 'chaperone-injector', usage: 'server', ipAddresses: ['127.0.0.1'] }) };
    };
    const first = issue('first');
    const second = issue('second');
    const dir = await mkdtemp(path.join(tmpdir(), 'chaperone-injector-set-'));
    await writeFile(path.join(dir, 'tls.crt'), first.leaf.certPem);
    await writeFile(path.join(dir, 'tls.key'), first.leaf.keyPem);
    const server = await startInjectorServer(
      { certFile: path.join(dir, 'tls.crt'), keyFile: path.join(dir, 'tls.key') },
      '127.0.0.1:0',
      { config: testConfig(), namespaceLabels: testNamespaces, log: silentLog },
      silentLog,
    );
    try {
      const healthz = (ca: string) => rawRequest(`https://127.0.0.1:${server.port}/healthz`, { ca }).then((r) => r.status, (err: Error) => err.message);
      assert.equal(await healthz(first.ca.certPem), 200);
      server.setCertificate(second.leaf.certPem, second.leaf.keyPem);
      assert.equal(await healthz(second.ca.certPem), 200);
      assert.notEqual(await healthz(first.ca.certPem), 200, 'the first certificate is no longer served');
    } finally {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
