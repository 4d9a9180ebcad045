// The webhook asks whether a labelled namespace is provisioned before it injects a pod there: ready,
// not ready (refused, naming what is missing), no answer (refused: it cannot tell).
import assert from 'node:assert/strict';
import type { V1Pod } from '@kubernetes/client-node';
import { answerReview, type Provisioning } from '../../../injector/review.js';
import type { ProvisioningStatus } from '../../../injector/provision/readiness.js';
import { admissionReview, decodePatch, LABELLED_NAMESPACE, silentLog, testConfig, testNamespaces, type ReviewInput } from './helpers.js';

const POD: V1Pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'dash' }, spec: { containers: [{ name: 'app', image: 'app:1' }] } };

describe('injector/review: namespace provisioning', function () {
  let asked: string[];

  function provisioning(answer: () => Promise<ProvisioningStatus>): Provisioning {
    return (namespace) => {
      asked.push(namespace);
      return answer();
    };
  }

  function reviewWith(provision: Provisioning, input: ReviewInput = { object: POD }) {
    return answerReview(admissionReview(input), { config: testConfig(), namespaceLabels: testNamespaces, provisioning: provision, log: silentLog });
  }

  beforeEach(function () {
    asked = [];
  });

  it('injects a pod once the namespace is provisioned', async function () {
    const out = await reviewWith(provisioning(() => Promise.resolve({ ready: true, missing: [] })));
    assert.equal(out.response.allowed, true);
    assert.ok(decodePatch(out).length > 0, 'injected');
    assert.deepEqual(asked, [LABELLED_NAMESPACE]);
  });

  it('refuses a pod in a labelled namespace not provisioned yet, naming what is missing', async function () {
    const out = await reviewWith(provisioning(() => Promise.resolve({ ready: false, missing: ['ServiceAccount chaperone-impersonator', 'Secret chaperone-serving'] })));
    assert.equal(out.response.allowed, false);
    assert.equal(out.response.patch, undefined);
    assert.equal(out.response.status?.code, 503);
    assert.match(
      out.response.status?.message ?? "",
      /^chaperone cannot inject this pod yet: namespace team-a is labelled for injection but not ready; missing: ServiceAccount chaperone-impersonator; Secret chaperone-serving\./,
    );
  });

  it('refuses a pod when it cannot tell, with the reason', async function () {
    const out = await reviewWith(provisioning(() => Promise.reject(new Error('connection refused'))));
    assert.equal(out.response.allowed, false);
    assert.equal(out.response.status?.reason, 'InternalError');
    assert.equal(out.response.status?.message, 'chaperone cannot tell whether namespace team-a is provisioned: connection refused');
  });

  it('does not ask for pods it does not inject, nor for ephemeral containers', async function () {
    const never = provisioning(() => Promise.resolve({ ready: false, missing: ['everything'] }));
    assert.equal((await reviewWith(never, { object: POD, namespace: 'plain' })).response.allowed, true);
    assert.equal((await reviewWith(never, { object: { ...POD, metadata: { name: 'x', labels: { 'chaperone.dev/inject': 'disabled' } } } })).response.allowed, true);
    assert.equal((await reviewWith(never, { object: POD, oldObject: POD, operation: 'UPDATE', subResource: 'ephemeralcontainers' })).response.allowed, true);
    assert.deepEqual(asked, []);
  });
});
