// The sidecar authorizes with the attributes requestInfo() derives; the API server authorizes (and
// audits) with its own. Replaying the recorded cases against the live server catches a stale
// fixture, a Kubernetes upgrade that changed the rules, or a requestInfo() that drifted.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { ControlPlane } from '../../local-cluster/control-plane.js';
import { sharedControlPlane } from '../support/shared.js';
import {
  attributesFromRequestInfo,
  attributesOf,
  CASES,
  FIXTURE_FILE,
  observe,
  prepareFixtureObjects,
  UNAUDITED_CASES,
  type Fixture,
} from '../../scripts/record-request-info.js';

const fixture = JSON.parse(readFileSync(FIXTURE_FILE, 'utf8')) as Fixture;

describe('request attributes: requestInfo() and the real API server agree', function () {
  this.timeout(15 * 60_000); // the first run may build kube-apiserver and etcd
  let cp: ControlPlane;

  before(async function () {
    cp = await sharedControlPlane();
    await prepareFixtureObjects(cp);
    if (cp.version !== fixture.kubernetesVersion) {
      console.log(`      fixture recorded from ${fixture.kubernetesVersion}, replayed against ${cp.version}`);
    }
  });

  it('replays exactly the cases the recorder sends (re-record after changing them)', function () {
    const key = ({ method, url, body }: { method: string; url: string; body?: string }) => JSON.stringify([method, url, body ?? null]);
    assert.deepEqual(fixture.cases.map(key), CASES.map(key));
  });

  for (const c of fixture.cases) {
    it(`${c.method} ${c.url}: ${c.why}`, async function () {
      const { status, events } = await observe(cp, c);
      assert.ok(events.length > 0, `HTTP ${status} and no audit event`);
      for (const event of events) {
        const observed = attributesOf(event);
        assert.deepEqual(observed, c.expected, `the API server (${event.stage}, HTTP ${status}) no longer agrees with the fixture`);
        assert.deepEqual(attributesFromRequestInfo(c.method, c.url), observed, 'requestInfo() disagrees with the API server');
      }
    });
  }

  for (const c of UNAUDITED_CASES) {
    it(`${c.method} ${c.url}: ${c.why}, is refused with a 5xx before any audit`, async function () {
      const { status, events } = await observe(cp, c, 1000);
      assert.ok(status >= 500, `HTTP ${status}`);
      assert.equal(events.length, 0);
    });
  }
});
