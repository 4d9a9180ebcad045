// What the JWT authenticator remembers: a token that authenticated is taken again for a few seconds,
// as the API server's token cache takes it, but never past the token's own expiry.
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { parseAuthenticationConfiguration } from '../../../../lib/sidecar-config/jwt.js';
import { JwtAuthenticator } from '../../../../sidecar/authn/jwt/authenticator.js';
import { authenticationConfiguration, startTestIssuer, type TestIssuer } from '../../../hardening/support/issuer.js';

describe('sidecar/authn/jwt: the success cache', function () {
  this.timeout(30_000);
  let issuer: TestIssuer;
  let authenticator: JwtAuthenticator;

  before(async function () {
    issuer = await startTestIssuer('ES256');
    authenticator = new JwtAuthenticator(parseAuthenticationConfiguration(authenticationConfiguration([issuer]), 'test'), { log: pino({ enabled: false }), successTtlMs: 60_000 });
    await authenticator.start();
  });

  after(async function () {
    authenticator?.close();
    await issuer?.stop();
  });

  it('takes a token again only until its own expiry, however long the cache would keep it', async function () {
    const now = Math.floor(Date.now() / 1000);
    const token = await issuer.sign({ sub: 'alice', iat: now, exp: now + 2 });
    assert.equal((await authenticator.authenticateToken(token)).outcome, 'success');
    assert.equal((await authenticator.authenticateToken(token)).outcome, 'success');
    await new Promise((resolve) => setTimeout(resolve, (now + 2) * 1000 - Date.now() + 300));
    const expired = await authenticator.authenticateToken(token);
    assert.equal(expired.outcome, 'failure', 'expired: refused, though the cache would keep it a minute');
    assert.match((expired as { reason: string }).reason, /exp/);
  });
});
