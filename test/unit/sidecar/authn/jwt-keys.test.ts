// What the JWT authenticator tells of each issuer's keys, for the sidecar's metrics: every fetch and
// how it ended, and when the keys held were fetched, under the issuer's URL as configured.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { parseAuthenticationConfiguration } from '../../../../lib/sidecar-config/jwt.js';
import { JwtAuthenticator } from '../../../../sidecar/authn/jwt/authenticator.js';
import { JWKS_MAX_AGE_MS, type KeyFetchOutcome } from '../../../../sidecar/authn/jwt/remote-keys.js';
import { authenticationConfiguration, startTestIssuer, type TestIssuer } from '../../../hardening/support/issuer.js';

describe('sidecar/authn/jwt: what it tells of each issuer\'s keys', function () {
  this.timeout(30_000);
  const realNow = Date.now;
  let now: number;
  let issuer: TestIssuer;
  let authenticator: JwtAuthenticator;
  let told: [string, KeyFetchOutcome][];

  before(async function () {
    issuer = await startTestIssuer('ES256');
    told = [];
    authenticator = new JwtAuthenticator(parseAuthenticationConfiguration(authenticationConfiguration([issuer]), 'test'), {
      log: pino({ enabled: false }),
      successTtlMs: 0,
      onKeysFetched: (url, outcome) => told.push([url, outcome]),
    });
    await authenticator.start();
    now = realNow();
    Date.now = () => now;
  });

  after(async function () {
    Date.now = realNow;
    authenticator?.close();
    await issuer?.stop();
  });

  async function toldAtLeast(count: number): Promise<void> {
    for (let waited = 0; told.length < count; waited += 20) {
      if (waited > 10_000) assert.fail(`told of ${told.length} fetches, expected ${count}`);
      await sleep(20);
    }
  }

  it('tells of the first fetch and a failed background refresh under the issuer URL; the time of the keys held stays', async function () {
    assert.deepEqual(authenticator.keysHeld(), [{ issuer: issuer.url, fetchedAt: undefined }]);
    const token = await issuer.sign({ sub: 'alice' });
    assert.equal((await authenticator.authenticateToken(token)).outcome, 'success');
    assert.deepEqual(told, [[issuer.url, 'success']]);
    const fetchedAt = now;
    assert.deepEqual(authenticator.keysHeld(), [{ issuer: issuer.url, fetchedAt }]);
    await issuer.stop();
    now += JWKS_MAX_AGE_MS;
    assert.equal((await authenticator.authenticateToken(token)).outcome, 'success', 'verified with the keys held');
    await toldAtLeast(2);
    assert.deepEqual(told, [
      [issuer.url, 'success'],
      [issuer.url, 'failure'],
    ]);
    assert.deepEqual(authenticator.keysHeld(), [{ issuer: issuer.url, fetchedAt }]);
  });
});
