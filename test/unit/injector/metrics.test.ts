// The injector's /metrics, on the webhook's HTTPS port: what each admission came to, how long it
// took, and when the certificate it serves expires.
import assert from 'node:assert/strict';
import type { V1Pod } from '@kubernetes/client-node';
import { rawRequest } from '../../../local-cluster/sidecar.js';
import { sampleValue, scrape, servedCertificateExpiry, type Exposition } from '../../../local-cluster/metrics.js';
import { admissionReview, fakeController, LABELLED_NAMESPACE, startTestInjector, testNamespaces, type TestInjector } from './helpers.js';

const POD: V1Pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'dash' }, spec: { containers: [{ name: 'app', image: 'app:1' }] } };
const NOT_READY = 'team-b';

describe('injector /metrics', function () {
  this.timeout(60_000);
  let injector: TestInjector;

  before(async function () {
    const namespaces = (name: string) => (name === NOT_READY ? testNamespaces(LABELLED_NAMESPACE) : testNamespaces(name));
    const provisioning = (namespace: string) => Promise.resolve(namespace === NOT_READY ? { ready: false, missing: ['ServiceAccount chaperone-impersonator'] } : { ready: true, missing: [] });
    injector = await startTestInjector(namespaces, [], fakeController(provisioning));
  });
  after(async function () {
    await injector?.stop();
  });

  const metrics = () => scrape(`${injector.url}/metrics`, injector.caPem);
  const admissions = (samples: Exposition, labels: Record<string, string>) => sampleValue(samples, 'chaperone_injector_admissions_total', labels);
  const timed = (samples: Exposition, outcome: string) => sampleValue(samples, 'chaperone_injector_admission_duration_seconds_count', { outcome });

  async function post(namespace: string, body = JSON.stringify(admissionReview({ object: POD, namespace })), contentType = 'application/json'): Promise<void> {
    await rawRequest(`${injector.url}/mutate`, { method: 'POST', headers: { 'Content-Type': contentType }, ca: injector.caPem, body });
  }

  for (const [outcome, reason, send] of [
    ['injected', '', () => post(LABELLED_NAMESPACE)],
    ['unchanged', '', () => post('plain')],
    ['denied', 'ServiceUnavailable', () => post(NOT_READY)],
    ['malformed', 'UnsupportedMediaType', () => post(LABELLED_NAMESPACE, '{}', 'text/plain')],
    ['malformed', 'BadRequest', () => post(LABELLED_NAMESPACE, '{"kind":"Pod"}')],
  ] as [string, string, () => Promise<void>][]) {
    it(`counts and times an admission that comes to ${outcome}${reason ? ` (${reason})` : ''}, and nothing else`, async function () {
      const before = await metrics();
      await send();
      const after = await metrics();
      assert.equal(admissions(after, { outcome, reason }) - admissions(before, { outcome, reason }), 1);
      assert.equal(admissions(after, {}) - admissions(before, {}), 1, 'one admission, counted once');
      assert.equal(timed(after, outcome) - timed(before, outcome), 1);
    });
  }

  it('reports when the certificate it serves expires, as that certificate says', async function () {
    const samples = await metrics();
    assert.equal(sampleValue(samples, 'chaperone_injector_serving_certificate_expiry_timestamp_seconds'), await servedCertificateExpiry(injector.port, injector.caPem));
  });

  it("serves the process's own metrics under the injector's prefix, and only to GET", async function () {
    const samples = await metrics();
    assert.ok(sampleValue(samples, 'chaperone_injector_process_start_time_seconds') > 0);
    const post = await rawRequest(`${injector.url}/metrics`, { method: 'POST', ca: injector.caPem, body: '' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET, HEAD');
  });
});
