// The access policy's rule matching is RBAC's, since the impersonator role generated from the same
// rules is judged by RBAC: what the sidecar allows and what the API server allows must agree.
import assert from 'node:assert/strict';
import { groupAllowed, nonResourceURLMatches, parsePolicy, policyAllows, ruleAllows, serialisePolicy, type AccessAttributes, type AccessPolicy } from '../../../lib/access-policy.js';

const request = (verb: string, apiGroup: string, resource: string, subresource = '', name = ''): AccessAttributes => ({
  isResourceRequest: true,
  path: '',
  verb,
  apiGroup,
  resource,
  subresource,
  name,
});

const policy: AccessPolicy = {
  mode: 'constrained',
  access: 'custom',
  rules: [
    { apiGroups: [''], resources: ['pods', 'pods/log'], verbs: ['get', 'list'] },
    { apiGroups: ['apps'], resources: ['*/scale'], verbs: ['update'] },
    { apiGroups: [''], resources: ['configmaps'], verbs: ['get'], resourceNames: ['settings'] },
  ],
  nonResourceURLs: ['/version', '/apis/*'],
  groups: ['dev'],
  extras: ['chaperone.dev/original-user-info'],
};

describe('access policy', function () {
  it('matches resources as RBAC does: a resource does not cover its subresources, */sub covers a subresource of any', function () {
    assert.ok(policyAllows(policy, request('get', '', 'pods')));
    assert.ok(policyAllows(policy, request('get', '', 'pods', 'log')));
    assert.ok(!policyAllows(policy, request('get', '', 'pods', 'exec')), 'pods does not cover pods/exec');
    assert.ok(!policyAllows(policy, request('delete', '', 'pods')), 'a verb not listed');
    assert.ok(!policyAllows(policy, request('get', 'apps', 'pods')), 'another group');
    assert.ok(policyAllows(policy, request('update', 'apps', 'deployments', 'scale')));
    assert.ok(!policyAllows(policy, request('update', 'apps', 'deployments')));
  });

  it('limits by resource name, and a request without a name (list, create) is not covered by a named rule', function () {
    assert.ok(policyAllows(policy, request('get', '', 'configmaps', '', 'settings')));
    assert.ok(!policyAllows(policy, request('get', '', 'configmaps', '', 'other')));
    assert.ok(!policyAllows(policy, request('get', '', 'configmaps')));
  });

  it('allows non-resource URLs for get only, with RBAC trailing-star prefixes', function () {
    const path = (verb: string, p: string): AccessAttributes => ({ ...request(verb, '', ''), isResourceRequest: false, path: p });
    assert.ok(policyAllows(policy, path('get', '/version')));
    assert.ok(policyAllows(policy, path('get', '/apis/apps/v1')));
    assert.ok(!policyAllows(policy, path('get', '/api')));
    assert.ok(!policyAllows(policy, path('post', '/version')));
    assert.ok(nonResourceURLMatches('*', '/anything'));
    assert.ok(!nonResourceURLMatches('/version', '/version/x'));
  });

  it('treats * as RBAC does in verbs and groups', function () {
    assert.ok(ruleAllows({ apiGroups: ['*'], resources: ['*'], verbs: ['get'] }, request('get', 'batch', 'jobs', 'status')));
  });

  it('never lets a group allow-list reach system:masters, and always lets the implicit groups through', function () {
    assert.ok(groupAllowed(policy, 'dev'));
    assert.ok(groupAllowed(policy, 'system:authenticated'));
    assert.ok(!groupAllowed(policy, 'ops'));
    const open: AccessPolicy = { ...policy, groups: undefined };
    delete open.groups;
    assert.ok(groupAllowed(open, 'ops'));
    assert.ok(!groupAllowed(open, 'system:masters'));
    assert.throws(() => parsePolicy(JSON.stringify({ ...policy, groups: ['system:masters'] }), 'the file'), /system:masters is never impersonated/);
  });

  it('round-trips through the ConfigMap form and names what is wrong in a bad one', function () {
    assert.deepEqual(parsePolicy(serialisePolicy(policy), 'x'), policy);
    assert.throws(() => parsePolicy('{', 'the file f'), /the file f is not JSON/);
    assert.throws(() => parsePolicy(JSON.stringify({ ...policy, rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['impersonate'] }] }), 'the file f'), /rules\.0\.verbs\.0/);
  });
});
