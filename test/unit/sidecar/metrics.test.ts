// The OIDC key metrics as Prometheus reads them: each fetch counted per issuer and outcome, and the
// age of the keys held computed at scrape time, from the issuers configured now.
import assert from 'node:assert/strict';
import type { IssuerKeysHeld } from '../../../sidecar/authn/jwt/authenticator.js';
import { SidecarMetrics } from '../../../sidecar/metrics.js';

const A = 'https://issuer-a.example';
const B = 'https://issuer-b.example/tenant';

describe('sidecar/metrics: the OIDC issuers\' keys', function () {
  const realNow = Date.now;
  let now: number;
  let metrics: SidecarMetrics;
  let held: IssuerKeysHeld[];

  beforeEach(function () {
    now = realNow();
    Date.now = () => now;
    metrics = new SidecarMetrics();
    held = [];
    metrics.watchOidcKeys(() => held);
  });

  afterEach(function () {
    Date.now = realNow;
  });

  /** The samples of a metric as a scrape now would show them, by their labels. */
  async function scraped(name: string): Promise<Record<string, number>> {
    const { values } = await metrics.registry.getSingleMetric(name)!.get();
    return Object.fromEntries(values.map(({ labels, value }) => [JSON.stringify(labels), value]));
  }
  const ages = () => scraped('chaperone_oidc_keys_age_seconds');
  const fetches = () => scraped('chaperone_oidc_key_fetches_total');

  it('shows the age of the keys held, in seconds, as the clock moves; none for an issuer whose keys were never fetched', async function () {
    held = [
      { issuer: A, fetchedAt: now - 90_000 },
      { issuer: B, fetchedAt: undefined },
    ];
    assert.deepEqual(await ages(), { [JSON.stringify({ issuer: A })]: 90 });
    now += 3600_000;
    assert.deepEqual(await ages(), { [JSON.stringify({ issuer: A })]: 3690 });
    held = [{ issuer: A, fetchedAt: now - 1500 }];
    assert.deepEqual(await ages(), { [JSON.stringify({ issuer: A })]: 1.5 }, 'fetched again');
  });

  it('follows the issuers configured now: an issuer no longer configured has no age', async function () {
    held = [{ issuer: A, fetchedAt: now }];
    assert.deepEqual(Object.keys(await ages()), [JSON.stringify({ issuer: A })]);
    held = [{ issuer: B, fetchedAt: now }];
    assert.deepEqual(Object.keys(await ages()), [JSON.stringify({ issuer: B })]);
  });

  it('counts fetches per issuer and outcome, each outcome of each issuer configured from 0', async function () {
    held = [
      { issuer: A, fetchedAt: undefined },
      { issuer: B, fetchedAt: undefined },
    ];
    const key = (issuer: string, outcome: string) => JSON.stringify({ issuer, outcome });
    assert.deepEqual(await fetches(), { [key(A, 'success')]: 0, [key(A, 'failure')]: 0, [key(B, 'success')]: 0, [key(B, 'failure')]: 0 });
    metrics.countOidcKeyFetch(A, 'success');
    metrics.countOidcKeyFetch(A, 'failure');
    metrics.countOidcKeyFetch(A, 'failure');
    metrics.countOidcKeyFetch(B, 'success');
    assert.deepEqual(await fetches(), { [key(A, 'success')]: 1, [key(A, 'failure')]: 2, [key(B, 'success')]: 1, [key(B, 'failure')]: 0 });
  });

  it('declares both metrics in the exposition before any issuer is configured', async function () {
    const text = await metrics.registry.metrics();
    assert.match(text, /^# TYPE chaperone_oidc_key_fetches_total counter$/m);
    assert.match(text, /^# TYPE chaperone_oidc_keys_age_seconds gauge$/m);
    assert.doesNotMatch(text, /^chaperone_oidc_/m, 'no samples');
  });
});
