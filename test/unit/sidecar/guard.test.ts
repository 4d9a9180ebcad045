import assert from 'node:assert/strict';
import { guardAuthenticated, guardEffective, type GuardPolicy } from '../../../sidecar/guard.js';
import { ORIGINAL_USER_INFO_EXTRA, type Authenticated, type Identity } from '../../../sidecar/identity.js';
import type { StatusError } from '../../../lib/status.js';

const none: GuardPolicy = { allow: [], deny: [] };

function person(method: Authenticated['method'], username: string, groups: string[] = [], extra: Identity['extra'] = {}): Authenticated {
  return { method, identity: { username, groups: [...groups, 'system:authenticated'], extra } };
}

function refused(fn: () => void, pattern: RegExp): void {
  assert.throws(fn, (err: StatusError) => err.code === 403 && pattern.test(err.message));
}

describe('sidecar/guard', function () {
  for (const method of ['x509', 'oidc', 'webhook'] as const) {
    it(`refuses system: names from a ${method} identity, naming the name`, function () {
      refused(() => guardAuthenticated(person(method, 'system:kube-controller-manager'), none), /"system:kube-controller-manager".*reserved/);
      refused(() => guardAuthenticated(person(method, 'alice', ['system:nodes']), none), /group "system:nodes"/);
      refused(() => guardAuthenticated(person(method, 'alice', ['system:masters']), none), /system:masters/);
    });

    it(`lets a ${method} identity carry a system: name the configuration allows`, function () {
      guardAuthenticated(person(method, 'alice', ['system:monitoring']), { allow: ['system:monitoring'], deny: [] });
    });
  }

  it('lets identities the cluster vouched for keep their service-account names', function () {
    guardAuthenticated(person('cluster-token-review', 'system:serviceaccount:ns:robot', ['system:serviceaccounts', 'system:serviceaccounts:ns']), none);
  });

  it('refuses system:masters from every source and as a nested target, unless allowed', function () {
    refused(() => guardAuthenticated(person('cluster-token-review', 'system:serviceaccount:ns:robot', ['system:masters']), none), /never impersonates the group "system:masters"/);
    refused(() => guardEffective({ username: 'alice', groups: ['system:masters'], extra: {} }, none), /never impersonates/);
    guardEffective({ username: 'alice', groups: ['system:masters'], extra: {} }, { allow: ['system:masters'], deny: [] });
  });

  it('refuses the names on the deny list', function () {
    refused(() => guardEffective({ username: 'breakglass', groups: [], extra: {} }, { allow: [], deny: ['breakglass'] }), /user "breakglass"/);
    refused(() => guardAuthenticated(person('x509', 'alice', ['root']), { allow: [], deny: ['root'] }), /group "root"/);
  });

  it('refuses an outside identity that carries chaperone\'s own extra', function () {
    refused(() => guardAuthenticated(person('oidc', 'alice', [], { [ORIGINAL_USER_INFO_EXTRA]: ['{}'] }), none), /set by chaperone/);
  });
});
