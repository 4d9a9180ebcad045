// One error family: every refusal the sidecar or the injector gives is a StatusError, and what a
// client reads never carries what only the log and the audit event may say.
import assert from 'node:assert/strict';
import { internalError, statusOf, StatusError, toStatus } from '../../../lib/status.js';
import { AuthenticationFailed } from '../../../sidecar/authn/chain.js';
import { BodyTooLarge } from '../../../sidecar/forward/body-limit.js';
import { UnauthorizedForward, UpstreamTimeout } from '../../../sidecar/forward/http.js';
import { Denial } from '../../../injector/denial.js';

describe('lib/status: the one error family', function () {
  const cases: [string, StatusError, number, string][] = [
    ['an authentication failure', new AuthenticationFailed([{ method: 'oidc', reason: 'token expired' }]), 401, 'Unauthorized'],
    ['a request changed on its way out', new UnauthorizedForward('identity header impersonate-user went missing'), 500, 'InternalError'],
    ['a body over the cap', new BodyTooLarge('the request body is larger than 10 bytes'), 413, 'RequestEntityTooLarge'],
    ['an API server that did not answer', new UpstreamTimeout('the API server did not answer within 5ms'), 504, 'Timeout'],
    ["the injector's refusal", new Denial('ServiceUnavailable', 'the namespace is being provisioned'), 503, 'ServiceUnavailable'],
  ];
  for (const [what, error, code, reason] of cases) {
    it(`${what} is a StatusError ${code} ${reason}, answered as itself`, function () {
      assert.ok(error instanceof StatusError);
      assert.equal(statusOf(error), error);
      assert.deepEqual([toStatus(error).code, toStatus(error).reason], [code, reason]);
    });
  }

  it('tells a client that failed authentication only "Unauthorized", and the log why', function () {
    const error = new AuthenticationFailed([{ method: 'x509', reason: 'unknown issuer' }, { method: 'oidc', reason: 'bad signature' }]);
    assert.equal(toStatus(error).message, 'Unauthorized');
    assert.equal(error.internal, 'authentication failed: x509: unknown issuer; oidc: bad signature');
    assert.equal(new AuthenticationFailed([]).internal, 'authentication failed: no credentials');
  });

  it('tells a client nothing of a request stopped on its way out but that it was stopped', function () {
    const error = new UnauthorizedForward('the path on the wire is not the one authorized');
    assert.equal(toStatus(error).message, 'chaperone stopped a request on its way out that was not the one it authorized');
    assert.equal(error.internal, 'the path on the wire is not the one authorized');
  });

  it('answers any other error with a 500 that says nothing of its cause', function () {
    const status = toStatus(statusOf(new TypeError("Cannot read properties of undefined (reading 'token')")));
    assert.deepEqual(status, toStatus(internalError('chaperone failed to handle the request')));
  });
});
