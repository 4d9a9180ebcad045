import assert from 'node:assert/strict';
import { CachingReviewer, subjectAccessReviewBody, type SubjectAccessReviewStatus } from '../../../sidecar/authz/review.js';
import type { Identity } from '../../../sidecar/identity.js';
import type { StatusError } from '../../../lib/status.js';

const alice: Identity = { username: 'alice', uid: 'u1', groups: ['dev', 'system:authenticated'], extra: { team: ['a'] } };
const listPods = { resource: { verb: 'list', group: '', version: 'v1', resource: 'pods', namespace: 'ns' } };

function transport(answer: () => Promise<SubjectAccessReviewStatus>) {
  const calls: object[] = [];
  return { calls, send: (body: object) => (calls.push(body), answer()) };
}

const options = { allowedTtlMs: 60_000, deniedTtlMs: 60_000, maxEntries: 100 };

describe('sidecar/authz/review', function () {
  it('asks about the whole identity: user, uid, groups, extra and the attributes', function () {
    assert.deepEqual(subjectAccessReviewBody(alice, listPods), {
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SubjectAccessReview',
      spec: { user: 'alice', uid: 'u1', groups: ['dev', 'system:authenticated'], extra: { team: ['a'] }, resourceAttributes: listPods.resource },
    });
  });

  it('caches a decision and merges identical reviews in flight', async function () {
    const t = transport(() => new Promise((resolve) => setTimeout(() => resolve({ allowed: true }), 20)));
    const reviewer = new CachingReviewer(t.send, options);
    const decisions = await Promise.all(Array.from({ length: 5 }, () => reviewer.review(alice, listPods)));
    assert.ok(decisions.every((d) => d.allowed));
    await reviewer.review(alice, listPods);
    assert.equal(t.calls.length, 1);
    assert.equal(reviewer.stats.hits, 1);
  });

  it('caches nothing when a TTL is 0 (lru-cache would read 0 as for ever)', async function () {
    let allowed = true;
    const t = transport(() => Promise.resolve({ allowed }));
    const reviewer = new CachingReviewer(t.send, { ...options, deniedTtlMs: 0, allowedTtlMs: 0 });
    assert.equal((await reviewer.review(alice, listPods)).allowed, true);
    allowed = false;
    assert.equal((await reviewer.review(alice, listPods)).allowed, false, 'asked again');
    assert.equal((await reviewer.review(alice, listPods)).allowed, false);
    assert.equal(t.calls.length, 3);
  });

  it('keeps allowed and denied decisions for their own TTLs', async function () {
    let allowed = false;
    const t = transport(() => Promise.resolve({ allowed }));
    const reviewer = new CachingReviewer(t.send, { ...options, deniedTtlMs: 1, allowedTtlMs: 60_000 });
    assert.equal((await reviewer.review(alice, listPods)).allowed, false);
    await new Promise((resolve) => setTimeout(resolve, 10));
    allowed = true;
    assert.equal((await reviewer.review(alice, listPods)).allowed, true, 'the denial expired');
    allowed = false;
    assert.equal((await reviewer.review(alice, listPods)).allowed, true, 'the allowance is still cached');
    assert.equal(t.calls.length, 2);
  });

  it('turns a review that cannot be made into a 503, and does not cache it', async function () {
    let fail = true;
    const t = transport(() => (fail ? Promise.reject(new Error('connection refused')) : Promise.resolve({ allowed: true })));
    const reviewer = new CachingReviewer(t.send, options);
    await assert.rejects(reviewer.review(alice, listPods), (err: StatusError) => err.code === 503 && /connection refused/.test(err.message));
    fail = false;
    assert.equal((await reviewer.review(alice, listPods)).allowed, true);
  });

  it('refuses with 503 when the authorizer itself failed to evaluate', async function () {
    const reviewer = new CachingReviewer(transport(() => Promise.resolve({ allowed: false, evaluationError: 'webhook down' })).send, options);
    await assert.rejects(reviewer.review(alice, listPods), (err: StatusError) => err.code === 503);
  });

  it('bounds the cache', async function () {
    const t = transport(() => Promise.resolve({ allowed: true }));
    const reviewer = new CachingReviewer(t.send, { ...options, maxEntries: 2 });
    for (const ns of ['a', 'b', 'c', 'a']) await reviewer.review(alice, { resource: { ...listPods.resource, namespace: ns } });
    assert.equal(t.calls.length, 4, 'a was evicted by c');
  });
});
